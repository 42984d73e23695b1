//! What sgrun remembers about a container beside libcontainer's own state.json, and the
//! runc-shaped state document callers (containerd, Podman, Docker) parse.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub const RECORD_FILE: &str = "sgrun.json";

/// Written once at create, next to libcontainer's state.json in `<root>/<id>/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The bundle the caller gave (libcontainer may have been given a private copy).
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub cgroup_path: PathBuf,
    /// Private bundle holding the adjusted config.json, removed on delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_bundle: Option<PathBuf>,
    /// The profile the container runs under, if a policy applied one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A profile's seccomp enforced beside the config's own (exec installs it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl Record {
    pub fn load(container_dir: &Path, id: &str) -> Result<Self> {
        let path = container_dir.join(RECORD_FILE);
        let text = std::fs::read(&path).map_err(|e| EngineError::io("reading", &path, e))?;
        serde_json::from_slice(&text).map_err(|source| EngineError::State {
            id: id.into(),
            path,
            source,
        })
    }

    pub fn save(&self, container_dir: &Path) -> Result<()> {
        let path = container_dir.join(RECORD_FILE);
        let tmp = container_dir.join(".sgrun.json.tmp");
        let text = serde_json::to_vec(self).expect("record serializes");
        std::fs::write(&tmp, text).map_err(|e| EngineError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| EngineError::io("renaming into place", &path, e))
    }
}

/// `sgrun state` output, field for field what runc prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

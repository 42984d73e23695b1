//! The site registry: one JSON record per site under `<state>/sites/<tenant>/<site>/`, written
//! crash-safe (temp file, fsync, rename, fsync of the directory), and the locks that order
//! concurrent sgrun processes.

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SiteError};
use crate::limits::Limits;
use crate::name::SiteRef;

/// What the shim does when the site's stack exits on its own (annotation `io.sgrun.restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    /// An exit status other than 0, a signal included: the stack crashed.
    #[default]
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "no" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            _ => Err(SiteError::InvalidLimit {
                what: "--restart",
                input: s.into(),
                reason: "use no, on-failure or always".into(),
            }),
        }
    }
}

/// Whether the operator wants the site up: `site start` sets it, `site stop` clears it, and
/// `site start --all` (after a host restart) starts the sites that want to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    pub tenant: String,
    pub site: String,
    /// Image name or id in sgrun's store.
    pub image: String,
    pub profile: String,
    pub domain: String,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// First back-off of the restart policy, in milliseconds (doubles per crash).
    pub restart_backoff_ms: u64,
    /// Seconds since the epoch.
    pub created: u64,
    pub desired: Desired,
}

impl SiteRecord {
    pub fn site_ref(&self) -> SiteRef {
        SiteRef {
            tenant: self.tenant.clone(),
            site: self.site.clone(),
        }
    }
}

/// Where everything of the sites layer lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `<state>/sites`: records, bundles, logs (persistent)
    pub state: PathBuf,
    /// `<runtime root>/.sites`: shim sockets, HTTP socket directories (tmpfs; gone after a
    /// host restart, like the containers). A dot directory: `sgrun list` skips it.
    pub run: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path, runtime_root: &Path) -> Self {
        Layout {
            state: state_dir.join("sites"),
            run: runtime_root.join(".sites"),
        }
    }

    pub fn site_dir(&self, r: &SiteRef) -> PathBuf {
        self.state.join(&r.tenant).join(&r.site)
    }
    pub fn record(&self, r: &SiteRef) -> PathBuf {
        self.site_dir(r).join("site.json")
    }
    pub fn bundle(&self, r: &SiteRef) -> PathBuf {
        self.site_dir(r).join("bundle")
    }
    /// The stack's stdout and stderr, appended by the container itself (the shim hands it
    /// the file).
    pub fn console_log(&self, r: &SiteRef) -> PathBuf {
        self.site_dir(r).join("console.log")
    }
    /// One JSON line per event (the shim's events sink).
    pub fn events(&self, r: &SiteRef) -> PathBuf {
        self.site_dir(r).join("events.jsonl")
    }
    pub fn run_dir(&self, r: &SiteRef) -> PathBuf {
        self.run.join(&r.tenant).join(&r.site)
    }
    /// Mounted at /run/sgrun-http in the site; nginx there creates http.sock.
    pub fn http_dir(&self, r: &SiteRef) -> PathBuf {
        self.run_dir(r).join("http")
    }
    pub fn http_socket(&self, r: &SiteRef) -> PathBuf {
        self.http_dir(r).join("http.sock")
    }
    /// What `site start` recorded about the running shim.
    pub fn shim_record(&self, r: &SiteRef) -> PathBuf {
        self.run_dir(r).join("shim.json")
    }
}

/// Creates `path` and its parents with `mode` (parents too: they are ours).
pub(crate) fn mkdir_p(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(SiteError::io("create directory", path))
}

/// An exclusive flock held until dropped.
pub struct Lock {
    _file: File,
}

pub(crate) fn lock(path: &Path) -> Result<Lock> {
    if let Some(parent) = path.parent() {
        mkdir_p(parent, 0o700)?;
    }
    Ok(Lock {
        _file: sgrun_tenants::registry::lock_file(path)?,
    })
}

impl Layout {
    /// Held for changes to the set of sites (create, rm): domains must stay unique.
    pub fn lock_registry(&self) -> Result<Lock> {
        lock(&self.state.join(".lock"))
    }

    /// Held for a site's lifecycle changes (start, stop, rm). In the run directory's
    /// `.locks/` (tmpfs): it outlives `rm` of the site, and leftovers go with a restart.
    pub fn lock_site(&self, r: &SiteRef) -> Result<Lock> {
        lock(
            &self
                .run
                .join(".locks")
                .join(format!("{}.{}.lock", r.tenant, r.site)),
        )
    }

    pub fn load(&self, r: &SiteRef) -> Result<SiteRecord> {
        read_json(&self.record(r))?.ok_or_else(|| SiteError::NotFound {
            site: r.to_string(),
        })
    }

    pub fn save(&self, rec: &SiteRecord) -> Result<()> {
        let r = rec.site_ref();
        mkdir_p(&self.site_dir(&r), 0o700)?;
        Ok(sgrun_tenants::registry::write_atomic(
            &self.record(&r),
            rec,
        )?)
    }

    /// Every site, sorted by tenant then site. Directories without a record (a create that
    /// crashed before its last step) are not sites.
    pub fn list(&self) -> Result<Vec<SiteRecord>> {
        let mut out = Vec::new();
        for tenant in read_dir_names(&self.state)? {
            for site in read_dir_names(&self.state.join(&tenant))? {
                let path = self.state.join(&tenant).join(&site).join("site.json");
                if let Some(rec) = read_json::<SiteRecord>(&path)? {
                    out.push(rec);
                }
            }
        }
        out.sort_by(|a, b| (&a.tenant, &a.site).cmp(&(&b.tenant, &b.site)));
        Ok(out)
    }
}

/// Names of the subdirectories of `dir` that do not start with a dot.
fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SiteError::io("read directory", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(SiteError::io("read directory", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        out.push(name);
    }
    Ok(out)
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    Ok(sgrun_tenants::registry::read_json(path)?)
}

//! Runtime options: what containerd passes in `CreateTaskRequest.options` (and on the `start`
//! action's stdin). Two types arrive in practice:
//!
//! - `runtimeoptions.v1.Options {type_url = 1, config_path = 2}`: what `ctr run
//!   --runtime-config-path F` and the CRI plugin send for a non-runc runtime (its
//!   `[...runtimes.sgrun.options] ConfigPath = "F"`). The options themselves are in the TOML
//!   file F. containerd-shim-protos does not carry this message, so it is decoded by hand here.
//! - `containerd.runc.v1.Options`: what a runc-style configuration sends (BinaryName, Root).
//!
//! Nothing here may loosen a container's profile: `DefaultProfile = "none"` is refused, and
//! annotations (`io.sgrun.*`) are never touched by the shim; sgrun enforces them.

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::{well_known_types::any::Any, CodedInputStream, Message};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShimError};

pub const RUNTIMEOPTIONS_TYPE: &str = "runtimeoptions.v1.Options";
pub const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// sgrun's default state root under containerd; the namespace is appended, as runc's shim does.
pub const DEFAULT_ROOT: &str = "/run/containerd/sgrun";

/// The options the shim acts on, after decoding whichever message containerd sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimOptions {
    /// The sgrun binary (a path, or a name looked up next to the shim, then on PATH).
    pub binary_name: Option<String>,
    /// sgrun's `--root` (the containerd namespace is appended).
    pub root: Option<PathBuf>,
    /// sgrun's `--default-profile` for containers that name no `io.sgrun.profile`.
    pub default_profile: Option<String>,
}

/// The TOML file `runtimeoptions.v1.Options.config_path` points at. Key names follow
/// containerd's runc options (PascalCase), so one file can serve both shims' settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct FileOptions {
    binary_name: Option<String>,
    root: Option<PathBuf>,
    default_profile: Option<String>,
    systemd_cgroup: Option<bool>,
}

/// The fields of `runtimeoptions.v1.Options`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuntimeOptionsMsg {
    pub type_url: String,
    pub config_path: String,
}

/// Decodes `runtimeoptions.v1.Options`: two strings; unknown fields are skipped as protobuf
/// requires.
pub fn decode_runtimeoptions(
    bytes: &[u8],
) -> std::result::Result<RuntimeOptionsMsg, containerd_shim::protos::protobuf::Error> {
    let mut msg = RuntimeOptionsMsg::default();
    let mut is = CodedInputStream::from_bytes(bytes);
    while let Some(tag) = is.read_raw_tag_or_eof()? {
        match tag {
            // field 1, wire type 2 (length-delimited)
            0x0a => msg.type_url = is.read_string()?,
            // field 2, wire type 2
            0x12 => msg.config_path = is.read_string()?,
            _ => {
                let wire = containerd_shim::protos::protobuf::rt::WireType::new(tag & 7).ok_or(
                    containerd_shim::protos::protobuf::Error::from(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad wire type in tag {tag:#x}"),
                    )),
                )?;
                is.skip_field(wire)?;
            }
        }
    }
    Ok(msg)
}

/// The message name of a type URL: `type.googleapis.com/x.y.Z` and `x.y.Z` both give `x.y.Z`.
fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

impl ShimOptions {
    /// Decodes the options containerd attached. `None` or an empty Any: the defaults.
    pub fn from_any(any: Option<&Any>) -> Result<Self> {
        let Some(any) = any else {
            return Ok(Self::default());
        };
        if any.type_url.is_empty() && any.value.is_empty() {
            return Ok(Self::default());
        }
        let decode_err = |source| ShimError::OptionsDecode {
            type_url: any.type_url.clone(),
            source,
        };
        match type_name(&any.type_url) {
            RUNTIMEOPTIONS_TYPE => {
                let msg = decode_runtimeoptions(&any.value).map_err(decode_err)?;
                if msg.config_path.is_empty() {
                    Ok(Self::default())
                } else {
                    Self::from_file(Path::new(&msg.config_path))
                }
            }
            RUNC_OPTIONS_TYPE => {
                let o = RuncOptions::parse_from_bytes(&any.value).map_err(decode_err)?;
                if o.systemd_cgroup {
                    return Err(ShimError::OptionRefused {
                        option: "SystemdCgroup",
                        value: "true".into(),
                        reason: "sgrun manages cgroupfs paths only",
                    });
                }
                Ok(Self {
                    binary_name: non_empty(o.binary_name),
                    root: non_empty(o.root).map(PathBuf::from),
                    default_profile: None,
                })
            }
            _ => Err(ShimError::OptionsType {
                type_url: any.type_url.clone(),
            }),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ShimError::OptionsFile {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|reason| ShimError::OptionsFile {
            path: path.into(),
            reason,
        })
    }

    fn from_toml(text: &str) -> std::result::Result<Self, String> {
        let f: FileOptions = toml::from_str(text).map_err(|e| e.to_string())?;
        if f.systemd_cgroup == Some(true) {
            return Err("SystemdCgroup = true: sgrun manages cgroupfs paths only".into());
        }
        let o = Self {
            binary_name: f.binary_name.filter(|s| !s.is_empty()),
            root: f.root.filter(|p| !p.as_os_str().is_empty()),
            default_profile: f.default_profile.filter(|s| !s.is_empty()),
        };
        o.check().map_err(|e| e.to_string())?;
        Ok(o)
    }

    /// Refuses settings that would loosen what sgrun applies.
    pub fn check(&self) -> Result<()> {
        if let Some(p) = &self.default_profile {
            if p == "none" {
                return Err(ShimError::OptionRefused {
                    option: "DefaultProfile",
                    value: p.clone(),
                    reason: "the shim never runs a container without a profile",
                });
            }
        }
        if let Some(root) = &self.root {
            if !root.is_absolute() {
                return Err(ShimError::OptionRefused {
                    option: "Root",
                    value: root.display().to_string(),
                    reason: "must be an absolute path",
                });
            }
        }
        Ok(())
    }

    /// sgrun's state root in site mode: Root verbatim (no namespace appended), else sgrun's
    /// own default, so that `sgrun exec ID` and `sgrun list` see site containers without flags.
    pub fn site_root(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::site::DEFAULT_ROOT))
    }

    /// sgrun's state root for a containerd namespace.
    pub fn root_for(&self, namespace: &str) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
            .join(namespace)
    }

    /// The sgrun binary: BinaryName (a path is taken as is; a name is looked up), else `sgrun`
    /// next to the shim binary, else on PATH.
    pub fn binary(&self) -> Result<PathBuf> {
        let name = self.binary_name.as_deref().unwrap_or("sgrun");
        if name.contains('/') {
            let p = PathBuf::from(name);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(ShimError::BinaryNotFound { name: name.into() })
            };
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(name)));
        let path_dirs = std::env::var_os("PATH").unwrap_or_default();
        beside
            .into_iter()
            .chain(std::env::split_paths(&path_dirs).map(|d| d.join(name)))
            .find(|p| p.is_file())
            .ok_or(ShimError::BinaryNotFound { name: name.into() })
    }
}

/// What Create keeps in the bundle (`sgrun-shim.json`) for `delete` after a dead shim: the
/// options, and the state root they resolved to (site mode and containerd mode resolve Root
/// differently; files written before this field existed lack it).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Persisted {
    #[serde(flatten)]
    pub options: ShimOptions,
    #[serde(default)]
    pub state_root: Option<PathBuf>,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_runtimeoptions(type_url: &str, config_path: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for (tag, s) in [(0x0a_u8, type_url), (0x12, config_path)] {
            if s.is_empty() {
                continue;
            }
            v.push(tag);
            v.push(s.len() as u8); // test strings are short: one varint byte
            v.extend_from_slice(s.as_bytes());
        }
        v
    }

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn no_options_are_the_defaults() {
        assert_eq!(ShimOptions::from_any(None).unwrap(), ShimOptions::default());
        assert_eq!(
            ShimOptions::from_any(Some(&Any::default())).unwrap(),
            ShimOptions::default()
        );
    }

    #[test]
    fn runtimeoptions_decode_skips_unknown_fields() {
        let mut bytes = encode_runtimeoptions("x", "/etc/sgrun/shim.toml");
        // field 7 varint 150, field 8 fixed64
        bytes.extend_from_slice(&[0x38, 0x96, 0x01, 0x41, 1, 2, 3, 4, 5, 6, 7, 8]);
        let m = decode_runtimeoptions(&bytes).unwrap();
        assert_eq!(m.type_url, "x");
        assert_eq!(m.config_path, "/etc/sgrun/shim.toml");
        assert!(
            decode_runtimeoptions(&[0x12, 10, b'a']).is_err(),
            "truncated"
        );
    }

    #[test]
    fn runtimeoptions_read_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("shim.toml");
        std::fs::write(
            &f,
            "BinaryName = \"/usr/local/bin/sgrun\"\nRoot = \"/run/sg\"\nDefaultProfile = \"wordpress\"\n",
        )
        .unwrap();
        let a = any(
            "runtimeoptions.v1.Options",
            encode_runtimeoptions("", f.to_str().unwrap()),
        );
        let o = ShimOptions::from_any(Some(&a)).unwrap();
        assert_eq!(o.binary_name.as_deref(), Some("/usr/local/bin/sgrun"));
        assert_eq!(o.root_for("k8s.io"), PathBuf::from("/run/sg/k8s.io"));
        assert_eq!(o.default_profile.as_deref(), Some("wordpress"));
        // the URL form with a host prefix is the same type
        let a2 = any(
            "type.googleapis.com/runtimeoptions.v1.Options",
            a.value.clone(),
        );
        assert_eq!(ShimOptions::from_any(Some(&a2)).unwrap(), o);
        // no config path: defaults
        let a3 = any("runtimeoptions.v1.Options", Vec::new());
        assert_eq!(
            ShimOptions::from_any(Some(&a3)).unwrap(),
            ShimOptions::default()
        );
    }

    #[test]
    fn config_file_errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "BinaryNam = \"x\"\n").unwrap();
        let e = ShimOptions::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("BinaryNam"), "{e}");
        let e = ShimOptions::from_file(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn loosening_settings_are_refused() {
        let e = ShimOptions::from_toml("DefaultProfile = \"none\"").unwrap_err();
        assert!(e.contains("DefaultProfile"), "{e}");
        assert!(ShimOptions::from_toml("SystemdCgroup = true").is_err());
        assert!(ShimOptions::from_toml("SystemdCgroup = false").is_ok());
        assert!(ShimOptions::from_toml("Root = \"relative\"").is_err());
    }

    #[test]
    fn runc_options_are_read() {
        let o = RuncOptions {
            binary_name: "/opt/sgrun".into(),
            root: "/run/x".into(),
            ..Default::default()
        };
        let a = any(RUNC_OPTIONS_TYPE, o.write_to_bytes().unwrap());
        let s = ShimOptions::from_any(Some(&a)).unwrap();
        assert_eq!(s.binary_name.as_deref(), Some("/opt/sgrun"));
        assert_eq!(s.root.as_deref(), Some(Path::new("/run/x")));
        let o = RuncOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        let a = any(RUNC_OPTIONS_TYPE, o.write_to_bytes().unwrap());
        assert!(ShimOptions::from_any(Some(&a)).is_err());
    }

    #[test]
    fn site_mode_uses_root_verbatim() {
        let o = ShimOptions {
            root: Some("/tmp/r".into()),
            ..Default::default()
        };
        assert_eq!(o.site_root(), PathBuf::from("/tmp/r"));
        assert_eq!(o.root_for("sgrun"), PathBuf::from("/tmp/r/sgrun"));
        assert_eq!(
            ShimOptions::default().site_root(),
            PathBuf::from("/run/sgrun")
        );
        // the persisted file reads back, with or without the resolved root
        let p = Persisted {
            options: o.clone(),
            state_root: Some("/tmp/r".into()),
        };
        let back: Persisted = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back.options, o);
        assert_eq!(back.state_root.as_deref(), Some(Path::new("/tmp/r")));
        let old: Persisted =
            serde_json::from_str(r#"{"binary_name":"/x","root":null,"default_profile":null}"#)
                .unwrap();
        assert_eq!(old.options.binary_name.as_deref(), Some("/x"));
        assert_eq!(old.state_root, None);
    }

    #[test]
    fn an_unknown_type_is_an_error_naming_it() {
        let a = any("example.com/Other", vec![1, 2]);
        let e = ShimOptions::from_any(Some(&a)).unwrap_err().to_string();
        assert!(e.contains("example.com/Other"), "{e}");
    }
}

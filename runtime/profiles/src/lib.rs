//! Tenant profiles: what a class of workload (the WordPress stack, nginx alone, a shell) may do,
//! as layered TOML data under `profiles/`, resolved, checked and turned into OCI config.
//!
//! * [`Catalog`] finds profiles (built-in, or local files that may only tighten);
//! * [`Catalog::class`] merges a class with its layers and checks every rule
//!   ([`resolve`](crate::resolve));
//! * [`oci::seccomp`] is the profile's `linux.seccomp`, compiled by sgrun-seccomp;
//! * [`oci::apply`] applies a profile to a container's config, tightening only;
//! * [`Selection`] reads a container's choice from its annotations.
//!
//! The always-denied list ([`always`]) lives in code, not data: no file can change it.

pub mod always;
pub mod catalog;
pub mod constants;
pub mod error;
pub mod format;
pub mod model;
pub mod oci;
pub mod resolve;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use catalog::Catalog;
pub use error::{Origin, ProfileError, Result};
pub use oci::{Applied, Tightening};
pub use resolve::Profile;

/// Names the class a container runs under.
pub const ANNOTATION: &str = "io.sgrun.profile";
/// More calls to deny, comma-separated.
pub const ANNOTATION_DENY: &str = "io.sgrun.profile.deny";
/// Capabilities to drop from the class's set, comma-separated.
pub const ANNOTATION_DROP_CAPABILITIES: &str = "io.sgrun.profile.drop-capabilities";
/// `true`: denials are logged to the kernel log (audit type 1326).
pub const ANNOTATION_LOG_DENIALS: &str = "io.sgrun.profile.log-denials";

/// The profile used for a container that names none.
pub const DEFAULT_CLASS: &str = "oci-default";

/// A container's choice of profile, read from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub class: String,
    pub tightening: Tightening,
}

impl Selection {
    /// Reads `io.sgrun.profile*`. With no profile annotation the `default` class applies
    /// (`None`: no profile at all). Unknown `io.sgrun.profile.*` keys are refused: an
    /// annotation can only tighten, and a key sgrun does not know could be meant to loosen.
    pub fn from_annotations(
        annotations: Option<&HashMap<String, String>>,
        default: Option<&str>,
    ) -> Result<Option<Selection>> {
        let empty = HashMap::new();
        let annotations = annotations.unwrap_or(&empty);
        let mut tightening = Tightening::default();
        let mut keys: Vec<&String> = annotations.keys().collect();
        keys.sort();
        for key in keys {
            let value = &annotations[key];
            let Some(rest) = key.strip_prefix(ANNOTATION) else {
                continue;
            };
            let bad = |reason: String| ProfileError::Annotation {
                key: key.clone(),
                value: value.clone(),
                reason,
            };
            match rest {
                "" => {}
                ".deny" => {
                    for name in list(value) {
                        if sgrun_seccomp::syscall_number(&name).is_none() {
                            return Err(bad(format!(
                                "{name:?} is not an x86_64 system call; list syscall names \
                                 separated by commas"
                            )));
                        }
                        tightening.deny.push(name);
                    }
                }
                ".drop-capabilities" => {
                    for name in list(value) {
                        let canonical = if name.starts_with("CAP_") {
                            name.clone()
                        } else {
                            format!("CAP_{name}")
                        }
                        .to_ascii_uppercase();
                        let known: std::result::Result<oci_spec::runtime::Capability, _> =
                            serde_json::from_value(serde_json::Value::String(canonical.clone()));
                        if known.is_err() {
                            return Err(bad(format!("{name:?} is not a capability")));
                        }
                        tightening.drop_capabilities.push(canonical);
                    }
                }
                ".log-denials" => match value.as_str() {
                    "true" => tightening.log_denials = true,
                    "false" => {}
                    _ => return Err(bad("expected true or false".into())),
                },
                _ if rest.starts_with('.') => {
                    let loosening = ["allow", "add", "grant", "permit", "unconfined", "disable"]
                        .iter()
                        .any(|w| rest.contains(w));
                    if loosening {
                        return Err(ProfileError::AnnotationLoosens { key: key.clone() });
                    }
                    return Err(bad(format!(
                        "unknown profile annotation; the known ones are {ANNOTATION}, \
                         {ANNOTATION_DENY}, {ANNOTATION_DROP_CAPABILITIES} and \
                         {ANNOTATION_LOG_DENIALS}"
                    )));
                }
                // Some other key that merely starts with the same letters.
                _ => {}
            }
        }
        let class = match annotations.get(ANNOTATION) {
            Some(v) if matches!(v.as_str(), "unconfined" | "none" | "") => {
                return Err(ProfileError::AnnotationLoosens {
                    key: format!("{ANNOTATION}={v}"),
                })
            }
            Some(v) if !catalog::valid_name(v) => {
                return Err(ProfileError::Annotation {
                    key: ANNOTATION.into(),
                    value: v.clone(),
                    reason: "a profile name is lower-case letters, digits and dashes".into(),
                })
            }
            Some(v) => v.clone(),
            None => match default {
                Some(d) => d.to_owned(),
                None if tightening == Tightening::default() => return Ok(None),
                None => {
                    return Err(ProfileError::Annotation {
                        key: ANNOTATION_DENY.into(),
                        value: String::new(),
                        reason: format!("tightens a profile, but {ANNOTATION} names none"),
                    })
                }
            },
        };
        Ok(Some(Selection { class, tightening }))
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Compiles a profile (with a tightening) to BPF.
pub fn compile(
    profile: &Profile,
    tightening: &Tightening,
) -> Result<sgrun_seccomp::CompiledSeccomp> {
    sgrun_seccomp::compile(&oci::seccomp(profile, tightening)).map_err(|source| {
        ProfileError::Seccomp {
            profile: profile.name.clone(),
            source,
        }
    })
}

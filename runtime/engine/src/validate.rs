//! config.json loading and validation: a flat list of checks, each naming the JSON pointer of
//! what it refuses. Runs before anything is created, so a bad bundle leaves nothing behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{EngineError, Result};

/// Read and parse `bundle/config.json`: syntax errors carry line and column, type errors the
/// JSON pointer of the offending field.
pub fn load_config(config_path: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(config_path).map_err(|source| EngineError::ReadConfig {
        path: config_path.to_path_buf(),
        source,
    })?;
    parse_config(config_path, &text)
}

pub fn parse_config(config_path: &Path, text: &str) -> Result<Spec> {
    // Parse to a Value first: a syntax error then gets line:column, while a type error
    // (below) gets the pointer of the field, which is what a person needs to find it.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| EngineError::ConfigSyntax {
            path: config_path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
    serde_path_to_error::deserialize::<_, Spec>(value).map_err(|e| {
        let pointer = pointer_of(&e.path().to_string());
        EngineError::ConfigInvalid {
            path: config_path.to_path_buf(),
            pointer,
            message: strip_position(&e.inner().to_string()),
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde_path_to_error prints `linux.namespaces[0].type`; JSON pointer is
/// `/linux/namespaces/0/type`.
fn pointer_of(path: &str) -> String {
    if path == "." || path.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push('/');
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                out.push('/');
                out.push_str(&rest[1..end]);
                rest = &rest[end + 1..];
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

/// Semantic checks on a parsed spec. `bundle` resolves a relative root.path.
pub fn validate_spec(config_path: &Path, bundle: &Path, spec: &Spec) -> Result<()> {
    validate_spec_with(config_path, bundle, spec, false)
}

/// [`validate_spec`]; with `root_provided`, the root filesystem is made by a
/// [`crate::container::RootfsProvider`] after validation, so its path is not checked here
/// (the provider made it absolute and makes it reachable by the container's root).
pub fn validate_spec_with(
    config_path: &Path,
    bundle: &Path,
    spec: &Spec,
    root_provided: bool,
) -> Result<()> {
    let err = |pointer: &str, message: String| EngineError::ConfigInvalid {
        path: config_path.to_path_buf(),
        pointer: pointer.to_string(),
        message,
    };

    if !spec.version().starts_with("1.") {
        return Err(err(
            "/ociVersion",
            format!(
                "version {:?} is not supported; sgrun runs OCI runtime spec 1.x",
                spec.version()
            ),
        ));
    }

    let root = spec.root().as_ref().ok_or_else(|| {
        err(
            "/root",
            "missing: the container needs a root filesystem".into(),
        )
    })?;
    let rootfs = resolve(bundle, root.path());
    if !root_provided && !rootfs.is_dir() {
        return Err(err(
            "/root/path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| err("/process", "missing: nothing to run".into()))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => {
            return Err(err(
                "/process/args",
                "empty: give the program to run as the first element".into(),
            ))
        }
    }
    if !process.cwd().is_absolute() {
        return Err(err(
            "/process/cwd",
            format!("{:?} must be an absolute path", process.cwd()),
        ));
    }
    if let Some(rlimits) = process.rlimits() {
        for (i, r) in rlimits.iter().enumerate() {
            if r.soft() > r.hard() {
                return Err(err(
                    &format!("/process/rlimits/{i}"),
                    format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
                ));
            }
        }
    }

    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                return Err(err(
                    &format!("/mounts/{i}/destination"),
                    format!("{:?} must be an absolute path", m.destination()),
                ));
            }
        }
    }

    // libcontainer creates /dev/fd, /dev/stdin, /dev/stdout and /dev/stderr itself and fails
    // with EEXIST when they exist; without a /dev mount that would be in the image (runc skips
    // existing ones). Say so up front rather than fail half-way through create.
    let dev_mounted = spec
        .mounts()
        .as_ref()
        .is_some_and(|ms| ms.iter().any(|m| m.destination() == Path::new("/dev")));
    if !dev_mounted {
        for link in ["fd", "stdin", "stdout", "stderr"] {
            let p = rootfs.join("dev").join(link);
            if p.symlink_metadata().is_ok() {
                return Err(err(
                    "/mounts",
                    format!(
                        "there is no mount at /dev and the image already has {}; add a tmpfs mount at /dev (as `sgrun spec` does) or remove it from the image",
                        p.display()
                    ),
                ));
            }
        }
    }

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| err("/linux", "missing: sgrun runs Linux containers only".into()))?;
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(err(
                &format!("/linux/namespaces/{i}"),
                format!("namespace {:?} is listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.exists() {
                return Err(err(
                    &format!("/linux/namespaces/{i}/path"),
                    format!("{} does not exist", p.display()),
                ));
            }
        }
    }
    let has_userns = seen.contains(&LinuxNamespaceType::User);
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_userns {
        let joins = namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
        if !joins
            && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
                || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
        {
            return Err(err(
                "/linux/uidMappings",
                "a new user namespace needs both uidMappings and gidMappings".into(),
            ));
        }
    } else if has_maps {
        return Err(err(
            "/linux/uidMappings",
            "uid/gid mappings need a user namespace in /linux/namespaces".into(),
        ));
    }
    if has_userns && !root_provided {
        let host_root = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            maps.iter()
                .flatten()
                .find(|m| m.container_id() == 0)
                .map(|m| m.host_id())
        };
        if let (Some(uid), Some(gid)) = (
            host_root(linux.uid_mappings()),
            host_root(linux.gid_mappings()),
        ) {
            if let Some(dir) = untraversable_ancestor(&rootfs, uid, gid) {
                return Err(err(
                    "/root/path",
                    format!(
                        "the container's root (host uid {uid}, gid {gid}) cannot reach {}: {} is not searchable by it; give it o+x or chown it to the mapped range",
                        rootfs.display(),
                        dir.display()
                    ),
                ));
            }
        }
    }
    if spec.hostname().is_some() && !seen.contains(&LinuxNamespaceType::Uts) {
        return Err(err(
            "/hostname",
            "setting a hostname needs a uts namespace in /linux/namespaces".into(),
        ));
    }
    if let Some(cg) = linux.cgroups_path() {
        let s = cg.to_string_lossy();
        if s.split('/').any(|c| c == "..") {
            return Err(err(
                "/linux/cgroupsPath",
                format!("{s:?} must not contain `..`"),
            ));
        }
        if s.starts_with(':') || (s.contains(':') && !s.starts_with('/')) {
            return Err(err("/linux/cgroupsPath", format!("{s:?} looks like a systemd slice:prefix:name path; sgrun manages cgroupfs paths only (use e.g. /sgrun/<id>)")));
        }
    }
    if let Some(seccomp) = linux.seccomp() {
        if seccomp.listener_path().is_some() {
            return Err(err(
                "/linux/seccomp/listenerPath",
                "seccomp user notification is not supported by sgrun".into(),
            ));
        }
    }
    Ok(())
}

/// The first directory on the way to `path` (itself included) that host uid/gid `uid`:`gid`
/// may not search. The runtime bind-mounts the rootfs as the container's mapped root, so each
/// of them must be searchable by it.
fn untraversable_ancestor(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut dirs: Vec<&Path> = path.ancestors().collect();
    dirs.reverse();
    for dir in dirs {
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = m.mode();
        let ok = if m.uid() == uid {
            mode & 0o100 != 0
        } else if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Some(dir.to_path_buf());
        }
    }
    None
}

pub fn resolve(bundle: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        bundle.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/"},
            "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}],
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<()> {
        let p = Path::new("/b/config.json");
        let spec = parse_config(p, &v.to_string())?;
        validate_spec(p, Path::new("/b"), &spec)
    }

    #[test]
    fn pointer_translation() {
        assert_eq!(
            pointer_of("linux.namespaces[0].type"),
            "/linux/namespaces/0/type"
        );
        assert_eq!(pointer_of("process"), "/process");
        assert_eq!(pointer_of("."), "/");
    }

    #[test]
    fn untraversable_rootfs_parent_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("private");
        let rootfs = private.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        assert_eq!(
            untraversable_ancestor(&rootfs, 200000, 200000),
            Some(private.clone())
        );
        assert_eq!(untraversable_ancestor(&rootfs, me, me), None);
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(untraversable_ancestor(&rootfs, 200000, 200000), None);
    }

    #[test]
    fn accepts_base() {
        check(base()).unwrap();
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse_config(Path::new("/b/config.json"), "{\n  \"ociVersion\": ,\n}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/b/config.json:2:"), "{e}");
    }

    #[test]
    fn type_error_has_pointer() {
        let mut v = base();
        v["linux"]["namespaces"][1]["type"] = "bogus".into();
        let e = check(v).unwrap_err().to_string();
        assert!(e.contains("/linux/namespaces/1/type"), "{e}");
    }

    #[test]
    fn semantic_errors_name_their_field() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| v["ociVersion"] = "2.0.0".into()),
                "/ociVersion",
            ),
            (
                Box::new(|v| v["process"]["args"] = serde_json::json!([])),
                "/process/args",
            ),
            (
                Box::new(|v| v["process"]["cwd"] = "rel".into()),
                "/process/cwd",
            ),
            (
                Box::new(|v| v["root"]["path"] = "/nonexistent-sgrun".into()),
                "/root/path",
            ),
            (
                Box::new(|v| {
                    v["linux"]["namespaces"] = serde_json::json!([{"type":"pid"},{"type":"pid"}])
                }),
                "/linux/namespaces/1",
            ),
            (
                Box::new(|v| v["linux"]["namespaces"] = serde_json::json!([{"type":"user"}])),
                "/linux/uidMappings",
            ),
            (
                Box::new(|v| {
                    v["linux"]["uidMappings"] =
                        serde_json::json!([{"containerID":0,"hostID":1000,"size":1}])
                }),
                "/linux/uidMappings",
            ),
            (Box::new(|v| v["hostname"] = "x".into()), "/hostname"),
            (
                Box::new(|v| v["linux"]["cgroupsPath"] = "/a/../../b".into()),
                "/linux/cgroupsPath",
            ),
            (
                Box::new(|v| v["linux"]["cgroupsPath"] = "system.slice:x:y".into()),
                "/linux/cgroupsPath",
            ),
            (
                Box::new(|v| {
                    v["mounts"] = serde_json::json!([{"destination":"tmp","type":"tmpfs"}])
                }),
                "/mounts/0/destination",
            ),
            (
                Box::new(|v| v["mounts"] = serde_json::json!([])),
                "tmpfs mount at /dev",
            ),
            (
                Box::new(|v| {
                    v["process"]["rlimits"] =
                        serde_json::json!([{"type":"RLIMIT_NOFILE","soft":10,"hard":5}])
                }),
                "/process/rlimits/0",
            ),
        ];
        for (mutate, pointer) in cases {
            let mut v = base();
            mutate(&mut v);
            let e = check(v).unwrap_err().to_string();
            assert!(e.contains(pointer), "expected {pointer} in {e}");
        }
    }
}

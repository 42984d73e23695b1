//! What the host leaks to the container: its paths, processes, kernel addresses and the
//! cgroups of the other containers.

use std::os::unix::fs::MetadataExt;

use crate::env::Hints;
use crate::sys::{self, mountinfo};
use crate::tap::Outcome;

/// A mount's "root" field names the directory of the source filesystem that was mounted.
/// For bind mounts of host directories that is a host path (the bundle, the rootfs), which
/// tells a tenant where on the host it lives. Paths of depth two or more that do not exist
/// inside the container are counted as host paths, except in the tenant's own volume
/// (ESCAPE_OWN_VOLUME, matched by device number): that filesystem holds only the tenant's
/// data, so a path inside it (`/sites/<site>`) is relative to the tenant's own storage and
/// says nothing about the host's layout.
pub fn mountinfo_host_paths(h: &Hints) -> Outcome {
    let mut leaks = Vec::new();
    let mut other = Vec::new();
    for m in mountinfo() {
        if m.root == "/" {
            continue;
        }
        let depth = m.root.trim_matches('/').split('/').count();
        let line = format!("{} on {} ({})", m.root, m.mount_point, m.fstype);
        if h.on_own_volume(&m) {
            other.push(format!("{line}, inside the tenant's own volume {}", m.dev));
        } else if depth >= 2 && sys::stat(&m.root).is_none() {
            leaks.push(line);
        } else {
            other.push(line);
        }
    }
    let details = other
        .into_iter()
        .map(|l| format!("root field {l}"))
        .collect();
    if leaks.is_empty() {
        Outcome::defended("/proc/self/mountinfo root fields -> no host path").with(details)
    } else {
        Outcome::open(format!(
            "/proc/self/mountinfo shows host paths: {}",
            leaks.join(", ")
        ))
        .with(details)
    }
}

/// A shared pid namespace shows the host's processes. (NSpid cannot tell: it lists only
/// the levels the mounted /proc knows.) A process is foreign when it is a kernel thread
/// (parent pid 0 and not pid 1: only the initial pid namespace sees those) or when its
/// /proc/PID/root is not the container's root or cannot be looked at.
pub fn host_processes(_: &Hints) -> Outcome {
    let pids = sys::visible_pids();
    let root = sys::stat("/").map(|s| (s.st_dev, s.st_ino));
    let mut foreign = Vec::new();
    for pid in &pids {
        let status = sys::read(&format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        let name = field("Name:");
        if *pid != 1 && field("PPid:") == "0" {
            foreign.push(format!("{pid} ({name}, a kernel thread)"));
            continue;
        }
        match std::fs::metadata(format!("/proc/{pid}/root/")) {
            Ok(m) if Some((m.dev(), m.ino())) == root => {}
            Ok(_) => foreign.push(format!("{pid} ({name}, another root)")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // exited meanwhile
            Err(e) => foreign.push(format!("{pid} ({name}, root: {e})")),
        }
    }
    let summary = format!("{} processes visible in /proc", pids.len());
    if foreign.is_empty() {
        Outcome::defended(format!("{summary} -> all share the container's root"))
    } else {
        let n = foreign.len();
        foreign.truncate(6);
        Outcome::open(format!(
            "{summary}, {n} not the container's: {}",
            foreign.join(", ")
        ))
    }
}

/// Kernel symbol addresses defeat KASLR.
pub fn kernel_addresses(_: &Hints) -> Outcome {
    let text = match std::fs::read_to_string("/proc/kallsyms") {
        Ok(t) => t,
        Err(e) => return Outcome::defended(format!("read(/proc/kallsyms) -> {e}")),
    };
    let first: Vec<&str> = text.lines().take(50).collect();
    if first.is_empty() {
        return Outcome::defended("read(/proc/kallsyms) -> empty (masked)");
    }
    let nonzero = first
        .iter()
        .filter(|l| {
            l.split(' ')
                .next()
                .is_some_and(|a| a.chars().any(|c| c != '0'))
        })
        .count();
    if nonzero == 0 {
        Outcome::defended("read(/proc/kallsyms) -> addresses all zero (kptr_restrict)")
    } else {
        Outcome::open(format!(
            "read(/proc/kallsyms) -> {nonzero} of the first {} addresses are real",
            first.len()
        ))
    }
}

/// The cgroup paths this process is in, per controller list ("memory", "" for v2).
fn own_paths() -> Vec<(String, String)> {
    sys::read("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _ = f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// With a private cgroup namespace and cgroup mount, the container sees its own cgroup as
/// the root. Subdirectories at a mount's top that are not on its own path are other
/// groups: the host's slices or other containers.
pub fn host_cgroup_tree(_: &Hints) -> Outcome {
    let own = own_paths();
    let mut foreign = Vec::new();
    let mut checked = 0;
    for m in mountinfo()
        .iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
    {
        checked += 1;
        // Which of our paths belongs to this mount: v1 names its controllers in the
        // super options, v2 is the entry with an empty controller list.
        let path = own
            .iter()
            .find(|(ctl, _)| {
                if m.fstype == "cgroup2" {
                    ctl.is_empty()
                } else {
                    !ctl.is_empty()
                        && ctl
                            .split(',')
                            .all(|c| m.super_options.split(',').any(|o| o == c))
                }
            })
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        // The mount root is the mounted cgroup; the first component of our path below it
        // is our own branch.
        let rel = path
            .strip_prefix(m.root.as_str())
            .unwrap_or(&path)
            .trim_start_matches('/')
            .to_string();
        let ours = rel.split('/').next().unwrap_or("").to_string();
        let Ok(entries) = std::fs::read_dir(&m.mount_point) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) && name != ours {
                foreign.push(format!("{}/{name}", m.mount_point));
            }
        }
    }
    if foreign.is_empty() {
        Outcome::defended(format!(
            "{checked} cgroup mounts listed -> only the container's own group"
        ))
    } else {
        let n = foreign.len();
        foreign.truncate(8);
        Outcome::open(format!(
            "{n} foreign cgroups visible, e.g. {}",
            foreign.join(", ")
        ))
    }
}

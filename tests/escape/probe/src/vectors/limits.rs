//! Resource limits: a tenant without them can starve every other tenant on the host.

use crate::env::Hints;
use crate::sys::{self, mountinfo};
use crate::tap::Outcome;

/// The value of a cgroup file for this process: looks in the cgroup's own directory
/// under the mount (no cgroup namespace) and at the mount's top (a cgroup namespace
/// makes the own group the root). Returns (path, value).
fn cgroup_value(v1_controller: &str, v1_file: &str, v2_file: &str) -> Option<(String, String)> {
    let own = sys::read("/proc/self/cgroup").unwrap_or_default();
    for m in mountinfo() {
        let (file, path) =
            if m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == v1_controller) {
                let p = own.lines().find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    f.next()?;
                    let ctl = f.next()?;
                    ctl.split(',')
                        .any(|c| c == v1_controller)
                        .then(|| f.next().unwrap_or("").to_string())
                });
                (v1_file, p.unwrap_or_default())
            } else if m.fstype == "cgroup2" {
                let p = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string));
                (v2_file, p.unwrap_or_default())
            } else {
                continue;
            };
        let rel = path
            .strip_prefix(m.root.as_str())
            .unwrap_or(&path)
            .trim_matches('/')
            .to_string();
        for cand in [
            format!("{}/{rel}/{file}", m.mount_point),
            format!("{}/{file}", m.mount_point),
        ] {
            if let Some(v) = sys::read(&cand) {
                // cgroup v2 has no memory.max at its root; only a real value counts.
                return Some((cand.replace("//", "/"), v.trim().to_string()));
            }
        }
    }
    None
}

/// A limit is missing when it reads "max" (v2) or a v1 "unlimited" (2^63 rounded down to
/// the page size, or -1).
fn unlimited(v: &str) -> bool {
    v == "max" || v == "-1" || v.parse::<u64>().is_ok_and(|n| n >= 1 << 62)
}

/// A limit counts when it is set and the container cannot change it: the limit file must not
/// open for writing (opened and closed, never written). On cgroup v1 writing a limit needs no
/// capability, only the file's owner, so a read-write cgroup mount lets the container's root
/// lift its own limit.
fn limit(name: &str, ctl: &str, v1: &str, v2: &str) -> Outcome {
    match cgroup_value(ctl, v1, v2) {
        None => Outcome::open(format!("{name}: no readable {v1} or {v2} for this cgroup")),
        Some((p, v)) if unlimited(&v) => Outcome::open(format!("{p} = {v} -> unlimited")),
        Some((p, v)) => match std::fs::OpenOptions::new().write(true).open(&p) {
            Ok(_) => Outcome::open(format!(
                "{p} = {v}, but it opens for writing: the container can raise its own limit"
            )),
            Err(e) => Outcome::defended(format!("{p} = {v}, read-only to the container ({e})")),
        },
    }
}

pub fn memory_limit(_: &Hints) -> Outcome {
    limit("memory", "memory", "memory.limit_in_bytes", "memory.max")
}

pub fn pids_limit(_: &Hints) -> Outcome {
    limit("pids", "pids", "pids.max", "pids.max")
}

/// Filesystems that store nothing on disk, or only in memory (bounded by the memory
/// limit, since tmpfs pages are charged to the cgroup).
const NOT_DISK: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "tmpfs",
    "devtmpfs",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "fusectl",
    "configfs",
    "binfmt_misc",
    "hugetlbfs",
    "efivarfs",
    "autofs",
    "nsfs",
    "ramfs",
];

/// A writable disk filesystem without a per-tenant quota lets one tenant fill the host's
/// disk. The probe cannot see quotas from inside, so any writable disk mount is reported,
/// with its size, unless it is the tenant's own volume (ESCAPE_OWN_VOLUME, by device
/// number): a filesystem of its own whose size is the tenant's storage limit.
pub fn disk_limit(h: &Hints) -> Outcome {
    let mut writable = Vec::new();
    let mut details = Vec::new();
    for m in mountinfo() {
        let size = sys::statfs(&m.mount_point)
            .map(|s| format!("{} MiB", s.f_blocks.saturating_mul(s.f_bsize as u64) >> 20))
            .unwrap_or_else(sys::ename);
        let line = format!(
            "{} ({}, {}, {size})",
            m.mount_point,
            m.fstype,
            if m.read_only() { "ro" } else { "rw" }
        );
        if m.read_only() || NOT_DISK.contains(&m.fstype.as_str()) {
            details.push(line);
        } else if h.on_own_volume(&m) {
            details.push(format!(
                "{line}: the tenant's own volume {}, limited by its size",
                m.dev
            ));
        } else {
            writable.push(line);
        }
    }
    if writable.is_empty() {
        Outcome::defended("no writable disk filesystem mounted").with(details)
    } else {
        Outcome::open(format!(
            "writable disk filesystems with no per-tenant limit: {}",
            writable.join(", ")
        ))
        .with(details)
    }
}

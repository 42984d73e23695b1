//! What sgrun reads from and writes to a container's cgroups after create: its pids (ps),
//! statistics in runc's `events` shape, and limit updates.

use std::path::Path;

use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt};
use libcontainer::container::ContainerStatus;
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use crate::container::Runtime;
use crate::error::{EngineError, Result};

pub fn manager(id: &str, cgroup_path: &Path) -> Result<AnyCgroupManager> {
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: cgroup_path.to_path_buf(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| EngineError::Cgroup {
        id: id.into(),
        path: cgroup_path.into(),
        action: "opening",
        source: Box::new(e),
    })
}

/// Host pids of every process in the container's cgroup.
pub fn pids(rt: &Runtime, id: &str) -> Result<Vec<i32>> {
    let _lock = rt.lock(id, false)?;
    let c = rt.load(id)?;
    if c.status() == ContainerStatus::Stopped {
        return Ok(Vec::new());
    }
    let path = rt.record(id)?.cgroup_path;
    let mut pids: Vec<i32> = manager(id, &path)?
        .get_all_pids()
        .map_err(|e| EngineError::Cgroup {
            id: id.into(),
            path: path.clone(),
            action: "listing pids",
            source: Box::new(e),
        })?
        .into_iter()
        .map(|p| p.as_raw())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// One `{"type":"stats","id":..,"data":{..}}` record with runc's field names.
pub fn stats_event(rt: &Runtime, id: &str) -> Result<Value> {
    let _lock = rt.lock(id, false)?;
    let c = rt.load(id)?;
    if !matches!(
        c.status(),
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
    ) {
        return Err(EngineError::wrong_status(
            id,
            c.status(),
            "events",
            "created, running or paused",
        ));
    }
    let path = rt.record(id)?.cgroup_path;
    let s = manager(id, &path)?
        .stats()
        .map_err(|e| EngineError::Cgroup {
            id: id.into(),
            path: path.clone(),
            action: "reading statistics",
            source: Box::new(e),
        })?;
    let mem = |d: &libcgroups::stats::MemoryData| json!({"usage": d.usage, "max": d.max_usage, "failcnt": d.fail_count, "limit": d.limit});
    let blk = |v: &[libcgroups::stats::BlkioDeviceStat]| {
        v.iter().map(|d| json!({"major": d.major, "minor": d.minor, "op": d.op_type.clone().unwrap_or_default(), "value": d.value})).collect::<Vec<_>>()
    };
    Ok(json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {
                "usage": {
                    "total": s.cpu.usage.usage_total,
                    "percpu": s.cpu.usage.per_core_usage_total,
                    "kernel": s.cpu.usage.usage_kernel,
                    "user": s.cpu.usage.usage_user,
                },
                "throttling": {
                    "periods": s.cpu.throttling.periods,
                    "throttledPeriods": s.cpu.throttling.throttled_periods,
                    "throttledTime": s.cpu.throttling.throttled_time,
                },
            },
            "memory": {
                "cache": s.memory.cache,
                "usage": mem(&s.memory.memory),
                "swap": mem(&s.memory.memswap),
                "kernel": mem(&s.memory.kernel),
                "kernelTCP": mem(&s.memory.kernel_tcp),
                "raw": s.memory.stats,
            },
            "pids": {"current": s.pids.current, "limit": s.pids.limit},
            "blkio": {
                "ioServiceBytesRecursive": blk(&s.blkio.service_bytes),
                "ioServicedRecursive": blk(&s.blkio.serviced),
            },
            "hugetlb": s.hugetlb.iter().map(|(k, v)| (k.clone(), json!({"usage": v.usage, "max": v.max_usage, "failcnt": v.fail_count}))).collect::<serde_json::Map<_, _>>(),
        }
    }))
}

/// Apply new limits to a created, running or paused container.
pub fn update(rt: &Runtime, id: &str, resources: &LinuxResources) -> Result<()> {
    let _lock = rt.lock(id, true)?;
    let c = rt.load(id)?;
    if c.status() == ContainerStatus::Stopped {
        return Err(EngineError::wrong_status(
            id,
            c.status(),
            "update",
            "created, running or paused",
        ));
    }
    let path = rt.record(id)?.cgroup_path;
    let opt = ControllerOpt {
        resources,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    };
    manager(id, &path)?
        .apply(&opt)
        .map_err(|e| EngineError::Cgroup {
            id: id.into(),
            path,
            action: "applying new limits",
            source: Box::new(e),
        })
}

/// Move `pid` into every cgroup the process `like` is in, wherever that differs from this
/// process's own (a child inherits ours). The exec'd process belongs exactly where the
/// container's init is, in every hierarchy (v1 controllers, named ones, and the unified one
/// of a hybrid host, which libcgroups' v1 manager leaves alone). One read of mountinfo
/// instead of libcgroups' one per controller.
pub fn join_cgroups_of(id: &str, like: i32, pid: nix::unistd::Pid) -> Result<()> {
    for (dir, _) in cgroup_dirs_of(id, like)? {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.as_raw().to_string()).map_err(|e| EngineError::Cgroup {
            id: id.into(),
            path: procs.clone(),
            action: "joining",
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// A file a process writes "0" to in order to move itself into a cgroup (see
/// [`self_move_files`]).
pub struct SelfMove {
    pub file: std::fs::File,
    pub path: std::path::PathBuf,
}

/// The files through which a forked child moves *itself* into the cgroups of `like`: for a
/// v1 hierarchy its `tasks` file, for cgroup2 `cgroup.procs`; opened here (by the privileged
/// parent, before fork) so the child only writes "0".
///
/// Why the child moves itself, one thread, through `tasks`: moving a process (cgroup.procs, or
/// any other task by pid) takes the kernel's global cgroup_threadgroup_rwsem for writing,
/// and the first such write after a quiet moment waits for an RCU grace period (4.5-12 ms
/// on this host: most of what an exec costs). Moving the *calling thread* ("0" written to
/// `tasks`) skips that lock (cgroup_procs_write_start: the thread cannot exit or exec under
/// us, cgroup_mutex excludes the rest). The child is single-threaded, so its one thread is
/// the whole process. cgroup2 refuses thread moves across domains, so there cgroup.procs
/// (and the lock) remains.
pub fn self_move_files(id: &str, like: i32) -> Result<Vec<SelfMove>> {
    cgroup_dirs_of(id, like)?
        .into_iter()
        .map(|(dir, v2)| {
            let path = dir.join(if v2 { "cgroup.procs" } else { "tasks" });
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| EngineError::Cgroup {
                    id: id.into(),
                    path: path.clone(),
                    action: "opening to join",
                    source: Box::new(e),
                })?;
            Ok(SelfMove { file, path })
        })
        .collect()
}

/// The cgroup directories of `like` that differ from this process's own, each with whether it
/// is a cgroup2 one.
fn cgroup_dirs_of(id: &str, like: i32) -> Result<Vec<(std::path::PathBuf, bool)>> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| EngineError::io("reading", p, e));
    let theirs = read(&format!("/proc/{like}/cgroup"))?;
    let ours = read("/proc/self/cgroup")?;
    let mut mounts: Option<Vec<CgroupMount>> = None;
    let mut out = Vec::new();
    for line in theirs.lines() {
        let Some((hierarchy, path)) = line
            .split_once(':')
            .and_then(|(_, rest)| rest.split_once(':'))
        else {
            continue;
        };
        let ours_same = ours
            .lines()
            .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
            .any(|(h, p)| h == hierarchy && p == path);
        if ours_same {
            continue;
        }
        let mounts = match &mounts {
            Some(m) => m,
            None => mounts.insert(cgroup_mounts(&read("/proc/self/mountinfo")?)),
        };
        let mount =
            mounts
                .iter()
                .find(|m| m.serves(hierarchy))
                .ok_or_else(|| EngineError::Cgroup {
                    id: id.into(),
                    path: path.into(),
                    action: "finding the mount of its hierarchy",
                    source: format!("no cgroup mount serves {hierarchy:?}").into(),
                })?;
        out.push((
            mount.point.join(path.trim_start_matches('/')),
            mount.controllers.is_none(),
        ));
    }
    Ok(out)
}

#[derive(Debug, PartialEq)]
pub(crate) struct CgroupMount {
    pub(crate) point: std::path::PathBuf,
    /// Controllers (and `name=` of named hierarchies) of a v1 mount; None for cgroup2.
    pub(crate) controllers: Option<Vec<String>>,
}

impl CgroupMount {
    /// Does this mount serve the hierarchy named in /proc/PID/cgroup (`memory`, `cpu,cpuacct`,
    /// `name=systemd`, or empty for cgroup2)?
    pub(crate) fn serves(&self, hierarchy: &str) -> bool {
        match &self.controllers {
            None => hierarchy.is_empty(),
            Some(ctrls) => {
                !hierarchy.is_empty() && hierarchy.split(',').all(|h| ctrls.iter().any(|c| c == h))
            }
        }
    }
}

/// The cgroup mounts of mountinfo that show a hierarchy from its root.
pub(crate) fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let sup: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || sup.len() < 3 || fields[3] != "/" {
            continue;
        }
        let point = std::path::PathBuf::from(fields[4].replace("\\040", " "));
        match sup[0] {
            "cgroup2" => out.push(CgroupMount {
                point,
                controllers: None,
            }),
            "cgroup" => out.push(CgroupMount {
                point,
                controllers: Some(sup[2].split(',').map(str::to_string).collect()),
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
41 35 0:36 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
42 35 0:36 /sub /mnt/memsub rw,nosuid - cgroup cgroup rw,memory
";

    #[test]
    fn mounts_serve_their_hierarchies() {
        let m = cgroup_mounts(MOUNTINFO);
        assert_eq!(
            m.len(),
            4,
            "bind mounts of a sub-cgroup are not hierarchy roots: {m:?}"
        );
        let find = |h: &str| {
            m.iter()
                .find(|m| m.serves(h))
                .map(|m| m.point.display().to_string())
        };
        assert_eq!(find("").as_deref(), Some("/sys/fs/cgroup/unified"));
        assert_eq!(find("memory").as_deref(), Some("/sys/fs/cgroup/memory"));
        assert_eq!(
            find("cpu,cpuacct").as_deref(),
            Some("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            find("name=systemd").as_deref(),
            Some("/sys/fs/cgroup/systemd")
        );
        assert_eq!(find("pids"), None);
    }
}

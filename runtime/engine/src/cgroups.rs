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

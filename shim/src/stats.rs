//! `sgrun events --stats` (runc's stats event, JSON) to the metrics message containerd
//! decodes: `io.containerd.cgroups.v1.Metrics` on a cgroup-v1 or hybrid host,
//! `io.containerd.cgroups.v2.Metrics` on a unified one (what containerd-shim-runc-v2 sends).

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::{well_known_types::any::Any, Message, MessageField};
use serde_json::Value;

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

fn raw(data: &Value, key: &str) -> u64 {
    u(data, &["memory", "raw", key])
}

fn entry(v: &Value) -> MessageField<v1::MemoryEntry> {
    MessageField::some(v1::MemoryEntry {
        usage: u(v, &["usage"]),
        max: u(v, &["max"]),
        failcnt: u(v, &["failcnt"]),
        limit: u(v, &["limit"]),
        ..Default::default()
    })
}

/// The cgroup-v1 message. `event` is the whole event (`{"type":"stats","data":{..}}`).
pub fn to_v1(event: &Value) -> v1::Metrics {
    let d = &event["data"];
    let mem = &d["memory"];
    let blk = |key: &str| -> Vec<v1::BlkIOEntry> {
        d["blkio"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| v1::BlkIOEntry {
                        op: e["op"].as_str().unwrap_or_default().to_string(),
                        major: u(e, &["major"]),
                        minor: u(e, &["minor"]),
                        value: u(e, &["value"]),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    v1::Metrics {
        pids: MessageField::some(v1::PidsStat {
            current: u(d, &["pids", "current"]),
            limit: u(d, &["pids", "limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: u(d, &["cpu", "usage", "total"]),
                kernel: u(d, &["cpu", "usage", "kernel"]),
                user: u(d, &["cpu", "usage", "user"]),
                per_cpu: d["cpu"]["usage"]["percpu"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: u(d, &["cpu", "throttling", "periods"]),
                throttled_periods: u(d, &["cpu", "throttling", "throttledPeriods"]),
                throttled_time: u(d, &["cpu", "throttling", "throttledTime"]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: u(mem, &["cache"]),
            rss: raw(d, "rss"),
            rss_huge: raw(d, "rss_huge"),
            mapped_file: raw(d, "mapped_file"),
            dirty: raw(d, "dirty"),
            writeback: raw(d, "writeback"),
            pg_pg_in: raw(d, "pgpgin"),
            pg_pg_out: raw(d, "pgpgout"),
            pg_fault: raw(d, "pgfault"),
            pg_maj_fault: raw(d, "pgmajfault"),
            inactive_anon: raw(d, "inactive_anon"),
            active_anon: raw(d, "active_anon"),
            inactive_file: raw(d, "inactive_file"),
            active_file: raw(d, "active_file"),
            unevictable: raw(d, "unevictable"),
            hierarchical_memory_limit: raw(d, "hierarchical_memory_limit"),
            hierarchical_swap_limit: raw(d, "hierarchical_memsw_limit"),
            total_cache: raw(d, "total_cache"),
            total_rss: raw(d, "total_rss"),
            total_rss_huge: raw(d, "total_rss_huge"),
            total_mapped_file: raw(d, "total_mapped_file"),
            total_dirty: raw(d, "total_dirty"),
            total_writeback: raw(d, "total_writeback"),
            total_pg_pg_in: raw(d, "total_pgpgin"),
            total_pg_pg_out: raw(d, "total_pgpgout"),
            total_pg_fault: raw(d, "total_pgfault"),
            total_pg_maj_fault: raw(d, "total_pgmajfault"),
            total_inactive_anon: raw(d, "total_inactive_anon"),
            total_active_anon: raw(d, "total_active_anon"),
            total_inactive_file: raw(d, "total_inactive_file"),
            total_active_file: raw(d, "total_active_file"),
            total_unevictable: raw(d, "total_unevictable"),
            usage: entry(&mem["usage"]),
            swap: entry(&mem["swap"]),
            kernel: entry(&mem["kernel"]),
            kernel_tcp: entry(&mem["kernelTCP"]),
            ..Default::default()
        }),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: blk("ioServiceBytesRecursive"),
            io_serviced_recursive: blk("ioServicedRecursive"),
            ..Default::default()
        }),
        hugetlb: d["hugetlb"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(size, h)| v1::HugetlbStat {
                        pagesize: size.clone(),
                        usage: u(h, &["usage"]),
                        max: u(h, &["max"]),
                        failcnt: u(h, &["failcnt"]),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// The cgroup-v2 message (libcgroups reports CPU time in nanoseconds on both versions).
pub fn to_v2(event: &Value) -> v2::Metrics {
    let d = &event["data"];
    let mem = &d["memory"];
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: u(d, &["pids", "current"]),
            limit: u(d, &["pids", "limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: u(d, &["cpu", "usage", "total"]) / 1000,
            user_usec: u(d, &["cpu", "usage", "user"]) / 1000,
            system_usec: u(d, &["cpu", "usage", "kernel"]) / 1000,
            nr_periods: u(d, &["cpu", "throttling", "periods"]),
            nr_throttled: u(d, &["cpu", "throttling", "throttledPeriods"]),
            throttled_usec: u(d, &["cpu", "throttling", "throttledTime"]) / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: raw(d, "anon"),
            file: raw(d, "file"),
            kernel_stack: raw(d, "kernel_stack"),
            slab: raw(d, "slab"),
            sock: raw(d, "sock"),
            shmem: raw(d, "shmem"),
            file_mapped: raw(d, "file_mapped"),
            file_dirty: raw(d, "file_dirty"),
            file_writeback: raw(d, "file_writeback"),
            inactive_anon: raw(d, "inactive_anon"),
            active_anon: raw(d, "active_anon"),
            inactive_file: raw(d, "inactive_file"),
            active_file: raw(d, "active_file"),
            unevictable: raw(d, "unevictable"),
            pgfault: raw(d, "pgfault"),
            pgmajfault: raw(d, "pgmajfault"),
            usage: u(mem, &["usage", "usage"]),
            usage_limit: u(mem, &["usage", "limit"]),
            swap_usage: u(mem, &["swap", "usage"]),
            swap_limit: u(mem, &["swap", "limit"]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Is /sys/fs/cgroup a cgroup2 mount (unified host)?
pub fn unified_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The Any for StatsResponse, with the type URL containerd resolves (the message's full name).
pub fn to_any(
    event: &Value,
    unified: bool,
) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    let (type_url, value) = if unified {
        (
            "io.containerd.cgroups.v2.Metrics",
            to_v2(event).write_to_bytes()?,
        )
    } else {
        (
            "io.containerd.cgroups.v1.Metrics",
            to_v1(event).write_to_bytes()?,
        )
    };
    Ok(Any {
        type_url: type_url.into(),
        value,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        serde_json::json!({"type": "stats", "id": "c", "data": {
            "cpu": {"usage": {"total": 5_000_000, "percpu": [3_000_000, 2_000_000], "kernel": 1_000_000, "user": 4_000_000},
                    "throttling": {"periods": 2, "throttledPeriods": 1, "throttledTime": 7000}},
            "memory": {"cache": 10, "usage": {"usage": 4096, "max": 8192, "failcnt": 0, "limit": 1 << 30},
                       "swap": {"usage": 1, "max": 2, "failcnt": 0, "limit": 3},
                       "kernel": {}, "kernelTCP": {},
                       "raw": {"rss": 111, "total_rss": 222, "pgfault": 5, "anon": 9}},
            "pids": {"current": 3, "limit": 64},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 512}],
                      "ioServicedRecursive": []},
            "hugetlb": {"2MB": {"usage": 0, "max": 0, "failcnt": 0}}
        }})
    }

    #[test]
    fn v1_carries_what_ctr_and_cri_read() {
        let m = to_v1(&event());
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 64);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.per_cpu, vec![3_000_000, 2_000_000]);
        assert_eq!(m.cpu.throttling.throttled_periods, 1);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 1 << 30);
        assert_eq!(m.memory.rss, 111);
        assert_eq!(m.memory.total_rss, 222);
        assert_eq!(m.memory.swap.limit, 3);
        assert_eq!(m.blkio.io_service_bytes_recursive[0].op, "Read");
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }

    #[test]
    fn v2_converts_nanoseconds() {
        let m = to_v2(&event());
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.cpu.throttled_usec, 7);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.anon, 9);
        assert_eq!(m.pids.current, 3);
    }

    #[test]
    fn missing_fields_are_zero() {
        let m = to_v1(&serde_json::json!({"type": "stats", "data": {}}));
        assert_eq!(m.pids.current, 0);
        assert_eq!(m.memory.usage.usage, 0);
        let a = to_any(&event(), false).unwrap();
        assert_eq!(a.type_url, "io.containerd.cgroups.v1.Metrics");
        assert_eq!(
            v1::Metrics::parse_from_bytes(&a.value)
                .unwrap()
                .pids
                .current,
            3
        );
    }
}

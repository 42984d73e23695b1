//! What an SRE reads about a live container: a statistics sample (`sgrun stats`), the
//! counters that become events (`sgrun events`: OOM kills, pids-limit hits), the processes
//! with host and container pids and users (`sgrun ps`), and the resolved configuration
//! (`sgrun inspect`).
//!
//! Counters are read straight from the cgroup files (v1 on a hybrid host, or the unified v2
//! hierarchy) and from the init's /proc: one small read per value, nothing parsed twice, so a
//! table of many containers refreshing every second stays cheap. Nothing here writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libcontainer::container::ContainerStatus;
use serde::Serialize;
use serde_json::{json, Value};

use crate::container::Runtime;
use crate::error::{status_name, EngineError, Result};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a container's cgroup files are: one directory per v1 controller, or one v2 dir.
#[derive(Debug, Clone)]
pub enum CgroupDirs {
    V1 { rel: PathBuf },
    V2 { dir: PathBuf },
}

impl CgroupDirs {
    pub fn of(cgroup_path: &Path) -> Self {
        let rel = cgroup_path
            .strip_prefix("/")
            .unwrap_or(cgroup_path)
            .to_path_buf();
        if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
            CgroupDirs::V2 {
                dir: Path::new(CGROUP_ROOT).join(rel),
            }
        } else {
            CgroupDirs::V1 { rel }
        }
    }

    /// The file `name` of `controller` (the controller is ignored on v2).
    fn file(&self, controller: &str, name: &str) -> PathBuf {
        match self {
            CgroupDirs::V1 { rel } => Path::new(CGROUP_ROOT).join(controller).join(rel).join(name),
            CgroupDirs::V2 { dir } => dir.join(name),
        }
    }

    fn read(&self, controller: &str, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(controller, name)).ok()
    }

    fn is_v2(&self) -> bool {
        matches!(self, CgroupDirs::V2 { .. })
    }
}

/// One reading of a container's counters. Rates (CPU %) come from two samples.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub id: String,
    pub status: String,
    pub pid: i32,
    /// Monotonic time of the reading, nanoseconds (CLOCK_MONOTONIC).
    #[serde(skip)]
    pub at_ns: u64,
    /// CPU time of every process of the container, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use without the inactive page cache (what the OOM killer weighs), bytes.
    pub memory_bytes: u64,
    /// memory.usage_in_bytes / memory.current as the kernel reports it.
    pub memory_raw_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub oom_kills: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// Forks refused at the pids limit (pids.events "max").
    pub pids_limit_hits: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// Per interface of the container's network namespace: (rx bytes, tx bytes).
    pub net: BTreeMap<String, (u64, u64)>,
}

impl Sample {
    pub fn net_rx(&self) -> u64 {
        self.net.values().map(|v| v.0).sum()
    }
    pub fn net_tx(&self) -> u64 {
        self.net.values().map(|v| v.1).sum()
    }

    /// CPU use between `prev` and `self`, in percent of one CPU (200% = two CPUs busy).
    pub fn cpu_percent(&self, prev: &Sample) -> f64 {
        let wall = self.at_ns.saturating_sub(prev.at_ns);
        if wall == 0 {
            return 0.0;
        }
        self.cpu_ns.saturating_sub(prev.cpu_ns) as f64 * 100.0 / wall as f64
    }
}

pub fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain integers; all zeroes is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes one timespec that lives on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn num(s: Option<String>) -> Option<u64> {
    s.and_then(|t| t.trim().parse().ok())
}

/// `key value` lines (memory.stat, memory.oom_control, pids.events, cpu.stat).
fn keyed(text: &Option<String>, key: &str) -> Option<u64> {
    text.as_deref()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A v1 limit of "no limit" is a page-rounded i64::MAX; v2 writes "max".
fn limit(v: Option<String>) -> Option<u64> {
    let t = v?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|n| *n < (1u64 << 62))
}

/// Bytes read and written, from blkio (v1) or io.stat (v2).
fn io_bytes(dirs: &CgroupDirs) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    if dirs.is_v2() {
        for line in dirs.read("", "io.stat").unwrap_or_default().lines() {
            for kv in line.split_whitespace().skip(1) {
                match kv.split_once('=') {
                    Some(("rbytes", v)) => r += v.parse::<u64>().unwrap_or(0),
                    Some(("wbytes", v)) => w += v.parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
    } else {
        // The throttle file counts every request, also without a CFQ/BFQ scheduler.
        let text = dirs
            .read("blkio", "blkio.throttle.io_service_bytes_recursive")
            .or_else(|| dirs.read("blkio", "blkio.throttle.io_service_bytes"))
            .unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 3 {
                match f[1] {
                    "Read" => r += f[2].parse::<u64>().unwrap_or(0),
                    "Write" => w += f[2].parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
    }
    (r, w)
}

/// /proc/<pid>/net/dev: the interfaces of the network namespace `pid` is in.
pub fn net_dev(pid: i32) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return out;
    };
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            out.insert(name.trim().to_string(), (f[0], f[8]));
        }
    }
    out
}

/// Status, pid and cgroup path of a container, under its shared lock.
pub fn locate(rt: &Runtime, id: &str) -> Result<(ContainerStatus, i32, PathBuf)> {
    let _lock = rt.lock(id, false)?;
    let c = rt.load(id)?;
    let pid = c.pid().map(|p| p.as_raw()).unwrap_or(0);
    Ok((c.status(), pid, rt.record(id)?.cgroup_path))
}

/// Read one sample. A stopped container has no counters: an error naming its status.
pub fn sample(rt: &Runtime, id: &str) -> Result<Sample> {
    let _span = tracing::info_span!("container", id).entered();
    let (status, pid, cgroup_path) = locate(rt, id)?;
    if status == ContainerStatus::Stopped {
        return Err(EngineError::wrong_status(
            id,
            status,
            "stats",
            "created, running or paused",
        ));
    }
    Ok(sample_of(id, status, pid, &CgroupDirs::of(&cgroup_path)))
}

pub fn sample_of(id: &str, status: ContainerStatus, pid: i32, dirs: &CgroupDirs) -> Sample {
    let at_ns = monotonic_ns();
    let (cpu_ns, memory_raw, memory_limit, stat, oom, pids_events) = if dirs.is_v2() {
        let cpu = keyed(&dirs.read("", "cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
        (
            cpu,
            num(dirs.read("", "memory.current")).unwrap_or(0),
            limit(dirs.read("", "memory.max")),
            dirs.read("", "memory.stat"),
            keyed(&dirs.read("", "memory.events"), "oom_kill").unwrap_or(0),
            dirs.read("", "pids.events"),
        )
    } else {
        (
            num(dirs.read("cpuacct", "cpuacct.usage")).unwrap_or(0),
            num(dirs.read("memory", "memory.usage_in_bytes")).unwrap_or(0),
            limit(dirs.read("memory", "memory.limit_in_bytes")),
            dirs.read("memory", "memory.stat"),
            keyed(&dirs.read("memory", "memory.oom_control"), "oom_kill").unwrap_or(0),
            dirs.read("pids", "pids.events"),
        )
    };
    let inactive = keyed(&stat, "total_inactive_file")
        .or_else(|| keyed(&stat, "inactive_file"))
        .unwrap_or(0);
    let (io_read_bytes, io_write_bytes) = io_bytes(dirs);
    Sample {
        id: id.into(),
        status: status_name(status).into(),
        pid,
        at_ns,
        cpu_ns,
        memory_bytes: memory_raw.saturating_sub(inactive),
        memory_raw_bytes: memory_raw,
        memory_limit_bytes: memory_limit,
        oom_kills: oom,
        pids: num(dirs.read("pids", "pids.current")).unwrap_or(0),
        pids_limit: limit(dirs.read("pids", "pids.max")),
        pids_limit_hits: keyed(&pids_events, "max").unwrap_or(0),
        io_read_bytes,
        io_write_bytes,
        net: if pid > 0 {
            net_dev(pid)
        } else {
            BTreeMap::new()
        },
    }
}

/// One process of a container, as `sgrun ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcInfo {
    /// Pid on the host.
    pub pid: i32,
    /// Pid inside the container's pid namespace.
    pub container_pid: Option<i32>,
    pub ppid: i32,
    /// Effective uid on the host, and as the container sees it.
    pub host_uid: u32,
    pub uid: Option<u32>,
    /// The container's name for `uid` (its /etc/passwd).
    pub user: Option<String>,
    pub state: String,
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub command: String,
}

/// Map a host id back through a uid_map/gid_map ("inside outside count" lines).
pub fn map_back(map: &str, host: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (f.len() == 3 && (host as u64) >= f[1] && (host as u64) < f[1] + f[2])
            .then(|| (f[0] + host as u64 - f[1]) as u32)
    })
}

pub fn processes(rt: &Runtime, id: &str) -> Result<Vec<ProcInfo>> {
    let _span = tracing::info_span!("container", id).entered();
    let pids = crate::cgroups::pids(rt, id)?;
    let init = pids.first().copied();
    let (_, init_pid, _) = locate(rt, id)?;
    let uid_map = std::fs::read_to_string(format!("/proc/{init_pid}/uid_map")).unwrap_or_default();
    let passwd = if init_pid > 0 && init.is_some() {
        crate::users::read_container_file(id, init_pid, "/etc/passwd")
            .ok()
            .flatten()
    } else {
        None
    };
    // SAFETY: sysconf with a valid name.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut out = Vec::new();
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue; // exited meanwhile
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let host_uid: u32 = field("Uid:")
            .and_then(|v| v.split_whitespace().nth(1).and_then(|x| x.parse().ok()))
            .unwrap_or(u32::MAX);
        let container_pid =
            field("NSpid:").and_then(|v| v.split_whitespace().last().and_then(|x| x.parse().ok()));
        let uid = if uid_map.trim().is_empty() {
            Some(host_uid)
        } else {
            map_back(&uid_map, host_uid)
        };
        let user = uid.and_then(|u| {
            passwd.as_deref()?.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[2] == u.to_string()).then(|| f[0].to_string())
            })
        });
        let after: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let at = |i: usize| {
            after
                .get(i)
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut command = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        if command.is_empty() {
            command = format!("[{}]", field("Name:").unwrap_or_default());
        }
        out.push(ProcInfo {
            pid,
            container_pid,
            ppid: at(1) as i32,
            host_uid,
            uid,
            user,
            state: after.first().unwrap_or(&"?").to_string(),
            // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command.
            cpu_seconds: (at(11) + at(12)) as f64 / tick,
            rss_bytes: at(21) * page,
            command,
        });
    }
    Ok(out)
}

/// The resolved configuration of a container: what it runs as and under which limits.
pub fn inspect(rt: &Runtime, id: &str) -> Result<Value> {
    let _span = tracing::info_span!("container", id).entered();
    let state = {
        let _lock = rt.lock(id, false)?;
        rt.state(id)?
    };
    let record = rt.record(id)?;
    let spec = rt.saved_spec(id)?;
    let v = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let linux = &v["linux"];
    let process = &v["process"];
    let range = |m: &Value| -> Value {
        match m.as_array() {
            Some(a) if !a.is_empty() => Value::Array(
                a.iter()
                    .map(|e| {
                        json!({"container": e["containerID"], "host": e["hostID"], "size": e["size"]})
                    })
                    .collect(),
            ),
            _ => Value::Null,
        }
    };
    let seccomp = &linux["seccomp"];
    let mounts: Vec<Value> = v["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            json!({
                "destination": m["destination"],
                "type": m["type"],
                "source": m["source"],
                "options": m["options"],
            })
        })
        .collect();
    Ok(json!({
        "id": id,
        "status": state.status,
        "pid": state.pid,
        "created": state.created,
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "profile": record.profile,
        "user_namespace": {
            "uid_mappings": range(&linux["uidMappings"]),
            "gid_mappings": range(&linux["gidMappings"]),
        },
        "process": {
            "args": process["args"],
            "cwd": process["cwd"],
            "user": process["user"],
            "terminal": process["terminal"],
            "no_new_privileges": process["noNewPrivileges"],
            "capabilities": process["capabilities"],
            "rlimits": process["rlimits"],
        },
        "seccomp": if seccomp.is_null() && record.extra_seccomp.is_none() { Value::Null } else { json!({
            "default_action": seccomp["defaultAction"],
            "rules": seccomp["syscalls"].as_array().map(|a| a.len()).unwrap_or(0),
            "profile_filter": record.extra_seccomp.is_some(),
        })},
        "limits": linux["resources"],
        "cgroup_path": record.cgroup_path,
        "namespaces": linux["namespaces"],
        "masked_paths": linux["maskedPaths"],
        "readonly_paths": linux["readonlyPaths"],
        "mounts": mounts,
        "annotations": v["annotations"],
        "hostname": v["hostname"],
    }))
}

/// What `sgrun events` remembers of a container between two polls.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub status: String,
    pub pid: i32,
    pub oom_kills: u64,
    pub pids_limit_hits: u64,
    pub pids_limit: Option<u64>,
}

/// Read what `events` watches. The counters are read whatever the status: an OOM kill of the
/// init stops the container in the same instant, and the count must still be seen.
pub fn watch(rt: &Runtime, id: &str) -> Result<Watch> {
    let _span = tracing::info_span!("container", id).entered();
    let (status, pid, cgroup_path) = locate(rt, id)?;
    let dirs = CgroupDirs::of(&cgroup_path);
    let oom = if dirs.is_v2() {
        keyed(&dirs.read("", "memory.events"), "oom_kill")
    } else {
        keyed(&dirs.read("memory", "memory.oom_control"), "oom_kill")
    };
    Ok(Watch {
        status: status_name(status).into(),
        pid,
        oom_kills: oom.unwrap_or(0),
        pids_limit_hits: keyed(&dirs.read("pids", "pids.events"), "max").unwrap_or(0),
        pids_limit: limit(dirs.read("pids", "pids.max")),
    })
}

/// The events between two polls of one container (None: it did not exist). Pure, so that
/// every transition is unit-tested.
pub fn events_between(id: &str, before: Option<&Watch>, now: Option<&Watch>) -> Vec<Value> {
    let ev = |typ: &str, extra: Value| {
        let mut e = json!({"type": typ, "id": id});
        if let (Some(m), Value::Object(x)) = (e.as_object_mut(), extra) {
            m.extend(x);
        }
        e
    };
    let mut out = Vec::new();
    let live = |w: &Watch| w.status != "stopped";
    match (before, now) {
        (None, None) => {}
        (None, Some(n)) => out.push(ev(
            if live(n) { "start" } else { "create" },
            json!({"pid": n.pid, "status": n.status}),
        )),
        (Some(b), None) => {
            if live(b) {
                out.push(ev("exit", json!({"pid": b.pid})));
            }
            out.push(ev("delete", json!({})));
        }
        (Some(b), Some(n)) => {
            if n.oom_kills > b.oom_kills {
                out.push(ev(
                    "oom",
                    json!({"kills": n.oom_kills - b.oom_kills, "total": n.oom_kills}),
                ));
            }
            if n.pids_limit_hits > b.pids_limit_hits {
                out.push(ev(
                    "pids-limit",
                    json!({"refused_forks": n.pids_limit_hits - b.pids_limit_hits, "total": n.pids_limit_hits, "limit": n.pids_limit}),
                ));
            }
            if n.pid != b.pid && live(n) && b.pid != 0 {
                // Same id, another init: it was re-created (or restarted by a supervisor).
                if live(b) {
                    out.push(ev("exit", json!({"pid": b.pid})));
                }
                out.push(ev("restart", json!({"pid": n.pid, "previous_pid": b.pid})));
            } else if b.status != n.status {
                let typ = match (b.status.as_str(), n.status.as_str()) {
                    (_, "stopped") => "exit",
                    (_, "paused") => "pause",
                    ("paused", _) => "resume",
                    ("created", "running") => "start",
                    _ => "status",
                };
                out.push(ev(
                    typ,
                    json!({"pid": b.pid.max(n.pid), "status": n.status}),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(map_back("0 100000 65536\n", 100033), Some(33));
        assert_eq!(map_back("0 100000 65536\n", 0), None);
        assert_eq!(map_back("0 0 4294967295\n", 7), Some(7));
        let t = Some("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n".to_string());
        assert_eq!(keyed(&t, "oom_kill"), Some(3));
        assert_eq!(keyed(&Some("max 12\n".into()), "max"), Some(12));
        assert_eq!(limit(Some("max\n".into())), None);
        assert_eq!(limit(Some("9223372036854771712\n".into())), None);
        assert_eq!(limit(Some("1048576\n".into())), Some(1 << 20));
        let mut a = Sample {
            id: "x".into(),
            status: "running".into(),
            pid: 1,
            at_ns: 1_000_000_000,
            cpu_ns: 0,
            memory_bytes: 0,
            memory_raw_bytes: 0,
            memory_limit_bytes: None,
            oom_kills: 0,
            pids: 0,
            pids_limit: None,
            pids_limit_hits: 0,
            io_read_bytes: 0,
            io_write_bytes: 0,
            net: BTreeMap::new(),
        };
        let b = Sample {
            at_ns: 2_000_000_000,
            cpu_ns: 500_000_000,
            ..a.clone()
        };
        assert!((b.cpu_percent(&a) - 50.0).abs() < 1e-9);
        a.net.insert("lo".into(), (10, 20));
        a.net.insert("eth0".into(), (1, 2));
        assert_eq!((a.net_rx(), a.net_tx()), (11, 22));
    }

    #[test]
    fn events() {
        let w = |status: &str, pid: i32, oom: u64, hits: u64| Watch {
            status: status.into(),
            pid,
            oom_kills: oom,
            pids_limit_hits: hits,
            pids_limit: Some(10),
        };
        let types = |b: Option<&Watch>, n: Option<&Watch>| -> Vec<String> {
            events_between("c", b, n)
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_string())
                .collect()
        };
        let run = w("running", 5, 0, 0);
        assert!(types(Some(&run), Some(&run)).is_empty());
        assert_eq!(types(None, Some(&run)), ["start"]);
        assert_eq!(
            types(Some(&run), Some(&w("stopped", 5, 1, 0))),
            ["oom", "exit"]
        );
        assert_eq!(
            types(Some(&run), Some(&w("running", 5, 0, 3))),
            ["pids-limit"]
        );
        assert_eq!(
            types(Some(&run), Some(&w("running", 9, 0, 0))),
            ["exit", "restart"]
        );
        assert_eq!(types(Some(&run), Some(&w("paused", 5, 0, 0))), ["pause"]);
        assert_eq!(types(Some(&w("paused", 5, 0, 0)), Some(&run)), ["resume"]);
        assert_eq!(types(Some(&run), None), ["exit", "delete"]);
        assert_eq!(types(Some(&w("stopped", 5, 0, 0)), None), ["delete"]);
        let e = &events_between("c", Some(&run), Some(&w("running", 5, 0, 3)))[0];
        assert_eq!(e["refused_forks"], 3);
        assert_eq!(e["limit"], 10);
    }
}

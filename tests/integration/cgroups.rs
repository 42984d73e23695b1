//! Verbs that act on a running container's cgroups: pause/resume, update, events --stats, ps.

use std::fs;

use serde_json::json;
use sgrun_tests::{RunOpts, TestEnv};

#[test]
fn pause_and_resume() {
    let env = TestEnv::new("pause");
    let c = env.container("p", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    env.sg.run(["pause", &c.id]).ok();
    assert_eq!(c.state()["status"], "paused");
    assert_eq!(c.read_cgroup("freezer", "freezer.state"), "FROZEN");
    env.sg
        .run(["pause", &c.id])
        .failed()
        .stderr_has(&[&c.id, "paused"]);

    env.sg.run(["resume", &c.id]).ok();
    assert_eq!(c.state()["status"], "running");
    assert_eq!(c.read_cgroup("freezer", "freezer.state"), "THAWED");
    env.sg
        .run(["resume", &c.id])
        .failed()
        .stderr_has(&[&c.id, "running"]);
    c.exec(&[], &["true"]).ok();
}

#[test]
fn update_limits() {
    let env = TestEnv::new("update");
    let c = env.container(
        "u",
        env.bundle().args(&["sleep", "1000"]).resources(json!({
            "memory": {"limit": 256u64 << 20},
            "pids": {"limit": 100},
            "cpu": {"shares": 1024, "quota": 100000, "period": 100000}
        })),
    );
    c.run_detached();
    assert_eq!(
        c.read_cgroup("memory", "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );

    env.sg
        .run([
            "update",
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--cpu-share",
            "512",
            &c.id,
        ])
        .ok();
    assert_eq!(
        c.read_cgroup("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(c.read_cgroup("pids", "pids.max"), "20");
    assert_eq!(c.read_cgroup("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(c.read_cgroup("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(c.read_cgroup("cpu", "cpu.shares"), "512");

    // OCI linux.resources JSON on stdin.
    let res = json!({"memory": {"limit": 96u64 << 20}, "pids": {"limit": 30}});
    env.sg
        .run_with(
            ["update", "--resources", "-", &c.id],
            RunOpts {
                stdin: Some(res.to_string().into_bytes()),
                ..Default::default()
            },
        )
        .ok();
    assert_eq!(
        c.read_cgroup("memory", "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(c.read_cgroup("pids", "pids.max"), "30");

    // -1 lifts the pids limit.
    env.sg.run(["update", "--pids-limit", "-1", &c.id]).ok();
    assert_eq!(c.read_cgroup("pids", "pids.max"), "max");

    // Bad values are refused naming the flag; the limits stay.
    env.sg
        .run(["update", "--memory", "lots", &c.id])
        .failed()
        .stderr_has(&["--memory"]);
    assert_eq!(
        c.read_cgroup("memory", "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
}

#[test]
fn events_stats_shape() {
    let env = TestEnv::new("events");
    let c = env.container(
        "e",
        env.bundle()
            .args(&["sleep", "1000"])
            .resources(json!({"pids": {"limit": 50}})),
    );
    c.run_detached();
    let out = env.sg.run(["events", "--stats", &c.id]);
    out.ok();
    assert_eq!(out.stdout.lines().count(), 1, "one record: {out}");
    let v = out.json();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.id.as_str(), "{v}");
    let data = &v["data"];
    assert!(
        data["memory"]["usage"].is_object(),
        "data.memory.usage: {v}"
    );
    assert!(
        data["memory"]["usage"]["usage"]
            .as_u64()
            .is_some_and(|u| u > 0),
        "memory usage: {v}"
    );
    assert!(
        data["pids"]["current"].as_u64().is_some_and(|n| n >= 1),
        "pids.current: {v}"
    );
    assert_eq!(data["pids"]["limit"].as_u64(), Some(50), "pids.limit: {v}");
    assert!(
        data["cpu"]["usage"]["total"].is_u64(),
        "cpu.usage.total: {v}"
    );
}

#[test]
fn ps_table_and_json() {
    let env = TestEnv::new("ps");
    let c = env.container("p", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let init = c.pid();
    let out = env.sg.run(["ps", "--format", "json", &c.id]);
    let v = out.ok().json();
    let pids: Vec<i64> = v
        .as_array()
        .unwrap_or_else(|| panic!("a JSON list: {out}"))
        .iter()
        .filter_map(|p| p.as_i64())
        .collect();
    assert_eq!(pids, vec![init as i64], "{out}");

    let out = env.sg.run(["ps", &c.id]);
    let mut lines = out.ok().stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.split_whitespace().any(|h| h == "PID"), "{out}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "only the container's processes: {out}");
    assert!(
        rows[0].split_whitespace().any(|f| f == init.to_string()),
        "{out}"
    );
    assert!(rows[0].contains("sleep 1000"), "{out}");
}

/// The container has its own cgroup in the v1 `name=systemd` hierarchy (as with runc): in a
/// cgroup namespace it sees itself at `/` there, not the host's tree; the thread that created
/// it is back in its own cgroup; delete removes the directory.
#[test]
fn container_has_its_own_name_systemd_cgroup() {
    let env = TestEnv::new("namedcg");
    let c = env.container(
        "n",
        env.bundle()
            .with_namespace("cgroup")
            .args(&["sleep", "1000"]),
    );
    c.run_detached();
    let dir = c.cgroup_file("systemd", "");
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|p| p == c.pid().to_string()),
        "init {} not in {}: {procs}",
        c.pid(),
        dir.display()
    );
    let inside = c
        .exec(&[], &["cat", "/proc/self/cgroup"])
        .ok()
        .stdout
        .clone();
    let line = inside
        .lines()
        .find(|l| l.contains(":name=systemd:"))
        .unwrap_or_else(|| panic!("no name=systemd line inside: {inside}"));
    assert!(line.ends_with(":name=systemd:/"), "{line}");
    // (The escape suite's host-cgroup-tree vector is the security check of this.)
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(
        !own.lines()
            .any(|l| l.contains(":name=systemd:") && l.ends_with(&c.cgroup)),
        "the test process itself must not be in the container's cgroup: {own}"
    );
    env.sg.run(["delete", "-f", &c.id]).ok();
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

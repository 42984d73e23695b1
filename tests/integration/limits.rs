//! Resource limits: written to the cgroup files at create, and enforced by the kernel. Each
//! enforcement test runs a weakened (generous) limit too, proving the workload does exceed the
//! strict one.

use serde_json::json;
use sgrun_tests::TestEnv;

#[test]
fn limits_are_written_at_create() {
    let env = TestEnv::new("limits");
    let c = env.container(
        "l",
        env.bundle().args(&["true"]).resources(json!({
            "memory": {"limit": 64u64 << 20, "reservation": 32u64 << 20},
            "pids": {"limit": 32},
            "cpu": {"shares": 512, "quota": 20000, "period": 100000}
        })),
    );
    c.create();
    assert_eq!(
        c.read_cgroup("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        c.read_cgroup("memory", "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(c.read_cgroup("pids", "pids.max"), "32");
    assert_eq!(c.read_cgroup("cpu", "cpu.shares"), "512");
    assert_eq!(c.read_cgroup("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(c.read_cgroup("cpu", "cpu.cfs_period_us"), "100000");
    // The init is already in the cgroup (it waits there for start).
    let procs = c.read_cgroup("pids", "cgroup.procs");
    assert_eq!(procs, c.pid().to_string());
}

/// Start 20 background sleeps; busybox sh exits with an error when a fork fails.
const FORK_20: &str = "i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; echo started $i";

#[test]
fn pids_limit_is_enforced() {
    let env = TestEnv::new("pidslim");
    let c = env.container(
        "p",
        env.bundle()
            .sh(FORK_20)
            .resources(json!({"pids": {"limit": 8}})),
    );
    let out = c.run_fg();
    assert_ne!(
        out.code, 0,
        "the fork loop must fail under pids.max=8: {out}"
    );
    assert!(!out.stdout.contains("started 20"), "{out}");
    assert!(
        out.stderr.contains("fork"),
        "the shell reports the failed fork: {out}"
    );

    // Weakened: with room for them, all 20 start.
    let weak = env.weak_container(
        "w",
        env.bundle()
            .sh(FORK_20)
            .resources(json!({"pids": {"limit": 100}})),
    );
    let out = weak.run_fg();
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("started 20"), "{out}");
}

#[test]
fn memory_limit_is_enforced() {
    let env = TestEnv::new("memlim");
    let eat = ["sh", "-c", "head -c 64m /dev/zero | tail > /dev/null"];
    let limit = 32u64 << 20;
    let c = env.container(
        "m",
        env.bundle()
            .args(&["sleep", "1000"])
            .resources(json!({"memory": {"limit": limit, "swap": limit}})),
    );
    c.run_detached();
    let out = c.exec(&[], &eat);
    assert_eq!(
        out.code,
        128 + 9,
        "tail holding 64 MiB must be OOM-killed under 32 MiB: {out}"
    );
    // (memory.failcnt stays 0 on this kernel even when the limit is hit; max_usage and the
    // oom_kill counter are what records it.)
    let max: u64 = c
        .read_cgroup("memory", "memory.max_usage_in_bytes")
        .parse()
        .unwrap();
    assert!(
        max <= limit && max > limit / 2,
        "usage peaked at the limit: {max}"
    );
    let oom = c.read_cgroup("memory", "memory.oom_control");
    assert!(
        oom.lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "memory.oom_control records the kill: {oom}"
    );
    // The container itself survives its OOM-killed child.
    assert_eq!(c.state()["status"], "running");

    // Weakened: 256 MiB is enough.
    let weak = env.weak_container(
        "w",
        env.bundle()
            .args(&["sleep", "1000"])
            .resources(json!({"memory": {"limit": 256u64 << 20}})),
    );
    weak.run_detached();
    weak.exec(&[], &eat).ok();
}

/// The container's root cannot raise its own limits through the cgroup filesystem. With a
/// cgroup namespace its own cgroup is the root of what it sees, and cgroup v1 limit files only
/// need uid 0; the config mounts /sys/fs/cgroup "ro", which libcontainer 0.7 drops and sgrun
/// restores (runtime/engine/src/cgroupfs.rs). The weakened twin mounts it without "ro": the
/// same write then raises the limit, so the test can see the hole.
#[test]
fn container_root_cannot_raise_its_own_memory_limit() {
    const RAISE: &str = "echo 999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                         cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    let env = TestEnv::new("cgro");
    let limit = json!({"memory": {"limit": 64u64 << 20}});
    // As `runc spec` and `sgrun spec` write it: a cgroup namespace and a read-only cgroupfs.
    let runc_spec_cgroups = |args: &[&str], options: serde_json::Value| {
        env.bundle()
            .args(args)
            .with_namespace("cgroup")
            .edit(|config| {
                config["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                    "options": options
                }))
            })
    };
    let ro = || json!(["nosuid", "noexec", "nodev", "relatime", "ro"]);

    let c = env.container(
        "c",
        runc_spec_cgroups(&["sh", "-c", RAISE], ro()).resources(limit.clone()),
    );
    let out = c.run_fg();
    assert_eq!(out.stdout_trim(), (64u64 << 20).to_string(), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    let mounts = env.container("m", runc_spec_cgroups(&["cat", "/proc/self/mounts"], ro()));
    let mounts = mounts.run_fg();
    let cgroup_mounts: Vec<&str> = mounts
        .stdout
        .lines()
        .filter(|l| l.contains(" /sys/fs/cgroup"))
        .collect();
    assert!(cgroup_mounts.len() > 1, "{mounts}");
    for line in cgroup_mounts {
        assert!(
            line.split(' ').nth(3).unwrap().starts_with("ro,"),
            "not read-only: {line}"
        );
    }

    let weak = env.weak_container(
        "weak",
        runc_spec_cgroups(
            &["sh", "-c", RAISE],
            json!(["nosuid", "noexec", "nodev", "relatime"]),
        )
        .resources(limit),
    );
    let out = weak.run_fg();
    assert_ne!(
        out.stdout_trim(),
        (64u64 << 20).to_string(),
        "the weakened twin should raise its limit: {out}"
    );
}

//! linux.seccomp, applied exactly: Docker's default profile, every action, argument
//! conditions, default errno, refusals (NOTIFY, unknown syscall names) and the forced
//! no_new_privs. Each denial has a weakened twin (no seccomp) where the same call works.
//!
//! The probe (tests/integration/probes/probe.c, mounted at /probes) issues one raw syscall and
//! prints `ok <ret>` or `errno <n> <text>`.

use serde_json::{json, Value};
use sgrun_tests::{docker_default_seccomp, host_caps, status_field, Bundle, TestEnv};

const PROBE: &str = "/probes/probe";

/// A profile allowing everything except the given rules.
fn allow_all_but(rules: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules
    })
}

fn mkdir_rule(action: &str) -> Value {
    json!([{"names": ["mkdir", "mkdirat"], "action": action}])
}

fn probe_bundle(env: &TestEnv) -> Bundle {
    env.bundle().with_probes().tmpfs("/tmp")
}

#[test]
fn docker_default_runs_busybox_and_denies_unshare_and_mount() {
    let env = TestEnv::new("scdocker");
    // All capabilities, so that nothing but seccomp can refuse unshare and mount.
    let script = "echo alive; ls / > /dev/null && echo ls-ok; \
                  unshare -m true; echo unshare=$?; \
                  mount -t tmpfs none /mnt; echo mount=$?; \
                  /probes/probe unshare 0x20000";
    let b = |seccomp: Option<Value>| {
        let b = probe_bundle(&env).caps(&host_caps()).sh(script);
        match seccomp {
            Some(s) => b.seccomp(s),
            None => b,
        }
    };
    let c = env.container("d", b(Some(docker_default_seccomp())));
    let out = c.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"alive"),
        "busybox runs under Docker's profile: {out}"
    );
    assert!(lines.contains(&"ls-ok"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("unshare=") && *l != "unshare=0"),
        "unshare must fail: {out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("mount=") && *l != "mount=0"),
        "mount must fail: {out}"
    );
    assert!(
        lines.contains(&"errno 1 Operation not permitted"),
        "unshare answers EPERM: {out}"
    );
    assert!(
        out.stderr.contains("Operation not permitted") || out.stderr.contains("permission denied"),
        "{out}"
    );

    // Weakened: the same container without seccomp may unshare and mount.
    let weak = env.weak_container("w", b(None));
    let out = weak.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"unshare=0"), "{out}");
    assert!(lines.contains(&"mount=0"), "{out}");
    assert!(lines.contains(&"ok 0"), "{out}");
}

#[test]
fn errno_action_with_errno_ret() {
    let env = TestEnv::new("scerrno");
    let rules =
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]);
    let c = env.container(
        "e",
        probe_bundle(&env)
            .seccomp(allow_all_but(rules))
            .sh("mkdir /tmp/d; /probes/probe mkdir /tmp/e"),
    );
    let out = c.run_fg();
    assert!(
        out.stderr.contains("Permission denied"),
        "busybox mkdir gets EACCES: {out}"
    );
    assert!(out.stdout.contains("errno 13 Permission denied"), "{out}");

    // Weakened: no seccomp, mkdir works.
    let weak = env.weak_container(
        "w",
        probe_bundle(&env).sh("mkdir /tmp/d && /probes/probe mkdir /tmp/e"),
    );
    let out = weak.run_fg();
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("ok 0"), "{out}");
}

/// KILL_PROCESS, TRAP and KILL (thread) all end a single-threaded probe with SIGSYS.
#[test]
fn killing_actions_exit_with_sigsys() {
    let env = TestEnv::new("sckill");
    for (tag, action) in [
        ("kp", "SCMP_ACT_KILL_PROCESS"),
        ("tr", "SCMP_ACT_TRAP"),
        ("kt", "SCMP_ACT_KILL"),
    ] {
        // The probe as a child of sh: sh reports 128+31.
        let c = env.container(
            tag,
            probe_bundle(&env)
                .seccomp(allow_all_but(mkdir_rule(action)))
                .sh("/probes/probe mkdir /tmp/x; echo status=$?"),
        );
        let out = c.run_fg();
        assert!(
            out.stdout.contains("status=159"),
            "{action}: the probe dies of SIGSYS (128+31): {out}"
        );
        // The probe as the container's init: run exits 128+31.
        let c = env.container(
            &format!("{tag}i"),
            probe_bundle(&env)
                .seccomp(allow_all_but(mkdir_rule(action)))
                .args(&[PROBE, "mkdir", "/tmp/x"]),
        );
        let out = c.run_fg();
        assert_eq!(
            out.code,
            128 + 31,
            "{action}: run's status for an init killed by SIGSYS: {out}"
        );
    }
    // Weakened: without the rule the same probe succeeds.
    let weak = env.weak_container("w", probe_bundle(&env).args(&[PROBE, "mkdir", "/tmp/x"]));
    let out = weak.run_fg();
    assert_eq!(out.code, 0, "{out}");
}

#[test]
fn log_action_allows() {
    let env = TestEnv::new("sclog");
    let c = env.container(
        "l",
        probe_bundle(&env)
            .seccomp(allow_all_but(mkdir_rule("SCMP_ACT_LOG")))
            .sh("mkdir /tmp/d && echo made"),
    );
    let out = c.run_fg();
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.trim(), "made", "{out}");
}

#[test]
fn argument_conditions() {
    let env = TestEnv::new("scargs");
    // Docker's profile allows personality only for a few values; the query 0xffffffff is one.
    let script = "/probes/probe personality 0xffffffff; /probes/probe personality 0x0040000; /probes/probe personality 0";
    let c = env.container(
        "d",
        probe_bundle(&env)
            .seccomp(docker_default_seccomp())
            .sh(script),
    );
    let out = c.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("ok "),
        "personality(0xffffffff) is allowed: {out}"
    );
    assert_eq!(
        lines[1], "errno 1 Operation not permitted",
        "personality(ADDR_NO_RANDOMIZE) is denied: {out}"
    );
    assert!(
        lines[2].starts_with("ok "),
        "personality(0) is allowed: {out}"
    );

    // An explicit condition in an allow-all profile: deny only arg0 == ADDR_NO_RANDOMIZE.
    let rules = json!([{
        "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
        "args": [{"index": 0, "value": 0x0040000u64, "op": "SCMP_CMP_EQ"}]
    }]);
    let c = env.container(
        "c",
        probe_bundle(&env).seccomp(allow_all_but(rules)).sh(script),
    );
    let out = c.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ok "), "{out}");
    assert_eq!(lines[1], "errno 1 Operation not permitted", "{out}");
    assert!(lines[2].starts_with("ok "), "{out}");

    // Weakened: no seccomp, every value is accepted.
    let weak = env.weak_container("w", probe_bundle(&env).sh(script));
    let out = weak.run_fg();
    assert!(out.stdout.lines().all(|l| l.starts_with("ok ")), "{out}");
}

#[test]
fn default_action_errno_with_default_errno_ret() {
    let env = TestEnv::new("scdefault");
    // Docker's profile without its mkdir allowance: mkdir falls to the default action.
    let mut profile = docker_default_seccomp();
    for rule in profile["syscalls"].as_array_mut().unwrap() {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| n != "mkdir" && n != "mkdirat");
        }
    }
    let mut eacces = profile.clone();
    eacces["defaultErrnoRet"] = json!(13);
    let c = env.container(
        "a",
        probe_bundle(&env)
            .seccomp(eacces)
            .args(&[PROBE, "mkdir", "/tmp/x"]),
    );
    let out = c.run_fg();
    assert_eq!(
        out.stdout.trim(),
        "errno 13 Permission denied",
        "defaultErrnoRet 13: {out}"
    );

    // Without defaultErrnoRet, SCMP_ACT_ERRNO means EPERM (libseccomp/runc semantics).
    let mut eperm = profile.clone();
    eperm.as_object_mut().unwrap().remove("defaultErrnoRet");
    let c = env.container(
        "p",
        probe_bundle(&env)
            .seccomp(eperm)
            .args(&[PROBE, "mkdir", "/tmp/x"]),
    );
    let out = c.run_fg();
    assert_eq!(
        out.stdout.trim(),
        "errno 1 Operation not permitted",
        "default errno: {out}"
    );

    // Weakened: Docker's own profile (mkdir listed) lets it through.
    let c = env.container(
        "w",
        probe_bundle(&env)
            .seccomp(docker_default_seccomp())
            .args(&[PROBE, "mkdir", "/tmp/x"]),
    );
    let out = c.run_fg();
    assert_eq!(out.stdout.trim(), "ok 0", "{out}");
}

#[test]
fn notify_is_refused_at_create() {
    let env = TestEnv::new("scnotify");
    let rules = json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]);
    let c = env.container(
        "n",
        env.bundle().args(&["true"]).seccomp(allow_all_but(rules)),
    );
    let out = c.create_args(&[]);
    out.failed();
    assert!(
        out.stderr.contains("SCMP_ACT_NOTIFY") || out.stderr.contains("notif"),
        "the message names the unsupported action: {out}"
    );
    env.assert_nothing_left(&c.id, &c.cgroup);

    let mut p = allow_all_but(json!([]));
    p["listenerPath"] = json!("/run/seccomp-agent.sock");
    let c = env.container("l", env.bundle().args(&["true"]).seccomp(p));
    let out = c.create_args(&[]);
    out.failed().stderr_has(&["listenerPath"]);
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn unknown_syscall_is_refused_naming_it() {
    let env = TestEnv::new("scunknown");
    let rules = json!([{"names": ["mkdir", "no_such_syscall_sgrun"], "action": "SCMP_ACT_ERRNO"}]);
    let c = env.container(
        "u",
        env.bundle().args(&["true"]).seccomp(allow_all_but(rules)),
    );
    let out = c.create_args(&[]);
    out.failed().stderr_has(&["no_such_syscall_sgrun"]);
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn seccomp_forces_no_new_privs() {
    let env = TestEnv::new("scnnp");
    let c = env.container(
        "n",
        env.bundle()
            .no_new_privs(false)
            .seccomp(allow_all_but(mkdir_rule("SCMP_ACT_LOG")))
            .args(&["cat", "/proc/self/status"]),
    );
    let out = c.run_fg();
    assert_eq!(
        status_field(&out.ok().stdout, "NoNewPrivs"),
        Some("1"),
        "{out}"
    );
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("2"), "{out}");

    // Weakened: no seccomp and noNewPrivileges false leaves it off.
    let weak = env.weak_container(
        "w",
        env.bundle()
            .no_new_privs(false)
            .args(&["cat", "/proc/self/status"]),
    );
    let out = weak.run_fg();
    assert_eq!(
        status_field(&out.ok().stdout, "NoNewPrivs"),
        Some("0"),
        "{out}"
    );
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("0"), "{out}");
}

//! `sgrun exec`: output, exit status, environment, cwd, user, pid files, detached processes,
//! process.json; and the security context of the exec'd process (user namespace, capabilities,
//! no_new_privs, seccomp, pid namespace, file descriptors), each with a weakened counterpart
//! proving the check can fail.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::json;
use sgrun_tests::{
    alive, cap_mask, docker_default_seccomp, host_caps, status_field, RunOpts, TestEnv, PATH_ENV,
    USERNS_HOST_ID, USERNS_SIZE,
};

fn sleeper(env: &TestEnv) -> sgrun_tests::Bundle {
    env.bundle().args(&["sleep", "1000"]).tmpfs("/tmp")
}

#[test]
fn output_exit_code_env_cwd_user() {
    let env = TestEnv::new("exec");
    let c = env.container("e", sleeper(&env));
    c.run_detached();

    let out = c.exec_sh("echo out; echo err >&2; exit 7");
    assert_eq!(out.code, 7, "exec's exit status is the process's: {out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert!(out.stderr.contains("err"), "{out}");

    let out = c.exec(
        &["-e", "FOO=bar baz", "-e", "TERM=dumb"],
        &["sh", "-c", "echo $FOO; echo $TERM; echo $PATH"],
    );
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_eq!(lines[0], "bar baz", "{out}");
    assert_eq!(
        lines[1], "dumb",
        "-e overrides the container's value: {out}"
    );
    assert_eq!(
        format!("PATH={}", lines[2]),
        PATH_ENV,
        "the container's env is kept: {out}"
    );

    let out = c.exec(&["--cwd", "/tmp"], &["pwd"]);
    assert_eq!(out.ok().stdout_trim(), "/tmp", "{out}");

    let out = c.exec(&["-u", "33:33"], &["sh", "-c", "id -u; id -g"]);
    assert_eq!(out.ok().stdout, "33\n33\n", "{out}");
    let out = c.exec(&["-u", "33:33"], &["id"]);
    assert!(out.ok().stdout.contains("uid=33(www-data)"), "{out}");
    // No supplementary group of root's may stay with the new user.
    let out = c.exec(&["-u", "33:33"], &["id", "-G"]);
    assert_eq!(
        out.ok().stdout_trim(),
        "33",
        "supplementary groups of -u 33:33: {out}"
    );
    let out = c.exec(&["-u", "33:33", "--additional-gids", "100"], &["id", "-G"]);
    assert_eq!(out.ok().stdout_trim(), "33 100", "{out}");

    // The container's rlimits apply to exec'd processes (the host's nofile is 20000).
    let out = c.exec(&[], &["sh", "-c", "ulimit -n"]);
    assert_eq!(out.ok().stdout_trim(), "1024", "{out}");

    let out = c.exec(&["--cwd", "relative"], &["pwd"]);
    out.failed().stderr_has(&["relative"]);
    let out = c.exec(&["--cwd", "/no/such/dir"], &["pwd"]);
    out.failed().stderr_has(&["/no/such/dir"]);
    let out = c.exec(&[], &["/no/such/program"]);
    out.failed().stderr_has(&["/no/such/program"]);
}

#[test]
fn pid_file_and_detach() {
    let env = TestEnv::new("execd");
    let c = env.container("d", sleeper(&env));
    c.run_detached();

    let pf = env.path().join("exec.pid");
    let out = c.exec(&["--pid-file", pf.to_str().unwrap()], &["true"]);
    out.ok();
    let pid: i32 = fs::read_to_string(&pf)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(pid > 0);

    let pf2 = env.path().join("detached.pid");
    let out = env.sg.run_with(
        [
            "exec",
            "-d",
            "--pid-file",
            pf2.to_str().unwrap(),
            &c.id,
            "sleep",
            "1000",
        ],
        RunOpts {
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    out.ok();
    let pid: i32 = fs::read_to_string(&pf2)
        .expect("pid file of -d")
        .trim()
        .parse()
        .expect("a pid");
    assert!(alive(pid), "the detached process {pid} should keep running");
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&c.cgroup),
        "the detached process is in the container's cgroup: {cg}"
    );
    let ps = env.sg.run(["ps", "--format", "json", &c.id]);
    let pids: Vec<i64> = ps
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    assert!(
        pids.contains(&(pid as i64)),
        "ps lists the exec'd process {pid}: {ps}"
    );
    // Its stdout is the exec's (a file here), so the exec returning did not wait for it.
}

#[test]
fn process_file() {
    let env = TestEnv::new("execp");
    let c = env.container("p", sleeper(&env));
    c.run_detached();
    let pj = env.path().join("process.json");
    fs::write(
        &pj,
        serde_json::to_string(&json!({
            "terminal": false,
            "user": {"uid": 33, "gid": 33},
            "args": ["sh", "-c", "echo $A; pwd; id -u"],
            "env": [PATH_ENV, "A=from-process-file"],
            "cwd": "/tmp"
        }))
        .unwrap(),
    )
    .unwrap();
    let out = c.exec(&["--process", pj.to_str().unwrap()], &[]);
    assert_eq!(out.ok().stdout, "from-process-file\n/tmp\n33\n", "{out}");

    fs::write(&pj, "{\"args\": [\"true\"], \"cwd\": 5}").unwrap();
    let out = c.exec(&["--process", pj.to_str().unwrap()], &[]);
    out.failed().stderr_has(&[pj.to_str().unwrap(), "cwd"]);
}

/// A root-owned 0755 host directory bind-mounted read-write at /data.
fn root_owned_dir(env: &TestEnv) -> std::path::PathBuf {
    let d = env.path().join("hostdir");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn exec_joins_the_user_namespace() {
    let env = TestEnv::new("execuserns");
    let host = root_owned_dir(&env);
    let c = env.container("u", sleeper(&env).userns().bind(&host, "/data", false));
    c.run_detached();

    let out = c.exec(&[], &["cat", "/proc/self/uid_map", "/proc/self/gid_map"]);
    let maps: Vec<Vec<String>> = out
        .ok()
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let want = vec![
        "0".to_string(),
        USERNS_HOST_ID.to_string(),
        USERNS_SIZE.to_string(),
    ];
    assert_eq!(
        maps,
        vec![want.clone(), want],
        "exec runs in the container's user namespace: {out}"
    );

    // The exec'd process has the init's security context in the user namespace as well.
    let init = fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    let out = c.exec(&[], &["cat", "/proc/self/status"]);
    assert_eq!(
        fields(&out.ok().stdout),
        fields(&init),
        "exec vs init in a user namespace"
    );
    for f in ["Uid", "Gid"] {
        assert_eq!(
            status_field(&out.stdout, f),
            Some("0\t0\t0\t0"),
            "{f} seen inside: {out}"
        );
    }

    let out = c.exec(&[], &["touch", "/data/x"]);
    out.failed();
    assert!(
        out.stderr.contains("Permission denied"),
        "container root is host uid {USERNS_HOST_ID}, which may not write a root-owned dir: {out}"
    );
    assert!(
        !host.join("x").exists(),
        "exec wrote into a root-owned host directory"
    );

    // Weakened: the same container without a user namespace is real root and succeeds, which
    // proves the probe sees the hole.
    let weak = env.weak_container("w", sleeper(&env).bind(&host, "/data", false));
    weak.run_detached();
    weak.exec(&[], &["touch", "/data/y"]).ok();
    assert!(
        host.join("y").exists(),
        "weakened container should have written the file"
    );
}

const FIELDS: &[&str] = &[
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
];

fn fields(status: &str) -> Vec<(String, String)> {
    FIELDS
        .iter()
        .map(|f| {
            (
                f.to_string(),
                status_field(status, f).unwrap_or("<missing>").to_string(),
            )
        })
        .collect()
}

#[test]
fn exec_gets_the_containers_caps_nnp_and_seccomp() {
    let env = TestEnv::new("execsec");
    let c = env.container("s", sleeper(&env).seccomp(docker_default_seccomp()));
    c.run_detached();
    let init = fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    let init_fields = fields(&init);
    assert_eq!(
        status_field(&init, "Seccomp"),
        Some("2"),
        "init runs under a filter: {init}"
    );
    assert_eq!(status_field(&init, "NoNewPrivs"), Some("1"));

    let out = c.exec(&[], &["cat", "/proc/self/status"]);
    let exec_fields = fields(&out.ok().stdout);
    assert_eq!(
        exec_fields, init_fields,
        "exec'd process must match the init"
    );

    // As another user too (capabilities are then cleared, but bounding, nnp and seccomp stay).
    let out = c.exec(&["-u", "33:33"], &["cat", "/proc/self/status"]);
    let st = out.ok().stdout.clone();
    for f in ["CapBnd", "NoNewPrivs", "Seccomp", "Seccomp_filters"] {
        assert_eq!(
            status_field(&st, f),
            status_field(&init, f),
            "{f} as uid 33: {st}"
        );
    }

    // Weakened: a container without seccomp, with all capabilities and no nnp has a different
    // context, and the comparison above notices.
    let weak = env.weak_container("w", sleeper(&env).caps(&host_caps()).no_new_privs(false));
    weak.run_detached();
    let weak_init = fs::read_to_string(format!("/proc/{}/status", weak.pid())).unwrap();
    let weak_fields = fields(&weak_init);
    for (i, f) in FIELDS.iter().enumerate() {
        if ["CapEff", "CapBnd", "NoNewPrivs", "Seccomp"].contains(f) {
            assert_ne!(
                weak_fields[i], exec_fields[i],
                "{f} should differ in the weakened container"
            );
        }
    }
}

#[test]
fn exec_cannot_add_a_capability_outside_the_bounding_set() {
    let env = TestEnv::new("execcap");
    let c = env.container("c", sleeper(&env));
    c.run_detached();
    let out = c.exec(&["--cap", "CAP_SYS_ADMIN"], &["true"]);
    out.failed().stderr_has(&["CAP_SYS_ADMIN", "bounding"]);
    let procs = c.read_cgroup("pids", "cgroup.procs");
    assert_eq!(
        procs.lines().count(),
        1,
        "a refused exec left a process: {procs}"
    );

    // A capability inside the bounding set may be added.
    let out = c.exec(
        &["--cap", "CAP_KILL"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    assert!(
        out.ok().stdout.contains(&cap_mask(&[
            "CAP_AUDIT_WRITE",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE"
        ])),
        "{out}"
    );

    // Weakened: with CAP_SYS_ADMIN in the container's bounding set, exec --cap gets it.
    let weak = env.weak_container(
        "w",
        sleeper(&env).edit(|v| {
            v["process"]["capabilities"]["bounding"]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"))
        }),
    );
    weak.run_detached();
    let out = weak.exec(
        &["--cap", "CAP_SYS_ADMIN"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    let eff = u64::from_str_radix(status_field(&out.ok().stdout, "CapEff").unwrap(), 16).unwrap();
    assert!(
        eff & (1 << 21) != 0,
        "CAP_SYS_ADMIN granted in the weakened container: {out}"
    );
}

#[test]
fn exec_sees_the_pid_namespace_and_hostname() {
    let env = TestEnv::new("execns");
    let c = env.container("n", sleeper(&env).hostname("tenant-site"));
    c.run_detached();
    let script = "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'; hostname";
    let out = c.exec_sh(script);
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_eq!(
        lines[0].trim(),
        "sleep 1000",
        "pid 1 is the container's init: {out}"
    );
    let n: usize = lines[1].parse().unwrap();
    assert!(
        n <= 6,
        "only the container's processes are visible, saw {n}: {out}"
    );
    assert_eq!(lines[2], "tenant-site", "{out}");
    let ps = c.exec(&[], &["ps"]);
    assert!(
        ps.ok()
            .stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some("1") && l.contains("sleep")),
        "{ps}"
    );

    // Weakened: without a pid namespace the host's processes show.
    let weak = env.weak_container("w", sleeper(&env).without_namespace("pid"));
    weak.run_detached();
    let out = weak.exec_sh(script);
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_ne!(lines[0].trim(), "sleep 1000", "{out}");
    let n: usize = lines[1].parse().unwrap();
    assert!(
        n > 6,
        "the weakened container should see the host's pids: {out}"
    );
}

#[test]
fn exec_has_only_stdio_fds() {
    let env = TestEnv::new("execfd");
    let c = env.container("f", sleeper(&env));
    c.run_detached();
    let fds = |out: &sgrun_tests::Out| -> Vec<String> {
        let mut v: Vec<String> = out.stdout.split_whitespace().map(String::from).collect();
        v.sort();
        v
    };
    let out = c.exec(&[], &["ls", "/proc/self/fd"]);
    // 3 is the directory ls itself opened to list.
    assert_eq!(fds(out.ok()), ["0", "1", "2", "3"], "{out}");
    // The same holds for the init of a container.
    let init = env.container("i", env.bundle().args(&["ls", "/proc/self/fd"]));
    let out = init.run_fg();
    assert_eq!(fds(out.ok()), ["0", "1", "2", "3"], "init's fds: {out}");

    // Weakened: an fd handed over with --preserve-fds shows up, so a leak would be seen.
    let extra: OwnedFd = fs::File::open("/dev/null").unwrap().into();
    let out = env.sg.run_with(
        ["exec", "--preserve-fds", "1", &c.id, "ls", "/proc/self/fd"],
        RunOpts {
            extra_fds: vec![extra],
            ..Default::default()
        },
    );
    assert_eq!(fds(out.ok()), ["0", "1", "2", "3", "4"], "{out}");
}

#[test]
fn exec_without_capabilities_in_config_gets_none() {
    // No process.capabilities means no capabilities, for the init and for exec alike.
    let env = TestEnv::new("execnocap");
    let c = env.container(
        "c",
        sleeper(&env).edit(|v| {
            v["process"].as_object_mut().unwrap().remove("capabilities");
        }),
    );
    c.run_detached();
    let out = c.exec(
        &[],
        &["grep", "-E", "^Cap(Eff|Prm|Bnd)", "/proc/self/status"],
    );
    let zero = "0000000000000000";
    for line in out.ok().stdout.lines() {
        assert!(line.ends_with(zero), "exec got a capability: {out}");
    }
    // Weakened: with capabilities configured, the same probe sees them.
    let w = env.container("w", sleeper(&env));
    w.run_detached();
    let out = w.exec(&[], &["grep", "^CapEff", "/proc/self/status"]);
    assert!(!out.ok().stdout.trim_end().ends_with(zero), "{out}");
}

//! The OCI lifecycle: create → start → kill → delete, state documents, list, pid files and the
//! exit status of a foreground `run`.

use std::fs;
use std::time::Duration;

use sgrun_tests::{alive, cgroup_dirs, rootfs, TestEnv};

/// An init that exits when it gets SIGTERM. A pid-namespace init ignores signals it has no
/// handler for (even from the host, except SIGKILL), so it must trap TERM itself.
const TERM_AWARE: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

#[test]
fn create_start_kill_delete() {
    let env = TestEnv::new("life");
    let c = env.container("c", env.bundle().sh(TERM_AWARE));
    let pid_file = env.path().join("init.pid");
    c.create_args(&["--pid-file", pid_file.to_str().unwrap()])
        .ok();

    // created: every field runc prints, in its camelCase.
    let st = c.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], c.id.as_str(), "{st}");
    let pid = st["pid"].as_i64().expect("pid is a number") as i32;
    assert!(
        pid > 0 && alive(pid),
        "init pid {pid} should be alive: {st}"
    );
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {st}"
    );
    assert_eq!(
        st["bundle"].as_str().map(std::path::PathBuf::from),
        Some(c.bundle_dir.canonicalize().unwrap()),
        "bundle: {st}"
    );
    assert_eq!(
        st["rootfs"].as_str().map(std::path::PathBuf::from),
        Some(rootfs().canonicalize().unwrap()),
        "rootfs: {st}"
    );
    let created = st["created"].as_str().expect("created is a string");
    assert!(
        created.len() >= 20 && created.as_bytes()[10] == b'T',
        "created should be an RFC 3339 timestamp: {created:?}"
    );
    assert!(st["owner"].is_string(), "owner: {st}");
    for snake in ["oci_version", "ociversion"] {
        assert!(
            st.get(snake).is_none(),
            "runc's field names are camelCase: {st}"
        );
    }

    // The pid file holds exactly the init's pid.
    let text = fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(text.trim(), pid.to_string(), "pid file content");

    // The cgroup exists while the container does.
    assert!(
        !cgroup_dirs(&c.cgroup).is_empty(),
        "cgroup {} missing",
        c.cgroup
    );

    c.start();
    let st = c.state();
    assert_eq!(st["status"], "running", "{st}");
    // The harness's leftover detection sees the container's processes (so its "nothing left"
    // checks elsewhere are not vacuous).
    assert!(
        sgrun_tests::marked_processes(&env.name).contains(&pid),
        "marked processes should include the init {pid}"
    );
    assert_eq!(
        st["pid"].as_i64(),
        Some(pid as i64),
        "pid changes at start: {st}"
    );

    c.sg().run(["kill", &c.id, "TERM"]).ok();
    c.wait_status("stopped");
    assert!(!alive(pid), "init {pid} still alive after stopping");

    c.sg().run(["delete", &c.id]).ok();
    let gone = c.sg().run(["state", &c.id]);
    gone.failed().stderr_has(&[&c.id, "does not exist"]);
    assert!(
        !env.sg.root.join(&c.id).exists(),
        "state dir {} remains after delete",
        env.sg.root.join(&c.id).display()
    );
    let left = cgroup_dirs(&c.cgroup);
    assert!(left.is_empty(), "cgroup dirs remain after delete: {left:?}");
}

#[test]
fn list_table_json_and_quiet() {
    let env = TestEnv::new("list");
    let a = env.container("a", env.bundle().args(&["sleep", "1000"]));
    let b = env.container("b", env.bundle().args(&["sleep", "1000"]));
    a.create();
    b.run_detached();

    let q = env.sg.run(["list", "-q"]);
    q.ok();
    let mut ids: Vec<&str> = q.stdout.lines().collect();
    ids.sort();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "list -q prints the ids only, one a line: {q}");

    let t = env.sg.run(["list"]);
    t.ok();
    let mut lines = t.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "table header as runc's: {t}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{t}");
    let row = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("no row for {id}: {t}"))
            .clone()
    };
    assert_eq!(row(&a.id)[2], "created", "{t}");
    assert_eq!(row(&b.id)[2], "running", "{t}");
    assert_eq!(row(&a.id)[1], a.pid().to_string(), "{t}");
    assert_eq!(
        row(&b.id)[3],
        b.bundle_dir.canonicalize().unwrap().to_str().unwrap(),
        "{t}"
    );

    let j = env.sg.run(["list", "--format", "json"]);
    let v = j.ok().json();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("list --format json is an array: {j}"));
    assert_eq!(arr.len(), 2, "{j}");
    for item in arr {
        for key in [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ] {
            assert!(item.get(key).is_some(), "list entry lacks {key}: {item}");
        }
    }
    let status_of = |id: &str| {
        arr.iter()
            .find(|i| i["id"] == id)
            .map(|i| i["status"].clone())
            .unwrap_or_else(|| panic!("{id} missing from {j}"))
    };
    assert_eq!(status_of(&a.id), "created");
    assert_eq!(status_of(&b.id), "running");

    // An empty root lists nothing (runc prints the header only).
    let empty = TestEnv::new("liste");
    let q = empty.sg.run(["list", "-q"]);
    assert_eq!(q.ok().stdout, "", "{q}");
}

#[test]
fn run_exit_codes() {
    let env = TestEnv::new("exit");
    let c = env.container("ok", env.bundle().sh("exit 0"));
    assert_eq!(c.run_fg().code, 0);
    let c = env.container("three", env.bundle().sh("echo out; echo err >&2; exit 3"));
    let out = c.run_fg();
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(
        out.stdout.trim(),
        "out",
        "the container's stdout is run's: {out}"
    );
    assert!(
        out.stderr.contains("err"),
        "the container's stderr is run's: {out}"
    );

    // A process killing itself: without a pid namespace, since the init of one is immune to
    // signals it sends itself.
    let c = env.container(
        "selfkill",
        env.bundle()
            .without_namespace("pid")
            .sh("kill -KILL $$; sleep 5"),
    );
    let out = c.run_fg();
    assert_eq!(
        out.code,
        128 + 9,
        "self-SIGKILL must exit 137 as runc does: {out}"
    );
    // A foreground run deletes its container.
    assert!(
        env.sg.root_entries().iter().all(|e| e.starts_with('.')),
        "{:?}",
        env.sg.root_entries()
    );
}

#[test]
fn run_killed_from_outside_exits_143() {
    let env = TestEnv::new("term");
    // No pid namespace: sleep as pid 1 of one would ignore SIGTERM (no handler).
    let c = env.container(
        "t",
        env.bundle().without_namespace("pid").args(&["sleep", "30"]),
    );
    let run = c.spawn_fg();
    c.wait_status("running");
    env.sg.run(["kill", &c.id, "TERM"]).ok();
    let out = run.wait(Duration::from_secs(10));
    assert_eq!(out.code, 128 + 15, "kill TERM from outside: {out}");
}

#[test]
fn run_of_a_quick_exit_never_hangs() {
    let env = TestEnv::new("quick");
    for i in 0..20 {
        let c = env.container("q", env.bundle().args(&["true"]));
        let out = c.run_fg_timeout(Duration::from_secs(10));
        assert_eq!(out.code, 0, "iteration {i}: {out}");
    }
    let left: Vec<String> = env
        .sg
        .root_entries()
        .into_iter()
        .filter(|e| !e.starts_with('.'))
        .collect();
    assert!(
        left.is_empty(),
        "foreground runs left state behind: {left:?}"
    );
}

/// Commands that change a container (pause, resume, kill) rewrite its state while others read
/// it. runc writes state atomically (temp file + rename); a reader must never find it empty or
/// half-written.
#[test]
fn state_is_never_seen_half_written() {
    let env = TestEnv::new("atomic");
    let c = env.container("a", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writer_errors = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut errors = Vec::new();
            for _ in 0..40 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                for verb in ["pause", "resume"] {
                    let out = env.sg.run([verb, &c.id]);
                    if out.code != 0 {
                        errors.push(out.to_string());
                    }
                }
            }
            errors
        });
        let mut failures = Vec::new();
        for _ in 0..150 {
            let out = env.sg.run(["state", &c.id]);
            if out.code != 0 {
                failures.push(out.to_string());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writer_errors = writer.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} of 150 `state` calls failed while pause/resume rewrote the state; first: {}",
            failures.len(),
            failures[0]
        );
        writer_errors
    });
    assert!(
        writer_errors.is_empty(),
        "{} pause/resume calls failed while `state` read it; first: {}",
        writer_errors.len(),
        writer_errors[0]
    );
}

#[test]
fn kill_all_reaches_exec_processes() {
    let env = TestEnv::new("killall");
    let c = env.container("k", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let pf = env.path().join("exec.pid");
    c.exec(
        &["-d", "--pid-file", pf.to_str().unwrap()],
        &["sleep", "1000"],
    )
    .ok();
    let exec_pid: i32 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    let init = c.pid();
    env.sg.run(["kill", "--all", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (alive(exec_pid) || alive(init)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(init), "init {init} survived kill --all");
    assert!(
        !alive(exec_pid),
        "exec'd process {exec_pid} survived kill --all"
    );
}

#[test]
fn delete_force_of_a_paused_container() {
    let env = TestEnv::new("delpaused");
    let c = env.container("p", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let init = c.pid();
    env.sg.run(["pause", &c.id]).ok();
    env.sg
        .run(["delete", &c.id])
        .failed()
        .stderr_has(&[&c.id, "paused"]);
    env.sg
        .run_with(
            ["delete", "-f", &c.id],
            sgrun_tests::RunOpts {
                timeout: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        )
        .ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(init) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(init), "a frozen init {init} survived delete -f");
    let left = cgroup_dirs(&c.cgroup);
    assert!(
        left.is_empty(),
        "delete -f of a paused container left cgroups: {left:?}"
    );
    assert!(!env.sg.root.join(&c.id).exists());
}

#[test]
fn init_killed_behind_our_back_is_stopped() {
    let env = TestEnv::new("killed");
    let c = env.container("k", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let init = c.pid();
    // SAFETY: kill(2) of the init this test just started.
    assert_eq!(unsafe { libc::kill(init, libc::SIGKILL) }, 0);
    c.wait_status("stopped");
    let ps = env.sg.run(["ps", "--format", "json", &c.id]);
    assert_eq!(ps.ok().json(), serde_json::json!([]), "{ps}");
    env.sg.run(["delete", &c.id]).ok();
    assert!(cgroup_dirs(&c.cgroup).is_empty());
}

#[test]
fn foreground_run_forwards_signals() {
    let env = TestEnv::new("fwd");
    // No pid namespace, so that sleep (no handler) dies of the forwarded SIGTERM.
    let c = env.container(
        "f",
        env.bundle().without_namespace("pid").args(&["sleep", "30"]),
    );
    let run = c.spawn_fg();
    c.wait_status("running");
    // SAFETY: kill(2) of the sgrun process this test started.
    assert_eq!(unsafe { libc::kill(run.pid(), libc::SIGTERM) }, 0);
    let out = run.wait(Duration::from_secs(10));
    assert_eq!(
        out.code,
        128 + 15,
        "SIGTERM to `sgrun run` reaches the container: {out}"
    );
}

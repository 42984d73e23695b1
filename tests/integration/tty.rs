//! Terminals through a console socket, as containerd uses them: sgrun connects to the socket and
//! sends the pty master with SCM_RIGHTS; the caller reads the process's output from it.

use std::time::Duration;

use sgrun_tests::{read_pty, ConsoleSocket, RunOpts, TestEnv};

const SCRIPT: &str =
    "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-stdio-are-ttys; echo hello-from-tty";

#[test]
fn create_with_console_socket() {
    let env = TestEnv::new("tty");
    let sock = ConsoleSocket::bind(&env.path().join("console.sock"));
    let c = env.container("t", env.bundle().terminal(true).sh(SCRIPT));
    c.create_args(&["--console-socket", sock.path.to_str().unwrap()])
        .ok();
    let master = sock
        .recv_master(Duration::from_secs(5))
        .expect("the pty master arrives on the console socket during create");
    c.start();
    let text = read_pty(&master, Duration::from_secs(10));
    assert!(
        text.contains("/dev/pts/"),
        "the process runs on a pty: {text:?}"
    );
    assert!(text.contains("all-stdio-are-ttys"), "{text:?}");
    assert!(text.contains("hello-from-tty"), "{text:?}");
    c.wait_status("stopped");
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let env = TestEnv::new("ttynosock");
    let c = env.container("t", env.bundle().terminal(true).args(&["true"]));
    let out = c.create_args(&[]);
    out.failed().stderr_has(&["console"]);
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn exec_tty_with_console_socket() {
    let env = TestEnv::new("exectty");
    let c = env.container("e", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();

    // Foreground exec: it waits for the process while we read its terminal.
    let sock = ConsoleSocket::bind(&env.path().join("exec.sock"));
    let run = env.sg.spawn([
        "exec",
        "-t",
        "--console-socket",
        sock.path.to_str().unwrap(),
        &c.id,
        "sh",
        "-c",
        &format!("{SCRIPT}; exit 5"),
    ]);
    let master = match sock.recv_master(Duration::from_secs(10)) {
        Ok(m) => m,
        Err(e) => panic!("{e}; exec: {}", run.wait(Duration::from_secs(10))),
    };
    let text = read_pty(&master, Duration::from_secs(10));
    let out = run.wait(Duration::from_secs(10));
    assert_eq!(out.code, 5, "exec -t reports the process's status: {out}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("all-stdio-are-ttys"), "{text:?}");
    assert!(text.contains("hello-from-tty"), "{text:?}");

    // Detached exec with a terminal: returns at once, the terminal goes to the socket.
    let sock = ConsoleSocket::bind(&env.path().join("execd.sock"));
    let out = env.sg.run_with(
        [
            "exec",
            "-t",
            "-d",
            "--console-socket",
            sock.path.to_str().unwrap(),
            &c.id,
            "sh",
            "-c",
            "echo detached-tty; sleep 1",
        ],
        RunOpts {
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    out.ok();
    let master = sock
        .recv_master(Duration::from_secs(5))
        .expect("pty master of exec -t -d");
    let text = read_pty(&master, Duration::from_secs(10));
    assert!(text.contains("detached-tty"), "{text:?}");
}

#[test]
fn missing_console_socket_is_refused() {
    let env = TestEnv::new("ttymissing");
    let sock = env.path().join("nobody-listens.sock");
    let c = env.container("t", env.bundle().terminal(true).args(&["true"]));
    let out = c.create_args(&["--console-socket", sock.to_str().unwrap()]);
    out.failed();
    env.assert_nothing_left(&c.id, &c.cgroup);
    let create_out = out.clone();

    // exec -t -d needs a console socket, and a missing one is refused naming it.
    let r = env.container("r", env.bundle().args(&["sleep", "1000"]));
    r.run_detached();
    let out = r.exec(&["-t", "-d"], &["true"]);
    out.failed().stderr_has(&["console"]);
    let out = r.exec(
        &["-t", "--console-socket", sock.to_str().unwrap()],
        &["true"],
    );
    out.failed().stderr_has(&[sock.to_str().unwrap()]);
    let procs = r.read_cgroup("pids", "cgroup.procs");
    assert_eq!(
        procs.lines().count(),
        1,
        "a refused exec left a process: {procs}"
    );
    // Last, so that the checks above run whatever this says.
    create_out.stderr_has(&[sock.to_str().unwrap()]);
}

/// `process.consoleSize` is the terminal's size from the first byte, for the init and for an
/// exec (containerd passes the client's size there, as runc applies it); without it a program
/// starting on the terminal sees 0x0 until the first resize.
#[test]
fn console_size_is_applied_to_init_and_exec() {
    let env = TestEnv::new("ttysize");
    let sock = ConsoleSocket::bind(&env.path().join("console.sock"));
    let bundle = env
        .bundle()
        .terminal(true)
        .sh("stty size; sleep 1000")
        .edit(|c| c["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 77}));
    let c = env.container("t", bundle);
    c.create_args(&["--console-socket", sock.path.to_str().unwrap()])
        .ok();
    let master = sock
        .recv_master(Duration::from_secs(5))
        .expect("the pty master arrives on the console socket during create");
    c.start();
    let text = read_pty_until(&master, "33 77", Duration::from_secs(10));
    assert!(text.contains("33 77"), "init: stty size said {text:?}");

    let process = env.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::to_vec(&serde_json::json!({
            "terminal": true, "consoleSize": {"height": 40, "width": 120},
            "user": {"uid": 0, "gid": 0}, "cwd": "/",
            "env": ["PATH=/bin:/usr/bin"], "args": ["stty", "size"],
        }))
        .unwrap(),
    )
    .unwrap();
    let sock = ConsoleSocket::bind(&env.path().join("exec.sock"));
    let run = env.sg.spawn([
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--console-socket",
        sock.path.to_str().unwrap(),
        &c.id,
    ]);
    let master = match sock.recv_master(Duration::from_secs(10)) {
        Ok(m) => m,
        Err(e) => panic!("{e}; exec: {}", run.wait(Duration::from_secs(10))),
    };
    let text = read_pty(&master, Duration::from_secs(10));
    run.wait(Duration::from_secs(10)).ok();
    assert!(text.contains("40 120"), "exec: stty size said {text:?}");
}

/// What the pty printed until `want` appears (the init keeps running, so no EOF comes).
fn read_pty_until(master: &std::os::fd::OwnedFd, want: &str, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    let mut text = String::new();
    while std::time::Instant::now() < deadline && !text.contains(want) {
        text.push_str(&read_pty(master, Duration::from_millis(300)));
    }
    text
}

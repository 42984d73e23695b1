//! The three security properties of `sgrun exec`, each with a weakened twin that proves the
//! test catches the hole (the twins use the test-only knobs of a debug build, see
//! runtime/engine/src/testonly.rs; a release sgrun does not have them):
//!
//! 1. CVE-2016-9962: nothing in the container can reach the exec'd process (its
//!    /proc/<pid>/exe, fd links, mem) before it has dropped its privileges and entered
//!    seccomp. An attacker runs as the container's root and races every new process, and
//!    sgrun's child pauses 400 ms at its last privileged point so the race is always won
//!    when the door is open. Weakened: without PR_SET_DUMPABLE 0 the attacker gets in.
//! 2. No host fd: the command sees 0, 1, 2 only, even when the caller holds other fds open
//!    without close-on-exec. Weakened: without step 9 they leak into the container.
//! 3. CVE-2019-5736: /proc/<pid>/exe of the sgrun exec processes (the waiting parent and the
//!    child during setup) cannot be reopened for writing after they exit. Weakened: without
//!    the read-only re-exec the same reopen succeeds.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use sgrun_tests::{RunOpts, TestEnv, USERNS_HOST_ID};

const PAUSE_MS: &str = "400";

fn knobs(weaken: Option<&str>) -> Vec<(String, String)> {
    let mut v = vec![(
        "SGRUN_TEST_ONLY_EXEC_PAUSE_MS".to_string(),
        PAUSE_MS.to_string(),
    )];
    if let Some(w) = weaken {
        v.push(("SGRUN_TEST_ONLY_WEAKEN".into(), w.into()));
    }
    v
}

/// Run the attacker as the container's init, exec `rounds` times into it (with the widened
/// window, optionally weakened), and return the attacker's log.
fn race(env: &TestEnv, tag: &str, userns: bool, weaken: Option<&str>) -> String {
    let dir = env.path().join(format!("race-{tag}"));
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    if userns {
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(USERNS_HOST_ID)),
            Some(nix::unistd::Gid::from_raw(USERNS_HOST_ID)),
        )
        .unwrap();
    }
    let log = dir.join("race.log");
    let mut b = env
        .bundle()
        .with_probes()
        .bind(&dir, "/data", false)
        .args(&["/probes/probe", "race", "60", "/data/race.log"]);
    if userns {
        b = b.userns();
    }
    let c = env.container(tag, b);
    c.run_detached();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("start")
    {
        assert!(Instant::now() < deadline, "the attacker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        let out = c.sg().run_with(
            // Long enough after execve for the attacker to see it run the image's program.
            ["exec", &c.id, "sleep", "0.5"],
            RunOpts {
                env: knobs(weaken),
                ..Default::default()
            },
        );
        out.ok();
        if let Some(w) = weaken {
            assert!(
                out.stderr.contains("TEST-ONLY WEAKENING ACTIVE") && out.stderr.contains(w),
                "a weakened sgrun says so loudly: {out}"
            );
        }
    }
    // Let the attacker see the last one finish.
    std::thread::sleep(Duration::from_millis(300));
    fs::read_to_string(&log).unwrap()
}

fn count(log: &str, word: &str) -> usize {
    log.lines().filter(|l| l.starts_with(word)).count()
}

#[test]
fn exec_child_is_unreachable_before_it_drops_privileges() {
    let env = TestEnv::new("execrace");
    for userns in [false, true] {
        let tag = if userns { "u" } else { "n" };
        let log = race(&env, tag, userns, None);
        assert_eq!(
            count(&log, "reached"),
            0,
            "userns={userns}: the attacker reached an exec'd process before execve:\n{log}"
        );
        // The attacker really was racing: it saw every exec'd process while it was still
        // sgrun's and was refused, and saw each run the image's program in the end.
        assert!(
            count(&log, "denied") >= 3,
            "userns={userns}: the attacker should have been refused 3 times:\n{log}"
        );
        assert!(count(&log, "clean") >= 1, "userns={userns}:\n{log}");

        // Weakened: without PR_SET_DUMPABLE 0 the same attacker gets in during the window,
        // and sees the runtime's own fds (pipes and namespace files of the host's sgrun).
        let log = race(&env, &format!("w{tag}"), userns, Some("dumpable"));
        assert!(
            count(&log, "reached") >= 1,
            "userns={userns}: the weakened exec must be reachable (else this test proves nothing):\n{log}"
        );
        let reached = log.lines().find(|l| l.starts_with("reached")).unwrap();
        assert!(reached.contains("mem=open"), "{reached}");
    }
}

fn fds_of(out: &sgrun_tests::Out) -> Vec<String> {
    // `ls -l /proc/self/fd` lines end in "N -> TARGET".
    let mut v: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("total"))
        .filter_map(|l| l.split(" -> ").next())
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .filter(|n| n.parse::<u32>().is_ok())
        .collect();
    v.sort();
    v
}

#[test]
fn exec_gets_no_host_fd_of_its_caller() {
    let env = TestEnv::new("execnofd");
    let c = env.container("f", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    // The caller holds a host file and a host directory open at 3 and 4, inheritable.
    let host_fds = || -> Vec<OwnedFd> {
        vec![
            fs::File::open("/etc/hostname").unwrap().into(),
            fs::File::open("/etc").unwrap().into(),
        ]
    };
    let run = |env_knobs: Vec<(String, String)>| {
        c.sg().run_with(
            ["exec", &c.id, "ls", "-l", "/proc/self/fd"],
            RunOpts {
                extra_fds: host_fds(),
                env: env_knobs,
                ..Default::default()
            },
        )
    };
    let out = run(vec![]);
    // 3 is the directory ls itself opened to list.
    assert_eq!(fds_of(out.ok()), ["0", "1", "2", "3"], "{out}");
    assert!(!out.stdout.contains("/etc/hostname"), "{out}");

    // Weakened: without marking fds close-on-exec (step 9), the caller's fds reach the
    // container, and this test sees them.
    let out = run(vec![("SGRUN_TEST_ONLY_WEAKEN".into(), "keep-fds".into())]);
    let fds = fds_of(out.ok());
    assert!(
        fds.len() > 4 && out.stdout.contains("/etc/hostname"),
        "the weakened exec should leak the caller's fds: {out}"
    );
}

#[test]
fn exec_with_closed_stdin_gets_dev_null() {
    let env = TestEnv::new("execstdin");
    let c = env.container("s", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    // fd 0 closed in the caller: sgrun must not put one of its own files there, and the
    // command reads end-of-file.
    let mut cmd = Command::new(sgrun_tests::sgrun_bin());
    cmd.arg("--root")
        .arg(&env.sg.root)
        .args(["exec", &c.id, "sh", "-c", "cat; ls -l /proc/self/fd/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: close is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::close(0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("/dev/null"), "stdin is /dev/null: {stdout}");
}

/// Open /proc/PID/exe as O_PATH (None if the process is gone).
fn grab_exe(pid: i32) -> Option<OwnedFd> {
    let raw = open(
        format!("/proc/{pid}/exe").as_str(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: open returned a fresh fd that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Reopen a grabbed exe for writing (closing it at once, never writing).
fn reopen_for_write(h: &OwnedFd) -> nix::Result<()> {
    let fd = open(
        format!("/proc/self/fd/{}", h.as_raw_fd()).as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    nix::unistd::close(fd)
}

/// Run `exec` with the private binary `bin` and the widened window; grab the exe of the
/// sgrun parent and of its child in the container while the child is in setup; return the
/// reopen results once both exited.
fn attack_exec(
    bin: &Path,
    root: &Path,
    id: &str,
    cgroup_procs: &Path,
    init: i32,
    weaken: Option<&str>,
) -> Vec<nix::Result<()>> {
    let mut cmd = Command::new(bin);
    cmd.arg("--root").arg(root).args(["exec", id, "true"]);
    for k in sgrun_tests::TEST_ONLY_KNOBS {
        cmd.env_remove(k);
    }
    for (k, v) in knobs(weaken) {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parent_exe = {
        // Once it is in the container's cgroup, the parent has re-executed itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = fs::read_to_string(cgroup_procs).unwrap_or_default();
            if let Some(pid) = procs
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .find(|p| *p != init)
            {
                break (grab_exe(child.id() as i32), grab_exe(pid));
            }
            assert!(Instant::now() < deadline, "the exec child never appeared");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let status = child.wait().unwrap();
    assert!(status.success(), "exec failed: {status}");
    let (p, c) = parent_exe;
    vec![
        reopen_for_write(&p.expect("grabbed the parent's exe")),
        reopen_for_write(&c.expect("grabbed the child's exe during setup")),
    ]
}

#[test]
fn exec_cannot_be_used_to_write_the_runtime_binary() {
    let env = TestEnv::new("execexe");
    // A private copy of the binary, so that no other test's sgrun makes the reopen fail with
    // ETXTBSY and hide the result.
    let bin = sgrun_tests::private_sgrun_copy(&env.path().join("sgrun-copy"));
    let c = env.container("x", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let procs = c.cgroup_file("pids", "cgroup.procs");
    let init = c.pid();
    let results = attack_exec(&bin, &env.sg.root, &c.id, &procs, init, None);
    assert_eq!(
        results,
        vec![Err(nix::errno::Errno::EROFS), Err(nix::errno::Errno::EROFS)],
        "the exe of sgrun exec (parent, and child during setup) must be read-only"
    );
    // Weakened: without the read-only re-exec, the same attack gets a writable handle to the
    // runtime binary through both processes.
    let results = attack_exec(
        &bin,
        &env.sg.root,
        &c.id,
        &procs,
        init,
        Some("writable-exe"),
    );
    assert_eq!(
        results,
        vec![Ok(()), Ok(())],
        "the weakened exec must expose a writable binary (control)"
    );
}

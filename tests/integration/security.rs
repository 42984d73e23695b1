//! The runtime binary cannot be overwritten from a container (CVE-2019-5736).
//!
//! The attack: a process in the container gets hold of /proc/<pid>/exe of an sgrun process
//! that entered the container, for example by making `sgrun exec` run a `#!/proc/self/exe`
//! script, keeps an O_PATH handle to it, and once that process has exited (no more ETXTBSY)
//! reopens the handle for writing, which would write the host's runtime binary. sgrun re-executes
//! itself from a detached read-only mount before it enters a container, so the reopen fails
//! with EROFS. Here the test plays the attacker from the host, as root, which is stronger than
//! anything in a container; it only opens for writing and closes, it never writes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use sgrun_tests::TestEnv;

/// Open /proc/PID/exe as O_PATH, let `finish` end the process, then try to reopen for writing.
fn reopen_exe_for_write_after_exit(pid: i32, finish: impl FnOnce()) -> nix::Result<()> {
    let raw = open(
        format!("/proc/{pid}/exe").as_str(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open returned a fresh fd that nothing else owns.
    let handle = unsafe { OwnedFd::from_raw_fd(raw) };
    finish();
    let again = open(
        format!("/proc/self/fd/{}", handle.as_raw_fd()).as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // Opened for writing: the hole is there. Close without writing anything.
    nix::unistd::close(again)?;
    Ok(())
}

#[test]
fn runtime_binary_cannot_be_reopened_for_writing() {
    let env = TestEnv::new("exeprot");
    // A private copy of the binary, so that no other test's sgrun makes the reopen fail with
    // ETXTBSY and hide the result.
    let bin = sgrun_tests::private_sgrun_copy(&env.dir.path().join("sgrun-copy"));
    let root = env.dir.path().join("state");
    let c = env.container("c", env.bundle().args(&["sleep", "30"]));
    let sg = |args: &[&str]| {
        Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let bundle = c.bundle_dir.to_string_lossy().into_owned();
    let mut run = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", &bundle, &c.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the container runs, the foreground `run` has re-executed itself (same pid).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&sg(&["state", &c.id]).stdout).contains("\"running\"") {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let protected = reopen_exe_for_write_after_exit(run.id() as i32, || {
        sg(&["kill", &c.id, "KILL"]);
        run.wait().unwrap();
    });
    sg(&["delete", "-f", &c.id]);
    assert_eq!(
        protected,
        Err(nix::errno::Errno::EROFS),
        "the exe of an sgrun that entered a container must be read-only"
    );

    // Weakened: an sgrun command that does not enter a container does not re-execute itself;
    // the same attack on it gets a writable handle to the binary.
    let mut idle = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["update", "--resources", "-", "x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stdin = idle.stdin.take();
    let weak = reopen_exe_for_write_after_exit(idle.id() as i32, move || {
        drop(stdin);
        idle.wait().unwrap();
    });
    assert_eq!(
        weak,
        Ok(()),
        "the unprotected binary must be reachable for writing (control)"
    );
}

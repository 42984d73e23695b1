//! Real installs, each in a forked child so the test process itself stays unfiltered.
//!
//! The child sets no_new_privs (as the container init does), installs, makes raw system calls
//! and reports through its exit code: 0 for success, otherwise the number of the check that
//! failed. It never returns into the test harness and only makes async-signal-safe calls.

use serde_json::json;

use super::compiled;
use super::docker::docker_default;
use crate::guard::X32_SYSCALL_BIT;
use crate::CompiledSeccomp;

const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x004_0000;

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid to read.
    unsafe { *libc::__errno_location() }
}

/// True if the raw call result is a failure with `expected` errno.
fn failed_with(rc: libc::c_long, expected: i32) -> bool {
    rc == -1 && errno() == expected
}

/// Forks; the child runs `body` (after setting no_new_privs and installing `filters`) and
/// exits with its result. Returns the child's wait status.
fn in_child(filters: &CompiledSeccomp, body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork from a multi-threaded test process. The child only runs prctl, seccomp(2)
    // through `install` (which does not allocate on success), raw syscalls and _exit, and
    // never returns into the harness, so no lock held by another thread is needed.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: plain prctl with integer arguments.
        let code = if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            100
        } else if filters.install().is_err() {
            101
        } else {
            body()
        };
        // SAFETY: _exit ends the child at once, without running the parent's atexit handlers
        // or unwinding into the harness.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

fn exit_code(status: i32) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

#[test]
fn installed_filter_answers_with_configured_errno() {
    let filters = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            { "names": ["exit", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ" }] },
            { "names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }
        ]
    }));
    let status = in_child(&filters, || {
        // SAFETY (all calls below): raw system calls with integer arguments only.
        unsafe {
            if libc::syscall(libc::SYS_getpid) <= 0 {
                return 1;
            }
            if !failed_with(libc::syscall(libc::SYS_getuid), libc::EACCES) {
                return 2;
            }
            if !failed_with(libc::syscall(libc::SYS_gettid), libc::EPERM) {
                return 3;
            }
            if libc::syscall(libc::SYS_personality, 0xffff_ffff as libc::c_ulong) < 0 {
                return 4;
            }
            if !failed_with(
                libc::syscall(libc::SYS_personality, ADDR_NO_RANDOMIZE),
                libc::EPERM,
            ) {
                return 5;
            }
            let x32_getpid = libc::c_long::from(X32_SYSCALL_BIT) | libc::SYS_getpid;
            if !failed_with(libc::syscall(x32_getpid), libc::ENOSYS) {
                return 6;
            }
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "wait status {status:#x}");
}

#[test]
fn installed_kill_process_kills_with_sigsys() {
    let filters = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" }]
    }));
    let status = in_child(&filters, || {
        // SAFETY: a raw system call without arguments.
        unsafe { libc::syscall(libc::SYS_getppid) };
        7
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
        "wait status {status:#x}"
    );
}

#[test]
fn docker_default_installs_and_denies() {
    let filters = docker_default();
    let status = in_child(&filters, || {
        // SAFETY (all calls below): raw system calls with integer or null arguments; none
        // succeeds in changing the child's state, they are denied before running.
        unsafe {
            if libc::syscall(libc::SYS_getpid) <= 0 {
                return 1;
            }
            // Root could otherwise create a user namespace.
            if !failed_with(
                libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
                libc::EPERM,
            ) {
                return 2;
            }
            if !failed_with(
                libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize),
                libc::ENOSYS,
            ) {
                return 3;
            }
            if !failed_with(
                libc::syscall(libc::SYS_umount2, c"/nonexistent".as_ptr(), 0),
                libc::EPERM,
            ) {
                return 4;
            }
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "wait status {status:#x}");
}

#[test]
fn denylist_that_denies_seccomp_still_installs_every_filter() {
    // Three filters (guard, ERRNO(13), ERRNO(1)); the one denying seccomp must come last or
    // installing the others would fail.
    let filters = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["seccomp"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }
        ]
    }));
    assert_eq!(filters.filter_count(), 3);
    let status = in_child(&filters, || {
        // SAFETY (all calls below): raw system calls with integer or null arguments.
        unsafe {
            if !failed_with(libc::syscall(libc::SYS_getuid), libc::EACCES) {
                return 1;
            }
            let strict = libc::SECCOMP_SET_MODE_STRICT as libc::c_long;
            if !failed_with(libc::syscall(libc::SYS_seccomp, strict, 0, 0), libc::EPERM) {
                return 2;
            }
            if libc::syscall(libc::SYS_getgid) < 0 {
                return 3;
            }
        }
        0
    });
    assert_eq!(exit_code(status), Some(0), "wait status {status:#x}");
}

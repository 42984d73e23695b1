//! A short-lived child that does a few raw system calls inside a container's namespaces
//! (setns changes the calling thread's namespaces, so the runtime itself never calls it).
//! The child reports the step that failed and its errno through a pipe.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Where a child's work failed: the caller's own step number and the errno.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    pub step: u32,
    pub errno: i32,
}

/// Opens `/proc/<pid>/<name>` (a namespace or the root of the container's init) in the parent,
/// before any fork.
pub fn open_proc(pid: Pid, name: &str, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(Path::new(&format!("/proc/{pid}")).join(name))
        .map(OwnedFd::from)
}

/// Runs `work` in a forked child and returns what it reported. `work` must only make system
/// calls on data prepared before this call: no allocation, no locks (the parent may have
/// other threads).
pub fn run(work: impl FnOnce() -> Result<(), Failed>) -> std::io::Result<Result<(), Failed>> {
    let (report_read, report_write) = nix::unistd::pipe()?;
    // SAFETY: the child runs `work` (raw system calls, see above), writes to a pipe and
    // _exits; it returns into none of the parent's code.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(report_read);
            let result = work();
            if let Err(f) = result {
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&f.step.to_ne_bytes());
                msg[4..].copy_from_slice(&f.errno.to_ne_bytes());
                // SAFETY: writes 8 bytes from a live stack buffer to our own pipe.
                unsafe { libc::write(report_write.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
            }
            // SAFETY: _exit ends the forked child without running the parent's destructors
            // or atexit handlers.
            unsafe { libc::_exit(i32::from(result.is_err())) }
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            let status = waitpid(child, None)?;
            let mut msg = [0u8; 8];
            if nix::unistd::read(report_read.as_raw_fd(), &mut msg).unwrap_or(0) == 8 {
                return Ok(Err(Failed {
                    step: u32::from_ne_bytes(msg[..4].try_into().expect("4 bytes")),
                    errno: i32::from_ne_bytes(msg[4..].try_into().expect("4 bytes")),
                }));
            }
            match status {
                WaitStatus::Exited(_, 0) => Ok(Ok(())),
                other => Err(std::io::Error::other(format!(
                    "the helper ended as {other:?}"
                ))),
            }
        }
    }
}

/// errno of the last failed system call, in a forked child (reads errno, allocates nothing).
pub fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Enters the namespace `fd` of type `nstype` (CLONE_NEWNS, CLONE_NEWNET, …); step 0 on failure.
pub fn setns(fd: &OwnedFd, nstype: libc::c_int) -> Result<(), Failed> {
    // SAFETY: setns on a namespace fd we opened; only the forked child calls this.
    if unsafe { libc::setns(fd.as_raw_fd(), nstype) } != 0 {
        return Err(Failed {
            step: 0,
            errno: errno(),
        });
    }
    Ok(())
}

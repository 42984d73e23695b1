//! Waiting for a foreground process (the init of `run`, the process of `exec`) the way a shell
//! expects: signals sent to sgrun are forwarded to it, its exit status becomes ours (128+N for
//! a signal), and with a terminal the pty is proxied, the window size follows ours and raw
//! mode is restored on the way out.
//!
//! Signals are blocked *before* the process is forked and read from a signalfd afterwards, so
//! a child that exits at once cannot lose its SIGCHLD (youki's foreground run hangs on that).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::signal::exit_code;

/// Block every signal in this process; the returned guard restores the previous mask.
pub struct BlockedSignals {
    old: SigSet,
}

impl BlockedSignals {
    pub fn block() -> nix::Result<Self> {
        let mut old = SigSet::empty();
        sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old),
        )?;
        Ok(BlockedSignals { old })
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// The parent's end of a pseudo-terminal whose other end is the child's controlling tty.
pub struct PtyProxy {
    pub master: OwnedFd,
}

/// Puts stdin into raw mode while alive, if stdin is a terminal.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, t);
        }
    }
}

pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write one winsize struct that outlives the calls.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Wait for `pid` (a child of this process) with signals already blocked by the caller.
/// Returns its exit status as a shell reports it.
pub fn wait_forwarding(pid: Pid, pty: Option<PtyProxy>) -> nix::Result<i32> {
    let sfd = SignalFd::with_flags(
        &SigSet::all(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?;
    let _raw = pty.as_ref().map(|_| RawMode::enter());
    if let Some(p) = &pty {
        copy_window_size(std::io::stdin().as_fd(), p.master.as_fd());
    }
    let stdin = std::io::stdin();
    let mut stdin_open = pty.is_some();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pty {
            fds.push(PollFd::new(p.master.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if let Some(p) = &pty {
            if ready.get(1) == Some(&true) {
                // Output of the process: copy to our stdout.
                match nix::unistd::read(p.master.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => write_all(libc::STDOUT_FILENO, &buf[..n]),
                    _ => {}
                }
            }
            if stdin_open && ready.get(2) == Some(&true) {
                match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => write_all(p.master.as_raw_fd(), &buf[..n]),
                    _ => stdin_open = false,
                }
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    if let Some(code) = reap(pid)? {
                        if let Some(p) = &pty {
                            drain(p.master.as_raw_fd(), &mut buf);
                        }
                        return Ok(code);
                    }
                } else if signo == libc::SIGWINCH {
                    if let Some(p) = &pty {
                        copy_window_size(std::io::stdin().as_fd(), p.master.as_fd());
                    }
                } else if let Ok(sig) = Signal::try_from(signo) {
                    let _ = kill(pid, sig);
                }
            }
        }
    }
}

/// Reap every exited child; report `pid`'s status once it has exited.
fn reap(pid: Pid) -> nix::Result<Option<i32>> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(result),
            Ok(status) => {
                if status.pid() == Some(pid) {
                    result = exit_code(status);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn drain(master: i32, buf: &mut [u8]) {
    while let Ok(n) = nix::unistd::read(master, buf) {
        if n == 0 {
            break;
        }
        write_all(libc::STDOUT_FILENO, &buf[..n]);
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    // SAFETY: fd stays open for the duration of the call; the slice is valid.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}

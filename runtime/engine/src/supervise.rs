//! Waiting for a foreground process (the init of `run`, the process of `exec`) the way a shell
//! expects: signals sent to sgrun are forwarded to it, its exit status becomes ours (128+N for
//! a signal), and with a terminal the pty is proxied, the window size follows ours and raw
//! mode is restored on the way out.
//!
//! When the caller's terminal goes away (SIGHUP, or its read end reports hangup), the
//! process's session is hung up too: SIGHUP to it, the pty closed, and after a grace period
//! SIGKILL to every process still in that session, so a vanished SRE terminal leaves no
//! shell or background job behind in the tenant's container.
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
    let mut pty = pty;
    let _raw = pty.as_ref().map(|_| RawMode::enter());
    if let Some(p) = &pty {
        copy_window_size(std::io::stdin().as_fd(), p.master.as_fd());
    }
    let stdin = std::io::stdin();
    let stdin_is_tty = nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false);
    let mut stdin_open = pty.is_some();
    let mut buf = [0u8; 16 * 1024];
    // Set once the caller's terminal is gone: when the session gets SIGKILL.
    let mut kill_at: Option<std::time::Instant> = None;
    loop {
        if let Some(at) = kill_at {
            if std::time::Instant::now() >= at {
                kill_session(pid, Signal::SIGKILL);
                kill_at = Some(at + HANGUP_GRACE);
            }
        }
        let timeout = match kill_at {
            Some(at) => PollTimeout::try_from(
                at.saturating_duration_since(std::time::Instant::now())
                    .as_millis()
                    .min(60_000) as i32
                    + 1,
            )
            .unwrap_or(PollTimeout::NONE),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pty {
            fds.push(PollFd::new(p.master.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut hung_up = false;
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
                    // A terminal in raw mode never reads as end-of-file: it was hung up.
                    _ if stdin_is_tty => hung_up = true,
                    // A pipe or file ended: the process keeps its terminal.
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
                } else if signo == libc::SIGHUP && pty.is_some() {
                    hung_up = true;
                } else if signo == libc::SIGWINCH {
                    if let Some(p) = &pty {
                        copy_window_size(std::io::stdin().as_fd(), p.master.as_fd());
                    }
                } else if let Ok(sig) = Signal::try_from(signo) {
                    let _ = kill(pid, sig);
                }
            }
        }
        if hung_up && kill_at.is_none() {
            // The caller's terminal is gone. Hang up the process's session as a terminal
            // would: SIGHUP, then close our end of the pty (the kernel hangs up its side),
            // then SIGKILL whatever of the session ignored that.
            tracing::info!(pid = pid.as_raw(), "terminal gone: hanging up the session");
            kill_session(pid, Signal::SIGHUP);
            let _ = kill(pid, Signal::SIGCONT);
            pty = None;
            stdin_open = false;
            kill_at = Some(std::time::Instant::now() + HANGUP_GRACE);
        }
    }
}

/// How long a hung-up session has to exit before it gets SIGKILL.
const HANGUP_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);

/// Signal `leader` and every process in the session it leads (host pids, from /proc: the
/// session survives its members' process groups, so background jobs are found too).
fn kill_session(leader: Pid, sig: Signal) {
    let _ = kill(leader, sig);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces and parentheses): state, ppid,
        // pgrp, session.
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|s| s.parse::<i32>().ok());
        if session == Some(leader.as_raw()) && pid != leader.as_raw() {
            let _ = kill(Pid::from_raw(pid), sig);
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

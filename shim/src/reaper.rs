//! The one place that reaps. The shim is a child subreaper: the container's init and every
//! detached exec are reparented to it once the `sgrun` command that forked them exits, and
//! the `sgrun` commands are its own children. One SIGCHLD loop calls `waitpid(-1, WNOHANG)`
//! and hands each status to whoever waits for that pid.
//!
//! tokio::process and std's `Child::wait` are not used: they wait for a single pid and would
//! race this loop for the same children (the loser sees ECHILD and loses the status).
//!
//! A child can exit before its pid is known to anyone (a container's init that dies during
//! `sgrun create`, a command that exits at once), so statuses nobody waits for yet are kept,
//! up to a bound, and handed over when the wait is registered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// Statuses kept for pids nobody has asked about yet (orphans the shim inherits count too).
const MAX_UNCLAIMED: usize = 512;

#[derive(Default)]
struct Table {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
    order: VecDeque<i32>,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// The exit status as a shell reports it: the code, or 128+N for a process killed by signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn deliver(pid: i32, code: i32) {
    let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
    t.deliver(pid, code);
}

impl Table {
    fn deliver(&mut self, pid: i32, code: i32) {
        let t = self;
        if let Some(tx) = t.waiters.remove(&pid) {
            // the waiter may have given up (its future dropped); nothing else wants the status
            let _ = tx.send(code);
            return;
        }
        if t.unclaimed.insert(pid, code).is_none() {
            t.order.push_back(pid);
        }
        while t.order.len() > MAX_UNCLAIMED {
            if let Some(old) = t.order.pop_front() {
                t.unclaimed.remove(&old);
            }
        }
    }
}

/// Reaps every child that has exited. Returns the number reaped.
pub fn reap_all() -> usize {
    let mut n = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return n,
            Ok(st) => {
                if let (Some(pid), Some(code)) = (st.pid(), exit_code(st)) {
                    tracing::debug!(pid = pid.as_raw(), code, "reaped");
                    deliver(pid.as_raw(), code);
                    n += 1;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "waitpid");
                return n;
            }
        }
    }
}

/// Starts the SIGCHLD loop on the current runtime. Call once, before any child is spawned.
pub fn start() -> std::io::Result<()> {
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        // a child may have exited before the handler was installed
        reap_all();
        while sigchld.recv().await.is_some() {
            reap_all();
        }
    });
    Ok(())
}

/// Waits for `pid` to exit and returns its status (128+N for signal N). Registering is
/// synchronous, so a caller that registers right after spawning cannot miss the exit.
pub fn wait(pid: i32) -> impl std::future::Future<Output = Option<i32>> {
    let rx = {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(code) = t.unclaimed.remove(&pid) {
            t.order.retain(|p| *p != pid);
            Err(code)
        } else {
            let (tx, rx) = oneshot::channel();
            t.waiters.insert(pid, tx);
            Ok(rx)
        }
    };
    async move {
        match rx {
            Err(code) => Some(code),
            Ok(rx) => rx.await.ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn signals_are_128_plus_n() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 0)), Some(0));
        assert_eq!(exit_code(WaitStatus::Exited(p, 42)), Some(42));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGTERM, true)),
            Some(143)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn an_exit_before_the_wait_is_kept() {
        deliver(999_001, 3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(wait(999_001)), Some(3));
        // handed over once
        assert!(!table().lock().unwrap().unclaimed.contains_key(&999_001));
    }

    #[test]
    fn a_wait_before_the_exit_gets_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let fut = wait(999_002);
        deliver(999_002, 137);
        assert_eq!(rt.block_on(fut), Some(137));
    }

    #[test]
    fn unclaimed_statuses_are_bounded() {
        let mut t = Table::default();
        for pid in 0..(MAX_UNCLAIMED as i32 + 50) {
            t.deliver(1_000_000 + pid, 0);
        }
        assert!(t.unclaimed.len() <= MAX_UNCLAIMED);
        assert_eq!(t.unclaimed.len(), t.order.len());
    }
}

//! Foreground `run`: create, start, wait, delete, exit with the container's status.

use nix::unistd::Pid;
use tracing::info_span;

use crate::container::{CreateOptions, Runtime, Stdio};
use crate::error::{EngineError, Result};
use crate::supervise::{wait_forwarding, BlockedSignals};

pub fn run_foreground(rt: &Runtime, id: &str, opts: &CreateOptions, keep: bool) -> Result<i32> {
    let _span = info_span!("container", id).entered();
    // Order matters: signals are blocked before libcontainer forks, so a container that exits
    // before we wait cannot lose its SIGCHLD; the init unblocks them just before execve.
    let _blocked = BlockedSignals::block().map_err(|e| EngineError::Sys {
        id: id.into(),
        action: "blocking signals",
        source: e,
    })?;
    let mut opts = opts.clone();
    opts.detach = false;
    let container = rt.create(id, &opts, Stdio::default())?;
    let pid = container.pid().ok_or_else(|| EngineError::Exec {
        id: id.into(),
        message: "created container has no init pid".into(),
    })?;
    if let Err(e) = rt.start(id) {
        let _ = rt.delete(id, true);
        return Err(e);
    }
    let code = wait_forwarding(Pid::from_raw(pid.as_raw()), None).map_err(|e| EngineError::Sys {
        id: id.into(),
        action: "waiting for the container",
        source: e,
    });
    if !keep {
        rt.delete(id, true)?;
    }
    code
}

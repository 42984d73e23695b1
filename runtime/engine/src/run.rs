//! Foreground `run`: create, start, wait, delete, exit with the container's status. With
//! process.terminal and no --console-socket, sgrun receives the pty itself and proxies it to
//! its own terminal, as runc does.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::unistd::Pid;
use tracing::info_span;

use crate::container::{CreateOptions, Runtime, Stdio};
use crate::error::{EngineError, Result};
use crate::supervise::{wait_forwarding, BlockedSignals, PtyProxy};

pub fn run_foreground(rt: &Runtime, id: &str, opts: &CreateOptions, keep: bool) -> Result<i32> {
    let _span = info_span!("container", id).entered();
    crate::id::validate_id(id)?;
    let mut opts = opts.clone();
    opts.detach = false;
    // A private console socket when the process wants a terminal and the caller gave none.
    let console = if opts.console_socket.is_none() && wants_terminal(&opts.bundle) {
        rt.ensure_root()?;
        // Short path: sun_path holds 108 bytes and ids may be long.
        let path = rt
            .root()
            .join(format!(".console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| EngineError::io("creating console socket", &path, e))?;
        opts.console_socket = Some(path.clone());
        Some((listener, ConsolePath(path)))
    } else {
        None
    };
    // Order matters: signals are blocked before libcontainer forks, so a container that exits
    // before we wait cannot lose its SIGCHLD; the init unblocks them just before execve.
    let _blocked = BlockedSignals::block().map_err(|e| EngineError::Sys {
        id: id.into(),
        action: "blocking signals",
        source: e,
    })?;
    let container = rt.create(id, &opts, Stdio::default())?;
    let pid = container.pid().ok_or_else(|| EngineError::Exec {
        id: id.into(),
        message: "created container has no init pid".into(),
    })?;
    // The init sent the pty master during create; the connection waits in the backlog.
    let pty = match console {
        Some((listener, _path)) => {
            let master = listener
                .accept()
                .and_then(|(conn, _)| crate::exec::recv_fd(&conn));
            match master {
                Ok(m) => Some(PtyProxy { master: m }),
                Err(e) => {
                    let _ = rt.delete(id, true);
                    return Err(EngineError::io(
                        "receiving the terminal of",
                        rt.root().join(id),
                        e,
                    ));
                }
            }
        }
        None => None,
    };
    if let Err(e) = rt.start(id) {
        let _ = rt.delete(id, true);
        return Err(e);
    }
    let code = wait_forwarding(Pid::from_raw(pid.as_raw()), pty).map_err(|e| EngineError::Sys {
        id: id.into(),
        action: "waiting for the container",
        source: e,
    });
    // The container's exit status is what the caller waits for; a failed clean-up after it
    // is reported but does not replace it.
    if !keep {
        if let Err(e) = rt.delete(id, true) {
            tracing::error!(error = %e, "deleting the container after it exited");
        }
    }
    code
}

/// Removes the private console socket however run ends.
struct ConsolePath(PathBuf);

impl Drop for ConsolePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn wants_terminal(bundle: &std::path::Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Cfg {
        process: Option<Proc>,
    }
    #[derive(serde::Deserialize)]
    struct Proc {
        terminal: Option<bool>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<Cfg>(&t).ok())
        .and_then(|c| c.process)
        .and_then(|p| p.terminal)
        .unwrap_or(false)
}

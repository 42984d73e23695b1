//! Site mode: the shim started by `sgrun site` without containerd (docs/shim.md, "Site mode").
//!
//! The mode is on when `SGRUN_SITE_RUN` names the site's runtime directory, both for the
//! `start` action and for the daemon it spawns (which gets the variables explicitly). Then the
//! shim socket is `$SGRUN_SITE_RUN/shim.sock`, the daemon serves containerd's Events service
//! itself on `$SGRUN_SITE_RUN/events.sock` and writes events to `$SGRUN_SITE_EVENTS`
//! (events_sink.rs), sgrun's state root is the Root option verbatim, and the restart policy
//! annotations apply (restart.rs).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Result, ShimError};

/// The site's runtime directory (created by the client, 0711).
pub const RUN_ENV: &str = "SGRUN_SITE_RUN";
/// The persistent JSON-lines event log.
pub const EVENTS_ENV: &str = "SGRUN_SITE_EVENTS";
/// What the containerd-shim crate connects its event publisher to.
pub const TTRPC_ADDRESS_ENV: &str = "TTRPC_ADDRESS";
/// sgrun's own default state root: site containers live there so that `sgrun exec ID` and
/// `sgrun list` see them without flags.
pub const DEFAULT_ROOT: &str = "/run/sgrun";

const SHIM_SOCKET: &str = "shim.sock";
const EVENTS_SOCKET: &str = "events.sock";
const SHIM_LOG: &str = "shim.log";
const DEFAULT_EVENTS_FILE: &str = "events.jsonl";
/// sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
const SUN_PATH_MAX: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `$SGRUN_SITE_RUN`
    pub run: PathBuf,
    /// `$SGRUN_SITE_EVENTS`, else `$SGRUN_SITE_RUN/events.jsonl`
    pub events: PathBuf,
}

impl Site {
    /// Site mode from the environment: `None` when `SGRUN_SITE_RUN` is unset or empty
    /// (containerd mode), an error naming the variable when it is unusable.
    pub fn from_env() -> Result<Option<Site>> {
        let get = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        match get(RUN_ENV) {
            None => Ok(None),
            Some(run) => Site::new(run, get(EVENTS_ENV)).map(Some),
        }
    }

    pub fn new(run: PathBuf, events: Option<PathBuf>) -> Result<Site> {
        let bad = |var, value: &Path, reason: &str| ShimError::SiteEnv {
            var,
            value: value.display().to_string(),
            reason: reason.into(),
        };
        if !run.is_absolute() {
            return Err(bad(RUN_ENV, &run, "must be an absolute path"));
        }
        // checked here, where the client sees it, not as a bind error in a daemon's log
        let longest = run
            .join(SHIM_SOCKET)
            .as_os_str()
            .len()
            .max(run.join(EVENTS_SOCKET).as_os_str().len());
        if longest > SUN_PATH_MAX {
            return Err(bad(
                RUN_ENV,
                &run,
                &format!("too long for a unix socket path ({longest} bytes with the socket name, at most {SUN_PATH_MAX})"),
            ));
        }
        let events = events.unwrap_or_else(|| run.join(DEFAULT_EVENTS_FILE));
        if !events.is_absolute() {
            return Err(bad(EVENTS_ENV, &events, "must be an absolute path"));
        }
        Ok(Site { run, events })
    }

    pub fn shim_socket(&self) -> PathBuf {
        self.run.join(SHIM_SOCKET)
    }

    pub fn events_socket(&self) -> PathBuf {
        self.run.join(EVENTS_SOCKET)
    }

    /// What `start` prints: the address the client dials.
    pub fn shim_address(&self) -> String {
        format!("unix://{}", self.shim_socket().display())
    }

    /// The daemon's own log (containerd mode writes to the `log` FIFO containerd opens; no
    /// one opens it here), beside the events log: the run directory is removed when a start
    /// fails or the site stops, and the log is what explains why.
    pub fn log_path(&self) -> PathBuf {
        self.events.with_file_name(SHIM_LOG)
    }

    /// The environment of the daemon `start` spawns. TTRPC_ADDRESS is set to the plain path
    /// of events.sock whatever the client passed: the crate connects its publisher with
    /// `UnixAddr::new(TTRPC_ADDRESS)`, which takes a `unix://` prefix as part of a relative
    /// path, and the only Events service there is is the one the daemon serves itself.
    pub fn daemon_env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            (RUN_ENV, self.run.clone()),
            (EVENTS_ENV, self.events.clone()),
            (TTRPC_ADDRESS_ENV, self.events_socket()),
        ]
    }

    /// Serialises `start` for one site: two clients starting the same site at once would
    /// otherwise both find no live socket and both spawn a daemon (the second would take over
    /// events.sock). Held until the daemon serves its socket; flock on the runtime directory
    /// itself, so no lock file is left behind.
    pub fn lock(&self) -> Result<File> {
        let dir = File::open(&self.run)
            .map_err(|e| ShimError::io(&self.run, "opening the site runtime dir", e))?;
        // SAFETY: flock on a descriptor we own; released when the File is dropped.
        let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(ShimError::io(
                &self.run,
                "locking the site runtime dir",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(dir)
    }
}

/// Removes a socket file nobody listens on any more (a shim killed with SIGKILL cannot remove
/// its own). A live socket, or anything that is not a refused connection, is left alone.
pub fn remove_stale_socket(path: &Path) {
    match std::os::unix::net::UnixStream::connect(path) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "removing a stale socket");
            }
        }
        _ => {}
    }
}

/// Removes a socket file at exit; a missing one is fine.
pub fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "removing socket"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_runtime_dir() {
        let s = Site::new("/run/sgrun/sites/t1/blog".into(), None).unwrap();
        assert_eq!(
            s.shim_address(),
            "unix:///run/sgrun/sites/t1/blog/shim.sock"
        );
        assert_eq!(
            s.events_socket(),
            Path::new("/run/sgrun/sites/t1/blog/events.sock")
        );
        assert_eq!(s.events, Path::new("/run/sgrun/sites/t1/blog/events.jsonl"));
        let env = s.daemon_env();
        assert!(env.contains(&(
            TTRPC_ADDRESS_ENV,
            "/run/sgrun/sites/t1/blog/events.sock".into()
        )));
        let s = Site::new("/r".into(), Some("/var/lib/e.jsonl".into())).unwrap();
        assert_eq!(s.events, Path::new("/var/lib/e.jsonl"));
    }

    #[test]
    fn unusable_paths_are_errors_naming_the_variable() {
        let e = Site::new("run/x".into(), None).unwrap_err().to_string();
        assert!(e.contains(RUN_ENV) && e.contains("absolute"), "{e}");
        let long = PathBuf::from(format!("/run/{}", "x".repeat(100)));
        let e = Site::new(long, None).unwrap_err().to_string();
        assert!(e.contains(RUN_ENV) && e.contains("too long"), "{e}");
        let e = Site::new("/r".into(), Some("e.jsonl".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(EVENTS_ENV), "{e}");
    }
}

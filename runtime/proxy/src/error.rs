//! The one error type of this crate. Every variant carries its subject (domain, socket path,
//! pid, nginx's own stderr), so that the last line a user sees says what failed, where, and
//! how to fix it. Inputs that failed validation are shown with `{:?}`: a hostile domain with a
//! newline or an escape sequence is printed escaped, never raw, in a terminal or a log.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

pub type Result<T, E = ProxyError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("site {site:?}: domain {domain:?} {reason}; a domain is a lower-case DNS name like www.example.com (labels of 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-', at least two labels, at most 253 bytes, no wildcard, no trailing dot; punycode for international names)")]
    InvalidDomain {
        domain: String,
        site: String,
        reason: String,
    },

    #[error("site {site:?}: domain {domain} is already routed to site {first_site:?} earlier in the list; a domain can point at one site only: remove it from one of the two sites")]
    DuplicateDomain {
        domain: String,
        site: String,
        first_site: String,
    },

    #[error("site {site:?}: socket path {path:?} {reason}; the socket must be an absolute path of at most 107 bytes made of A-Z a-z 0-9 / . _ - (e.g. /run/sgrun/sites/TENANT/SITE/http/http.sock)")]
    InvalidSocket {
        path: PathBuf,
        site: String,
        reason: String,
    },

    #[error("site name {site:?} {reason}; a site is named \"tenant/site\" with A-Z a-z 0-9 / . _ - only")]
    InvalidSite { site: String, reason: String },

    #[error("listen address {addr}: {reason}")]
    InvalidListen { addr: String, reason: String },

    #[error("{what} {path:?} {reason}")]
    InvalidSetting {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("cannot run nginx at {path:?} (install it: apt-get install nginx-light, or set the nginx path in the proxy configuration)")]
    NginxMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the proxy is already running (nginx master pid {pid}, pid file {pid_file:?}); use `sgrun proxy reload` to apply a new site list, or `sgrun proxy stop` first")]
    AlreadyRunning { pid: i32, pid_file: PathBuf },

    #[error("not running: sgrun proxy start (no live nginx master for {pid_file:?})")]
    NotRunning { pid_file: PathBuf },

    #[error("nginx rejects the proxy configuration even with no site in it, so nothing was changed (the running proxy, if any, is untouched); nginx says:\n{stderr}\nfix what it names (often a directory or log file under {state_dir:?} that cannot be written)")]
    BaseConfigRejected { stderr: String, state_dir: PathBuf },

    #[error("nginx did not start with {config:?}; nginx says:\n{stderr}")]
    StartFailed { config: PathBuf, stderr: String },

    #[error("nginx (master pid {pid}) did not load the new configuration {config:?}; the previous configuration was put back and stays in effect; {error_log:?} says:\n{log_tail}")]
    ReloadFailed {
        pid: i32,
        config: PathBuf,
        error_log: PathBuf,
        log_tail: String,
    },

    #[error("nginx master pid {pid} is still alive after QUIT, TERM and KILL; look at it with `ps -o pid,stat,cmd -p {pid}` (a process stuck in the kernel, state D, cannot be killed)")]
    StopFailed { pid: i32 },

    #[error("cannot send {signal} to nginx master pid {pid}")]
    Signal {
        pid: i32,
        signal: &'static str,
        #[source]
        source: nix::Error,
    },

    #[error("cannot lock {path:?} (it serialises start, reload and stop across sgrun processes)")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ProxyError {
    /// For `map_err`: `.map_err(ProxyError::io("write", &path))`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ProxyError::Io { op, path, source }
    }

    pub(crate) fn listen(addr: &SocketAddr, reason: impl Into<String>) -> Self {
        ProxyError::InvalidListen {
            addr: addr.to_string(),
            reason: reason.into(),
        }
    }
}

//! The engine's one error type. Every variant names its subject (container id, path, cgroup
//! file, signal) so the last line a user reads says what failed where; sources are chained so
//! the root cause (an errno, a JSON position) comes last.

use std::path::PathBuf;

use libcontainer::container::ContainerStatus;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    #[error(
        "container {id:?} already exists in {root}; pick another id or `sgrun delete {id}` first"
    )]
    AlreadyExists { id: String, root: PathBuf },

    #[error("container {id:?} does not exist in {root}")]
    NotFound { id: String, root: PathBuf },

    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },

    #[error("cannot read {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}:{line}:{column}: config.json is not valid JSON: {message}")]
    ConfigSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{path}: at {pointer}: {message}")]
    ConfigInvalid {
        path: PathBuf,
        pointer: String,
        message: String,
    },

    #[error("container {id:?} is {status}; {action} needs it to be {needed}")]
    WrongStatus {
        id: String,
        status: String,
        action: &'static str,
        needed: &'static str,
    },

    #[error("unknown signal {signal:?}: use a name like TERM, SIGKILL or a number from 1 to 64")]
    UnknownSignal { signal: String },

    #[error("the host's profile policy refused container {id:?}")]
    Policy {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("root filesystem of container {id:?} ({action})")]
    Rootfs {
        id: String,
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("seccomp profile of container {id:?} cannot be applied exactly")]
    Seccomp {
        id: String,
        #[source]
        source: Box<sgrun_seccomp::SeccompError>,
    },

    #[error("libcontainer failed to {action} container {id:?}")]
    Libcontainer {
        id: String,
        action: &'static str,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },

    #[error("cgroup of container {id:?} ({path}): {action}")]
    Cgroup {
        id: String,
        path: PathBuf,
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "container {id:?}: its config mounts the cgroup filesystem at {path} read-only (\"ro\"), and \
         sgrun could not make it so ({step})"
    )]
    CgroupReadonly {
        id: String,
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("container {id:?}: cannot bring up the loopback interface of its network namespace ({step})")]
    Loopback {
        id: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{action} failed for container {id:?}")]
    Sys {
        id: String,
        action: &'static str,
        #[source]
        source: nix::errno::Errno,
    },

    #[error("state of container {id:?} in {path} is unreadable")]
    State {
        id: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("process spec {path}: {message}")]
    ProcessSpec { path: PathBuf, message: String },

    #[error("exec in container {id:?}: {message}")]
    Exec { id: String, message: String },

    #[error("cannot protect the runtime binary against overwrite from containers ({step})")]
    SelfProtect {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} is not supported by sgrun: {why}")]
    Unsupported {
        what: &'static str,
        why: &'static str,
    },
}

impl EngineError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        EngineError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn wrong_status(
        id: &str,
        status: ContainerStatus,
        action: &'static str,
        needed: &'static str,
    ) -> Self {
        EngineError::WrongStatus {
            id: id.to_string(),
            status: status_name(status).into(),
            action,
            needed,
        }
    }
}

/// Status names as runc prints them.
pub fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

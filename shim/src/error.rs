//! The shim's errors. Every variant names its subject (container, exec, path, option) so the
//! message containerd prints ends with the root cause, and each maps to the ttrpc status code
//! containerd turns into its own error kinds (NotFound, AlreadyExists, FailedPrecondition...).

use std::path::PathBuf;

use containerd_shim::protos::ttrpc;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("container {id}: not found in this shim")]
    ContainerNotFound { id: String },

    #[error("container {id}: exec {exec_id} not found")]
    ExecNotFound { id: String, exec_id: String },

    #[error("container {id}: already exists in this shim")]
    ContainerExists { id: String },

    #[error("container {id}: exec {exec_id} already exists")]
    ExecExists { id: String, exec_id: String },

    #[error("container {id}: process {exec_id} is {state}; {action} needs it {wanted}")]
    WrongState {
        id: String,
        exec_id: String,
        state: &'static str,
        action: &'static str,
        wanted: &'static str,
    },

    #[error("container {id}: process {exec_id} already finished")]
    ProcessFinished { id: String, exec_id: String },

    #[error("runtime options: type {type_url} is not one the sgrun shim reads (runtimeoptions.v1.Options or containerd.runc.v1.Options)")]
    OptionsType { type_url: String },

    #[error("runtime options: {type_url}: malformed protobuf: {source}")]
    OptionsDecode {
        type_url: String,
        #[source]
        source: containerd_shim::protos::protobuf::Error,
    },

    #[error("runtime options file {path}: {reason}")]
    OptionsFile { path: PathBuf, reason: String },

    #[error("runtime options: {option} = {value:?} is refused: {reason}")]
    OptionRefused {
        option: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("sgrun binary {name:?} not found (next to the shim, or on PATH)")]
    BinaryNotFound { name: String },

    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("container {id}: sgrun {verb} failed ({status}): {message}")]
    Runtime {
        id: String,
        verb: &'static str,
        status: String,
        message: String,
    },

    #[error("container {id}: sgrun {verb}: output is not what it should be: {reason}")]
    RuntimeOutput {
        id: String,
        verb: &'static str,
        reason: String,
    },

    #[error("container {id}: stdio {uri:?}: {reason}")]
    StdioUri {
        id: String,
        uri: String,
        reason: &'static str,
    },

    #[error("{path}: console socket: {reason}")]
    Console { path: PathBuf, reason: String },

    #[error("container {id}: {what}: {reason}")]
    BadRequest {
        id: String,
        what: &'static str,
        reason: String,
    },

    #[error("container {id}: mounting rootfs at {target}: {reason}")]
    Mount {
        id: String,
        target: PathBuf,
        reason: String,
    },

    #[error("container {id}: checkpoint is not supported by sgrun")]
    CheckpointUnsupported { id: String },

    #[error("container {id}: annotation {annotation}={value:?} is not valid: {allowed}")]
    BadAnnotation {
        id: String,
        annotation: &'static str,
        value: String,
        allowed: &'static str,
    },

    #[error("site mode: {var}={value:?}: {reason}")]
    SiteEnv {
        var: &'static str,
        value: String,
        reason: String,
    },

    #[error("site {run}: the shim daemon did not come up: {reason}")]
    SiteStart { run: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, ShimError>;

impl ShimError {
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        ShimError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    fn code(&self) -> ttrpc::Code {
        use ShimError::*;
        match self {
            ContainerNotFound { .. } | ExecNotFound { .. } | ProcessFinished { .. } => {
                ttrpc::Code::NOT_FOUND
            }
            ContainerExists { .. } | ExecExists { .. } => ttrpc::Code::ALREADY_EXISTS,
            WrongState { .. } => ttrpc::Code::FAILED_PRECONDITION,
            OptionsType { .. }
            | OptionsDecode { .. }
            | OptionsFile { .. }
            | OptionRefused { .. }
            | StdioUri { .. }
            | BadRequest { .. }
            | BadAnnotation { .. } => ttrpc::Code::INVALID_ARGUMENT,
            CheckpointUnsupported { .. } => ttrpc::Code::UNIMPLEMENTED,
            BinaryNotFound { .. }
            | Io { .. }
            | Runtime { .. }
            | RuntimeOutput { .. }
            | Console { .. }
            | Mount { .. }
            | SiteEnv { .. }
            | SiteStart { .. } => ttrpc::Code::UNKNOWN,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        // the whole chain, so containerd's message names the root cause
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let s_msg = s.to_string();
            if !msg.contains(&s_msg) {
                msg.push_str(": ");
                msg.push_str(&s_msg);
            }
            src = s.source();
        }
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), msg))
    }
}

impl From<ShimError> for containerd_shim::Error {
    fn from(e: ShimError) -> Self {
        containerd_shim::Error::Other(e.to_string())
    }
}

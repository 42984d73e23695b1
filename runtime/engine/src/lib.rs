//! sgrun's engine: the OCI runtime verbs on youki's libcontainer, plus what sgrun does itself
//! because libcontainer 0.7 does not do it correctly (seccomp, exec into user namespaces,
//! foreground run, exit codes, cgroup paths). Only this crate touches libcontainer.

pub mod container;
pub mod error;
pub mod executor;
pub mod id;
pub mod signal;
pub mod state;
pub mod validate;

pub use container::{
    CreateOptions, HookError, MountedRootfs, PolicyOutcome, RootfsProvider, Runtime, SpecPolicy,
    Stdio,
};
pub use error::{EngineError, Result};
pub mod cgroupfs;
pub mod cgroups;
pub mod exec;
pub mod features;
pub mod loopback;
pub mod namedcg;
pub mod nschild;
pub mod run;
pub mod selfprotect;
pub mod stats;
pub mod supervise;
pub mod testonly;
pub mod tmpcopyup;
pub mod users;

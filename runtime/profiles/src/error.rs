//! Everything that can be wrong with a profile, its selection or its application. Each variant
//! names the file and line (or the annotation) and says how to fix it.

use std::fmt;
use std::path::PathBuf;

/// A place in a profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{at}: {message}")]
    Syntax { at: Origin, message: String },

    #[error(
        "no profile named {name:?}; the profiles are: {}{hint}",
        .available.join(", ")
    )]
    NotFound {
        name: String,
        available: Vec<String>,
        hint: String,
    },

    #[error(
        "{at}: the profile is named {name:?} but its file is {expected}.toml; make them equal"
    )]
    NameMismatch {
        at: Origin,
        name: String,
        expected: String,
    },

    #[error(
        "{name:?} is a layer, merged into classes through `extends`, not a profile of its own; \
         choose a class: {}",
        .classes.join(", ")
    )]
    NotAClass { name: String, classes: Vec<String> },

    #[error("{at}: profiles extend each other in a cycle: {}", .chain.join(" -> "))]
    Cycle { at: Origin, chain: Vec<String> },

    #[error("{at}: {name:?} is not a Linux system call on x86_64; check its spelling{hint}")]
    UnknownSyscall {
        at: Origin,
        name: String,
        hint: String,
    },

    #[error(
        "{at}: {name} is already {what} at line {first_line} of this file; merge the two rules"
    )]
    DuplicateRule {
        at: Origin,
        name: String,
        what: &'static str,
        first_line: usize,
    },

    #[error("{at}: {name} is {detail} in {other}; a call has one rule")]
    Conflict {
        at: Origin,
        name: String,
        /// "denied here but allowed"
        detail: String,
        other: Box<Origin>,
    },

    #[error(
        "{at}: this loosens {base}: {detail}; a class may only add to what its layers allow, \
         never undo what they restrict"
    )]
    Loosens {
        at: Origin,
        base: Origin,
        detail: String,
    },

    #[error(
        "{at}: {name} is denied in every profile ({why}); no layer, class or annotation can \
         allow it"
    )]
    AlwaysDenied {
        at: Origin,
        name: String,
        why: &'static str,
    },

    #[error("{at}: {detail}")]
    BadRule { at: Origin, detail: String },

    #[error("{at}: {what} {name:?} is not known{hint}")]
    Unknown {
        at: Origin,
        what: &'static str,
        name: String,
        hint: String,
    },

    #[error(
        "{at}: {name} may not be granted by any profile: it reaches outside the container \
         (the list is FORBIDDEN_CAPABILITIES in runtime/profiles/src/always.rs)"
    )]
    ForbiddenCapability { at: Origin, name: String },

    #[error(
        "{at}: {what}: a profile outside the built-in set (here a local or tenant profile) may \
         only tighten the class it extends: add deny rules, masked or read-only paths, lower \
         limits"
    )]
    LocalMayOnlyTighten { at: Origin, what: String },

    #[error("reading profile {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("annotation {key}={value:?}: {reason}")]
    Annotation {
        key: String,
        value: String,
        reason: String,
    },

    #[error(
        "annotation {key}: annotations can only tighten a profile, and this one would loosen \
         it; a looser profile is a change to profiles/ (reviewed like code)"
    )]
    AnnotationLoosens { key: String },

    #[error("profile {profile}: {source}")]
    Seccomp {
        profile: String,
        #[source]
        source: sgrun_seccomp::SeccompError,
    },

    #[error("profile {profile}: {detail}")]
    Apply { profile: String, detail: String },
}

pub type Result<T, E = ProfileError> = std::result::Result<T, E>;

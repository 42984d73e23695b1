//! The profile file format, as serde reads it: one TOML file per layer or class. Unknown keys
//! are refused everywhere, and every rule may carry a `why`. Positions (`Spanned`) are kept so
//! that every later error can name `file:line`.
//!
//! ```toml
//! [profile]
//! name = "nginx"                  # the file's stem
//! kind = "class"                  # "class" (selectable) or "layer" (only extended)
//! extends = ["base", "init"]      # merged first, in order
//! description = "nginx serving a site"
//!
//! [[allow]]                       # these calls are allowed
//! names = ["accept4", "listen"]
//! why = "nginx accepts connections"
//!
//! [[allow]]                       # with argument conditions (AND); a list of values is OR
//! names = ["socket"]
//! args = [{ index = 0, op = "eq", value = ["AF_UNIX", "AF_INET", "AF_INET6"] }]
//! why = "..."
//!
//! [[deny]]                        # deliberate denials; errno defaults to EPERM
//! names = ["get_mempolicy"]
//! errno = "EPERM"
//! why = "..."
//!
//! [[capability]]
//! name = "CAP_SETUID"
//! why = "..."
//!
//! [[rlimit]]
//! type = "RLIMIT_NOFILE"
//! soft = 8192
//! hard = 8192
//! why = "..."
//!
//! [[masked]]                      # and [[readonly]]
//! path = "/proc/kcore"
//! why = "..."
//!
//! [limits]
//! pids = 512                      # a ceiling: the container gets at most this
//! why = "..."
//! ```

use serde::Deserialize;
use toml::Spanned;

/// One profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub profile: Header,
    #[serde(default)]
    pub allow: Vec<Spanned<AllowRule>>,
    #[serde(default)]
    pub deny: Vec<Spanned<DenyRule>>,
    #[serde(default)]
    pub capability: Vec<Spanned<CapabilityRule>>,
    #[serde(default)]
    pub rlimit: Vec<Spanned<RlimitRule>>,
    #[serde(default)]
    pub masked: Vec<Spanned<PathRule>>,
    #[serde(default)]
    pub readonly: Vec<Spanned<PathRule>>,
    #[serde(default)]
    pub limits: Option<Spanned<Limits>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Selectable by name (`io.sgrun.profile`, `sgrun spec --profile`).
    Class,
    /// Only merged into others through `extends`.
    Layer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: Spanned<String>,
    pub kind: Kind,
    #[serde(default)]
    pub extends: Vec<Spanned<String>>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub names: Vec<Spanned<String>>,
    #[serde(default)]
    pub args: Vec<Spanned<ArgRule>>,
    #[serde(default)]
    pub why: Option<String>,
    /// Why a class needs a call the always-denied list lets a class name a reason for
    /// (io_uring only). Refused anywhere else.
    #[serde(default)]
    pub exception: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    pub names: Vec<Spanned<String>>,
    #[serde(default)]
    pub args: Vec<Spanned<ArgRule>>,
    #[serde(default)]
    pub errno: Option<Spanned<String>>,
    #[serde(default)]
    pub why: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    pub index: u8,
    pub op: Op,
    pub value: Value,
    #[serde(default)]
    pub mask: Option<Scalar>,
}

/// A number, or a symbolic constant (`"AF_UNIX"`, `"CLONE_NEWNS|CLONE_NEWPID"`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Scalar {
    Number(i64),
    Name(String),
}

/// One value, or several: a list means "any of these".
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Value {
    One(Scalar),
    AnyOf(Vec<Scalar>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRule {
    pub name: Spanned<String>,
    #[serde(default)]
    pub why: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitRule {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub soft: u64,
    pub hard: u64,
    #[serde(default)]
    pub why: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    pub path: Spanned<String>,
    #[serde(default)]
    pub why: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub pids: Option<i64>,
    #[serde(default)]
    pub why: Option<String>,
}

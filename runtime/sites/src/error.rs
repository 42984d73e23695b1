//! One error type for the sites layer. Every variant names its subject (the site as
//! `tenant/site`, a path, a domain); messages say what to do about it.

use std::path::PathBuf;

pub type Result<T, E = SiteError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("site {input:?}: {reason}; write TENANT/SITE, e.g. acme/blog")]
    InvalidRef { input: String, reason: String },

    #[error("site name {shown}: {reason}; use lower-case letters, digits and '-', starting with a letter (at most 63)")]
    InvalidName { shown: String, reason: String },

    #[error("{what} {input:?}: {reason}")]
    InvalidLimit {
        what: &'static str,
        input: String,
        reason: String,
    },

    #[error("site {site}: {what} {value} is below what the stack needs ({min}): {why}")]
    LimitTooLow {
        site: String,
        what: &'static str,
        value: String,
        min: String,
        why: &'static str,
    },

    #[error("site {site} already exists (created {created}); `sgrun site rm {site}` first, or pick another name")]
    Exists { site: String, created: String },

    #[error("site {site} does not exist; `sgrun site ls` lists the sites, `sgrun site create` makes one")]
    NotFound { site: String },

    #[error("domain {domain} is already served by site {owner}; every site needs its own domain")]
    DomainTaken { domain: String, owner: String },

    #[error(
        "profile {profile:?} for site {site}: {reason}; `sgrun profile list` shows the classes"
    )]
    UnknownProfile {
        site: String,
        profile: String,
        reason: String,
    },

    #[error("image {image:?} for site {site} is not a site image: {reason}")]
    NotASiteImage {
        site: String,
        image: String,
        reason: String,
    },

    #[error("site {site} is already started (shim pid {shim_pid}, init pid {pid}); `sgrun site restart {site}` restarts it")]
    AlreadyStarted {
        site: String,
        shim_pid: i32,
        pid: u32,
    },

    #[error("site {site} is running; stop it first (`sgrun site stop {site}`) or pass --force")]
    Running { site: String },

    #[error("site {site} is not running")]
    NotRunning { site: String },

    #[error("site {site} did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    StartFailed {
        site: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },

    #[error("site {site}: shim call {call} failed: {reason}")]
    Shim {
        site: String,
        call: &'static str,
        reason: String,
    },

    #[error("site {site}: cannot start its shim {binary}: {reason}")]
    ShimSpawn {
        site: String,
        binary: PathBuf,
        reason: String,
    },

    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(transparent)]
    Tenant(Box<sgrun_tenants::TenantError>),

    #[error(transparent)]
    Image(Box<sgrun_images::ImageError>),

    #[error(transparent)]
    Rootfs(Box<sgrun_rootfs::RootfsError>),

    #[error(transparent)]
    Proxy(Box<sgrun_proxy::ProxyError>),
}

impl SiteError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SiteError::Io { op, path, source }
    }
}

impl From<sgrun_tenants::TenantError> for SiteError {
    fn from(e: sgrun_tenants::TenantError) -> Self {
        SiteError::Tenant(Box::new(e))
    }
}

impl From<sgrun_images::ImageError> for SiteError {
    fn from(e: sgrun_images::ImageError) -> Self {
        SiteError::Image(Box::new(e))
    }
}

impl From<sgrun_rootfs::RootfsError> for SiteError {
    fn from(e: sgrun_rootfs::RootfsError) -> Self {
        SiteError::Rootfs(Box::new(e))
    }
}

impl From<sgrun_proxy::ProxyError> for SiteError {
    fn from(e: sgrun_proxy::ProxyError) -> Self {
        SiteError::Proxy(Box::new(e))
    }
}

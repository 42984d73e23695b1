//! The one error type of this crate. Every variant names its subject (container, tenant,
//! image, site, path or syscall), so that the last line a user sees says what failed and where.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("annotation {key}={value:?}: {reason}")]
    InvalidAnnotation {
        key: &'static str,
        value: String,
        reason: String,
    },

    #[error("annotation {key} needs io.sgrun.tenant as well: only a tenant's container gets an image root filesystem and a site volume")]
    AnnotationWithoutTenant { key: &'static str },

    #[error("container of tenant {tenant}: {pointer} {found}; tenants cannot choose their ids: drop the user namespace and its mappings from config.json (sgrun maps 0 to {uid_base}, 65536 ids) or give exactly that mapping")]
    ForeignIds {
        tenant: String,
        pointer: &'static str,
        found: String,
        uid_base: u64,
    },

    #[error(transparent)]
    Tenant(#[from] sgrun_tenants::TenantError),

    #[error(transparent)]
    Image(#[from] sgrun_images::ImageError),

    #[error("site {site} of tenant {tenant} is in use by container {holder} (runtime root {holder_root}; claim {path}); one container per site: delete it first (`sgrun --root {holder_root} delete -f {holder}`)")]
    SiteInUse {
        tenant: String,
        site: String,
        holder: String,
        holder_root: String,
        path: PathBuf,
    },

    #[error("refusing {path} beneath {root}: it is a symlink, or leads out of it (a planted link is never followed)")]
    Unsafe {
        path: String,
        root: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{syscall} for {subject}")]
    Syscall {
        syscall: &'static str,
        subject: String,
        #[source]
        source: io::Error,
    },

    #[error("mounting the overlay of container {id} (lower: image {image}; upper and work on the volume of tenant {tenant}): {log}")]
    Overlay {
        id: String,
        image: String,
        tenant: String,
        log: String,
        #[source]
        source: io::Error,
    },

    #[error("mounting the EROFS image {file} of image {image}: {log}")]
    Erofs {
        image: String,
        file: PathBuf,
        log: String,
        #[source]
        source: io::Error,
    },

    #[error("record {path} is not valid")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("injected failure at step {step} for container {id} (SGRUN_TEST_FAIL_AT)")]
    Injected { id: String, step: String },
}

pub type Result<T> = std::result::Result<T, RootfsError>;

impl RootfsError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| RootfsError::Io { op, path, source }
    }

    pub(crate) fn sys(
        syscall: &'static str,
        subject: impl std::fmt::Display,
    ) -> impl FnOnce(io::Error) -> Self {
        let subject = subject.to_string();
        move |source| RootfsError::Syscall {
            syscall,
            subject,
            source,
        }
    }
}

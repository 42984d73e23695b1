//! The one error type of this crate. Every variant names its subject (tenant, path, range,
//! device, tool), so that the last line a user sees says what failed, where, and how to fix it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant name {shown}: {reason}; a tenant name is 1 to 63 lower-case letters, digits and dashes, starting with a letter (e.g. acme-blog)")]
    InvalidName { shown: String, reason: String },

    #[error("storage size {input:?}: {reason}; write a number with a unit, e.g. 500M, 5G or 1T (powers of 1024)")]
    InvalidSize { input: String, reason: String },

    #[error("storage size {size} bytes is below the minimum of {min} bytes (64M); ask for at least --storage 64M")]
    SizeTooSmall { size: u64, min: u64 },

    #[error("storage size {size} bytes is above the {free} bytes free on the filesystem holding {path}; free space there or ask for less")]
    SizeTooLarge { size: u64, free: u64, path: PathBuf },

    #[error("inode limit {inodes} is below the minimum of {min}; ask for at least --inodes {min}")]
    InodesTooFew { inodes: u64, min: u64 },

    #[error("inode limit {inodes} is above {max}, the most a {size}-byte ext4 volume can hold (one inode per KiB); ask for fewer inodes or more storage")]
    InodesTooMany { inodes: u64, max: u64, size: u64 },

    #[error("tenant {name} already exists (its registry entry is {path}); pick another name, or `sgrun tenant rm --purge {name}` first")]
    AlreadyExists { name: String, path: PathBuf },

    #[error("tenant {name} does not exist (no {path}); see `sgrun tenant ls`")]
    NotFound { name: String, path: PathBuf },

    #[error("tenant {name} was removed (its data and UID range are kept); `sgrun tenant mount {name}` brings it back, `sgrun tenant rm --purge {name}` deletes it")]
    Removed { name: String },

    #[error("tenant {name} is still being created or was left half-made by a crash; `sgrun tenant rm --purge {name}` cleans it up")]
    Incomplete { name: String },

    #[error("no free UID/GID range of {size} ids between {base} and {limit}: every range is taken; purge removed tenants or raise the limit")]
    NoFreeRange { base: u64, limit: u64, size: u64 },

    #[error("UID range base {base} is invalid: it must be at least 65536, a multiple of 65536 and below {limit}")]
    InvalidRangeBase { base: u64, limit: u64 },

    #[error("UID range {start}..{end} of tenant {name} overlaps the range of tenant {other} in {path}; the allocation record is corrupt, repair it by hand")]
    RangeOverlap {
        name: String,
        other: String,
        start: u64,
        end: u64,
        path: PathBuf,
    },

    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("registry file {path} is not valid")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot lock the tenant registry {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot run {tool} (install {package}; scripts/install-deps.sh runtime)")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("{tool} {args} failed ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        args: String,
        status: String,
        stderr: String,
    },

    #[error("loop device {device}: {op}")]
    Loop {
        op: &'static str,
        device: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot mount {device} on {target}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot unmount {target} (a process still uses the volume? stop the tenant's sites first)"
    )]
    Umount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the volume of tenant {name} is not mounted at {path}; `sgrun tenant mount {name}` mounts it")]
    NotMounted { name: String, path: PathBuf },

    #[error("tenant {name}: shrinking from {current} to {requested} bytes is not supported (it could destroy data); only growing is")]
    ShrinkRefused {
        name: String,
        current: u64,
        requested: u64,
    },

    #[error("tenant {name}: the {backend} backend does not support {what}")]
    Unsupported {
        name: String,
        backend: &'static str,
        what: &'static str,
    },

    #[error("no {kind} pool is configured (no {path}); create one with `sgrun tenant pool create {kind} --size 20G`, or register a mounted filesystem with `sgrun tenant pool add {kind} /srv/{kind}`")]
    PoolNotConfigured { kind: &'static str, path: PathBuf },

    #[error("a {kind} pool is already configured ({path}); `sgrun tenant pool rm {kind}` first")]
    PoolExists { kind: &'static str, path: PathBuf },

    #[error("tenant {name} has running sites: {sites}; stop them first (`sgrun --root ROOT delete -f ID`)")]
    SitesRunning { name: String, sites: String },

    #[error("the {kind} pool at {path} is not mounted; mount it first (it is not sgrun's to mount: add it to /etc/fstab), then `sgrun tenant mount --all`")]
    PoolNotMounted { kind: &'static str, path: PathBuf },

    #[error("the {kind} pool at {path} is not usable: {reason}")]
    PoolUnusable {
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "the {kind} pool still holds tenants ({tenants}); `sgrun tenant rm --purge` them first"
    )]
    PoolInUse { kind: &'static str, tenants: String },

    #[error("the {backend} backend needs no pool")]
    NoPoolBackend { backend: &'static str },

    #[error("btrfs: {op} {path}")]
    Btrfs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("project quota: {op} for project {project} on {path}")]
    Quota {
        op: &'static str,
        project: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("tenant {name}: project {project} is already in use on {path} ({bytes} bytes, {inodes} inodes charged to it, limits {limits}); the pool must be sgrun's alone")]
    ProjectInUse {
        name: String,
        project: u32,
        path: PathBuf,
        bytes: u64,
        inodes: u64,
        limits: String,
    },

    #[error("tenant {name}: failure injected at step {step} (SGRUN_TEST_FAIL_AT)")]
    Injected { name: String, step: String },
}

impl TenantError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| TenantError::Io { op, path, source }
    }
}

pub type Result<T, E = TenantError> = std::result::Result<T, E>;

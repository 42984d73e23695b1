//! The one error type of this crate. Every variant names its subject (image, name, file,
//! archive entry, store path), so that the last line a user sees says what failed, where, and
//! how to fix it.

use std::io;
use std::path::PathBuf;

use crate::unpack::EntryRule;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image name {shown}: {reason}; an image name is 1 to 63 characters [a-z0-9._-], starting with a lower-case letter or digit, without \"..\" (e.g. wordpress or php-8.2)")]
    InvalidName { shown: String, reason: String },

    #[error(
        "container id {shown}: {reason}; a container id is 1 to 128 letters, digits and `_ + - .`"
    )]
    InvalidContainerId { shown: String, reason: String },

    #[error("no image {what} in the store {store}; see `sgrun image ls`")]
    NotFound { what: String, store: PathBuf },

    #[error("image id prefix {prefix} matches {} images ({}); give more hex digits", .matches.len(), .matches.join(", "))]
    AmbiguousId {
        prefix: String,
        matches: Vec<String>,
    },

    #[error("image {image} is in use by container(s) {}; delete them first (`sgrun delete ID`), then retry", .containers.join(", "))]
    InUse {
        image: String,
        containers: Vec<String>,
    },

    #[error("image {id} still has the name(s) {}; remove them by name (`sgrun image rm NAME`), or pass --force to remove every name and the image", .names.join(", "))]
    HasNames { id: String, names: Vec<String> },

    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("no space left on the filesystem of the image store {store} while writing {what}; free space there (or mount a bigger filesystem at the state directory) and retry; nothing was added to the store")]
    NoSpace {
        store: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot lock the image store {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path} is not valid JSON of the expected shape")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{file}: {layer}: entry {entry:?} refused: {rule}; the archive is unsafe to unpack, nothing was added to the store")]
    UnsafeEntry {
        file: PathBuf,
        layer: String,
        entry: String,
        rule: EntryRule,
    },

    #[error("{file}: {layer}: entry {entry:?} would bring the image to {total} bytes, more than {limit} bytes ({why}); nothing was added to the store")]
    TooBig {
        file: PathBuf,
        layer: String,
        entry: String,
        total: u64,
        limit: u64,
        why: String,
    },

    #[error("{file}: {layer}: cannot unpack entry {entry:?}")]
    Unpack {
        file: PathBuf,
        layer: String,
        entry: String,
        #[source]
        source: io::Error,
    },

    #[error("{file}: {layer} is not a valid tar stream (truncated or corrupt); check the file (its sha256) and export it again")]
    BadTar {
        file: PathBuf,
        layer: String,
        #[source]
        source: io::Error,
    },

    #[error("{file} is neither an OCI image layout (oci-layout + index.json) nor a docker-archive (manifest.json); found {found}. Export it with `docker save`, `podman save --format oci-archive` or `skopeo copy ... oci:DIR`")]
    UnknownFormat { file: PathBuf, found: String },

    #[error("{file} is {compression}-compressed as a whole; decompress it first (e.g. `gunzip -k {file}` or `zstd -d`) and import the .tar")]
    CompressedArchive {
        file: PathBuf,
        compression: &'static str,
    },

    #[error("{file}: {member}: {problem}")]
    BadImage {
        file: PathBuf,
        member: String,
        problem: String,
    },

    #[error("{file}: {member}: digest mismatch: the descriptor says {expected}, the content hashes to {actual}; the image is corrupt or was tampered with, nothing was added to the store")]
    DigestMismatch {
        file: PathBuf,
        member: String,
        expected: String,
        actual: String,
    },

    #[error("{file}: {layer} is {compression}-compressed, which sgrun does not support (gzip and uncompressed layers are); re-export the image with gzip layers")]
    UnsupportedCompression {
        file: PathBuf,
        layer: String,
        compression: &'static str,
    },

    #[error("recipe {path}: {problem}")]
    Recipe { path: PathBuf, problem: String },

    #[error("recipe {path} is not valid TOML of the recipe shape (see docs/images.md)")]
    RecipeToml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },

    #[error("cannot run {tool}; {hint}")]
    ToolMissing {
        tool: &'static str,
        hint: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("{tool} failed ({status}){}; {hint}", if .tail.is_empty() { String::new() } else { format!(", its last lines:\n{}", .tail) })]
    ToolFailed {
        tool: &'static str,
        status: String,
        tail: String,
        hint: String,
    },

    #[error("{path} has a mount under it ({mount}); unmount it (umount -R {mount}) and retry, sgrun never deletes across a mount")]
    MountUnder { path: PathBuf, mount: PathBuf },

    #[error("the image store is damaged at {path}: {problem}; `sgrun image verify` tells which images are intact")]
    Corrupt { path: PathBuf, problem: String },
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }

    pub(crate) fn nix(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(nix::Error) -> Self {
        let path = path.into();
        move |e| ImageError::Io {
            op,
            path,
            source: io::Error::from(e),
        }
    }
}

/// ENOSPC and EDQUOT both mean "the store's filesystem is full" to the user.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

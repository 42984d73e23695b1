//! Crash-safe files and the lock that serialises start, reload and stop.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{ProxyError, Result};

/// Held while the proxy's files and process are changed; the flock goes with the file.
pub(crate) struct StateLock {
    _lock: Flock<File>,
}

/// Take the exclusive lock on `path`, waiting for another sgrun process to finish. flock and
/// not a lock file's existence: a crashed holder releases it with its last descriptor.
pub(crate) fn lock(path: &Path) -> Result<StateLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| ProxyError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(StateLock { _lock: lock }),
            Err((f, nix::errno::Errno::EINTR)) => file = f,
            Err((_, errno)) => {
                return Err(ProxyError::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                })
            }
        }
    }
}

/// Replace `path` with `data` so that a crash at any point leaves either the old or the new
/// file, complete: write a temporary file in the same directory, fsync it, rename it over the
/// old one, fsync the directory (without which the rename itself may not survive a crash).
pub(crate) fn write_atomic(path: &Path, tmp: &Path, data: &[u8], mode: u32) -> Result<()> {
    let result = (|| {
        write_file(tmp, data, mode, true)?;
        fs::rename(tmp, path).map_err(ProxyError::io("rename into place", path))?;
        sync_dir(path.parent().unwrap_or(Path::new("/")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Write a whole file, fsync'ed if asked (the trial configurations for `nginx -t` need not be).
pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32, sync: bool) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(ProxyError::io("create", path))?;
    f.write_all(data).map_err(ProxyError::io("write", path))?;
    if sync {
        f.sync_all().map_err(ProxyError::io("fsync", path))?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ProxyError::io("fsync directory", dir))
}

/// Create `dir` (and its parents) if missing and give it `mode` either way: the run directory
/// must be searchable by the workers whatever umask or earlier run made it.
pub(crate) fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(ProxyError::io("create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(ProxyError::io("chmod", dir))
}

/// Remove a file that may not exist.
pub(crate) fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProxyError::io("remove", path)(e)),
    }
}

/// What a log gained past `offset` (lossy; empty if unreadable or not grown).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.take(64 * 1024).read_to_end(&mut out);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last `max` bytes of a log, for an error message (lossy: logs may hold any bytes).
pub(crate) fn tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(data) => {
            let start = data.len().saturating_sub(max);
            let text = String::from_utf8_lossy(&data[start..]).into_owned();
            match text.find('\n') {
                Some(i) if start > 0 => text[i + 1..].to_string(),
                _ => text,
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

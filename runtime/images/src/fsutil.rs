//! Directory-fd helpers shared by the unpacker, the manifest walker and the store.
//!
//! Everything below a staging or image root is reached relative to a directory fd with
//! openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): a symlink inside
//! the tree is never followed, `..` never leaves it, and a path that passes through a symlink
//! fails with ELOOP instead of landing somewhere else. Deletions never cross a mount.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{ImageError, Result};

pub(crate) fn resolve_beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Open `rel` (relative, may be "" or ".") below `dir` without following any symlink.
pub(crate) fn openat_beneath(
    dir: BorrowedFd<'_>,
    rel: &[u8],
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    // openat2 refuses (EINVAL) a mode without O_CREAT, where openat ignored it.
    let mode = if flags.contains(OFlag::O_CREAT) {
        mode
    } else {
        Mode::empty()
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(mode)
        .resolve(resolve_beneath());
    openat2(dir.as_raw_fd(), OsStr::from_bytes(rel), how).map(owned)
}

/// Open a directory below `dir` for reading entries and as a dirfd.
pub(crate) fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &[u8]) -> nix::Result<OwnedFd> {
    openat_beneath(
        dir,
        rel,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
}

/// Open an absolute directory path (a store path, never inside an image).
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(owned)
    .map_err(ImageError::nix("cannot open directory", path))
}

pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<FileStat> {
    fstatat(
        Some(dir.as_raw_fd()),
        OsStr::from_bytes(name),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The names in a directory, without `.` and `..`, sorted bytewise (so walks are
/// deterministic). The fd is duplicated: `dir` stays usable.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> nix::Result<Vec<CString>> {
    let dup = nix::unistd::dup(dir.as_raw_fd())?;
    // The dup shares its offset with `dir`: rewind it first, the directory may have been
    // listed through the same open file before.
    if let Err(e) = nix::unistd::lseek(dup, 0, nix::unistd::Whence::SeekSet) {
        let _ = nix::unistd::close(dup);
        return Err(e);
    }
    let mut d = Dir::from_fd(dup)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name();
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        names.push(name.to_owned());
    }
    names.sort();
    Ok(names)
}

/// Remove `name` below `dir`, recursively, without following symlinks and without crossing
/// into another filesystem (a mount left under a staging tree by a crashed build must never be
/// emptied). `shown` is the path used in errors.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &[u8], shown: &Path) -> Result<()> {
    let st = match lstat_at(dir, name) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(ImageError::nix("cannot stat", shown)(e)),
    };
    if file_type(&st) == SFlag::S_IFDIR {
        let parent_dev = nix::sys::stat::fstat(dir.as_raw_fd())
            .map_err(ImageError::nix("cannot stat", shown))?
            .st_dev;
        if st.st_dev != parent_dev {
            return Err(ImageError::MountUnder {
                path: shown.parent().unwrap_or(shown).to_path_buf(),
                mount: shown.to_path_buf(),
            });
        }
        let sub = open_dir_beneath(dir, name).map_err(ImageError::nix("cannot open", shown))?;
        empty_dir(sub.as_fd(), shown)?;
        unlinkat(
            Some(dir.as_raw_fd()),
            OsStr::from_bytes(name),
            UnlinkatFlags::RemoveDir,
        )
        .map_err(ImageError::nix("cannot remove directory", shown))?;
    } else {
        unlinkat(
            Some(dir.as_raw_fd()),
            OsStr::from_bytes(name),
            UnlinkatFlags::NoRemoveDir,
        )
        .map_err(ImageError::nix("cannot remove", shown))?;
    }
    Ok(())
}

/// Remove everything inside the directory `dir` (not the directory itself).
pub(crate) fn empty_dir(dir: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    for child in list_dir(dir).map_err(ImageError::nix("cannot list", shown))? {
        let b = child.to_bytes();
        remove_at(dir, b, &shown.join(OsStr::from_bytes(b)))?;
    }
    Ok(())
}

/// Remove a whole tree given by an absolute path (its parent is a store directory).
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let pfd = match open_dir(parent) {
        Ok(fd) => fd,
        Err(ImageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    remove_at(pfd.as_fd(), name.as_bytes(), path)
}

/// Write `data` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// directory. Readers see the old content or the new one, never a part.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    res.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        if crate::error::is_no_space(&source) {
            ImageError::NoSpace {
                store: dir.to_path_buf(),
                what: path.display().to_string(),
                source,
            }
        } else {
            ImageError::Io {
                op: "cannot write",
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(ImageError::io("cannot fsync", path))
}

/// flock(2) on an fd; `block` false returns Ok(false) when someone else holds it.
pub(crate) fn flock(fd: BorrowedFd<'_>, exclusive: bool, block: bool) -> io::Result<bool> {
    let mut op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    if !block {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a valid fd borrowed for the duration of the call.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !block => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Free bytes of the filesystem holding `path`. f_bavail, not f_bfree: root could also use
/// the reserved blocks, but a store that eats the reserve starves the host's own daemons.
pub(crate) fn free_bytes(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(ImageError::nix("cannot statvfs", path))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// 16 random hex digits (getrandom), for staging directory names.
pub(crate) fn random_hex() -> String {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into the valid buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // Never fatal: uniqueness also comes from the pid and the time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf = (t as u64).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn path_of(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// Read an extended attribute of an open file; None when it has none.
pub(crate) fn fgetxattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buf is valid for buf.len() bytes; name is NUL-terminated.
        let n = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 65536 => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: value is valid for value.len() bytes; name is NUL-terminated.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mount points at or below `path`, from /proc/self/mountinfo.
pub(crate) fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(path))
        .collect()
}

fn unescape_mountinfo(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn beneath_refuses_symlinks_and_dotdot() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("d", t.path().join("l")).unwrap();
        symlink("/etc", t.path().join("abs")).unwrap();
        let root = open_dir(t.path()).unwrap();
        assert!(open_dir_beneath(root.as_fd(), b"d").is_ok());
        // O_DIRECTORY | O_NOFOLLOW on a final symlink answers ENOTDIR; a symlink on the way
        // ELOOP (RESOLVE_NO_SYMLINKS).
        assert_eq!(
            open_dir_beneath(root.as_fd(), b"l").unwrap_err(),
            Errno::ENOTDIR
        );
        assert_eq!(
            open_dir_beneath(root.as_fd(), b"abs/ssl").unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            open_dir_beneath(root.as_fd(), b"d/../..").unwrap_err(),
            Errno::EXDEV
        );
    }

    #[test]
    fn remove_at_never_follows() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        symlink(&outside, tree.join("a/link")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"y").unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn atomic_write_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
    }
}

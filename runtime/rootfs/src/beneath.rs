//! Host-side path operations inside tenant-controlled trees (the tenant's volume, the
//! container's overlay). Every lookup is an openat2 beneath a directory fd we already hold,
//! with no symlink followed and no mount crossed ([`sys::BENEATH`]); nothing is ever looked up
//! by a path string a tenant could redirect. A planted symlink is an error, never followed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Result, RootfsError};
use crate::sys;

/// Who owns the directories we create, and their mode.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn refuse(path: &str, root: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_string();
    let root = root.to_path_buf();
    move |source| match source.raw_os_error() {
        // ELOOP: a symlink; EXDEV: a way out of `root` (`..`, an absolute link, a mount).
        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => {
            RootfsError::Unsafe { path, root, source }
        }
        _ => RootfsError::Io {
            op: "open",
            path: root.join(path),
            source,
        },
    }
}

/// Open the existing directory `rel` beneath `root` (`root_path` names it in errors).
pub fn open_dir(root: BorrowedFd, root_path: &Path, rel: &str) -> Result<OwnedFd> {
    sys::openat2(
        root,
        rel,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        sys::BENEATH,
    )
    .map_err(refuse(rel, root_path))
}

/// Open the directory `rel` beneath `root`, creating each missing component with `owner`.
/// Components that exist are used as they are, but only if they are real directories: a
/// symlink anywhere on the way is refused.
pub fn ensure_dir(root: BorrowedFd, root_path: &Path, rel: &str, owner: Owner) -> Result<OwnedFd> {
    let mut parent: Option<OwnedFd> = None;
    let mut done = String::new();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        if comp == "." || comp == ".." {
            return Err(refuse(rel, root_path)(io::Error::from_raw_os_error(
                libc::EXDEV,
            )));
        }
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(comp);
        let dir = parent.as_ref().map_or(root, |p| p.as_fd());
        let created = match sys::mkdirat(dir, comp, 0o700) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => {
                return Err(RootfsError::Io {
                    op: "mkdir",
                    path: root_path.join(&done),
                    source: e,
                })
            }
        };
        // Beneath its parent, which is itself beneath `root`: the tenant may have replaced
        // the name by a symlink between the mkdir and here, and then this fails with ELOOP.
        let fd = sys::openat2(
            dir,
            comp,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            sys::BENEATH,
        )
        .map_err(refuse(&done, root_path))?;
        if created {
            // Through the fd, not the name: what we chown is what we created.
            sys::fchown(fd.as_fd(), owner.uid, owner.gid)
                .and_then(|()| sys::fchmod(fd.as_fd(), owner.mode))
                .map_err(RootfsError::io("chown", root_path.join(&done)))?;
        }
        parent = Some(fd);
    }
    match parent {
        Some(fd) => Ok(fd),
        None => sys::openat2(
            root,
            ".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            sys::BENEATH,
        )
        .map_err(refuse(rel, root_path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn owner() -> Owner {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Owner {
            uid,
            gid,
            mode: 0o750,
        }
    }

    #[test]
    fn creates_with_owner_and_mode_and_reuses() {
        let t = tempfile::tempdir().unwrap();
        let root = sys::open_dir(t.path(), libc::O_PATH).unwrap();
        ensure_dir(root.as_fd(), t.path(), "a/b/c", owner()).unwrap();
        let m = std::fs::metadata(t.path().join("a/b/c")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o750);
        assert_eq!(m.uid(), owner().uid);
        // again: existing directories are fine
        ensure_dir(root.as_fd(), t.path(), "a/b/c", owner()).unwrap();
        open_dir(root.as_fd(), t.path(), "a/b").unwrap();
    }

    #[test]
    fn planted_symlinks_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("../..", t.path().join("up")).unwrap();
        std::os::unix::fs::symlink("a", t.path().join("rel")).unwrap();
        let root = sys::open_dir(t.path(), libc::O_PATH).unwrap();
        for rel in ["a/b/c", "a/b", "up/x", "rel/x", "../x", "a/../a"] {
            let e = ensure_dir(root.as_fd(), t.path(), rel, owner()).unwrap_err();
            assert!(matches!(e, RootfsError::Unsafe { .. }), "{rel}: {e}");
        }
        for rel in ["a/b", "rel", "up"] {
            let e = open_dir(root.as_fd(), t.path(), rel).unwrap_err();
            assert!(matches!(e, RootfsError::Unsafe { .. }), "{rel}: {e}");
        }
        // nothing was created through the links
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

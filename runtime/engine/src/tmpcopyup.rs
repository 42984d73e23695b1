//! The `tmpcopyup` mount option (Podman puts it on the tmpfs mounts of `--read-only` and
//! `--tmpfs`): the new tmpfs starts with a copy of what the image had at that path. mount(2)
//! does not know the option and libcontainer passes it through (EINVAL), so sgrun strips it
//! from the config and adds a createContainer hook that runs sgrun itself in the container's
//! namespaces, after the mounts and before pivot_root, to copy the contents:
//! - the image's original directory is read through a *non-recursive* detached clone of the
//!   rootfs mount, the one view in which the new tmpfs does not hide it;
//! - both ends are resolved beneath the rootfs with openat2 (pathrs), and every step of the
//!   copy works on directory fds with O_NOFOLLOW, so a symlink the image planted is copied as
//!   a symlink and never followed out of the container.

use std::ffi::{CStr, CString, OsStr};
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use crate::error::{EngineError, Result};

/// Deeper trees than this are not copied (an image could hold a directory bomb).
const MAX_DEPTH: usize = 64;

/// The mount option, and the subcommand name of the hook.
pub const OPTION: &str = "tmpcopyup";

pub fn copy_up(rootfs: &Path, destinations: &[PathBuf]) -> Result<()> {
    let io = |what: &'static str, p: &Path, e: std::io::Error| EngineError::io(what, p, e);
    let pathrs_io = |e: pathrs::error::Error| std::io::Error::other(e.to_string());
    let original = detached_clone(rootfs)?;
    let src_root = pathrs::Root::from_fd(original);
    let dst_root =
        pathrs::Root::open(rootfs).map_err(|e| io("opening rootfs", rootfs, pathrs_io(e)))?;
    for dest in destinations {
        let rel = dest.strip_prefix("/").unwrap_or(dest);
        let src = match src_root.resolve(rel) {
            Ok(h) => h,
            // Nothing in the image at that path: the tmpfs stays empty, as with runc.
            Err(_) => continue,
        };
        let src: OwnedFd = src
            .reopen(pathrs::flags::OpenFlags::O_DIRECTORY | pathrs::flags::OpenFlags::O_RDONLY)
            .map_err(|e| io("opening the image's", dest, pathrs_io(e)))?
            .into();
        let dst: OwnedFd = dst_root
            .resolve(rel)
            .and_then(|h| {
                h.reopen(pathrs::flags::OpenFlags::O_DIRECTORY | pathrs::flags::OpenFlags::O_RDONLY)
            })
            .map_err(|e| io("opening the tmpfs at", dest, pathrs_io(e)))?
            .into();
        copy_dir(src.as_fd(), dst.as_fd(), dest, 0)?;
    }
    Ok(())
}

/// A detached bind mount of `rootfs` without the mounts on top of it.
fn detached_clone(rootfs: &Path) -> Result<OwnedFd> {
    crate::selfprotect::clone_mount(rootfs)
        .map_err(|e| EngineError::io("cloning the rootfs mount", rootfs, e))
}

fn copy_dir(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, at: &Path, depth: usize) -> Result<()> {
    let err =
        |what: &'static str, p: &Path, e: nix::errno::Errno| EngineError::io(what, p, e.into());
    if depth > MAX_DEPTH {
        return Err(EngineError::io(
            "copying",
            at,
            std::io::Error::other("directory tree deeper than 64 levels"),
        ));
    }
    let dup = nix::unistd::dup(src.as_raw_fd()).map_err(|e| err("reading", at, e))?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(|e| err("reading", at, e))?;
    let names: Vec<CString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let path = at.join(OsStr::from_bytes(name.as_bytes()));
        let st = fstatat(
            Some(src.as_raw_fd()),
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err("stat", &path, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            mkdirat(
                Some(dst.as_raw_fd()),
                name.as_c_str(),
                Mode::from_bits_truncate(0o700),
            )
            .or_else(|e| {
                if e == nix::errno::Errno::EEXIST {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| err("creating", &path, e))?;
            let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let s = open_at(src, &name, flags, &path)?;
            let d = open_at(dst, &name, flags, &path)?;
            copy_dir(s.as_fd(), d.as_fd(), &path, depth + 1)?;
            set_owner_mode(d.as_fd(), &st, &path)?;
        } else if kind == SFlag::S_IFREG {
            let s = open_at(
                src,
                &name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                &path,
            )?;
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let d = open_at(dst, &name, flags, &path)?;
            let mut from = std::fs::File::from(s);
            let mut to = std::fs::File::from(d);
            std::io::copy(&mut from, &mut to).map_err(|e| EngineError::io("copying", &path, e))?;
            to.flush()
                .map_err(|e| EngineError::io("copying", &path, e))?;
            set_owner_mode(to.as_fd(), &st, &path)?;
        } else if kind == SFlag::S_IFLNK {
            let target = readlinkat(Some(src.as_raw_fd()), name.as_c_str())
                .map_err(|e| err("reading link", &path, e))?;
            nix::unistd::symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name.as_c_str())
                .map_err(|e| err("creating link", &path, e))?;
            fchownat(
                Some(dst.as_raw_fd()),
                name.as_c_str(),
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err("chown", &path, e))?;
        } else {
            // Devices, fifos and sockets do not belong in a tmpfs copy (runc skips them too).
            tracing::debug!(path = %path.display(), "tmpcopyup: special file not copied");
        }
    }
    Ok(())
}

fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: OFlag, path: &Path) -> Result<OwnedFd> {
    let mode = Mode::from_bits_truncate(0o600);
    let fd = openat(Some(dir.as_raw_fd()), name, flags, mode)
        .map_err(|e| EngineError::io("opening", path, e.into()))?;
    // SAFETY: openat returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_owner_mode(fd: BorrowedFd<'_>, st: &FileStat, path: &Path) -> Result<()> {
    nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| EngineError::io("chown", path, e.into()))?;
    // After chown, which clears set-id bits.
    fchmod(
        fd.as_raw_fd(),
        Mode::from_bits_truncate(st.st_mode & 0o7777),
    )
    .map_err(|e| EngineError::io("chmod", path, e.into()))
}

/// Strip `tmpcopyup` from the spec's mounts; return the destinations that had it.
pub fn take_from_spec(spec: &mut oci_spec::runtime::Spec) -> Vec<PathBuf> {
    let mut dests = Vec::new();
    if let Some(mounts) = spec.mounts_mut().as_mut() {
        for m in mounts.iter_mut() {
            if let Some(opts) = m.options().clone() {
                if opts.iter().any(|o| o == OPTION) {
                    dests.push(m.destination().clone());
                    m.set_options(Some(opts.into_iter().filter(|o| o != OPTION).collect()));
                }
            }
        }
    }
    dests
}

/// The createContainer hook that copies up `dests`: sgrun itself, through /proc/self/exe of
/// the container's init (which is sgrun until execve), so no host path is assumed.
pub fn hook(rootfs: &Path, dests: &[PathBuf]) -> oci_spec::runtime::Hook {
    let mut args = vec![
        "sgrun".to_string(),
        OPTION.to_string(),
        "--rootfs".into(),
        rootfs.display().to_string(),
    ];
    args.extend(dests.iter().map(|d| d.display().to_string()));
    let mut h = oci_spec::runtime::Hook::default();
    h.set_path(PathBuf::from("/proc/self/exe"));
    h.set_args(Some(args));
    h
}

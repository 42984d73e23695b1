//! The cgroup filesystem inside a container, read-only when its mount asks for `ro`.
//!
//! libcontainer 0.7 builds the container's cgroup mounts itself (on cgroup v1: a tmpfs and one
//! mount per hierarchy) with fixed flags, so the `ro` of the config's `cgroup` mount (runc's
//! and sgrun's default spec have it) is dropped and every hierarchy is mounted read-write.
//! That is more than cosmetic: with a cgroup namespace the container's own cgroup is the root
//! of each hierarchy it sees, and on cgroup v1 writing its limit files needs no capability, only
//! uid 0 — so without a user namespace the container's root could raise its own
//! `memory.limit_in_bytes` or `pids.max`. runc mounts them read-only.
//!
//! So after libcontainer has built the container, while its init still waits for `start` and no
//! code of the container has run, sgrun enters the container's mount namespace in a short-lived
//! child and makes each such mount read-only, recursively (mount_setattr with AT_RECURSIVE, so
//! the per-hierarchy mounts under the tmpfs are covered too). A mount that asked for `ro` and
//! cannot be made read-only fails the create.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::error::{EngineError, Result};
use crate::nschild;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_int = 0x8000;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// The destinations of the config's cgroup mounts that ask for `ro`.
pub fn readonly_cgroup_mounts(spec: &Spec) -> Vec<PathBuf> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")))
        .filter(|m| m.options().iter().flatten().any(|o| o == "ro"))
        .map(|m| m.destination().clone())
        .collect()
}

/// Makes each of `destinations` (container paths) read-only, recursively, in the mount
/// namespace of the process `init` (the container's init, waiting for start).
pub fn seal(id: &str, init: Pid, destinations: &[PathBuf]) -> Result<()> {
    if destinations.is_empty() {
        return Ok(());
    }
    let fail =
        |path: &Path, step: &'static str, source: std::io::Error| EngineError::CgroupReadonly {
            id: id.into(),
            path: path.to_owned(),
            step,
            source,
        };
    let namespace = |e| fail(&destinations[0], "opening the container's namespace", e);
    let mnt_ns = nschild::open_proc(init, "ns/mnt", libc::O_RDONLY).map_err(namespace)?;
    // The container's root as its init sees it: resolving beneath it, in the container's
    // mount namespace, reaches exactly the mounts libcontainer made.
    let root =
        nschild::open_proc(init, "root", libc::O_PATH | libc::O_DIRECTORY).map_err(namespace)?;
    // Everything the child needs is made before fork: after it, only raw system calls.
    let paths: Vec<CString> = destinations
        .iter()
        .map(|d| {
            let relative = d.strip_prefix("/").unwrap_or(d);
            CString::new(relative.as_os_str().as_encoded_bytes()).map_err(|_| {
                fail(
                    d,
                    "naming the mount",
                    std::io::ErrorKind::InvalidInput.into(),
                )
            })
        })
        .collect::<Result<_>>()?;
    let outcome = nschild::run(|| {
        nschild::setns(&mnt_ns, libc::CLONE_NEWNS)?;
        seal_in_child(root.as_raw_fd(), &paths)
    })
    .map_err(|e| fail(&destinations[0], "running the helper process", e))?;
    outcome.map_err(|f| {
        let (step, path) = match f.step as usize {
            0 => ("entering the container's mount namespace", &destinations[0]),
            i if i % 2 == 1 => (
                "finding the mount beneath the container's root (no symlinks)",
                &destinations[(i - 1) / 2],
            ),
            i => (
                "making it read-only (mount_setattr)",
                &destinations[(i - 1) / 2],
            ),
        };
        fail(path, step, std::io::Error::from_raw_os_error(f.errno))
    })
}

/// In the forked child, inside the mount namespace: for each path, resolve it beneath the
/// container's root without following any symlink and set MOUNT_ATTR_RDONLY on it and every
/// mount below it. Failing steps: 2i+1 resolving path i, 2i+2 its mount_setattr.
fn seal_in_child(root: i32, paths: &[CString]) -> std::result::Result<(), nschild::Failed> {
    let failed = |step: usize| nschild::Failed {
        step: step as u32,
        errno: nschild::errno(),
    };
    for (i, path) in paths.iter().enumerate() {
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 with a NUL-terminated path and an open_how of the size we pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            return Err(failed(2 * i + 1));
        }
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let empty = c"";
        // SAFETY: mount_setattr on the O_PATH fd just opened (AT_EMPTY_PATH), with a
        // mount_attr of the size we pass.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd as libc::c_int,
                empty.as_ptr(),
                (libc::AT_EMPTY_PATH | AT_RECURSIVE) as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc != 0 {
            return Err(failed(2 * i + 2));
        }
    }
    Ok(())
}

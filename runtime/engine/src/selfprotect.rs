//! Protection of the runtime binary against being overwritten from a container
//! (CVE-2019-5736): a container process that gets hold of /proc/<pid>/exe of an sgrun process
//! (for example by making sgrun's exec run a `#!/proc/self/exe` script) could otherwise open
//! the host's sgrun binary for writing once that process exits.
//!
//! runc and youki copy the binary into a sealed memfd on every call (about 7 ms for youki).
//! sgrun instead re-executes itself, once per command that enters a container, from a
//! *detached read-only bind mount* of its own binary: the new process's /proc/self/exe then
//! names a file on a read-only mount, and a write through it fails with EROFS. Nothing is
//! copied and the host's mount table is not touched (the mount is never attached anywhere
//! and disappears with the last process using it). If sgrun already runs from a read-only
//! mount (an admin may install it so), nothing is done at all.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use crate::error::{EngineError, Result};

/// Set in the environment across the re-exec, to detect a loop; removed at once after.
const MARKER: &str = "_SGRUN_RO_REEXEC";

/// True when the running binary lives on a read-only mount.
pub fn exe_is_readonly() -> std::io::Result<bool> {
    let st = nix::sys::statvfs::statvfs("/proc/self/exe")?;
    Ok(st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Make sure this process runs from a read-only mount of its binary, re-executing if needed.
/// Must be called before any thread is started and before anything is created.
pub fn ensure_readonly_exe() -> Result<()> {
    // First of all, before this process opens anything: a command that hands its stdio to a
    // container process must not have one of its own files land on a closed 0, 1 or 2.
    crate::exec::ensure_stdio_open()?;
    let ro = exe_is_readonly().map_err(|e| EngineError::io("statvfs", "/proc/self/exe", e))?;
    let looped = std::env::var_os(MARKER).is_some();
    if looped {
        // SAFETY: single-threaded at this point (called first thing in main).
        unsafe { std::env::remove_var(MARKER) };
    }
    if ro || crate::testonly::weakened(crate::testonly::Weakness::WritableExe) {
        return Ok(());
    }
    if looped {
        return Err(EngineError::SelfProtect {
            step: "re-exec",
            source: std::io::Error::other("still on a writable mount after re-exec"),
        });
    }
    let fd = readonly_clone_of_exe()?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()).expect("argv has no NUL"))
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).expect("environment has no NUL")
        })
        .collect();
    env.push(CString::new(format!("{MARKER}=1")).expect("static"));
    let empty = CString::new("").expect("static");
    // Only returns on failure.
    let err = nix::unistd::execveat(
        Some(fd.as_raw_fd()),
        empty.as_c_str(),
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(EngineError::SelfProtect {
        step: "execveat of the read-only copy",
        source: err.into(),
    })
}

/// A detached bind mount of /proc/self/exe, made read-only.
fn readonly_clone_of_exe() -> Result<OwnedFd> {
    let fd = clone_mount(std::path::Path::new("/proc/self/exe")).map_err(|source| {
        EngineError::SelfProtect {
            step: "open_tree(/proc/self/exe)",
            source,
        }
    })?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = CString::new("").expect("static");
    // SAFETY: mount_setattr reads one mount_attr struct of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(EngineError::SelfProtect {
            step: "mount_setattr(MOUNT_ATTR_RDONLY)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

/// A detached, non-recursive bind mount of `path` (open_tree with OPEN_TREE_CLONE): the mount
/// at `path` alone, without the mounts on top of it, attached nowhere.
pub fn clone_mount(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("NUL in path"))?;
    // SAFETY: open_tree takes a valid C string and flags; it returns a new fd or -1.
    let raw = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

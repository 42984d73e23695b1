//! Thin wrappers over the kernel's mount API and openat2, which neither nix 0.29 nor std
//! offer. Each returns an `io::Error` from errno; callers add the subject.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Resolution for every host-side lookup inside a tenant-controlled tree: stay beneath the
/// starting directory, follow no symlink at all (a tenant's planted link would otherwise make
/// host root open another tenant's files), no magic /proc links, and cross no mount.
pub const BENEATH: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn path_cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn fd_result(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

fn unit_result(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// openat2(2) relative to `dir`, with `resolve` flags. O_CLOEXEC is always added.
pub fn openat2(
    dir: BorrowedFd,
    path: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: open_how is a plain C struct; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: c and how outlive the call; the size passed is how's size.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match fd_result(rc) {
            // openat2 answers EAGAIN when a rename raced the lookup: try again.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            r => return r,
        }
    }
}

/// open(2) of a host-controlled absolute path, as a directory, never through a final symlink.
pub fn open_dir(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = path_cstr(path)?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            flags | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    fd_result(fd as libc::c_long)
}

/// mkdirat(2); the mode goes through the umask, callers fchmod afterwards.
pub fn mkdirat(dir: BorrowedFd, name: &str, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: c is a valid NUL-terminated name for the duration of the call.
    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
    unit_result(rc as libc::c_long)
}

pub fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain fchown on an fd we hold.
    unit_result(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } as libc::c_long)
}

pub fn fchmod(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain fchmod on an fd we hold.
    unit_result(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) } as libc::c_long)
}

pub fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: st is written by the kernel before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer for the call.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    unit_result(rc as libc::c_long).map(|()| st)
}

/// open_tree(2) of what `fd` (or `path` beneath it) names: with OPEN_TREE_CLONE, a detached
/// copy of that mount, attached nowhere, which no other process can see or change.
pub fn open_tree(dir: BorrowedFd, path: &str, flags: u32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: c outlives the call; flags are plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir.as_raw_fd(),
            c.as_ptr(),
            (flags | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    fd_result(rc)
}

/// open_tree(2) of a host-controlled absolute path.
pub fn open_tree_path(path: &Path, flags: u32) -> io::Result<OwnedFd> {
    let c = path_cstr(path)?;
    // SAFETY: c outlives the call; flags are plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            (flags | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    fd_result(rc)
}

/// mount_setattr(2) on the (detached) mount `fd`, recursively.
pub fn mount_setattr(fd: BorrowedFd, attr_set: u64, userns: Option<BorrowedFd>) -> io::Result<()> {
    // SAFETY: mount_attr is a plain C struct; zero means "change nothing".
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = attr_set;
    if let Some(ns) = userns {
        attr.userns_fd = ns.as_raw_fd() as u64;
    }
    let empty = c"";
    // SAFETY: attr and empty outlive the call; the size passed is attr's size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    unit_result(rc)
}

/// move_mount(2) of the detached mount `from` onto the directory `to`.
pub fn move_mount(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both paths are the empty string; the fds are valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    unit_result(rc)
}

/// A filesystem context (fsopen(2)), configured key by key, then turned into a detached
/// mount. The kernel's messages about a refused configuration are read back for the error.
pub struct FsContext {
    fd: OwnedFd,
}

impl FsContext {
    pub fn open(fstype: &CStr) -> io::Result<Self> {
        // SAFETY: fstype is a valid NUL-terminated string.
        let rc = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
        Ok(FsContext { fd: fd_result(rc)? })
    }

    fn config(
        &self,
        cmd: u32,
        key: Option<&CStr>,
        value: *const libc::c_void,
        aux: i32,
    ) -> io::Result<()> {
        let key = key.map_or(std::ptr::null(), |k| k.as_ptr());
        // SAFETY: key is NULL or a valid string; value is NULL (flags, commands), a valid
        // NUL-terminated string (FSCONFIG_SET_STRING) or unused (FSCONFIG_SET_FD passes the
        // fd in aux).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                cmd,
                key,
                value,
                aux,
            )
        };
        unit_result(rc)
    }

    /// A layer (or other path-valued key) given as an open directory, never as a path string:
    /// no lookup happens that a tenant's symlink could redirect.
    pub fn set_fd(&self, key: &CStr, fd: BorrowedFd) -> io::Result<()> {
        self.config(
            libc::FSCONFIG_SET_FD,
            Some(key),
            std::ptr::null(),
            fd.as_raw_fd(),
        )
    }

    /// A string-valued key. Only for values no tenant controls (see `image_root`).
    pub fn set_string(&self, key: &CStr, value: &CStr) -> io::Result<()> {
        self.config(
            libc::FSCONFIG_SET_STRING,
            Some(key),
            value.as_ptr().cast(),
            0,
        )
    }

    pub fn set_flag(&self, key: &CStr) -> io::Result<()> {
        self.config(libc::FSCONFIG_SET_FLAG, Some(key), std::ptr::null(), 0)
    }

    pub fn create(&self) -> io::Result<()> {
        self.config(libc::FSCONFIG_CMD_CREATE, None, std::ptr::null(), 0)
    }

    /// The detached mount of the created superblock.
    pub fn mount(&self, attrs: u64) -> io::Result<OwnedFd> {
        // SAFETY: plain integers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attrs as libc::c_uint,
            )
        };
        fd_result(rc)
    }

    /// What the filesystem said about a failed configuration ("e overlayfs: ..." lines).
    pub fn log(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..16 {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.push(
                String::from_utf8_lossy(&buf[..n as usize])
                    .trim()
                    .to_string(),
            );
        }
        out.join("; ")
    }
}

/// A user namespace with one mapping, for MOUNT_ATTR_IDMAP. The kernel needs a namespace,
/// and a namespace needs a process to be made in: a child cloned into a new user namespace
/// that shares our memory (CLONE_VM: no page tables copied) and only waits to be killed. Its
/// maps are written and its namespace opened without waiting for it to run at all; the child
/// is killed and reaped when this is dropped (after the mounts are made: an idmapped mount
/// keeps its own reference to the namespace).
pub struct IdmapNamespace {
    pub fd: OwnedFd,
    child: libc::pid_t,
    _stack: Vec<u8>,
}

extern "C" fn wait_forever(_: *mut libc::c_void) -> libc::c_int {
    loop {
        // SAFETY: a raw pause(2); every signal but SIGKILL is blocked in this child (see
        // `new`), so no handler ever runs on its shared memory, and SIGKILL ends it.
        unsafe { libc::syscall(libc::SYS_pause) };
    }
}

impl IdmapNamespace {
    pub fn new(host_base: u32, count: u32) -> io::Result<Self> {
        let mut stack = vec![0u8; 16 * 1024];
        // SAFETY: the stack top is 16-byte aligned and inside `stack`, which outlives the
        // child (it is freed only after the child is reaped in Drop).
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
        let top = (top as usize & !15) as *mut libc::c_void;
        // The child inherits our signal mask: block everything around the clone, so that no
        // handler of ours can ever run in it (it shares our memory).
        // SAFETY: sigset_t values are filled by sigfillset before use; pthread_sigmask only
        // changes this thread's mask, restored right after the clone.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: see above.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: the child runs only wait_forever, which touches no shared state (no
        // allocation, no locks, no errno: a raw syscall that never returns with a handler), so
        // sharing our memory with CLONE_VM is safe.
        let child = unsafe {
            libc::clone(
                wait_forever,
                top,
                libc::CLONE_NEWUSER | libc::CLONE_VM | libc::SIGCHLD,
                std::ptr::null_mut(),
            )
        };
        let err = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if child < 0 {
            return Err(err);
        }
        let mut ns = IdmapNamespace {
            // Replaced below; a placeholder that is never used as a namespace.
            fd: open_proc("/proc/self/ns/user")?,
            child,
            _stack: stack,
        };
        let map = format!("0 {host_base} {count}\n");
        for file in ["uid_map", "gid_map"] {
            let p = format!("/proc/{child}/{file}");
            std::fs::write(&p, &map)?;
        }
        ns.fd = open_proc(&format!("/proc/{child}/ns/user"))?;
        Ok(ns)
    }
}

impl IdmapNamespace {
    /// Kill the child now and reap it later: its death needs it to be scheduled, which on a
    /// busy host costs milliseconds if waited for at once. The namespace fd is closed; mounts
    /// already idmapped with it keep their own reference.
    pub fn release(self) -> ChildReaper {
        let mut me = std::mem::ManuallyDrop::new(self);
        // SAFETY: our own child, not yet reaped (only Drop or ChildReaper reaps it).
        unsafe { libc::kill(me.child, libc::SIGKILL) };
        // SAFETY: each field is taken out exactly once and `me` is never used or dropped again.
        let (fd, stack) = unsafe { (std::ptr::read(&me.fd), std::mem::take(&mut me._stack)) };
        drop(fd);
        ChildReaper {
            child: me.child,
            _stack: stack,
        }
    }
}

fn reap(child: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid of our own child, which has been sent SIGKILL.
    while unsafe { libc::waitpid(child, &mut status, libc::__WALL) } < 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

impl Drop for IdmapNamespace {
    fn drop(&mut self) {
        // SAFETY: the pid is our own child, not yet reaped.
        unsafe { libc::kill(self.child, libc::SIGKILL) };
        reap(self.child);
    }
}

/// A killed [`IdmapNamespace`] child, reaped on drop. Its stack is freed only then: with
/// CLONE_VM the child runs on it until it is gone.
pub struct ChildReaper {
    child: libc::pid_t,
    _stack: Vec<u8>,
}

impl Drop for ChildReaper {
    fn drop(&mut self) {
        reap(self.child);
    }
}

/// This thread's own mount namespace, private (no propagation to or from the host), for as
/// long as the guard lives. Mounts made in it are seen by the processes forked meanwhile (the
/// container's init copies it) and by nobody else; when the guard returns to the namespace it
/// came from, nothing holds the private one any more and the kernel unmounts what it held.
pub struct PrivateMountNamespace {
    original: Option<OwnedFd>,
    cwd: OwnedFd,
}

impl PrivateMountNamespace {
    pub fn enter() -> io::Result<Self> {
        let original = open_proc("/proc/thread-self/ns/mnt")?;
        let cwd = open_dir(Path::new("."), libc::O_PATH)?;
        // SAFETY: unshare only changes this thread's namespaces (CLONE_NEWNS implies CLONE_FS:
        // this thread gets its own root and cwd, remapped into the copy by the kernel).
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let guard = PrivateMountNamespace {
            original: Some(original),
            cwd,
        };
        // Without this a mount below a shared mount (systemd makes / shared) would propagate
        // to the host and to every peer namespace.
        let root = c"/";
        // SAFETY: a propagation change of our own copy of the tree; no data pointer.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(guard)
    }

    /// Go back to the namespace we came from, and to the same working directory (setns moves
    /// it to the namespace's root).
    pub fn leave(mut self) -> io::Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> io::Result<()> {
        let Some(ns) = self.original.take() else {
            return Ok(());
        };
        // SAFETY: setns with an fd of a mount namespace file we opened.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fchdir to a directory fd we hold.
        if unsafe { libc::fchdir(self.cwd.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for PrivateMountNamespace {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            // Nothing better to do in a destructor; leave() reports it to callers that care.
            tracing::error!("cannot return to the original mount namespace: {e}");
        }
    }
}

/// open(2) of a /proc file the kernel itself provides (a namespace file is a magic link).
fn open_proc(path: &str) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    fd_result(fd as libc::c_long)
}

//! Thin helpers around raw system calls: errno names, opening without writing, running a
//! risky call in a forked child with a deadline, and /proc/self/mountinfo.

use std::ffi::CString;
use std::time::{Duration, Instant};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The symbolic name of an errno, for the TAP lines (the driver and humans grep for them).
pub fn ename(e: i32) -> String {
    let name = match e {
        0 => "success",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSUP => "EOPNOTSUPP",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ESTALE => "ESTALE",
        libc::ENOKEY => "ENOKEY",
        libc::ELOOP => "ELOOP",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// The result of a raw call: Ok(return value) or Err(errno).
pub fn check(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

pub fn cstr(s: &str) -> CString {
    // Paths and names come from the driver or from /proc: a NUL in one is a driver bug,
    // and cutting at it keeps the probe going with a name that will simply not exist.
    CString::new(s.split('\0').next().unwrap_or("")).expect("no NUL left")
}

/// An fd closed on drop.
pub struct Fd(pub i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd was returned to us by the kernel and is owned by this value only.
        unsafe { libc::close(self.0) };
    }
}

/// open(2) with the given flags (O_CLOEXEC added); never writes anything. Opening for
/// write is how a vector shows a file is writable without changing it.
pub fn open(path: &str, flags: i32) -> Result<Fd, i32> {
    let p = cstr(path);
    // SAFETY: p is a valid NUL-terminated string; the mode is ignored without O_CREAT.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd(fd))
    }
}

/// "opened" or the errno name, for summaries.
pub fn open_result(r: &Result<Fd, i32>) -> String {
    match r {
        Ok(_) => "opened".to_string(),
        Err(e) => ename(*e),
    }
}

pub fn fstat(fd: i32) -> Option<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        Some(st)
    } else {
        None
    }
}

pub fn stat(path: &str) -> Option<libc::stat> {
    let p = cstr(path);
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: p is NUL-terminated and st a valid, writable stat buffer.
    if unsafe { libc::stat(p.as_ptr(), &mut st) } == 0 {
        Some(st)
    } else {
        None
    }
}

pub fn statfs(path: &str) -> Result<libc::statfs, i32> {
    let p = cstr(path);
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: p is NUL-terminated and st a valid, writable statfs buffer.
    if unsafe { libc::statfs(p.as_ptr(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(errno())
    }
}

pub fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn readlink(path: &str) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// How a forked child ended.
pub enum Child {
    /// The child's exit status: by convention 0 = the call succeeded, else its errno.
    Exited(i32),
    Signaled(i32),
    TimedOut,
    ForkFailed(i32),
}

impl Child {
    pub fn describe(&self) -> String {
        match self {
            Child::Exited(0) => "succeeded".to_string(),
            Child::Exited(e) => ename(*e),
            Child::Signaled(s) => format!("child killed by signal {s}"),
            Child::TimedOut => "child timed out and was killed".to_string(),
            Child::ForkFailed(e) => format!("fork failed: {}", ename(*e)),
        }
    }
}

/// Runs `f` in a forked child and waits at most `timeout`. Used for calls that change the
/// calling process (unshare, setns, mount) or could block, so the probe itself stays put
/// and never hangs. The probe is single-threaded, so fork is safe here.
pub fn in_child(timeout: Duration, f: impl FnOnce() -> i32) -> Child {
    // SAFETY: the probe has one thread; the child only makes system calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Child::ForkFailed(errno());
    }
    if pid == 0 {
        let code = f();
        // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the parent.
        unsafe { libc::_exit(code & 0xff) };
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: pid is our own child; status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Child::Exited(libc::WEXITSTATUS(status));
            }
            return Child::Signaled(libc::WTERMSIG(status));
        }
        if r < 0 {
            return Child::ForkFailed(errno());
        }
        if Instant::now() >= deadline {
            // SAFETY: pid is our own child, killed and reaped here.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Child::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One line of /proc/self/mountinfo.
pub struct Mount {
    /// `MAJ:MIN` of the source filesystem (st_dev of its files).
    pub dev: String,
    /// The mounted directory inside the source filesystem (a host path for bind mounts).
    pub root: String,
    pub mount_point: String,
    pub options: String,
    pub fstype: String,
    pub super_options: String,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// mountinfo escapes spaces and the like as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mountinfo() -> Vec<Mount> {
    let text = read("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(Mount {
                dev: l[2].to_string(),
                root: unescape(l[3]),
                mount_point: unescape(l[4]),
                options: l[5].to_string(),
                fstype: r[0].to_string(),
                super_options: r[2].to_string(),
            })
        })
        .collect()
}

/// The numeric entries of /proc: the processes this container can see.
pub fn visible_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// A field of /proc/self/status ("CapEff", "NoNewPrivs", ...).
pub fn status_field(name: &str) -> Option<String> {
    let text = read("/proc/self/status")?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// Whether `path` is on a read-only mount (statvfs ST_RDONLY); None if it cannot be told.
pub fn on_readonly_mount(path: &str) -> Option<bool> {
    let p = cstr(path);
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: p is NUL-terminated and st a valid, writable statvfs buffer.
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } == 0 {
        Some(st.f_flag & libc::ST_RDONLY != 0)
    } else {
        None
    }
}

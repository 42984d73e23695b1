//! OOM notification on cgroup v1: an eventfd registered on the container's
//! `memory.oom_control` through `cgroup.event_control`. The kernel signals it on every OOM in
//! the cgroup, and once more when the cgroup is removed (then the watch ends).
//! (cgroup v2's `memory.events` is not watched yet: see docs/shim.md.)

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

/// The v1 memory cgroup directory of `pid`, from /proc/PID/cgroup.
pub fn memory_cgroup(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    memory_cgroup_in(&text)
}

fn memory_cgroup_in(proc_cgroup: &str) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
    })
}

/// An eventfd the kernel signals on each OOM in `dir`.
pub struct OomWatch {
    fd: AsyncFd<OwnedFd>,
    dir: PathBuf,
}

impl OomWatch {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: eventfd just returned this descriptor; nothing else owns it.
        let efd = unsafe { OwnedFd::from_raw_fd(raw) };
        let control = File::open(dir.join("memory.oom_control"))?;
        // "<eventfd> <fd of memory.oom_control>": the kernel keeps its own references, so
        // both files may be closed by us afterwards (the eventfd only when the watch ends)
        let mut ec = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.event_control"))?;
        ec.write_all(format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
        // SAFETY: the OwnedFd stays open and returns the same descriptor until the AsyncFd
        // that owns it is dropped.
        let fd = unsafe { AsyncFd::register(efd) }.map_err(std::io::Error::from)?;
        Ok(Self { fd, dir })
    }

    /// Waits for the next OOM; `false` once the cgroup is gone.
    pub async fn next(&self) -> bool {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return false;
            };
            let mut buf = [0u8; 8];
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), &mut buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(8)) => return self.dir.exists(),
                Ok(_) => return false,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_line_is_found() {
        let text = "12:pids:/a/b\n5:cpu,cpuacct:/a/b\n4:memory:/k8s.io/c1\n0::/\n";
        assert_eq!(
            memory_cgroup_in(text),
            Some(PathBuf::from("/sys/fs/cgroup/memory/k8s.io/c1"))
        );
        assert_eq!(memory_cgroup_in("0::/x\n"), None);
    }
}

//! Vectors against the other tenant: its processes, files, network, sockets and IPC.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::env::{need, need_num, Hints};
use crate::sys::{self, check, cstr, ename, errno, open, open_result};
use crate::tap::Outcome;

macro_rules! hint {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(o) => return o,
        }
    };
}

pub fn ptrace_peer(h: &Hints) -> Outcome {
    let pid: i32 = hint!(need_num(&h.peer_pid, "ESCAPE_PEER_PID"));
    let null: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: PTRACE_ATTACH with null addr/data; detached at once below if it worked.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) };
    if r < 0 {
        let e = errno();
        return Outcome::new(
            matches!(e, libc::ESRCH | libc::EPERM | libc::ENOSYS | libc::EACCES),
            format!("ptrace(PTRACE_ATTACH, {pid}) -> {}", ename(e)),
        );
    }
    // Attached: wait for the stop (bounded), then let the peer go.
    for _ in 0..100 {
        let mut status = 0;
        // SAFETY: pid is the tracee we just attached to.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) } != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: detaching from our own tracee.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) };
    Outcome::open(format!(
        "ptrace(PTRACE_ATTACH, {pid}) -> attached (detached again)"
    ))
}

pub fn process_vm(h: &Hints) -> Outcome {
    let pid: i32 = hint!(need_num(&h.peer_pid, "ESCAPE_PEER_PID"));
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // An address in the peer that is almost surely unmapped: the kernel answers ESRCH or
    // EPERM before looking, EFAULT once it would read.
    let remote = libc::iovec {
        iov_base: 0x1000 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local points at our buffer; remote is only read by the kernel, in the peer.
    let r = check(unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) } as libc::c_long);
    // Against ourselves: tells whether the filter lets the call through at all.
    // SAFETY: zero iovecs: nothing is read or written.
    let me = check(
        unsafe { libc::process_vm_readv(libc::getpid(), &local, 0, &remote, 0, 0) } as libc::c_long,
    );
    let me_s = format!(
        "process_vm_readv(self, 0 iovecs) -> {}",
        me.map(|v| v.to_string()).unwrap_or_else(ename)
    );
    match r {
        Err(e) if matches!(e, libc::ESRCH | libc::EPERM | libc::ENOSYS | libc::EACCES) => {
            Outcome::defended(format!("process_vm_readv({pid}) -> {}", ename(e))).detail(me_s)
        }
        other => Outcome::open(format!(
            "process_vm_readv({pid}) -> {} (reached the peer's memory)",
            other.map(|v| v.to_string()).unwrap_or_else(ename)
        ))
        .detail(me_s),
    }
}

fn read_canary(path: &str) -> (bool, String) {
    match std::fs::read_to_string(path) {
        Ok(s) => (
            s.contains("peer-canary"),
            format!("read({path}) -> {:?}", s.trim()),
        ),
        Err(e) => (
            false,
            format!("read({path}) -> {}", ename(e.raw_os_error().unwrap_or(0))),
        ),
    }
}

/// ESCAPE_PEER_ROOT: the host directories holding the peer's `canary`, separated by `:` (a
/// runc rootfs; for a tenant, its image in the store and its own volume).
pub fn peer_files(h: &Hints) -> Outcome {
    let roots = hint!(need(&h.peer_root, "ESCAPE_PEER_ROOT"));
    let mut hole = false;
    let mut said = Vec::new();
    for root in roots.split(':').filter(|r| !r.is_empty()) {
        let (found, s) = read_canary(&format!("{}/canary", root.trim_end_matches('/')));
        hole |= found;
        said.push(s);
    }
    Outcome::new(!hole, said.join("; "))
}

pub fn peer_proc_root(h: &Hints) -> Outcome {
    let pid = hint!(need(&h.peer_pid, "ESCAPE_PEER_PID"));
    let (hole, s) = read_canary(&format!("/proc/{pid}/root/canary"));
    let cwd = open(
        &format!("/proc/{pid}/cwd"),
        libc::O_RDONLY | libc::O_DIRECTORY,
    );
    let cwd_s = format!("open(/proc/{pid}/cwd) -> {}", open_result(&cwd));
    Outcome::new(!hole && cwd.is_err(), format!("{s}; {cwd_s}"))
}

pub fn peer_signal(h: &Hints) -> Outcome {
    let pid: i32 = hint!(need_num(&h.peer_pid, "ESCAPE_PEER_PID"));
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    if r == 0 {
        Outcome::open(format!("kill({pid}, 0) -> allowed"))
    } else {
        let e = errno();
        Outcome::new(
            matches!(e, libc::ESRCH | libc::EPERM),
            format!("kill({pid}, 0) -> {}", ename(e)),
        )
    }
}

pub fn peer_network(h: &Hints) -> Outcome {
    let port: u16 = hint!(need_num(&h.peer_port, "ESCAPE_PEER_PORT"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => Outcome::open(format!(
            "connect(127.0.0.1:{port}) -> connected to the peer's listener"
        )),
        Err(e) => {
            let name = e.raw_os_error().map(ename).unwrap_or_else(|| e.to_string());
            Outcome::defended(format!("connect(127.0.0.1:{port}) -> {name}"))
        }
    }
}

pub fn peer_abstract_socket(h: &Hints) -> Outcome {
    let name = hint!(need(&h.peer_abstract, "ESCAPE_PEER_ABSTRACT"));
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Outcome::defended(format!("socket(AF_UNIX) -> {}", ename(errno())));
    }
    let fd = sys::Fd(fd);
    let (addr, len) = crate::peer::abstract_addr(name);
    // A unix connect never blocks for long: it succeeds into the backlog or fails at once.
    // SAFETY: addr is a valid sockaddr_un of length len.
    let r = unsafe { libc::connect(fd.0, &addr as *const _ as *const libc::sockaddr, len) };
    if r == 0 {
        Outcome::open(format!("connect(@{name}) -> connected to the peer"))
    } else {
        Outcome::defended(format!("connect(@{name}) -> {}", ename(errno())))
    }
}

pub fn peer_sysv_ipc(h: &Hints) -> Outcome {
    let key: i32 = hint!(need_num(&h.peer_sysv_key, "ESCAPE_PEER_SYSV_KEY"));
    // Size 0 and no IPC_CREAT: only looks the key up, never creates or attaches.
    // SAFETY: plain shmget(2) lookup.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id >= 0 {
        Outcome::open(format!(
            "shmget({key}) -> id {id}: the peer's segment is visible"
        ))
    } else {
        let e = errno();
        Outcome::new(
            matches!(e, libc::ENOENT | libc::EACCES | libc::EPERM | libc::ENOSYS),
            format!("shmget({key}) -> {}", ename(e)),
        )
    }
}

pub fn peer_posix_shm(h: &Hints) -> Outcome {
    let name = hint!(need(&h.peer_posix_shm, "ESCAPE_PEER_POSIX_SHM"));
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let p = cstr(&path);
    // SAFETY: p is NUL-terminated; read-only open, no creation.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        drop(sys::Fd(fd));
        Outcome::open(format!(
            "open({path}) -> opened: the peer's object is visible"
        ))
    } else {
        Outcome::defended(format!("open({path}) -> {}", ename(errno())))
    }
}

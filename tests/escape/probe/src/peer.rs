//! `--peer`: the other tenant. It holds one of each kind of resource the probe then tries
//! to reach from its own container: a TCP listener on its loopback, an abstract unix
//! socket, a SysV shm segment and a POSIX shm object. It prints `peer ready` once all
//! exist and waits for SIGTERM (removing the shm objects) or SIGKILL.

use std::io::Write;
use std::net::TcpListener;

use crate::sys::{cstr, ename, errno};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("driver did not set {name}"))
}

/// Binds the abstract unix socket `name` (no leading NUL) and listens; returns its fd,
/// which stays open for the life of the peer.
fn listen_abstract(name: &str) -> Result<i32, String> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket(AF_UNIX): {}", ename(errno())));
    }
    let (addr, len) = abstract_addr(name);
    // SAFETY: addr is a valid sockaddr_un and len covers exactly the family and the name.
    if unsafe { libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) } < 0 {
        return Err(format!("bind(@{name}): {}", ename(errno())));
    }
    // SAFETY: fd is our bound socket.
    if unsafe { libc::listen(fd, 16) } < 0 {
        return Err(format!("listen(@{name}): {}", ename(errno())));
    }
    Ok(fd)
}

/// sockaddr_un for an abstract name: sun_path starts with NUL and the length counts only
/// the bytes of the name, so the name is exactly what the driver gave.
pub fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = name.as_bytes();
    let n = bytes.len().min(addr.sun_path.len() - 1);
    for (i, b) in bytes[..n].iter().enumerate() {
        addr.sun_path[i + 1] = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + n;
    (addr, len as libc::socklen_t)
}

pub fn run() -> i32 {
    match setup() {
        Ok(cleanup) => {
            println!("peer ready");
            let _ = std::io::stdout().flush();
            wait_for_term();
            cleanup.remove();
            0
        }
        Err(e) => {
            eprintln!("escape-probe --peer: {e}");
            1
        }
    }
}

struct Cleanup {
    shm_id: i32,
    posix_path: String,
}

impl Cleanup {
    fn remove(&self) {
        // SAFETY: IPC_RMID on the segment we created; the buffer argument is unused.
        unsafe { libc::shmctl(self.shm_id, libc::IPC_RMID, std::ptr::null_mut()) };
        let _ = std::fs::remove_file(&self.posix_path);
    }
}

fn setup() -> Result<Cleanup, String> {
    let port: u16 = var("ESCAPE_PEER_PORT")?
        .parse()
        .map_err(|_| "ESCAPE_PEER_PORT is not a port".to_string())?;
    let abstract_name = var("ESCAPE_PEER_ABSTRACT")?;
    let key: i32 = var("ESCAPE_PEER_SYSV_KEY")?
        .parse()
        .map_err(|_| "ESCAPE_PEER_SYSV_KEY is not a number".to_string())?;
    let posix = var("ESCAPE_PEER_POSIX_SHM")?;

    // The listeners are leaked on purpose: they must live until the process ends, and
    // the kernel completes connections into the backlog without an accept loop.
    let tcp = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    std::mem::forget(tcp);
    listen_abstract(&abstract_name)?;

    // SAFETY: plain shmget(2); the segment is only created, never attached.
    let shm_id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o600) };
    if shm_id < 0 {
        return Err(format!("shmget({key}): {}", ename(errno())));
    }
    let posix_path = format!("/dev/shm/{}", posix.trim_start_matches('/'));
    let p = cstr(&posix_path);
    // SAFETY: p is NUL-terminated; O_CREAT with an explicit mode.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(format!("create {posix_path}: {}", ename(errno())));
    }
    // SAFETY: fd was just returned by open; the object lives on in /dev/shm.
    unsafe { libc::close(fd) };
    Ok(Cleanup { shm_id, posix_path })
}

/// Blocks SIGTERM and SIGINT and waits for one. Blocking (rather than a handler) also works
/// when the peer is its pid namespace's init, for which default-action signals are dropped.
fn wait_for_term() {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is valid storage for the sigset functions; the probe is single-threaded.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    loop {
        let mut sig = 0;
        // SAFETY: set holds the blocked signals; sig is a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return;
        }
    }
}

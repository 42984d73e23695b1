//! The loopback interface of a container's new network namespace is up, as runc and crun leave
//! it. A new network namespace starts with `lo` down, and libcontainer 0.7 does not bring it
//! up: a tenant's services talking over 127.0.0.1 (php-fpm on 127.0.0.1:9000, MariaDB on TCP)
//! then get ENETUNREACH. sgrun brings it up from a short-lived child that enters the
//! namespace, after libcontainer has built the container and before start.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{EngineError, Result};
use crate::nschild;

/// Whether the config asks for a new network namespace (not one joined by path).
pub fn has_new_network_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Network && ns.path().is_none())
        })
}

/// Sets IFF_UP on `lo` in the network namespace of `init`.
pub fn bring_up(id: &str, init: Pid) -> Result<()> {
    let fail = |step: &'static str, source: std::io::Error| EngineError::Loopback {
        id: id.into(),
        step,
        source,
    };
    let net_ns = nschild::open_proc(init, "ns/net", libc::O_RDONLY)
        .map_err(|e| fail("opening the container's network namespace", e))?;
    let outcome = nschild::run(|| {
        nschild::setns(&net_ns, libc::CLONE_NEWNET)?;
        up_in_child()
    })
    .map_err(|e| fail("running the helper process", e))?;
    outcome.map_err(|f| {
        let step = match f.step {
            0 => "entering the container's network namespace",
            1 => "opening a socket there",
            2 => "reading the flags of lo",
            _ => "setting lo up",
        };
        fail(step, std::io::Error::from_raw_os_error(f.errno))
    })
}

/// In the forked child, inside the network namespace: SIOCGIFFLAGS, then SIOCSIFFLAGS with
/// IFF_UP added. Failing steps: 1 socket, 2 get flags, 3 set flags.
fn up_in_child() -> std::result::Result<(), nschild::Failed> {
    let failed = |step: u32| nschild::Failed {
        step,
        errno: nschild::errno(),
    };
    // SAFETY: a plain socket call; the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(failed(1));
    }
    // SAFETY: raw is a fresh socket fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in req into req.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(failed(2));
    }
    // SAFETY: ifru_flags is the member SIOCGIFFLAGS just filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS sets the flags of the interface named in req from req.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(failed(3));
    }
    Ok(())
}

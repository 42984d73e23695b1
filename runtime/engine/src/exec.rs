//! `sgrun exec`: run a process inside a running container, written by sgrun instead of
//! libcontainer's tenant builder, because that one does not join the container's user
//! namespace (the exec'd process would be real host root: youki defect 2).
//!
//! The child is set up in this order; each step says why it comes where it does:
//!  0. (parent) make sure fds 0, 1 and 2 are open (/dev/null if the caller closed them), so
//!     that no file this process opens later lands on a stdio number and is handed to the
//!     command as its stdin or stdout;
//!  1. (parent) compile seccomp, resolve a user name in the container's own /etc/passwd and
//!     open the namespace files before forking, so every error that input can cause is
//!     reported before any process exists;
//!  2. (parent) join the container's pid namespace for its *children* only, so the child is
//!     born inside it while still being our child (we can wait for its status);
//!  3. (child) PR_SET_DUMPABLE 0 first: until execve, nothing in the container may ptrace or
//!     open /proc/<pid>/fd of a process that still holds host privileges (CVE-2016-9962);
//!  4. (child) move itself into the container's cgroups, through files the parent opened:
//!     before it enters the user namespace (joining needs host privileges it then loses) and
//!     before it does anything the container should be charged for. It moves its one thread
//!     ("0" to each v1 `tasks` file), which skips the kernel's global threadgroup lock and the
//!     RCU grace period that moving a process by pid waits for (see cgroups::self_move_files);
//!  5. (child) rlimits, while still fully privileged;
//!  6. (child) setns: user namespace first (so that the other namespaces, owned by it, are
//!     joined with the container's credentials), then mount, then the rest;
//!  7. (child) a pty, opened inside the container's devpts so no host tty fd enters it;
//!  8. (child) bounding set, then uid/gid, then the other capability sets, then no_new_privs;
//!  9. (child) mark every fd above the preserved ones close-on-exec (CVE-2024-21626);
//! 10. (child) seccomp last, then execve.
//!
//! Why the child cannot be reached from inside the container before step 10 (CVE-2016-9962):
//! it is visible in the container's pid namespace from the fork on. Until step 8 it holds
//! capabilities the container's processes lack, so the kernel's ptrace check (the tracer's
//! permitted set must cover the target's) refuses them /proc/<pid>/{fd,mem,exe} and ptrace.
//! From step 8 on its credentials are the container's, and only the non-dumpable flag of
//! step 3 still refuses them: its mm was made by the host's sgrun, so the override would need
//! CAP_SYS_PTRACE in the host's user namespace. execve (after seccomp) makes it dumpable
//! again, as the container's own program. The tests in tests/integration/exec_security.rs
//! race for it from inside, with the window widened, and win once step 3 is left out.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use libcontainer::container::ContainerStatus;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Process, Spec};
use tracing::info_span;

use crate::container::Runtime;
use crate::error::{EngineError, Result};
use crate::executor::{resolve_program, set_no_new_privs};
use crate::supervise::{wait_forwarding, BlockedSignals, PtyProxy};

/// What the caller changes relative to the container's own process.
#[derive(Debug, Default, Clone)]
pub struct ExecOverrides {
    /// A process.json replacing the container's process entirely (runc --process).
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    /// `-u USER[:GROUP]`, names looked up in the container's /etc/passwd and /etc/group.
    pub user: Option<crate::users::UserSpec>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
}

/// The order namespaces are joined in (step 6). pid is joined by the parent (step 2).
const JOIN_ORDER: &[(LinuxNamespaceType, &str, CloneFlags)] = &[
    (LinuxNamespaceType::User, "user", CloneFlags::CLONE_NEWUSER),
    (LinuxNamespaceType::Mount, "mnt", CloneFlags::CLONE_NEWNS),
    (
        LinuxNamespaceType::Cgroup,
        "cgroup",
        CloneFlags::CLONE_NEWCGROUP,
    ),
    (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
    (LinuxNamespaceType::Network, "net", CloneFlags::CLONE_NEWNET),
];

/// Everything the child needs, computed before fork so the child only makes syscalls.
struct Prepared {
    namespaces: Vec<(OwnedFd, CloneFlags)>,
    rlimits: Vec<(libc::c_int, u64, u64)>,
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    caps: Option<CapSets>,
    no_new_privs: bool,
    cwd: CString,
    argv: Vec<CString>,
    arg0: String,
    env: Vec<CString>,
    path_var: Option<String>,
    tty: bool,
    /// The caller's terminal size, given to the pty before the command starts (a shell reads
    /// it once at start; setting it later from the parent would race with that read).
    winsize: Option<libc::winsize>,
    preserve_fds: i32,
    seccomp: Option<sgrun_seccomp::CompiledSeccomp>,
    /// False only under the test-only knob (`testonly`): skip step 3.
    non_dumpable: bool,
    /// False only under the test-only knob: skip step 9.
    close_fds: bool,
    /// Zero except under the test-only knob: widens the window before step 10.
    pause: std::time::Duration,
}

struct CapSets {
    bounding: caps::CapsHashSet,
    effective: caps::CapsHashSet,
    permitted: caps::CapsHashSet,
    inheritable: caps::CapsHashSet,
    ambient: caps::CapsHashSet,
}

pub fn exec(rt: &Runtime, id: &str, ov: &ExecOverrides, opts: &ExecOptions) -> Result<i32> {
    let _span = info_span!("container", id).entered();
    // Step 0.
    ensure_stdio_open()?;
    let exec_err = |message: String| EngineError::Exec {
        id: id.into(),
        message,
    };
    // The state lock is held only while reading state: the exec itself may run for hours.
    let lock = rt.lock(id, false)?;
    let container = rt.load(id)?;
    match container.status() {
        ContainerStatus::Running | ContainerStatus::Created => {}
        ContainerStatus::Paused if opts.ignore_paused => {}
        ContainerStatus::Paused => {
            return Err(exec_err("the container is paused; `sgrun resume` it first (a process started now would hang frozen)".into()));
        }
        s => return Err(EngineError::wrong_status(id, s, "exec", "running")),
    }
    if opts.detach && ov.tty && opts.console_socket.is_none() {
        return Err(exec_err(
            "a detached exec with a tty needs --console-socket to hand the terminal to".into(),
        ));
    }
    let init_pid = container
        .pid()
        .ok_or_else(|| exec_err("the container has no init pid".into()))?
        .as_raw();
    let spec = rt.saved_spec(id)?;
    // The profile's own seccomp, when it runs beside the config's: exec gets both, as the
    // init did.
    let extra_seccomp = rt.record(id)?.extra_seccomp;
    let user = match &ov.user {
        Some(u) => Some(resolve_user(id, init_pid, u)?),
        None => None,
    };
    let process = build_process(id, &spec, ov, user.as_ref())?;
    drop(lock);
    let compiled = crate::executor::compile_seccomp(
        id,
        &spec,
        extra_seccomp.as_ref(),
        Some(&rt.seccomp_cache()),
    )?;
    compiled.fill_cache(&rt.seccomp_cache());
    let prepared = prepare(id, init_pid, &spec, &process, opts, compiled.filters)?;

    // The console socket is connected before forking, so that a wrong path fails early.
    let console = match &opts.console_socket {
        Some(p) => Some(
            UnixStream::connect(p)
                .map_err(|e| EngineError::io("connecting to console socket", p, e))?,
        ),
        None => None,
    };

    // Step 2. The pid namespace applies to our children only; this process stays where it is.
    let pid_ns = ns_file(init_pid, "pid")
        .map_err(|e| EngineError::io("opening", format!("/proc/{init_pid}/ns/pid"), e))?;
    if has_ns(&spec, LinuxNamespaceType::Pid) {
        setns(&pid_ns, CloneFlags::CLONE_NEWPID).map_err(|e| EngineError::Sys {
            id: id.into(),
            action: "joining the pid namespace",
            source: e,
        })?;
    }

    // Step 4 is prepared here: the cgroup files are opened by this (privileged) process and
    // only written by the child.
    let cgroup_moves = crate::cgroups::self_move_files(id, init_pid)?;
    let (err_read, err_write) = pipe()?;
    let (pty_parent, pty_child) = if prepared.tty {
        let (a, b) =
            UnixStream::pair().map_err(|e| EngineError::io("creating", "socketpair", e))?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };

    let blocked = BlockedSignals::block().map_err(|e| EngineError::Sys {
        id: id.into(),
        action: "blocking signals",
        source: e,
    })?;
    // SAFETY: this process is single-threaded (the CLI starts no threads), so the child may
    // run arbitrary code after fork; it leaves only by execve or _exit.
    let fork_result = unsafe { fork() }.map_err(|e| EngineError::Sys {
        id: id.into(),
        action: "fork",
        source: e,
    })?;
    let child = match fork_result {
        ForkResult::Child => {
            drop(err_read);
            drop(pty_parent);
            let err = child_main(&prepared, cgroup_moves, pty_child);
            let mut f = std::fs::File::from(err_write);
            let _ = f.write_all(err.as_bytes());
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_write);
    drop(pty_child);
    drop(cgroup_moves);

    let fail = |message: String| -> EngineError {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        EngineError::Exec {
            id: id.into(),
            message,
        }
    };

    // No fd means the child failed before sending it; its error message follows.
    let master = pty_parent.and_then(|sock| recv_fd(&sock).ok());
    let mut message = String::new();
    let _ = std::fs::File::from(err_read).read_to_string(&mut message);
    if !message.is_empty() {
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(EngineError::Exec {
            id: id.into(),
            message,
        });
    }
    if prepared.tty && master.is_none() {
        return Err(fail("the process did not hand over its terminal".into()));
    }
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, child.as_raw())?;
    }
    let mut master = master;
    if let (Some(sock), Some(m)) = (&console, &master) {
        send_fd(sock, m.as_fd()).map_err(|e| {
            EngineError::io(
                "sending the terminal to",
                opts.console_socket.clone().unwrap_or_default(),
                e,
            )
        })?;
        master = None;
    }
    if opts.detach {
        drop(blocked);
        return Ok(0);
    }
    let code = wait_forwarding(child, master.map(|m| PtyProxy { master: m })).map_err(|e| {
        EngineError::Sys {
            id: id.into(),
            action: "waiting for the process",
            source: e,
        }
    })?;
    drop(blocked);
    Ok(code)
}

/// The process to run: the container's own process with the caller's changes, or a
/// process.json. Capabilities may only be narrowed relative to the container's bounding set.
pub fn build_process(
    id: &str,
    spec: &Spec,
    ov: &ExecOverrides,
    user: Option<&crate::users::Resolved>,
) -> Result<Process> {
    let base = spec.process().clone().unwrap_or_default();
    let mut p = match &ov.process_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| EngineError::io("reading", path, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| EngineError::ProcessSpec {
                    path: path.clone(),
                    message: format!("line {}: {e}", e.line()),
                })?;
            serde_path_to_error::deserialize::<_, Process>(v).map_err(|e| {
                EngineError::ProcessSpec {
                    path: path.clone(),
                    message: format!("at {}: {}", e.path(), e.inner()),
                }
            })?
        }
        None => {
            let mut p = base.clone();
            p.set_args(Some(ov.args.clone()));
            p.set_terminal(Some(ov.tty));
            p
        }
    };
    if let Some(cwd) = &ov.cwd {
        if !cwd.starts_with('/') {
            return Err(EngineError::Exec {
                id: id.into(),
                message: format!("--cwd {cwd:?} must be an absolute path"),
            });
        }
        p.set_cwd(PathBuf::from(cwd));
    }
    if ov.tty {
        p.set_terminal(Some(true));
    }
    if !ov.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &ov.env {
            let key = kv.split('=').next().unwrap_or_default();
            if key.is_empty() || !kv.contains('=') {
                return Err(EngineError::Exec {
                    id: id.into(),
                    message: format!("-e {kv:?}: expected KEY=VALUE"),
                });
            }
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(r) = user {
        let mut u = p.user().clone();
        u.set_uid(r.uid);
        // A numeric uid alone keeps the process's gid, as runc; a name brings its own.
        if let Some(g) = r.gid {
            u.set_gid(g);
        }
        // Another user never keeps the container process's supplementary groups.
        u.set_additional_gids(Some(r.additional_gids.clone()));
        p.set_user(u);
    }
    if !ov.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(ov.additional_gids.clone()));
        p.set_user(user);
    }
    if ov.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    // Never more than the container's bounding set: exec may tighten, never loosen.
    let bounding = base
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    // No capabilities in config.json means none. oci-spec's Default for the sets is runc's
    // default set, which would hand out capabilities the container never had.
    let mut caps = p.capabilities().clone().unwrap_or_else(|| {
        let none = Some(Default::default());
        let mut c = oci_spec::runtime::LinuxCapabilities::default();
        c.set_bounding(none.clone());
        c.set_effective(none.clone());
        c.set_permitted(none.clone());
        c.set_inheritable(none.clone());
        c.set_ambient(none);
        c
    });
    for name in &ov.caps {
        let norm = if name.to_ascii_uppercase().starts_with("CAP_") {
            name.to_ascii_uppercase()
        } else {
            format!("CAP_{}", name.to_ascii_uppercase())
        };
        let cap = serde_json::from_value::<oci_spec::runtime::Capability>(
            serde_json::Value::String(norm.clone()),
        )
        .map_err(|_| EngineError::Exec {
            id: id.into(),
            message: format!("--cap {name:?}: unknown capability"),
        })?;
        if !bounding.contains(&cap) {
            return Err(EngineError::Exec { id: id.into(), message: format!("--cap {norm}: not in the container's bounding set; exec cannot grant more than the container has") });
        }
        let add = |s: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        caps.set_inheritable(add(caps.inheritable()));
        caps.set_ambient(add(caps.ambient()));
    }
    caps.set_bounding(Some(bounding.clone()));
    for set in [
        caps.effective(),
        caps.permitted(),
        caps.inheritable(),
        caps.ambient(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(extra) = set.iter().find(|c| !bounding.contains(c)) {
            return Err(EngineError::Exec {
                id: id.into(),
                message: format!(
                    "capability {} is not in the container's bounding set",
                    cap_name(extra)
                ),
            });
        }
    }
    p.set_capabilities(Some(caps));
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => {
            return Err(EngineError::Exec {
                id: id.into(),
                message: "no command given".into(),
            })
        }
    }
    Ok(p)
}

/// `CAP_KILL` for Capability::Kill (oci-spec's Display prints the variant name instead).
pub fn cap_name(c: &oci_spec::runtime::Capability) -> String {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{c:?}"),
    }
}

/// `-u`: numbers as given; names from the container's own files (crate::users).
fn resolve_user(
    id: &str,
    init_pid: i32,
    u: &crate::users::UserSpec,
) -> Result<crate::users::Resolved> {
    if u.numeric() {
        return crate::users::resolve(id, u, None, None);
    }
    let passwd = crate::users::read_container_file(id, init_pid, "/etc/passwd")?;
    let group = crate::users::read_container_file(id, init_pid, "/etc/group")?;
    crate::users::resolve(id, u, passwd.as_deref(), group.as_deref())
}

/// Step 0: open /dev/null on any of fds 0-2 the caller left closed. Also called first thing
/// by `selfprotect::ensure_readonly_exe`, before anything is opened.
pub fn ensure_stdio_open() -> Result<()> {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the flags of an fd number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| EngineError::io("opening", "/dev/null", e))?;
            let raw = f.as_raw_fd();
            if raw != fd {
                // SAFETY: dup2 onto a closed fd number; `f` is closed after.
                if unsafe { libc::dup2(raw, fd) } == -1 {
                    return Err(EngineError::io(
                        "duplicating onto a closed stdio fd",
                        "/dev/null",
                        std::io::Error::last_os_error(),
                    ));
                }
            } else {
                // It landed exactly on the hole: keep it open there.
                std::mem::forget(f);
            }
        }
    }
    Ok(())
}

fn has_ns(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

fn ns_file(pid: i32, name: &str) -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open(format!("/proc/{pid}/ns/{name}"))?.into())
}

fn prepare(
    id: &str,
    init_pid: i32,
    spec: &Spec,
    p: &Process,
    opts: &ExecOptions,
    seccomp: Option<sgrun_seccomp::CompiledSeccomp>,
) -> Result<Prepared> {
    let cstr = |s: &str, what: &str| {
        CString::new(s).map_err(|_| EngineError::Exec {
            id: id.into(),
            message: format!("{what} {s:?} contains a NUL byte"),
        })
    };
    if has_ns(spec, LinuxNamespaceType::Time) {
        return Err(EngineError::Unsupported {
            what: "exec into a container with a time namespace",
            why: "joining time namespaces is not implemented",
        });
    }
    let mut namespaces = Vec::new();
    for (typ, name, flag) in JOIN_ORDER {
        if has_ns(spec, *typ) {
            let fd = ns_file(init_pid, name).map_err(|e| {
                EngineError::io("opening", format!("/proc/{init_pid}/ns/{name}"), e)
            })?;
            namespaces.push((fd, *flag));
        }
    }
    let caps = p.capabilities().as_ref().map(|c| {
        let conv = |s: &Option<oci_spec::runtime::Capabilities>| -> caps::CapsHashSet {
            s.iter()
                .flatten()
                .filter_map(|c| caps::Capability::from_str(&cap_name(c)).ok())
                .collect()
        };
        CapSets {
            bounding: conv(c.bounding()),
            effective: conv(c.effective()),
            permitted: conv(c.permitted()),
            inheritable: conv(c.inheritable()),
            ambient: conv(c.ambient()),
        }
    });
    let rlimits = p
        .rlimits()
        .iter()
        .flatten()
        .map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard()))
        .collect();
    let env: Vec<String> = p.env().clone().unwrap_or_default();
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(str::to_string);
    let args = p.args().clone().unwrap_or_default();
    let tty = p.terminal().unwrap_or(false);
    // The config's consoleSize first (containerd sends the client's size there, as runc
    // applies it), else the size of the caller's own terminal.
    let given = p
        .console_size()
        .as_ref()
        .map(|b| crate::executor::winsize(b.height(), b.width()));
    let winsize = if !tty {
        None
    } else if given.is_some() {
        given
    } else {
        // SAFETY: winsize is plain integers; all zeroes is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize struct that lives on our stack.
        (unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
    };
    use crate::testonly::{weakened, Weakness};
    Ok(Prepared {
        namespaces,
        rlimits,
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        caps,
        no_new_privs: p.no_new_privileges().unwrap_or(false) || seccomp.is_some(),
        cwd: cstr(&p.cwd().to_string_lossy(), "cwd")?,
        argv: args
            .iter()
            .map(|a| cstr(a, "argument"))
            .collect::<Result<_>>()?,
        arg0: args[0].clone(),
        env: env
            .iter()
            .map(|e| cstr(e, "environment entry"))
            .collect::<Result<_>>()?,
        path_var,
        tty,
        winsize,
        preserve_fds: opts.preserve_fds,
        seccomp,
        non_dumpable: !weakened(Weakness::Dumpable),
        close_fds: !weakened(Weakness::KeepFds),
        pause: crate::testonly::exec_pause(),
    })
}

fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Runs in the forked child. Returns only on failure, with the message for the parent.
fn child_main(
    p: &Prepared,
    cgroup_moves: Vec<crate::cgroups::SelfMove>,
    pty_sock: Option<UnixStream>,
) -> String {
    // Step 3, before anything else.
    // SAFETY: prctl with integer arguments.
    if p.non_dumpable && unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return format!(
            "prctl(PR_SET_DUMPABLE): {}",
            std::io::Error::last_os_error()
        );
    }
    // Step 4: into the container's cgroups, while still host root and before anything else
    // happens in the container, so every resource the process uses from here on is charged
    // to the container. "0" moves the calling thread: see cgroups::self_move_files for why.
    for m in &cgroup_moves {
        if let Err(e) = (&m.file).write_all(b"0") {
            return format!("joining the container's cgroup {}: {e}", m.path.display());
        }
    }
    // Closed now rather than at execve: writable handles on the container's cgroups have no
    // business in the process any longer than needed.
    drop(cgroup_moves);
    // Step 5.
    for (res, soft, hard) in &p.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: setrlimit reads one rlimit struct that lives on our stack.
        if unsafe { libc::setrlimit(*res as _, &lim) } != 0 {
            return format!(
                "setrlimit({res}, {soft}, {hard}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    // Step 6.
    for (fd, flag) in &p.namespaces {
        if let Err(e) = setns(fd, *flag) {
            return format!("joining namespace {flag:?}: {e}");
        }
    }
    // Step 7.
    if let Some(sock) = pty_sock {
        if let Err(e) = setup_pty(&sock, p.winsize.as_ref()) {
            return format!("setting up the terminal: {e}");
        }
    }
    // Step 8: drop the bounding set while we still hold CAP_SETPCAP, keep the permitted set
    // across setuid, then set the sets the process will run with.
    if let Some(c) = &p.caps {
        for cap in caps::all() {
            if !c.bounding.contains(&cap) {
                if let Err(e) = caps::drop(None, caps::CapSet::Bounding, cap) {
                    return format!("dropping {cap} from the bounding set: {e}");
                }
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let gids: Vec<nix::unistd::Gid> = p
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    if let Err(e) = nix::unistd::setgroups(&gids) {
        // A user namespace with setgroups denied cannot change groups; fine if none were asked.
        if !gids.is_empty() || e != nix::errno::Errno::EPERM {
            return format!("setgroups({:?}): {e}", p.additional_gids);
        }
    }
    let gid = nix::unistd::Gid::from_raw(p.gid);
    if let Err(e) = nix::unistd::setresgid(gid, gid, gid) {
        return format!(
            "setting group {}: {e} (is it mapped in the container?)",
            p.gid
        );
    }
    let uid = nix::unistd::Uid::from_raw(p.uid);
    if let Err(e) = nix::unistd::setresuid(uid, uid, uid) {
        return format!(
            "setting user {}: {e} (is it mapped in the container?)",
            p.uid
        );
    }
    if let Some(c) = &p.caps {
        // capset keeps effective within permitted at every step, and the inheritable set may
        // only grow while CAP_SETPCAP is effective: inheritable, then effective, then permitted.
        for (set, which) in [
            (&c.inheritable, caps::CapSet::Inheritable),
            (&c.effective, caps::CapSet::Effective),
            (&c.permitted, caps::CapSet::Permitted),
        ] {
            if let Err(e) = caps::set(None, which, set) {
                return format!("setting {which:?} capabilities: {e}");
            }
        }
        if let Err(e) = caps::clear(None, caps::CapSet::Ambient) {
            return format!("clearing ambient capabilities: {e}");
        }
        for cap in &c.ambient {
            // As runc and the container's init: an ambient capability that cannot be raised
            // (not inheritable) is a privilege not granted, never a protection lost.
            let _ = caps::raise(None, caps::CapSet::Ambient, *cap);
        }
    } else if p.uid == 0 {
        // No capabilities in config.json means none, as runc: clear them all.
        for set in [
            caps::CapSet::Effective,
            caps::CapSet::Permitted,
            caps::CapSet::Inheritable,
        ] {
            let _ = caps::clear(None, set);
        }
    }
    if p.no_new_privs {
        if let Err(e) = set_no_new_privs() {
            return format!("prctl(PR_SET_NO_NEW_PRIVS): {e}");
        }
    }
    if let Err(e) = nix::unistd::chdir(p.cwd.as_c_str()) {
        return format!("chdir to {:?}: {e}", p.cwd);
    }
    // Step 9: nothing of ours beyond stdio and the preserved fds survives execve.
    let first = 3 + p.preserve_fds.max(0) as u32;
    // SAFETY: close_range only changes flags of fds of this process.
    if p.close_fds
        && unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        } != 0
    {
        return format!("close_range: {}", std::io::Error::last_os_error());
    }
    let Some(program) = resolve_program(&p.arg0, p.path_var.as_deref()) else {
        return format!(
            "executable {:?} not found in the container (PATH={})",
            p.arg0,
            p.path_var
                .as_deref()
                .unwrap_or(crate::executor::DEFAULT_PATH)
        );
    };
    let Ok(program) = CString::new(program.into_os_string().into_encoded_bytes()) else {
        return "program path contains a NUL byte".into();
    };
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        return format!("unblocking signals: {e}");
    }
    if !p.non_dumpable {
        // Test-only weakening: the kernel itself makes a process non-dumpable when its uid
        // changes (a user namespace's root is another host uid), so leaving out step 3 is
        // not enough to open the hole there; the knob forces the flag back on.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    if !p.pause.is_zero() {
        std::thread::sleep(p.pause);
    }
    // Step 10.
    if let Some(s) = &p.seccomp {
        if let Err(e) = s.install() {
            return format!("installing seccomp filter: {e}");
        }
    }
    let err = nix::unistd::execve(&program, &p.argv, &p.env).unwrap_err();
    format!("execve {:?}: {err}", p.arg0)
}

/// Open a pty inside the container's devpts, make it our controlling terminal and stdio,
/// and hand the master to the parent.
fn setup_pty(sock: &UnixStream, winsize: Option<&libc::winsize>) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: open returned a fresh fd that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some(ws) = winsize {
        // SAFETY: TIOCSWINSZ reads one winsize struct that outlives the call.
        unsafe {
            libc::ioctl(
                slave.as_raw_fd(),
                libc::TIOCSWINSZ,
                ws as *const libc::winsize,
            )
        };
    }
    send_fd(sock, master.as_fd())?;
    drop(master);
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd)?;
    }
    Ok(())
}

pub(crate) fn send_fd(sock: &UnixStream, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

pub(crate) fn recv_fd(sock: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "no terminal received",
    ))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::io("creating", "pipe", e.into()))
}

/// Write the pid file atomically, as runc does, so a reader never sees it half-written.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| EngineError::io("writing pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io("writing pid file", path, e))
}

//! The last steps inside the container's init before execve. libcontainer has by now entered
//! the namespaces, pivoted into the rootfs, closed stray fds, dropped capabilities and set the
//! environment; what it does not do (without its libseccomp feature it only logs a warning) is
//! seccomp. That is done here, in this order:
//! 1. unblock every signal: a foreground `run` blocks them in the runtime before forking so
//!    that no early SIGCHLD is lost (youki defect 3), and the mask survives fork and execve;
//! 2. no_new_privs, because capabilities are already gone and an unprivileged process may only
//!    install a filter under no_new_privs (stricter than runc when config.json left it false:
//!    a setuid binary gains nothing in an sgrun container);
//! 3. the filters, compiled in the parent before any fork, as the very last thing so that the
//!    fewest syscalls run under them before the workload;
//! 4. execvp.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use oci_spec::runtime::Spec;
use sgrun_seccomp::CompiledSeccomp;

/// The PATH runc and Docker use when the process environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone)]
pub struct SgrunExecutor {
    pub seccomp: Option<CompiledSeccomp>,
}

impl Executor for SgrunExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .filter(|a| !a.is_empty())
            .ok_or(ExecutorError::InvalidArg)?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::Other(format!("argument {args:?} contains a NUL byte")))?;
        let program =
            resolve_program(&args[0], std::env::var("PATH").ok().as_deref()).ok_or_else(|| {
                ExecutorError::Other(format!(
                    "executable {:?} not found in the container",
                    args[0]
                ))
            })?;
        let program = CString::new(program.into_os_string().into_encoded_bytes())
            .map_err(|_| ExecutorError::Other("program path contains a NUL byte".into()))?;

        // The terminal's size from the config, before the filter (which may not allow the
        // ioctl): containerd passes the client's size in consoleSize, and runc applies it.
        if let Some(p) = spec
            .process()
            .as_ref()
            .filter(|p| p.terminal() == Some(true))
        {
            if let Some(b) = p.console_size() {
                let ws = winsize(b.height(), b.width());
                // SAFETY: TIOCSWINSZ reads one winsize struct that outlives the call; fd 0 is
                // the terminal libcontainer set up for a process with `terminal: true`.
                if unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCSWINSZ, &ws) } != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(ExecutorError::Other(format!(
                        "setting the terminal size {}x{} from consoleSize: {e}",
                        b.width(),
                        b.height()
                    )));
                }
            }
        }
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            .map_err(|e| ExecutorError::Other(format!("unblocking signals: {e}")))?;
        if let Some(seccomp) = &self.seccomp {
            set_no_new_privs()
                .map_err(|e| ExecutorError::Other(format!("prctl(PR_SET_NO_NEW_PRIVS): {e}")))?;
            seccomp
                .install()
                .map_err(|e| ExecutorError::Other(format!("installing seccomp filter: {e}")))?;
        }
        // Only returns on failure.
        let err = nix::unistd::execv(&program, &argv).unwrap_err();
        Err(ExecutorError::Other(format!("execve {:?}: {err}", args[0])))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let process = spec.process().as_ref().ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("config.json has no process".into())
        })?;
        let args = process
            .args()
            .as_ref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                ExecutorValidationError::ArgValidationError("process.args is empty".into())
            })?;
        let path = process
            .env()
            .as_ref()
            .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .map(str::to_string);
        match resolve_program(&args[0], path.as_deref()) {
            Some(_) => Ok(()),
            None => Err(ExecutorValidationError::ArgValidationError(format!(
                "executable {:?} not found in the container (PATH={})",
                args[0],
                path.as_deref().unwrap_or(DEFAULT_PATH)
            ))),
        }
    }
}

/// A terminal size of `rows` x `cols` (OCI consoleSize's height and width), clamped to what
/// the kernel's struct holds.
pub fn winsize(rows: u64, cols: u64) -> libc::winsize {
    libc::winsize {
        ws_row: rows.min(u16::MAX as u64) as u16,
        ws_col: cols.min(u16::MAX as u64) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

pub fn set_no_new_privs() -> nix::Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    nix::errno::Errno::result(rc).map(drop)
}

/// Find the program like execvp would, but up front so that a missing command is reported by
/// name before the container starts. Paths are resolved inside the current root (the caller
/// has pivoted into the container).
pub fn resolve_program(name: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    path_var
        .unwrap_or(DEFAULT_PATH)
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The container's seccomp, compiled, and what the cache did not have yet.
pub struct CompiledFilters {
    pub filters: Option<CompiledSeccomp>,
    misses: Vec<(oci_spec::runtime::LinuxSeccomp, CompiledSeccomp)>,
}

impl CompiledFilters {
    /// Stores fresh compiles in the cache; call once the container exists.
    pub fn fill_cache(&self, dir: &Path) {
        for (section, compiled) in &self.misses {
            sgrun_seccomp::cache_store(section, dir, compiled);
        }
    }
}

/// Compile the container's seccomp: its config's `linux.seccomp` and, when a profile brought
/// a different one, that too (both are enforced; see `SpecPolicy`). Done in the parent before
/// any fork (create and exec alike): the child only installs the result. `cache` is the
/// directory of compiled filters keyed by content (see `sgrun_seccomp::compile_cached`); it is
/// only read here.
pub fn compile_seccomp(
    id: &str,
    spec: &Spec,
    extra: Option<&oci_spec::runtime::LinuxSeccomp>,
    cache: Option<&Path>,
) -> crate::error::Result<CompiledFilters> {
    let err = |source| crate::error::EngineError::Seccomp {
        id: id.into(),
        source: Box::new(source),
    };
    let mut misses = Vec::new();
    let mut one = |section: Option<&oci_spec::runtime::LinuxSeccomp>| {
        let Some(section) = section else {
            return Ok(None);
        };
        let (compiled, hit) = sgrun_seccomp::compile_cached(section, cache).map_err(err)?;
        if !hit {
            misses.push((section.clone(), compiled.clone()));
        }
        Ok(Some(compiled))
    };
    let own = one(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    let extra = one(extra)?;
    let filters = match (own, extra) {
        (Some(own), Some(extra)) => Some(own.stack(extra).map_err(err)?),
        (own, extra) => own.or(extra),
    };
    Ok(CompiledFilters { filters, misses })
}

//! Harness for sgrun's integration tests: real containers, as root, on this kernel, driven only
//! through the `sgrun` binary exactly as containerd or a person would drive runc.
//!
//! - [`sgrun_bin`] finds the binary (env `SGRUN_BIN`, else `target/debug/sgrun`), and
//!   [`shim_bin`] the shim (env `SGRUN_SHIM_BIN`, else next to sgrun);
//! - [`rootfs`] builds the busybox rootfs once per run (shared, mounted read-only by every
//!   container), [`userns_rootfs`] a copy owned by the mapped root, [`probe_dir`] the static
//!   syscall probe;
//! - [`TestEnv`] is one test: a private temporary directory holding the `--root` state
//!   directory and the bundles, and a unique name used for ids and cgroup paths;
//! - [`Bundle`] writes a config.json shaped like `runc spec`'s;
//! - [`Container`] is a guard: whatever happens (even a panic), its Drop runs `delete -f` and
//!   removes the cgroup directories, killing (by pid) only processes of that cgroup;
//! - [`Sgrun`] runs any sgrun command with a timeout and returns (code, stdout, stderr).
//!
//! Every process a test starts carries `SGRUN_TEST_MARK=<unique>` in its environment (the sgrun
//! command and the container processes alike), so "no process left behind" can be checked
//! without looking at anything else on the machine.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Host uid/gid the user-namespaced containers map their root to.
pub const USERNS_HOST_ID: u32 = 100_000;
pub const USERNS_SIZE: u32 = 65_536;
/// Parent of every cgroup the tests create (absolute cgroupsPath `/sgrun-test/<unique>`).
pub const CGROUP_PARENT: &str = "/sgrun-test";
pub const CGROUP_FS: &str = "/sys/fs/cgroup";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------------
// Prerequisites and shared fixtures

/// Fail (never skip) unless we are root.
pub fn require_root() {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the sgrun integration tests run real containers and need root (euid is {euid}); run them as root"
    );
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/` of this build: the test executable lives in `target/<profile>/deps/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// The sgrun binary under test: `$SGRUN_BIN`, else `sgrun` next to the test's `deps/` dir.
/// A private copy of the sgrun binary at `dest`, ready to execute. Tests that attack the
/// binary through /proc/<pid>/exe use one, so that no other test's sgrun holds it busy.
/// The copy is written through an fd that a concurrent fork elsewhere in this (threaded) test
/// process may briefly inherit, which makes an exec fail with ETXTBSY: wait that out here.
pub fn private_sgrun_copy(dest: &Path) -> PathBuf {
    fs::copy(sgrun_bin(), dest)
        .unwrap_or_else(|e| panic!("copying sgrun to {}: {e}", dest.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Command::new(dest).arg("--version").output() {
            Ok(o) if o.status.success() => return dest.to_path_buf(),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("running the copy {}: {other:?}", dest.display()),
        }
    }
}

pub fn sgrun_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SGRUN_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SGRUN_BIN={} does not name a file",
                p.display()
            );
            return p;
        }
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps");
        let p = profile_dir.join("sgrun");
        assert!(
            p.is_file(),
            "sgrun binary not found at {}: run `cargo build -p sgrun` first (or set SGRUN_BIN)",
            p.display()
        );
        p
    })
    .clone()
}

/// The shim binary under test (containerd-shim-sgrun-v1): `$SGRUN_SHIM_BIN`, else next to the
/// sgrun binary ([`sgrun_bin`]), as `cargo build -p containerd-shim-sgrun-v1 -p sgrun` leaves
/// them.
pub fn shim_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let p = match std::env::var_os("SGRUN_SHIM_BIN") {
            Some(p) => PathBuf::from(p),
            None => sgrun_bin().with_file_name("containerd-shim-sgrun-v1"),
        };
        assert!(
            p.is_file(),
            "shim binary not found at {}: run `cargo build -p containerd-shim-sgrun-v1` (same target dir as sgrun) or set SGRUN_SHIM_BIN",
            p.display()
        );
        p
    })
    .clone()
}

/// Run `f` holding an exclusive lock shared by every test process of this target dir, so that
/// fixtures are built once even when several test binaries run at the same time.
fn with_fixture_lock<T>(f: impl FnOnce() -> T) -> T {
    let dir = target_dir();
    fs::create_dir_all(&dir).expect("create target dir");
    let path = dir.join("sgrun-test-fixtures.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: flock on an fd we own; the lock is released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", path.display());
    let out = f();
    drop(file);
    out
}

fn sh(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The busybox rootfs (absolute path of `.../rootfs`), built once per run with
/// `tests/rootfs/busybox.sh`. Containers mount it read-only; tests never write into it.
/// `/probes` and `/data` exist as mount points for the probe binaries and for bind mounts.
pub fn rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            require_root();
            let dest = target_dir().join("sgrun-test-rootfs");
            with_fixture_lock(|| {
                let script = workspace_dir().join("tests/rootfs/busybox.sh");
                sh(Command::new("bash").arg(&script).arg(&dest));
                let rf = dest.join("rootfs");
                for d in ["probes", "data"] {
                    fs::create_dir_all(rf.join(d)).expect("mkdir in rootfs");
                }
                rf
            })
        })
        .clone()
}

/// A copy of the busybox rootfs owned by USERNS_HOST_ID:USERNS_HOST_ID (the host ids of the
/// container's root in user-namespaced containers).
pub fn userns_rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let base = rootfs();
            let dest = target_dir().join("sgrun-test-rootfs-userns");
            with_fixture_lock(|| {
                let rf = dest.join("rootfs");
                let stamp = dest.join(".ready");
                if !stamp.exists() {
                    let _ = fs::remove_dir_all(&dest);
                    fs::create_dir_all(&dest).expect("mkdir userns rootfs parent");
                    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
                    sh(Command::new("cp").arg("-a").arg(&base).arg(&rf));
                    let owner = format!("{USERNS_HOST_ID}:{USERNS_HOST_ID}");
                    sh(Command::new("chown").arg("-R").arg(&owner).arg(&rf));
                    fs::write(&stamp, b"").unwrap();
                }
                rf
            })
        })
        .clone()
}

/// Directory holding the static probe binary `probe` (tests/integration/probes/probe.c),
/// built with `cc -static` at test time. Bind-mount it at `/probes` ([`Bundle::with_probes`]).
pub fn probe_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = workspace_dir().join("tests/integration/probes/probe.c");
        let dir = target_dir().join("sgrun-test-probes");
        with_fixture_lock(|| {
            fs::create_dir_all(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            let bin = dir.join("probe");
            let fresh = match (fs::metadata(&bin), fs::metadata(&src)) {
                (Ok(b), Ok(s)) => b.modified().unwrap() >= s.modified().unwrap(),
                _ => false,
            };
            if !fresh {
                let tmp = dir.join(".probe.tmp");
                let out = Command::new("cc")
                    .args(["-static", "-O2", "-Wall", "-o"])
                    .arg(&tmp)
                    .arg(&src)
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("cannot run cc to build the probe (install gcc and libc6-dev): {e}")
                    });
                assert!(
                    out.status.success(),
                    "cc -static {} failed (gcc and libc6-dev needed): {}",
                    src.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                fs::rename(&tmp, &bin).unwrap();
            }
        });
        dir
    })
    .clone()
}

/// Docker's default seccomp profile as an OCI `linux.seccomp` section (the fixture of the
/// seccomp crate, already rendered for amd64 and Docker's default capabilities).
pub fn docker_default_seccomp() -> Value {
    let path = workspace_dir().join("runtime/seccomp/tests/fixtures/docker-default.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Running sgrun

/// The result of one command.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code; 128+N when the command itself was killed by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    /// Assert success and return self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self}");
        self
    }

    /// Assert failure (non-zero exit) and return self.
    #[track_caller]
    pub fn failed(&self) -> &Self {
        assert_ne!(self.code, 0, "expected a failure: {self}");
        self
    }

    /// Assert stderr contains every needle.
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr should mention {n:?}: {self}"
            );
        }
        self
    }

    pub fn stdout_trim(&self) -> &str {
        self.stdout.trim()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// Options for one command.
#[derive(Default)]
pub struct RunOpts {
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// File descriptors handed to sgrun as 3, 4, … (for --preserve-fds).
    pub extra_fds: Vec<OwnedFd>,
    /// Extra environment for sgrun (e.g. the test-only knobs of a debug build, which are
    /// otherwise removed from sgrun's environment so that no test runs weakened by accident).
    pub env: Vec<(String, String)>,
}

/// The test-only knobs of a debug sgrun (runtime/engine/src/testonly.rs).
pub const TEST_ONLY_KNOBS: &[&str] = &["SGRUN_TEST_ONLY_WEAKEN", "SGRUN_TEST_ONLY_EXEC_PAUSE_MS"];

/// A sgrun command running in the background.
pub struct Running {
    child: Child,
    stdout: fs::File,
    stderr: fs::File,
    cmdline: String,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for it; Err if it does not finish in time (it is then killed, by pid).
    pub fn try_wait(mut self, timeout: Duration) -> Result<Out, String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let out = self.collect(-1);
                    return Err(format!(
                        "`{}` did not finish within {timeout:?} (hung; killed it)\n{out}",
                        self.cmdline
                    ));
                }
                Err(e) => return Err(format!("waiting for `{}`: {e}", self.cmdline)),
            }
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(self.collect(code))
    }

    #[track_caller]
    pub fn wait(self, timeout: Duration) -> Out {
        self.try_wait(timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    fn collect(&mut self, code: i32) -> Out {
        let read = |f: &mut fs::File| {
            let mut s = Vec::new();
            let _ = f.rewind();
            let _ = f.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        };
        Out {
            code,
            stdout: read(&mut self.stdout),
            stderr: read(&mut self.stderr),
            cmdline: self.cmdline.clone(),
        }
    }
}

impl Drop for Running {
    /// A test that panics while a command runs must not leave it behind: kill it (by the pid
    /// we started) and reap it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs sgrun with one `--root`. Stdout and stderr go to anonymous files, not pipes: a
/// detached container inherits them and would otherwise keep a pipe open forever.
#[derive(Clone, Debug)]
pub struct Sgrun {
    pub root: PathBuf,
    pub mark: String,
    /// `--default-profile` for every command (None: sgrun's own default, oci-default).
    pub default_profile: Option<String>,
    /// `--state-dir` for every command (tenants, images; None: sgrun's default).
    pub state_dir: Option<PathBuf>,
}

impl Sgrun {
    pub fn new(root: impl Into<PathBuf>, mark: impl Into<String>) -> Self {
        Sgrun {
            root: root.into(),
            mark: mark.into(),
            default_profile: None,
            state_dir: None,
        }
    }

    /// Start `sgrun --root ROOT ARGS...` in the background.
    pub fn spawn_with<I, S>(&self, args: I, opts: RunOpts) -> Result<Running, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let cmdline = format!(
            "sgrun --root {} {}",
            self.root.display(),
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let stdout = tempfile::tempfile().map_err(|e| e.to_string())?;
        let stderr = tempfile::tempfile().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(sgrun_bin());
        cmd.arg("--root").arg(&self.root);
        if let Some(d) = &self.state_dir {
            cmd.arg("--state-dir").arg(d);
        }
        match &self.default_profile {
            Some(p) => cmd.env("SGRUN_DEFAULT_PROFILE", p),
            None => cmd.env_remove("SGRUN_DEFAULT_PROFILE"),
        };
        for k in TEST_ONLY_KNOBS {
            cmd.env_remove(k);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.args(&args)
            .env("SGRUN_TEST_MARK", &self.mark)
            .stdout(stdout.try_clone().unwrap())
            .stderr(stderr.try_clone().unwrap());
        match opts.stdin {
            Some(data) => {
                let mut f = tempfile::tempfile().map_err(|e| e.to_string())?;
                f.write_all(&data).map_err(|e| e.to_string())?;
                f.rewind().map_err(|e| e.to_string())?;
                cmd.stdin(f);
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        if !opts.extra_fds.is_empty() {
            let raw: Vec<RawFd> = opts.extra_fds.iter().map(|f| f.as_raw_fd()).collect();
            // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Move the sources far up first so that dup2 onto 3.. cannot clobber them.
                    let mut high = Vec::with_capacity(raw.len());
                    for fd in &raw {
                        let h = libc::fcntl(*fd, libc::F_DUPFD, 100);
                        if h < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        high.push(h);
                    }
                    for (i, h) in high.iter().enumerate() {
                        if libc::dup2(*h, 3 + i as RawFd) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::close(*h);
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{cmdline}`: {e}"))?;
        drop(opts.extra_fds);
        Ok(Running {
            child,
            stdout,
            stderr,
            cmdline,
        })
    }

    #[track_caller]
    pub fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_with(args, RunOpts::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_run_with<I, S>(&self, args: I, opts: RunOpts) -> Result<Out, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
        self.spawn_with(args, opts)?.try_wait(timeout)
    }

    /// Run to completion (panics if it hangs past its timeout).
    #[track_caller]
    pub fn run_with<I, S>(&self, args: I, opts: RunOpts) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.try_run_with(args, opts)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with(args, RunOpts::default())
    }

    /// `sgrun state ID` parsed; panics unless it succeeds.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        self.run(["state", id]).ok().json()
    }

    /// Poll `state` until it reports `status` (bounded).
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.run(["state", id]);
            if out.code == 0 {
                let v = out.json();
                if v["status"] == status {
                    return v;
                }
                if Instant::now() >= deadline {
                    panic!("container {id} did not become {status} within {timeout:?}: {v}");
                }
            } else if Instant::now() >= deadline {
                panic!("container {id} did not become {status} within {timeout:?}: {out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Entries of the state root (hidden ones included).
    /// What the state root holds, less the compiled-filter cache: a successful create before
    /// may have filled it, and it belongs to no container. (A refused create on a fresh root
    /// must not create it: the bad-input tests see that.)
    pub fn root_entries(&self) -> Vec<String> {
        self.all_root_entries()
            .into_iter()
            .filter(|e| !(e == ".sgrun-cache" && self.cache_filled_by_success()))
            .collect()
    }

    fn cache_filled_by_success(&self) -> bool {
        fs::read_dir(self.root.join(".sgrun-cache/seccomp"))
            .map(|rd| rd.flatten().count() > 0)
            .unwrap_or(false)
    }

    /// Everything in the state root.
    pub fn all_root_entries(&self) -> Vec<String> {
        match fs::read_dir(&self.root) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Leftover detection and cgroup helpers

/// Directories `/sys/fs/cgroup/<hierarchy>/<rel>` that exist now.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(CGROUP_FS) {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Host pids of processes whose environment carries `SGRUN_TEST_MARK=<mark>`.
pub fn marked_processes(mark: &str) -> Vec<i32> {
    let needle = format!("SGRUN_TEST_MARK={mark}");
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(env) = fs::read(e.path().join("environ")) {
                if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// `/proc/<pid>/status` field (e.g. "CapEff", "NoNewPrivs") from a status text.
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Capability numbers (`CAP_CHOWN` = 0, …) in the kernel's order.
pub const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Bit mask of capability names, as /proc/<pid>/status prints it (16 hex digits).
pub fn cap_mask(names: &[&str]) -> String {
    let mut m: u64 = 0;
    for n in names {
        let i = CAP_NAMES
            .iter()
            .position(|c| c == n)
            .unwrap_or_else(|| panic!("unknown capability {n}"));
        m |= 1 << i;
    }
    format!("{m:016x}")
}

/// Every capability this host's bounding set holds (a container can get no more).
pub fn host_caps() -> Vec<&'static str> {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let bnd = u64::from_str_radix(status_field(&status, "CapBnd").unwrap(), 16).unwrap();
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bundles

/// runc's default masked and read-only paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
pub const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// A config.json shaped like `runc spec`'s (terminal off, read-only busybox root).
#[derive(Clone, Debug)]
pub struct Bundle {
    pub config: Value,
    /// Run without sgrun's default profile (`--default-profile none`): for the weakened side
    /// of security tests, and for tests of the engine's handling of a config exactly as given.
    pub unprofiled: bool,
}

impl Bundle {
    pub fn new(rootfs: &Path) -> Self {
        let caps = json!(DEFAULT_CAPS);
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": [PATH_ENV, "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024u64, "soft": 1024u64}],
                "noNewPrivileges": true
            },
            "root": {"path": rootfs, "readonly": true},
            "hostname": "sgrun-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": MASKED_PATHS,
                "readonlyPaths": READONLY_PATHS
            }
        });
        Bundle {
            config,
            unprofiled: false,
        }
    }

    /// Sets an annotation (`io.sgrun.profile`, …).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        if !self.config["annotations"].is_object() {
            self.config["annotations"] = json!({});
        }
        self.config["annotations"][key] = json!(value);
        self
    }

    /// See [`Bundle::unprofiled`].
    pub fn unprofiled(mut self) -> Self {
        self.unprofiled = true;
        self
    }

    pub fn process(&mut self) -> &mut Value {
        &mut self.config["process"]
    }

    pub fn linux(&mut self) -> &mut Value {
        &mut self.config["linux"]
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// `sh -c SCRIPT`.
    pub fn sh(self, script: &str) -> Self {
        self.args(&["sh", "-c", script])
    }

    pub fn env(mut self, kv: &str) -> Self {
        self.config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(kv));
        self
    }

    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.config["process"]["user"] = json!({"uid": uid, "gid": gid});
        self
    }

    pub fn cwd(mut self, cwd: &str) -> Self {
        self.config["process"]["cwd"] = json!(cwd);
        self
    }

    pub fn terminal(mut self, on: bool) -> Self {
        self.config["process"]["terminal"] = json!(on);
        self
    }

    pub fn no_new_privs(mut self, on: bool) -> Self {
        self.config["process"]["noNewPrivileges"] = json!(on);
        self
    }

    /// The same list for the bounding, effective, permitted and ambient sets.
    pub fn caps(mut self, caps: &[&str]) -> Self {
        let c = json!(caps);
        self.config["process"]["capabilities"] =
            json!({"bounding": c, "effective": c, "permitted": c, "ambient": c});
        self
    }

    pub fn rlimit(mut self, typ: &str, soft: u64, hard: u64) -> Self {
        let list = self.config["process"]["rlimits"].as_array_mut().unwrap();
        list.retain(|r| r["type"] != typ);
        list.push(json!({"type": typ, "soft": soft, "hard": hard}));
        self
    }

    pub fn hostname(mut self, name: &str) -> Self {
        self.config["hostname"] = json!(name);
        self
    }

    pub fn root_path(mut self, path: &Path) -> Self {
        self.config["root"]["path"] = json!(path);
        self
    }

    pub fn readonly_root(mut self, ro: bool) -> Self {
        self.config["root"]["readonly"] = json!(ro);
        self
    }

    pub fn cgroups_path(mut self, path: &str) -> Self {
        self.config["linux"]["cgroupsPath"] = json!(path);
        self
    }

    /// Merge keys into linux.resources.
    pub fn resources(mut self, res: Value) -> Self {
        let r = &mut self.config["linux"]["resources"];
        for (k, v) in res.as_object().expect("resources is an object") {
            r[k] = v.clone();
        }
        self
    }

    pub fn seccomp(mut self, profile: Value) -> Self {
        self.config["linux"]["seccomp"] = profile;
        self
    }

    pub fn namespaces(mut self, types: &[&str]) -> Self {
        self.config["linux"]["namespaces"] =
            Value::Array(types.iter().map(|t| json!({"type": t})).collect());
        self
    }

    pub fn without_namespace(mut self, typ: &str) -> Self {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != typ);
        self
    }

    pub fn with_namespace(mut self, typ: &str) -> Self {
        let list = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        if !list.iter().any(|n| n["type"] == typ) {
            list.push(json!({"type": typ}));
        }
        self
    }

    pub fn id_mappings(mut self, uid: Value, gid: Value) -> Self {
        self.config["linux"]["uidMappings"] = uid;
        self.config["linux"]["gidMappings"] = gid;
        self
    }

    /// A user namespace mapping container 0..65536 to host USERNS_HOST_ID.., on the rootfs
    /// copy owned by USERNS_HOST_ID.
    pub fn userns(self) -> Self {
        let m = json!([{"containerID": 0, "hostID": USERNS_HOST_ID, "size": USERNS_SIZE}]);
        self.with_namespace("user")
            .id_mappings(m.clone(), m)
            .root_path(&userns_rootfs())
    }

    pub fn mount(mut self, m: Value) -> Self {
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }

    pub fn tmpfs(self, dest: &str) -> Self {
        self.mount(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "nodev", "mode=1777", "size=16m"]}),
        )
    }

    pub fn bind(self, src: &Path, dest: &str, ro: bool) -> Self {
        let mut opts = vec!["rbind", "nosuid", "nodev"];
        opts.push(if ro { "ro" } else { "rw" });
        self.mount(json!({"destination": dest, "type": "bind", "source": src, "options": opts}))
    }

    /// The static probe binaries at /probes/probe (read-only bind mount).
    pub fn with_probes(self) -> Self {
        self.bind(&probe_dir(), "/probes", true)
    }

    /// Append a hook: `kind` is prestart, createRuntime, createContainer, startContainer,
    /// poststart or poststop.
    pub fn hook(mut self, kind: &str, path: &str, args: &[&str]) -> Self {
        let hooks = &mut self.config["hooks"];
        if hooks.is_null() {
            *hooks = json!({});
        }
        if hooks[kind].is_null() {
            hooks[kind] = json!([]);
        }
        hooks[kind]
            .as_array_mut()
            .unwrap()
            .push(json!({"path": path, "args": args}));
        self
    }

    pub fn masked_paths(mut self, paths: &[&str]) -> Self {
        self.config["linux"]["maskedPaths"] = json!(paths);
        self
    }

    pub fn readonly_paths(mut self, paths: &[&str]) -> Self {
        self.config["linux"]["readonlyPaths"] = json!(paths);
        self
    }

    /// Arbitrary change.
    pub fn edit(mut self, f: impl FnOnce(&mut Value)) -> Self {
        f(&mut self.config);
        self
    }

    /// Write `dir/config.json` (creating dir).
    pub fn write(&self, dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Tests and containers

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test: a private directory (mode 0755 so that user-namespaced roots can reach bundles
/// and bind sources), a state root inside it, and a unique name.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub sg: Sgrun,
}

impl TestEnv {
    /// `short` names the test in ids and cgroup paths; keep it short.
    pub fn new(short: &str) -> Self {
        require_root();
        let _ = sgrun_bin();
        let name = format!(
            "{short}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("sgrun-test-{name}-"))
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let sg = Sgrun::new(dir.path().join("root"), name.clone());
        TestEnv { dir, name, sg }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh unique id (also the last component of its cgroup path).
    pub fn new_id(&self, tag: &str) -> String {
        format!(
            "{}-{tag}{}",
            self.name,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// The default bundle: busybox rootfs, unique cgroupsPath is set by [`TestEnv::container`];
    /// the test mark is in the process environment.
    pub fn bundle(&self) -> Bundle {
        Bundle::new(&rootfs()).env(&format!("SGRUN_TEST_MARK={}", self.name))
    }

    /// Write the bundle for a new container (id `<name>-<tag>N`, cgroupsPath
    /// `/sgrun-test/<id>` unless the bundle sets one) and return its guard. Nothing is created
    /// yet.
    /// The weakened side of a security test: the bundle runs without sgrun's default profile,
    /// so the hole the test looks for is really there.
    pub fn weak_container(&self, tag: &str, bundle: Bundle) -> Container<'_> {
        self.container(tag, bundle.unprofiled())
    }

    pub fn container(&self, tag: &str, bundle: Bundle) -> Container<'_> {
        let id = self.new_id(tag);
        let mut bundle = bundle;
        let cgroup = match bundle.config["linux"]["cgroupsPath"].as_str() {
            Some(p) => p.to_string(),
            None => {
                let p = format!("{CGROUP_PARENT}/{id}");
                bundle = bundle.cgroups_path(&p);
                p
            }
        };
        let dir = self.path().join(format!("bundle-{id}"));
        bundle.write(&dir);
        Container {
            env: self,
            id,
            bundle_dir: dir,
            cgroup,
            sg: bundle.unprofiled.then(|| Sgrun {
                default_profile: Some("none".into()),
                ..self.sg.clone()
            }),
        }
    }

    /// Assert that nothing of this test is left: an empty state root (so no dir for `id`), no
    /// cgroup dir under any hierarchy for `cgroup`, no process carrying this test's mark.
    #[track_caller]
    pub fn assert_nothing_left(&self, id: &str, cgroup: &str) {
        let entries = self.sg.root_entries();
        assert!(
            !entries.iter().any(|e| e == id),
            "state dir {}/{id} was left behind (root holds {entries:?})",
            self.sg.root.display()
        );
        assert!(
            entries.is_empty(),
            "the state root {} should be empty after a refused create, holds {entries:?}",
            self.sg.root.display()
        );
        let dirs = cgroup_dirs(cgroup);
        assert!(dirs.is_empty(), "cgroup dirs left behind: {dirs:?}");
        // A process may take a moment to be reaped by the kernel after its parent exits.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let pids = marked_processes(&self.name);
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let cmds: Vec<String> = pids
                    .iter()
                    .map(|p| {
                        let c = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                        format!("{p}: {}", String::from_utf8_lossy(&c).replace('\0', " "))
                    })
                    .collect();
                panic!("processes left behind: {cmds:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A container of a test. Drop deletes it (`delete -f`) and removes its cgroup directories,
/// killing leftover processes of that cgroup by pid if sgrun did not.
pub struct Container<'a> {
    pub env: &'a TestEnv,
    pub id: String,
    pub bundle_dir: PathBuf,
    /// Absolute cgroupsPath (`/sgrun-test/<id>`).
    pub cgroup: String,
    /// Its own runner when the bundle runs unprofiled.
    pub sg: Option<Sgrun>,
}

impl<'a> Container<'a> {
    pub fn sg(&self) -> &Sgrun {
        self.sg.as_ref().unwrap_or(&self.env.sg)
    }

    /// `sgrun create --bundle B ID [extra...]`.
    pub fn create_args(&self, extra: &[&str]) -> Out {
        let mut a: Vec<String> = vec!["create".into(), "--bundle".into()];
        a.push(self.bundle_dir.to_string_lossy().into_owned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(self.id.clone());
        self.sg().run(a)
    }

    #[track_caller]
    pub fn create(&self) -> &Self {
        self.create_args(&[]).ok();
        self
    }

    #[track_caller]
    pub fn start(&self) -> &Self {
        self.sg().run(["start", &self.id]).ok();
        self
    }

    /// `run -d`.
    #[track_caller]
    pub fn run_detached(&self) -> &Self {
        let b = self.bundle_dir.to_string_lossy().into_owned();
        self.sg().run(["run", "-d", "--bundle", &b, &self.id]).ok();
        self
    }

    /// Foreground `run`: returns its result (exit code = the container's).
    pub fn run_fg(&self) -> Out {
        self.run_fg_timeout(DEFAULT_TIMEOUT)
    }

    pub fn run_fg_timeout(&self, timeout: Duration) -> Out {
        let b = self.bundle_dir.to_string_lossy().into_owned();
        self.sg().run_with(
            ["run", "--bundle", &b, &self.id],
            RunOpts {
                timeout: Some(timeout),
                ..Default::default()
            },
        )
    }

    pub fn spawn_fg(&self) -> Running {
        let b = self.bundle_dir.to_string_lossy().into_owned();
        self.sg().spawn(["run", "--bundle", &b, &self.id])
    }

    /// `sgrun exec [opts...] ID CMD...`: `opts` go before the id, `cmd` after.
    pub fn exec(&self, opts: &[&str], cmd: &[&str]) -> Out {
        let mut a: Vec<&str> = vec!["exec"];
        a.extend_from_slice(opts);
        a.push(&self.id);
        a.extend_from_slice(cmd);
        self.sg().run(a)
    }

    /// `exec ID sh -c SCRIPT`.
    pub fn exec_sh(&self, script: &str) -> Out {
        self.exec(&[], &["sh", "-c", script])
    }

    #[track_caller]
    pub fn state(&self) -> Value {
        self.sg().state(&self.id)
    }

    #[track_caller]
    pub fn pid(&self) -> i32 {
        let v = self.state();
        v["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {v}")) as i32
    }

    #[track_caller]
    pub fn wait_status(&self, status: &str) -> Value {
        self.sg()
            .wait_status(&self.id, status, Duration::from_secs(10))
    }

    /// `/sys/fs/cgroup/<controller>/<cgroupsPath>/<file>`.
    pub fn cgroup_file(&self, controller: &str, file: &str) -> PathBuf {
        Path::new(CGROUP_FS)
            .join(controller)
            .join(self.cgroup.trim_start_matches('/'))
            .join(file)
    }

    #[track_caller]
    pub fn read_cgroup(&self, controller: &str, file: &str) -> String {
        let p = self.cgroup_file(controller, file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    fn cleanup(&self) {
        let sg = self.sg();
        let quick = |args: &[&str]| {
            sg.try_run_with(
                args,
                RunOpts {
                    timeout: Some(Duration::from_secs(15)),
                    ..Default::default()
                },
            )
        };
        let deleted = matches!(quick(&["delete", "-f", &self.id]), Ok(o) if o.code == 0);
        if !deleted {
            let _ = quick(&["resume", &self.id]);
            let _ = quick(&["delete", "-f", &self.id]);
        }
        remove_cgroup(&self.cgroup);
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Remove `/sys/fs/cgroup/*/<rel>` (deepest first), thawing and killing by pid whatever is
/// still inside: those can only be processes this test started.
pub fn remove_cgroup(rel: &str) {
    for dir in cgroup_dirs(rel) {
        remove_cgroup_dir(&dir);
    }
}

fn remove_cgroup_dir(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_dir(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        let freezer = dir.join("freezer.state");
        if freezer.exists() {
            let _ = fs::write(&freezer, "THAWED");
        }
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2) of a pid in the test's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if Instant::now() > deadline {
            eprintln!("warning: could not remove cgroup {}", dir.display());
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Console socket (terminal) support

/// A console socket like containerd's: accepts one connection and receives the pty master
/// sent with SCM_RIGHTS.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> Self {
        let listener = std::os::unix::net::UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener.set_nonblocking(true).unwrap();
        ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        }
    }

    /// Accept one connection and receive one fd (the pty master), within `timeout`.
    pub fn recv_master(&self, timeout: Duration) -> Result<OwnedFd, String> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "nobody connected to console socket {} within {timeout:?}",
                            self.path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
            ))
            .unwrap();
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg on console socket: {e}"))?;
        let cmsgs = msg.cmsgs().map_err(|e| format!("control messages: {e}"))?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel just installed this fd in our table; we own it now.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err("the console socket message carried no file descriptor".into())
    }
}

/// Read a pty master until the other side is gone (EIO / EOF) or `timeout`.
pub fn read_pty(master: &OwnedFd, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap();
        match poll(&mut fds, ms) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(_) => break, // EIO: every slave fd is closed
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is a process alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the ")" of comm
            let st = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !st.starts_with('Z') && !st.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Run a shell script on the host as uid/gid `id` (a tenant's mapped root), without
/// supplementary groups or any privilege.
pub fn sh_as(id: impl Into<u64>, script: &str) -> std::process::Output {
    let id = id.into();
    std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv")
}

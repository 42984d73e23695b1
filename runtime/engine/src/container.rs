//! The OCI lifecycle verbs (create, start, state, kill, delete, pause, resume, list) on top of
//! libcontainer, with the checks and clean-up libcontainer leaves to its caller.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use tracing::{debug, info_span};

use crate::error::{EngineError, Result};
use crate::executor::SgrunExecutor;
use crate::id::validate_id;
use crate::state::{OciState, Record};
use crate::validate::{load_config, resolve, validate_spec_with};

/// Hidden from `list`: private copies of bundles whose config.json sgrun had to adjust.
const SPEC_FILE: &str = "sgrun-config.json";
const PRIVATE_BUNDLES: &str = ".sgrun-bundles";
/// Compiled seccomp filters, by content hash. Hidden from `list` (a leading dot).
const SECCOMP_CACHE: &str = ".sgrun-cache/seccomp";
/// Where containers without a cgroupsPath go. An empty path would make libcgroups' v1 manager
/// use, and on delete kill, the caller's own cgroup (youki defect 6).
pub const DEFAULT_CGROUP_PARENT: &str = "/sgrun";

/// What a policy did to a container's config.
#[derive(Debug, Clone)]
pub struct PolicyOutcome {
    /// The profile now in force, for `sgrun state` and the logs.
    pub profile: String,
    /// A seccomp section to enforce beside the config's own `linux.seccomp` (both apply).
    pub extra_seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

/// The host's rules for every container's config, applied at create after the config is
/// validated and before anything is made. The engine knows nothing of profiles: sgrun's CLI
/// (and the shim) hand it one built from `sgrun-profiles`. A policy may only tighten.
pub trait SpecPolicy: Send + Sync + std::fmt::Debug {
    /// Adjusts `spec`; `None` when no profile applies to this container.
    fn apply(
        &self,
        spec: &mut Spec,
    ) -> std::result::Result<Option<PolicyOutcome>, Box<dyn std::error::Error + Send + Sync>>;
}

/// An error from a hook the caller gave the engine (policy, root filesystem provider).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// A root filesystem the host makes for a container in place of its bundle's (sgrun's CLI
/// hands the engine one built from `sgrun-rootfs`, for tenants' containers). The engine knows
/// nothing of tenants or images; it only calls these at the right moments of create and delete.
pub trait RootfsProvider: Send + Sync + std::fmt::Debug {
    /// At create, before the config is validated: claim the container or not (`false`: the
    /// spec is untouched). A claim rewrites `spec` in memory: `root.path` becomes the absolute
    /// path the provider will mount at, and the provider may force other settings (a user
    /// namespace). Nothing that needs undoing is made yet.
    fn claim(
        &self,
        id: &str,
        runtime_root: &Path,
        spec: &mut Spec,
    ) -> std::result::Result<bool, HookError>;
    /// After every check passed, just before libcontainer builds the container: make the
    /// root filesystem at `root.path`. On failure the provider has undone its own steps.
    fn mount(
        &self,
        id: &str,
        runtime_root: &Path,
        spec: &Spec,
    ) -> std::result::Result<Box<dyn MountedRootfs>, HookError>;
    /// Undo everything of container `id`: at delete, after a failed create, and at a
    /// `delete --force` of a half-made container. Idempotent; nothing to do for a container
    /// the provider never claimed.
    fn release(&self, id: &str, runtime_root: &Path) -> std::result::Result<(), HookError>;
}

/// A root filesystem made by [`RootfsProvider::mount`], until libcontainer has built the
/// container on it.
pub trait MountedRootfs {
    /// Called once the build is over (success or not): the container's init, if any, has its
    /// own view of the mounts by now.
    fn finish(self: Box<Self>) -> std::result::Result<(), HookError>;
}

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    /// The host's policy (profiles); `None` runs the config as given, as runc does.
    pub policy: Option<std::sync::Arc<dyn SpecPolicy>>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// false only for a foreground `run`: the init is then a child of this process.
    pub detach: bool,
}

/// Stdio for the container's init, when the caller does not want it to inherit ours.
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

pub struct Runtime {
    root: PathBuf,
    rootfs: Option<std::sync::Arc<dyn RootfsProvider>>,
}

/// Held while a verb reads or writes a container's state; released on drop.
pub struct StateLock {
    _file: std::fs::File,
}

impl Runtime {
    /// Open the state root. Nothing is created here: a command that only reads (state, list,
    /// kill, …) must not leave a directory behind for a mistyped --root.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let root = match root.canonicalize() {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::path::absolute(&root)
                .map_err(|e| EngineError::io("resolving state root", &root, e))?,
            Err(e) => return Err(EngineError::io("resolving state root", &root, e)),
        };
        Ok(Runtime { root, rootfs: None })
    }

    /// The host's root filesystem provider (tenants' containers), used at create and delete.
    pub fn with_rootfs_provider(mut self, provider: std::sync::Arc<dyn RootfsProvider>) -> Self {
        self.rootfs = Some(provider);
        self
    }

    /// Create the state root if it does not exist yet (create and run do, before anything
    /// else): root only, as it holds the pids and configs of every container.
    pub fn ensure_root(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
        {
            Ok(()) => Ok(()),
            Err(e) => Err(EngineError::io("creating state root", &self.root, e)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Lock a container's state directory. libcontainer rewrites state.json in place (truncate,
    /// then write), so a reader racing a writer could see it half-written: every verb that
    /// writes state holds the lock exclusively, every reader shared.
    pub fn lock(&self, id: &str, exclusive: bool) -> Result<StateLock> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        let file = match std::fs::File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::NotFound {
                    id: id.into(),
                    root: self.root.clone(),
                });
            }
            Err(e) => return Err(EngineError::io("opening", dir, e)),
        };
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), op) } == 0 {
                return Ok(StateLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(EngineError::io("locking", dir, e));
            }
        }
    }

    /// Load a container, refusing ids that could name anything outside the state root. The
    /// caller holds the container's lock.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        // While libcontainer creates a container, its state.json appears and is rewritten
        // outside our lock (the directory is libcontainer's to create): retry a torn read.
        let mut attempt = 0;
        loop {
            if !dir.join("state.json").exists() {
                return Err(EngineError::NotFound {
                    id: id.into(),
                    root: self.root.clone(),
                });
            }
            match Container::load(dir.clone()) {
                Ok(c) => return Ok(c),
                Err(libcontainer::error::LibcontainerError::State(_)) if attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(EngineError::Libcontainer {
                        id: id.into(),
                        action: "load",
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    pub fn record(&self, id: &str) -> Result<Record> {
        Record::load(&self.container_dir(id), id)
    }

    /// Validate everything that can be validated, then create. On any failure nothing is left:
    /// no state directory, cgroup or private bundle.
    pub fn create(&self, id: &str, opts: &CreateOptions, stdio: Stdio) -> Result<Container> {
        let _span = info_span!("container", id).entered();
        validate_id(id)?;
        if self.container_dir(id).exists() {
            return Err(EngineError::AlreadyExists {
                id: id.into(),
                root: self.root.clone(),
            });
        }
        if let Some(sock) = &opts.console_socket {
            use std::os::unix::fs::FileTypeExt;
            match std::fs::metadata(sock) {
                Ok(m) if m.file_type().is_socket() => {}
                Ok(_) => {
                    let e = std::io::Error::other("it is not a unix socket");
                    return Err(EngineError::io("console socket", sock, e));
                }
                Err(e) => return Err(EngineError::io("console socket", sock, e)),
            }
        }
        let bundle = opts
            .bundle
            .canonicalize()
            .map_err(|e| EngineError::Bundle {
                path: opts.bundle.clone(),
                reason: format!("cannot open it: {e}"),
            })?;
        if !bundle.is_dir() {
            return Err(EngineError::Bundle {
                path: bundle,
                reason: "is not a directory".into(),
            });
        }
        let config_path = bundle.join("config.json");
        let mut spec = load_config(&config_path)?;
        // The provider claims first: a tenant's config names no rootfs of its own, and the
        // root path it gets is checked with everything else below.
        let provided = match &self.rootfs {
            Some(p) => {
                p.claim(id, &self.root, &mut spec)
                    .map_err(|source| EngineError::Rootfs {
                        id: id.into(),
                        action: "claim",
                        source,
                    })?
            }
            None => false,
        };
        validate_spec_with(&config_path, &bundle, &spec, provided)?;
        let applied = match &opts.policy {
            Some(policy) => policy
                .apply(&mut spec)
                .map_err(|source| EngineError::Policy {
                    id: id.into(),
                    source,
                })?,
            None => None,
        };
        if applied.is_some() {
            // What the policy added (paths, limits) is checked like the caller's own.
            validate_spec_with(&config_path, &bundle, &spec, provided)?;
        }
        let rootfs = resolve(&bundle, spec.root().as_ref().expect("validated").path());
        // A provided root does not exist before `mount`; the provider made its path absolute.
        let rootfs = match provided {
            true => rootfs,
            false => rootfs
                .canonicalize()
                .map_err(|e| EngineError::io("resolving rootfs", &rootfs, e))?,
        };

        // Compile seccomp here, in the parent, before any fork: the child only installs it.
        let extra_seccomp = applied.as_ref().and_then(|a| a.extra_seccomp.clone());
        let compiled = crate::executor::compile_seccomp(
            id,
            &spec,
            extra_seccomp.as_ref(),
            Some(&self.seccomp_cache()),
        )?;

        // Everything the caller gave is valid: only now may anything be created.
        self.ensure_root()?;
        let (lc_bundle, private_bundle, cgroup_path) = self.effective_bundle(
            id,
            &bundle,
            &rootfs,
            &mut spec,
            applied.is_some() || provided,
        )?;

        // The provided root filesystem last before the build: every check that input can fail
        // has passed, so a refused config never costs a mount. From here on, every failure
        // releases it too.
        let mounted = match (&self.rootfs, provided) {
            (Some(p), true) => match p.mount(id, &self.root, &spec) {
                Ok(m) => Some(m),
                Err(source) => {
                    self.remove_leftovers(id, private_bundle.as_deref());
                    return Err(EngineError::Rootfs {
                        id: id.into(),
                        action: "mount",
                        source,
                    });
                }
            },
            _ => None,
        };
        // The init must be forked inside the container's name=systemd cgroup (namedcg.rs):
        // this thread enters it for the build only.
        let placed = match crate::namedcg::enter(&cgroup_path) {
            Ok(p) => p,
            Err(e) => {
                if let Some(m) = mounted {
                    // back to the host's mount namespace before anything else
                    let _ = m.finish();
                }
                self.remove_leftovers(id, private_bundle.as_deref());
                return Err(e);
            }
        };
        let result = self.build(id, opts, stdio, &lc_bundle, compiled.filters.clone());
        let result = match (result, placed.map(|p| p.leave()).transpose()) {
            (Ok(mut c), Err(e)) => {
                let _ = c.delete(true);
                Err(e)
            }
            (r, _) => r,
        };
        // libcontainer's init has copied the mounts by now (or failed): let the provider
        // return this thread to the host's view before anything else runs.
        let finished = match mounted {
            Some(m) => m.finish().map_err(|source| EngineError::Rootfs {
                id: id.into(),
                action: "finish",
                source,
            }),
            None => Ok(()),
        };
        let result = match (result, finished) {
            (Ok(c), Ok(())) => Ok(c),
            (Ok(mut c), Err(e)) => {
                let _ = c.delete(true);
                Err(e)
            }
            (Err(e), _) => Err(e),
        };
        let container = match result {
            Ok(c) => c,
            Err(e) => {
                crate::namedcg::remove(&cgroup_path);
                self.remove_leftovers(id, private_bundle.as_deref());
                return Err(e);
            }
        };
        // Before the container runs anything of its own (its init waits for start): the
        // cgroup mounts libcontainer made read-write become read-only as the config asks.
        // And the loopback interface of a new network namespace is up, as with runc.
        let sealed = match container.pid() {
            Some(pid) => {
                crate::cgroupfs::seal(id, pid, &crate::cgroupfs::readonly_cgroup_mounts(&spec))
                    .and_then(
                        |()| match crate::loopback::has_new_network_namespace(&spec) {
                            true => crate::loopback::bring_up(id, pid),
                            false => Ok(()),
                        },
                    )
            }
            None => Ok(()),
        };
        if let Err(e) = sealed {
            let mut c = container;
            let _ = c.delete(true);
            self.remove_leftovers(id, private_bundle.as_deref());
            return Err(e);
        }
        let record = Record {
            bundle,
            rootfs,
            cgroup_path,
            private_bundle,
            profile: applied.map(|a| a.profile),
            extra_seccomp,
        };
        let saved = self
            .save_spec(id, &spec)
            .and_then(|_| record.save(&self.container_dir(id)));
        if let Err(e) = saved {
            let mut c = container;
            let _ = c.delete(true);
            self.remove_leftovers(id, record.private_bundle.as_deref());
            return Err(e);
        }
        compiled.fill_cache(&self.seccomp_cache());
        Ok(container)
    }

    fn build(
        &self,
        id: &str,
        opts: &CreateOptions,
        stdio: Stdio,
        lc_bundle: &Path,
        seccomp: Option<sgrun_seccomp::CompiledSeccomp>,
    ) -> Result<Container> {
        let lc = |source| EngineError::Libcontainer {
            id: id.into(),
            action: "create",
            source: Box::new(source),
        };
        let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(lc)?
            .with_pid_file(opts.pid_file.as_ref())
            .map_err(lc)?
            .with_console_socket(opts.console_socket.as_ref())
            .with_preserved_fds(opts.preserve_fds)
            .with_executor(SgrunExecutor { seccomp });
        if let Some(fd) = stdio.stdin {
            builder = builder.with_stdin(fd);
        }
        if let Some(fd) = stdio.stdout {
            builder = builder.with_stdout(fd);
        }
        if let Some(fd) = stdio.stderr {
            builder = builder.with_stderr(fd);
        }
        builder
            .as_init(lc_bundle)
            .with_systemd(false)
            // libcontainer uses `detach` only to demand a console socket for a terminal; the
            // foreground run brings its own socket for that, so the check applies always.
            .with_detach(true)
            .with_no_pivot(opts.no_pivot)
            // libcontainer clones the init as a sibling of its intermediate process, so with
            // as_sibling(false) the init is a child of this process (a foreground run waits for
            // it); as_sibling(true) would make it a child of *our* parent.
            .as_sibling(false)
            .build()
            .map_err(lc)
    }

    /// Compiled seccomp filters, by content (see `sgrun_seccomp::compile_cached`).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.root.join(SECCOMP_CACHE)
    }

    /// libcontainer reads config.json from the bundle it is given. When sgrun must adjust the
    /// config (a missing or empty cgroupsPath, tmpcopyup mounts, a profile applied), it writes
    /// the adjusted copy into a private bundle under the state root and leaves the caller's
    /// bundle untouched.
    fn effective_bundle(
        &self,
        id: &str,
        bundle: &Path,
        rootfs: &Path,
        spec: &mut Spec,
        adjusted: bool,
    ) -> Result<(PathBuf, Option<PathBuf>, PathBuf)> {
        // Mount options mount(2) does not know and sgrun implements itself.
        let copy_up = crate::tmpcopyup::take_from_spec(spec);
        if !copy_up.is_empty() {
            let mut hooks = spec.hooks().clone().unwrap_or_default();
            let mut create = hooks.create_container().clone().unwrap_or_default();
            // First, so the contents are there before any hook of the caller's looks.
            create.insert(0, crate::tmpcopyup::hook(rootfs, &copy_up));
            hooks.set_create_container(Some(create));
            spec.set_hooks(Some(hooks));
        }
        let linux = spec.linux_mut().as_mut().expect("validated");
        let given = linux
            .cgroups_path()
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        if let (Some(cg), true, false) = (&given, copy_up.is_empty(), adjusted) {
            return Ok((bundle.to_path_buf(), None, cg.clone()));
        }
        let cgroup_path =
            given.unwrap_or_else(|| PathBuf::from(format!("{DEFAULT_CGROUP_PARENT}/{id}")));
        linux.set_cgroups_path(Some(cgroup_path.clone()));
        if let Some(root) = spec.root_mut().as_mut() {
            root.set_path(rootfs.to_path_buf());
        }
        let dir = self.root.join(PRIVATE_BUNDLES).join(id);
        // Another container's failed create or delete may remove the empty parent between our
        // mkdirs; try again then.
        let mut made = std::fs::create_dir_all(&dir);
        for _ in 0..3 {
            match &made {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    made = std::fs::create_dir_all(&dir);
                }
                _ => break,
            }
        }
        made.map_err(|e| EngineError::io("creating private bundle", &dir, e))?;
        let cfg = dir.join("config.json");
        if let Err(e) = spec.save(&cfg) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(EngineError::io(
                "writing private bundle",
                &cfg,
                std::io::Error::other(e.to_string()),
            ));
        }
        debug!(
            ?cgroup_path,
            "config.json has no cgroupsPath; using the default"
        );
        Ok((dir.clone(), Some(dir), cgroup_path))
    }

    fn remove_leftovers(&self, id: &str, private_bundle: Option<&Path>) {
        self.release_rootfs(id);
        if let Some(p) = private_bundle {
            let _ = std::fs::remove_dir_all(p);
            // The parent too, once empty: a refused create leaves the root as it found it.
            let _ = std::fs::remove_dir(self.root.join(PRIVATE_BUNDLES));
        }
        let dir = self.container_dir(id);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Undo the provided root filesystem of `id`, if any (a no-op for other containers).
    fn release_rootfs(&self, id: &str) {
        if let Some(p) = &self.rootfs {
            if let Err(e) = p.release(id, &self.root) {
                tracing::warn!("releasing the root filesystem of container {id}: {e}");
            }
        }
    }

    /// The config.json as it was at create; exec uses it, not the bundle's current one.
    fn save_spec(&self, id: &str, spec: &Spec) -> Result<()> {
        let path = self.container_dir(id).join(SPEC_FILE);
        spec.save(&path).map_err(|e| {
            EngineError::io("saving config", &path, std::io::Error::other(e.to_string()))
        })
    }

    pub fn saved_spec(&self, id: &str) -> Result<Spec> {
        let path = self.container_dir(id).join(SPEC_FILE);
        crate::validate::load_config(&path)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let _span = info_span!("container", id).entered();
        let _lock = self.lock(id, true)?;
        let mut c = self.load(id)?;
        if c.status() != ContainerStatus::Created {
            return Err(EngineError::wrong_status(
                id,
                c.status(),
                "start",
                "created",
            ));
        }
        c.start().map_err(|source| EngineError::Libcontainer {
            id: id.into(),
            action: "start",
            source: Box::new(source),
        })
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let _lock = self.lock(id, false)?;
        let c = self.load(id)?;
        let record = self.record(id)?;
        Ok(oci_state(&c, &record))
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            // No state root yet: no containers.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(EngineError::io("listing", &self.root, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // A container being created or deleted right now may be half there: skip it.
            let Ok(_lock) = self.lock(&name, false) else {
                continue;
            };
            if let (Ok(c), Ok(r)) = (self.load(&name), self.record(&name)) {
                out.push(oci_state(&c, &r));
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let _span = info_span!("container", id).entered();
        let _lock = self.lock(id, true)?;
        let mut c = self.load(id)?;
        match c.status() {
            ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused => {}
            ContainerStatus::Stopped if all => {}
            s => {
                return Err(EngineError::wrong_status(
                    id,
                    s,
                    "kill",
                    "created, running or paused",
                ))
            }
        }
        c.kill(signal, all)
            .map_err(|source| EngineError::Libcontainer {
                id: id.into(),
                action: "kill",
                source: Box::new(source),
            })
    }

    /// Delete a container. `force` kills a running one first; a missing container is not an
    /// error with `force` (containerd relies on that, as with runc).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let _span = info_span!("container", id).entered();
        let lock = match self.lock(id, true) {
            Ok(l) => Some(l),
            Err(EngineError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut c = match lock.as_ref().map(|_| self.load(id)).unwrap_or_else(|| {
            Err(EngineError::NotFound {
                id: id.into(),
                root: self.root.clone(),
            })
        }) {
            Ok(c) => c,
            Err(EngineError::NotFound { .. }) if force => {
                validate_id(id)?;
                self.remove_leftovers(id, Some(&self.root.join(PRIVATE_BUNDLES).join(id)));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if !force
            && matches!(
                c.status(),
                ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Creating
            )
        {
            return Err(EngineError::wrong_status(
                id,
                c.status(),
                "delete without --force",
                "stopped or created",
            ));
        }
        if c.status() == ContainerStatus::Paused {
            // A frozen cgroup delivers SIGKILL only once thawed.
            let _ = c.resume();
        }
        let record = self.record(id).ok();
        let private = record.as_ref().and_then(|r| r.private_bundle.clone());
        if force && c.status() != ContainerStatus::Stopped {
            if let Some(r) = &record {
                kill_and_drain(id, &mut c, &r.cgroup_path);
            }
        }
        c.delete(force)
            .map_err(|source| EngineError::Libcontainer {
                id: id.into(),
                action: "delete",
                source: Box::new(source),
            })?;
        if let Some(r) = &record {
            crate::namedcg::remove(&r.cgroup_path);
        }
        if let Some(p) = private {
            let _ = std::fs::remove_dir_all(p);
            // Fails (and stays) while other containers have private bundles.
            let _ = std::fs::remove_dir(self.root.join(PRIVATE_BUNDLES));
        }
        // Last: the container's processes are gone, so its root filesystem is no longer used.
        if let Some(p) = &self.rootfs {
            p.release(id, &self.root)
                .map_err(|source| EngineError::Rootfs {
                    id: id.into(),
                    action: "release",
                    source,
                })?;
        }
        Ok(())
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let _lock = self.lock(id, true)?;
        let mut c = self.load(id)?;
        if c.status() != ContainerStatus::Running {
            return Err(EngineError::wrong_status(
                id,
                c.status(),
                "pause",
                "running",
            ));
        }
        c.pause().map_err(|source| EngineError::Libcontainer {
            id: id.into(),
            action: "pause",
            source: Box::new(source),
        })
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.lock(id, true)?;
        let mut c = self.load(id)?;
        if c.status() != ContainerStatus::Paused {
            return Err(EngineError::wrong_status(
                id,
                c.status(),
                "resume",
                "paused",
            ));
        }
        c.resume().map_err(|source| EngineError::Libcontainer {
            id: id.into(),
            action: "resume",
            source: Box::new(source),
        })
    }
}

fn oci_state(c: &Container, record: &Record) -> OciState {
    let status = c.status();
    OciState {
        oci_version: "1.0.2".into(),
        id: c.id().to_string(),
        pid: match status {
            ContainerStatus::Stopped => 0,
            _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
        },
        status: crate::error::status_name(status).into(),
        bundle: record.bundle.clone(),
        rootfs: record.rootfs.clone(),
        created: c
            .created()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default(),
        owner: String::new(),
        annotations: c.state.annotations.clone().filter(|a| !a.is_empty()),
    }
}

/// Before a forced delete of a live container: SIGKILL to all its processes, then wait until
/// its cgroup is empty. libcontainer kills them too, but retries the cgroup's removal for only
/// about 190 ms; a tenant's init, whose exit tears down its overlay and syncs the volume, can
/// take longer under load, and the delete then failed with the cgroup left behind.
fn kill_and_drain(id: &str, c: &mut Container, cgroup_path: &Path) {
    let _ = c.kill(Signal::SIGKILL, true);
    let Ok(cgroup) = crate::cgroups::manager(id, cgroup_path) else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match libcgroups::common::CgroupManager::get_all_pids(&cgroup) {
            Ok(pids) if !pids.is_empty() => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
    tracing::warn!(
        container = id,
        "processes still in the cgroup 10 s after SIGKILL"
    );
}

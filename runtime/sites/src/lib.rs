//! Sites: one tenant's running stack, made of a tenant, an image, a profile, limits and a
//! domain (docs/sites.md).
//!
//! A site's record lives in `<state>/sites/<tenant>/<site>/site.json`; `start` writes its OCI
//! bundle from the record, prepares its data directory on the tenant's volume, launches its
//! shim (containerd-shim-sgrun-v1 in site mode) and drives it over the shim's socket with the
//! Task API, as containerd would: one supervision path with or without containerd. The shim
//! restarts a crashed stack by the site's restart policy and appends every event to the
//! site's `events.jsonl`; `status` reads the shim, the events and the container's state.

pub mod bundle;
pub mod error;
pub mod limits;
pub mod name;
pub mod record;
pub mod shim;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sgrun_profiles::Catalog;
use sgrun_tenants::Tenants;
use tracing::{info, info_span, warn};

pub use error::{Result, SiteError};
pub use limits::Limits;
pub use name::{check_domain, SiteRef};
pub use record::{Desired, Layout, RestartPolicy, SiteRecord};

use shim::{ShimClient, ShimRecord};

pub const DEFAULT_BACKOFF_MS: u64 = 1000;
/// How long `start` waits for the stack's first HTTP answer (a first start creates the
/// database: 1.4 s here; a loaded host with 50 sites takes far longer).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `stop` waits after SIGTERM before SIGKILL (MariaDB's clean shutdown).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the console log an error shows.
const LOG_TAIL_LINES: usize = 15;

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub site: SiteRef,
    pub image: String,
    pub profile: String,
    pub domain: String,
    pub limits: Limits,
    pub restart: RestartPolicy,
    pub restart_backoff_ms: u64,
}

/// What a site is doing, as `status` and `ls` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Serving: the shim runs and the stack's init is running.
    Running,
    /// The shim runs, the stack exited and the restart policy will start it again.
    Restarting,
    /// The shim runs, the stack exited and stays down (policy `no`, or `on-failure` after a
    /// clean exit).
    Exited,
    Paused,
    /// No shim: never started, stopped, or the host restarted.
    Stopped,
    /// The shim is gone but `site start` did not stop it: killed, or crashed. The stack may
    /// still run, unsupervised.
    ShimLost,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::Exited => "exited",
            State::Paused => "paused",
            State::Stopped => "stopped",
            State::ShimLost => "shim-lost",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub site: String,
    pub container: String,
    pub domain: String,
    pub image: String,
    pub profile: String,
    pub state: State,
    /// The operator's intent (start sets it, stop clears it).
    pub desired: Desired,
    pub pid: Option<u32>,
    pub shim_pid: Option<i32>,
    /// Seconds since the epoch when `site start` started the shim.
    pub since: Option<u64>,
    /// The last exit status of the stack (128+N for a signal), when it exited.
    pub last_exit: Option<u32>,
    /// Restarts by the shim since `site start`.
    pub restarts: u32,
    /// One line that says what happened, for people.
    pub detail: String,
    pub http_socket: PathBuf,
    pub limits: Limits,
}

pub struct Sites {
    layout: Layout,
    state_dir: PathBuf,
    runtime_root: PathBuf,
    sgrun: PathBuf,
    shim: PathBuf,
    profiles_dir: PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last `lines` lines of a log file (at most 64 KiB read), for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return "(no log yet)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 << 10)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Sites {
    /// `sgrun` is the binary the shim runs for every container operation; the shim is found
    /// beside it (`make install` puts both in one directory), else on PATH.
    pub fn new(state_dir: &Path, runtime_root: &Path, profiles_dir: &Path, sgrun: PathBuf) -> Self {
        let beside = sgrun.with_file_name("containerd-shim-sgrun-v1");
        let shim = if beside.is_file() {
            beside
        } else {
            PathBuf::from("containerd-shim-sgrun-v1")
        };
        Sites {
            layout: Layout::new(state_dir, runtime_root),
            state_dir: state_dir.into(),
            runtime_root: runtime_root.into(),
            sgrun,
            shim,
            profiles_dir: profiles_dir.into(),
        }
    }

    pub fn with_shim(mut self, shim: PathBuf) -> Self {
        self.shim = shim;
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn list(&self) -> Result<Vec<SiteRecord>> {
        self.layout.list()
    }

    pub fn load(&self, r: &SiteRef) -> Result<SiteRecord> {
        self.layout.load(r)
    }

    /// Checks everything a site names (tenant active, image a site image, profile known,
    /// domain free, limits enough) and records it. Nothing runs and nothing is written on
    /// the tenant's volume until the first start.
    pub fn create(&self, req: &CreateRequest, profiles: &Catalog) -> Result<SiteRecord> {
        let r = &req.site;
        let _span = info_span!("site", tenant = %r.tenant, site = %r.site).entered();
        check_domain(&req.domain, r)?;
        req.limits.check(&r.to_string())?;
        let _lock = self.layout.lock_registry()?;
        if let Ok(existing) = self.layout.load(r) {
            return Err(SiteError::Exists {
                site: r.to_string(),
                created: chrono::DateTime::from_timestamp(existing.created as i64, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            });
        }
        for other in self.layout.list()? {
            if other.domain == req.domain {
                return Err(SiteError::DomainTaken {
                    domain: req.domain.clone(),
                    owner: other.site_ref().to_string(),
                });
            }
        }
        Tenants::new(&self.state_dir).show(&r.tenant)?;
        let image = sgrun_images::Store::open(&self.state_dir)?.resolve(&req.image)?;
        bundle::image_ids(&r.to_string(), &req.image, &image.rootfs)?;
        profiles
            .resolve(&req.profile)
            .map_err(|e| SiteError::UnknownProfile {
                site: r.to_string(),
                profile: req.profile.clone(),
                reason: e.to_string(),
            })?;
        let rec = SiteRecord {
            tenant: r.tenant.clone(),
            site: r.site.clone(),
            image: req.image.clone(),
            profile: req.profile.clone(),
            domain: req.domain.clone(),
            limits: req.limits,
            restart: req.restart,
            restart_backoff_ms: req.restart_backoff_ms,
            created: now(),
            desired: Desired::Stopped,
        };
        self.layout.save(&rec)?;
        info!(domain = %rec.domain, image = %rec.image, profile = %rec.profile, "site created");
        Ok(rec)
    }

    fn shim_record(&self, r: &SiteRef) -> Result<Option<ShimRecord>> {
        record::read_json(&self.layout.shim_record(r))
    }

    /// The shim of a started site, if it still answers.
    fn connect(&self, r: &SiteRef) -> Result<Option<(ShimRecord, ShimClient)>> {
        let Some(rec) = self.shim_record(r)? else {
            return Ok(None);
        };
        match ShimClient::connect(&r.to_string(), &r.container_id(), &rec.address) {
            Ok(c) => Ok(Some((rec, c))),
            Err(_) => Ok(None),
        }
    }

    /// Starts the site and waits until its stack answers HTTP on its socket. A stack that
    /// fails to come up is stopped again and the error shows the end of its log; nothing
    /// is left running.
    pub fn start(&self, r: &SiteRef, timeout: Duration) -> Result<Status> {
        let _span = info_span!("site", tenant = %r.tenant, site = %r.site).entered();
        let _lock = self.layout.lock_site(r)?;
        let mut rec = self.layout.load(r)?;
        if let Some((shim_rec, client)) = self.connect(r)? {
            let st = client.state()?;
            let status = st.status.enum_value_or_default();
            if status == containerd_shim_protos::api::Status::RUNNING
                || status == containerd_shim_protos::api::Status::PAUSED
            {
                return Err(SiteError::AlreadyStarted {
                    site: r.to_string(),
                    shim_pid: shim_rec.shim_pid,
                    pid: st.pid,
                });
            }
            // a shim whose stack exited and stays down: end it, then start afresh
            self.end_shim(r, &client, Duration::from_secs(1))?;
        }
        self.clean_leftovers(r)?;

        let started = Instant::now();
        let result = self.launch(r, &rec, timeout);
        match result {
            Ok(()) => {
                rec.desired = Desired::Running;
                self.layout.save(&rec)?;
                info!(ms = started.elapsed().as_millis() as u64, "site started");
                self.status(r)
            }
            Err(e) => {
                // undo: the shim and the container, then the run directory
                if let Ok(Some((_, client))) = self.connect(r) {
                    let _ = self.end_shim(r, &client, Duration::from_secs(5));
                }
                let _ = self.clean_leftovers(r);
                Err(e)
            }
        }
    }

    fn launch(&self, r: &SiteRef, rec: &SiteRecord, timeout: Duration) -> Result<()> {
        let site = r.to_string();
        let id = r.container_id();
        let (tenant, volume) = Tenants::new(&self.state_dir).ensure_mounted(&r.tenant)?;
        let image = sgrun_images::Store::open(&self.state_dir)?.resolve(&rec.image)?;
        let ids = bundle::image_ids(&site, &rec.image, &image.rootfs)?;
        let uid_base = u32::try_from(tenant.uid_base).map_err(|_| SiteError::InvalidLimit {
            what: "tenant uid base",
            input: tenant.uid_base.to_string(),
            reason: "above 2^32".into(),
        })?;
        bundle::prepare_data(&volume, &r.site, uid_base, ids)?;

        // The run directory chain is 0711: the front proxy's workers (www-data) traverse it
        // to the HTTP socket, and nobody lists it. The HTTP directory belongs to the
        // tenant's root: nginx in the site creates its socket there.
        record::mkdir_p(&self.runtime_root, 0o711)?;
        for dir in [
            self.layout.run.clone(),
            self.layout.run.join(&r.tenant),
            self.layout.run_dir(r),
        ] {
            record::mkdir_p(&dir, 0o711)?;
            set_mode(&dir, 0o711)?;
        }
        set_mode(&self.runtime_root, 0o711)?;
        let http = self.layout.http_dir(r);
        record::mkdir_p(&http, 0o755)?;
        nix::unistd::chown(
            &http,
            Some(nix::unistd::Uid::from_raw(uid_base)),
            Some(nix::unistd::Gid::from_raw(uid_base)),
        )
        .map_err(|e| SiteError::io("chown", &http)(e.into()))?;

        let bundle_dir = self.layout.bundle(r);
        record::mkdir_p(&bundle_dir, 0o700)?;
        let config = bundle::config(&self.layout, rec, &image.rootfs, ids);
        let config_path = bundle_dir.join("config.json");
        sgrun_tenants::registry::write_atomic(&config_path, &config)?;

        let env = [
            ("SGRUN_STATE_DIR", self.state_dir.clone()),
            ("SGRUN_PROFILES_DIR", self.profiles_dir.clone()),
        ];
        let events = self.layout.events(r);
        let address = shim::launch(&shim::Launch {
            site: &site,
            container_id: &id,
            shim_binary: &self.shim,
            bundle: &bundle_dir,
            run_dir: &self.layout.run_dir(r),
            events: &events,
            env: &env,
        })?;
        let shim_pid = shim::peer_pid(&address).unwrap_or(0);
        sgrun_tenants::registry::write_atomic(
            &self.layout.shim_record(r),
            &ShimRecord {
                address: address.clone(),
                shim_pid,
                started: now(),
            },
        )?;
        let client = ShimClient::connect(&site, &id, &address)?;
        let log = self.layout.console_log(r);
        let fail = |reason: String| SiteError::StartFailed {
            site: site.clone(),
            reason,
            log: log.clone(),
            tail: log_tail(&log, LOG_TAIL_LINES),
        };
        client
            .create(&bundle_dir, &log, &self.sgrun, &self.runtime_root)
            .map_err(|e| fail(e.to_string()))?;
        client.start().map_err(|e| fail(e.to_string()))?;
        self.wait_http(r, rec, &client, timeout).map_err(fail)
    }

    /// Until the stack answers an HTTP request on its socket. Fails as soon as the stack
    /// exits (the shim may be about to restart it, but a site that cannot start once is
    /// reported now, not retried forever).
    fn wait_http(
        &self,
        r: &SiteRef,
        rec: &SiteRecord,
        client: &ShimClient,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        let deadline = Instant::now() + timeout;
        let sock = self.layout.http_socket(r);
        loop {
            if http_answers(&sock, &rec.domain) {
                return Ok(());
            }
            let st = client.state().map_err(|e| e.to_string())?;
            if st.status.enum_value_or_default() == containerd_shim_protos::api::Status::STOPPED {
                return Err(format!(
                    "its stack exited with status {} during start-up",
                    st.exit_status
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no HTTP answer on {} within {} s",
                    sock.display(),
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, SIGKILL after `timeout`, Delete, Shutdown: the shim's Kill cancels any
    /// restart the policy had planned, so the order cannot race a restart.
    fn end_shim(&self, r: &SiteRef, client: &ShimClient, timeout: Duration) -> Result<()> {
        // a Kill that fails because the init exited at that moment is a stop: the state says
        if let Err(e) = client.kill(libc::SIGTERM, false) {
            if !client.wait_stopped(Duration::ZERO)? {
                return Err(e);
            }
        }
        if !client.wait_stopped(timeout)? {
            warn!(
                timeout_s = timeout.as_secs(),
                "stack did not stop after SIGTERM: SIGKILL"
            );
            client.kill(libc::SIGKILL, true)?;
            if !client.wait_stopped(Duration::from_secs(10))? {
                return Err(SiteError::Shim {
                    site: r.to_string(),
                    call: "Kill",
                    reason: "the stack survived SIGKILL for 10 s".into(),
                });
            }
        }
        client.delete()?;
        client.shutdown();
        // the shim exits once its container is deleted; wait for it so that a following
        // start does not find its socket half-gone
        if let Some(rec) = self.shim_record(r)? {
            let deadline = Instant::now() + Duration::from_secs(5);
            while shim::pid_alive(rec.shim_pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// After a shim that is gone (killed, host restart): its container, if any, and the
    /// run directory. The tenant's data is never touched.
    fn clean_leftovers(&self, r: &SiteRef) -> Result<()> {
        let id = r.container_id();
        // Only a container that exists (its state directory under --root) needs a delete:
        // every start and stop comes here, and an sgrun process costs milliseconds.
        if self.runtime_root.join(&id).exists() {
            self.delete_container(&id)?;
        }
        let run = self.layout.run_dir(r);
        match std::fs::remove_dir_all(&run) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SiteError::io("remove", &run)(e)),
        }
    }

    fn delete_container(&self, id: &str) -> Result<()> {
        let out = std::process::Command::new(&self.sgrun)
            .arg("--root")
            .arg(&self.runtime_root)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["delete", "--force", id])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(SiteError::io("run", &self.sgrun))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            && !stderr.contains("does not exist")
            && !stderr.contains("not found")
        {
            warn!(container = %id, error = %stderr.trim(), "delete of a leftover container");
        }
        Ok(())
    }

    /// Stops the site: SIGTERM to its stack, SIGKILL after `timeout`, then the shim ends.
    pub fn stop(&self, r: &SiteRef, timeout: Duration) -> Result<Status> {
        let _span = info_span!("site", tenant = %r.tenant, site = %r.site).entered();
        let _lock = self.layout.lock_site(r)?;
        let mut rec = self.layout.load(r)?;
        let was_running = match self.connect(r)? {
            Some((_, client)) => {
                self.end_shim(r, &client, timeout)?;
                true
            }
            None => {
                // No shim (killed): its stack may still run, unsupervised. Stop it as the
                // shim would, SIGTERM first, so MariaDB shuts down cleanly.
                self.stop_unsupervised(&r.container_id(), timeout);
                self.shim_record(r)?.is_some()
            }
        };
        self.clean_leftovers(r)?;
        rec.desired = Desired::Stopped;
        self.layout.save(&rec)?;
        if !was_running {
            info!("site was not running");
        }
        self.status(r)
    }

    pub fn status(&self, r: &SiteRef) -> Result<Status> {
        let rec = self.layout.load(r)?;
        let events = self.layout.events(r);
        let shim_rec = self.shim_record(r)?;
        let (restarts, last_exit_event) =
            event_summary(&events, shim_rec.as_ref().map(|s| s.started));
        let mut st = Status {
            site: r.to_string(),
            container: r.container_id(),
            domain: rec.domain.clone(),
            image: rec.image.clone(),
            profile: rec.profile.clone(),
            state: State::Stopped,
            desired: rec.desired,
            pid: None,
            shim_pid: shim_rec.as_ref().map(|s| s.shim_pid),
            since: shim_rec.as_ref().map(|s| s.started),
            last_exit: last_exit_event,
            restarts,
            detail: String::new(),
            http_socket: self.layout.http_socket(r),
            limits: rec.limits,
        };
        let Some(shim_rec) = shim_rec else {
            st.detail = match (rec.desired, last_exit_event) {
                (Desired::Running, _) => {
                    "not running, but it should be (host restarted?): `sgrun site start --all`"
                        .into()
                }
                (Desired::Stopped, Some(code)) => format!("stopped (last exit status {code})"),
                (Desired::Stopped, None) => "stopped".into(),
            };
            return Ok(st);
        };
        match self.connect(r)? {
            Some((_, client)) => {
                let s = client.state()?;
                use containerd_shim_protos::api::Status as T;
                st.pid = (s.pid != 0).then_some(s.pid);
                match s.status.enum_value_or_default() {
                    T::RUNNING | T::CREATED => {
                        st.state = State::Running;
                        st.detail = if restarts > 0 {
                            format!("running; restarted {restarts} time(s) after crashes")
                        } else {
                            "running".into()
                        };
                    }
                    T::PAUSED | T::PAUSING => {
                        st.state = State::Paused;
                        st.detail = "paused".into();
                    }
                    _ => {
                        st.last_exit = Some(s.exit_status);
                        let again = match rec.restart {
                            RestartPolicy::Always => true,
                            RestartPolicy::OnFailure => s.exit_status != 0,
                            RestartPolicy::No => false,
                        };
                        if again {
                            st.state = State::Restarting;
                            st.detail = format!(
                                "stack exited with status {}; the shim restarts it (policy {}, back-off)",
                                s.exit_status,
                                rec.restart.as_str()
                            );
                        } else {
                            st.state = State::Exited;
                            st.detail = format!(
                                "stack exited with status {} and stays down (policy {}): `sgrun site restart {r}`",
                                s.exit_status,
                                rec.restart.as_str()
                            );
                        }
                    }
                }
            }
            None => {
                st.state = State::ShimLost;
                let container = self.container_state(&r.container_id());
                st.pid = container.as_ref().and_then(|(_, pid)| *pid);
                st.detail = format!(
                    "its shim (pid {}) is gone{}; the stack is {}: `sgrun site restart {r}` supervises it again",
                    shim_rec.shim_pid,
                    if shim::pid_alive(shim_rec.shim_pid) { " (not answering)" } else { " (killed or crashed)" },
                    match &container {
                        Some((s, Some(pid))) => format!("{s} (pid {pid}), unsupervised"),
                        Some((s, None)) => s.clone(),
                        None => "gone".into(),
                    }
                );
            }
        }
        Ok(st)
    }

    /// SIGTERM to a running container's init through sgrun itself, and up to `timeout` for
    /// it to stop; the forced delete that follows does the rest.
    fn stop_unsupervised(&self, id: &str, timeout: Duration) {
        if !matches!(self.container_state(id), Some((s, _)) if s == "running") {
            return;
        }
        warn!(container = id, "stopping a stack that has no shim");
        let _ = std::process::Command::new(&self.sgrun)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["kill", id, "TERM"])
            .stdin(std::process::Stdio::null())
            .output();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline
            && matches!(self.container_state(id), Some((s, _)) if s == "running")
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `sgrun state` of the site's container: its status and pid, if it exists.
    fn container_state(&self, id: &str) -> Option<(String, Option<u32>)> {
        let out = std::process::Command::new(&self.sgrun)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["state", id])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let status = v["status"].as_str().unwrap_or("unknown").to_string();
        let pid = v["pid"].as_u64().filter(|p| *p != 0).map(|p| p as u32);
        Some((status, pid))
    }

    /// Removes the site: refused while it runs unless `force` (which stops it first). Its
    /// record, bundle, logs and its root filesystem's upper layer go; its data on the
    /// tenant's volume (`sites/<site>`: database, uploads) stays unless `purge`.
    pub fn remove(&self, r: &SiteRef, force: bool, purge: bool) -> Result<()> {
        let _span = info_span!("site", tenant = %r.tenant, site = %r.site).entered();
        let st = self.status(r)?;
        if st.state != State::Stopped {
            if !force {
                return Err(SiteError::Running {
                    site: r.to_string(),
                });
            }
            self.stop(r, DEFAULT_STOP_TIMEOUT)?;
        }
        let _site_lock = self.layout.lock_site(r)?;
        let _lock = self.layout.lock_registry()?;
        let rec = self.layout.load(r)?;
        // the volume first: a failure there leaves the record, so `rm` can be run again
        let tenants = Tenants::new(&self.state_dir);
        if tenants.show(&rec.tenant).is_ok() {
            if let Ok((_, volume)) = tenants.ensure_mounted(&rec.tenant) {
                let upper = volume.join(".sgrun/rootfs").join(&rec.site);
                remove_tree(&upper)?;
                if purge {
                    remove_tree(&volume.join("sites").join(&rec.site))?;
                }
            }
        }
        remove_tree(&self.layout.site_dir(r))?;
        let _ = std::fs::remove_dir(self.layout.state.join(&r.tenant));
        info!(purge, "site removed");
        Ok(())
    }
}

fn remove_tree(path: &Path) -> Result<()> {
    // std's remove_dir_all never follows a symlink inside the tree (it works fd-relative)
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SiteError::io("remove", path)(e)),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(SiteError::io("chmod", path))
}

/// Sends one HTTP request on the site's socket; true if a status line comes back.
fn http_answers(sock: &Path, domain: &str) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(format!("HEAD / HTTP/1.0\r\nHost: {domain}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 9 && buf.starts_with(b"HTTP/1."))
}

/// From the events log: restarts since the shim started at `since` (seconds), and the last
/// exit status recorded.
fn event_summary(path: &Path, since: Option<u64>) -> (u32, Option<u32>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, None);
    };
    let mut restarts = 0;
    let mut last_exit = None;
    let mut counting = since.is_some();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["topic"].as_str().unwrap_or("") {
            "/sgrun/shim-start" => {
                restarts = 0;
                counting = true;
            }
            "/sgrun/restart" if counting => restarts += 1,
            "/tasks/exit" => {
                last_exit = v["exit_status"].as_u64().map(|c| c as u32);
            }
            _ => {}
        }
    }
    (restarts, last_exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_count_from_the_last_shim_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let lines = [
            r#"{"topic":"/sgrun/shim-start","pid":1}"#,
            r#"{"topic":"/sgrun/restart","attempt":1}"#,
            r#"{"topic":"/tasks/exit","exit_status":137}"#,
            r#"{"topic":"/sgrun/shim-start","pid":2}"#,
            r#"{"topic":"/tasks/exit","exit_status":1}"#,
            r#"{"topic":"/sgrun/restart","attempt":1}"#,
            r#"{"topic":"/sgrun/restart","attempt":2}"#,
            "not json",
        ];
        std::fs::write(&p, lines.join("\n")).unwrap();
        assert_eq!(event_summary(&p, Some(0)), (2, Some(1)));
        assert_eq!(event_summary(&dir.path().join("none"), None), (0, None));
    }

    #[test]
    fn log_tail_takes_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p, 2), "c\nd");
        assert_eq!(log_tail(&dir.path().join("none"), 2), "(no log yet)");
    }
}

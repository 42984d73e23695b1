//! sgrun proxy: the front door of the sites. Each WordPress site serves HTTP on a unix socket
//! in its host directory; this crate runs Debian's nginx with a configuration generated from
//! the site list, routing by Host header to each site's socket (docs/proxy.md).
//!
//! Three promises:
//! - nothing from a route reaches nginx.conf unless it passed [`validate`]: a domain or a
//!   path cannot add a directive;
//! - one bad site never breaks the proxy: a route nginx refuses is dropped (reported in
//!   [`Applied::rejected`] with nginx's message) and the others are applied; only a
//!   configuration that passed `nginx -t` replaces the live one;
//! - start, reload and stop are serialised by a flock in the state directory and every file is
//!   replaced atomically, so concurrent sgrun commands and crashes leave a consistent state.
//!
//! Files (state_dir is persistent, run_dir is on tmpfs):
//!
//! ```text
//! <state_dir>/nginx.conf        the live configuration (what `status` reports)
//! <state_dir>/nginx.conf.new    trial configurations for `nginx -t`, then renamed into place
//! <state_dir>/lock              flock'ed by start, reload and stop
//! <state_dir>/logs/error.log    nginx's error log
//! <state_dir>/logs/access.log   one line per request (host, status, upstream status)
//! <run_dir>/nginx.pid           the master's pid
//! <run_dir>/nginx-test.pid      what `nginx -t` truncates (it empties the pid file it names)
//! <run_dir>/tmp/                nginx's temp paths (request bodies)
//! ```

pub mod error;
mod fsutil;
mod nginx;
mod render;
pub mod validate;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, info_span, warn};

pub use error::{ProxyError, Result};
pub use validate::{validate_domain, validate_route, validate_socket_path};

/// The port of the default listen addresses.
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sgrun/proxy";
pub const DEFAULT_RUN_DIR: &str = "/run/sgrun/proxy";
pub const DEFAULT_NGINX: &str = "/usr/sbin/nginx";
/// How long `stop` waits for a graceful shutdown (QUIT) before TERM and KILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `reload` waits for the master to start a worker with the new configuration.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
/// How long `start` waits for the daemonised master to write its pid file.
const PID_FILE_WAIT: Duration = Duration::from_secs(5);

/// One site's route: requests whose Host is `domain` go to the HTTP server on `socket`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub domain: String,
    pub socket: PathBuf,
    /// "tenant/site": for comments, logs and errors only.
    pub site: String,
}

impl Route {
    pub fn new(
        domain: impl Into<String>,
        socket: impl Into<PathBuf>,
        site: impl Into<String>,
    ) -> Self {
        Route {
            domain: domain.into(),
            socket: socket.into(),
            site: site.into(),
        }
    }
}

/// Where the proxy keeps its files and what it listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    pub listen: Vec<SocketAddr>,
    /// Persistent: configuration, lock, logs. Usually `<state>/proxy`.
    pub state_dir: PathBuf,
    /// On tmpfs: pid file, temp paths. Must be searchable by www-data (the workers).
    pub run_dir: PathBuf,
    pub nginx: PathBuf,
    /// The directory every upstream socket lives beneath (sgrun's sites: `<root>/.sites`).
    /// nginx runs in a mount namespace of its own where this directory is mounted
    /// `nosymfollow`: a tenant that swaps its site's socket for a symlink after the routes
    /// were checked (the socket's directory is the tenant's) gets a 502, never another
    /// socket. `None`: nginx follows symlinks there (only for tests that show the hole).
    #[serde(default)]
    pub socket_root: Option<PathBuf>,
}

impl ProxyConfig {
    /// The default paths and binary with these directories.
    pub fn new(state_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        ProxyConfig {
            listen: Self::default_listen(DEFAULT_PORT),
            state_dir: state_dir.into(),
            run_dir: run_dir.into(),
            nginx: PathBuf::from(DEFAULT_NGINX),
            socket_root: None,
        }
    }

    /// 127.0.0.1:`port`, and [::1]:`port` if this host has an IPv6 loopback (a kernel booted
    /// with ipv6.disable=1, or a container without it, would make nginx fail to bind).
    pub fn default_listen(port: u16) -> Vec<SocketAddr> {
        let mut listen = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        if ipv6_loopback_available() {
            listen.push(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        }
        listen
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig::new(DEFAULT_STATE_DIR, DEFAULT_RUN_DIR)
    }
}

/// Binding ::1 is the one test that covers every way IPv6 can be missing.
pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// What a start or reload put into effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The routes in the live configuration, in the order given.
    pub routes: Vec<Route>,
    /// Routes left out, each with the reason: the validation error, or nginx's own message.
    pub rejected: Vec<(Route, String)>,
}

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub running: bool,
    /// The nginx master.
    pub pid: Option<i32>,
    pub workers: Vec<i32>,
    /// From the live configuration file (in effect when `running`).
    pub listen: Vec<SocketAddr>,
    /// From the live configuration file (in effect when `running`).
    pub routes: Vec<Route>,
    pub config: PathBuf,
    pub pid_file: PathBuf,
    pub error_log: PathBuf,
    pub access_log: PathBuf,
}

/// Every path the proxy uses, derived once from the two directories.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub conf: PathBuf,
    pub conf_new: PathBuf,
    pub lock: PathBuf,
    pub logs_dir: PathBuf,
    pub error_log: PathBuf,
    pub access_log: PathBuf,
    pub pid_file: PathBuf,
    pub test_pid_file: PathBuf,
    pub start_err: PathBuf,
    pub temp_dir: PathBuf,
}

impl Layout {
    pub(crate) fn new(state_dir: &Path, run_dir: &Path) -> Self {
        let logs_dir = state_dir.join("logs");
        Layout {
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            conf: state_dir.join("nginx.conf"),
            conf_new: state_dir.join("nginx.conf.new"),
            lock: state_dir.join("lock"),
            error_log: logs_dir.join("error.log"),
            access_log: logs_dir.join("access.log"),
            logs_dir,
            pid_file: run_dir.join("nginx.pid"),
            // `nginx -t` truncates the pid file its configuration names; trial configurations
            // name this one so that the live master's pid file is never emptied by a check.
            test_pid_file: run_dir.join("nginx-test.pid"),
            start_err: run_dir.join("nginx-start.err"),
            temp_dir: run_dir.join("tmp"),
        }
    }
}

/// Test-only: break chosen routes' blocks so that nginx itself refuses them. Not in the docs;
/// the text it adds is a fixed unknown directive, never caller input.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Domains whose server block gets [`render::BROKEN_DIRECTIVE`].
    pub broken_domains: Vec<String>,
    /// Ignore the line numbers in nginx's errors, so the bisection has to find the culprits.
    pub ignore_line_numbers: bool,
}

/// The front proxy of one host (one state directory).
#[derive(Debug, Clone)]
pub struct Proxy {
    cfg: ProxyConfig,
    layout: Layout,
    hooks: TestHooks,
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Self {
        let layout = Layout::new(&cfg.state_dir, &cfg.run_dir);
        Proxy {
            cfg,
            layout,
            hooks: TestHooks::default(),
        }
    }

    #[doc(hidden)]
    pub fn test_hooks(&mut self) -> &mut TestHooks {
        &mut self.hooks
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// The live nginx.conf.
    pub fn config_path(&self) -> &Path {
        &self.layout.conf
    }

    pub fn pid_file(&self) -> &Path {
        &self.layout.pid_file
    }

    pub fn error_log(&self) -> &Path {
        &self.layout.error_log
    }

    pub fn access_log(&self) -> &Path {
        &self.layout.access_log
    }

    /// Validate `routes`, write and check the configuration, and start nginx with it.
    /// Fails if this proxy already runs (naming its pid), or with nginx's own message if nginx
    /// does not start (port in use, ...); a failed start leaves no process and no pid file.
    pub fn start(&self, routes: &[Route]) -> Result<Applied> {
        let span = info_span!("proxy_start", state_dir = %self.cfg.state_dir.display(), routes = routes.len());
        let _enter = span.enter();
        let nginx = self.preflight()?;
        let _lock = fsutil::lock(&self.layout.lock)?;
        if let Some(pid) = self.running_master(&nginx) {
            return Err(ProxyError::AlreadyRunning {
                pid,
                pid_file: self.layout.pid_file.clone(),
            });
        }
        // A pid file without our master behind it is left from a crash or a reboot.
        fsutil::remove_if_present(&self.layout.pid_file)?;
        let applied = self.apply(&nginx, routes)?;
        let pid = self.launch(&nginx)?;
        info!(
            pid,
            routes = applied.routes.len(),
            rejected = applied.rejected.len(),
            "proxy started"
        );
        Ok(applied)
    }

    /// Validate `routes`, check the new configuration, swap it in and make the running master
    /// load it (SIGHUP, as `nginx -s reload`). Requests in flight finish on the old workers.
    pub fn reload(&self, routes: &[Route]) -> Result<Applied> {
        let span = info_span!("proxy_reload", state_dir = %self.cfg.state_dir.display(), routes = routes.len());
        let _enter = span.enter();
        let nginx = self.preflight()?;
        let _lock = fsutil::lock(&self.layout.lock)?;
        let pid = self
            .running_master(&nginx)
            .ok_or_else(|| ProxyError::NotRunning {
                pid_file: self.layout.pid_file.clone(),
            })?;
        let previous = fs::read(&self.layout.conf).ok();
        let old_workers: HashSet<i32> = nginx::children(pid).into_iter().collect();
        let applied = self.apply(&nginx, routes)?;
        let log_len = fs::metadata(&self.layout.error_log).map_or(0, |m| m.len());
        nginx::signal(pid, Signal::SIGHUP)?;
        // The master answers HUP by starting new workers if, and only if, it could load the
        // file; on failure (a new listen address taken, say) it logs an [emerg] and keeps the
        // old ones. A new worker is the proof of success, the [emerg] the early proof of
        // failure.
        let mut failed = false;
        let loaded = nginx::wait_for(RELOAD_WAIT, || {
            failed = fsutil::read_from(&self.layout.error_log, log_len).contains("[emerg]");
            failed
                || nginx::children(pid)
                    .iter()
                    .any(|w| !old_workers.contains(w))
        }) && !failed;
        if !loaded {
            if let Some(old) = previous {
                fsutil::write_atomic(&self.layout.conf, &self.layout.conf_new, &old, 0o644)?;
            }
            let log = fsutil::read_from(&self.layout.error_log, log_len);
            return Err(ProxyError::ReloadFailed {
                pid,
                config: self.layout.conf.clone(),
                error_log: self.layout.error_log.clone(),
                log_tail: if log.is_empty() {
                    format!(
                        "(nothing new; no new worker within {} ms)",
                        RELOAD_WAIT.as_millis()
                    )
                } else {
                    log
                },
            });
        }
        // The old workers finish their requests, but stop accepting first: each retitles
        // itself "shutting down" just before it closes the listening sockets (nginx's master
        // tells them 100 ms after the new workers start). Waiting for that means that once
        // reload returns, new connections see the new routes.
        let switched = nginx::wait_for(Duration::from_secs(3), || {
            nginx::children(pid)
                .iter()
                .filter(|w| old_workers.contains(w))
                .all(|w| nginx::title(*w).contains("shutting down"))
        });
        if !switched {
            warn!(
                pid,
                "old workers not yet shutting down 3 s after the new ones started"
            );
        }
        info!(
            pid,
            routes = applied.routes.len(),
            rejected = applied.rejected.len(),
            "proxy reloaded"
        );
        Ok(applied)
    }

    /// Stop nginx: QUIT (finish requests in flight), after [`STOP_GRACE`] TERM, then KILL the
    /// master and its workers. Removes the pid file. Stopping a proxy that does not run is not
    /// an error (it removes a stale pid file), so that `stop` can always be run to clean up.
    pub fn stop(&self) -> Result<()> {
        let span = info_span!("proxy_stop", state_dir = %self.cfg.state_dir.display());
        let _enter = span.enter();
        let nginx = self.nginx_path();
        fsutil::ensure_dir(&self.cfg.state_dir, 0o700)?;
        let _lock = fsutil::lock(&self.layout.lock)?;
        let Some(pid) = self.running_master(&nginx) else {
            debug!("not running");
            return fsutil::remove_if_present(&self.layout.pid_file);
        };
        let mut workers: HashSet<i32> = nginx::children(pid).into_iter().collect();
        nginx::signal(pid, Signal::SIGQUIT)?;
        let mut gone = nginx::wait_for(STOP_GRACE, || !nginx::is_alive(pid));
        if !gone {
            warn!(pid, "no graceful exit after QUIT; sending TERM");
            workers.extend(nginx::children(pid));
            nginx::signal(pid, Signal::SIGTERM)?;
            gone = nginx::wait_for(Duration::from_secs(3), || !nginx::is_alive(pid));
        }
        if !gone {
            warn!(pid, "still alive after TERM; sending KILL");
            workers.extend(nginx::children(pid));
            nginx::signal(pid, Signal::SIGKILL)?;
            gone = nginx::wait_for(Duration::from_secs(2), || !nginx::is_alive(pid));
        }
        // A master killed by KILL cannot stop its workers, which would go on holding the ports.
        for w in workers {
            if nginx::is_alive(w) {
                warn!(worker = w, "worker outlived its master; sending KILL");
                nginx::signal(w, Signal::SIGKILL)?;
            }
        }
        if !gone {
            return Err(ProxyError::StopFailed { pid });
        }
        fsutil::remove_if_present(&self.layout.pid_file)?;
        info!(pid, "proxy stopped");
        Ok(())
    }

    /// Whether the proxy runs, and what the live configuration routes. Reads only; takes no
    /// lock, so it answers while a slow stop holds it.
    pub fn status(&self) -> Result<Status> {
        let nginx = self.nginx_path();
        let pid = self.running_master(&nginx);
        let (listen, routes) = match fs::read_to_string(&self.layout.conf) {
            Ok(text) => render::parse_applied(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
            Err(e) => return Err(ProxyError::io("read", &self.layout.conf)(e)),
        };
        Ok(Status {
            running: pid.is_some(),
            pid,
            workers: pid.map(nginx::children).unwrap_or_default(),
            listen,
            routes,
            config: self.layout.conf.clone(),
            pid_file: self.layout.pid_file.clone(),
            error_log: self.layout.error_log.clone(),
            access_log: self.layout.access_log.clone(),
        })
    }

    fn nginx_path(&self) -> PathBuf {
        fs::canonicalize(&self.cfg.nginx).unwrap_or_else(|_| self.cfg.nginx.clone())
    }

    /// Check the settings that go into nginx.conf, find nginx, and make the directories.
    fn preflight(&self) -> Result<PathBuf> {
        validate::validate_setting_dir("state directory", &self.cfg.state_dir)?;
        validate::validate_setting_dir("run directory", &self.cfg.run_dir)?;
        validate::validate_listen(&self.cfg.listen)?;
        let nginx =
            fs::canonicalize(&self.cfg.nginx).map_err(|source| ProxyError::NginxMissing {
                path: self.cfg.nginx.clone(),
                source,
            })?;
        fsutil::ensure_dir(&self.layout.state_dir, 0o700)?;
        fsutil::ensure_dir(&self.layout.logs_dir, 0o750)?;
        fsutil::ensure_dir(&self.layout.run_dir, 0o755)?;
        fsutil::ensure_dir(&self.layout.temp_dir, 0o755)?;
        self.check_run_dir_searchable()?;
        Ok(nginx)
    }

    /// The workers (www-data) create request-body temp files under run_dir; if a directory
    /// above it is closed to them, uploads fail with a 500 only once a body outgrows memory.
    /// Better to refuse at start.
    fn check_run_dir_searchable(&self) -> Result<()> {
        for dir in self.layout.temp_dir.ancestors() {
            let meta = fs::metadata(dir).map_err(ProxyError::io("stat", dir))?;
            if meta.permissions().mode() & 0o001 == 0 {
                return Err(ProxyError::InvalidSetting {
                    what: "run directory",
                    path: self.cfg.run_dir.clone(),
                    reason: format!(
                        "cannot be reached by the nginx workers (www-data): {} has mode {:o} without search permission for others; chmod o+x it",
                        dir.display(),
                        meta.permissions().mode() & 0o7777
                    ),
                });
            }
        }
        Ok(())
    }

    /// The pid of our running master: from the pid file, or by its title if the pid file is
    /// missing or stale.
    fn running_master(&self, nginx: &Path) -> Option<i32> {
        let conf = &self.layout.conf;
        nginx::read_pid(&self.layout.pid_file)
            .filter(|pid| nginx::is_our_master(*pid, nginx, conf))
            .or_else(|| nginx::find_our_master(nginx, conf))
    }

    /// Validate, prune what nginx refuses, and write the live configuration.
    fn apply(&self, nginx: &Path, routes: &[Route]) -> Result<Applied> {
        let mut rejected = Vec::new();
        let mut valid = Vec::with_capacity(routes.len());
        let mut owners: HashMap<&str, &str> = HashMap::new();
        for route in routes {
            if let Err(e) = validate::validate_route(route) {
                warn!(site = %route.site.escape_debug(), error = %e, "route rejected");
                rejected.push((route.clone(), e.to_string()));
                continue;
            }
            if let Some(first) = owners.get(route.domain.as_str()) {
                let e = ProxyError::DuplicateDomain {
                    domain: route.domain.clone(),
                    site: route.site.clone(),
                    first_site: first.to_string(),
                };
                warn!(site = %route.site, error = %e, "route rejected");
                rejected.push((route.clone(), e.to_string()));
                continue;
            }
            owners.insert(&route.domain, &route.site);
            valid.push(route.clone());
        }
        let accepted = self.prune(nginx, valid, &mut rejected)?;
        let text = render::render(
            &self.layout,
            &self.cfg.listen,
            &accepted,
            &self.layout.pid_file,
            &self.hooks.broken_domains,
        )
        .text;
        fsutil::write_atomic(
            &self.layout.conf,
            &self.layout.conf_new,
            text.as_bytes(),
            0o644,
        )?;
        Ok(Applied {
            routes: accepted,
            rejected,
        })
    }

    /// `nginx -t` on the trial configuration with these routes. The trial differs from what
    /// becomes live in one line only, the pid file (see [`Layout::test_pid_file`]).
    fn trial(&self, nginx: &Path, routes: &[Route]) -> Result<(nginx::TestOutcome, Option<usize>)> {
        let rendered = render::render(
            &self.layout,
            &self.cfg.listen,
            routes,
            &self.layout.test_pid_file,
            &self.hooks.broken_domains,
        );
        fsutil::write_file(
            &self.layout.conf_new,
            rendered.text.as_bytes(),
            0o644,
            false,
        )?;
        let out = nginx::test_config(nginx, &self.layout.conf_new, &self.layout.state_dir)?;
        let _ = fs::remove_file(&self.layout.test_pid_file);
        let culprit = if self.hooks.ignore_line_numbers {
            None
        } else {
            out.line.and_then(|l| rendered.route_at_line(l))
        };
        debug!(routes = routes.len(), ok = out.ok, ?culprit, "nginx -t");
        Ok((out, culprit))
    }

    /// The largest set of routes nginx accepts, found with as few `nginx -t` runs as possible:
    /// one if all is well; one more per bad route when nginx's error names a line in a route's
    /// block; otherwise bisection (a route that fails only together with others, or an error
    /// without a line) rejects the route whose addition makes the check fail.
    fn prune(
        &self,
        nginx: &Path,
        candidates: Vec<Route>,
        rejected: &mut Vec<(Route, String)>,
    ) -> Result<Vec<Route>> {
        let (all, _) = self.trial(nginx, &candidates)?;
        if all.ok {
            return Ok(candidates);
        }
        let base = if candidates.is_empty() {
            all
        } else {
            self.trial(nginx, &[])?.0
        };
        if !base.ok {
            return Err(ProxyError::BaseConfigRejected {
                stderr: base.message,
                state_dir: self.cfg.state_dir.clone(),
            });
        }
        let mut tester = |routes: &[Route]| -> Result<Trial> {
            let (out, culprit) = self.trial(nginx, routes)?;
            Ok(Trial {
                ok: out.ok,
                message: out.message,
                culprit,
            })
        };
        let (accepted, bad) = bisect(candidates, &mut tester)?;
        for (route, message) in bad {
            warn!(site = %route.site, domain = %route.domain, %message, "nginx refused the route");
            rejected.push((
                route,
                format!("nginx -t refuses this site's server block: {message}"),
            ));
        }
        Ok(accepted)
    }

    /// Start the master and wait for its pid file; on any failure leave nothing running.
    fn launch(&self, nginx: &Path) -> Result<i32> {
        let l = &self.layout;
        let (ok, stderr) = nginx::launch(
            nginx,
            &l.conf,
            &l.state_dir,
            &l.start_err,
            self.cfg.socket_root.as_deref(),
        )?;
        if !stderr.is_empty() {
            warn!(%stderr, "nginx said on start");
        }
        let mut failure = if ok { None } else { Some(stderr.clone()) };
        let mut pid = None;
        if failure.is_none() {
            // The master writes its pid file after forking away from the command we ran.
            nginx::wait_for(PID_FILE_WAIT, || {
                pid = nginx::read_pid(&l.pid_file)
                    .filter(|p| nginx::is_our_master(*p, nginx, &l.conf));
                pid.is_some()
            });
            if pid.is_none() {
                failure = Some(format!(
                    "nginx exited without error but no master wrote {} within {} ms; the end of {} says:\n{}",
                    l.pid_file.display(),
                    PID_FILE_WAIT.as_millis(),
                    l.error_log.display(),
                    fsutil::tail(&l.error_log, 2000)
                ));
            }
        }
        match (failure, pid) {
            (None, Some(pid)) => Ok(pid),
            (failure, _) => {
                // nginx exits before it forks on every error we know of; this is for the rest.
                if let Some(stray) = nginx::find_our_master(nginx, &l.conf) {
                    let workers = nginx::children(stray);
                    let _ = nginx::signal(stray, Signal::SIGKILL);
                    for w in workers {
                        let _ = nginx::signal(w, Signal::SIGKILL);
                    }
                    nginx::wait_for(Duration::from_secs(2), || !nginx::is_alive(stray));
                }
                fsutil::remove_if_present(&l.pid_file)?;
                Err(ProxyError::StartFailed {
                    config: l.conf.clone(),
                    stderr: failure.unwrap_or_default(),
                })
            }
        }
    }
}

/// Routes left out, each with the reason.
pub(crate) type Rejected = Vec<(Route, String)>;

/// One `nginx -t` of a candidate set, as the bisection sees it.
pub(crate) struct Trial {
    pub ok: bool,
    pub message: String,
    /// Index (into the tested set) of the route whose block holds nginx's error line.
    pub culprit: Option<usize>,
}

/// Split `candidates` into (accepted, rejected with nginx's message). `test` checks the base
/// configuration plus the given routes; the base alone is known to pass. Invariant: the base
/// plus `accepted` passes; a group is added whole when base + accepted + group passes.
pub(crate) fn bisect(
    candidates: Vec<Route>,
    test: &mut dyn FnMut(&[Route]) -> Result<Trial>,
) -> Result<(Vec<Route>, Rejected)> {
    let mut accepted: Vec<Route> = Vec::new();
    let mut rejected = Vec::new();
    let mut work: Vec<Vec<Route>> = vec![candidates];
    while let Some(group) = work.pop() {
        if group.is_empty() {
            continue;
        }
        let mut trial = accepted.clone();
        trial.extend(group.iter().cloned());
        let t = test(&trial)?;
        if t.ok {
            accepted.extend(group);
            continue;
        }
        // An error on a line of a route in this group: that route is at fault.
        if let Some(i) = t.culprit.filter(|i| *i >= accepted.len()) {
            let mut rest = group;
            let bad = rest.remove(i - accepted.len());
            rejected.push((bad, t.message));
            work.push(rest);
            continue;
        }
        if group.len() == 1 {
            rejected.extend(group.into_iter().map(|r| (r, t.message.clone())));
            continue;
        }
        // Halves, first half first (the stack pops the last pushed).
        let mut first = group;
        let second = first.split_off(first.len() / 2);
        work.push(second);
        work.push(first);
    }
    Ok((accepted, rejected))
}

/// The configuration exactly as [`Proxy`] writes it, but without validating anything: for the
/// test that proves validation is what keeps hostile routes from injecting directives. Never
/// use it to run a proxy.
#[doc(hidden)]
pub fn render_unchecked(cfg: &ProxyConfig, routes: &[Route]) -> String {
    let layout = Layout::new(&cfg.state_dir, &cfg.run_dir);
    render::render(&layout, &cfg.listen, routes, &layout.pid_file, &[]).text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(d: &str) -> Route {
        Route::new(d, "/run/x.sock", "t/s")
    }

    /// An oracle standing in for nginx: the set fails if it holds a "bad" route, or both
    /// halves of a "pair" (a failure no single block causes), and gives no line number.
    fn oracle(calls: &mut usize) -> impl FnMut(&[Route]) -> Result<Trial> + '_ {
        move |routes: &[Route]| {
            *calls += 1;
            let has = |d: &str| routes.iter().any(|r| r.domain == d);
            let bad = routes.iter().any(|r| r.domain.starts_with("bad"))
                || (has("pair1.com") && has("pair2.com"));
            Ok(Trial {
                ok: !bad,
                message: "no".into(),
                culprit: None,
            })
        }
    }

    #[test]
    fn bisection_finds_single_and_combined_culprits() {
        let routes: Vec<Route> = [
            "a.com",
            "bad1.com",
            "b.com",
            "pair1.com",
            "c.com",
            "d.com",
            "pair2.com",
            "bad2.com",
            "e.com",
        ]
        .iter()
        .map(|d| r(d))
        .collect();
        let mut calls = 0;
        let (ok, bad) = bisect(routes, &mut oracle(&mut calls)).unwrap();
        let ok: Vec<&str> = ok.iter().map(|r| r.domain.as_str()).collect();
        let bad: Vec<&str> = bad.iter().map(|(r, _)| r.domain.as_str()).collect();
        assert_eq!(
            ok,
            ["a.com", "b.com", "pair1.com", "c.com", "d.com", "e.com"]
        );
        assert_eq!(bad, ["bad1.com", "pair2.com", "bad2.com"]);
        assert!(calls < 30, "{calls} trials");
    }

    #[test]
    fn line_numbers_cut_the_search_short() {
        let routes: Vec<Route> = (0..50).map(|i| r(&format!("s{i}.com"))).collect();
        let mut calls = 0;
        let mut test = |set: &[Route]| -> Result<Trial> {
            calls += 1;
            let culprit = set
                .iter()
                .position(|r| r.domain == "s17.com" || r.domain == "s40.com");
            Ok(Trial {
                ok: culprit.is_none(),
                message: "unknown directive".into(),
                culprit,
            })
        };
        let (ok, bad) = bisect(routes, &mut test).unwrap();
        assert_eq!(ok.len(), 48);
        assert_eq!(bad.len(), 2);
        assert_eq!(calls, 3);
    }
}

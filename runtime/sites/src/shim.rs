//! The site's supervisor: one containerd-shim-sgrun-v1 per site, started and driven exactly
//! as containerd drives it (the `start` action, then the Task API over ttrpc), so a site has
//! one supervision path with or without containerd. The shim's site mode (docs/shim.md):
//! its socket and events sink in the site's run directory, events appended to the site's
//! events.jsonl, the restart policy from the config's annotations.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use containerd_shim_protos::ttrpc::context;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SiteError};

/// The containerd namespace the shim is started in (it names nothing on disk in site mode).
const NAMESPACE: &str = "sgrun";
const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";

/// What `site start` keeps about the running shim, in the site's run directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimRecord {
    pub address: String,
    pub shim_pid: i32,
    /// Seconds since the epoch.
    pub started: u64,
}

/// Everything needed to start a site's shim.
pub struct Launch<'a> {
    pub site: &'a str,
    pub container_id: &'a str,
    pub shim_binary: &'a Path,
    pub bundle: &'a Path,
    pub run_dir: &'a Path,
    pub events: &'a Path,
    /// passed on to every sgrun the shim runs
    pub env: &'a [(&'static str, PathBuf)],
}

/// Runs the shim's `start` action: it starts the daemon (or finds it running) and prints the
/// address of its socket.
pub fn launch(l: &Launch) -> Result<String> {
    let events_sock = l.run_dir.join("events.sock");
    let spawn_err = |reason: String| SiteError::ShimSpawn {
        site: l.site.into(),
        binary: l.shim_binary.into(),
        reason,
    };
    let mut cmd = Command::new(l.shim_binary);
    cmd.current_dir(l.bundle)
        .args(["-namespace", NAMESPACE, "-id", l.container_id, "-address"])
        .arg(&events_sock)
        .arg("start")
        .env("SGRUN_SITE_RUN", l.run_dir)
        .env("SGRUN_SITE_EVENTS", l.events)
        .env("TTRPC_ADDRESS", format!("unix://{}", events_sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in l.env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| spawn_err(e.to_string()))?;
    if !out.status.success() {
        return Err(spawn_err(format!(
            "`start` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if address.is_empty() {
        return Err(spawn_err("`start` printed no socket address".into()));
    }
    Ok(address)
}

/// A ttrpc connection to one site's shim.
pub struct ShimClient {
    site: String,
    id: String,
    task: containerd_shim_protos::TaskClient,
}

fn ctx(timeout: Duration) -> context::Context {
    context::with_timeout(timeout.as_nanos() as i64)
}

const CALL: Duration = Duration::from_secs(30);

impl ShimClient {
    pub fn connect(site: &str, container_id: &str, address: &str) -> Result<ShimClient> {
        let client =
            containerd_shim_protos::Client::connect(address).map_err(|e| SiteError::Shim {
                site: site.into(),
                call: "connect",
                reason: format!("{address}: {e}"),
            })?;
        Ok(ShimClient {
            site: site.into(),
            id: container_id.into(),
            task: containerd_shim_protos::TaskClient::new(client),
        })
    }

    fn err(
        &self,
        call: &'static str,
    ) -> impl FnOnce(containerd_shim_protos::ttrpc::Error) -> SiteError + '_ {
        move |e| SiteError::Shim {
            site: self.site.clone(),
            call,
            reason: ttrpc_reason(&e),
        }
    }

    /// Create with stdout and stderr appended to `console_log` by the container itself.
    pub fn create(
        &self,
        bundle: &Path,
        console_log: &Path,
        sgrun: &Path,
        root: &Path,
    ) -> Result<u32> {
        let opts = RuncOptions {
            binary_name: sgrun.display().to_string(),
            root: root.display().to_string(),
            ..Default::default()
        };
        let any = Any {
            type_url: RUNC_OPTIONS.into(),
            value: opts.write_to_bytes().unwrap_or_default(),
            ..Default::default()
        };
        let log = format!("file://{}", console_log.display());
        let req = api::CreateTaskRequest {
            id: self.id.clone(),
            bundle: bundle.display().to_string(),
            stdout: log.clone(),
            stderr: log,
            options: Some(any).into(),
            ..Default::default()
        };
        // the first start creates the database: allow for a slow create under load
        let resp = self
            .task
            .create(ctx(Duration::from_secs(120)), &req)
            .map_err(self.err("Create"))?;
        Ok(resp.pid)
    }

    pub fn start(&self) -> Result<u32> {
        let req = api::StartRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        Ok(self
            .task
            .start(ctx(CALL), &req)
            .map_err(self.err("Start"))?
            .pid)
    }

    pub fn state(&self) -> Result<api::StateResponse> {
        let req = api::StateRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.task.state(ctx(CALL), &req).map_err(self.err("State"))
    }

    /// Signals the init (`all`: every process of the container). A process that already
    /// finished is not an error: the point is that it ends.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        let req = api::KillRequest {
            id: self.id.clone(),
            signal: signal as u32,
            all,
            ..Default::default()
        };
        match self.task.kill(ctx(CALL), &req) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.err("Kill")(e)),
        }
    }

    /// Waits up to `timeout` for the init to stop; true if it did. The Task API's Wait
    /// answers at the exit itself (no polling); whatever it answers, the state decides.
    pub fn wait_stopped(&self, timeout: Duration) -> Result<bool> {
        let stopped =
            |st: api::StateResponse| st.status.enum_value_or_default() == api::Status::STOPPED;
        // a zero timeout would mean "no timeout" to ttrpc: just look
        if timeout.is_zero() {
            return Ok(stopped(self.state()?));
        }
        let req = api::WaitRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        if let Err(e) = self.task.wait(ctx(timeout), &req) {
            tracing::debug!(error = %ttrpc_reason(&e), "Wait ended without an exit");
        }
        Ok(stopped(self.state()?))
    }

    pub fn delete(&self) -> Result<()> {
        let req = api::DeleteRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        match self.task.delete(ctx(Duration::from_secs(60)), &req) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.err("Delete")(e)),
        }
    }

    /// Asks the shim to exit (it does once its container is deleted). The connection may
    /// close before the answer arrives: that is the shim exiting, not an error.
    pub fn shutdown(&self) {
        let req = api::ShutdownRequest {
            id: self.id.clone(),
            now: false,
            ..Default::default()
        };
        if let Err(e) = self.task.shutdown(ctx(Duration::from_secs(10)), &req) {
            tracing::debug!(error = %ttrpc_reason(&e), "shutdown");
        }
    }
}

fn is_not_found(e: &containerd_shim_protos::ttrpc::Error) -> bool {
    matches!(e, containerd_shim_protos::ttrpc::Error::RpcStatus(s)
        if s.code() == containerd_shim_protos::ttrpc::Code::NOT_FOUND)
}

fn ttrpc_reason(e: &containerd_shim_protos::ttrpc::Error) -> String {
    match e {
        containerd_shim_protos::ttrpc::Error::RpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

/// Is the process alive (and not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The shim's pid, from the process listening on its socket (`SO_PEERCRED`).
pub fn peer_pid(address: &str) -> Option<i32> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let s = std::os::unix::net::UnixStream::connect(path).ok()?;
    nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.pid())
}

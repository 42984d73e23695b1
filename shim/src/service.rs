//! The Task API (containerd.task.v2.Task) over sgrun, and the shim's own lifecycle
//! (`start`: launch or reuse the daemon for a site; `delete`: clean up after a dead shim).
//!
//! One shim serves a site: every container of one CRI pod (grouped by the sandbox id, as
//! containerd-shim-runc-v2 groups them), or one container under ctr. State is a map of
//! containers behind a std Mutex that is never held across an await: each request reads what
//! it needs, runs sgrun, then writes back. The init and every exec are watched by one task
//! each, which gets the exit status from the reaper and publishes TaskExit.
//!
//! Site mode (site.rs, started by `sgrun site` without containerd) changes four things here:
//! the socket, the state root, events written to the site's log instead of containerd
//! (events_sink.rs), and restart supervision of the init (restart.rs, service/supervise.rs).

mod supervise;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::asynchronous::{publisher::RemotePublisher, ExitSignal, Shim};
use containerd_shim::protos::api::CheckpointTaskRequest;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::{
    well_known_types::{any::Any, timestamp::Timestamp},
    EnumOrUnknown, Message, MessageField,
};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::shim_async::Events;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, r#async::TtrpcContext};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{Config, Flags, StartOpts};
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::{Result, ShimError};
use crate::events_sink::{self, EventLog};
use crate::options::{Persisted, ShimOptions};
use crate::restart::{Policy, Supervision, When, RESTART_ANNOTATION};
use crate::runtime::{ChildIo, Sgrun};
use crate::site::{self, Site};
use crate::stdio::{self, ConsoleSocket, PtyMaster, Sink};
use crate::{log, oom, reaper, stats};

/// The decoded options, kept in the bundle so `delete` (after a dead shim) finds sgrun.
const OPTIONS_FILE: &str = "sgrun-shim.json";
/// containerd's CRI plugin names the pod of a container with this annotation.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
pub const TENANT_ANNOTATION: &str = "io.sgrun.tenant";
pub const PROFILE_ANNOTATION: &str = "io.sgrun.profile";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Paused,
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }
    fn proto(self) -> Status {
        match self {
            State::Created => Status::CREATED,
            State::Running => Status::RUNNING,
            State::Paused => Status::PAUSED,
            State::Stopped => Status::STOPPED,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Exit {
    code: u32,
    at: SystemTime,
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// The init or an exec.
struct Proc {
    pid: i32,
    state: State,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    exit: watch::Sender<Option<Exit>>,
    console: Option<Arc<PtyMaster>>,
    /// The stdin copy (into the process's pipe or its terminal): aborted on CloseIO and exit.
    stdin_pump: Option<tokio::task::AbortHandle>,
    /// An exec's process.json until it starts.
    spec: Option<Vec<u8>>,
}

impl Proc {
    fn new(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Self {
        Proc {
            pid: 0,
            state: State::Created,
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
            exit: watch::channel(None).0,
            console: None,
            stdin_pump: None,
            spec: None,
        }
    }

    fn close_stdin(&mut self) {
        if let Some(p) = self.stdin_pump.take() {
            p.abort();
        }
    }
}

struct Container {
    /// True while the init's start runs (a client Start, or a restart in site mode): its
    /// TaskExit waits, so TaskStart comes first.
    starting: watch::Sender<bool>,
    bundle: PathBuf,
    rt: Arc<Sgrun>,
    rootfs_mounted: bool,
    span: tracing::Span,
    init: Proc,
    execs: HashMap<String, Proc>,
    /// Names exec files in the bundle (exec ids are client-chosen strings).
    exec_seq: u32,
    /// The OOM watch of the current run: a restart ends it before the cgroup is re-created
    /// under the same path (the old watch would take the new directory for its own).
    oom: Option<tokio::task::AbortHandle>,
    /// Site mode with a restart policy: the supervision state and what to re-create from.
    sup: Option<Supervised>,
}

struct Supervised {
    state: Supervision,
    /// The client's Create, replayed as is by every restart (same bundle, stdio, options).
    request: CreateTaskRequest,
}

impl Container {
    fn proc(&self, id: &str, exec_id: &str) -> Result<&Proc> {
        if exec_id.is_empty() {
            Ok(&self.init)
        } else {
            self.execs
                .get(exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: id.into(),
                    exec_id: exec_id.into(),
                })
        }
    }
    fn proc_mut(&mut self, id: &str, exec_id: &str) -> Result<&mut Proc> {
        if exec_id.is_empty() {
            Ok(&mut self.init)
        } else {
            self.execs
                .get_mut(exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: id.into(),
                    exec_id: exec_id.into(),
                })
        }
    }
}

struct Inner {
    namespace: String,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Container>>,
    unified: bool,
    /// Site mode: where events go instead of containerd.
    events: Option<Arc<EventLog>>,
}

#[derive(Clone)]
pub struct Service(Arc<Inner>);

fn wrong_state(
    id: &str,
    exec_id: &str,
    state: State,
    action: &'static str,
    wanted: &'static str,
) -> ShimError {
    ShimError::WrongState {
        id: id.into(),
        exec_id: if exec_id.is_empty() {
            "init".into()
        } else {
            exec_id.into()
        },
        state: state.name(),
        action,
        wanted,
    }
}

fn read_annotations(bundle: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read(bundle.join("config.json")) else {
        return HashMap::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    v.get("annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default()
}

/// `consoleSize` of an OCI process ({"height": H, "width": W}), if set.
fn console_size(process: &serde_json::Value) -> Option<(u32, u32)> {
    let cs = process.get("consoleSize")?;
    let w = cs.get("width")?.as_u64()? as u32;
    let h = cs.get("height")?.as_u64()? as u32;
    (w > 0 && h > 0).then_some((w, h))
}

/// Applies the process's consoleSize as soon as the master arrives: the client's ResizePty
/// comes only after Start returns, and a process that asks for its size first (`stty size`)
/// would see 0x0 (runc applies it itself; sgrun does not yet).
fn apply_console_size(master: &PtyMaster, process: &serde_json::Value) {
    if let Some((w, h)) = console_size(process) {
        if let Err(e) = master.resize(w, h) {
            tracing::debug!(error = %e, "initial console size");
        }
    }
}

fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    match nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(target = %target.display(), error = %e, "unmounting rootfs"),
    }
}

async fn read_pid(path: &Path) -> Result<i32> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ShimError::io(path, "reading pid file", e))?;
    text.trim().parse().map_err(|_| {
        ShimError::io(
            path,
            "reading pid file",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a pid: {text:?}"),
            ),
        )
    })
}

/// TaskCreate for a created init (first run or restart).
fn task_create(req: &CreateTaskRequest, pid: i32) -> TaskCreate {
    TaskCreate {
        container_id: req.id.clone(),
        bundle: req.bundle.clone(),
        rootfs: req.rootfs.clone(),
        io: MessageField::some(TaskIO {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        }),
        checkpoint: req.checkpoint.clone(),
        pid: pid as u32,
        ..Default::default()
    }
}

/// Opens the start gate when dropped (the start returned, or failed).
struct GateOpener(watch::Sender<bool>);

impl Drop for GateOpener {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// A process sgrun has just created or exec'd, with its I/O running.
struct Started {
    pid: i32,
    console: Option<Arc<PtyMaster>>,
    /// The terminal output copy, awaited before the exit is published.
    output: Option<tokio::task::JoinHandle<()>>,
    stdin_pump: Option<tokio::task::AbortHandle>,
}

impl Started {
    fn direct(pid: i32, stdin: Option<stdio::StdinCopy>) -> Self {
        Started {
            pid,
            console: None,
            output: None,
            stdin_pump: stdin.map(|c| tokio::spawn(c.run()).abort_handle()),
        }
    }
}

/// Starts the terminal copies for a process; returns the output pump (awaited before the exit
/// is published, so a client has all output when it sees the exit) and the stdin pump.
fn start_pumps(
    master: Arc<PtyMaster>,
    sink: Sink,
    stdin: Option<tokio::net::unix::pipe::Receiver>,
) -> (
    tokio::task::JoinHandle<()>,
    Option<tokio::task::AbortHandle>,
) {
    let m = master.clone();
    let out = tokio::spawn(async move { stdio::pump_output(&m, sink).await });
    let inp = stdin
        .map(|r| tokio::spawn(async move { stdio::pump_input(&master, r).await }).abort_handle());
    (out, inp)
}

impl Service {
    pub fn new(
        namespace: &str,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
        events: Option<Arc<EventLog>>,
    ) -> Self {
        Service(Arc::new(Inner {
            namespace: namespace.into(),
            publisher,
            exit,
            containers: Mutex::new(HashMap::new()),
            unified: stats::unified_host(),
            events,
        }))
    }

    fn site_mode(&self) -> bool {
        self.0.events.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
        self.0.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        let mut map = self.lock();
        let c = map
            .get_mut(id)
            .ok_or_else(|| ShimError::ContainerNotFound { id: id.into() })?;
        f(c)
    }

    /// Pause (`freeze`) or resume a running task: only from the state the verb expects, the
    /// state recorded only if nothing changed it meanwhile (an exit wins), then the event.
    async fn set_frozen(&self, id: &str, freeze: bool) -> TResult<Empty> {
        let (from, to, verb) = match freeze {
            true => (State::Running, State::Paused, "pause"),
            false => (State::Paused, State::Running, "resume"),
        };
        let (rt, state) = self.with(id, |c| Ok((c.rt.clone(), c.init.state)))?;
        if state != from {
            let want = if freeze { "running" } else { "paused" };
            return Err(wrong_state(id, "", state, verb, want).into());
        }
        match freeze {
            true => rt.pause(id).await?,
            false => rt.resume(id).await?,
        }
        self.with(id, |c| {
            if c.init.state == from {
                c.init.state = to;
            }
            Ok(())
        })?;
        let container_id = id.to_string();
        match freeze {
            true => {
                let event = TaskPaused {
                    container_id,
                    ..Default::default()
                };
                self.publish(topics::TASK_PAUSED_EVENT_TOPIC, event).await
            }
            false => {
                let event = TaskResumed {
                    container_id,
                    ..Default::default()
                };
                self.publish(topics::TASK_RESUMED_EVENT_TOPIC, event).await
            }
        }
        Ok(Empty::default())
    }

    /// Publishes a task event. The envelope is built here rather than by the crate's
    /// `publish`, which names the event through its protobuf descriptor: building the
    /// descriptors of the events package costs a few hundred kB of heap in every shim, for a
    /// name that is known statically (all task events are in package containerd.events).
    async fn publish<M: Message>(&self, topic: &str, event: M) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(topic, error = %e, "encoding event");
                return;
            }
        };
        let envelope = Envelope {
            timestamp: MessageField::some(timestamp(SystemTime::now())),
            namespace: self.0.namespace.clone(),
            topic: topic.into(),
            event: MessageField::some(Any {
                type_url: format!("containerd.events.{}", M::NAME),
                value,
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(log) = &self.0.events {
            // site mode: straight into the log, not through the crate's publisher queue
            // (events_sink.rs says why)
            log.envelope(&envelope);
            return;
        }
        let req = ForwardRequest {
            envelope: MessageField::some(envelope),
            ..Default::default()
        };
        // forward() queues the envelope on the crate's publisher, which retries and
        // reconnects to containerd as publish() would
        let ctx = TtrpcContext {
            mh: ttrpc::MessageHeader::default(),
            metadata: HashMap::new(),
            timeout_nano: 0,
        };
        if let Err(e) = self.0.publisher.forward(&ctx, req).await {
            tracing::warn!(topic, error = %e, "publishing event");
        }
    }

    /// TaskStart of a container's init: at a client's Start and at a restart by the policy.
    async fn publish_start(&self, id: &str, pid: i32) {
        self.publish(
            topics::TASK_START_EVENT_TOPIC,
            TaskStart {
                container_id: id.into(),
                pid: pid as u32,
                ..Default::default()
            },
        )
        .await;
    }

    /// Watches a started process: reaper status, then output drained, then TaskExit.
    fn watch_exit(
        &self,
        id: &str,
        exec_id: &str,
        pid: i32,
        output: Option<tokio::task::JoinHandle<()>>,
        span: tracing::Span,
    ) {
        let svc = self.clone();
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(
            async move {
                let code = reaper::wait(pid).await.unwrap_or(255);
                if let Some(out) = output {
                    // a process that left the terminal to a background child: don't wait forever
                    let _ = tokio::time::timeout(Duration::from_secs(2), out).await;
                }
                svc.exited(&id, &exec_id, pid, code).await;
            }
            .instrument(span),
        );
    }

    /// Publishes TaskOOM for each OOM in the container's memory cgroup (v1), until the
    /// cgroup is removed (or the returned handle aborts it).
    fn watch_oom(
        &self,
        id: &str,
        pid: i32,
        span: tracing::Span,
    ) -> Option<tokio::task::AbortHandle> {
        if self.0.unified {
            return None;
        }
        let dir = oom::memory_cgroup(pid)?;
        let watch = match oom::OomWatch::new(dir.clone()) {
            Ok(w) => w,
            Err(e) => {
                span.in_scope(
                    || tracing::warn!(cgroup = %dir.display(), error = %e, "no OOM events"),
                );
                return None;
            }
        };
        let svc = self.clone();
        let id = id.to_string();
        let task = tokio::spawn(
            async move {
                while watch.next().await {
                    tracing::warn!("out of memory");
                    svc.publish(
                        topics::TASK_OOM_EVENT_TOPIC,
                        TaskOOM {
                            container_id: id.clone(),
                            ..Default::default()
                        },
                    )
                    .await;
                }
            }
            .instrument(span),
        );
        Some(task.abort_handle())
    }

    async fn exited(&self, id: &str, exec_id: &str, pid: i32, code: i32) {
        if exec_id.is_empty() {
            if let Ok(mut gate) = self.with(id, |c| Ok(c.starting.subscribe())) {
                let _ = gate.wait_for(|starting| !*starting).await;
            }
        }
        let exit = Exit {
            code: code as u32,
            at: SystemTime::now(),
        };
        let found = self.with(id, |c| {
            let p = c.proc_mut(id, exec_id)?;
            if p.pid != pid {
                // not the process this record describes (any more): nothing to report
                return Err(ShimError::ProcessFinished {
                    id: id.into(),
                    exec_id: exec_id.into(),
                });
            }
            p.state = State::Stopped;
            p.close_stdin();
            p.exit.send_replace(Some(exit));
            Ok(())
        });
        if found.is_err() {
            return;
        }
        tracing::info!(exec_id, pid, status = code, "exited");
        self.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: id.into(),
                id: if exec_id.is_empty() {
                    id.into()
                } else {
                    exec_id.into()
                },
                pid: pid as u32,
                exit_status: exit.code,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        )
        .await;
        // after TaskExit and the stopped record, Wait callers woken: a restart is a new run
        if exec_id.is_empty() {
            self.supervise_exit(id, exit.code);
        }
    }

    async fn create_container(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        let id = req.id.clone();
        if self.lock().contains_key(&id) {
            return Err(ShimError::ContainerExists { id });
        }
        let bundle = PathBuf::from(&req.bundle);
        let ann = read_annotations(&bundle);
        // site mode: a bad restart annotation fails Create before anything exists. containerd
        // mode never reads it: containerd (and kubelet) own restarts there.
        let policy = match self.site_mode() {
            true => Policy::from_annotations(&id, &ann)?,
            false => Policy {
                when: When::No,
                initial: Duration::ZERO,
            },
        };
        let opts = ShimOptions::from_any(req.options.as_ref())?;
        opts.check()?;
        let root = match self.site_mode() {
            true => opts.site_root(),
            false => opts.root_for(&self.0.namespace),
        };
        let rt = Arc::new(Sgrun {
            binary: opts.binary()?,
            root: root.clone(),
            log: bundle.join("log.json"),
            default_profile: opts.default_profile.clone(),
        });
        let opts_path = bundle.join(OPTIONS_FILE);
        let persisted = Persisted {
            options: opts,
            state_root: Some(root),
        };
        std::fs::write(
            &opts_path,
            serde_json::to_vec(&persisted).unwrap_or_default(),
        )
        .map_err(|e| ShimError::io(&opts_path, "writing shim options", e))?;

        // tenant and profile travel in config.json to sgrun untouched (it enforces them,
        // tighten-only); the shim only names them in its log
        let span = tracing::info_span!(
            "container",
            container = %id,
            tenant = ann.get(TENANT_ANNOTATION).map(String::as_str).unwrap_or("-"),
            profile = ann.get(PROFILE_ANNOTATION).map(String::as_str).unwrap_or("-"),
        );

        let mut mounted = false;
        if !req.rootfs.is_empty() {
            let target = bundle.join("rootfs");
            std::fs::create_dir_all(&target)
                .map_err(|e| ShimError::io(&target, "creating rootfs dir", e))?;
            for m in req.rootfs.clone() {
                let t = target.clone();
                // a blocking thread: for very long overlay options the crate chdirs after
                // unshare(CLONE_FS), which must not change the runtime thread's directory
                let r = tokio::task::spawn_blocking(move || {
                    containerd_shim::mount::mount_rootfs(
                        Some(&m.type_),
                        Some(&m.source),
                        &m.options,
                        &t,
                    )
                })
                .await;
                let err = match r {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(reason) = err {
                    unmount_rootfs(&bundle);
                    return Err(ShimError::Mount { id, target, reason });
                }
                mounted = true;
            }
        }

        let result = self
            .run_create(&req, &rt, &bundle)
            .instrument(span.clone())
            .await;
        let started = match result {
            Ok(v) => v,
            Err(e) => {
                if mounted {
                    unmount_rootfs(&bundle);
                }
                // sgrun removes a half-made container itself; make sure of it
                let _ = rt.delete(&id, true).await;
                return Err(e);
            }
        };
        let pid = started.pid;
        let mut init = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        init.pid = pid;
        init.console = started.console;
        init.stdin_pump = started.stdin_pump;
        let out_pump = started.output;
        if policy.when != When::No {
            span.in_scope(|| tracing::info!(policy = ?policy.when, initial_ms = policy.initial.as_millis() as u64, "restart policy"));
        } else if !self.site_mode() && ann.contains_key(RESTART_ANNOTATION) {
            span.in_scope(|| {
                tracing::info!("{RESTART_ANNOTATION} applies in site mode only: ignored")
            });
        }
        let sup = (policy.when != When::No).then(|| Supervised {
            state: Supervision::new(policy),
            request: req.clone(),
        });
        self.lock().insert(
            id.clone(),
            Container {
                starting: watch::channel(false).0,
                bundle: bundle.clone(),
                rt,
                rootfs_mounted: mounted,
                span: span.clone(),
                init,
                execs: HashMap::new(),
                exec_seq: 0,
                oom: None,
                sup,
            },
        );
        // watched from creation: an init that dies before start is reported too
        self.watch_exit(&id, "", pid, out_pump, span.clone());
        let oom = self.watch_oom(&id, pid, span.clone());
        let _ = self.with(&id, |c| {
            c.oom = oom;
            Ok(())
        });
        span.in_scope(|| tracing::info!(pid, "created"));
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, task_create(&req, pid))
            .await;
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn run_create(
        &self,
        req: &CreateTaskRequest,
        rt: &Sgrun,
        bundle: &Path,
    ) -> Result<Started> {
        let id = &req.id;
        let pid_file = bundle.join("init.pid");
        if !req.checkpoint.is_empty() {
            return Err(ShimError::CheckpointUnsupported { id: id.clone() });
        }
        if req.terminal {
            let sink = Sink::open(id, &req.stdout)?;
            let stdin = stdio::open_tty_stdin(id, &req.stdin)?;
            let console = ConsoleSocket::new()?;
            let path = console.path();
            let master = run_with_console(
                &console,
                rt.create(id, bundle, &pid_file, Some(&path), ChildIo::default()),
            )
            .await?;
            let pid = read_pid(&pid_file).await?;
            let master = Arc::new(PtyMaster::new(master).map_err(|e| ShimError::Console {
                path,
                reason: e.to_string(),
            })?);
            let config: serde_json::Value = std::fs::read(bundle.join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            apply_console_size(&master, &config["process"]);
            let (out, inp) = start_pumps(master.clone(), sink, stdin);
            Ok(Started {
                pid,
                console: Some(master),
                output: Some(out),
                stdin_pump: inp,
            })
        } else {
            let io = stdio::open_direct(id, &req.stdin, &req.stdout, &req.stderr)?;
            rt.create(id, bundle, &pid_file, None, io.child).await?;
            Ok(Started::direct(read_pid(&pid_file).await?, io.stdin_copy))
        }
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<StartResponse> {
        let (rt, bundle, spec, stdin, stdout, stderr, terminal, seq, span) =
            self.with(id, |c| {
                if c.init.state != State::Running {
                    return Err(wrong_state(id, "", c.init.state, "exec start", "running"));
                }
                c.exec_seq += 1;
                let seq = c.exec_seq;
                let (rt, bundle, span) = (c.rt.clone(), c.bundle.clone(), c.span.clone());
                let p = c.proc_mut(id, exec_id)?;
                if p.state != State::Created {
                    return Err(wrong_state(id, exec_id, p.state, "start", "created"));
                }
                let spec = p.spec.take().unwrap_or_default();
                Ok((
                    rt,
                    bundle,
                    spec,
                    p.stdin.clone(),
                    p.stdout.clone(),
                    p.stderr.clone(),
                    p.terminal,
                    seq,
                    span,
                ))
            })?;
        let process = bundle.join(format!("exec-{seq}.json"));
        let pid_file = bundle.join(format!("exec-{seq}.pid"));
        std::fs::write(&process, &spec)
            .map_err(|e| ShimError::io(&process, "writing exec process", e))?;
        let result = async {
            if terminal {
                let sink = Sink::open(id, &stdout)?;
                let stdin = stdio::open_tty_stdin(id, &stdin)?;
                let console = ConsoleSocket::new()?;
                let path = console.path();
                let master = run_with_console(
                    &console,
                    rt.exec(id, &process, &pid_file, Some(&path), ChildIo::default()),
                )
                .await?;
                let pid = read_pid(&pid_file).await?;
                let master = Arc::new(PtyMaster::new(master).map_err(|e| ShimError::Console {
                    path,
                    reason: e.to_string(),
                })?);
                apply_console_size(&master, &serde_json::from_slice(&spec).unwrap_or_default());
                let (out, inp) = start_pumps(master.clone(), sink, stdin);
                Ok::<_, ShimError>(Started {
                    pid,
                    console: Some(master),
                    output: Some(out),
                    stdin_pump: inp,
                })
            } else {
                let io = stdio::open_direct(id, &stdin, &stdout, &stderr)?;
                rt.exec(id, &process, &pid_file, None, io.child).await?;
                Ok(Started::direct(read_pid(&pid_file).await?, io.stdin_copy))
            }
        }
        .instrument(span.clone())
        .await;
        let _ = std::fs::remove_file(&process);
        let _ = std::fs::remove_file(&pid_file);
        let started = match result {
            Ok(v) => v,
            Err(e) => {
                // the exec never ran: it is stopped with status 255 (as runc's shim reports)
                let _ = self.with(id, |c| {
                    let p = c.proc_mut(id, exec_id)?;
                    p.state = State::Stopped;
                    p.exit.send_replace(Some(Exit {
                        code: 255,
                        at: SystemTime::now(),
                    }));
                    Ok(())
                });
                return Err(e);
            }
        };
        let (pid, out) = (started.pid, started.output);
        self.with(id, |c| {
            let p = c.proc_mut(id, exec_id)?;
            p.pid = pid;
            p.state = State::Running;
            p.console = started.console;
            p.stdin_pump = started.stdin_pump;
            Ok(())
        })?;
        span.in_scope(|| tracing::info!(exec_id, pid, "exec started"));
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskExecStarted {
                container_id: id.into(),
                exec_id: exec_id.into(),
                pid: pid as u32,
                ..Default::default()
            },
        )
        .await;
        // watched only now, so TaskExecStarted always precedes its TaskExit (the reaper keeps
        // an early exit until then)
        self.watch_exit(id, exec_id, pid, out, span.clone());
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn start_init(&self, id: &str) -> Result<StartResponse> {
        let (rt, pid, span, gate) = self.with(id, |c| {
            if c.init.state != State::Created || *c.starting.borrow() {
                return Err(wrong_state(id, "", c.init.state, "start", "created"));
            }
            c.starting.send_replace(true);
            Ok((c.rt.clone(), c.init.pid, c.span.clone(), c.starting.clone()))
        })?;
        // whatever happens below, an exit held back by the gate is published after it
        let _open = GateOpener(gate);
        rt.start(id).instrument(span.clone()).await?;
        self.with(id, |c| {
            // the init may already have exited (and been marked stopped) by now
            if c.init.state == State::Created {
                c.init.state = State::Running;
            }
            // restarts are enabled by a client Start only. An exit of this run is held back
            // by the gate until this Start returns, so it sees them enabled.
            if let Some(s) = c.sup.as_mut() {
                s.state.started(Instant::now());
            }
            Ok(())
        })?;
        span.in_scope(|| tracing::info!(pid, "started"));
        self.publish_start(id, pid).await;
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn delete_init(&self, id: &str) -> Result<DeleteResponse> {
        let (rt, state, mut exit_rx, span) = loop {
            // a restart past its commit point finishes first; its outcome decides (a running
            // init refuses the Delete, as always)
            self.settle_restart(id).await?;
            let found = self.with(id, |c| {
                if c.sup.as_ref().is_some_and(|s| s.state.restarting()) {
                    return Ok(None);
                }
                let state = c.init.state;
                // checked and disabled under one lock, the one a restart commits under: the
                // loop either committed before (settled above) or sees this and ends. A
                // refused Delete changes nothing.
                if !matches!(state, State::Running | State::Paused) {
                    if let Some(s) = c.sup.as_mut() {
                        s.state.disable();
                    }
                }
                Ok(Some((
                    c.rt.clone(),
                    state,
                    c.init.exit.subscribe(),
                    c.span.clone(),
                )))
            })?;
            if let Some(found) = found {
                break found;
            }
        };
        if matches!(state, State::Running | State::Paused) {
            return Err(wrong_state(id, "", state, "delete", "stopped or created"));
        }
        // --force: a created (never started) init is killed; its exit arrives from the reaper
        rt.delete(id, true).instrument(span.clone()).await?;
        let _ =
            tokio::time::timeout(Duration::from_secs(5), exit_rx.wait_for(Option::is_some)).await;
        let c = self
            .lock()
            .remove(id)
            .ok_or_else(|| ShimError::ContainerNotFound { id: id.into() })?;
        if c.rootfs_mounted {
            unmount_rootfs(&c.bundle);
        }
        if let Some(h) = &c.oom {
            h.abort();
        }
        let exit = (*c.init.exit.borrow()).unwrap_or(Exit {
            code: 128 + libc::SIGKILL as u32,
            at: SystemTime::now(),
        });
        span.in_scope(|| tracing::info!(status = exit.code, "deleted"));
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: id.into(),
                id: id.into(),
                pid: c.init.pid as u32,
                exit_status: exit.code,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        )
        .await;
        Ok(DeleteResponse {
            pid: c.init.pid as u32,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn delete_exec(&self, id: &str, exec_id: &str) -> Result<DeleteResponse> {
        self.with(id, |c| {
            let p = c.proc(id, exec_id)?;
            if matches!(p.state, State::Running | State::Paused) {
                return Err(wrong_state(
                    id,
                    exec_id,
                    p.state,
                    "delete",
                    "stopped or created",
                ));
            }
            let p = c.execs.remove(exec_id).expect("looked up above");
            let exit = (*p.exit.borrow()).unwrap_or(Exit {
                code: 0,
                at: SystemTime::now(),
            });
            Ok(DeleteResponse {
                pid: p.pid as u32,
                exit_status: exit.code,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            })
        })
    }
}

/// Runs sgrun with `--console-socket` and takes the pty master it sends. sgrun connects while
/// it creates the container, so the accept runs alongside it; once sgrun has exited
/// successfully the master is already queued on the socket.
async fn run_with_console(
    console: &ConsoleSocket,
    run: impl std::future::Future<Output = Result<()>>,
) -> Result<OwnedFd> {
    let recv = console.receive();
    tokio::pin!(run, recv);
    let mut master = None;
    let ran = loop {
        tokio::select! {
            r = &mut run => break r,
            m = &mut recv, if master.is_none() => master = Some(m),
        }
    };
    ran?;
    match master {
        Some(m) => m,
        None => tokio::time::timeout(Duration::from_secs(5), recv)
            .await
            .map_err(|_| ShimError::Console {
                path: console.path(),
                reason: "sgrun sent no terminal within 5 s".into(),
            })?,
    }
}

type TResult<T> = ttrpc::Result<T>;

#[async_trait]
impl Task for Service {
    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TResult<StateResponse> {
        let r = self.with(&req.id, |c| {
            let p = c.proc(&req.id, &req.exec_id)?;
            let exit = *p.exit.borrow();
            Ok(StateResponse {
                id: req.id.clone(),
                bundle: c.bundle.display().to_string(),
                pid: p.pid as u32,
                status: EnumOrUnknown::new(p.state.proto()),
                stdin: p.stdin.clone(),
                stdout: p.stdout.clone(),
                stderr: p.stderr.clone(),
                terminal: p.terminal,
                exit_status: exit.map(|e| e.code).unwrap_or(0),
                exited_at: exit.map(|e| timestamp(e.at)).into(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            })
        })?;
        Ok(r)
    }

    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TResult<CreateTaskResponse> {
        Ok(self.create_container(req).await?)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TResult<StartResponse> {
        if req.exec_id.is_empty() {
            Ok(self.start_init(&req.id).await?)
        } else {
            Ok(self.start_exec(&req.id, &req.exec_id).await?)
        }
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TResult<DeleteResponse> {
        if req.exec_id.is_empty() {
            Ok(self.delete_init(&req.id).await?)
        } else {
            Ok(self.delete_exec(&req.id, &req.exec_id)?)
        }
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TResult<PidsResponse> {
        let (rt, execs) = self.with(&req.id, |c| {
            let execs: HashMap<i32, String> = c
                .execs
                .iter()
                .filter(|(_, p)| p.pid > 0)
                .map(|(k, p)| (p.pid, k.clone()))
                .collect();
            Ok((c.rt.clone(), execs))
        })?;
        let pids = rt.ps(&req.id).await.map_err(ttrpc::Error::from)?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let info = execs.get(&pid).and_then(|exec_id| {
                    let d = ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    Some(Any {
                        type_url: "containerd.runc.v1.ProcessDetails".into(),
                        value: d.write_to_bytes().ok()?,
                        ..Default::default()
                    })
                });
                ProcessInfo {
                    pid: pid as u32,
                    info: info.into(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TResult<Empty> {
        self.set_frozen(&req.id, true).await
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TResult<Empty> {
        self.set_frozen(&req.id, false).await
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TResult<Empty> {
        Err(ShimError::CheckpointUnsupported { id: req.id }.into())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TResult<Empty> {
        if req.exec_id.is_empty() {
            // any client Kill of the init ends supervision until the next client Start, even
            // one that finds the init already stopped (between runs, in its back-off): the
            // client is stopping the site, and no restart may race its Wait and Delete
            self.with(&req.id, |c| {
                if let Some(s) = c.sup.as_mut() {
                    s.state.disable();
                }
                Ok(())
            })?;
            // a restart already running finishes, and this Kill signals the init it started
            self.settle_restart(&req.id).await?;
        }
        let (rt, state, pid) = self.with(&req.id, |c| {
            let p = c.proc(&req.id, &req.exec_id)?;
            Ok((c.rt.clone(), p.state, p.pid))
        })?;
        if state == State::Stopped {
            return Err(ShimError::ProcessFinished {
                id: req.id.clone(),
                exec_id: if req.exec_id.is_empty() {
                    "init".into()
                } else {
                    req.exec_id.clone()
                },
            }
            .into());
        }
        if req.exec_id.is_empty() {
            rt.kill(&req.id, req.signal, req.all).await?;
        } else {
            if pid <= 0 {
                return Err(wrong_state(&req.id, &req.exec_id, state, "kill", "started").into());
            }
            // the exec is our child (reparented to us): its pid cannot be reused before the
            // reaper collects it, so signalling it directly is safe
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|_| {
                ShimError::BadRequest {
                    id: req.id.clone(),
                    what: "signal",
                    reason: format!("{} is not a signal", req.signal),
                }
            })?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                .map_err(|e| ShimError::io(format!("/proc/{pid}"), "signalling exec", e.into()))?;
        }
        Ok(Empty::default())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TResult<Empty> {
        let spec = req.spec.value.clone();
        serde_json::from_slice::<serde_json::Value>(&spec).map_err(|e| ShimError::BadRequest {
            id: req.id.clone(),
            what: "exec process spec",
            reason: e.to_string(),
        })?;
        self.with(&req.id, |c| {
            if c.init.state == State::Stopped {
                return Err(wrong_state(&req.id, "", c.init.state, "exec", "running"));
            }
            if c.execs.contains_key(&req.exec_id) {
                return Err(ShimError::ExecExists {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                });
            }
            let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
            p.spec = Some(spec);
            c.execs.insert(req.exec_id.clone(), p);
            Ok(())
        })?;
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        )
        .await;
        Ok(Empty::default())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TResult<Empty> {
        self.with(&req.id, |c| {
            let p = c.proc(&req.id, &req.exec_id)?;
            match &p.console {
                Some(m) => m
                    .resize(req.width, req.height)
                    .map_err(|e| ShimError::Console {
                        path: PathBuf::from("pty master"),
                        reason: format!("TIOCSWINSZ: {e}"),
                    }),
                None => Err(ShimError::BadRequest {
                    id: req.id.clone(),
                    what: "resize",
                    reason: "the process has no terminal".into(),
                }),
            }
        })?;
        Ok(Empty::default())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TResult<Empty> {
        self.with(&req.id, |c| {
            let p = c.proc_mut(&req.id, &req.exec_id)?;
            if req.stdin {
                p.close_stdin();
            }
            Ok(())
        })?;
        Ok(Empty::default())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TResult<Empty> {
        let rt = self.with(&req.id, |c| Ok(c.rt.clone()))?;
        let Some(res) = req.resources.as_ref() else {
            return Err(ShimError::BadRequest {
                id: req.id.clone(),
                what: "update",
                reason: "no resources".into(),
            }
            .into());
        };
        // containerd sends runtime-spec LinuxResources as JSON in the Any: sgrun reads that
        rt.update(&req.id, &res.value).await?;
        Ok(Empty::default())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TResult<WaitResponse> {
        let mut rx = self.with(&req.id, |c| {
            Ok(c.proc(&req.id, &req.exec_id)?.exit.subscribe())
        })?;
        let exit = match rx.wait_for(Option::is_some).await {
            Ok(v) => (*v).expect("waited for Some"),
            // the process was deleted while we waited
            Err(_) => {
                return Err(ShimError::ExecNotFound {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                }
                .into())
            }
        };
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TResult<StatsResponse> {
        let rt = self.with(&req.id, |c| Ok(c.rt.clone()))?;
        let ev = rt.stats(&req.id).await?;
        let any = stats::to_any(&ev, self.0.unified).map_err(|e| ShimError::RuntimeOutput {
            id: req.id.clone(),
            verb: "events --stats",
            reason: e.to_string(),
        })?;
        Ok(StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TResult<ConnectResponse> {
        let pid = self.with(&req.id, |c| Ok(c.init.pid)).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid as u32,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TResult<Empty> {
        let mut map = self.lock();
        // the client is done with this shim: no container restarts any more (a site whose
        // containers remain stays up, unsupervised, until they are deleted)
        for c in map.values_mut() {
            if let Some(s) = c.sup.as_mut() {
                s.state.disable();
            }
        }
        // the shim serves every container of its site: it goes when the last one is deleted
        if map.is_empty() {
            tracing::info!("shutting down");
            self.0.exit.signal();
        }
        Ok(Empty::default())
    }
}

/// The shim binary's lifecycle, as the containerd-shim crate drives it.
pub struct SgrunShim {
    namespace: String,
    id: String,
    debug: bool,
    exit: Arc<ExitSignal>,
    /// Site mode (site.rs): set from the environment for every action.
    site: Option<Site>,
    /// Site mode, daemon: the event log and the Events service on events.sock (kept alive
    /// here: dropping the server stops it).
    events: Option<Arc<EventLog>>,
    events_server: Option<Mutex<ttrpc::r#async::Server>>,
}

/// Adjusts the shim's OOM score to containerd's + 1 (as containerd-shim-runc-v2 does): under
/// memory pressure the kernel takes a shim before containerd.
fn adjust_oom_score(pid: u32) {
    let parent = std::os::unix::process::parent_id();
    let score = std::fs::read_to_string(format!("/proc/{parent}/oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let path = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&path, (score + 1).min(1000).to_string()) {
        tracing::warn!(path, error = %e, "adjusting oom score");
    }
}

fn socket_alive(address: &str) -> bool {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

#[async_trait]
impl Shim for SgrunShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let site = match Site::from_env() {
            Ok(s) => s,
            Err(e) => {
                // before anything else: `start` prints this to the client
                eprintln!("containerd-shim-sgrun-v1: {e}");
                std::process::exit(2);
            }
        };
        // no_reaper and no_setup_logger are set in main: the shim reaps through its own loop
        // (reaper.rs) and logs through tracing (log.rs)
        let daemon = args.action.is_empty();
        match (&site, daemon) {
            (Some(site), true) => log::init(log::open_append(&site.log_path()), args.debug),
            (None, true) => log::init(log::open_fifo(), args.debug),
            _ => log::init(Box::new(std::io::stderr()), args.debug),
        }
        let mut shim = SgrunShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            debug: args.debug,
            exit: Arc::new(ExitSignal::default()),
            site,
            events: None,
            events_server: None,
        };
        if let (Some(site), true) = (&shim.site, daemon) {
            // Here, not in create_task_service: the crate's bootstrap connects its publisher
            // to TTRPC_ADDRESS (events.sock, set by `start`) between `new` and that call, and
            // fails without a listener. connect(2) completes on the listen backlog, so the
            // accept loop spawned here may run later on this same thread.
            let log = Arc::new(EventLog::new(site.events.clone()));
            match events_sink::serve(&site.events_socket(), log.clone()).await {
                Ok(server) => {
                    shim.events = Some(log);
                    shim.events_server = Some(Mutex::new(server));
                }
                Err(e) => {
                    tracing::error!(error = %e, "site mode: no events service");
                    std::process::exit(1);
                }
            }
        }
        shim
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let cwd = std::env::current_dir().map_err(|e| ShimError::io(".", "current dir", e))?;
        let (address, _site_lock) = match &self.site {
            Some(site) => {
                // held until the daemon serves (or failed): see Site::lock
                let lock = site.lock()?;
                site::remove_stale_socket(&site.shim_socket());
                (site.shim_address(), Some(lock))
            }
            None => {
                // one shim per site: the containers of one pod share it
                let grouping = read_annotations(&cwd)
                    .remove(SANDBOX_ID_ANNOTATION)
                    .unwrap_or_else(|| opts.id.clone());
                let address =
                    containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
                (address, None)
            }
        };
        if socket_alive(&address) {
            std::fs::write("address", &address)
                .map_err(|e| ShimError::io(cwd.join("address"), "writing", e))?;
            return Ok(address);
        }
        let exe =
            std::env::current_exe().map_err(|e| ShimError::io("/proc/self/exe", "resolving", e))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            // its own process group: a signal to containerd's group does not reach the shim
            .process_group(0)
            .args([
                "-namespace",
                &opts.namespace,
                "-id",
                &opts.id,
                "-address",
                &opts.address,
                "-socket",
                &address,
            ]);
        if self.debug || opts.debug {
            cmd.arg("-debug");
        }
        if let Some(site) = &self.site {
            // the daemon must be in site mode too, and publish to its own events.sock
            cmd.envs(site.daemon_env());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ShimError::io(&exe, "starting the shim daemon", e))?;
        adjust_oom_score(child.id());
        // the daemon closes this pipe (dup2 of stderr over stdout) once it serves the socket
        let mut sink = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = std::io::Read::read_to_end(&mut out, &mut sink);
        }
        if let Some(site) = &self.site {
            // no containerd to notice a daemon that died at once: say so now
            if !socket_alive(&address) {
                return Err(ShimError::SiteStart {
                    run: site.run.clone(),
                    reason: format!(
                        "nothing serves {address}; see {}",
                        site.log_path().display()
                    ),
                }
                .into());
            }
        }
        std::fs::write("address", &address)
            .map_err(|e| ShimError::io(cwd.join("address"), "writing", e))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // containerd runs this after a shim died: remove what sgrun and the shim left
        reaper::start().map_err(|e| ShimError::io("SIGCHLD", "installing handler", e))?;
        let bundle = std::env::current_dir().map_err(|e| ShimError::io(".", "current dir", e))?;
        let saved: Persisted = std::fs::read(bundle.join(OPTIONS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let opts = &saved.options;
        let root = match (&saved.state_root, &self.site) {
            (Some(r), _) => r.clone(),
            (None, Some(_)) => opts.site_root(),
            (None, None) => opts.root_for(&self.namespace),
        };
        if let Ok(binary) = opts.binary() {
            let rt = Sgrun {
                binary,
                root,
                log: bundle.join("log.json"),
                default_profile: None,
            };
            if let Err(e) = rt.delete(&self.id, true).await {
                tracing::warn!(container = %self.id, error = %e, "sgrun delete after a dead shim");
            }
        }
        unmount_rootfs(&bundle);
        // a killed shim could not remove its socket; nobody listens on it any more
        if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
            let path = address.trim().trim_start_matches("unix://");
            if !path.is_empty() && !socket_alive(path) {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::debug!(path, error = %e, "removing a dead shim's socket");
                }
            }
        }
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        if let (Some(site), Some(log)) = (&self.site, &self.events) {
            // the crate removes the socket named in the bundle's `address` file after this;
            // both site sockets go here, with the last record
            log.record(
                events_sink::TOPIC_SHIM_EXIT,
                &self.id,
                &[("reason", serde_json::Value::from("shutdown"))],
            );
            site::remove_socket(&site.shim_socket());
            site::remove_socket(&site.events_socket());
            // stops accepting; no graceful shutdown: it would wait for the crate's publisher
            // connection, which lives as long as the process
            drop(self.events_server.take());
        }
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        if let Err(e) = reaper::start() {
            tracing::error!(error = %e, "installing the SIGCHLD handler");
        }
        if let Some(log) = &self.events {
            tracing::info!(events = %log.path().display(), "site mode");
            log.record(
                events_sink::TOPIC_SHIM_START,
                &self.id,
                &[("pid", serde_json::Value::from(std::process::id()))],
            );
        }
        Service::new(
            &self.namespace,
            publisher,
            self.exit.clone(),
            self.events.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_urls_are_the_descriptor_names() {
        use containerd_shim::protos::protobuf::MessageFull;
        fn check<M: MessageFull>() {
            assert_eq!(
                format!("containerd.events.{}", M::NAME),
                M::descriptor().full_name()
            );
        }
        check::<TaskCreate>();
        check::<TaskStart>();
        check::<TaskExit>();
        check::<TaskDelete>();
        check::<TaskExecAdded>();
        check::<TaskExecStarted>();
        check::<TaskPaused>();
        check::<TaskResumed>();
        check::<TaskOOM>();
    }

    #[test]
    fn console_size_is_read_from_the_process() {
        let p = serde_json::json!({"consoleSize": {"height": 33, "width": 77}});
        assert_eq!(console_size(&p), Some((77, 33)));
        assert_eq!(console_size(&serde_json::json!({})), None);
        let zero = serde_json::json!({"consoleSize": {"height": 0, "width": 0}});
        assert_eq!(console_size(&zero), None);
    }
}

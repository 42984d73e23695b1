//! Site mode's event sink: with no containerd to receive them, events become JSON lines in the
//! site's persistent log (`$SGRUN_SITE_EVENTS`), one line per event:
//!
//! ```text
//! {"time":"2026-11-27T14:30:00.123Z","topic":"/tasks/exit","container":"blog","pid":4242,"exit_status":3}
//! ```
//!
//! The daemon serves containerd's Events service (`containerd.services.events.ttrpc.v1.Events`,
//! Forward) on `$SGRUN_SITE_RUN/events.sock`, bound in `Shim::new`, before the crate's
//! bootstrap connects its publisher there (the crate refuses to run without one). A connect
//! only needs the listen backlog, so the accept loop may run later on the same thread.
//! The shim's own task events skip that round trip and are written directly (service.rs:
//! `publish`): ordered with the `/sgrun/` records, and none lost in the publisher's queue
//! when the shim exits right after Shutdown.
//!
//! Each line is one `write(2)` on a descriptor opened with O_APPEND, so concurrent writers
//! (a second shim of the same site after a restart, `sgrun site` itself) never interleave
//! within a line. The file is opened per line: rare events, and a rotated log is followed.
//! A write error is logged and otherwise ignored: losing a log line must never stop a site.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::protos::api::Empty;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::{well_known_types::any::Any, Message};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{create_events, Events};
use containerd_shim::protos::ttrpc::{self, r#async::TtrpcContext};
use serde_json::Value;

use crate::error::{Result, ShimError};

pub const TOPIC_SHIM_START: &str = "/sgrun/shim-start";
pub const TOPIC_SHIM_EXIT: &str = "/sgrun/shim-exit";
pub const TOPIC_RESTART: &str = "/sgrun/restart";
pub const TOPIC_RESTART_FAILED: &str = "/sgrun/restart-failed";

/// The JSON-lines file.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    pub fn new(path: PathBuf) -> Self {
        EventLog { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, line: &str) {
        let r = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = r {
            tracing::warn!(path = %self.path.display(), error = %e, "writing the site event log");
        }
    }

    /// One of the shim's own records (`/sgrun/...`), timed now.
    pub fn record(&self, topic: &str, container: &str, fields: &[(&str, Value)]) {
        self.append(&line(SystemTime::now(), topic, container, fields));
    }

    /// A task event, as containerd would have received it.
    pub fn envelope(&self, env: &Envelope) {
        self.append(&envelope_line(env));
    }
}

/// Lines stay small: a longer text (an error with sgrun's whole message) is cut here.
const MAX_TEXT: usize = 400;

/// `text`, cut to [`MAX_TEXT`] bytes on a character boundary, with `…` when cut.
pub fn short(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// RFC 3339, UTC, milliseconds: `2026-11-27T14:30:00.123Z`.
pub fn rfc3339_ms(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `{"time":..,"topic":..,"container":..,<fields>}\n`, keys in that order (serde_json's map
/// would sort them).
pub fn line(time: SystemTime, topic: &str, container: &str, fields: &[(&str, Value)]) -> String {
    let mut s = String::with_capacity(128);
    let mut push = |k: &str, v: &Value| {
        s.push(if s.is_empty() { '{' } else { ',' });
        // keys are fixed identifiers; values go through serde_json for escaping
        s.push('"');
        s.push_str(k);
        s.push_str("\":");
        s.push_str(&v.to_string());
    };
    push("time", &Value::from(rfc3339_ms(time)));
    push("topic", &Value::from(topic));
    push("container", &Value::from(container));
    for (k, v) in fields {
        push(k, v);
    }
    s.push_str("}\n");
    s
}

/// Decodes the task events the shim publishes into a few fields; any other payload is named
/// by its type.
fn decode(any: &Any) -> (String, Vec<(&'static str, Value)>) {
    fn parse<M: Message>(any: &Any) -> Option<M> {
        M::parse_from_bytes(&any.value).ok()
    }
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let name = name.strip_prefix("containerd.events.").unwrap_or(name);
    let unknown = || {
        (
            String::new(),
            vec![("type", Value::from(any.type_url.as_str()))],
        )
    };
    let pid = |p: u32| ("pid", Value::from(p));
    match name {
        "TaskCreate" => parse::<TaskCreate>(any).map(|e| (e.container_id, vec![pid(e.pid)])),
        "TaskStart" => parse::<TaskStart>(any).map(|e| (e.container_id, vec![pid(e.pid)])),
        "TaskExit" => parse::<TaskExit>(any).map(|e| {
            let mut f = vec![pid(e.pid), ("exit_status", Value::from(e.exit_status))];
            // `id` is the exec id for an exec, the container id for the init
            if !e.id.is_empty() && e.id != e.container_id {
                f.push(("exec_id", Value::from(e.id)));
            }
            (e.container_id, f)
        }),
        "TaskDelete" => parse::<TaskDelete>(any).map(|e| {
            (
                e.container_id,
                vec![pid(e.pid), ("exit_status", Value::from(e.exit_status))],
            )
        }),
        "TaskOOM" => parse::<TaskOOM>(any).map(|e| (e.container_id, vec![])),
        "TaskPaused" => parse::<TaskPaused>(any).map(|e| (e.container_id, vec![])),
        "TaskResumed" => parse::<TaskResumed>(any).map(|e| (e.container_id, vec![])),
        "TaskExecAdded" => parse::<TaskExecAdded>(any)
            .map(|e| (e.container_id, vec![("exec_id", Value::from(e.exec_id))])),
        "TaskExecStarted" => parse::<TaskExecStarted>(any).map(|e| {
            (
                e.container_id,
                vec![pid(e.pid), ("exec_id", Value::from(e.exec_id))],
            )
        }),
        _ => None,
    }
    .unwrap_or_else(unknown)
}

pub fn envelope_line(env: &Envelope) -> String {
    let time = env
        .timestamp
        .as_ref()
        .map(|t| {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
        })
        .unwrap_or_else(SystemTime::now);
    let (container, fields) = match env.event.as_ref() {
        Some(any) => decode(any),
        None => (String::new(), vec![]),
    };
    line(time, &env.topic, &container, &fields)
}

/// The Events service: every forwarded envelope becomes a line.
struct Sink(Arc<EventLog>);

#[async_trait]
impl Events for Sink {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        if let Some(env) = req.envelope.as_ref() {
            self.0.envelope(env);
        }
        Ok(Empty::default())
    }
}

/// Binds `socket` (a stale file from a killed shim is replaced) and serves the Events service
/// on the current runtime. The returned server must be kept: dropping it stops the service.
pub async fn serve(socket: &Path, log: Arc<EventLog>) -> Result<ttrpc::r#async::Server> {
    use ttrpc::r#async::transport::Listener;
    // `start` spawns a daemon only when no live shim serves the site, under the site lock
    // (site.rs): a socket file here belongs to a shim that is gone or on its way out.
    crate::site::remove_socket(socket);
    let std_listener = std::os::unix::net::UnixListener::bind(socket)
        .map_err(|e| ShimError::io(socket, "binding the events socket", e))?;
    let listener = Listener::try_from(std_listener)
        .map_err(|e| ShimError::io(socket, "serving the events socket", e))?;
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(listener)
        .register_service(create_events(Arc::new(Sink(log))));
    server.start().await.map_err(|e| {
        ShimError::io(
            socket,
            "serving the events socket",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
    use containerd_shim::protos::protobuf::MessageField;

    fn env<M: Message>(topic: &str, m: M, secs: i64) -> Envelope {
        Envelope {
            timestamp: MessageField::some(Timestamp {
                seconds: secs,
                nanos: 123_456_789,
                ..Default::default()
            }),
            namespace: "sgrun".into(),
            topic: topic.into(),
            event: MessageField::some(Any {
                type_url: format!("containerd.events.{}", M::NAME),
                value: m.write_to_bytes().unwrap(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn json(line: &str) -> Value {
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn an_exit_is_one_line_with_its_status() {
        let e = TaskExit {
            container_id: "blog".into(),
            id: "blog".into(),
            pid: 4242,
            exit_status: 3,
            ..Default::default()
        };
        let l = envelope_line(&env("/tasks/exit", e, 1_795_000_000));
        assert!(
            l.starts_with("{\"time\":\"2026-11-18T11:06:40.123Z\",\"topic\":\"/tasks/exit\",\"container\":\"blog\""),
            "{l}"
        );
        let v = json(&l);
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["exit_status"], 3);
        assert!(v.get("exec_id").is_none(), "{l}");
        // an exec's exit names it
        let e = TaskExit {
            container_id: "blog".into(),
            id: "sh1".into(),
            exit_status: 137,
            ..Default::default()
        };
        let v = json(&envelope_line(&env("/tasks/exit", e, 0)));
        assert_eq!(v["exec_id"], "sh1");
        assert_eq!(v["exit_status"], 137);
    }

    #[test]
    fn every_published_event_is_decoded() {
        let c = || "c1".to_string();
        let lines = [
            envelope_line(&env(
                "/tasks/create",
                TaskCreate {
                    container_id: c(),
                    pid: 7,
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/start",
                TaskStart {
                    container_id: c(),
                    pid: 7,
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/delete",
                TaskDelete {
                    container_id: c(),
                    pid: 7,
                    exit_status: 0,
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/oom",
                TaskOOM {
                    container_id: c(),
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/paused",
                TaskPaused {
                    container_id: c(),
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/resumed",
                TaskResumed {
                    container_id: c(),
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/exec-added",
                TaskExecAdded {
                    container_id: c(),
                    exec_id: "e1".into(),
                    ..Default::default()
                },
                0,
            )),
            envelope_line(&env(
                "/tasks/exec-started",
                TaskExecStarted {
                    container_id: c(),
                    exec_id: "e1".into(),
                    pid: 9,
                    ..Default::default()
                },
                0,
            )),
        ];
        for l in &lines {
            let v = json(l);
            assert_eq!(v["container"], "c1", "{l}");
            assert!(v.get("type").is_none(), "decoded, not named by type: {l}");
        }
        assert_eq!(json(&lines[0])["pid"], 7);
        assert_eq!(json(&lines[7])["exec_id"], "e1");
        assert_eq!(json(&lines[7])["pid"], 9);
    }

    #[test]
    fn an_unknown_payload_is_named_by_type() {
        let mut e = env("/x", TaskOOM::default(), 0);
        e.event.as_mut().unwrap().type_url = "example.com/Other".into();
        let v = json(&envelope_line(&e));
        assert_eq!(v["type"], "example.com/Other");
        assert_eq!(v["container"], "");
    }

    #[test]
    fn records_escape_their_values() {
        let l = line(
            SystemTime::UNIX_EPOCH,
            "/sgrun/restart-failed",
            "c\"1",
            &[
                ("attempt", Value::from(2)),
                ("error", Value::from("bad\nthing")),
            ],
        );
        assert!(l.starts_with(
            "{\"time\":\"1970-01-01T00:00:00.000Z\",\"topic\":\"/sgrun/restart-failed\""
        ));
        let v = json(&l);
        assert_eq!(v["container"], "c\"1");
        assert_eq!(v["error"], "bad\nthing");
    }

    #[test]
    fn long_texts_are_cut() {
        assert_eq!(short("sgrun create failed"), "sgrun create failed");
        let long = "é".repeat(300);
        let cut = short(&long);
        assert!(cut.len() <= MAX_TEXT + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
    }

    #[test]
    fn lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("events.jsonl"));
        log.record(TOPIC_SHIM_START, "c1", &[("pid", Value::from(1))]);
        log.record(
            TOPIC_SHIM_EXIT,
            "c1",
            &[("reason", Value::from("shutdown"))],
        );
        let text = std::fs::read_to_string(log.path()).unwrap();
        let topics: Vec<String> = text
            .lines()
            .map(|l| {
                json(&format!("{l}\n"))["topic"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(topics, [TOPIC_SHIM_START, TOPIC_SHIM_EXIT]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        // a missing directory is a logged error, not a panic
        EventLog::new(dir.path().join("no/such/dir/e.jsonl")).record("/x", "c", &[]);
    }
}

//! Logging the way runc does it, because callers parse it: `--log FILE` receives one line per
//! event, and with `--log-format json` each line is `{"level":..,"msg":..,"time":..}`.
//! containerd's runc shim reads the last `"level":"error"` line of that file as the reason a
//! command failed, so errors are always written there too.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    max_level: Level,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Sink {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() > self.max_level {
            return;
        }
        // libcontainer and libcgroups warn about things that are normal for sgrun (controllers
        // this host lacks, seccomp left to sgrun, ambient caps): debug only.
        let target = event.metadata().target();
        if self.max_level < Level::DEBUG
            && (target.starts_with("libcontainer") || target.starts_with("libcgroups"))
            && *event.metadata().level() > Level::ERROR
        {
            return;
        }
        let mut msg = MessageVisitor::default();
        event.record(&mut msg);
        let text = format!("{}{}", msg.message, msg.fields);
        write_line(&self.out, self.format, *event.metadata().level(), &text);
    }
}

fn write_line(out: &Mutex<Box<dyn Write + Send>>, format: LogFormat, level: Level, msg: &str) {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let level = level.as_str().to_ascii_lowercase();
    let line = match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
    };
    if let Ok(mut w) = out.lock() {
        let _ = writeln!(w, "{line}");
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Where the final error goes besides stderr.
pub struct ErrorLog {
    out: Option<Mutex<Box<dyn Write + Send>>>,
    format: LogFormat,
}

impl ErrorLog {
    pub fn error(&self, msg: &str) {
        if let Some(out) = &self.out {
            write_line(out, self.format, Level::ERROR, msg);
        }
    }
}

/// Set up tracing. Without --log, warnings and errors go to stderr (debug with --debug);
/// with --log they go to the file only, so that stdout/stderr stay the container's.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<ErrorLog> {
    let max_level = if debug { Level::DEBUG } else { Level::WARN };
    let open = |p: &Path| -> std::io::Result<File> {
        OpenOptions::new().create(true).append(true).open(p)
    };
    let (sink_out, err_out): (Box<dyn Write + Send>, Option<Box<dyn Write + Send>>) = match log {
        Some(p) => {
            let f = open(p)?;
            let g = f.try_clone()?;
            (Box::new(f), Some(Box::new(g)))
        }
        None => (Box::new(std::io::stderr()), None),
    };
    let sink = Sink {
        out: Mutex::new(sink_out),
        format,
        max_level,
    };
    let _ = tracing_subscriber::registry().with(sink).try_init();
    Ok(ErrorLog {
        out: err_out.map(Mutex::new),
        format,
    })
}

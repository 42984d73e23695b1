//! The shim's log: logrus text lines (`time=.. level=.. msg=.. key=value`) into the `log` FIFO
//! containerd opens in the bundle before it starts a shim, which it copies into its own log.
//!
//! The FIFO is written non-blocking and a line that does not fit is dropped: a containerd that
//! stopped reading must never stall the shim (its single thread also serves the Task API).
//! Span fields (container, tenant, profile) are appended to every line inside the span.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    max: Level,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), format!("{value:?}"));
        }
    }
}

/// A span's fields, formatted once when it is created.
struct SpanFields(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Sink {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f.rest));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(sf) = span.extensions().get::<SpanFields>() {
                    f.rest.push_str(&sf.0);
                }
            }
        }
        let line = format_line(level, &f.message, &f.rest);
        if let Ok(mut w) = self.out.lock() {
            // one write per line; EAGAIN (FIFO full) or EPIPE (nobody reading): dropped
            let _ = w.write(line.as_bytes());
        }
    }
}

fn format_line(level: Level, message: &str, fields: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let level = match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    };
    format!(
        "time=\"{}.{:09}\" level={level} msg={message:?}{fields} runtime=io.containerd.sgrun.v1\n",
        now.as_secs(),
        now.subsec_nanos()
    )
}

/// Logs to `out` (the `log` FIFO, or stderr) at info, or debug with `-debug`.
pub fn init(out: Box<dyn Write + Send>, debug: bool) {
    let sink = Sink {
        out: Mutex::new(out),
        max: if debug { Level::DEBUG } else { Level::INFO },
    };
    // a second init (tests) keeps the first subscriber
    let _ = tracing_subscriber::registry().with(sink).try_init();
}

/// Opens the `log` FIFO in the current directory (the bundle) write-only and non-blocking.
/// containerd has opened its read end before starting the shim; without one, stderr.
pub fn open_fifo() -> Box<dyn Write + Send> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("log")
    {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stderr()),
    }
}

/// Opens the site-mode log file for appending (created 0640); without it, stderr.
pub fn open_append(path: &std::path::Path) -> Box<dyn Write + Send> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
    {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stderr()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_logrus_text() {
        let l = format_line(Level::WARN, "exit \"x\"", " container=\"c1\"");
        assert!(l.starts_with("time=\""), "{l}");
        assert!(
            l.contains(" level=warning msg=\"exit \\\"x\\\"\" container=\"c1\""),
            "{l}"
        );
        assert!(l.ends_with('\n'));
    }
}

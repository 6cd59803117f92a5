//! Logs: one JSON object per line in the format of `docs/operators-guide.md`, or plain text for a
//! person watching a terminal.
//!
//! ```json
//! {"timestamp":"2025-10-13T14:30:00.000Z","level":"INFO","component":"connection_pool",
//!  "message":"Connection pool initialized: min_size=2, max_size=10",
//!  "context":{"min_size":2,"max_size":10,"database":"app"}}
//! ```
//!
//! `component` is `connection_pool` for the pool's own events and the module name for the
//! server's (`http`, `mcp`, `demo`, ...); `context` holds the event's structured fields.
//! Levels are named: DEBUG, INFO, WARNING, ERROR.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use wirepool::observe::report::rfc3339_millis;

/// Where and how to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogSettings {
    pub(crate) level: LevelFilter,
    pub(crate) file: Option<PathBuf>,
    pub(crate) format: LogFormat,
}

/// One JSON object per line, or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Json,
    Text,
}

/// Parses `LOG_LEVEL` (DEBUG, INFO, WARNING, ERROR, CRITICAL, any case;
/// also TRACE, WARN, OFF).
pub(crate) fn parse_level(v: &str) -> Result<LevelFilter, String> {
    match v.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Ok(LevelFilter::TRACE),
        "DEBUG" => Ok(LevelFilter::DEBUG),
        "INFO" => Ok(LevelFilter::INFO),
        "WARNING" | "WARN" => Ok(LevelFilter::WARN),
        "ERROR" | "CRITICAL" => Ok(LevelFilter::ERROR),
        "OFF" => Ok(LevelFilter::OFF),
        _ => Err(format!(
            "LOG_LEVEL: `{v}` is not a log level (DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        )),
    }
}

/// Parses `LOG_FORMAT` (`json` or `text`).
pub(crate) fn parse_format(v: &str) -> Result<LogFormat, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err(format!(
            "LOG_FORMAT: `{v}` is not a log format (json or text)"
        )),
    }
}

/// Installs the global subscriber.
pub(crate) fn init(s: &LogSettings) -> Result<(), String> {
    let sink: Box<dyn Write + Send> = match &s.file {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("LOG_FILE: cannot open {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    // The MCP library's own events (sessions opened and closed, each error answer sent)
    // are protocol chatter without the operator's context: errors only, unless
    // LOG_LEVEL=DEBUG asks for everything.
    let library = if s.level >= LevelFilter::DEBUG {
        s.level
    } else {
        s.level.min(LevelFilter::ERROR)
    };
    let filter = Targets::new()
        .with_default(s.level)
        .with_target("rmcp", library);
    let layer = LineLayer {
        sink: Mutex::new(sink),
        format: s.format,
    }
    .with_filter(filter);
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Formats each event as one line and writes it whole.
struct LineLayer {
    sink: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = match self.format {
            LogFormat::Json => json_line(
                SystemTime::now(),
                *meta.level(),
                meta.target(),
                fields.message,
                fields.context,
            ),
            LogFormat::Text => text_line(
                SystemTime::now(),
                *meta.level(),
                meta.target(),
                &fields.message,
            ),
        };
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }
}

/// The level names.
fn level_name(l: Level) -> &'static str {
    match l {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// `connection_pool` for the library's events, the module for the server's.
fn component(target: &str) -> &str {
    if target == "wirepool" || target.starts_with("wirepool::") {
        return "connection_pool";
    }
    match target.strip_prefix("wirepool_server::") {
        Some(rest) => rest.split("::").next().unwrap_or(rest),
        None => target,
    }
}

fn json_line(
    t: SystemTime,
    level: Level,
    target: &str,
    message: String,
    context: Map<String, Value>,
) -> String {
    let mut o = Map::with_capacity(5);
    o.insert("timestamp".into(), Value::String(rfc3339_millis(t)));
    o.insert("level".into(), Value::String(level_name(level).into()));
    o.insert("component".into(), Value::String(component(target).into()));
    o.insert("message".into(), Value::String(message));
    o.insert("context".into(), Value::Object(context));
    let mut line = Value::Object(o).to_string();
    line.push('\n');
    line
}

fn text_line(t: SystemTime, level: Level, target: &str, message: &str) -> String {
    format!(
        "{} {:<7} {}: {message}\n",
        rfc3339_millis(t),
        level_name(level),
        component(target)
    )
}

/// The message and the other fields of an event.
#[derive(Default)]
struct Fields {
    message: String,
    context: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "message" {
            self.message = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.context.insert(field.name().to_string(), v);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_has_the_guides_fields() {
        let mut ctx = Map::new();
        ctx.insert("min_size".into(), Value::from(2));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_760_365_800_000);
        let line = json_line(
            t,
            Level::WARN,
            "wirepool::pool",
            "Connection pool initialized".into(),
            ctx,
        );
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], "2025-10-13T14:30:00.000Z");
        assert_eq!(v["level"], "WARNING");
        assert_eq!(v["component"], "connection_pool");
        assert_eq!(v["message"], "Connection pool initialized");
        assert_eq!(v["context"]["min_size"], 2);
    }

    #[test]
    fn components_and_levels() {
        assert_eq!(component("wirepool::leak"), "connection_pool");
        assert_eq!(component("wirepool_server::http"), "http");
        assert_eq!(component("wirepool_server::demo::load"), "demo");
        assert_eq!(parse_level("warning"), Ok(LevelFilter::WARN));
        assert_eq!(parse_level("CRITICAL"), Ok(LevelFilter::ERROR));
        assert!(parse_level("loud")
            .unwrap_err()
            .starts_with("LOG_LEVEL: `loud`"));
        assert!(parse_format("xml").unwrap_err().starts_with("LOG_FORMAT"));
    }
}

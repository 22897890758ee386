//! The last log lines, in memory, for the Management Dashboard's log viewer: a `tracing`
//! layer that keeps the newest [`LOG_LINES`] events (oldest dropped first).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Lines kept.
pub const LOG_LINES: usize = 2000;

/// One log event.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: tracing::Level,
    /// The message with its fields (`pair=lab-1 side=source …`).
    pub message: String,
}

/// The shared buffer.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
}

impl LogBuffer {
    /// The newest lines at `min_level` or more severe, newest first.
    pub fn recent(&self, min_level: tracing::Level, limit: usize) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lines.iter().rev().filter(|l| l.level <= min_level).take(limit).cloned().collect()
    }

    /// A layer that feeds this buffer.
    pub fn layer(&self) -> LogLayer {
        LogLayer { buffer: self.clone() }
    }

    fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// The `tracing` layer of a [`LogBuffer`].
#[derive(Debug)]
pub struct LogLayer {
    buffer: LogBuffer,
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: String,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut c = Collect::default();
        event.record(&mut c);
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        self.buffer.push(LogLine {
            at_ms,
            level: *event.metadata().level(),
            message: format!("{}{}", c.message, c.fields),
        });
    }
}

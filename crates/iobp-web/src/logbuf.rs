//! The last log lines, in memory, for the Management Dashboard's log viewer: a `tracing`
//! layer that keeps the newest [`LOG_LINES`] events (oldest dropped first). And the level in
//! force: [`LogBuffer::level_layer`] filters every layer of the process by the `log_level`
//! setting, which [`LogBuffer::set_level`] changes at once (the settings say it applies
//! without a restart). The filter answers per call site and is asked again only when the level
//! changes, so a disabled `debug!` costs what it costs under a fixed filter.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
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

/// The shared buffer, and the level in force.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
    /// The most verbose level let through, as [`level_code`] numbers it.
    level: Arc<AtomicU8>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self {
            lines: Arc::default(),
            level: Arc::new(AtomicU8::new(level_code(LevelFilter::INFO))),
        }
    }
}

/// A level as a number that grows with verbosity (off 0, error 1, …, trace 5).
fn level_code(level: LevelFilter) -> u8 {
    match level.into_level() {
        None => 0,
        Some(tracing::Level::ERROR) => 1,
        Some(tracing::Level::WARN) => 2,
        Some(tracing::Level::INFO) => 3,
        Some(tracing::Level::DEBUG) => 4,
        Some(tracing::Level::TRACE) => 5,
    }
}

fn level_of(code: u8) -> LevelFilter {
    match code {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
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

    /// A layer that lets through only events and spans at the level in force (for every
    /// layer of the subscriber it is part of).
    pub fn level_layer(&self) -> LevelLayer {
        LevelLayer { level: self.level.clone() }
    }

    /// The level in force.
    pub fn level(&self) -> LevelFilter {
        level_of(self.level.load(Ordering::Acquire))
    }

    /// Puts `level` (`error`, `warn`, `info`, `debug`, `trace`) in force at once; false (and
    /// nothing changed) if it is none of these.
    pub fn set_level(&self, level: &str) -> bool {
        let Ok(level) = level.parse::<LevelFilter>() else {
            return false;
        };
        if self.level.swap(level_code(level), Ordering::AcqRel) != level_code(level) {
            // Call sites cached their answer (and the global maximum level): ask them again.
            tracing::callsite::rebuild_interest_cache();
        }
        true
    }

    fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// The level filter of a [`LogBuffer`].
#[derive(Debug)]
pub struct LevelLayer {
    level: Arc<AtomicU8>,
}

impl LevelLayer {
    fn lets_through(&self, level: tracing::Level) -> bool {
        level_of(self.level.load(Ordering::Acquire)) >= level
    }
}

impl<S: tracing::Subscriber> Layer<S> for LevelLayer {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
        if self.lets_through(*metadata.level()) { Interest::always() } else { Interest::never() }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.lets_through(*metadata.level())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(level_of(self.level.load(Ordering::Acquire)))
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

#[cfg(test)]
mod tests {
    use tracing_subscriber::prelude::*;

    use super::*;

    #[test]
    fn a_new_level_applies_at_once_to_call_sites_already_seen() {
        let logs = LogBuffer::default();
        let subscriber =
            tracing_subscriber::Registry::default().with(logs.layer()).with(logs.level_layer());
        tracing::subscriber::with_default(subscriber, || {
            let say = |n: u32| {
                tracing::debug!("debug {n}");
                tracing::info!("info {n}");
            };
            say(1);
            assert!(logs.set_level("debug"));
            say(2);
            assert!(logs.set_level("warn"));
            say(3);
            assert!(!logs.set_level("loud"), "not a level");
            assert_eq!(logs.level(), LevelFilter::WARN, "unchanged by a bad level");
            assert!(logs.set_level("info"));
            say(4);
        });
        let mut seen: Vec<String> =
            logs.recent(tracing::Level::TRACE, 100).into_iter().map(|l| l.message).collect();
        seen.reverse();
        assert_eq!(seen, ["info 1", "debug 2", "info 2", "info 4"]);
    }
}

//! `modbus` source: polls a Modbus device (TCP, or RTU on a serial port) and stores one
//! message per executed poll.
//!
//! # Connections
//! The connector loop ([`crate::connector`]) opens the device — a TCP connection
//! ([`crate::net::Dial`]) or the serial port ([`crate::serial::PortOpener`]: the same settings,
//! checks, lock and RS-485 switching as a `serial` side) — shows it, and after a failure backs
//! off and opens it again. One session runs every poll of the side on that one connection.
//!
//! # Schedule
//! Each poll has its own interval, counted from the session's start. The session runs the poll
//! that is due first (ties: the earlier in the list), one request at a time: a poll never runs
//! twice at once, and on RTU only one request is ever on the bus (after each answer the line
//! is left quiet for the protocol's 3.5 character times). When a poll is late by a whole
//! interval or more (a slow device, many polls on a slow line), the missed cycles are
//! *skipped* — the poll runs once, then keeps to its original grid — rather than run in a
//! burst to catch up: a burst would read the same values again a few ms apart and push every
//! other poll late too (tokio's `MissedTickBehavior::Skip`, done by hand because one task
//! serves all polls).
//!
//! The schedule does not depend on the destination: readings are stored while it is down (the
//! buffer fills). A reading the buffer cannot take (storage full) is refused: counted as
//! refused, reported, and the schedule goes on — it is never silently dropped. At most
//! [`WINDOW`] readings (and [`WINDOW_BYTES`]) wait for their fdatasync while polling goes on;
//! beyond that polls wait for the disk (and then skip cycles as above).
//!
//! # Durability
//! A reading counts as received (and shows in the Live View) only once its commit resolved,
//! i.e. it is on disk; when the pair stops, waiting readings get [`WIND_DOWN`] to become
//! durable, and what did not is counted as refused.
//!
//! # Errors
//! - An exception response (illegal data address, device busy, …) fails that poll only: it is
//!   counted (`errors`, and `modbus_poll_errors` per pair), never stored as a value, and the
//!   side shows Yellow naming the poll and the exception while any poll fails; other polls
//!   go on. The first success clears it.
//! - No answer within `timeout_ms`, a transport error or a garbled answer ends the session:
//!   Red with the reason, and the connector loop reconnects (reopens the port) after the
//!   backoff. A late answer on the old connection could otherwise be taken for the next
//!   request's.
//!
//! # The message
//! One JSON object per executed poll (the manual, `docs/manual/field-protocols.md`, and the API description show the same):
//!
//! ```json
//! {"poll":"tank","unit":1,"function":"holding_registers","address":100,"count":4,
//!  "at":"2026-12-04T10:00:00.123Z","elapsed_ms":3.141,
//!  "registers":[100,101,102,103],
//!  "values":{"level":12.5,"alarm":true}}
//! ```
//!
//! `at` is when the request was sent (UTC, milliseconds), `elapsed_ms` how long the device
//! took to answer (to the microsecond). Register functions carry `registers` (unsigned 16-bit
//! words), bit functions `bits` (booleans). `values` is present only when the poll has
//! `fields`: each field's value decoded from its registers (`u16`, `i16`, `u32`, `i32`: an
//! integer, `f32`: a number — `null` for NaN or infinity — `bool`: the bit, or the register
//! not zero), times `scale` plus `offset_value` when given (then a number).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use iobp_config::{
    ModbusField, ModbusFunction, ModbusPoll, ModbusSpec, ModbusTransport, ModbusValueType,
    TcpClientSpec, WordOrder,
};
use iobp_log::Commit;
use serde::Serialize;
use serde::ser::SerializeMap;
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::{Slave, SlaveContext};

use crate::connector::{Ended, Progress, Session};
use crate::net::Dial;
use crate::serial::PortOpener;
use crate::side::{IntakeError, SideCtx, SideError};
use crate::source::stream::WIND_DOWN;
use crate::stats::{Color, Side};

/// Readings waiting for their fdatasync while polling goes on; polling waits when this many
/// (or [`WINDOW_BYTES`]) are outstanding (the disk, not the device, is then the bottleneck).
/// Each reading is its own commit, so the window must span a slow fdatasync at the highest
/// poll rate: 32 held 2,000 polls/s to 1,400 on a busy test machine, 256 keeps up.
const WINDOW: usize = 256;
/// Bytes of readings waiting for their fdatasync, at most (as a stream source's connection).
const WINDOW_BYTES: usize = 1024 * 1024;

/// Runs the source until the pair stops.
pub(crate) async fn source(ctx: SideCtx, spec: ModbusSpec) {
    let timeout = Duration::from_millis(spec.transport.timeout_ms());
    match spec.transport {
        ModbusTransport::Tcp(t) => {
            let dial = Dial::new(&TcpClientSpec {
                host: t.host,
                port: t.port,
                tls: iobp_config::TlsSpec::default(),
                framing: iobp_config::FramingSpec::default(),
                ack: iobp_config::AckSpec::None,
                connect_timeout_ms: Some(timeout.as_millis().try_into().unwrap_or(u64::MAX)),
                write_timeout_ms: None,
            });
            let session = Polling { polls: spec.polls.into(), timeout, quiet: None };
            crate::connector::run(ctx, Side::Source, dial, session).await;
        }
        ModbusTransport::Rtu(r) => {
            let quiet = Some(silent_interval(r.baud_rate));
            let opener = PortOpener::new(r.serial(), Side::Source, &ctx);
            let session = Polling { polls: spec.polls.into(), timeout, quiet };
            crate::connector::run(ctx, Side::Source, opener, session).await;
        }
    }
}

/// Modbus RTU's frame gap: 3.5 character times (11 bits each), at least 1.75 ms (the
/// specification's fixed value above 19200 baud).
fn silent_interval(baud: u32) -> Duration {
    Duration::from_micros((38_500_000 / u64::from(baud.max(1))).max(1750))
}

/// The session: every poll on one connection.
struct Polling {
    polls: Arc<[ModbusPoll]>,
    timeout: Duration,
    /// RTU: the quiet time left on the line after each answer.
    quiet: Option<Duration>,
}

impl Session<crate::net::Stream> for Polling {
    fn about(&self, peer: &str) -> String {
        format!("polling {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: crate::net::Stream,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let client = tokio_modbus::client::tcp::attach(io);
        self.poll(ctx, client, peer, progress).await
    }
}

impl Session<serial2_tokio::SerialPort> for Polling {
    fn about(&self, peer: &str) -> String {
        format!("polling {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: serial2_tokio::SerialPort,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        // Stale bytes from before (a device's late answer to our last session) would be
        // taken for the first answer.
        let _ = io.discard_buffers();
        let client = tokio_modbus::client::rtu::attach(io);
        self.poll(ctx, client, peer, progress).await
    }
}

/// A poll's place in the schedule and whether it is failing.
struct Scheduled {
    due: Instant,
    interval: Duration,
    /// The exception it last answered, while it fails.
    failing: Option<String>,
    failures: u64,
}

/// A reading queued into the buffer, counted once durable.
struct Waiting {
    commit: Commit,
    reading: Bytes,
}

impl Polling {
    async fn poll(
        &self,
        ctx: &SideCtx,
        mut client: Context,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        // What the connector loop shows for the connection (Green, or Yellow with a serial
        // driver's ignored settings), with the polls: shown again once no poll fails.
        let status = &ctx.stats.source;
        let healthy =
            (status.color(), format!("{}; {} poll(s)", status.detail(), self.polls.len()));
        status.set(healthy.0, healthy.1.clone());
        let start = Instant::now();
        let mut schedule: Vec<Scheduled> = self
            .polls
            .iter()
            .map(|p| Scheduled {
                due: start,
                interval: Duration::from_millis(p.interval_ms),
                failing: None,
                failures: 0,
            })
            .collect();
        let mut waiting: VecDeque<Waiting> = VecDeque::new();
        let mut waiting_bytes = 0usize;
        let ended = loop {
            // The poll due first; the list is never empty (validation).
            let Some((i, due)) =
                schedule.iter().enumerate().map(|(i, s)| (i, s.due)).min_by_key(|(_, d)| *d)
            else {
                break Ok(Ended::Cancelled);
            };
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break Ok(Ended::Cancelled),
                r = first_commit(&mut waiting) => {
                    if let Some(w) = waiting.pop_front() {
                        waiting_bytes -= w.reading.len();
                        stored(ctx, &w, r, peer)?;
                        progress.made();
                    }
                    continue;
                }
                () = tokio::time::sleep_until(due), if waiting.len() < WINDOW && waiting_bytes < WINDOW_BYTES => {}
            }
            let poll = &self.polls[i];
            let sent = SystemTime::now();
            let began = Instant::now();
            client.set_slave(Slave(poll.unit));
            let answer = tokio::time::timeout(self.timeout, read(&mut client, poll)).await;
            let elapsed = began.elapsed();
            reschedule(&mut schedule[i], Instant::now());
            let data = match answer {
                Err(_) => {
                    ctx.stats.modbus_poll_errors.fetch_add(1, Ordering::Relaxed);
                    break Err(SideError::Peer(format!(
                        "poll `{}`: unit {} did not answer within {} ms",
                        poll.name,
                        poll.unit,
                        self.timeout.as_millis()
                    )));
                }
                Ok(Err(tokio_modbus::Error::Transport(e))) => {
                    ctx.stats.modbus_poll_errors.fetch_add(1, Ordering::Relaxed);
                    break Err(SideError::Peer(format!("poll `{}`: {e}", poll.name)));
                }
                Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                    ctx.stats.modbus_poll_errors.fetch_add(1, Ordering::Relaxed);
                    break Err(SideError::Protocol(format!(
                        "poll `{}`: the answer does not match the request: {e}",
                        poll.name
                    )));
                }
                Ok(Ok(Err(code))) => {
                    failed(ctx, poll, &mut schedule[i], &exception_text(code));
                    show(ctx, &self.polls, &schedule, &healthy);
                    self.rest().await;
                    continue;
                }
                Ok(Ok(Ok(data))) => data,
            };
            if schedule[i].failing.take().is_some() {
                show(ctx, &self.polls, &schedule, &healthy);
            }
            let reading = Bytes::from(message(poll, sent, elapsed, &data));
            match ctx.intake(std::slice::from_ref(&reading)).await {
                Ok(commit) => {
                    waiting_bytes += reading.len();
                    waiting.push_back(Waiting { commit, reading });
                }
                Err(IntakeError::Full(why)) => {
                    ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                    ctx.error(Side::Source, format!("poll readings refused: {why}"));
                }
                Err(IntakeError::Broken(e)) => {
                    break Err(SideError::Buffer { doing: "storing a reading", source: e });
                }
            }
            self.rest().await;
        };
        wind_down(ctx, &mut waiting, peer).await;
        ended
    }

    /// RTU: the line stays quiet for 3.5 characters before the next request.
    async fn rest(&self) {
        if let Some(q) = self.quiet {
            tokio::time::sleep(q).await;
        }
    }
}

/// The next time a poll is due after it ran at `now`: one interval later on its grid, skipping
/// the cycles it missed (see the module docs).
fn reschedule(s: &mut Scheduled, now: Instant) {
    s.due += s.interval;
    if s.due <= now {
        let behind = now - s.due;
        let missed = behind.as_nanos() / s.interval.as_nanos().max(1) + 1;
        s.due += s.interval * u32::try_from(missed).unwrap_or(u32::MAX);
    }
}

/// A poll answered an exception: counted (every time) and reported (when it starts failing or
/// fails differently, so a poll failing every 10 ms does not flood the log).
fn failed(ctx: &SideCtx, poll: &ModbusPoll, s: &mut Scheduled, why: &str) {
    s.failures += 1;
    ctx.stats.modbus_poll_errors.fetch_add(1, Ordering::Relaxed);
    if s.failing.as_deref() == Some(why) {
        ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
    } else {
        ctx.error(Side::Source, format!("poll `{}` (unit {}): {why}", poll.name, poll.unit));
        s.failing = Some(why.to_string());
    }
}

/// The side's status: Yellow naming the failing polls, else as the connection is shown.
fn show(ctx: &SideCtx, polls: &[ModbusPoll], schedule: &[Scheduled], healthy: &(Color, String)) {
    let (color, healthy) = healthy;
    let failing: Vec<String> = polls
        .iter()
        .zip(schedule)
        .filter_map(|(p, s)| {
            s.failing.as_ref().map(|why| format!("`{}` {why} ({} failures)", p.name, s.failures))
        })
        .collect();
    if failing.is_empty() {
        ctx.stats.source.set(*color, healthy.as_str());
    } else {
        let shown: Vec<&str> = failing.iter().take(4).map(String::as_str).collect();
        let more = failing.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        ctx.stats.source.set(
            Color::Yellow,
            format!(
                "{healthy}; {} of {} failing: {}{more}",
                failing.len(),
                polls.len(),
                shown.join("; ")
            ),
        );
    }
}

/// An exception in an operator's words, with its code.
fn exception_text(code: tokio_modbus::ExceptionCode) -> String {
    use tokio_modbus::ExceptionCode as E;
    let what = match code {
        E::IllegalFunction => "illegal function",
        E::IllegalDataAddress => "illegal data address",
        E::IllegalDataValue => "illegal data value",
        E::ServerDeviceFailure => "server device failure",
        E::Acknowledge => "acknowledge (busy with a long command)",
        E::ServerDeviceBusy => "server device busy",
        E::MemoryParityError => "memory parity error",
        E::GatewayPathUnavailable => "gateway path unavailable",
        E::GatewayTargetDevice => "gateway target device failed to respond",
        E::Custom(_) => "exception",
    };
    format!("exception {} ({what})", u8::from(code))
}

/// What a poll read.
enum Data {
    Registers(Vec<u16>),
    Bits(Vec<bool>),
}

async fn read(client: &mut Context, poll: &ModbusPoll) -> tokio_modbus::Result<Data> {
    let (a, n) = (poll.address, poll.count);
    Ok(match poll.function {
        ModbusFunction::Coils => client.read_coils(a, n).await?.map(Data::Bits),
        ModbusFunction::DiscreteInputs => client.read_discrete_inputs(a, n).await?.map(Data::Bits),
        ModbusFunction::HoldingRegisters => {
            client.read_holding_registers(a, n).await?.map(Data::Registers)
        }
        ModbusFunction::InputRegisters => {
            client.read_input_registers(a, n).await?.map(Data::Registers)
        }
    })
}

/// The stored message (see the module docs).
#[derive(Serialize)]
struct Reading<'a> {
    poll: &'a str,
    unit: u8,
    function: &'static str,
    address: u16,
    count: u16,
    at: String,
    elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    registers: Option<&'a [u16]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bits: Option<&'a [bool]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<Values<'a>>,
}

/// `values`, in the order of the poll's fields.
struct Values<'a>(Vec<(&'a str, Value)>);

impl Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A decoded value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
enum Value {
    Int(i64),
    Number(f64),
    Bool(bool),
}

fn message(poll: &ModbusPoll, at: SystemTime, elapsed: Duration, data: &Data) -> Vec<u8> {
    let (registers, bits) = match data {
        Data::Registers(r) => (Some(r.as_slice()), None),
        Data::Bits(b) => (None, Some(b.as_slice())),
    };
    let values = (!poll.fields.is_empty())
        .then(|| Values(poll.fields.iter().map(|f| (f.name.as_str(), decode(f, data))).collect()));
    let reading = Reading {
        poll: &poll.name,
        unit: poll.unit,
        function: poll.function.as_str(),
        address: poll.address,
        count: poll.count,
        at: rfc3339_millis(at),
        elapsed_ms: (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
        registers,
        bits,
        values,
    };
    // Serialising plain numbers, strings and booleans cannot fail.
    serde_json::to_vec(&reading).unwrap_or_default()
}

/// A field's value from the poll's data; validation keeps `offset + width` within the block,
/// and a short answer (which tokio-modbus refuses anyway) decodes as 0.
fn decode(f: &ModbusField, data: &Data) -> Value {
    let at = usize::from(f.offset);
    let raw = match data {
        Data::Bits(b) => return Value::Bool(b.get(at).copied().unwrap_or(false)),
        Data::Registers(r) => {
            let w = |i: usize| r.get(at + i).copied().unwrap_or(0);
            let pair = || match f.word_order {
                WordOrder::Big => (u32::from(w(0)) << 16) | u32::from(w(1)),
                WordOrder::Little => (u32::from(w(1)) << 16) | u32::from(w(0)),
            };
            match f.kind {
                ModbusValueType::Bool => return Value::Bool(w(0) != 0),
                ModbusValueType::U16 => Value::Int(i64::from(w(0))),
                ModbusValueType::I16 => Value::Int(i64::from(w(0).cast_signed())),
                ModbusValueType::U32 => Value::Int(i64::from(pair())),
                ModbusValueType::I32 => Value::Int(i64::from(pair().cast_signed())),
                ModbusValueType::F32 => Value::Number(f64::from(f32::from_bits(pair()))),
            }
        }
    };
    if f.scale.is_none() && f.offset_value.is_none() {
        return raw;
    }
    #[allow(clippy::cast_precision_loss)] // at most 32 bits: exact in an f64
    let x = match raw {
        Value::Int(i) => i as f64,
        Value::Number(x) => x,
        Value::Bool(b) => return Value::Bool(b),
    };
    Value::Number(x * f.scale.map_or(1.0, |s| s.0) + f.offset_value.map_or(0.0, |o| o.0))
}

/// `2026-12-04T10:00:00.123Z`.
fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = crate::source::stream::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

async fn first_commit(
    waiting: &mut VecDeque<Waiting>,
) -> iobp_log::Result<std::ops::RangeInclusive<u64>> {
    match waiting.front_mut() {
        Some(w) => (&mut w.commit).await,
        None => std::future::pending().await,
    }
}

/// A reading's commit resolved: counted and shown once durable; a failed commit ends the
/// session (the buffer failed; the engine heals it).
fn stored(
    ctx: &SideCtx,
    w: &Waiting,
    r: iobp_log::Result<std::ops::RangeInclusive<u64>>,
    peer: &Arc<str>,
) -> Result<(), SideError> {
    match r {
        Ok(seqs) => {
            let n = w.reading.len() as u64;
            ctx.accepted_counts(1, n, std::slice::from_ref(&w.reading), *seqs.end(), Some(peer));
            Ok(())
        }
        Err(e) => {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            Err(SideError::Buffer { doing: "storing a reading", source: e })
        }
    }
}

/// The session ends: readings waiting for their commit are counted once durable (within
/// [`WIND_DOWN`]); what did not become durable is counted as refused.
async fn wind_down(ctx: &SideCtx, waiting: &mut VecDeque<Waiting>, peer: &Arc<str>) {
    let deadline = Instant::now() + WIND_DOWN;
    while let Some(mut w) = waiting.pop_front() {
        match tokio::time::timeout_at(deadline, &mut w.commit).await {
            Ok(r @ Ok(_)) => {
                let _ = stored(ctx, &w, r, peer);
            }
            Ok(Err(e)) => {
                ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                ctx.error(Side::Source, format!("a poll reading was not stored: {e}"));
            }
            Err(_) => {
                ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                ctx.error(
                    Side::Source,
                    "a poll reading was not confirmed durable when the session ended; it may \
                     still be delivered",
                );
                let (commit, bytes) = (w.commit, w.reading.len() as u64);
                ctx.count_if_stored_later(async move { commit.await.map(Some) }, 1, bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> ModbusField {
        serde_json::from_str(json).expect("field")
    }

    #[test]
    fn fields_decode_types_word_order_and_scaling() {
        let regs = Data::Registers(vec![0xFFFF, 0x0001, 0x4148, 0x0000, 0x0000, 0x4148]);
        let d = |j: &str| decode(&field(j), &regs);
        assert_eq!(d(r#"{"name":"a","offset":0,"type":"u16"}"#), Value::Int(65535));
        assert_eq!(d(r#"{"name":"a","offset":0,"type":"i16"}"#), Value::Int(-1));
        assert_eq!(d(r#"{"name":"a","offset":0,"type":"u32"}"#), Value::Int(0xFFFF_0001));
        assert_eq!(d(r#"{"name":"a","offset":0,"type":"i32"}"#), Value::Int(-65535));
        assert_eq!(d(r#"{"name":"a","offset":2,"type":"f32"}"#), Value::Number(12.5));
        assert_eq!(
            d(r#"{"name":"a","offset":4,"type":"f32","word_order":"little"}"#),
            Value::Number(12.5)
        );
        assert_eq!(
            d(r#"{"name":"a","offset":1,"type":"u16","scale":0.5,"offset_value":-1}"#),
            Value::Number(-0.5)
        );
        assert_eq!(d(r#"{"name":"a","offset":3,"type":"bool"}"#), Value::Bool(false));
        let bits = Data::Bits(vec![false, true]);
        assert_eq!(
            decode(&field(r#"{"name":"b","offset":1,"type":"bool"}"#), &bits),
            Value::Bool(true)
        );
    }

    #[test]
    fn the_message_has_the_documented_shape() {
        let poll: ModbusPoll = serde_json::from_str(
            r#"{"name":"tank","unit":1,"function":"holding_registers","address":100,"count":2,
                "interval_ms":1000,"fields":[{"name":"level","offset":0,"type":"u16","scale":0.5}]}"#,
        )
        .expect("poll");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_378_400_123);
        let m = message(&poll, at, Duration::from_micros(3141), &Data::Registers(vec![25, 7]));
        assert_eq!(
            String::from_utf8(m).expect("utf-8"),
            r#"{"poll":"tank","unit":1,"function":"holding_registers","address":100,"count":2,"at":"2026-12-04T10:00:00.123Z","elapsed_ms":3.141,"registers":[25,7],"values":{"level":12.5}}"#
        );
    }

    #[test]
    fn a_late_poll_skips_the_cycles_it_missed() {
        let t0 = Instant::now();
        let mut s =
            Scheduled { due: t0, interval: Duration::from_millis(10), failing: None, failures: 0 };
        reschedule(&mut s, t0 + Duration::from_millis(3));
        assert_eq!(s.due, t0 + Duration::from_millis(10));
        // Ran 35 ms late: the next is on the grid after now, not three catch-up runs.
        reschedule(&mut s, t0 + Duration::from_millis(45));
        assert_eq!(s.due, t0 + Duration::from_millis(50));
    }
}

//! What the API sends and receives. Engine and store types are not serialised directly; they
//! are converted here, so their internals can change without changing the API.

use std::time::SystemTime;

use iobp_engine::{FeedEntry, PairSnapshot, Rejected, SideSnapshot};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// Login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    /// The current password.
    pub current_password: String,
    /// The new password (at least 10 characters, not the user name).
    pub new_password: String,
}

/// The logged-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    /// User name.
    pub username: String,
    /// `admin`, `operator`, `viewer` or `relay`.
    pub role: String,
    /// The password must be changed before anything else is allowed.
    pub must_change_password: bool,
    /// Send this in `X-CSRF-Token` with every state-changing request.
    pub csrf_token: String,
    /// `ops` or `mgmt`.
    pub portal: String,
}

/// One side's connection status.
#[derive(Debug, Serialize, ToSchema)]
pub struct SideStatusDto {
    /// Connector type (`tcp_server`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// `green` connected and healthy, `yellow` connecting, `red` disconnected or error,
    /// `white` stopped.
    pub status: String,
    /// What it is doing right now.
    pub detail: String,
    /// Connected peers (at most 16 listed).
    pub peers: Vec<String>,
    /// Number of connected peers.
    pub connections: u64,
    /// A relay source: how far behind its sender it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<RelayLagDto>,
    /// A serial side whose driver counts them (Linux): line errors since the pair started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_errors: Option<LineErrorsDto>,
}

/// Errors a serial port's UART counted: a wrong baud rate or parity, a noisy line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineErrorsDto {
    /// Characters lost: the UART was not read in time.
    pub overrun: u64,
    /// Characters with a wrong parity bit.
    pub parity: u64,
    /// Characters without a valid stop bit (typically a wrong baud rate).
    pub framing: u64,
    /// Break conditions.
    #[serde(rename = "break")]
    pub breaks: u64,
    /// Characters lost: the driver's buffer was full.
    pub buffer_overrun: u64,
}

/// Which destination delivers, for a pair with backup destinations.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailoverDto {
    /// 0: the primary destination; `n`: backup `n` (`failover[n - 1]`).
    pub active: usize,
    /// The primary and its backups.
    pub destinations: usize,
    /// The active destination's type (`tcp_client`, …).
    pub active_type: String,
    /// Since when the active destination is in use (ms since the Unix epoch).
    pub since_ms: u64,
    /// Switches since the pair started.
    pub switches: u64,
    /// Why the last switch happened.
    pub reason: Option<String>,
}

/// How far a relay receiver is behind its sender.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayLagDto {
    /// Messages waiting at the sender.
    pub messages: u64,
    /// Age of the newest message received, while more wait (0 when caught up).
    pub seconds: f64,
}

impl SideStatusDto {
    fn from(s: &SideSnapshot, kind: &str) -> Self {
        SideStatusDto {
            kind: kind.to_string(),
            status: s.color.as_str().to_string(),
            detail: s.detail.clone(),
            peers: s.peers.clone(),
            connections: s.connections,
            lag: s.lag.map(|l| RelayLagDto { messages: l.messages, seconds: l.seconds }),
            line_errors: s.line_errors.map(|e| LineErrorsDto {
                overrun: e.overrun,
                parity: e.parity,
                framing: e.framing,
                breaks: e.breaks,
                buffer_overrun: e.buffer_overrun,
            }),
        }
    }
}

/// Message counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountsDto {
    /// Accepted (durably stored).
    pub received: u64,
    /// Payload bytes accepted.
    pub received_bytes: u64,
    /// Delivered and confirmed.
    pub sent: u64,
    /// Payload bytes delivered.
    pub sent_bytes: u64,
    /// Stored, waiting for delivery.
    pub pending: u64,
    /// Being delivered.
    pub in_flight: u64,
    /// Delivered, still retained.
    pub done: u64,
    /// Refused because the buffer was full.
    pub refused: u64,
    /// Rejected by framing, or undeliverable.
    pub rejected: u64,
    /// Errors.
    pub errors: u64,
    /// Delivered again after a failure.
    pub retries: u64,
    /// Connections refused by the connection limit.
    pub connections_refused: u64,
    /// Relayed messages received again and dropped (this buffer had them already).
    pub duplicates_dropped: u64,
    /// Messages parked now: the destination refused them `dead_letter.after_rejections`
    /// times; they wait for an operator to re-send or discard them.
    pub parked: u64,
    /// A `modbus` source's failed polls: exception answers, timeouts, transport errors (none
    /// stored anything; also counted in `errors`).
    pub modbus_poll_errors: u64,
}

/// The last error of a pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastErrorDto {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// `source` or `destination`.
    pub side: String,
    /// What happened.
    pub message: String,
}

/// Live status of a pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairStatusDto {
    /// Channel: `green` running, `yellow` degraded, `red` error, `white` stopped.
    pub channel: String,
    /// Buffer: `white` empty, `green` flowing, `yellow` backlog or above 80 %, `red` full or
    /// unable to store.
    pub buffer: String,
    /// Source side.
    pub source: SideStatusDto,
    /// Destination side.
    pub destination: SideStatusDto,
    /// Counts.
    pub counts: CountsDto,
    /// Buffer size on disk.
    pub buffer_bytes: u64,
    /// Age of the oldest message not yet delivered.
    pub oldest_pending_age_ms: Option<u64>,
    /// The last error.
    pub last_error: Option<LastErrorDto>,
    /// Why the buffer failed, if it did (a write or sync error; the pair heals itself).
    pub buffer_failure: Option<String>,
    /// Times the buffer failed and was reopened.
    pub buffer_heals: u64,
    /// Storage is full and the source holds senders back or refuses: which limit, in words.
    /// Clears by itself as delivery frees space.
    pub storage_alarm: Option<String>,
    /// Pairs with backup destinations: which one delivers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverDto>,
}

impl From<&PairSnapshot> for PairStatusDto {
    fn from(p: &PairSnapshot) -> Self {
        PairStatusDto {
            channel: p.channel.as_str().into(),
            buffer: p.buffer.as_str().into(),
            source: SideStatusDto::from(&p.source, p.source_type),
            destination: SideStatusDto::from(&p.destination, p.destination_type),
            counts: CountsDto {
                received: p.received,
                received_bytes: p.received_bytes,
                sent: p.sent,
                sent_bytes: p.sent_bytes,
                pending: p.pending,
                in_flight: p.in_flight,
                done: p.done,
                refused: p.refused,
                rejected: p.rejected,
                errors: p.errors,
                retries: p.retries,
                connections_refused: p.connections_refused,
                duplicates_dropped: p.duplicates_dropped,
                parked: p.parked,
                modbus_poll_errors: p.modbus_poll_errors,
            },
            buffer_bytes: p.buffer_bytes,
            oldest_pending_age_ms: p
                .oldest_pending_age
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            last_error: p.last_error.as_ref().map(|(at, side, msg)| LastErrorDto {
                at_ms: unix_ms(*at),
                side: side.as_str().into(),
                message: msg.clone(),
            }),
            buffer_failure: p.buffer_failure.clone(),
            buffer_heals: p.buffer_heals,
            storage_alarm: p.storage_alarm.clone(),
            failover: p.failover.as_ref().map(|f| FailoverDto {
                active: f.active,
                destinations: f.destinations,
                active_type: f.active_type.to_string(),
                since_ms: f
                    .since
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                switches: f.switches,
                reason: f.reason.clone(),
            }),
        }
    }
}

/// A channel pair: its configuration and its live status.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairDto {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Configured to run.
    pub enabled: bool,
    /// The configuration, in the configuration format of the manual (passwords masked).
    #[schema(value_type = super::spec_doc::ChannelPairSpec)]
    pub spec: serde_json::Value,
    /// Live status.
    pub status: PairStatusDto,
}

/// Text of a payload for display: UTF-8 where valid, `\xNN` for other bytes, at most
/// `max` bytes of it.
pub(crate) fn display_text(payload: &[u8], max: usize) -> String {
    let shown = &payload[..payload.len().min(max)];
    let mut out = String::with_capacity(shown.len());
    for chunk in shown.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\x{b:02x}"));
        }
    }
    out
}

/// Hex of the first `max` bytes, space-separated.
pub(crate) fn hex(payload: &[u8], max: usize) -> String {
    payload[..payload.len().min(max)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A message in the Live View.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedEntryDto {
    /// When it was received (source) or delivered (destination), ms since the Unix epoch.
    pub at_ms: u64,
    /// `source` or `destination`.
    pub side: String,
    /// Its sequence number in the buffer.
    pub seq: Option<u64>,
    /// Payload length.
    pub length: usize,
    /// The start of the payload as text.
    pub text: String,
    /// The start of the payload in hex.
    pub hex: String,
    /// Where it came from or went to.
    pub peer: Option<String>,
    /// What it is at a glance, for protocols ioBufferPro knows: an ASTM E1394 message's
    /// record types and sample id (`H P O R R L · sample S00000042`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl From<&FeedEntry> for FeedEntryDto {
    fn from(e: &FeedEntry) -> Self {
        FeedEntryDto {
            at_ms: unix_ms(e.at),
            side: e.side.as_str().into(),
            seq: e.seq,
            length: e.len,
            text: display_text(&e.preview, 256),
            hex: hex(&e.preview, 64),
            peer: e.peer.as_deref().map(str::to_string),
            summary: e.summary.as_deref().map(str::to_string),
        }
    }
}

/// A frame or message that was rejected, kept for operators.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionDto {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// `source` or `destination`.
    pub side: String,
    /// Why.
    pub reason: String,
    /// Its length in bytes.
    pub length: u64,
    /// Hex preview of its first bytes.
    pub preview: String,
    /// Sequence number (undeliverable buffered messages).
    pub seq: Option<u64>,
    /// The peer.
    pub peer: Option<String>,
}

impl From<&Rejected> for RejectionDto {
    fn from(r: &Rejected) -> Self {
        RejectionDto {
            at_ms: unix_ms(r.at),
            side: r.side.as_str().into(),
            reason: r.reason.clone(),
            length: r.len,
            preview: r.preview.clone(),
            seq: r.seq,
            peer: r.peer.clone(),
        }
    }
}

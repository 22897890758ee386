//! `/metrics`: Prometheus text exposition of the same snapshots the portals show. Label sets
//! are bounded: one per pair (and side), never per message or per client.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use iobp_engine::{Color, PairSnapshot};

use crate::WebState;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn color_value(c: Color) -> u8 {
    match c {
        Color::White => 0,
        Color::Green => 1,
        Color::Yellow => 2,
        Color::Red => 3,
    }
}

type Getter = fn(&PairSnapshot) -> f64;

/// Per-pair counters: name, help, value.
#[allow(clippy::cast_precision_loss)] // Prometheus values are floats
const COUNTERS: &[(&str, &str, Getter)] = &[
    ("iobp_messages_received_total", "Messages accepted (durably stored).", |p| p.received as f64),
    ("iobp_received_bytes_total", "Payload bytes accepted.", |p| p.received_bytes as f64),
    ("iobp_messages_sent_total", "Messages delivered and confirmed.", |p| p.sent as f64),
    ("iobp_sent_bytes_total", "Payload bytes delivered.", |p| p.sent_bytes as f64),
    ("iobp_messages_refused_total", "Messages refused because the buffer was full.", |p| {
        p.refused as f64
    }),
    ("iobp_frames_rejected_total", "Frames rejected by framing and undeliverable messages.", |p| {
        p.rejected as f64
    }),
    ("iobp_errors_total", "Connection, delivery and acknowledgement errors.", |p| p.errors as f64),
    ("iobp_retries_total", "Messages delivered again after a failure.", |p| p.retries as f64),
    ("iobp_connections_refused_total", "Connections refused by the connection limit.", |p| {
        p.connections_refused as f64
    }),
    (
        "iobp_relay_duplicates_dropped_total",
        "Relayed messages received again and dropped (already stored).",
        |p| p.duplicates_dropped as f64,
    ),
    (
        "iobp_modbus_poll_errors_total",
        "A modbus source's failed polls: exception answers, timeouts, transport errors.",
        |p| p.modbus_poll_errors as f64,
    ),
    (
        "iobp_buffer_heals_total",
        "Times the pair's buffer failed (write or sync error) and was reopened.",
        |p| p.buffer_heals as f64,
    ),
];

/// Per-pair gauges: name, help, value.
#[allow(clippy::cast_precision_loss)]
const GAUGES: &[(&str, &str, Getter)] = &[
    ("iobp_messages_pending", "Stored messages waiting for delivery.", |p| p.pending as f64),
    ("iobp_messages_in_flight", "Messages being delivered.", |p| p.in_flight as f64),
    ("iobp_messages_done", "Delivered messages still retained.", |p| p.done as f64),
    (
        "iobp_messages_parked",
        "Messages parked by the dead-letter policy, waiting to be re-sent or discarded.",
        |p| p.parked as f64,
    ),
    ("iobp_buffer_bytes", "Bytes of the pair's buffer on disk.", |p| p.buffer_bytes as f64),
    ("iobp_oldest_pending_age_seconds", "Age of the oldest message not yet delivered.", |p| {
        p.oldest_pending_age.map_or(0.0, |d| d.as_secs_f64())
    }),
    (
        "iobp_storage_full",
        "1 while the pair's storage is full and its source holds senders back or refuses.",
        |p| f64::from(u8::from(p.storage_alarm.is_some())),
    ),
    ("iobp_buffer_failed", "1 while the pair's buffer is failed and being healed.", |p| {
        f64::from(u8::from(p.buffer_failure.is_some()))
    }),
    ("iobp_pair_enabled", "1 if the pair is configured to run.", |p| {
        f64::from(u8::from(p.enabled))
    }),
    ("iobp_source_connections", "Peers connected to the source.", |p| p.source.connections as f64),
    ("iobp_destination_connections", "Peers connected to the destination.", |p| {
        p.destination.connections as f64
    }),
    (
        "iobp_destination_active",
        "Pairs with backups: 0 while the primary destination delivers, n on backup n.",
        |p| p.failover.as_ref().map_or(0.0, |f| f.active as f64),
    ),
    ("iobp_failover_switches", "Pairs with backups: switches since the pair started.", |p| {
        p.failover.as_ref().map_or(0.0, |f| f.switches as f64)
    }),
    ("iobp_relay_lag_messages", "A relay source: messages waiting at its sender.", |p| {
        p.source.lag.map_or(0.0, |l| l.messages as f64)
    }),
    ("iobp_relay_lag_seconds", "A relay source: how far behind its sender it is.", |p| {
        p.source.lag.map_or(0.0, |l| l.seconds)
    }),
];

#[allow(clippy::cast_precision_loss)] // Prometheus values are floats
pub(crate) async fn metrics(State(s): State<WebState>) -> impl IntoResponse {
    let pairs = s.engine.snapshots();
    let mut out = String::new();
    for (name, help, get) in COUNTERS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for p in &pairs {
            let _ = writeln!(out, "{name}{{pair=\"{}\"}} {}", esc(&p.id), get(p));
        }
    }
    for (name, help, get) in GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for p in &pairs {
            let _ = writeln!(out, "{name}{{pair=\"{}\"}} {}", esc(&p.id), get(p));
        }
    }
    accounting(&s.engine, &mut out);
    let _ = writeln!(
        out,
        "# HELP iobp_serial_line_errors_total Errors a serial side's UART counted (Linux drivers with counters): overrun, parity, framing, break, buffer_overrun.\n# TYPE iobp_serial_line_errors_total counter"
    );
    for p in &pairs {
        for (side, s) in [("source", &p.source), ("destination", &p.destination)] {
            let Some(errors) = s.line_errors else { continue };
            for (kind, n) in errors.kinds() {
                let _ = writeln!(
                    out,
                    "iobp_serial_line_errors_total{{pair=\"{}\",side=\"{side}\",kind=\"{kind}\"}} {n}",
                    esc(&p.id)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP iobp_status Status colour: 0 white (stopped/empty), 1 green, 2 yellow, 3 red.\n# TYPE iobp_status gauge"
    );
    for p in &pairs {
        for (what, c) in [
            ("source", p.source.color),
            ("destination", p.destination.color),
            ("buffer", p.buffer),
            ("channel", p.channel),
        ] {
            let _ = writeln!(
                out,
                "iobp_status{{pair=\"{}\",indicator=\"{what}\"}} {}",
                esc(&p.id),
                color_value(c)
            );
        }
    }
    let budget = s.engine.storage();
    let instance_gauges: [(&str, &str, u64); 5] = [
        ("iobp_storage_used_bytes", "Bytes used by all buffers.", budget.used),
        ("iobp_storage_limit_bytes", "max_storage_mb in bytes.", budget.limit),
        (
            "iobp_storage_effective_limit_bytes",
            "The storage limit in force: max_storage_mb, or less where the disk has less room.",
            budget.effective_limit,
        ),
        (
            "iobp_storage_disk_bound",
            "1 when the disk, not max_storage_mb, bounds the buffers.",
            u64::from(budget.disk_bound),
        ),
        ("iobp_uptime_seconds", "Time since start.", s.started.elapsed().as_secs()),
    ];
    for (name, help, value) in instance_gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP iobp_disk_syncs_total fdatasync/fsync calls issued for the buffers.\n# TYPE iobp_disk_syncs_total counter\niobp_disk_syncs_total {}",
        iobp_engine::disk_syncs_total()
    );
    portal_metrics(&s, &mut out);
    if let Some(kib) = crate::system::read_status_kib("VmRSS:") {
        let _ = writeln!(
            out,
            "# HELP iobp_resident_memory_bytes Resident memory of the process.\n# TYPE iobp_resident_memory_bytes gauge"
        );
        let _ = writeln!(out, "iobp_resident_memory_bytes {}", kib * 1024);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// A per-portal series: name, type, help, value.
type PortalSeries = (&'static str, &'static str, &'static str, fn(&crate::ConnectionGate) -> u64);

/// The portals' connections and SSE streams against their limits (labels: the two portals).
fn portal_metrics(s: &WebState, out: &mut String) {
    let gates = [&s.ops_connections, &s.mgmt_connections];
    let series: [PortalSeries; 5] = [
        (
            "iobp_portal_connections",
            "gauge",
            "Open connections of a portal (TLS handshakes, SSE streams and relay links included).",
            |g| g.open() as u64,
        ),
        (
            "iobp_portal_connections_limit",
            "gauge",
            "Connections a portal holds at most (derived from the open-file limit).",
            |g| g.limits().per_portal as u64,
        ),
        (
            "iobp_portal_address_connections_limit",
            "gauge",
            "Connections one source address holds at most on a portal.",
            |g| g.limits().per_address as u64,
        ),
        (
            "iobp_portal_connections_refused_total",
            "counter",
            "Connections closed at once because a portal or an address held its maximum.",
            crate::ConnectionGate::refused,
        ),
        (
            "iobp_portal_connections_replaced_total",
            "counter",
            "Connections without a request closed to let a lighter client into a full portal.",
            crate::ConnectionGate::evicted,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in gates {
            let _ = writeln!(out, "{name}{{portal=\"{}\"}} {}", g.portal().as_str(), get(g));
        }
    }
    let _ = writeln!(
        out,
        "# HELP iobp_sse_streams Live event streams open.\n# TYPE iobp_sse_streams gauge\niobp_sse_streams {}",
        s.streams.open_streams()
    );
}

type BooksGetter = fn(&iobp_engine::Reconciliation) -> u64;

/// The pairs' accounting (`Engine::reconciliation`): the discrepancy gauge that must stay 0,
/// and the counters of messages settled without delivery.
fn accounting(engine: &iobp_engine::Engine, out: &mut String) {
    let books = engine.reconciliations();
    let series: [(&str, &str, &str, BooksGetter); 3] = [
        (
            "iobp_reconciliation_discrepancy",
            "gauge",
            "Messages not accounted for in the pair's last settled reading (received = delivered + parked + undeliverable + lost + pending + in flight, less the backlog at start); 0 when exact.",
            |r| r.discrepancy,
        ),
        (
            "iobp_messages_undeliverable_total",
            "counter",
            "Messages the destination cannot carry, set aside (Done without delivery).",
            |r| r.undeliverable,
        ),
        (
            "iobp_messages_parked_total",
            "counter",
            "Messages parked by the dead-letter policy since the pair's counters started.",
            |r| r.parked,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (id, r) in &books {
            let _ = writeln!(out, "{name}{{pair=\"{}\"}} {}", esc(id), get(r));
        }
    }
}

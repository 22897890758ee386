//! System health, the log viewer and the audit trail.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiQuery;
use super::responses::{Malformed, Session};
use crate::WebState;
use crate::auth::{Admin, Auth, Viewer};
use crate::error::{ApiError, ApiResult};

/// Counts of pairs by channel status.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairCountsDto {
    /// Configured pairs.
    pub total: usize,
    /// Running (not stopped).
    pub running: usize,
    /// Channel green.
    pub green: usize,
    /// Channel yellow.
    pub yellow: usize,
    /// Channel red.
    pub red: usize,
}

/// The System Health Overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDto {
    /// ioBufferPro version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Pairs.
    pub pairs: PairCountsDto,
    /// Messages received per second, all pairs.
    pub received_per_s: f64,
    /// Messages delivered per second, all pairs.
    pub sent_per_s: f64,
    /// This process's CPU, percent of one core.
    pub process_cpu_percent: Option<f64>,
    /// The machine's CPU, percent of all cores.
    pub system_cpu_percent: Option<f64>,
    /// Resident memory of this process.
    pub process_rss_bytes: Option<u64>,
    /// Machine memory.
    pub system_memory_total_bytes: Option<u64>,
    /// Machine memory available.
    pub system_memory_available_bytes: Option<u64>,
    /// The data directory.
    pub data_dir: String,
    /// Size of its file system.
    pub disk_total_bytes: Option<u64>,
    /// Free space on it.
    pub disk_free_bytes: Option<u64>,
    /// Bytes used by all buffers.
    pub storage_used_bytes: u64,
    /// `max_storage_mb`, in bytes.
    pub storage_limit_bytes: u64,
    /// The limit in force: `max_storage_mb`, or less where the disk holding the buffers has
    /// less room (its free space, less a margin kept for the rest of the data directory).
    pub storage_effective_limit_bytes: u64,
    /// The disk, not `max_storage_mb`, bounds the buffers now.
    pub storage_disk_bound: bool,
    /// Buffers use 80 % or more of the limit in force.
    pub storage_warning: bool,
}

pub(crate) fn health_dto(s: &WebState) -> HealthDto {
    let snaps = s.engine.snapshots();
    let count = |c: iobp_engine::Color| snaps.iter().filter(|p| p.channel == c).count();
    let r = s.system.reading();
    let b = s.engine.storage();
    HealthDto {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: s.started.elapsed().as_secs(),
        pairs: PairCountsDto {
            total: snaps.len(),
            running: snaps.iter().filter(|p| p.channel != iobp_engine::Color::White).count(),
            green: count(iobp_engine::Color::Green),
            yellow: count(iobp_engine::Color::Yellow),
            red: count(iobp_engine::Color::Red),
        },
        received_per_s: r.received_per_s,
        sent_per_s: r.sent_per_s,
        process_cpu_percent: r.process_cpu_percent,
        system_cpu_percent: r.system_cpu_percent,
        process_rss_bytes: r.process_rss_bytes,
        system_memory_total_bytes: r.system_memory_total_bytes,
        system_memory_available_bytes: r.system_memory_available_bytes,
        data_dir: s.data_dir.display().to_string(),
        disk_total_bytes: r.disk_total_bytes,
        disk_free_bytes: r.disk_free_bytes,
        storage_used_bytes: b.used,
        storage_limit_bytes: b.limit,
        storage_effective_limit_bytes: b.effective_limit,
        storage_disk_bound: b.disk_bound,
        storage_warning: b.warning,
    }
}

/// The System Health Overview.
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses(Session, (status = 200, body = HealthDto)))]
pub(crate) async fn health(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
) -> axum::Json<HealthDto> {
    axum::Json(health_dto(&s))
}

/// Which log lines.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// Least severe level shown: `error`, `warn`, `info` (default), `debug`, `trace`.
    #[param(pattern = "^(error|warn|info|debug|trace)$")]
    level: Option<String>,
    /// At most this many (default 200, at most 2000).
    limit: Option<usize>,
}

/// A log line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineDto {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Level.
    pub level: String,
    /// Message and fields.
    pub message: String,
}

/// The newest log lines, newest first.
#[utoipa::path(get, path = "/api/v1/logs", tag = "system", params(LogQuery),
    responses(Session, Malformed, (status = 200, body = Vec<LogLineDto>)))]
pub(crate) async fn logs(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<axum::Json<Vec<LogLineDto>>> {
    let level: tracing::Level = match q.level.as_deref().unwrap_or("info").parse() {
        Ok(l) => l,
        Err(_) => {
            return Err(ApiError::bad_request("level must be error, warn, info, debug or trace"));
        }
    };
    let lines = s.logs.recent(level, q.limit.unwrap_or(200).clamp(1, crate::logbuf::LOG_LINES));
    Ok(axum::Json(
        lines
            .into_iter()
            .map(|l| LogLineDto { at_ms: l.at_ms, level: l.level.to_string(), message: l.message })
            .collect(),
    ))
}

/// Which audit entries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
    /// Only entries older than this id (paging).
    before: Option<i64>,
}

/// An audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditDto {
    /// Id (increasing).
    pub id: i64,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Who.
    pub username: Option<String>,
    /// From which address.
    pub address: Option<String>,
    /// What (`login`, `login.failed`, `pair.create`, …).
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details.
    pub detail: Option<String>,
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "system", params(AuditQuery),
    responses(Session, Malformed, (status = 200, body = Vec<AuditDto>)))]
pub(crate) async fn audit(
    State(s): State<WebState>,
    _auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditDto>>> {
    let entries = s.store.list_audit(q.limit.unwrap_or(100).clamp(1, 1000), q.before)?;
    Ok(axum::Json(
        entries
            .into_iter()
            .map(|e| AuditDto {
                id: e.id,
                at_ms: e.at_ms,
                username: e.username,
                address: e.address,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    ))
}

/// A serial port: present on this machine, configured in a pair, or both.
#[derive(Debug, Serialize, ToSchema)]
pub struct SerialPortDto {
    /// The name to configure (a stable `/dev/serial/by-id/...` link where there is one).
    pub path: String,
    /// For a stable link, the device it points at now (`/dev/ttyUSB0`).
    pub device: Option<String>,
    /// Present on this machine now (false: configured in a pair but missing, e.g. unplugged).
    pub present: bool,
    /// Ids of the channel pairs configured with this port.
    pub used_by: Vec<String>,
}

/// The machine's serial ports, for the Create Channel Pair form.
#[derive(Debug, Serialize, ToSchema)]
pub struct SerialPortsDto {
    /// Ports, stable links first.
    pub ports: Vec<SerialPortDto>,
    /// Line speeds to offer; any other rate the driver accepts works too.
    pub common_baud_rates: Vec<u32>,
}

/// The serial ports of this machine and which pairs use them.
#[utoipa::path(get, path = "/api/v1/serial-ports", tag = "system",
    responses(Session, (status = 200, body = SerialPortsDto)))]
pub(crate) async fn serial_ports(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
) -> ApiResult<axum::Json<SerialPortsDto>> {
    // Directory scans of /dev and /sys: off the async threads.
    let found = tokio::task::spawn_blocking(iobp_engine::serial::available_ports)
        .await
        .map_err(|e| ApiError::internal(format!("listing serial ports: {e}")))?;
    let mut ports: Vec<SerialPortDto> = found
        .into_iter()
        .map(|p| SerialPortDto {
            path: p.path,
            device: p.device,
            present: true,
            used_by: Vec::new(),
        })
        .collect();
    for pair in s.engine.list() {
        for side in [&pair.source, &pair.destination].into_iter().chain(pair.failover.iter()) {
            // A modbus side's RTU line is a serial port in use too.
            let name = match side {
                iobp_config::EndpointSpec::Serial(serial) => serial.port.as_str(),
                iobp_config::EndpointSpec::Modbus(iobp_config::ModbusSpec {
                    transport: iobp_config::ModbusTransport::Rtu(rtu),
                    ..
                }) => rtu.port.as_str(),
                _ => continue,
            };
            match ports.iter_mut().find(|p| p.path == name || p.device.as_deref() == Some(name)) {
                Some(p) => p.used_by.push(pair.id.clone()),
                None => ports.push(SerialPortDto {
                    path: name.to_string(),
                    device: None,
                    present: false,
                    used_by: vec![pair.id.clone()],
                }),
            }
        }
    }
    Ok(axum::Json(SerialPortsDto {
        ports,
        common_baud_rates: iobp_engine::serial::COMMON_BAUD_RATES.to_vec(),
    }))
}

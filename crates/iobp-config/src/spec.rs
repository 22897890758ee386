//! The persisted configuration types. Field names follow the product documents (`host`,
//! `port`, `tls.enabled/cert/key`, `baud_rate`, `data_bits`, `parity`, `stop_bits`,
//! `flow_control`, `url`, `channel_id`, `auth.username/password`); every example in the
//! documents deserialises as written. Unknown fields are refused so that a typo is an error
//! that names the field, not a silently ignored setting.

use serde::{Deserialize, Serialize};

use crate::bytes::ByteString;
use crate::modbus::ModbusSpec;

/// Default `max_message_bytes`: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024;
/// Largest allowed `max_message_bytes` (the durable log's own record limit).
pub const MAX_MESSAGE_BYTES_LIMIT: u32 = 64 * 1024 * 1024;
/// Largest record the relay protocol carries (`iobp_relay::MAX_RECORD_BYTES`; the engine's
/// tests check that the two agree).
pub const RELAY_MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;
/// Default connection limit of a TCP server side.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

fn yes() -> bool {
    true
}

/// The whole configuration, as imported, exported and given to `run --config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// System settings; when absent from an imported document, the current ones are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// Channel pairs, created or replaced by `id`.
    #[serde(default)]
    pub channel_pairs: Vec<ChannelPairSpec>,
}

/// System settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Storage limit for all buffers together, in MiB. Default 1000.
    pub max_storage_mb: u64,
    /// How long delivered (Done) messages stay visible while storage allows, in hours.
    /// Default 24.
    pub retention_hours: u64,
    /// Log level: `error`, `warn`, `info`, `debug` or `trace`. Default `info`.
    pub log_level: String,
    /// Operations Portal address (takes effect at restart). Default `0.0.0.0:8080`.
    pub ops_listen: String,
    /// Management Dashboard address (takes effect at restart). Default `0.0.0.0:8081`.
    pub mgmt_listen: String,
    /// Serve both portals over HTTPS with this certificate chain (PEM; takes effect at
    /// restart). Needs `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_storage_mb: 1000,
            retention_hours: 24,
            log_level: "info".into(),
            ops_listen: "0.0.0.0:8080".into(),
            mgmt_listen: "0.0.0.0:8081".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// One channel pair: a source, its own durable buffer, a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPairSpec {
    /// Stable identifier: 1–64 of `A–Z a–z 0–9 . _ -`, not starting with `.`. Names the
    /// buffer's directory and the pair in the API.
    pub id: String,
    /// Descriptive name; defaults to the id.
    #[serde(default)]
    pub name: String,
    /// Whether the pair runs. Stopping a pair sets this to false; buffered messages are kept.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where messages come from.
    pub source: EndpointSpec,
    /// Where messages go.
    pub destination: EndpointSpec,
    /// Ordered backup destinations, used when the destination fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<EndpointSpec>,
    /// Return to the primary destination once it answers again. Default true.
    #[serde(default = "yes")]
    pub failback: bool,
    /// When a destination counts as failed, and how often the primary is tried for failback.
    #[serde(default, skip_serializing_if = "is_default")]
    pub failover_policy: FailoverPolicy,
    /// Reconnect and retry policy.
    #[serde(default)]
    pub retry: BackoffSpec,
    /// This pair's own storage limit in MiB, within the global one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_storage_mb: Option<u64>,
    /// Poison messages: park a message the destination refused this many times and go on
    /// with the next. Without it (the default) a refused message is retried forever and
    /// holds everything behind it (strict FIFO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
}

/// The dead-letter policy of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// Explicit refusals of the same message (an HL7 `AE`/`AR`, a NAK byte) after which it is
    /// parked. Timeouts and connection errors never count. 1–1000.
    pub after_rejections: u32,
}

impl ChannelPairSpec {
    /// The name to show: `name`, or the id when no name was given.
    pub fn display_name(&self) -> &str {
        if self.name.trim().is_empty() { &self.id } else { &self.name }
    }
}

/// When delivery moves to the next destination (`failover`), and back (`failback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverPolicy {
    /// Failed attempts in a row (connection refused or lost, delivery error, acknowledgement
    /// timeout) before moving to the next destination. Default 1.
    pub failures: u32,
    /// A destination that has not been delivering for this long counts as failed too (stuck
    /// connecting, a listening destination without a receiver). Default 5000 ms.
    pub failed_after_ms: u64,
    /// While on a backup, how often the primary is tried (with `failback`). Default 2000 ms.
    pub probe_interval_ms: u64,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy { failures: 1, failed_after_ms: 5000, probe_interval_ms: 2000 }
    }
}

/// Exponential backoff for reconnects and retries: `initial_ms`, doubling, capped at
/// `max_ms`, each wait varied randomly by ±`jitter_percent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffSpec {
    /// First wait. Default 1000 ms.
    pub initial_ms: u64,
    /// Longest wait. Default 60000 ms.
    pub max_ms: u64,
    /// Random variation, in percent of each wait. Default 20.
    pub jitter_percent: u8,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        BackoffSpec { initial_ms: 1000, max_ms: 60_000, jitter_percent: 20 }
    }
}

/// A source or destination: the connector types of the product documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndpointSpec {
    /// Listens for TCP connections.
    TcpServer(TcpServerSpec),
    /// Connects to a TCP server and reconnects by itself.
    TcpClient(TcpClientSpec),
    /// An RS-232/RS-485 serial port.
    Serial(SerialSpec),
    /// Another ioBufferPro instance.
    #[serde(rename = "remote_icombuffer")]
    Remote(RemoteSpec),
    /// UDP datagrams: one datagram is one message.
    Udp(UdpSpec),
    /// An MQTT broker (3.1.1 or 5): one `PUBLISH` is one message.
    Mqtt(MqttSpec),
    /// NATS JetStream: a destination publishes to a subject, a source pulls from a stream.
    Nats(NatsSpec),
    /// A Modbus device polled over TCP or RTU (a serial port): source only; one message per
    /// executed poll.
    Modbus(ModbusSpec),
}

/// Marks the inner path of an error raised inside a tagged value, so the parser can report
/// the full JSON path (serde loses it when it buffers a tagged enum's content).
pub(crate) const PATH_MARK: char = '\u{1}';

/// Deserialises `v` into `T`, keeping the path of an error inside it.
pub(crate) fn at_path<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    v: serde_json::Value,
) -> Result<T, E> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let outer = e.path().to_string();
        let msg = e.into_inner().to_string();
        let (path, msg) = crate::join_marked(&outer, &msg);
        E::custom(format!("{PATH_MARK}{path}{PATH_MARK}{msg}"))
    })
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        const TYPES: &[&str] = &[
            "tcp_server",
            "tcp_client",
            "serial",
            "remote_icombuffer",
            "udp",
            "mqtt",
            "nats",
            "modbus",
        ];
        let serde_json::Value::Object(mut obj) = serde_json::Value::deserialize(d)? else {
            return Err(D::Error::custom("expected an object with a `type`"));
        };
        let ty = match obj.remove("type") {
            Some(serde_json::Value::String(t)) => t,
            Some(_) => return Err(D::Error::custom("`type` must be a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        let v = serde_json::Value::Object(obj);
        match ty.as_str() {
            "tcp_server" => at_path(v).map(EndpointSpec::TcpServer),
            "tcp_client" => at_path(v).map(EndpointSpec::TcpClient),
            "serial" => at_path(v).map(EndpointSpec::Serial),
            "remote_icombuffer" => at_path(v).map(EndpointSpec::Remote),
            "udp" => at_path(v).map(EndpointSpec::Udp),
            "mqtt" => at_path(v).map(EndpointSpec::Mqtt),
            "nats" => at_path(v).map(EndpointSpec::Nats),
            "modbus" => at_path(v).map(EndpointSpec::Modbus),
            other => Err(D::Error::unknown_variant(other, TYPES)),
        }
    }
}

impl EndpointSpec {
    /// The JSON `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EndpointSpec::TcpServer(_) => "tcp_server",
            EndpointSpec::TcpClient(_) => "tcp_client",
            EndpointSpec::Serial(_) => "serial",
            EndpointSpec::Remote(_) => "remote_icombuffer",
            EndpointSpec::Udp(_) => "udp",
            EndpointSpec::Mqtt(_) => "mqtt",
            EndpointSpec::Nats(_) => "nats",
            EndpointSpec::Modbus(_) => "modbus",
        }
    }

    /// The framing of a byte-stream side (UDP and relay sides have none).
    pub fn framing(&self) -> Option<&FramingSpec> {
        match self {
            EndpointSpec::TcpServer(s) => Some(&s.framing),
            EndpointSpec::TcpClient(s) => Some(&s.framing),
            EndpointSpec::Serial(s) => Some(&s.framing),
            EndpointSpec::Remote(_)
            | EndpointSpec::Udp(_)
            | EndpointSpec::Mqtt(_)
            | EndpointSpec::Nats(_)
            | EndpointSpec::Modbus(_) => None,
        }
    }

    /// The acknowledgement mode of the side.
    pub fn ack(&self) -> &AckSpec {
        const NONE: &AckSpec = &AckSpec::None;
        match self {
            EndpointSpec::TcpServer(s) => &s.ack,
            EndpointSpec::TcpClient(s) => &s.ack,
            EndpointSpec::Serial(s) => &s.ack,
            EndpointSpec::Remote(_)
            | EndpointSpec::Udp(_)
            | EndpointSpec::Mqtt(_)
            | EndpointSpec::Nats(_)
            | EndpointSpec::Modbus(_) => NONE,
        }
    }
}

/// TCP server settings (documents: Host, Port, TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpServerSpec {
    /// Bind address: `0.0.0.0` for all interfaces, `127.0.0.1` for this machine only.
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsSpec,
    /// How the byte stream is cut into messages.
    #[serde(default)]
    pub framing: FramingSpec,
    /// Acknowledgements (source: sent after the message is durable; destination: awaited).
    #[serde(default)]
    pub ack: AckSpec,
    /// Most simultaneous connections; more are closed at once and counted. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Close a connection that sent nothing for this long (source) — unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// Destination: a receiver that does not take a batch within this long is treated as
    /// stuck (the connection is dropped and the messages retried). Default 30000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeout_ms: Option<u64>,
}

fn default_max_connections() -> u32 {
    DEFAULT_MAX_CONNECTIONS
}

/// TCP client settings (documents: Host, Port, TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpClientSpec {
    /// Server host name or IP address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsSpec,
    /// How the byte stream is cut into messages.
    #[serde(default)]
    pub framing: FramingSpec,
    /// Acknowledgements.
    #[serde(default)]
    pub ack: AckSpec,
    /// Give up a connection attempt after this long. Default 10000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Destination: a receiver that does not take a batch within this long is treated as
    /// stuck (the connection is dropped and the messages retried). Default 30000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeout_ms: Option<u64>,
}

/// UDP settings (documents: Host, Port). Source: bind address; destination: target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpSpec {
    /// Source: bind address. Destination: target host.
    pub host: String,
    /// Source: port to listen on. Destination: target port.
    pub port: u16,
    /// Source: the socket's receive buffer, which absorbs bursts while the buffer syncs.
    /// Default [`DEFAULT_UDP_RECEIVE_BUFFER`] (4 MiB); beyond the system's `net.core.rmem_max`
    /// only with the privilege to force it (root, `CAP_NET_ADMIN`), else the side says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_buffer_bytes: Option<u64>,
}

/// NATS JetStream settings (`"type": "nats"`). A destination publishes every message to
/// `subject` through JetStream and marks it Done once the stream acknowledged it (deduplicated
/// by a `Nats-Msg-Id`); a source consumes `stream` with a durable pull consumer and
/// acknowledges each message to JetStream only once it is durable here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    /// Server URLs, `nats://host:4222` or `tls://host:4222`; at least one (a cluster: several).
    pub servers: Vec<String>,
    /// Destination: the subject to publish to, where `{pair}` becomes the pair id. Source: the
    /// consumer's filter subject (wildcards allowed), within `stream`.
    pub subject: String,
    /// Source: the stream to consume (required). Destination: the stream expected to capture
    /// `subject`, shown in the status (informative).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream: String,
    /// Source: the durable consumer's name. Default `iobp-<pair id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Credentials: `username` and `password`, or `token`, or `creds_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NatsAuth>,
    /// TLS: `ca` (else the system's roots), a client certificate (`cert`, `key`),
    /// `insecure_skip_verify` for lab use; `enabled` (or a `tls://` server) requires TLS.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls: TlsSpec,
    /// Destination: messages published and not yet acknowledged by JetStream, at most.
    /// 1–4096, default [`DEFAULT_NATS_IN_FLIGHT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// Source: the consumer's `ack_wait`: a message not acknowledged within this long is
    /// delivered again. 1–3600 s, default [`DEFAULT_NATS_ACK_WAIT_S`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait_s: Option<u64>,
}

/// Default `in_flight` of a `nats` destination.
pub const DEFAULT_NATS_IN_FLIGHT: u32 = 256;
/// Largest `in_flight` of a `nats` destination.
pub const MAX_NATS_IN_FLIGHT: u32 = 4096;
/// Default `ack_wait_s` of a `nats` source.
pub const DEFAULT_NATS_ACK_WAIT_S: u64 = 30;

impl NatsSpec {
    /// The publish window (destination).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.unwrap_or(DEFAULT_NATS_IN_FLIGHT)
    }

    /// The consumer's `ack_wait`, in seconds (source).
    pub fn ack_wait_s(&self) -> u64 {
        self.ack_wait_s.unwrap_or(DEFAULT_NATS_ACK_WAIT_S)
    }

    /// The durable consumer's name (source): `consumer`, or `iobp-<pair id>`.
    pub fn consumer_name(&self, pair_id: &str) -> String {
        self.consumer.clone().unwrap_or_else(|| format!("iobp-{pair_id}"))
    }
}

/// How a `nats` side authenticates: exactly one of `username` with `password`, `token`, or
/// `creds_file` (a NATS `.creds` file: user JWT and NKey seed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NatsAuth {
    /// User name (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (with `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// An authentication token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Path of a `.creds` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<String>,
}

/// Default receive buffer of a `udp` source: about 4,000 small datagrams of kernel memory.
pub const DEFAULT_UDP_RECEIVE_BUFFER: u64 = 4 * 1024 * 1024;

/// TLS settings of a TCP side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Encrypt the connection.
    #[serde(default)]
    pub enabled: bool,
    /// Certificate file (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Private key file (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Client side: trust this CA (PEM) instead of the system roots. Server side: the CA
    /// that client certificates must chain to (with `client_auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Server side: ask clients for certificates (mutual TLS). Default `none`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub client_auth: ClientAuthMode,
    /// Client side: accept any server certificate. For lab use only; logged as a warning.
    #[serde(default, skip_serializing_if = "is_default")]
    pub insecure_skip_verify: bool,
    /// Client side: the name the server certificate must carry (default: `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Whether a TLS server asks clients for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// No client certificates.
    #[default]
    None,
    /// A client may present one; if it does, it must be valid.
    Optional,
    /// A client must present a valid certificate.
    Required,
}

/// Serial port settings (documents: Port, Baud Rate, Data Bits, Parity, Stop Bits, Flow
/// Control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSpec {
    /// `COM3` (Windows) or `/dev/ttyUSB0` (Linux).
    pub port: String,
    /// Line speed. Default 9600.
    #[serde(default = "default_baud")]
    pub baud_rate: u32,
    /// 5–8. Default 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Default `None`.
    #[serde(default)]
    pub parity: Parity,
    /// 1 or 2. Default 1.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Default `None`.
    #[serde(default)]
    pub flow_control: FlowControl,
    /// How the byte stream is cut into messages.
    #[serde(default)]
    pub framing: FramingSpec,
    /// Acknowledgements (`byte` ACK/NAK is common on serial instruments).
    #[serde(default)]
    pub ack: AckSpec,
    /// RS-485 transceiver control (Linux drivers that support it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rs485: Option<Rs485Spec>,
    /// Destination: a device that does not take a batch within this long is treated as stuck
    /// (the port is reopened and the messages retried). Default 30000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeout_ms: Option<u64>,
}

/// RS-485 half-duplex settings: the driver switches the transceiver to transmit with RTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rs485Spec {
    /// RTS level while sending: `true` (default) drives RTS high to transmit.
    #[serde(default = "yes")]
    pub rts_on_send: bool,
    /// Delay between raising RTS and the first bit, in ms (0-1000).
    #[serde(default)]
    pub delay_before_send_ms: u32,
    /// Delay between the last bit and releasing RTS, in ms (0-1000).
    #[serde(default)]
    pub delay_after_send_ms: u32,
    /// Full duplex (RS-422) instead of half duplex.
    #[serde(default)]
    pub full_duplex: bool,
    /// Switch on the bus termination resistor, where the adapter has one.
    #[serde(default)]
    pub terminate_bus: bool,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Parity {
    /// No parity bit.
    #[default]
    #[serde(alias = "none")]
    None,
    /// Even parity.
    #[serde(alias = "even")]
    Even,
    /// Odd parity.
    #[serde(alias = "odd")]
    Odd,
    /// Parity bit always 1 (where the driver supports it).
    #[serde(alias = "mark")]
    Mark,
    /// Parity bit always 0 (where the driver supports it).
    #[serde(alias = "space")]
    Space,
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FlowControl {
    /// None.
    #[default]
    #[serde(alias = "none")]
    None,
    /// Hardware (RTS/CTS).
    #[serde(rename = "RTS/CTS", alias = "rts_cts", alias = "hardware")]
    RtsCts,
    /// Software (XON/XOFF).
    #[serde(rename = "XON/XOFF", alias = "xon_xoff", alias = "software")]
    XonXoff,
}

/// Another ioBufferPro instance (documents: URL, Channel ID, Authentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSpec {
    /// The remote instance (`http://remote-server:8080`). Without it the side waits for the
    /// remote to connect (a source accepts pushes, a destination serves pulls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The channel on the remote instance.
    pub channel_id: String,
    /// Credentials of a user of the remote instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// For an `https://` url: which server certificates to trust (`ca`, else the system's
    /// roots; `server_name`; `insecure_skip_verify` for lab use) and an optional client
    /// certificate (`cert`, `key`). `enabled` is implied by the url's scheme.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls: TlsSpec,
}

/// An MQTT broker, as a destination (publishes each message) or a source (subscribes).
///
/// A destination's message is Done only once the broker acknowledged it (`PUBACK` for `QoS` 1,
/// `PUBCOMP` for `QoS` 2); a source acknowledges a message to the broker only once it is durable
/// here, on a persistent session so nothing published while the link is down is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSpec {
    /// The broker: `mqtt://host:1883`, or `mqtts://host:8883` for TLS.
    pub url: String,
    /// Protocol version: `"5"` (default) or `"3.1.1"` for brokers that speak only that.
    #[serde(default)]
    pub version: MqttVersion,
    /// Client identifier; default `iobp-<pair id>`. A source's persistent session belongs to
    /// it: two clients with the same id take the session from each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Destination: the topic each message is published to, where `{pair}` becomes the pair's
    /// id. Source: the topic filter subscribed to (`+` and `#` wildcards allowed).
    pub topic: String,
    /// Quality of service: 1 (default, at least once) or 2 (exactly once between us and the
    /// broker).
    #[serde(default = "default_mqtt_qos")]
    pub qos: u8,
    /// User name and password for the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// For `mqtts://`: which server certificates to trust (`ca`, else the system's roots;
    /// `server_name`; `insecure_skip_verify` for lab use) and an optional client certificate
    /// (`cert`, `key`). `enabled` is implied by the scheme.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tls: TlsSpec,
    /// Destination: messages published and not yet acknowledged, at most (default 64, 1–1024).
    /// The broker may allow fewer (MQTT 5 Receive Maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u16>,
    /// Seconds between keep-alive pings (default 30, 5–3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_s: Option<u16>,
    /// Give up a connection attempt after this long. Default 10000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Source, MQTT 5: store a message carrying the `iobp-id` user property of another
    /// ioBufferPro (`<buffer id>:<sequence>`) only once — a copy its sender published again
    /// after a reconnect or a crash is dropped. Off by default: turn it on only where the
    /// publishers to the filter are ioBufferPro instances the broker's ACL trusts, since a
    /// forged id could make later messages of that sender be dropped.
    #[serde(default, skip_serializing_if = "is_default")]
    pub drop_duplicates: bool,
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0: reason codes, and each message carries its id as a user property.
    #[default]
    #[serde(rename = "5")]
    V5,
}

fn default_mqtt_qos() -> u8 {
    1
}

/// Default publish window of an `mqtt` destination.
pub const DEFAULT_MQTT_IN_FLIGHT: u16 = 64;

/// User name and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// How a byte stream is cut into messages. Default: `raw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FramingSpec {
    /// Byte-transparent: every byte arrives, in order, unchanged.
    Raw {
        /// Largest message; longer chunks are split, never dropped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// Messages end with a delimiter (default `"\n"`), which is not part of the message.
    Line {
        /// The delimiter.
        #[serde(default = "newline")]
        delimiter: ByteString,
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// HL7 MLLP: `0x0B` message `0x1C 0x0D`.
    Mllp {
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// `0x02` message `0x03`.
    StxEtx {
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// A big-endian length of 1, 2 or 4 bytes, then the message.
    LengthPrefixed {
        /// Width of the length field. Default 4.
        #[serde(default = "default_length_bytes")]
        length_bytes: u8,
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// Any start and end byte sequences (start may be empty).
    Delimited {
        /// Bytes that open a message.
        #[serde(default)]
        start: ByteString,
        /// Bytes that close a message.
        end: ByteString,
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// A message ends after `gap_ms` of silence.
    IdleGap {
        /// The silence that ends a message.
        gap_ms: u64,
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
    /// The ASTM E1381 (CLSI LIS1-A) link protocol of clinical analyzers: `ENQ`, numbered
    /// frames with checksums answered `ACK`/`NAK`, `EOT`. The side speaks the protocol itself
    /// (so `ack` stays `none`): a source answers the instrument, and acknowledges a message's
    /// last frame only once the message is durable; a destination sends each message as one
    /// transmission and marks it Done on the last frame's `ACK`. One message is one E1394
    /// message: its records from the Header (`H`) through the Terminator (`L`), each ending
    /// with `CR`, without the link framing.
    Astm {
        /// Largest message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u32>,
    },
}

fn newline() -> ByteString {
    ByteString(b"\n".to_vec())
}

fn default_length_bytes() -> u8 {
    4
}

impl Default for FramingSpec {
    fn default() -> Self {
        FramingSpec::Raw { max_message_bytes: None }
    }
}

impl FramingSpec {
    /// The JSON `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            FramingSpec::Raw { .. } => "raw",
            FramingSpec::Line { .. } => "line",
            FramingSpec::Mllp { .. } => "mllp",
            FramingSpec::StxEtx { .. } => "stx_etx",
            FramingSpec::LengthPrefixed { .. } => "length_prefixed",
            FramingSpec::Delimited { .. } => "delimited",
            FramingSpec::IdleGap { .. } => "idle_gap",
            FramingSpec::Astm { .. } => "astm",
        }
    }

    /// The configured maximum message size, or the default.
    pub fn max_message_bytes(&self) -> u32 {
        let m = match self {
            FramingSpec::Raw { max_message_bytes }
            | FramingSpec::Line { max_message_bytes, .. }
            | FramingSpec::Mllp { max_message_bytes }
            | FramingSpec::StxEtx { max_message_bytes }
            | FramingSpec::LengthPrefixed { max_message_bytes, .. }
            | FramingSpec::Delimited { max_message_bytes, .. }
            | FramingSpec::IdleGap { max_message_bytes, .. }
            | FramingSpec::Astm { max_message_bytes } => *max_message_bytes,
        };
        m.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// Acknowledgements. Also accepted as a plain string: `"ack": "mllp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AckSpec {
    /// No acknowledgement: a source sends nothing; a destination's message is Done once
    /// written and flushed to the connection.
    #[default]
    None,
    /// HL7: a source answers each stored message with an HL7 ACK (AA; AE when the buffer is
    /// full); a destination waits for one (AA/CA Done, AE/AR retried).
    Mllp {
        /// Destination: how long to wait for the ACK. Default 10000 ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// One byte: a source answers `ack` once stored, `nak` when it cannot store; a destination
    /// waits for `ack` (Done) or `nak` (retried).
    Byte {
        /// Acknowledge byte. Default 0x06.
        #[serde(default = "default_ack_byte")]
        ack: u8,
        /// Negative acknowledge byte. Default 0x15.
        #[serde(default = "default_nak_byte")]
        nak: u8,
        /// Destination: how long to wait. Default 10000 ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
}

/// Default destination acknowledgement timeout.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 10_000;

fn default_ack_byte() -> u8 {
    0x06
}
fn default_nak_byte() -> u8 {
    0x15
}

impl AckSpec {
    /// The JSON `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            AckSpec::None => "none",
            AckSpec::Mllp { .. } => "mllp",
            AckSpec::Byte { .. } => "byte",
        }
    }

    /// The destination's wait for an acknowledgement.
    pub fn timeout_ms(&self) -> u64 {
        match self {
            AckSpec::None => 0,
            AckSpec::Mllp { timeout_ms } | AckSpec::Byte { timeout_ms, .. } => {
                timeout_ms.unwrap_or(DEFAULT_ACK_TIMEOUT_MS)
            }
        }
    }
}

/// The object spelling of an `ack`, for deserialisation with exact error messages.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum AckFull {
    None,
    Mllp {
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Byte {
        #[serde(default = "default_ack_byte")]
        ack: u8,
        #[serde(default = "default_nak_byte")]
        nak: u8,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
}

impl<'de> Deserialize<'de> for AckSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => match s.as_str() {
                "none" => Ok(AckSpec::None),
                "mllp" => Ok(AckSpec::Mllp { timeout_ms: None }),
                "byte" => Ok(AckSpec::Byte { ack: 0x06, nak: 0x15, timeout_ms: None }),
                other => Err(D::Error::custom(format!(
                    "unknown ack type `{other}`, expected one of `none`, `mllp`, `byte`"
                ))),
            },
            v => match AckFull::deserialize(v).map_err(D::Error::custom)? {
                AckFull::None => Ok(AckSpec::None),
                AckFull::Mllp { timeout_ms } => Ok(AckSpec::Mllp { timeout_ms }),
                AckFull::Byte { ack, nak, timeout_ms } => {
                    Ok(AckSpec::Byte { ack, nak, timeout_ms })
                }
            },
        }
    }
}

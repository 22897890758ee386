//! Validation. Every problem names the field (a JSON path such as
//! `channel_pairs[2].source.port`) and the reason; all problems are reported at once.

use std::collections::HashMap;
use std::fmt;

use crate::spec::{
    AckSpec, BackoffSpec, ChannelPairSpec, ClientAuthMode, ConfigDocument, EndpointSpec,
    FlowControl, FramingSpec, MAX_MESSAGE_BYTES_LIMIT, RELAY_MAX_RECORD_BYTES, Settings, TlsSpec,
};

/// One problem with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON path (`channel_pairs[0].source.port`), empty for the document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A configuration was refused; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { problems: vec![Problem { path: path.into(), message: message.into() }] }
    }

    /// Prefixes every path (used when a pair is validated as part of a document).
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        for p in &mut self.problems {
            p.path = join(prefix, &p.path);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ if path.starts_with('[') => format!("{prefix}{path}"),
        _ => format!("{prefix}.{path}"),
    }
}

/// Collects problems under a path.
struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn new() -> Self {
        Check { problems: Vec::new() }
    }

    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem { path: path.to_string(), message: message.into() });
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// Which side of a pair an endpoint is on; some settings only make sense on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Receives messages into the buffer.
    Source,
    /// Delivers messages from the buffer.
    Destination,
}

/// Checks an identifier (pair id, channel id).
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if id.starts_with('.') {
        return Err("must not start with `.`".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!("contains `{c}`; use only letters, digits, `.`, `_` and `-`"));
    }
    Ok(())
}

fn check_host(c: &mut Check, path: &str, host: &str) {
    if host.trim().is_empty() {
        c.fail(path, "must not be empty");
    } else if host.len() > 253 || host.chars().any(char::is_whitespace) {
        c.fail(path, "is not a valid host name or IP address");
    }
}

fn check_port(c: &mut Check, path: &str, port: u16) {
    if port == 0 {
        c.fail(path, "must be between 1 and 65535");
    }
}

impl Settings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut c = Check::new();
        if self.max_storage_mb == 0 {
            c.fail("max_storage_mb", "must be at least 1");
        }
        if self.retention_hours > 24 * 366 * 10 {
            c.fail("retention_hours", "must be at most ten years");
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            c.fail("log_level", "must be one of error, warn, info, debug, trace");
        }
        for (field, addr) in [("ops_listen", &self.ops_listen), ("mgmt_listen", &self.mgmt_listen)]
        {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                c.fail(field, "must be an address like 0.0.0.0:8080 or [::]:8080");
            }
        }
        // Port 0 means "any free port" (the two portals then get different ones).
        let any_port = self.ops_listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.port() == 0);
        if self.ops_listen == self.mgmt_listen && !any_port {
            c.fail("mgmt_listen", "must differ from ops_listen");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => c.fail("tls_key", "is required with tls_cert"),
            (None, Some(_)) => c.fail("tls_cert", "is required with tls_key"),
            _ => {}
        }
        for (field, v) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                c.fail(field, "must not be empty when given");
            }
        }
        c.finish()
    }
}

impl ChannelPairSpec {
    /// Checks one pair on its own (paths relative to the pair).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut c = Check::new();
        if let Err(e) = check_id(&self.id) {
            c.fail("id", e);
        }
        if self.name.len() > 200 {
            c.fail("name", "must be at most 200 characters");
        }
        check_endpoint(&mut c, "source", &self.source, Side::Source);
        check_endpoint(&mut c, "destination", &self.destination, Side::Destination);
        let fp = &self.failover_policy;
        if fp.failures == 0 || fp.failures > 1000 {
            c.fail("failover_policy.failures", "must be between 1 and 1000");
        }
        for (name, v) in
            [("failed_after_ms", fp.failed_after_ms), ("probe_interval_ms", fp.probe_interval_ms)]
        {
            if !(100..=3_600_000).contains(&v) {
                c.fail(&format!("failover_policy.{name}"), "must be between 100 and 3600000");
            }
        }
        for (i, f) in self.failover.iter().enumerate() {
            check_endpoint(&mut c, &format!("failover[{i}]"), f, Side::Destination);
        }
        if check_id(&self.id).is_ok() {
            check_nats_names_with_id(&mut c, self);
        }
        check_backoff(&mut c, "retry", &self.retry);
        if self.max_storage_mb == Some(0) {
            c.fail("max_storage_mb", "must be at least 1");
        }
        if let Some(d) = self.dead_letter
            && !(1..=1000).contains(&d.after_rejections)
        {
            c.fail("dead_letter.after_rejections", "must be between 1 and 1000");
        }
        check_relay_record_size(&mut c, self);
        c.finish()
    }
}

/// A pair that delivers to another instance may only take messages one relay frame can
/// carry; a larger one would never leave.
fn check_relay_record_size(c: &mut Check, pair: &ChannelPairSpec) {
    let relays = std::iter::once(&pair.destination)
        .chain(&pair.failover)
        .any(|d| matches!(d, EndpointSpec::Remote(_)));
    let Some(framing) = pair.source.framing().filter(|_| relays) else { return };
    if framing.max_message_bytes() > RELAY_MAX_RECORD_BYTES {
        c.fail(
            "source.framing.max_message_bytes",
            format!(
                "must be at most {RELAY_MAX_RECORD_BYTES} (16 MiB) when messages go to another \
                 ioBufferPro instance: one relay record carries at most that much"
            ),
        );
    }
}

fn check_backoff(c: &mut Check, path: &str, b: &BackoffSpec) {
    if b.initial_ms < 10 {
        c.fail(&format!("{path}.initial_ms"), "must be at least 10 ms");
    }
    if b.max_ms < b.initial_ms {
        c.fail(&format!("{path}.max_ms"), "must be at least initial_ms");
    }
    if b.max_ms > 86_400_000 {
        c.fail(&format!("{path}.max_ms"), "must be at most one day (86400000 ms)");
    }
    if b.jitter_percent > 100 {
        c.fail(&format!("{path}.jitter_percent"), "must be between 0 and 100");
    }
}

fn check_endpoint(c: &mut Check, path: &str, e: &EndpointSpec, side: Side) {
    let p = |f: &str| format!("{path}.{f}");
    match e {
        EndpointSpec::TcpServer(s) => {
            check_host(c, &p("host"), &s.host);
            check_port(c, &p("port"), s.port);
            if s.max_connections == 0 || s.max_connections > 65_535 {
                c.fail(&p("max_connections"), "must be between 1 and 65535");
            }
            if side == Side::Destination && s.idle_timeout_s.is_some() {
                c.fail(&p("idle_timeout_s"), "applies to sources only");
            }
            check_write_timeout(c, &p("write_timeout_ms"), s.write_timeout_ms, side);
            check_tls(c, &p("tls"), &s.tls, true);
        }
        EndpointSpec::TcpClient(s) => {
            check_host(c, &p("host"), &s.host);
            check_port(c, &p("port"), s.port);
            if s.connect_timeout_ms.is_some_and(|t| !(10..=600_000).contains(&t)) {
                c.fail(&p("connect_timeout_ms"), "must be between 10 and 600000");
            }
            check_write_timeout(c, &p("write_timeout_ms"), s.write_timeout_ms, side);
            check_tls(c, &p("tls"), &s.tls, false);
        }
        EndpointSpec::Udp(s) => {
            check_host(c, &p("host"), &s.host);
            check_port(c, &p("port"), s.port);
            match s.receive_buffer_bytes {
                Some(_) if side != Side::Source => {
                    c.fail(&p("receive_buffer_bytes"), "applies to udp sources only");
                }
                Some(bytes) if !(64 * 1024..=256 * 1024 * 1024).contains(&bytes) => c.fail(
                    &p("receive_buffer_bytes"),
                    "must be between 65536 (64 KiB) and 268435456 (256 MiB)",
                ),
                _ => {}
            }
        }
        EndpointSpec::Serial(s) => {
            check_serial_line(c, path, s);
            check_write_timeout(c, &p("write_timeout_ms"), s.write_timeout_ms, side);
        }
        EndpointSpec::Remote(r) => {
            if let Err(e) = check_id(&r.channel_id) {
                c.fail(&p("channel_id"), e);
            }
            if let Some(url) = &r.url {
                if let Err(e) = check_url(url) {
                    c.fail(&p("url"), e);
                }
                if r.auth.is_none() {
                    c.fail(
                        &p("auth"),
                        "is required when url is set (a user of the remote instance)",
                    );
                }
            }
            if let Some(a) = &r.auth
                && a.username.trim().is_empty()
            {
                c.fail(&p("auth.username"), "must not be empty");
            }
            check_remote_tls(c, path, r);
        }
        EndpointSpec::Mqtt(m) => check_mqtt(c, path, m, side),
        EndpointSpec::Nats(n) => check_nats(c, path, n, side),
        EndpointSpec::Modbus(m) => check_modbus(c, path, m, side),
    }
    if let Some(f) = e.framing() {
        check_framing(c, &p("framing"), f);
    }
    check_ack(c, path, e, side);
}

/// The line settings of a serial port (a `serial` side, a `modbus` side's RTU transport).
fn check_serial_line(c: &mut Check, path: &str, s: &crate::spec::SerialSpec) {
    let p = |f: &str| format!("{path}.{f}");
    if s.port.trim().is_empty() {
        c.fail(&p("port"), "must name a serial port (COM3, /dev/ttyUSB0)");
    }
    if s.baud_rate == 0 || s.baud_rate > 20_000_000 {
        c.fail(&p("baud_rate"), "must be between 1 and 20000000");
    }
    if !(5..=8).contains(&s.data_bits) {
        c.fail(&p("data_bits"), "must be 5, 6, 7 or 8");
    }
    if !(1..=2).contains(&s.stop_bits) {
        c.fail(&p("stop_bits"), "must be 1 or 2");
    }
    if let Some(r) = &s.rs485 {
        if s.flow_control == FlowControl::RtsCts {
            c.fail(
                &p("flow_control"),
                "RTS/CTS cannot be used with RS-485: RS-485 drives RTS to switch the transceiver",
            );
        }
        for (f, v) in [
            ("delay_before_send_ms", r.delay_before_send_ms),
            ("delay_after_send_ms", r.delay_after_send_ms),
        ] {
            if v > 1000 {
                c.fail(&p(&format!("rs485.{f}")), "must be between 0 and 1000");
            }
        }
    }
}

/// A `modbus` side (sources only): the transport, and each poll's block, schedule and fields
/// within the protocol's limits.
fn check_modbus(c: &mut Check, path: &str, spec: &crate::modbus::ModbusSpec, side: Side) {
    use crate::modbus::{MAX_MODBUS_POLLS, ModbusTransport};
    let at = |f: &str| format!("{path}.{f}");
    if side != Side::Source {
        // A device is polled, never written to: there is nothing to deliver to.
        c.fail(&at("type"), "modbus is a source only: a Modbus device is polled, not written to");
        return;
    }
    let (rtu, timeout) = match &spec.transport {
        ModbusTransport::Tcp(t) => {
            check_host(c, &at("transport.host"), &t.host);
            check_port(c, &at("transport.port"), t.port);
            (false, t.timeout_ms)
        }
        ModbusTransport::Rtu(r) => {
            check_serial_line(c, &at("transport"), &r.serial());
            (true, r.timeout_ms)
        }
    };
    if timeout.is_some_and(|t| !(10..=60_000).contains(&t)) {
        c.fail(&at("transport.timeout_ms"), "must be between 10 and 60000");
    }
    if spec.polls.is_empty() {
        c.fail(&at("polls"), "must list at least one poll");
    }
    if spec.polls.len() > MAX_MODBUS_POLLS {
        c.fail(&at("polls"), format!("must list at most {MAX_MODBUS_POLLS} polls"));
        return;
    }
    let mut names = HashMap::new();
    for (i, poll) in spec.polls.iter().enumerate() {
        let poll_path = format!("{path}.polls[{i}]");
        check_modbus_poll(c, &poll_path, poll, rtu);
        if let Some(first) = names.insert(poll.name.as_str(), i) {
            c.fail(&format!("{poll_path}.name"), format!("is already the name of polls[{first}]"));
        }
    }
}

fn modbus_name_ok(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= crate::modbus::MAX_MODBUS_NAME
}

/// One poll of a `modbus` side: unit, block, interval and fields.
fn check_modbus_poll(c: &mut Check, path: &str, poll: &crate::modbus::ModbusPoll, rtu: bool) {
    use crate::modbus::{
        MAX_MODBUS_BITS, MAX_MODBUS_FIELDS, MAX_MODBUS_INTERVAL_MS, MAX_MODBUS_NAME,
        MAX_MODBUS_REGISTERS, MIN_MODBUS_INTERVAL_MS,
    };
    let at = |f: &str| format!("{path}.{f}");
    if !modbus_name_ok(&poll.name) {
        c.fail(&at("name"), format!("must be 1 to {MAX_MODBUS_NAME} characters"));
    }
    if rtu && !(1..=247).contains(&poll.unit) {
        c.fail(
            &at("unit"),
            "must be between 1 and 247 on RTU (0 is broadcast, which no device answers)",
        );
    }
    let (max, what) = if poll.function.reads_bits() {
        (MAX_MODBUS_BITS, "bits")
    } else {
        (MAX_MODBUS_REGISTERS, "registers")
    };
    if poll.count == 0 || poll.count > max {
        c.fail(
            &at("count"),
            format!("must be between 1 and {max} {what} for {}", poll.function.as_str()),
        );
    } else if u32::from(poll.address) + u32::from(poll.count) > 65_536 {
        c.fail(&at("count"), "reaches past address 65535 (address + count must be at most 65536)");
    }
    if !(MIN_MODBUS_INTERVAL_MS..=MAX_MODBUS_INTERVAL_MS).contains(&poll.interval_ms) {
        c.fail(
            &at("interval_ms"),
            format!(
                "must be between {MIN_MODBUS_INTERVAL_MS} and {MAX_MODBUS_INTERVAL_MS} (one day)"
            ),
        );
    }
    if poll.fields.len() > MAX_MODBUS_FIELDS {
        c.fail(&at("fields"), format!("must list at most {MAX_MODBUS_FIELDS} fields"));
        return;
    }
    let mut names = HashMap::new();
    for (j, field) in poll.fields.iter().enumerate() {
        let field_path = format!("{path}.fields[{j}]");
        check_modbus_field(c, &field_path, field, poll, what);
        if let Some(first) = names.insert(field.name.as_str(), j) {
            c.fail(
                &format!("{field_path}.name"),
                format!("is already the name of fields[{first}]"),
            );
        }
    }
}

/// One decoded field of a poll: its name, type and place in the block, scaling.
fn check_modbus_field(
    c: &mut Check,
    path: &str,
    field: &crate::modbus::ModbusField,
    poll: &crate::modbus::ModbusPoll,
    what: &str,
) {
    use crate::modbus::{MAX_MODBUS_NAME, ModbusValueType};
    let at = |x: &str| format!("{path}.{x}");
    if !modbus_name_ok(&field.name) {
        c.fail(&at("name"), format!("must be 1 to {MAX_MODBUS_NAME} characters"));
    }
    if poll.function.reads_bits() && field.kind != ModbusValueType::Bool {
        c.fail(&at("type"), "must be bool: coils and discrete inputs are bits");
    }
    if u32::from(field.offset) + u32::from(field.kind.width()) > u32::from(poll.count) {
        c.fail(
            &at("offset"),
            format!(
                "reaches past the poll's {} {what} (offset + width must be at most count)",
                poll.count
            ),
        );
    }
    for (x, v) in [("scale", field.scale), ("offset_value", field.offset_value)] {
        match v {
            Some(_) if field.kind == ModbusValueType::Bool => {
                c.fail(&at(x), "applies to numbers only, not bool");
            }
            Some(d) if !d.0.is_finite() => c.fail(&at(x), "must be a finite number"),
            _ => {}
        }
    }
}

/// An `mqtt` side: the broker url, the topic (a name to publish to, a filter to subscribe
/// to), `QoS`, window, timers and TLS (client settings, for an `mqtts://` url only).
fn check_mqtt(c: &mut Check, path: &str, m: &crate::spec::MqttSpec, side: Side) {
    let p = |f: &str| format!("{path}.{f}");
    if let Err(e) = parse_mqtt_url(&m.url) {
        c.fail(&p("url"), e);
    }
    if let Some(id) = &m.client_id
        && (id.is_empty()
            || id.len() > 256
            || id.chars().any(|ch| ch.is_control() || ch.is_whitespace()))
    {
        c.fail(&p("client_id"), "must be 1 to 256 printable characters without spaces");
    }
    if let Err(e) = check_mqtt_topic(&m.topic, side) {
        c.fail(&p("topic"), e);
    }
    if !(1..=2).contains(&m.qos) {
        c.fail(&p("qos"), "must be 1 (at least once) or 2 (exactly once): QoS 0 can lose messages");
    }
    match m.in_flight {
        Some(_) if side == Side::Source => c.fail(&p("in_flight"), "applies to destinations only"),
        Some(n) if !(1..=1024).contains(&n) => {
            c.fail(&p("in_flight"), "must be between 1 and 1024");
        }
        _ => {}
    }
    if m.keep_alive_s.is_some_and(|k| !(5..=3600).contains(&k)) {
        c.fail(&p("keep_alive_s"), "must be between 5 and 3600");
    }
    if m.connect_timeout_ms.is_some_and(|t| !(10..=600_000).contains(&t)) {
        c.fail(&p("connect_timeout_ms"), "must be between 10 and 600000");
    }
    if let Some(a) = &m.auth
        && a.username.is_empty()
    {
        c.fail(&p("auth.username"), "must not be empty");
    }
    if m.drop_duplicates {
        if side != Side::Source {
            c.fail(&p("drop_duplicates"), "applies to sources only");
        } else if m.version != crate::spec::MqttVersion::V5 {
            c.fail(&p("drop_duplicates"), "needs MQTT 5 (3.1.1 messages carry no id)");
        }
    }
    let tls = &m.tls;
    if *tls != TlsSpec::default() {
        if !m.url.starts_with("mqtts://") {
            c.fail(&p("tls"), "applies to an mqtts:// url only");
        }
        if tls.client_auth != ClientAuthMode::None {
            c.fail(&p("tls.client_auth"), "applies to servers only");
        }
        if tls.cert.is_some() != tls.key.is_some() {
            let missing = if tls.cert.is_some() { "key" } else { "cert" };
            c.fail(&p(&format!("tls.{missing}")), "a client certificate needs both cert and key");
        }
    }
}

/// A broker address from an `mqtt` side's url: `(host, port, tls)`. `mqtt://host[:1883]` or
/// `mqtts://host[:8883]`; IPv6 hosts in brackets.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls, default_port) = if let Some(r) = url.strip_prefix("mqtt://") {
        (r, false, 1883)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (r, true, 8883)
    } else {
        return Err("must start with mqtt:// or mqtts://".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.chars().any(char::is_whitespace)
    {
        return Err(
            "must be mqtt://host:port or mqtts://host:port (no path, no user in the url: use auth)"
                .into(),
        );
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("an IPv6 address needs its closing ]")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :port after the IPv6 address")?),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host.len() > 253 {
        return Err("must name the broker's host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("the port must be between 1 and 65535".into()),
        },
    };
    Ok((host, port, tls))
}

/// A topic to publish to (destination: no wildcards; `{pair}` is replaced) or a filter to
/// subscribe to (source: `+` a whole level, `#` the whole last level).
fn check_mqtt_topic(topic: &str, side: Side) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("must not be empty");
    }
    if topic.len() > 32_767 || topic.contains('\0') {
        return Err("must be at most 32767 bytes without NUL characters");
    }
    match side {
        Side::Destination => {
            if topic.contains(['+', '#']) {
                return Err("is where messages are published: no + or # wildcards");
            }
        }
        Side::Source => {
            let levels: Vec<&str> = topic.split('/').collect();
            for (i, level) in levels.iter().enumerate() {
                if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
                    return Err("# must be a whole level and the last one (sensors/#)");
                }
                if level.contains('+') && *level != "+" {
                    return Err("+ must be a whole level (sensors/+/temperature)");
                }
            }
        }
    }
    Ok(())
}

/// A `nats` side: servers, subject, stream and consumer, credentials, TLS (client settings
/// only), and the settings that belong to one side.
fn check_nats(c: &mut Check, path: &str, n: &crate::spec::NatsSpec, side: Side) {
    let p = |f: &str| format!("{path}.{f}");
    if n.servers.is_empty() {
        c.fail(&p("servers"), "must list at least one server (nats://host:4222)");
    }
    for (i, url) in n.servers.iter().enumerate() {
        if let Err(e) = check_nats_url(url) {
            c.fail(&p(&format!("servers[{i}]")), e);
        }
    }
    match side {
        Side::Destination => {
            let subject = n.subject.replace("{pair}", "pair");
            if let Err(e) = check_subject(&subject, false) {
                c.fail(&p("subject"), e);
            }
            if n.consumer.is_some() {
                c.fail(&p("consumer"), "applies to nats sources only");
            }
            if n.ack_wait_s.is_some() {
                c.fail(&p("ack_wait_s"), "applies to nats sources only");
            }
            if n.in_flight.is_some_and(|w| !(1..=crate::spec::MAX_NATS_IN_FLIGHT).contains(&w)) {
                c.fail(&p("in_flight"), "must be between 1 and 4096");
            }
        }
        Side::Source => {
            if let Err(e) = check_subject(&n.subject, true) {
                c.fail(&p("subject"), e);
            }
            if n.stream.trim().is_empty() {
                c.fail(&p("stream"), "is required on a nats source: the stream to consume");
            }
            if n.in_flight.is_some() {
                c.fail(&p("in_flight"), "applies to nats destinations only");
            }
            if n.ack_wait_s.is_some_and(|w| !(1..=3600).contains(&w)) {
                c.fail(&p("ack_wait_s"), "must be between 1 and 3600");
            }
            if let Some(name) = &n.consumer
                && (name.is_empty() || name.chars().any(|ch| " .*>\t\r\n/\\".contains(ch)))
            {
                c.fail(&p("consumer"), "must be a name without spaces, `.`, `*`, `>` or `/`");
            }
        }
    }
    if !n.stream.is_empty() && n.stream.chars().any(|ch| " .*>\t\r\n/\\".contains(ch)) {
        c.fail(&p("stream"), "must be a stream name without spaces, `.`, `*`, `>` or `/`");
    }
    if let Some(a) = &n.auth {
        check_nats_auth(c, &p("auth"), a);
    }
    let t = &n.tls;
    if t.client_auth != ClientAuthMode::None {
        c.fail(&p("tls.client_auth"), "applies to TLS servers (tcp_server) only");
    }
    if t.server_name.as_deref().is_some_and(|s| s.trim().is_empty()) {
        c.fail(&p("tls.server_name"), "must not be empty when given");
    }
    match (&t.cert, &t.key) {
        (Some(_), None) => c.fail(&p("tls.key"), "a client certificate needs its key"),
        (None, Some(_)) => c.fail(&p("tls.cert"), "a client key needs its certificate"),
        _ => {}
    }
    for (field, v) in [("cert", &t.cert), ("key", &t.key), ("ca", &t.ca)] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            c.fail(&p(&format!("tls.{field}")), "must not be empty when given");
        }
    }
}

/// What the pair id becomes in a `nats` side: the `{pair}` of a destination's subject (an id
/// ending in `.` or holding `..` makes an empty token), and a source's default consumer name
/// `iobp-<id>` (a durable name cannot hold `.`). Refused here, at the field, rather than by
/// JetStream at run time. Only sides whose own settings passed are looked at.
fn check_nats_names_with_id(c: &mut Check, pair: &ChannelPairSpec) {
    let id = pair.id.as_str();
    let sides = [
        ("source", &pair.source, Side::Source),
        ("destination", &pair.destination, Side::Destination),
    ]
    .into_iter()
    .map(|(p, e, s)| (p.to_string(), e, s))
    .chain(
        pair.failover
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("failover[{i}]"), e, Side::Destination)),
    );
    for (path, e, side) in sides {
        let EndpointSpec::Nats(n) = e else { continue };
        match side {
            Side::Destination => {
                let template_ok =
                    check_subject(&n.subject.replace("{pair}", "pair"), false).is_ok();
                if !template_ok || !n.subject.contains("{pair}") {
                    continue;
                }
                let subject = n.subject.replace("{pair}", id);
                if let Err(e) = check_subject(&subject, false) {
                    c.fail(
                        &format!("{path}.subject"),
                        format!(
                            "with the pair id `{id}` in place of {{pair}} it is `{subject}`, which {e}; \
                             change the subject or the pair id"
                        ),
                    );
                }
            }
            Side::Source => {
                if n.consumer.is_none() && id.contains('.') {
                    c.fail(
                        &format!("{path}.consumer"),
                        format!(
                            "the default consumer name `{}` holds the `.` of the pair id, which a \
                             JetStream consumer name cannot: set `consumer` (e.g. `{}`)",
                            n.consumer_name(id),
                            n.consumer_name(id).replace('.', "-")
                        ),
                    );
                }
            }
        }
    }
}

/// A NATS server URL: `nats://host[:port]` or `tls://host[:port]`, without user info (the
/// credentials go in `auth`, which the API masks).
pub fn check_nats_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
        .ok_or("must start with nats:// or tls://")?;
    if rest.contains('@') {
        return Err("must not contain credentials: put them in `auth`".into());
    }
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err("must be nats://host:port or tls://host:port, without a path".into());
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') && h.contains(':') => {
            // An IPv6 address without brackets is ambiguous.
            return Err(format!("write the IPv6 address in brackets: [{h}:{port}]"));
        }
        Some((h, port)) => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err("has an invalid port".into());
            }
            h
        }
        None => authority,
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("must contain a host name".into());
    }
    Ok(())
}

/// A NATS subject: dot-separated tokens, none empty, no whitespace; wildcards (`*`, `>` as the
/// last token) only where `wildcards` (a consumer's filter).
fn check_subject(s: &str, wildcards: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 1024 {
        return Err("must be at most 1024 characters".into());
    }
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err("must not have empty tokens (`..`, or a `.` at either end)".into());
        }
        if t.chars().any(char::is_whitespace) {
            return Err("must not contain whitespace".into());
        }
        let wild = *t == "*" || (*t == ">" && i == tokens.len() - 1);
        if (t.contains('*') || t.contains('>')) && !(wildcards && wild) {
            return Err(if wildcards {
                "wildcards must be whole tokens: `*`, or `>` as the last token".into()
            } else {
                "a destination publishes to one subject: no wildcards (`*`, `>`)".into()
            });
        }
    }
    Ok(())
}

fn check_nats_auth(c: &mut Check, path: &str, a: &crate::spec::NatsAuth) {
    let p = |f: &str| format!("{path}.{f}");
    let user = a.username.is_some() || a.password.is_some();
    let ways =
        usize::from(user) + usize::from(a.token.is_some()) + usize::from(a.creds_file.is_some());
    if ways != 1 {
        c.fail(path, "give exactly one of: username and password, token, creds_file");
        return;
    }
    if user {
        match (&a.username, &a.password) {
            (Some(u), Some(_)) if u.trim().is_empty() => {
                c.fail(&p("username"), "must not be empty");
            }
            (None, _) => c.fail(&p("username"), "is required with password"),
            (_, None) => c.fail(&p("password"), "is required with username"),
            _ => {}
        }
    }
    if a.token.as_deref().is_some_and(str::is_empty) {
        c.fail(&p("token"), "must not be empty");
    }
    // Whether the file exists and holds a user JWT with its NKey is checked by the engine when
    // the pair is created or edited (like TLS files), not here: validation reads no files.
    if a.creds_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
        c.fail(&p("creds_file"), "must not be empty when given");
    }
}

/// A relay side's `tls`: for an https url, client settings only.
fn check_remote_tls(c: &mut Check, path: &str, remote: &crate::spec::RemoteSpec) {
    let tls = &remote.tls;
    if *tls == TlsSpec::default() {
        return;
    }
    if !remote.url.as_deref().is_some_and(|u| u.starts_with("https://")) {
        c.fail(&format!("{path}.tls"), "applies to an https:// url only");
    }
    if tls.client_auth != ClientAuthMode::None {
        c.fail(&format!("{path}.tls.client_auth"), "applies to servers only");
    }
    if tls.cert.is_some() != tls.key.is_some() {
        let missing = if tls.cert.is_some() { "key" } else { "cert" };
        c.fail(&format!("{path}.tls.{missing}"), "a client certificate needs both cert and key");
    }
}

fn check_write_timeout(c: &mut Check, path: &str, t: Option<u64>, side: Side) {
    match t {
        Some(_) if side == Side::Source => c.fail(path, "applies to destinations only"),
        Some(t) if !(10..=3_600_000).contains(&t) => c.fail(path, "must be between 10 and 3600000"),
        _ => {}
    }
}

/// TLS settings: a server needs its certificate and key, client certificates need a CA;
/// a client's certificate (mutual TLS) needs its key. Whether the files load is checked by the
/// engine, which has the machine.
fn check_tls(c: &mut Check, path: &str, t: &crate::spec::TlsSpec, server: bool) {
    for (field, v) in
        [("cert", &t.cert), ("key", &t.key), ("ca", &t.ca), ("server_name", &t.server_name)]
    {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            c.fail(&format!("{path}.{field}"), "must not be empty when given");
        }
    }
    if !t.enabled {
        return;
    }
    if server {
        if t.cert.is_none() {
            c.fail(&format!("{path}.cert"), "a TLS server needs its certificate (PEM file)");
        }
        if t.key.is_none() {
            c.fail(&format!("{path}.key"), "a TLS server needs its private key (PEM file)");
        }
        if t.client_auth != crate::spec::ClientAuthMode::None && t.ca.is_none() {
            c.fail(
                &format!("{path}.ca"),
                "client_auth needs the CA that client certificates must chain to",
            );
        }
        if t.insecure_skip_verify {
            c.fail(
                &format!("{path}.insecure_skip_verify"),
                "applies to TLS clients (tcp_client) only",
            );
        }
        if t.server_name.is_some() {
            c.fail(&format!("{path}.server_name"), "applies to TLS clients (tcp_client) only");
        }
    } else {
        if t.client_auth != crate::spec::ClientAuthMode::None {
            c.fail(&format!("{path}.client_auth"), "applies to TLS servers (tcp_server) only");
        }
        match (&t.cert, &t.key) {
            (Some(_), None) => c.fail(&format!("{path}.key"), "a client certificate needs its key"),
            (None, Some(_)) => {
                c.fail(&format!("{path}.cert"), "a client key needs its certificate");
            }
            _ => {}
        }
    }
}

/// Checks a relay URL: `http://host[:port]` or `https://host[:port]`.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, port)| if port.parse::<u16>().is_ok() { h } else { authority });
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("must contain a host name".into());
    }
    Ok(())
}

fn check_framing(c: &mut Check, path: &str, f: &FramingSpec) {
    let max = f.max_message_bytes();
    if max == 0 || max > MAX_MESSAGE_BYTES_LIMIT {
        c.fail(
            &format!("{path}.max_message_bytes"),
            format!("must be between 1 and {MAX_MESSAGE_BYTES_LIMIT}"),
        );
    }
    match f {
        FramingSpec::Line { delimiter, .. } if delimiter.0.is_empty() => {
            c.fail(&format!("{path}.delimiter"), "must not be empty");
        }
        FramingSpec::LengthPrefixed { length_bytes, .. } if ![1, 2, 4].contains(length_bytes) => {
            c.fail(&format!("{path}.length_bytes"), "must be 1, 2 or 4");
        }
        FramingSpec::Delimited { end, .. } if end.0.is_empty() => {
            c.fail(&format!("{path}.end"), "must not be empty");
        }
        FramingSpec::IdleGap { gap_ms, .. } if !(1..=60_000).contains(gap_ms) => {
            c.fail(&format!("{path}.gap_ms"), "must be between 1 and 60000");
        }
        _ => {}
    }
}

fn check_ack(c: &mut Check, path: &str, e: &EndpointSpec, side: Side) {
    let ack = e.ack();
    let p = format!("{path}.ack");
    match ack {
        AckSpec::None => {}
        AckSpec::Mllp { timeout_ms } | AckSpec::Byte { timeout_ms, .. } => {
            if side == Side::Source && timeout_ms.is_some() {
                c.fail(&format!("{p}.timeout_ms"), "applies to destinations only");
            }
            if timeout_ms.is_some_and(|t| !(1..=3_600_000).contains(&t)) {
                c.fail(&format!("{p}.timeout_ms"), "must be between 1 and 3600000");
            }
        }
    }
    if let AckSpec::Byte { ack, nak, .. } = ack
        && ack == nak
    {
        c.fail(&format!("{p}.nak"), "must differ from ack");
    }
    if !matches!(ack, AckSpec::None) && matches!(e.framing(), Some(FramingSpec::Astm { .. })) {
        c.fail(
            &p,
            "must be `none` with `framing` of type astm: the ASTM link protocol acknowledges \
             each frame itself",
        );
    }
    if let AckSpec::Mllp { .. } = ack
        && !matches!(e.framing(), Some(FramingSpec::Mllp { .. }))
    {
        c.fail(&p, "mllp acknowledgements need `framing` of type mllp on the same side");
    }
}

/// A listening socket a pair (or a portal) would open, for conflict checks.
#[derive(Debug, Clone)]
struct Listener {
    proto: &'static str,
    host: String,
    port: u16,
    owner: String,
    path: String,
}

fn listeners_of(pair: &ChannelPairSpec, prefix: &str) -> Vec<Listener> {
    let mut out = Vec::new();
    let mut add = |proto, host: &str, port, side: &str| {
        out.push(Listener {
            proto,
            host: host.to_string(),
            port,
            owner: format!("channel pair `{}`", pair.id),
            path: join(prefix, side),
        });
    };
    if let EndpointSpec::TcpServer(s) = &pair.source {
        add("tcp", &s.host, s.port, "source.port");
    }
    if let EndpointSpec::Udp(s) = &pair.source {
        add("udp", &s.host, s.port, "source.port");
    }
    let dests = std::iter::once(("destination".to_string(), &pair.destination))
        .chain(pair.failover.iter().enumerate().map(|(i, d)| (format!("failover[{i}]"), d)));
    for (name, d) in dests {
        if let EndpointSpec::TcpServer(s) = d {
            add("tcp", &s.host, s.port, &format!("{name}.port"));
        }
    }
    out
}

fn serial_ports_of(pair: &ChannelPairSpec, prefix: &str) -> Vec<(String, String)> {
    let dests = std::iter::once(("destination".to_string(), &pair.destination))
        .chain(pair.failover.iter().enumerate().map(|(i, d)| (format!("failover[{i}]"), d)));
    std::iter::once(("source".to_string(), &pair.source))
        .chain(dests)
        .filter_map(|(side, e)| match e {
            EndpointSpec::Serial(s) => {
                Some((s.port.clone(), join(prefix, &format!("{side}.port"))))
            }
            EndpointSpec::Modbus(crate::modbus::ModbusSpec {
                transport: crate::modbus::ModbusTransport::Rtu(r),
                ..
            }) => Some((r.port.clone(), join(prefix, &format!("{side}.transport.port")))),
            _ => None,
        })
        .collect()
}

fn canonical_host(h: &str) -> &str {
    match h.trim_start_matches('[').trim_end_matches(']') {
        "0.0.0.0" | "::" | "" | "*" => "*",
        "localhost" | "127.0.0.1" | "::1" => "loopback",
        other => other,
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (canonical_host(a), canonical_host(b));
    a == "*" || b == "*" || a == b
}

/// Checks that `pairs` (and the portals in `settings`) do not listen on the same port or use
/// the same serial port, and that ids are unique. `paths` gives each pair's path prefix.
fn check_conflicts(c: &mut Check, pairs: &[(&ChannelPairSpec, String)], settings: &Settings) {
    let mut taken = Taken::new(settings);
    for (p, prefix) in pairs {
        taken.admit(c, p, prefix, true);
    }
}

/// What the pairs admitted so far use: ids, listening ports, serial ports and relay channel
/// ids, indexed so that admitting a pair costs the same whatever the number of pairs (an
/// instance with a thousand pairs starts in about a second, not minutes).
struct Taken<'a> {
    ids: HashMap<&'a str, String>,
    listeners: HashMap<(&'static str, u16), Vec<Listener>>,
    serial: HashMap<String, String>,
    relay: HashMap<String, String>,
}

impl<'a> Taken<'a> {
    fn new(settings: &Settings) -> Self {
        let mut t = Taken {
            ids: HashMap::new(),
            listeners: HashMap::new(),
            serial: HashMap::new(),
            relay: HashMap::new(),
        };
        for (name, addr) in [
            ("Operations Portal", &settings.ops_listen),
            ("Management Dashboard", &settings.mgmt_listen),
        ] {
            if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
                t.listeners.entry(("tcp", sa.port())).or_default().push(Listener {
                    proto: "tcp",
                    host: sa.ip().to_string(),
                    port: sa.port(),
                    owner: format!("the {name}"),
                    path: String::new(),
                });
            }
        }
        t
    }

    /// Checks `p` against everything admitted so far (and against itself); records what it
    /// uses when it has no conflict, or always when `always` (a whole document, where every
    /// problem is reported). Returns whether it was admitted.
    fn admit(&mut self, c: &mut Check, p: &'a ChannelPairSpec, prefix: &str, always: bool) -> bool {
        let before = c.problems.len();
        if let Some(first) = self.ids.get(p.id.as_str()) {
            c.fail(&join(prefix, "id"), format!("duplicate id `{}` (also at {first})", p.id));
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for l in listeners_of(p, prefix) {
            let same = |o: &&Listener| {
                o.proto == l.proto && o.port == l.port && overlaps(&o.host, &l.host)
            };
            let known = self.listeners.get(&(l.proto, l.port)).and_then(|v| v.iter().find(same));
            if let Some(other) = known.or_else(|| listeners.iter().find(same)) {
                c.fail(
                    &l.path,
                    format!(
                        "{} port {} is already used by {}",
                        l.proto.to_uppercase(),
                        l.port,
                        other.owner
                    ),
                );
            }
            listeners.push(l);
        }
        let owner = format!("channel pair `{}`", p.id);
        let mut serial: Vec<String> = Vec::new();
        for (dev, path) in serial_ports_of(p, prefix) {
            if let Some(other) = self.serial.get(&dev) {
                c.fail(&path, format!("serial port {dev} is already used by {other}"));
            } else if serial.contains(&dev) {
                c.fail(&path, format!("serial port {dev} is already used by {owner}"));
            }
            serial.push(dev);
        }
        // Remote instances address a relay side without url by its channel_id.
        let mut relay: Vec<String> = Vec::new();
        for (side, e) in [("source", &p.source), ("destination", &p.destination)] {
            if let EndpointSpec::Remote(r) = e
                && r.url.is_none()
            {
                let key = format!("{side}:{}", r.channel_id);
                if let Some(other) = self.relay.get(&key) {
                    c.fail(
                        &join(prefix, &format!("{side}.channel_id")),
                        format!(
                            "channel_id `{}` is already taken by the remote_icombuffer {side} \
                             of {other}",
                            r.channel_id
                        ),
                    );
                }
                relay.push(key);
            }
        }
        let admitted = c.problems.len() == before;
        if admitted || always {
            self.ids.entry(&p.id).or_insert_with(|| prefix.to_string());
            for l in listeners {
                self.listeners.entry((l.proto, l.port)).or_default().push(l);
            }
            for dev in serial {
                self.serial.entry(dev).or_insert_with(|| owner.clone());
            }
            for key in relay {
                self.relay.entry(key).or_insert_with(|| owner.clone());
            }
        }
        admitted
    }
}

/// Checks stored pairs in order, each alone and against the ones before it that passed, as
/// when an instance starts: the first of two conflicting pairs wins. One result per pair.
/// Costs about the same per pair whatever their number.
pub fn check_pairs_in_order(
    pairs: &[ChannelPairSpec],
    settings: &Settings,
) -> Vec<Result<(), ConfigError>> {
    let mut taken = Taken::new(settings);
    pairs
        .iter()
        .map(|p| {
            p.validate()?;
            let mut c = Check::new();
            taken.admit(&mut c, p, "", false);
            c.finish()
        })
        .collect()
}

impl ConfigDocument {
    /// Checks the whole document: settings, every pair, unique ids, no two listeners on one
    /// port. `current` supplies the settings in force when the document has none.
    pub fn validate(&self, current: &Settings) -> Result<(), ConfigError> {
        let mut c = Check::new();
        if let Some(s) = &self.settings
            && let Err(e) = s.validate()
        {
            c.problems.extend(e.within("settings").problems);
        }
        let pairs: Vec<(&ChannelPairSpec, String)> = self
            .channel_pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (p, format!("channel_pairs[{i}]")))
            .collect();
        for (p, prefix) in &pairs {
            if let Err(e) = p.validate() {
                c.problems.extend(e.within(prefix).problems);
            }
        }
        check_conflicts(&mut c, &pairs, self.settings.as_ref().unwrap_or(current));
        c.finish()
    }
}

/// Checks a pair about to be created or replaced among `others` (the pairs already
/// configured; one with the same id is the one being replaced and is ignored).
pub fn check_pair_among(
    pair: &ChannelPairSpec,
    others: &[ChannelPairSpec],
    settings: &Settings,
) -> Result<(), ConfigError> {
    pair.validate()?;
    let mut c = Check::new();
    let mut list: Vec<(&ChannelPairSpec, String)> = others
        .iter()
        .filter(|o| o.id != pair.id)
        .map(|o| (o, format!("(channel pair `{}`)", o.id)))
        .collect();
    list.push((pair, String::new()));
    check_conflicts(&mut c, &list, settings);
    // Report only the problems of the new pair, not of pairs already in force.
    c.problems.retain(|p| !p.path.starts_with("(channel pair"));
    c.finish()
}

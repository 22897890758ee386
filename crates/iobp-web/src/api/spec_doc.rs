//! How the OpenAPI document describes a channel pair's configuration (the body of create and
//! edit, and `spec` of a pair): the pair's own settings, and its sides by `type`. The `mqtt`,
//! `nats` and `modbus` sides are described field by field; the other types by their name,
//! their settings being those of the manual (`/docs/connectors`). The descriptions follow the doc comments of
//! `iobp_config::spec` and `iobp_config::modbus`; `api::openapi` tests that every setting of
//! an mqtt, a nats and a modbus side is described.

use serde_json::json;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The connector types described only by name here (their settings: the manual, `/docs/connectors`).
const OTHER_TYPES: [&str; 5] = ["tcp_server", "tcp_client", "udp", "serial", "remote_icombuffer"];

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description))
}

fn integer(description: &str, min: u64, max: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

fn boolean(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Boolean).description(Some(description))
}

/// A free-form object (settings described in the manual, `/docs/connectors`).
fn object(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(description))
}

/// A channel pair in the configuration format (the manual, `/docs/channel-pairs`).
pub(crate) enum ChannelPairSpec {}

impl PartialSchema for ChannelPairSpec {
    fn schema() -> RefOr<Schema> {
        let side = || Ref::from_schema_name(Endpoint::name());
        ObjectBuilder::new()
            .description(Some(
                "A channel pair in the configuration format of the manual (/docs/channel-pairs): a source, its own \
                 durable buffer, a destination. Unknown settings are refused, naming the field.",
            ))
            .property(
                "id",
                string(
                    "Stable identifier: 1–64 of `A–Z a–z 0–9 . _ -`, not starting with `.`. \
                     Names the buffer and the pair in the API.",
                )
                .pattern(Some("^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
            )
            .property("name", string("Descriptive name; defaults to the id."))
            .property(
                "enabled",
                boolean("Whether the pair runs. Default true.").default(Some(json!(true))),
            )
            .property("source", side())
            .property("destination", side())
            .property(
                "failover",
                ArrayBuilder::new().items(side()).description(Some(
                    "Ordered backup destinations, used when the destination fails.",
                )),
            )
            .property(
                "failback",
                boolean("Return to the primary destination once it answers again. Default true.")
                    .default(Some(json!(true))),
            )
            .property(
                "failover_policy",
                object(
                    "When a destination counts as failed (`failures`, `failed_after_ms`), and how \
                     often the primary is tried for failback (`probe_interval_ms`).",
                ),
            )
            .property(
                "retry",
                object("Reconnect and retry backoff: `initial_ms`, `max_ms`, `jitter_percent`."),
            )
            .property(
                "max_storage_mb",
                ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).description(Some(
                    "This pair's own storage limit in MiB, within the global one.",
                )),
            )
            .property(
                "dead_letter",
                object(
                    "Poison messages: `after_rejections` (1–1000) explicit refusals of the same \
                     message by the destination (HL7 AE/AR, a NAK byte; never timeouts or \
                     connection errors) park it and delivery goes on with the next. Without it a \
                     refused message is retried forever, holding everything behind it.",
                ),
            )
            .required("id")
            .required("source")
            .required("destination")
            .into()
    }
}

impl ToSchema for ChannelPairSpec {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Endpoint::name().into(), Endpoint::schema()));
        <Endpoint as ToSchema>::schemas(schemas);
    }
}

/// A source or destination, by `type`.
pub(crate) enum Endpoint {}

impl PartialSchema for Endpoint {
    fn schema() -> RefOr<Schema> {
        let others = ObjectBuilder::new()
            .description(Some(
                "A TCP server or client, UDP, a serial port or another ioBufferPro instance: \
                 their settings are those of the manual, /docs/connectors (host, port, tls, framing, ack, …).",
            ))
            .property(
                "type",
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(OTHER_TYPES)),
            )
            .required("type")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)));
        OneOfBuilder::new()
            .description(Some("A source or destination; `type` names the connector."))
            .item(Ref::from_schema_name(MqttEndpoint::name()))
            .item(Ref::from_schema_name(NatsEndpoint::name()))
            .item(Ref::from_schema_name(ModbusEndpoint::name()))
            .item(others)
            .into()
    }
}

impl ToSchema for Endpoint {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((MqttEndpoint::name().into(), MqttEndpoint::schema()));
        schemas.push((NatsEndpoint::name().into(), NatsEndpoint::schema()));
        schemas.push((ModbusEndpoint::name().into(), ModbusEndpoint::schema()));
    }
}

/// The `auth` of an mqtt side.
fn broker_auth() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some("User name and password for the broker."))
        .property("username", string("User name.").min_length(Some(1)))
        .property(
            "password",
            string(
                "Password. Always answered as `********`; sending `********` back keeps the \
                 stored password as long as url, client id, user and TLS settings are \
                 unchanged (else it must be typed again).",
            ),
        )
        .required("username")
        .required("password")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// The `tls` of a client side (mqtt, nats): when TLS is used, and which name the server's
/// certificate must carry, differ.
fn client_tls(description: &str, enabled: &str, server_name: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some(description))
        .property("enabled", boolean(enabled))
        .property("ca", string("Trust this CA (PEM file) instead of the system's roots."))
        .property("server_name", string(server_name))
        .property("cert", string("Client certificate (PEM file), with `key`."))
        .property("key", string("Private key of `cert` (PEM file)."))
        .property(
            "insecure_skip_verify",
            boolean("Accept any server certificate. For lab use only; logged as a warning."),
        )
}

/// An `mqtt` side (`iobp_config::MqttSpec`).
pub(crate) enum MqttEndpoint {}

impl PartialSchema for MqttEndpoint {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "An MQTT broker (3.1.1 or 5): one `PUBLISH` is one message. A destination \
                 publishes each message and counts it Done once the broker acknowledged it \
                 (`PUBACK` for QoS 1, `PUBCOMP` for QoS 2); a source subscribes on a persistent \
                 session and acknowledges a message to the broker only once it is durable here.",
            ))
            .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["mqtt"])))
            .property(
                "url",
                string("The broker: `mqtt://host:1883`, or `mqtts://host:8883` for TLS. No path, no user.")
                    .pattern(Some("^mqtts?://")),
            )
            .property(
                "version",
                string("Protocol version: `5` (default) or `3.1.1` for brokers that speak only that.")
                    .enum_values(Some(["5", "3.1.1"]))
                    .default(Some(json!("5"))),
            )
            .property(
                "client_id",
                string(
                    "Client identifier (1–256 printable characters, no spaces); default \
                     `iobp-<pair id>` (a source's also names its filter). A source's persistent \
                     session belongs to it.",
                )
                .min_length(Some(1))
                .max_length(Some(256)),
            )
            .property(
                "topic",
                string(
                    "Destination: the topic each message is published to (no `+` or `#`), where \
                     `{pair}` becomes the pair's id. Source: the topic filter subscribed to (`+` \
                     a whole level, `#` the whole last level).",
                )
                .min_length(Some(1))
                .max_length(Some(32_767)),
            )
            .property(
                "qos",
                integer(
                    "Quality of service: 1 (default, at least once) or 2 (exactly once between \
                     this instance and the broker). QoS 0 is refused: it can lose messages.",
                    1,
                    2,
                )
                .default(Some(json!(1))),
            )
            .property("auth", broker_auth())
            .property(
                "tls",
                client_tls(
                    "For an `mqtts://` url only (TLS is implied by the scheme): which server \
                     certificates to trust and an optional client certificate.",
                    "Not used: TLS follows the url's scheme (answered as `false`).",
                    "The name the broker's certificate must carry (default: the url's host).",
                ),
            )
            .property(
                "in_flight",
                integer(
                    "Destination only: messages published and not yet acknowledged, at most \
                     (default 64). The broker may allow fewer (MQTT 5 Receive Maximum).",
                    1,
                    1024,
                )
                .default(Some(json!(64))),
            )
            .property(
                "keep_alive_s",
                integer("Seconds between keep-alive pings (default 30).", 5, 3600)
                    .default(Some(json!(30))),
            )
            .property(
                "connect_timeout_ms",
                integer("Give up a connection attempt after this long (default 10000).", 10, 600_000)
                    .default(Some(json!(10_000))),
            )
            .property(
                "drop_duplicates",
                boolean(
                    "Source, MQTT 5 only: store a message carrying another ioBufferPro's `iobp-id` \
                     user property once; a copy its sender published again is dropped. Turn on \
                     only where the broker lets only trusted ioBufferPro instances publish to the \
                     filter (a forged id could drop that sender's later messages). Default false.",
                )
                .default(Some(json!(false))),
            )
            .required("type")
            .required("url")
            .required("topic")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for MqttEndpoint {}

/// The `auth` of a nats side: one way to sign in.
fn nats_auth() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some(
            "Exactly one of: `username` with `password`, `token`, or `creds_file`. Without \
             `auth` the side connects anonymously.",
        ))
        .property("username", string("User name (with `password`).").min_length(Some(1)))
        .property(
            "password",
            string(
                "Password (with `username`). Always answered as `********`; sending `********` \
                 back keeps the stored one as long as servers, user and TLS settings are \
                 unchanged (else it must be typed again).",
            ),
        )
        .property(
            "token",
            string("An authentication token. Masked like `password`.").min_length(Some(1)),
        )
        .property(
            "creds_file",
            string(
                "Path of a `.creds` file on this instance (a user JWT and its NKey seed, as \
                 `nsc` writes it). Checked when the pair is created or edited: refused at \
                 `auth.creds_file` if it cannot be read, holds no user JWT or seed, the seed is \
                 not the JWT's key, or the JWT expired. Read again at every connection. The \
                 path is not a secret and is answered as given; the file's content never \
                 appears in an answer.",
            )
            .min_length(Some(1)),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// A `nats` side (`iobp_config::NatsSpec`).
pub(crate) enum NatsEndpoint {}

impl PartialSchema for NatsEndpoint {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "NATS JetStream. A destination publishes each message to `subject` with a \
                 `Nats-Msg-Id` (the stream's duplicate window drops a copy sent again) and \
                 counts it Done once JetStream acknowledged it, in order; no stream is created. \
                 A source pulls from `stream` with a durable consumer and acknowledges a message \
                 to JetStream only once it is durable here; a message delivered again is stored \
                 once.",
            ))
            .property(
                "type",
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["nats"])),
            )
            .property(
                "servers",
                ArrayBuilder::new()
                    .items(
                        string("`nats://host:4222` or `tls://host:4222`; no user, no path.")
                            .pattern(Some("^(nats|tls)://")),
                    )
                    .min_items(Some(1))
                    .description(Some("Server URLs, at least one (a cluster: several).")),
            )
            .property(
                "subject",
                string(
                    "Destination: the subject each message is published to (no wildcards), \
                     where `{pair}` becomes the pair id (an id that would leave an empty token \
                     is refused). Source: the consumer's filter subject within `stream` (`*` \
                     a whole token, `>` the last).",
                )
                .min_length(Some(1))
                .max_length(Some(1024)),
            )
            .property(
                "stream",
                string(
                    "Source: the stream to consume (required). Destination: the stream \
                     expected to capture `subject`, shown in the status (informative). No \
                     spaces, `.`, `*`, `>` or `/`.",
                ),
            )
            .property(
                "consumer",
                string(
                    "Source only: the durable consumer's name; default `iobp-<pair id>` (then \
                     the pair id must hold no `.`). One pair per consumer.",
                )
                .min_length(Some(1)),
            )
            .property("auth", nats_auth())
            .property(
                "tls",
                client_tls(
                    "TLS to the servers: implied by `tls://` servers, `enabled`, a `ca`, a client \
                     certificate or a `server_name`.",
                    "Require TLS even with `nats://` servers.",
                    "The name every server's certificate must carry, instead of the host of its \
                     URL (servers given by address; not sent as SNI).",
                ),
            )
            .property(
                "in_flight",
                integer(
                    "Destination only: messages published and not yet acknowledged by JetStream, \
                     at most (default 256).",
                    1,
                    4096,
                )
                .default(Some(json!(256))),
            )
            .property(
                "ack_wait_s",
                integer(
                    "Source only: the consumer's `ack_wait`: a message not acknowledged within \
                     this long is delivered again (default 30).",
                    1,
                    3600,
                )
                .default(Some(json!(30))),
            )
            .required("type")
            .required("servers")
            .required("subject")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for NatsEndpoint {}

fn number(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Number).description(Some(description))
}

fn one_of_strings<const N: usize>(description: &str, values: [&str; N]) -> ObjectBuilder {
    string(description).enum_values(Some(values))
}

/// The response timeout of a modbus transport.
fn modbus_timeout() -> ObjectBuilder {
    integer(
        "How long a request (and connecting) may take before the device counts as not \
         answering: the source then shows Red and reconnects after the backoff (default 1000).",
        10,
        60_000,
    )
    .default(Some(json!(1000)))
}

/// The `transport` of a modbus side: TCP or RTU.
fn modbus_transport() -> OneOfBuilder {
    let tcp = ObjectBuilder::new()
        .description(Some("Modbus TCP, to a device or a gateway."))
        .property("type", one_of_strings("Modbus TCP.", ["tcp"]))
        .property("host", string("Host name or IP address.").min_length(Some(1)))
        .property("port", integer("Port (default 502).", 1, 65_535).default(Some(json!(502))))
        .property("timeout_ms", modbus_timeout())
        .required("type")
        .required("host")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let rtu = ObjectBuilder::new()
        .description(Some(
            "Modbus RTU on a serial port, with a serial side's line settings (opened, checked \
             and locked the same way). One request at a time on the line.",
        ))
        .property("type", one_of_strings("Modbus RTU.", ["rtu"]))
        .property("port", string("`COM3` or `/dev/ttyUSB0`.").min_length(Some(1)))
        .property(
            "baud_rate",
            integer("Line speed (default 9600).", 1, 20_000_000).default(Some(json!(9600))),
        )
        .property("data_bits", integer("5–8 (default 8).", 5, 8).default(Some(json!(8))))
        .property(
            "parity",
            one_of_strings(
                "Default `None` (Modbus RTU's usual is `Even`: set what the device uses).",
                ["None", "Even", "Odd", "Mark", "Space"],
            ),
        )
        .property("stop_bits", integer("1 or 2 (default 1).", 1, 2).default(Some(json!(1))))
        .property(
            "flow_control",
            one_of_strings("Default `None`.", ["None", "RTS/CTS", "XON/XOFF"]),
        )
        .property(
            "rs485",
            object(
                "RS-485 transceiver control, as on a serial side: `rts_on_send`, \
                 `delay_before_send_ms`, `delay_after_send_ms`, `full_duplex`, `terminate_bus`.",
            ),
        )
        .property("timeout_ms", modbus_timeout())
        .required("type")
        .required("port")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    OneOfBuilder::new()
        .description(Some("How the device is reached: `tcp` or `rtu`."))
        .item(tcp)
        .item(rtu)
}

/// One decoded field of a modbus poll.
fn modbus_field() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some(
            "A named value decoded from the poll's block, in the reading's `values`.",
        ))
        .property(
            "name",
            string("Its key in `values`; unique within the poll.")
                .min_length(Some(1))
                .max_length(Some(64)),
        )
        .property(
            "offset",
            integer(
                "Where it starts: a register (or bit) index from the poll's `address`.",
                0,
                65_535,
            ),
        )
        .property(
            "type",
            one_of_strings(
                "`u16`, `i16` (one register), `u32`, `i32`, `f32` (two registers), `bool` (a \
                 bit; on registers: not zero). Coils and discrete inputs take `bool` only.",
                ["u16", "i16", "u32", "i32", "f32", "bool"],
            ),
        )
        .property(
            "word_order",
            one_of_strings(
                "32-bit types: `big` (default, the first register holds the high word) or \
                 `little`.",
                ["big", "little"],
            ),
        )
        .property("scale", number("Numbers only: `value = raw × scale + offset_value`."))
        .property("offset_value", number("Numbers only: added after scaling."))
        .required("name")
        .required("offset")
        .required("type")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// One poll of a modbus side.
fn modbus_poll() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some("One block read on its own schedule; each executed poll is one message."))
        .property(
            "name",
            string("Names the poll in readings, the status and errors; unique.")
                .min_length(Some(1))
                .max_length(Some(64)),
        )
        .property(
            "unit",
            integer("Unit (slave) id: RTU 1–247; TCP 0–255 (gateways route by it).", 0, 255),
        )
        .property(
            "function",
            one_of_strings(
                "What is read: function 1, 2, 3 or 4.",
                ["coils", "discrete_inputs", "holding_registers", "input_registers"],
            ),
        )
        .property("address", integer("First address, 0-based as on the wire.", 0, 65_535))
        .property(
            "count",
            integer(
                "How many: 1–125 registers or 1–2000 bits; `address + count` at most 65536.",
                1,
                2000,
            ),
        )
        .property(
            "interval_ms",
            integer(
                "How often. A poll never runs twice at once; a late poll skips the cycles it \
                 missed rather than running in a burst.",
                10,
                86_400_000,
            ),
        )
        .property(
            "fields",
            ArrayBuilder::new()
                .items(modbus_field())
                .max_items(Some(125))
                .description(Some("Named values decoded from the block (optional).")),
        )
        .required("name")
        .required("unit")
        .required("function")
        .required("address")
        .required("count")
        .required("interval_ms")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// A `modbus` side (`iobp_config::ModbusSpec`), source only.
pub(crate) enum ModbusEndpoint {}

impl PartialSchema for ModbusEndpoint {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A Modbus device polled over TCP or RTU (source only; refused as a \
                 destination). Each executed poll stores one JSON message, counted only once \
                 durable: `{\"poll\":\"tank\",\"unit\":1,\"function\":\"holding_registers\",\
                 \"address\":100,\"count\":4,\"at\":\"2026-12-04T10:00:00.123Z\",\
                 \"elapsed_ms\":3.141,\"registers\":[…],\"values\":{\"level\":12.5}}` — \
                 `at` when the request was sent (UTC), `elapsed_ms` the answer's delay, \
                 `registers` (words) or `bits` (booleans), `values` only with `fields`. An \
                 exception answer is counted (`modbus_poll_errors`) and shown (Yellow, naming \
                 the poll), never stored; no answer within `timeout_ms` is Red and reconnects. \
                 Polls keep their schedule while the destination is down; a reading a full \
                 buffer cannot take is counted as refused.",
            ))
            .property(
                "type",
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["modbus"])),
            )
            .property("transport", modbus_transport())
            .property(
                "polls",
                ArrayBuilder::new()
                    .items(modbus_poll())
                    .min_items(Some(1))
                    .max_items(Some(256))
                    .description(Some("What is read, and how often: 1 to 256 polls.")),
            )
            .required("type")
            .required("transport")
            .required("polls")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for ModbusEndpoint {}

//! MQTT connections of the `mqtt` sides, MQTT 3.1.1 and 5, one shape for both.
//!
//! The protocol is spoken by the rumqttc-next clients (`rumqttc-v4-next` for 3.1.1,
//! `rumqttc-v5-next` for 5); this module gives the sides one connection type whatever the
//! version, and opens it on a connection of our own: the TCP connection and its TLS come from
//! [`crate::net::Dial`], like every other client side (same certificates, server name,
//! keepalive and timeouts), and are handed to the client, which therefore needs no TLS stack
//! of its own.
//!
//! One connection = one client session: [`Broker::open`] connects, waits for the `CONNACK` (a
//! refusal — bad credentials, not authorised — is an error of the peer, retried after the
//! backoff), subscribes a source's filter and waits for the `SUBACK`, then a task drives the
//! protocol and hands the session what arrives. The session ends at the first error; a new
//! connection starts over with a new client, so no state of a failed connection is reused:
//!
//! - a destination publishes with a clean session; whatever it had not seen acknowledged
//!   returns to Pending and is published again, in order, on the next connection (at least
//!   once; each copy carries the same message id);
//! - a source subscribes on a persistent session (3.1.1 `clean_session = 0`, 5
//!   `clean_start = 0` with a session expiry of [`SESSION_EXPIRY_S`]), and acknowledges
//!   messages manually, only once they are durable here: what it had not acknowledged is sent
//!   again by the broker on the next connection, and what was published meanwhile waits there.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use iobp_config::{MqttSpec, MqttVersion, TcpClientSpec, TlsSpec};
use mqtt4 as v4;
use mqtt5 as v5;
use tokio::sync::mpsc;

use crate::connector::{Opened, Opener, Shape};
use crate::destination::window::Confirmation;
use crate::net::{Dial, Stream};
use crate::side::SideError;
use crate::write_behind::WriteBehind;

/// How long a source's session outlives its connection at the broker (MQTT 5): a week of
/// messages wait there for an edge that is down. (MQTT 3.1.1 has no expiry: the broker's
/// own setting, e.g. mosquitto's `persistent_client_expiration`, decides.)
pub(crate) const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;

/// The largest MQTT packet either way: a message of up to the buffer's largest record plus
/// the topic and properties.
const MAX_PACKET_BYTES: u32 = 256 * 1024 * 1024 - 1;

/// Messages received and not yet taken by the session (the broker sends at most its in-flight
/// window of unacknowledged `QoS` 1/2 messages, so this is never the bound that bites).
const INCOMING: usize = 1024;

/// Messages a source lets the broker send before acknowledging them (MQTT 5 Receive Maximum;
/// an MQTT 3.1.1 broker uses its own setting, e.g. mosquitto's `max_inflight_messages`).
const RECEIVE_MAXIMUM: u16 = 512;

/// Requests the client writes to the connection in one go (measured: one per write held the
/// destination to about 39,000 msg/s on 2 cores, where `mosquitto_pub` does 196,000).
const REQUEST_BATCH: usize = 128;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Publishing (a destination): clean session, the publish window.
    Publish,
    /// Subscribing (a source): persistent session, manual acknowledgements.
    Subscribe,
}

/// The opener of an `mqtt` side: connects to the broker and opens a client session.
pub(crate) struct Broker {
    spec: MqttSpec,
    role: Role,
    client_id: String,
    url: String,
    dial: Result<Dial, String>,
    timeout: Duration,
}

impl Broker {
    pub(crate) fn new(spec: MqttSpec, role: Role, pair: &str) -> Self {
        let client_id =
            spec.client_id.clone().unwrap_or_else(|| default_client_id(&spec, role, pair));
        let timeout = Duration::from_millis(spec.connect_timeout_ms.unwrap_or(10_000));
        let dial = iobp_config::parse_mqtt_url(&spec.url).map(|(host, port, tls)| {
            Dial::new(&TcpClientSpec {
                host,
                port,
                tls: TlsSpec { enabled: tls, ..spec.tls.clone() },
                framing: iobp_config::FramingSpec::default(),
                ack: iobp_config::AckSpec::None,
                connect_timeout_ms: spec.connect_timeout_ms,
                write_timeout_ms: None,
            })
        });
        Broker { url: spec.url.clone(), spec, role, client_id, dial, timeout }
    }

    /// Opens the client session on a connected stream: CONNECT/`CONNACK`, and a source's
    /// `SUBSCRIBE`/`SUBACK`, within the connect timeout.
    async fn session(&self, stream: Stream) -> Result<Conn, SideError> {
        let setup = async {
            match self.spec.version {
                MqttVersion::V311 => self.session_v4(stream).await,
                MqttVersion::V5 => self.session_v5(stream).await,
            }
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(r) => r,
            Err(_) => Err(SideError::Peer(format!(
                "the broker did not accept the session within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn session_v4(&self, stream: Stream) -> Result<Conn, SideError> {
        let spec = &self.spec;
        let mut o = v4::MqttOptions::new(self.client_id.clone(), v4::Broker::tcp("broker", 0));
        o.set_keep_alive(spec.keep_alive_s.unwrap_or(30));
        o.set_max_packet_size(MAX_PACKET_BYTES as usize, MAX_PACKET_BYTES as usize);
        o.set_request_channel_capacity(self.requests());
        // Many queued publishes (or acknowledgements) go out in one write, not one each.
        o.set_max_request_batch(REQUEST_BATCH);
        o.set_inflight(self.window());
        if let Some(a) = &spec.auth {
            o.set_credentials(a.username.clone(), Bytes::from(a.password.clone().into_bytes()));
        }
        match self.role {
            Role::Publish => {
                o.set_clean_session(true);
            }
            Role::Subscribe => {
                o.set_clean_session(false);
                o.set_ack_mode(v4::AckMode::Manual);
            }
        }
        o.set_socket_connector(hand_over(stream));
        let (client, mut events) = v4::AsyncClient::builder(o)
            .capacity(self.requests())
            .try_build()
            .map_err(|e| SideError::Config(format!("MQTT client settings: {e}")))?;
        loop {
            match events.poll().await {
                Ok(v4::Event::Incoming(v4::Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(v4_error(&e)),
            }
        }
        let mut conn = Conn::driven(Client::V4(client), events);
        if self.role == Role::Subscribe {
            conn.subscribe(&spec.topic, spec.qos).await?;
        }
        Ok(conn)
    }

    async fn session_v5(&self, stream: Stream) -> Result<Conn, SideError> {
        let spec = &self.spec;
        let mut o = v5::MqttOptions::new(self.client_id.clone(), v5::Broker::tcp("broker", 0));
        o.set_keep_alive(spec.keep_alive_s.unwrap_or(30));
        o.set_max_packet_size(Some(MAX_PACKET_BYTES));
        o.set_request_channel_capacity(self.requests());
        // Many queued publishes (or acknowledgements) go out in one write, not one each.
        o.set_max_request_batch(REQUEST_BATCH);
        o.set_outgoing_inflight_upper_limit(self.window());
        if let Some(a) = &spec.auth {
            o.set_credentials(a.username.clone(), Bytes::from(a.password.clone().into_bytes()));
        }
        match self.role {
            Role::Publish => {
                o.set_clean_start(true);
            }
            Role::Subscribe => {
                o.set_clean_start(false);
                o.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
                // A new client for every connection has no local state to reconcile: the
                // broker's session (what it queued and what it sends again) is the one wanted.
                o.set_broker_session_resume_policy(v5::BrokerSessionResumePolicy::AllowBrokerOnly);
                o.set_ack_mode(v5::AckMode::Manual);
                o.set_receive_maximum(Some(RECEIVE_MAXIMUM));
            }
        }
        o.set_socket_connector(hand_over(stream));
        let (client, mut events) = v5::AsyncClient::builder(o)
            .capacity(self.requests())
            .try_build()
            .map_err(|e| SideError::Config(format!("MQTT client settings: {e}")))?;
        let resumed = loop {
            match events.poll().await {
                Ok(v5::Event::Incoming(v5::Packet::ConnAck(ack))) => break ack.session_present,
                Ok(_) => {}
                Err(e) => return Err(v5_error(&e)),
            }
        };
        let mut conn = Conn::driven(Client::V5(client), events);
        // A resumed session already holds the subscription (the default client id names the
        // filter and QoS, so a changed filter is a new session), and an MQTT 5 client without
        // the session's packet-id state must not allocate packet ids on it.
        if self.role == Role::Subscribe && !resumed {
            conn.subscribe(&spec.topic, spec.qos).await?;
        }
        Ok(conn)
    }

    /// The client's request queue: a destination's publish window (and a little); a source's
    /// acknowledgements, which are queued without waiting (see [`Conn::ack`]), bounded by what
    /// the session holds unacknowledged several times over.
    fn requests(&self) -> usize {
        match self.role {
            Role::Publish => usize::from(self.window()) + 16,
            Role::Subscribe => 4 * INCOMING,
        }
    }

    /// Publishes in flight at most (a destination); a source publishes nothing, but its
    /// acknowledgements share the request queue sized from this.
    fn window(&self) -> u16 {
        match self.role {
            Role::Publish => self.spec.in_flight.unwrap_or(iobp_config::DEFAULT_MQTT_IN_FLIGHT),
            Role::Subscribe => RECEIVE_MAXIMUM,
        }
    }
}

impl Opener for Broker {
    type Io = Conn;

    fn shape(&self) -> Shape {
        Shape::Dial
    }

    fn opening(&self) -> Option<String> {
        Some(format!("connecting to {}", self.url))
    }

    async fn open(&mut self) -> Result<Opened<Conn>, SideError> {
        let dial = self.dial.as_mut().map_err(|e| SideError::Config(format!("url: {e}")))?;
        let stream = dial.open().await?.io;
        let conn = self.session(stream).await.map_err(|e| e.within(&self.url))?;
        let what = match self.role {
            Role::Publish => format!("publishing to {}", self.spec.topic),
            Role::Subscribe => format!("subscribed to {}", self.spec.topic),
        };
        let detail = format!("connected to {} ({what})", self.url);
        Ok(Opened::new(conn, self.url.as_str().into(), detail))
    }
}

/// `iobp-<pair>` for a publisher; a subscriber's also names its filter and `QoS` (a short hash),
/// so that an edit of either starts a new persistent session instead of resuming one that holds
/// the old subscription.
fn default_client_id(spec: &MqttSpec, role: Role, pair: &str) -> String {
    match role {
        Role::Publish => format!("iobp-{pair}"),
        Role::Subscribe => {
            // FNV-1a: stable across builds and platforms, unlike the std hasher.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in spec.topic.bytes().chain([0, spec.qos]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("iobp-{pair}-{:08x}", h & 0xffff_ffff)
        }
    }
}

/// A socket connector that hands the client the stream we opened, once: the client never
/// reconnects by itself (a session ends at its first error and the connector loop opens the
/// next one), so a second call is refused. The stream goes behind a writer of its own
/// ([`WriteBehind`]): the client writes and flushes each acknowledgement by itself, and a
/// source acknowledging a batch of 256 messages would otherwise cost 256 system calls.
fn hand_over(
    stream: Stream,
) -> impl Fn(String, v4::NetworkOptions) -> std::future::Ready<std::io::Result<WriteBehind<Stream>>>
+ Send
+ Sync
+ 'static {
    let stream = Mutex::new(Some(WriteBehind::new(stream)));
    move |_host, _options| {
        let taken = stream.lock().ok().and_then(|mut s| s.take());
        std::future::ready(taken.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection was used up")
        }))
    }
}

/// One client session with the broker.
pub(crate) struct Conn {
    client: Client,
    /// Messages from the broker (a source's subscription) and, last, why the session ended.
    incoming: mpsc::Receiver<Result<Incoming, SideError>>,
    /// Messages that arrived while the session was being set up (a persistent session's
    /// backlog may come before the `SUBACK`), handed out first.
    early: std::collections::VecDeque<Incoming>,
    driver: Driver,
}

enum Client {
    V4(v4::AsyncClient),
    V5(v5::AsyncClient),
}

/// The task that drives the protocol (sends what the session queued, receives, answers
/// pings); it ends with the connection, and is stopped when the session drops it.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A message the broker sent to a source.
pub(crate) enum Incoming {
    V4(v4::Publish),
    V5(v5::Publish),
}

impl Incoming {
    pub(crate) fn payload(&self) -> &Bytes {
        match self {
            Incoming::V4(p) => &p.payload,
            Incoming::V5(p) => &p.payload,
        }
    }

    /// The id another ioBufferPro gave the message ([`MESSAGE_ID_PROPERTY`]): its buffer's id
    /// and the message's sequence number there (from 1). `None` without a well-formed one.
    pub(crate) fn sender_id(&self) -> Option<(u64, u64)> {
        let Incoming::V5(p) = self else { return None };
        let props = p.properties.as_ref()?;
        let (_, value) = props.user_properties.iter().find(|(k, _)| k == MESSAGE_ID_PROPERTY)?;
        parse_message_id(value)
    }
}

/// `<16 hex digits>:<decimal sequence ≥ 1>` → (buffer id, sequence).
fn parse_message_id(value: &str) -> Option<(u64, u64)> {
    let (buffer, seq) = value.split_once(':')?;
    if buffer.len() != 16 {
        return None;
    }
    let buffer = u64::from_str_radix(buffer, 16).ok()?;
    let seq: u64 = seq.parse().ok()?;
    (seq >= 1).then_some((buffer, seq))
}

/// A client's event loop, as the session's driver sees it.
trait Events: Send + 'static {
    /// Polls the event loop once: a message for the session, why the session ended, or
    /// `None` (nothing the session needs to see).
    fn next_event(&mut self) -> impl Future<Output = Option<Result<Incoming, SideError>>> + Send;
}

impl Events for v4::EventLoop {
    async fn next_event(&mut self) -> Option<Result<Incoming, SideError>> {
        match self.poll().await {
            Ok(v4::Event::Incoming(v4::Packet::Publish(p))) => Some(Ok(Incoming::V4(p))),
            Ok(_) => None,
            Err(e) => Some(Err(v4_error(&e))),
        }
    }
}

impl Events for v5::EventLoop {
    async fn next_event(&mut self) -> Option<Result<Incoming, SideError>> {
        match self.poll().await {
            Ok(v5::Event::Incoming(v5::Packet::Publish(p))) => Some(Ok(Incoming::V5(p))),
            Ok(v5::Event::Incoming(v5::Packet::Disconnect(d))) => {
                Some(Err(SideError::Peer(format!("the broker disconnected: {:?}", d.reason_code))))
            }
            Ok(_) => None,
            Err(e) => Some(Err(v5_error(&e))),
        }
    }
}

impl Conn {
    /// A session on `client` whose protocol is driven by a task of its own polling `events`.
    fn driven<E: Events>(client: Client, mut events: E) -> Conn {
        let (tx, rx) = mpsc::channel(INCOMING);
        let driver = tokio::spawn(async move {
            loop {
                let Some(next) = events.next_event().await else { continue };
                let last = next.is_err();
                if tx.send(next).await.is_err() || last {
                    return;
                }
            }
        });
        Conn {
            client,
            incoming: rx,
            early: std::collections::VecDeque::new(),
            driver: Driver(driver),
        }
    }

    /// Subscribes to `filter` at `qos` and checks what the broker granted: a refusal, or a
    /// grant below what was asked, is an error.
    async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), SideError> {
        let refused = |e: &dyn std::fmt::Display| {
            SideError::Peer(format!("the broker refused the subscription to {filter}: {e}"))
        };
        let granted = match &self.client {
            Client::V4(c) => {
                let notice = c
                    .subscribe_tracked(filter.to_string(), v4_qos(qos))
                    .await
                    .map_err(client_error)?;
                let suback = self.until(notice.wait_async()).await?.map_err(|e| refused(&e))?;
                match suback.return_codes.first() {
                    Some(v4::SubscribeReasonCode::Success(q)) => Ok(*q as u8),
                    other => Err(format!("{other:?}")),
                }
            }
            Client::V5(c) => {
                let notice = c
                    .subscribe_tracked(filter.to_string(), v5_qos(qos))
                    .await
                    .map_err(client_error)?;
                let suback = self.until(notice.wait_async()).await?.map_err(|e| refused(&e))?;
                match suback.return_codes.first() {
                    Some(v5::SubscribeReasonCode::Success(q)) => Ok(*q as u8),
                    other => Err(format!("{other:?}")),
                }
            }
        };
        check_granted(filter, qos, granted)
    }

    /// Queues a publish of `payload` to `topic` carrying `id` (MQTT 5: the user property
    /// [`MESSAGE_ID_PROPERTY`]); returns what resolves once the broker acknowledged it. Waits
    /// while the client's request queue is full.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        id: String,
    ) -> Result<Confirmation, SideError> {
        match &self.client {
            Client::V4(c) => {
                let opts = v4::PublishOptions::new(v4_qos(qos));
                let notice = c
                    .publish_tracked(topic.to_string(), payload, opts)
                    .await
                    .map_err(client_error)?;
                Ok(Box::pin(async move {
                    notice.wait_completion_async().await.map_err(|e| {
                        SideError::Peer(format!("the broker did not acknowledge a message: {e}"))
                    })
                }))
            }
            Client::V5(c) => {
                let props = v5::PublishProperties {
                    user_properties: vec![(MESSAGE_ID_PROPERTY.to_string(), id)],
                    ..v5::PublishProperties::default()
                };
                let opts = v5::PublishOptions::new(v5_qos(qos)).properties(props);
                let notice = c
                    .publish_tracked(topic.to_string(), payload, opts)
                    .await
                    .map_err(client_error)?;
                Ok(Box::pin(async move {
                    // `wait_completion_async`, not `wait_async`: a PUBACK or PUBCOMP with a
                    // failing reason code is a refusal, never a delivery.
                    notice.wait_completion_async().await.map_err(|e| {
                        // A refusal by reason code (quota exceeded, not authorised, topic
                        // name invalid) is the broker's answer, not a broken connection.
                        SideError::Protocol(format!("the broker refused a message: {e}"))
                    })
                }))
            }
        }
    }

    /// Acknowledges `m` to the broker (a source, once `m` is durable here). Never waits for
    /// the task that drives the protocol, which may itself be waiting for the session to take
    /// a message: the request queue holds more than the broker may have unacknowledged, so a
    /// full queue is a broken session.
    pub(crate) fn ack(&self, m: &Incoming) -> Result<(), SideError> {
        match (&self.client, m) {
            (Client::V4(c), Incoming::V4(p)) => c.try_ack(p).map_err(client_error),
            (Client::V5(c), Incoming::V5(p)) => c.try_ack(p).map_err(client_error),
            _ => Err(SideError::Protocol("a message acknowledged on another session".into())),
        }
    }

    /// The next message from the broker; an error when the session ended.
    pub(crate) async fn next(&mut self) -> Result<Incoming, SideError> {
        if let Some(m) = self.early.pop_front() {
            return Ok(m);
        }
        match self.incoming.recv().await {
            Some(r) => r,
            None => Err(SideError::Peer("the connection to the broker ended".into())),
        }
    }

    /// A message that has already arrived, if any (to fill a batch without waiting).
    pub(crate) fn try_next(&mut self) -> Option<Result<Incoming, SideError>> {
        if let Some(m) = self.early.pop_front() {
            return Some(Ok(m));
        }
        self.incoming.try_recv().ok()
    }

    /// Runs `f` while watching the session: an error of the session ends it first. (Used while
    /// setting up, when no message is expected yet.)
    async fn until<F: Future>(&mut self, f: F) -> Result<F::Output, SideError> {
        tokio::pin!(f);
        loop {
            tokio::select! {
                out = &mut f => return Ok(out),
                m = self.incoming.recv() => match m {
                    Some(Err(e)) => return Err(e),
                    // Whatever a persistent session delivers before the SUBACK is kept for
                    // the session: it cannot be put back, so it is queued again in front.
                    Some(Ok(m)) => self.early.push_back(m),
                    None => return Err(SideError::Peer("the connection to the broker ended".into())),
                }
            }
        }
    }

    /// Ends the session with a `DISCONNECT` (a clean stop: the broker keeps a source's session
    /// and drops no will).
    pub(crate) async fn close(self) {
        let bye = async {
            match &self.client {
                Client::V4(c) => drop(c.disconnect().await),
                Client::V5(c) => drop(c.disconnect().await),
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), bye).await;
        drop(self.driver);
    }
}

/// The MQTT 5 user property that carries a message's id: `<buffer id>:<sequence number>`,
/// the same on every copy of a message published again after a reconnect.
pub(crate) const MESSAGE_ID_PROPERTY: &str = "iobp-id";

/// A subscription is what the side needs only if the broker granted it at the `QoS` asked
/// for: granted at `QoS` 0, the broker would drop messages while we are away (no persistent
/// session keeps them) and never wait for our acknowledgement.
fn check_granted(topic: &str, asked: u8, granted: Result<u8, String>) -> Result<(), SideError> {
    match granted {
        Ok(q) if q >= asked.max(1) => Ok(()),
        Ok(q) => Err(SideError::Peer(format!(
            "the broker granted the subscription to {topic} at QoS {q} only (asked for QoS \
             {asked}): messages could be lost; allow QoS {asked} at the broker"
        ))),
        Err(code) => {
            Err(SideError::Peer(format!("the broker refused the subscription to {topic}: {code}")))
        }
    }
}

fn v4_qos(q: u8) -> v4::QoS {
    if q >= 2 { v4::QoS::ExactlyOnce } else { v4::QoS::AtLeastOnce }
}

fn v5_qos(q: u8) -> v5::QoS {
    if q >= 2 { v5::QoS::ExactlyOnce } else { v5::QoS::AtLeastOnce }
}

fn client_error(e: impl std::fmt::Display) -> SideError {
    SideError::Peer(format!("the MQTT session ended: {e}"))
}

fn v4_error(e: &v4::ConnectionError) -> SideError {
    match e {
        v4::ConnectionError::ConnectionRefused(code) => {
            SideError::Peer(format!("the broker refused the connection: {code:?}"))
        }
        v4::ConnectionError::Io(io) => SideError::Peer(format!("connection to the broker: {io}")),
        other => SideError::Peer(format!("MQTT: {other}")),
    }
}

fn v5_error(e: &v5::ConnectionError) -> SideError {
    match e {
        v5::ConnectionError::ConnectionRefused(code) => {
            SideError::Peer(format!("the broker refused the connection: {code:?}"))
        }
        v5::ConnectionError::Io(io) => SideError::Peer(format!("connection to the broker: {io}")),
        other => SideError::Peer(format!("MQTT: {other}")),
    }
}

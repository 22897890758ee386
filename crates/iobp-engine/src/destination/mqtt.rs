//! `mqtt` destination: publishes each message to the broker, in order, with up to `in_flight`
//! publishes awaiting their acknowledgement; a message is Done only once the broker
//! acknowledged it (`PUBACK` for `QoS` 1, `PUBCOMP` for `QoS` 2), and Done strictly in order.
//!
//! Each publish carries the message's id, `<buffer id>:<sequence number>` (MQTT 5: the user
//! property `iobp-id`), so a message published again after a reconnect — everything not yet
//! acknowledged returns to Pending and goes again, in order — is recognisable downstream.

use std::sync::Arc;

use bytes::Bytes;
use iobp_config::MqttSpec;

use crate::connector::{Ended, Progress, Session};
use crate::destination::window::{self, Confirmation, Publisher};
use crate::mqtt::{Broker, Conn, Role};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

pub(crate) async fn destination(ctx: SideCtx, mut spec: MqttSpec) {
    // The topic as published (and shown in the status), the template filled in.
    spec.topic = spec.topic.replace("{pair}", &ctx.pair);
    let window = usize::from(spec.in_flight.unwrap_or(iobp_config::DEFAULT_MQTT_IN_FLIGHT));
    let session = Publishing { topic: spec.topic.clone(), qos: spec.qos, window };
    let broker = Broker::new(spec, Role::Publish, &ctx.pair);
    crate::connector::run(ctx, Side::Destination, broker, session).await;
}

/// Publishes the buffer on one client session.
struct Publishing {
    topic: String,
    qos: u8,
    window: usize,
}

impl Session<Conn> for Publishing {
    fn about(&self, peer: &str) -> String {
        format!("publishing to {peer} ({})", self.topic)
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        conn: Conn,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        // Everything handed out on an earlier connection goes again, first, in order.
        ctx.log.requeue_all();
        let mut publisher = OnSession { conn, topic: &self.topic, qos: self.qos };
        let result = window::deliver(ctx, peer, self.window, &mut publisher, progress).await;
        publisher.conn.close().await;
        result
    }
}

/// Publishing on one client session.
struct OnSession<'a> {
    conn: Conn,
    topic: &'a str,
    qos: u8,
}

impl Publisher for OnSession<'_> {
    async fn publish(
        &mut self,
        _ctx: &SideCtx,
        _seq: u64,
        id: String,
        payload: &[u8],
    ) -> Result<Option<Confirmation>, SideError> {
        let payload = Bytes::copy_from_slice(payload);
        self.conn.publish(self.topic, payload, self.qos, id).await.map(Some)
    }

    async fn lost(&mut self) -> SideError {
        match self.conn.next().await {
            Err(e) => e,
            Ok(_) => SideError::Protocol(
                "the broker sent a message to a session that subscribed to nothing".into(),
            ),
        }
    }
}

//! `serial` destination: delivers to one serial port (RS-232/RS-485) in FIFO order.
//!
//! Device loss: the destination turns Red with the reason, messages stay Pending (in-flight
//! ones return to Pending) and the port is reopened with backoff until the device returns
//! (the connector loop with [`PortOpener`]).

use iobp_config::SerialSpec;

use super::stream::StreamDelivery;
use crate::serial::PortOpener;
use crate::side::SideCtx;
use crate::stats::Side;

pub(crate) async fn destination(ctx: SideCtx, spec: SerialSpec) {
    let session = StreamDelivery {
        framing: spec.framing.clone(),
        ack: spec.ack.clone(),
        write_timeout: spec.write_timeout_ms,
    };
    let opener = PortOpener::new(spec, Side::Destination, &ctx);
    crate::connector::run(ctx, Side::Destination, opener, session).await;
}

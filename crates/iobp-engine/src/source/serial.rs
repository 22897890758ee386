//! `serial` source: reads one serial port (RS-232/RS-485) and buffers its messages.
//!
//! Device loss (unplugged adapter, missing port, permission denied, busy): the source turns
//! Red with the reason and reopens with backoff; it resumes by itself when the device returns
//! (the connector loop with [`PortOpener`]).
//! Full buffer: with RTS/CTS or XON/XOFF the port is not read, so the driver's input buffer
//! fills and the driver holds the sender back; without flow control frames are refused,
//! counted and alarmed (see [`WhenFull`]); with acknowledgements the sender gets NAKs.

use iobp_config::{FlowControl, SerialSpec};

use super::stream::{StreamIntake, WhenFull};
use crate::serial::PortOpener;
use crate::side::SideCtx;
use crate::stats::Side;

pub(crate) async fn source(ctx: SideCtx, spec: SerialSpec) {
    let when_full =
        if spec.flow_control == FlowControl::None { WhenFull::Refuse } else { WhenFull::Hold };
    let session = StreamIntake {
        framing: spec.framing.clone(),
        ack: spec.ack.clone(),
        idle_timeout: None,
        when_full,
    };
    let opener = PortOpener::new(spec, Side::Source, &ctx);
    crate::connector::run(ctx, Side::Source, opener, session).await;
}

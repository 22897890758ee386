//! `serial` source: reads one serial port (RS-232/RS-485) and buffers its messages.
//!
//! Device loss (unplugged adapter, missing port, permission denied, busy): the source turns
//! Red with the reason and reopens with backoff; it resumes by itself when the device returns.
//! Full buffer: with RTS/CTS or XON/XOFF the port is not read, so the driver's input buffer
//! fills and the driver holds the sender back; without flow control frames are refused,
//! counted and alarmed (see [`WhenFull`]); with acknowledgements the sender gets NAKs.

use std::sync::Arc;

use iobp_config::{FlowControl, SerialSpec};

use super::stream::{WhenFull, serve};
use crate::backoff::Backoff;
use crate::connector::Ended;
use crate::serial::{Opened, describe, open};
use crate::side::{SideCtx, pause};
use crate::stats::{Color, Side};

pub(crate) async fn source(ctx: SideCtx, spec: SerialSpec) {
    let status = &ctx.stats.source;
    let mut backoff = Backoff::new(ctx.retry);
    let port_name: Arc<str> = spec.port.clone().into();
    let when_full =
        if spec.flow_control == FlowControl::None { WhenFull::Refuse } else { WhenFull::Hold };
    loop {
        status.set(Color::Yellow, format!("opening {port_name}"));
        let why = match open(&spec) {
            Ok(Opened { port, lock, ignored }) => {
                backoff.reset();
                let (color, note) =
                    crate::serial::report_ignored(&ctx, Side::Source, &spec, &ignored);
                status.peer_up(&port_name);
                status.set(color, format!("reading {port_name} ({}){note}", describe(&spec)));
                let ended =
                    serve(&ctx, port, &port_name, &spec.framing, &spec.ack, None, when_full).await;
                drop(lock);
                status.peer_down(&port_name);
                match ended {
                    Ok(Ended::Cancelled) => return,
                    Ok(_) => format!("{port_name} closed (device unplugged?)"),
                    Err(e) => format!("{port_name}: {e} (device unplugged?)"),
                }
            }
            Err(e) => e,
        };
        ctx.error(Side::Source, why.clone());
        status.set(Color::Red, why);
        if !pause(&ctx.cancel, backoff.next_delay()).await {
            return;
        }
    }
}

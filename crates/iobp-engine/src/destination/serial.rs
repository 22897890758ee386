//! `serial` destination: delivers to one serial port (RS-232/RS-485) in FIFO order.
//!
//! Device loss: the destination turns Red with the reason, messages stay Pending (in-flight
//! ones return to Pending) and the port is reopened with backoff until the device returns.

use std::sync::Arc;

use iobp_config::SerialSpec;

use super::return_in_flight;
use super::stream::deliver;
use crate::backoff::Backoff;
use crate::connector::Ended;
use crate::serial::{Opened, describe, open};
use crate::side::{SideCtx, pause};
use crate::stats::{Color, Side};

pub(crate) async fn destination(ctx: SideCtx, spec: SerialSpec) {
    let status = &ctx.stats.destination;
    let mut backoff = Backoff::new(ctx.retry);
    let port_name: Arc<str> = spec.port.clone().into();
    loop {
        status.set(Color::Yellow, format!("opening {port_name}"));
        let why = match open(&spec) {
            Ok(Opened { port, lock, ignored }) => {
                backoff.reset();
                let (color, note) =
                    crate::serial::report_ignored(&ctx, Side::Destination, &spec, &ignored);
                status.peer_up(&port_name);
                status.set(color, format!("writing to {port_name} ({}){note}", describe(&spec)));
                let ended = deliver(
                    &ctx,
                    port,
                    &port_name,
                    &spec.framing,
                    &spec.ack,
                    spec.write_timeout_ms,
                )
                .await;
                drop(lock);
                return_in_flight(&ctx);
                status.peer_down(&port_name);
                match ended {
                    Ok(Ended::Cancelled) => return,
                    Ok(Ended::PeerClosed | Ended::IdleTimeout) => {
                        format!("{port_name} closed (device unplugged?)")
                    }
                    Err(e) => format!("delivery to {port_name}: {e}"),
                }
            }
            Err(e) => e,
        };
        ctx.error(Side::Destination, why.clone());
        status.set(Color::Red, why);
        if !pause(&ctx.cancel, backoff.next_delay()).await {
            return;
        }
    }
}

//! `remote_icombuffer` destination: relays the buffer to another ioBufferPro instance; a
//! record is Done only once the remote has it durably (see [`crate::relay`]).
//!
//! - With `url`: connects to the remote instance and pushes into its channel `channel_id`
//!   (a `remote_icombuffer` source without `url` there), reconnecting with backoff.
//! - Without `url`: serves the remote instance that pulls from `channel_id` here (its
//!   `remote_icombuffer` source with a `url`); a newer puller takes over from an older one.

use iobp_config::RemoteSpec;

use super::return_in_flight;
use crate::relay::sender::{Ended, send};
use crate::relay::{Incoming, RelayMode, SessionEnd, connect_loop};
use crate::side::SideCtx;
use crate::stats::{Color, Side};

pub(crate) async fn destination(ctx: SideCtx, spec: RemoteSpec) {
    if spec.url.is_some() { push(ctx, spec).await } else { serve(ctx, spec).await }
}

async fn push(ctx: SideCtx, spec: RemoteSpec) {
    connect_loop(&ctx, Side::Destination, &spec, RelayMode::Push, |io, peer| {
        let ctx = &ctx;
        async move {
            let r = send(ctx, io, &peer).await;
            return_in_flight(ctx);
            match r {
                Ok(Ended::Cancelled) => SessionEnd::Cancelled,
                Ok(Ended::PeerClosed) => SessionEnd::Closed(format!("{peer} closed the relay")),
                Err(e) => SessionEnd::Closed(format!("relay to {peer}: {e}")),
            }
        }
    })
    .await;
}

async fn serve(ctx: SideCtx, spec: RemoteSpec) {
    let status = &ctx.stats.destination;
    let (_registration, mut incoming) = ctx.relay_hub.register(&spec.channel_id, RelayMode::Pull);
    let waiting =
        format!("relay: waiting for a remote instance to pull channel {}", spec.channel_id);
    status.set(Color::Yellow, waiting.clone());
    let mut next: Option<Incoming> = None;
    loop {
        let Incoming { io, peer } = if let Some(i) = next.take() {
            i
        } else {
            tokio::select! {
                () = ctx.cancel.cancelled() => return,
                i = incoming.recv() => match i { Some(i) => i, None => return },
            }
        };
        status.peer_up(&peer);
        status.set(Color::Green, format!("relay: {peer} is pulling"));
        let outcome = tokio::select! {
            r = send(&ctx, io, &peer) => Some(r),
            newer = incoming.recv() => { next = newer; None }
        };
        return_in_flight(&ctx);
        status.peer_down(&peer);
        match outcome {
            Some(Ok(Ended::Cancelled)) => return,
            Some(Ok(Ended::PeerClosed)) => {
                tracing::info!(pair = &*ctx.pair, %peer, "relay puller disconnected");
            }
            Some(Err(e)) => ctx.error(Side::Destination, format!("relay to {peer}: {e}")),
            None => tracing::info!(pair = &*ctx.pair, %peer, "a newer puller takes over"),
        }
        if next.is_none() {
            status.set(Color::Yellow, waiting.clone());
        }
    }
}

//! `remote_icombuffer` source: records relayed from another ioBufferPro instance, stored
//! exactly once (see [`crate::relay`]).
//!
//! - With `url`: connects to the remote instance and pulls from its channel `channel_id`
//!   (a `remote_icombuffer` destination without `url` there), reconnecting with backoff.
//! - Without `url`: takes the pushes that remote instances send to `channel_id` here (their
//!   `remote_icombuffer` destinations with a `url`), several at once if they come.

use iobp_config::RemoteSpec;

use crate::relay::receiver::{Ended, receive};
use crate::relay::{Incoming, RelayMode, SessionEnd, connect_loop};
use crate::side::SideCtx;
use crate::stats::{Color, Side};

pub(crate) async fn source(ctx: SideCtx, spec: RemoteSpec) {
    if spec.url.is_some() { pull(ctx, spec).await } else { accept(ctx, spec).await }
}

async fn pull(ctx: SideCtx, spec: RemoteSpec) {
    connect_loop(&ctx, Side::Source, &spec, RelayMode::Pull, |io, peer| {
        let ctx = &ctx;
        async move {
            let r = receive(ctx, io, &peer).await;
            ctx.stats.source.set_lag(None);
            match r {
                Ok((_, Ended::Cancelled)) => SessionEnd::Cancelled,
                Ok((_, Ended::PeerClosed)) => {
                    SessionEnd::Closed(format!("{peer} closed the relay"))
                }
                Err(e) => SessionEnd::Closed(format!("relay from {peer}: {e}")),
            }
        }
    })
    .await;
}

async fn accept(ctx: SideCtx, spec: RemoteSpec) {
    let status = &ctx.stats.source;
    let (_registration, mut incoming) = ctx.relay_hub.register(&spec.channel_id, RelayMode::Push);
    let waiting =
        format!("relay: waiting for remote instances to push to channel {}", spec.channel_id);
    // Waiting is healthy for a source, as for a listening TCP server.
    status.set(Color::Green, waiting.clone());
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let Incoming { io, peer } = tokio::select! {
            () = ctx.cancel.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            i = incoming.recv() => match i { Some(i) => i, None => break },
        };
        let (ctx, waiting) = (ctx.clone(), waiting.clone());
        tasks.spawn(async move {
            let status = &ctx.stats.source;
            status.peer_up(&peer);
            status
                .set(Color::Green, format!("relay: {} instance(s) pushing", status.connections()));
            let r = receive(&ctx, io, &peer).await;
            status.peer_down(&peer);
            if let Err(e) = r {
                ctx.error(Side::Source, format!("relay from {peer}: {e}"));
            }
            if ctx.cancel.is_cancelled() {
                return;
            }
            match status.connections() {
                0 => {
                    status.set_lag(None);
                    status.set(Color::Green, waiting);
                }
                n => status.set(Color::Green, format!("relay: {n} instance(s) pushing")),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

//! Destinations: where messages go. One supervised task per pair delivers in FIFO order,
//! reconnecting with backoff, and returns in-flight messages to Pending whenever a delivery
//! attempt ends without confirmation.

pub(crate) mod astm;
mod failover;
mod mqtt;
mod nats;
mod remote;
mod serial;
pub(crate) mod stream;
mod tcp;
mod udp;
pub(crate) mod window;

use iobp_config::EndpointSpec;

use crate::side::SideCtx;
use crate::trace::TraceKind;

/// Runs the pair's destination (with its backups, if it has any) until the pair stops.
pub(crate) async fn run_pair(ctx: SideCtx, pair: std::sync::Arc<iobp_config::ChannelPairSpec>) {
    if pair.failover.is_empty() {
        run(ctx, pair.destination.clone()).await;
    } else {
        failover::run(ctx, pair).await;
    }
}

/// Runs one destination until the pair stops.
pub(crate) async fn run(ctx: SideCtx, spec: EndpointSpec) {
    match spec {
        EndpointSpec::TcpClient(s) => tcp::client(ctx, s).await,
        EndpointSpec::TcpServer(s) => tcp::server(ctx, s).await,
        EndpointSpec::Udp(s) => udp::destination(ctx, s).await,
        EndpointSpec::Serial(s) => serial::destination(ctx, s).await,
        EndpointSpec::Remote(s) => remote::destination(ctx, s).await,
        EndpointSpec::Mqtt(s) => mqtt::destination(ctx, s).await,
        EndpointSpec::Nats(s) => nats::destination(ctx, s).await,
        // Validation refuses it (a device is polled, not written to); a pair that got here
        // anyway shows why and waits to be edited, rather than panicking.
        EndpointSpec::Modbus(_) => {
            let why = "modbus is a source only: a Modbus device cannot be a destination";
            ctx.error(crate::stats::Side::Destination, why);
            ctx.stats.destination.set(crate::stats::Color::Red, why);
            ctx.cancel.cancelled().await;
        }
    }
}

/// After a delivery attempt: everything handed out but not confirmed goes back to Pending,
/// counted as possible duplicates if it may have reached the receiver; their trace says why
/// the attempt ended (`why`, asked only if something was in flight).
pub(crate) fn return_in_flight(ctx: &SideCtx, peer: Option<&str>, why: impl FnOnce() -> String) {
    let ls = ctx.log.stats();
    if ls.in_flight > 0 {
        ctx.stats.retries.fetch_add(ls.in_flight, std::sync::atomic::Ordering::Relaxed);
        let range = (ls.done_seq + 1, ls.read_seq.saturating_sub(1).max(ls.done_seq + 1));
        ctx.trace_delivery(TraceKind::Returned, range, peer, None, Some(why()));
    }
    ctx.log.requeue_all();
}

//! Sources: where messages come from. Each runs as one supervised task per pair that keeps
//! going — rebinding, reconnecting with backoff — until the pair stops.

mod serial;
pub(crate) mod stream;
mod tcp;
mod udp;

use iobp_config::EndpointSpec;

use crate::side::SideCtx;
use crate::stats::{Color, Side};

/// Runs the source until the pair stops.
pub(crate) async fn run(ctx: SideCtx, spec: EndpointSpec) {
    match spec {
        EndpointSpec::TcpServer(s) => tcp::server(ctx, s).await,
        EndpointSpec::TcpClient(s) => tcp::client(ctx, s).await,
        EndpointSpec::Udp(s) => udp::source(ctx, s).await,
        EndpointSpec::Serial(s) => serial::source(ctx, s).await,
        EndpointSpec::Remote(_) => unsupported(&ctx, Side::Source, "remote").await,
    }
}

/// A connector type this build cannot run yet: shown Red with the reason until the pair stops.
pub(crate) async fn unsupported(ctx: &SideCtx, side: Side, kind: &str) {
    let msg = format!("the {kind} connector is not available in this version of ioBufferPro");
    ctx.error(side, msg.clone());
    ctx.stats.side(side).set(Color::Red, msg);
    ctx.cancel.cancelled().await;
}

//! Sources: where messages come from. Each runs as one supervised task per pair that keeps
//! going — rebinding, reconnecting with backoff — until the pair stops.

pub(crate) mod astm;
mod modbus;
mod mqtt;
mod nats;
mod remote;
mod serial;
pub(crate) mod stream;
mod tcp;
mod udp;

use iobp_config::EndpointSpec;

use crate::side::SideCtx;

/// Runs the source until the pair stops.
pub(crate) async fn run(ctx: SideCtx, spec: EndpointSpec) {
    match spec {
        EndpointSpec::TcpServer(s) => tcp::server(ctx, s).await,
        EndpointSpec::TcpClient(s) => tcp::client(ctx, s).await,
        EndpointSpec::Udp(s) => udp::source(ctx, s).await,
        EndpointSpec::Serial(s) => serial::source(ctx, s).await,
        EndpointSpec::Remote(s) => remote::source(ctx, s).await,
        EndpointSpec::Mqtt(s) => mqtt::source(ctx, s).await,
        EndpointSpec::Nats(s) => nats::source(ctx, s).await,
        EndpointSpec::Modbus(s) => modbus::source(ctx, s).await,
    }
}

//! `remote_icombuffer` destination: relays the buffer to another ioBufferPro instance; a
//! record is Done only once the remote has it durably (see [`crate::relay`]).
//!
//! - With `url`: connects to the remote instance and pushes into its channel `channel_id`
//!   (a `remote_icombuffer` source without `url` there), reconnecting with backoff.
//! - Without `url`: serves the remote instance that pulls from `channel_id` here (its
//!   `remote_icombuffer` source with a `url`); a newer puller takes over from an older one.

use iobp_config::RemoteSpec;

use crate::relay::sender::RelaySend;
use crate::relay::{Dial, Hub, RelayMode};
use crate::side::SideCtx;
use crate::stats::Side;

pub(crate) async fn destination(ctx: SideCtx, spec: RemoteSpec) {
    let side = Side::Destination;
    if spec.url.is_some() {
        let opener = Dial::new(&spec, RelayMode::Push);
        crate::connector::run(ctx, side, opener, RelaySend).await;
    } else {
        let opener = Hub::new(&ctx.relay_hub, &spec.channel_id, RelayMode::Pull);
        crate::connector::run(ctx, side, opener, RelaySend).await;
    }
}

//! `remote_icombuffer` source: records relayed from another ioBufferPro instance, stored
//! exactly once (see [`crate::relay`]).
//!
//! - With `url`: connects to the remote instance and pulls from its channel `channel_id`
//!   (a `remote_icombuffer` destination without `url` there), reconnecting with backoff.
//! - Without `url`: takes the pushes that remote instances send to `channel_id` here (their
//!   `remote_icombuffer` destinations with a `url`), several at once if they come.

use iobp_config::RemoteSpec;

use crate::relay::receiver::RelayReceive;
use crate::relay::{Dial, Hub, RelayMode};
use crate::side::SideCtx;
use crate::stats::Side;

pub(crate) async fn source(ctx: SideCtx, spec: RemoteSpec) {
    let side = Side::Source;
    if spec.url.is_some() {
        let opener = Dial::new(&spec, RelayMode::Pull);
        crate::connector::run(ctx, side, opener, RelayReceive).await;
    } else {
        let opener = Hub::new(&ctx.relay_hub, &spec.channel_id, RelayMode::Push);
        crate::connector::run(ctx, side, opener, RelayReceive).await;
    }
}

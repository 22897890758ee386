//! Backup destinations: delivery moves down the list (`failover`) when the active destination
//! fails, and back to the primary (`failback`) once it answers again.
//!
//! The active destination runs as an ordinary destination task. It counts as failed after
//! `failover_policy.failures` failed attempts in a row (it turned Red: connection refused or
//! lost, delivery error, acknowledgement timeout) or when it has not been delivering for
//! `failed_after_ms` (stuck connecting, a listening destination without a receiver). Then its
//! task is stopped — which returns its in-flight messages to Pending, so FIFO order holds and
//! only those can be duplicated — and the next destination in the list starts. After the last
//! one comes the primary again; a whole round without any destination delivering waits the
//! pair's backoff before the next.
//!
//! Failback: while a backup delivers, the primary is probed every `probe_interval_ms`
//! (a TCP connection to a `tcp_client` or a relay `url`, or opening a serial port). When it
//! answers, the backup is stopped between messages and the primary takes over. Destinations
//! that cannot be probed (`tcp_server`, `udp`, a relay without `url`) are not failed back to.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use iobp_config::{ChannelPairSpec, EndpointSpec};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::side::SideCtx;
use crate::stats::{Color, FailoverState, Side};

/// How long a stopped destination gets to hand its in-flight messages back.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Time-based checks run at least this often.
const TICK: Duration = Duration::from_millis(250);

/// Watches the active destination until it fails, the primary can take over again, or the
/// pair stops (`None`). Also says whether the destination delivered at some point.
async fn watch(
    ctx: &SideCtx,
    pair: &ChannelPairSpec,
    endpoints: &[EndpointSpec],
    active: usize,
    task: &mut tokio::task::JoinHandle<()>,
    backoff: &mut Backoff,
) -> Option<(Switch, bool)> {
    let policy = pair.failover_policy;
    let failed_after = Duration::from_millis(policy.failed_after_ms);
    let probe_every = Duration::from_millis(policy.probe_interval_ms);
    let status = &ctx.stats.destination;
    let mut last_green = Instant::now();
    let mut was_red = false;
    let mut failures = 0u32;
    let mut next_probe = Instant::now() + probe_every;
    let mut delivered = false;
    loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => return None,
            r = &mut *task => {
                // Only a panic ends a destination task early: start it again.
                if let Err(e) = r {
                    ctx.error(Side::Destination, format!("destination task ended: {e}"));
                    ctx.log.requeue_all();
                }
                return Some((Switch::Failed("the destination task ended".into()), delivered));
            }
            () = status.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        let color = status.color();
        if color == Color::Green {
            last_green = Instant::now();
            was_red = false;
            failures = 0;
            delivered = true;
            backoff.reset();
        } else if color == Color::Red && !was_red {
            was_red = true;
            failures += 1;
        } else if color != Color::Red {
            was_red = false;
        }
        if endpoints.len() > 1 {
            if failures >= policy.failures {
                return Some((Switch::Failed(status_detail(ctx)), delivered));
            }
            if color != Color::Green && last_green.elapsed() >= failed_after {
                let why = format!(
                    "not delivering for {} ms: {}",
                    failed_after.as_millis(),
                    status_detail(ctx)
                );
                return Some((Switch::Failed(why), delivered));
            }
        }
        if active > 0 && pair.failback && Instant::now() >= next_probe {
            next_probe = Instant::now() + probe_every;
            if probe(&endpoints[0]).await {
                return Some((Switch::Failback, delivered));
            }
        }
    }
}

enum Switch {
    /// The active destination failed: the reason.
    Failed(String),
    /// The primary answers again.
    Failback,
}

pub(crate) async fn run(ctx: SideCtx, pair: Arc<ChannelPairSpec>) {
    let endpoints: Vec<EndpointSpec> =
        std::iter::once(pair.destination.clone()).chain(pair.failover.iter().cloned()).collect();
    let status = &ctx.stats.destination;
    let mut backoff = Backoff::new(ctx.retry);
    let mut active = 0usize;
    // Destinations tried since one last delivered; a full round waits the backoff.
    let mut tried_without_success = 0usize;
    let mut switches = 0u64;
    let mut reason: Option<String> = None;
    loop {
        *crate::stats::lock_mutex(&ctx.stats.failover) = Some(FailoverState {
            active,
            destinations: endpoints.len(),
            active_type: endpoints[active].type_name(),
            since: SystemTime::now(),
            switches,
            reason: reason.clone(),
        });
        // The previous destination's Red must not count against this one.
        status.set(Color::Yellow, format!("starting {}", name(active)));
        let child = ctx.cancel.child_token();
        let route = format!("{} ({})", name(active), endpoints[active].type_name());
        let sub = SideCtx { cancel: child.clone(), route: Some(route.into()), ..ctx.clone() };
        let mut task = tokio::spawn(super::run(sub, endpoints[active].clone()));
        let Some((switch, delivered)) =
            watch(&ctx, &pair, &endpoints, active, &mut task, &mut backoff).await
        else {
            stop(&ctx, &child, task).await;
            return;
        };
        if delivered {
            tried_without_success = 0;
        }
        stop(&ctx, &child, task).await;
        let from = active;
        match switch {
            Switch::Failed(why) => {
                tried_without_success += 1;
                active = (active + 1) % endpoints.len();
                tracing::warn!(
                    pair = &*ctx.pair,
                    "destination {} failed ({why}); switching to {}",
                    name(from),
                    name(active)
                );
                ctx.error(
                    Side::Destination,
                    format!("{} failed ({why}); delivering to {}", name(from), name(active)),
                );
                reason = Some(format!("{} failed: {why}", name(from)));
                if tried_without_success >= endpoints.len() {
                    // No destination delivers: wait before the next round.
                    tried_without_success = 0;
                    status.set(Color::Red, "no destination is delivering; trying again soon");
                    if !crate::side::pause(&ctx.cancel, backoff.next_delay()).await {
                        return;
                    }
                }
            }
            Switch::Failback => {
                active = 0;
                tried_without_success = 0;
                tracing::info!(
                    pair = &*ctx.pair,
                    "the primary destination answers again; failing back"
                );
                reason = Some("the primary destination answers again".into());
            }
        }
        switches += 1;
    }
}

fn name(i: usize) -> String {
    if i == 0 { "the primary destination".into() } else { format!("backup destination {i}") }
}

fn status_detail(ctx: &SideCtx) -> String {
    ctx.stats.side_snapshots().1.detail
}

/// Stops the active destination; it returns its in-flight messages to Pending.
async fn stop(
    ctx: &SideCtx,
    child: &tokio_util::sync::CancellationToken,
    mut task: tokio::task::JoinHandle<()>,
) {
    child.cancel();
    if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
        task.abort();
        ctx.log.requeue_all();
    }
}

/// Whether the primary answers: a TCP connection for `tcp_client`, relays with a `url` and
/// `nats` (any server), opening the port for `serial`. Other types cannot be probed.
async fn probe(e: &EndpointSpec) -> bool {
    let connect = |host: String, port: u16| async move {
        matches!(
            tokio::time::timeout(
                Duration::from_secs(2),
                crate::net::connect_tcp((host.as_str(), port))
            )
            .await,
            Ok(Ok(_))
        )
    };
    match e {
        EndpointSpec::TcpClient(s) => connect(s.host.clone(), s.port).await,
        EndpointSpec::Remote(r) => match r.url.as_deref().map(crate::relay::client::parse_url) {
            Some(Ok(t)) => connect(t.host, t.port).await,
            _ => false,
        },
        EndpointSpec::Serial(s) => {
            let s = s.clone();
            tokio::task::spawn_blocking(move || crate::serial::probe(&s)).await.unwrap_or(false)
        }
        // Any of its servers answering TCP.
        EndpointSpec::Nats(n) => {
            for (host, port) in n.servers.iter().filter_map(|u| crate::nats::host_port(u)) {
                if connect(host, port).await {
                    return true;
                }
            }
            false
        }
        EndpointSpec::Mqtt(m) => match iobp_config::parse_mqtt_url(&m.url) {
            Ok((host, port, _)) => connect(host, port).await,
            Err(_) => false,
        },
        _ => false,
    }
}

//! The connector loop, written once for every transport: *open → show the side up → run the
//! session → peer down → back off → again*.
//!
//! A transport says only how it opens connections (an [`Opener`]: connect, accept, open a
//! serial port, open a relay connection) and which [`Session`] runs on each (the byte-stream
//! intake of `source/stream.rs`, the delivery of `destination/stream.rs`, the relay's sender
//! and receiver). This loop owns the rest, the same for all:
//!
//! - **Status.** Yellow while getting ready or opening, the opener's line (Green, or Yellow
//!   with a warning) while a connection is up, Red with the reason when one fails; a listening
//!   side without a connection waits Green as a source (senders come and go) and Yellow as a
//!   destination (messages cannot leave).
//! - **Peers.** Every connection is counted from open to end ([`crate::stats::SideStatus`]
//!   `peer_up`/`peer_down`); a destination returns what was in flight to Pending after each;
//!   the relay lag is cleared when the last connection ends.
//! - **Backoff.** A failed open or an ended connection waits the pair's backoff before the next
//!   attempt; it starts over once a session moved messages ([`Progress`], or the side's
//!   received / delivered count grew) or a connection stayed up 10 s. Opening alone proves
//!   nothing: a peer that accepts and then refuses every message meets a growing backoff.
//! - **Stopping.** Every wait observes the pair's cancellation; sessions observe it themselves
//!   so they can wind down (answer what became durable, return what is in flight).
//! - **Errors, by kind** ([`SideError`], [`SideError::next`]). A fault of the peer (and TLS and
//!   protocol faults) is counted and logged ([`SideCtx::error`]) with the peer named; a
//!   dialled side shows it Red and tries a new connection after the backoff, a listening side
//!   goes on with its other connections and the next one. A fault of the buffer names no
//!   peer: if the log failed or closed, the side shows Red and waits for the engine, which
//!   reopens the buffer and starts the side again — reconnecting (or, listening, accepting)
//!   could only fail the same way; a buffer error the log survives (a read error) is retried
//!   like a peer's. Settings that cannot work are reported once and wait for an edit.
//!
//! How connections come is the opener's [`Shape`]: dialled one at a time, accepted and served
//! side by side, or accepted with the newest taking over.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::side::{Next, SideCtx, SideError, pause};
use crate::stats::{Color, Side};

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The peer closed the connection.
    PeerClosed,
    /// The pair is stopping.
    Cancelled,
    /// Nothing arrived for longer than the side's idle timeout, so this side closed it.
    IdleTimeout,
}

/// A connection an [`Opener`] opened, and how the side shows while it is up.
pub(crate) struct Opened<Io> {
    /// The connection, for the session.
    pub io: Io,
    /// Who is at the other end: in the status, the list of peers and messages.
    pub peer: Arc<str>,
    /// The status line while it is up (dialled and newest-takes-over shapes).
    pub detail: String,
    /// Something the operator should know about this connection (a serial driver that ignored
    /// settings): reported as an error, and the side shows Yellow instead of Green.
    pub warning: Option<String>,
    /// Held while the connection is in use and released when it ends (a serial port's
    /// advisory lock).
    pub lock: Option<crate::serial::PortHold>,
}

impl<Io> Opened<Io> {
    /// A connection to `peer`, shown as `detail` while it is up.
    pub(crate) fn new(io: Io, peer: Arc<str>, detail: String) -> Self {
        Opened { io, peer, detail, warning: None, lock: None }
    }
}

/// How an opener's connections come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One connection at a time, opened again after the backoff when it fails or ends:
    /// clients, serial ports, relays with a `url`, UDP destinations.
    Dial,
    /// Accepted connections are served side by side, at most `limit` at once (sources that
    /// listen); one over the limit is closed at once, counted and reported.
    Concurrent {
        /// The most connections served at once; `None`: the opener bounds them itself.
        limit: Option<usize>,
    },
    /// The newest accepted connection is served and a newer one takes over at once
    /// (destinations that listen): a receiver that reconnects after a network problem does
    /// not wait for its dead predecessor's connection to time out.
    Newest,
}

/// How a transport opens connections: everything about connecting that differs between
/// transports, as data and hooks of the one loop.
pub(crate) trait Opener: Send {
    /// The connection a session runs on.
    type Io: Send + 'static;

    /// How connections come.
    fn shape(&self) -> Shape;

    /// The Yellow status while getting ready ([`Opener::prepare`], listening shapes: "binding
    /// …") or before each [`Opener::open`] (the dialled shape: "connecting to …"); `None`
    /// shows nothing.
    fn opening(&self) -> Option<String> {
        None
    }

    /// The status while no connection is up (listening shapes).
    fn waiting(&self) -> String {
        String::new()
    }

    /// The status while `n` connections are up (the concurrent shape).
    fn connected(&self, n: u64) -> String {
        format!("{n} connected")
    }

    /// Gets ready once (binds a listener); retried with the backoff until it succeeds, unless
    /// the error says there is nothing to retry ([`SideError::next`]).
    fn prepare(&mut self) -> impl Future<Output = Result<(), SideError>> + Send {
        async { Ok(()) }
    }

    /// Opens the next connection: connects, opens the port, or takes the next accepted one.
    /// Listening shapes: cancel-safe (a connection being accepted is never lost when the
    /// future is dropped), and an error is reported without ending the side.
    fn open(&mut self) -> impl Future<Output = Result<Opened<Self::Io>, SideError>> + Send;

    /// The status when the peer closed its end.
    fn closed(&self, peer: &str) -> String {
        format!("{peer} closed the connection")
    }

    /// Added to messages about a failed connection, as a hint (" (device unplugged?)").
    fn hint(&self) -> &'static str {
        ""
    }

    /// A connectionless transport (UDP): opening proves nothing about the peer, so the
    /// backoff starts over only once a session made [`Progress`], and no peer is counted as
    /// connected.
    fn connectionless(&self) -> bool {
        false
    }
}

/// What runs on one opened connection.
pub(crate) trait Session<Io>: Send + Sync + 'static {
    /// Names the peer in messages about this session's errors ("delivery to 10.0.0.5:5000").
    fn about(&self, peer: &str) -> String;

    /// Runs until the connection fails, the peer closes it or the pair stops (then it winds
    /// down and returns [`Ended::Cancelled`]).
    fn run(
        &self,
        ctx: &SideCtx,
        io: Io,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> impl Future<Output = Result<Ended, SideError>> + Send;
}

/// A connection that stayed up this long was a working one, even if nothing moved (an idle
/// destination): the backoff starts over after it.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// The side's count of messages moved (received by a source, delivered by a destination).
fn messages_moved(ctx: &SideCtx, side: Side) -> u64 {
    match side {
        Side::Source => ctx.stats.received.load(Ordering::Relaxed),
        Side::Destination => ctx.stats.sent.load(Ordering::Relaxed),
    }
}

/// Marked by a session each time data moved; a connectionless transport's backoff starts over
/// only then.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicBool);

impl Progress {
    /// Data moved.
    pub(crate) fn made(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Runs `side` of a pair with `opener`'s connections and `session` on each, until the pair
/// stops.
pub(crate) async fn run<O, S>(ctx: SideCtx, side: Side, mut opener: O, session: S)
where
    O: Opener,
    S: Session<O::Io>,
{
    let mut backoff = Backoff::new(ctx.retry);
    if !prepare(&ctx, side, &mut opener, &mut backoff).await {
        return;
    }
    match opener.shape() {
        Shape::Dial => dial(&ctx, side, opener, &session, backoff).await,
        Shape::Concurrent { limit } => {
            concurrent(&ctx, side, opener, Arc::new(session), limit, backoff).await;
        }
        Shape::Newest => newest(&ctx, side, opener, &session, backoff).await,
    }
}

/// Gets the opener ready, with the backoff; false if the pair stopped first.
async fn prepare<O: Opener>(
    ctx: &SideCtx,
    side: Side,
    opener: &mut O,
    backoff: &mut Backoff,
) -> bool {
    loop {
        if opener.shape() != Shape::Dial
            && let Some(doing) = opener.opening()
        {
            ctx.stats.side(side).set(Color::Yellow, doing);
        }
        let e = tokio::select! {
            () = ctx.cancel.cancelled() => return false,
            r = opener.prepare() => match r {
                Ok(()) => return true,
                Err(e) => e,
            },
        };
        if !failed(ctx, side, e.to_string(), e.next(), backoff).await {
            return false;
        }
    }
}

/// The dialled shape: one connection at a time.
async fn dial<O, S>(ctx: &SideCtx, side: Side, mut opener: O, session: &S, mut backoff: Backoff)
where
    O: Opener,
    S: Session<O::Io>,
{
    let status = ctx.stats.side(side);
    let counted = !opener.connectionless();
    loop {
        if let Some(doing) = opener.opening() {
            status.set(Color::Yellow, doing);
        }
        let attempt = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            r = opener.open() => r,
        };
        let (why, next) = match attempt {
            Err(e) => (e.to_string(), e.next()),
            Ok(link) => {
                let Opened { io, peer, detail, warning, lock } = link;
                let shown = if warning.is_some() { Color::Yellow } else { Color::Green };
                up(ctx, side, &peer, counted, warning);
                status.set(shown, detail);
                let progress = Progress::default();
                let (moved, began) = (messages_moved(ctx, side), tokio::time::Instant::now());
                let ended = session.run(ctx, io, &peer, &progress).await;
                drop(lock);
                down(ctx, side, &peer, counted, Some(&ended));
                // Opening proves little: a peer that takes the connection and refuses the
                // first message (a broker's ACL or quota, a receiver that closes at once)
                // must meet a growing backoff, not a reconnection every `initial_ms`.
                let proven = progress.take()
                    || messages_moved(ctx, side) != moved
                    || (counted && began.elapsed() >= STABLE_SESSION);
                if proven {
                    backoff.reset();
                }
                match ended {
                    Ok(Ended::Cancelled) => return,
                    Ok(Ended::PeerClosed | Ended::IdleTimeout) => {
                        (format!("{}{}", opener.closed(&peer), opener.hint()), Next::Retry)
                    }
                    Err(e) => (describe(session, &peer, opener.hint(), &e), e.next()),
                }
            }
        };
        if !failed(ctx, side, why, next, &mut backoff).await {
            return;
        }
    }
}

/// The concurrent shape: connections served side by side, each in its own task.
async fn concurrent<O, S>(
    ctx: &SideCtx,
    side: Side,
    mut opener: O,
    session: Arc<S>,
    limit: Option<usize>,
    mut backoff: Backoff,
) where
    O: Opener,
    S: Session<O::Io>,
{
    let status = ctx.stats.side(side);
    let waiting = opener.waiting();
    status.set(waiting_color(side), waiting.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let mut peers: HashMap<tokio::task::Id, Arc<str>> = HashMap::new();
    loop {
        let attempt = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                if let Some((why, next)) = ended(ctx, side, &*session, opener.hint(), &mut peers, done) {
                    // The buffer failed: no new connection until it can take data again.
                    if !failed(ctx, side, why, next, &mut backoff).await {
                        break;
                    }
                } else {
                    backoff.reset();
                }
                if !ctx.cancel.is_cancelled() {
                    match status.connections() {
                        0 => status.set(waiting_color(side), waiting.clone()),
                        n => status.set(Color::Green, opener.connected(n)),
                    }
                }
                continue;
            }
            r = opener.open() => r,
        };
        let link = match attempt {
            Ok(link) => link,
            Err(e) => {
                ctx.error(side, e.to_string());
                continue;
            }
        };
        if let Some(limit) = limit.filter(|l| tasks.len() >= *l) {
            ctx.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            ctx.error(
                side,
                format!(
                    "refused connection from {}: limit of {limit} connections reached",
                    link.peer
                ),
            );
            continue;
        }
        let Opened { io, peer, warning, lock, .. } = link;
        up(ctx, side, &peer, true, warning);
        status.set(Color::Green, opener.connected(status.connections()));
        let (task_ctx, session, task_peer) = (ctx.clone(), session.clone(), peer.clone());
        let handle = tasks.spawn(async move {
            let _lock = lock;
            session.run(&task_ctx, io, &task_peer, &Progress::default()).await
        });
        peers.insert(handle.id(), peer);
    }
    // Stopping: connections wind down (a bounded wait inside each session).
    while let Some(done) = tasks.join_next_with_id().await {
        if let Some((why, _)) = ended(ctx, side, &*session, opener.hint(), &mut peers, done) {
            ctx.error(side, why);
        }
    }
}

/// A connection of the concurrent shape ended: its peer goes and a fault of the peer's is
/// reported. A fault of the whole side (the buffer) is returned, with what to do about it.
fn ended<Io, S: Session<Io>>(
    ctx: &SideCtx,
    side: Side,
    session: &S,
    hint: &str,
    peers: &mut HashMap<tokio::task::Id, Arc<str>>,
    done: Result<(tokio::task::Id, Result<Ended, SideError>), tokio::task::JoinError>,
) -> Option<(String, Next)> {
    let (id, outcome) = match done {
        Ok((id, outcome)) => (id, Some(outcome)),
        // A session that panicked: the connection is gone; the loop goes on.
        Err(e) => (e.id(), None),
    };
    let peer = peers.remove(&id)?;
    down(ctx, side, &peer, true, outcome.as_ref());
    match outcome {
        Some(Ok(Ended::IdleTimeout)) => {
            tracing::info!(pair = &*ctx.pair, %peer, "closed idle connection");
        }
        Some(Ok(Ended::PeerClosed | Ended::Cancelled)) => {}
        Some(Err(e)) if e.is_the_peers() => ctx.error(side, describe(session, &peer, hint, &e)),
        Some(Err(e)) => return Some((e.to_string(), e.next())),
        None => ctx.error(side, format!("{}: the session crashed", session.about(&peer))),
    }
    None
}

/// The newest-takes-over shape.
async fn newest<O, S>(ctx: &SideCtx, side: Side, mut opener: O, session: &S, mut backoff: Backoff)
where
    O: Opener,
    S: Session<O::Io>,
{
    let status = ctx.stats.side(side);
    let waiting = opener.waiting();
    status.set(waiting_color(side), waiting.clone());
    let mut next: Option<Opened<O::Io>> = None;
    loop {
        let link = if let Some(link) = next.take() {
            link
        } else {
            let attempt = tokio::select! {
                () = ctx.cancel.cancelled() => return,
                r = opener.open() => r,
            };
            match attempt {
                Ok(link) => link,
                Err(e) => {
                    ctx.error(side, e.to_string());
                    continue;
                }
            }
        };
        let Opened { io, peer, detail, warning, lock } = link;
        let shown = if warning.is_some() { Color::Yellow } else { Color::Green };
        up(ctx, side, &peer, true, warning);
        status.set(shown, detail);
        let progress = Progress::default();
        let outcome = {
            let mut running = std::pin::pin!(session.run(ctx, io, &peer, &progress));
            loop {
                tokio::select! {
                    r = &mut running => break Some(r),
                    r = opener.open() => match r {
                        Ok(newer) => {
                            next = Some(newer);
                            break None;
                        }
                        Err(e) => ctx.error(side, e.to_string()),
                    },
                }
            }
        };
        drop(lock);
        down(ctx, side, &peer, true, outcome.as_ref());
        match outcome {
            Some(Ok(Ended::Cancelled)) => return,
            Some(Ok(Ended::PeerClosed | Ended::IdleTimeout)) => {
                tracing::info!(pair = &*ctx.pair, %peer, "disconnected");
            }
            Some(Err(e)) if e.is_the_peers() => {
                ctx.error(side, describe(session, &peer, opener.hint(), &e));
            }
            Some(Err(e)) => {
                // The buffer failed: no connection is taken until it can give data again.
                if !failed(ctx, side, e.to_string(), e.next(), &mut backoff).await {
                    return;
                }
                if next.is_none() {
                    status.set(waiting_color(side), waiting.clone());
                }
                continue;
            }
            None => tracing::info!(pair = &*ctx.pair, %peer, "a newer connection takes over"),
        }
        backoff.reset();
        if next.is_none() {
            status.set(waiting_color(side), waiting.clone());
        }
    }
}

/// How a session's error reads: the fault of the peer with the peer named (and the opener's
/// hint); a buffer fault or the side's settings as they are, since they are no peer's.
fn describe<Io, S: Session<Io>>(session: &S, peer: &str, hint: &str, e: &SideError) -> String {
    if e.is_the_peers() { format!("{}: {e}{hint}", session.about(peer)) } else { e.to_string() }
}

/// Reports a failure and shows it Red; then waits the backoff (true: try again) or, when
/// nothing is to be tried again, until the pair stops (false).
async fn failed(ctx: &SideCtx, side: Side, why: String, next: Next, backoff: &mut Backoff) -> bool {
    ctx.error(side, why.clone());
    ctx.stats.side(side).set(Color::Red, why);
    match next {
        Next::Retry => pause(&ctx.cancel, backoff.next_delay()).await,
        Next::WaitForStop => {
            ctx.cancel.cancelled().await;
            false
        }
    }
}

/// A connection is up: counted (unless connectionless), its warning reported.
fn up(ctx: &SideCtx, side: Side, peer: &Arc<str>, counted: bool, warning: Option<String>) {
    if counted {
        ctx.stats.side(side).peer_up(peer);
    }
    if let Some(w) = warning {
        ctx.error(side, w);
    }
}

/// A connection ended (`outcome`: how; `None`: a newer one took over, or its session
/// crashed): no longer counted; a destination's unconfirmed messages go back to Pending
/// (first in line again, their trace saying why); without connections there is no relay lag
/// to show.
fn down(
    ctx: &SideCtx,
    side: Side,
    peer: &Arc<str>,
    counted: bool,
    outcome: Option<&Result<Ended, SideError>>,
) {
    let status = ctx.stats.side(side);
    if counted {
        status.peer_down(peer);
    }
    if side == Side::Destination {
        crate::destination::return_in_flight(ctx, Some(peer), || match outcome {
            Some(Ok(Ended::Cancelled)) => "the pair stopped".to_string(),
            Some(Ok(Ended::PeerClosed)) => "the receiver closed the connection".to_string(),
            Some(Ok(Ended::IdleTimeout)) => "the connection was idle too long".to_string(),
            Some(Err(e)) => e.to_string(),
            None => "the connection ended (taken over, or its session failed)".to_string(),
        });
    }
    if status.connections() == 0 {
        status.set_lag(None);
    }
}

/// Listening without a connection: healthy for a source, a backlog in the making for a
/// destination.
fn waiting_color(side: Side) -> Color {
    match side {
        Side::Source => Color::Green,
        Side::Destination => Color::Yellow,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use iobp_config::BackoffSpec;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::{Ended, Opened, Opener, Progress, Session, Shape};
    use crate::side::{SideCtx, SideError};
    use crate::stats::{Color, Side};

    /// What the fake transport does at its next open.
    enum Step {
        /// Opening fails.
        OpenFails,
        /// Opens; the session marks progress if told to, stays up `lasts`, and ends so.
        Session { progress: bool, lasts: Duration, end: Result<Ended, SideError> },
        /// Opens; the session runs until the pair stops.
        Hold,
    }

    /// A transport that follows a script, noting when it was asked to open.
    struct Fake {
        shape: Shape,
        connectionless: bool,
        script: Arc<Mutex<VecDeque<Step>>>,
        opens: Arc<Mutex<Vec<Instant>>>,
    }

    impl Fake {
        fn new(shape: Shape, connectionless: bool, script: Vec<Step>) -> Self {
            Fake {
                shape,
                connectionless,
                script: Arc::new(Mutex::new(script.into())),
                opens: Arc::default(),
            }
        }

        /// The waits between consecutive opens, in milliseconds.
        fn gaps(opens: &Mutex<Vec<Instant>>) -> Vec<u128> {
            let opens = opens.lock().expect("lock");
            opens.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
        }
    }

    impl Opener for Fake {
        type Io = Step;

        fn shape(&self) -> Shape {
            self.shape
        }

        fn opening(&self) -> Option<String> {
            Some("connecting to fake".into())
        }

        fn waiting(&self) -> String {
            "waiting for fakes".into()
        }

        fn connectionless(&self) -> bool {
            self.connectionless
        }

        async fn open(&mut self) -> Result<Opened<Step>, SideError> {
            self.opens.lock().expect("lock").push(Instant::now());
            let next = self.script.lock().expect("lock").pop_front();
            match next {
                None => std::future::pending().await,
                Some(Step::OpenFails) => {
                    Err(SideError::Peer("cannot connect to fake: refused".into()))
                }
                Some(step) => Ok(Opened::new(step, "fake".into(), "connected to fake".into())),
            }
        }
    }

    struct FakeSession;

    impl Session<Step> for FakeSession {
        fn about(&self, peer: &str) -> String {
            format!("delivery to {peer}")
        }

        async fn run(
            &self,
            ctx: &SideCtx,
            io: Step,
            _peer: &Arc<str>,
            progress: &Progress,
        ) -> Result<Ended, SideError> {
            match io {
                Step::Session { progress: moved, lasts, end } => {
                    if moved {
                        progress.made();
                    }
                    tokio::time::sleep(lasts).await;
                    end
                }
                Step::Hold => {
                    ctx.cancel.cancelled().await;
                    Ok(Ended::Cancelled)
                }
                Step::OpenFails => unreachable!("never opened"),
            }
        }
    }

    fn ctx(dir: &std::path::Path) -> SideCtx {
        SideCtx {
            pair: "p".into(),
            log: iobp_log::Log::open(dir, iobp_log::LogOptions::default()).expect("log"),
            stats: Arc::default(),
            feed: Arc::default(),
            cancel: CancellationToken::new(),
            retry: BackoffSpec { initial_ms: 100, max_ms: 800, jitter_percent: 0 },
            relay_hub: Arc::default(),
            parked: None,
            trace: crate::trace::Tracer::start(dir.join("trace")).pair("p", 1, 1 << 30),
            route: None,
        }
    }

    /// Runs `fake` until its script is used up (it then waits at its next open), then stops.
    async fn run_script(ctx: &SideCtx, side: Side, fake: Fake) -> Arc<Mutex<Vec<Instant>>> {
        let (opens, script) = (fake.opens.clone(), fake.script.clone());
        let task = tokio::spawn(super::run(ctx.clone(), side, fake, FakeSession));
        while !script.lock().expect("lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        ctx.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops promptly")
            .expect("no panic");
        opens
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_starts_over_only_after_a_session_moved_messages_or_stayed_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let closed =
            |progress, lasts| Step::Session { progress, lasts, end: Ok(Ended::PeerClosed) };
        let script = vec![
            Step::OpenFails,
            Step::OpenFails,
            Step::OpenFails,
            // Opened and closed at once, nothing moved (a peer refusing every message).
            closed(false, Duration::ZERO),
            Step::OpenFails,
            // Messages moved.
            closed(true, Duration::ZERO),
            Step::OpenFails,
            // Up for 10 s, idle: a working connection.
            closed(false, Duration::from_secs(10)),
            Step::OpenFails,
        ];
        let opens =
            run_script(&ctx, Side::Destination, Fake::new(Shape::Dial, false, script)).await;
        // Doubling to the cap (800) through the connection that proved nothing, from the start
        // after the one that moved messages and after the one that stayed up.
        assert_eq!(Fake::gaps(&opens), vec![100, 200, 400, 800, 800, 100, 200, 10_100, 200]);
        // Opening again (the script's end): Yellow, nothing connected.
        let s = ctx.stats.side_snapshots().1;
        assert_eq!((s.color, s.detail.as_str()), (Color::Yellow, "connecting to fake"));
        assert_eq!(s.connections, 0, "the closed connection is no longer counted");
        assert_eq!(ctx.stats.errors.load(std::sync::atomic::Ordering::Relaxed), 9);
        let last = ctx.stats.last_error().map(|e| e.2);
        assert_eq!(last.as_deref(), Some("cannot connect to fake: refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connectionless_backoff_starts_over_only_after_progress() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let failed = |progress| Step::Session {
            progress,
            lasts: Duration::ZERO,
            end: Err(SideError::Peer("send: refused".into())),
        };
        let script = vec![failed(false), failed(false), failed(false), failed(true), failed(false)];
        let opens = run_script(&ctx, Side::Destination, Fake::new(Shape::Dial, true, script)).await;
        assert_eq!(Fake::gaps(&opens), vec![100, 200, 400, 100, 200]);
        let last = ctx.stats.last_error().map(|e| e.2);
        assert_eq!(last.as_deref(), Some("delivery to fake: send: refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_shows_green_and_counts_its_peer_while_it_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let fake = Fake::new(Shape::Dial, false, vec![Step::Hold]);
        let task = tokio::spawn(super::run(ctx.clone(), Side::Source, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let s = ctx.stats.side_snapshots().0;
        assert_eq!((s.color, s.detail.as_str()), (Color::Green, "connected to fake"));
        assert_eq!((s.connections, s.peers), (1, vec!["fake".to_string()]));
        ctx.cancel.cancel();
        task.await.expect("stops");
        assert_eq!(ctx.stats.side_snapshots().0.connections, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_interrupts_an_open_and_a_backoff_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        // Stuck opening (a connect that never completes).
        let ctx = ctx(dir.path());
        let fake = Fake::new(Shape::Dial, false, Vec::new());
        let task = tokio::spawn(super::run(ctx.clone(), Side::Source, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let asked = Instant::now();
        ctx.cancel.cancel();
        task.await.expect("stops");
        assert!(asked.elapsed() < Duration::from_millis(1));
        // Waiting a long backoff after a failure.
        let ctx = SideCtx {
            cancel: CancellationToken::new(),
            retry: BackoffSpec { initial_ms: 60_000, max_ms: 60_000, jitter_percent: 0 },
            ..ctx
        };
        let fake = Fake::new(Shape::Dial, false, vec![Step::OpenFails]);
        let task = tokio::spawn(super::run(ctx.clone(), Side::Source, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(ctx.stats.side_snapshots().0.color, Color::Red);
        let asked = Instant::now();
        ctx.cancel.cancel();
        task.await.expect("stops");
        assert!(asked.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_side_refuses_and_counts_connections_over_its_limit() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let fake = Fake::new(Shape::Concurrent { limit: Some(2) }, false, {
            vec![Step::Hold, Step::Hold, Step::Hold]
        });
        let task = tokio::spawn(super::run(ctx.clone(), Side::Source, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let s = ctx.stats.side_snapshots().0;
        assert_eq!((s.color, s.connections), (Color::Green, 2));
        assert_eq!(ctx.stats.connections_refused.load(std::sync::atomic::Ordering::Relaxed), 1);
        let last = ctx.stats.last_error().map(|e| e.2);
        assert_eq!(
            last.as_deref(),
            Some("refused connection from fake: limit of 2 connections reached")
        );
        ctx.cancel.cancel();
        task.await.expect("stops");
        assert_eq!(ctx.stats.side_snapshots().0.connections, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_connection_takes_over_and_a_destination_waits_yellow_without_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let fake = Fake::new(Shape::Newest, false, vec![Step::Hold, Step::Hold]);
        let opens = fake.opens.clone();
        let task = tokio::spawn(super::run(ctx.clone(), Side::Destination, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Both opened at once: the second replaced the first, and a third open is waiting.
        assert_eq!(opens.lock().expect("lock").len(), 3);
        let s = ctx.stats.side_snapshots().1;
        assert_eq!((s.color, s.connections), (Color::Green, 1));
        ctx.cancel.cancel();
        task.await.expect("stops");
        let fake = Fake::new(Shape::Newest, false, Vec::new());
        let ctx = SideCtx { cancel: CancellationToken::new(), ..ctx };
        let task = tokio::spawn(super::run(ctx.clone(), Side::Destination, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let s = ctx.stats.side_snapshots().1;
        assert_eq!((s.color, s.detail.as_str()), (Color::Yellow, "waiting for fakes"));
        ctx.cancel.cancel();
        task.await.expect("stops");
    }

    fn last_error(ctx: &SideCtx) -> Option<String> {
        ctx.stats.last_error().map(|e| e.2)
    }

    fn read_error() -> iobp_log::Error {
        iobp_log::Error::Io {
            op: "read",
            path: "/data/p/00000001.seg".into(),
            source: std::io::Error::other("Input/output error"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_fault_names_the_peer_and_a_buffer_fault_does_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let fake = Fake::new(Shape::Dial, false, {
            let end = |e| Step::Session { progress: false, lasts: Duration::ZERO, end: Err(e) };
            vec![
                end(SideError::Peer("connection lost: reset".into())),
                end(SideError::Buffer { doing: "reading the buffer", source: read_error() }),
            ]
        });
        let (opens, script) = (fake.opens.clone(), fake.script.clone());
        let task = tokio::spawn(super::run(ctx.clone(), Side::Destination, fake, FakeSession));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(last_error(&ctx).as_deref(), Some("delivery to fake: connection lost: reset"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(script.lock().expect("lock").is_empty());
        // A read error the buffer survives is the buffer's, and is retried like any other.
        let why = "reading the buffer: read /data/p/00000001.seg: Input/output error";
        assert_eq!(last_error(&ctx).as_deref(), Some(why));
        assert_eq!(ctx.stats.side_snapshots().1.color, Color::Red);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(opens.lock().expect("lock").len(), 3, "opened again after the backoff");
        ctx.cancel.cancel();
        task.await.expect("stops");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_buffer_is_shown_and_waited_for_never_retried_as_a_peer_fault() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let closed = SideError::Buffer { doing: "buffer failed", source: iobp_log::Error::Closed };
        let script =
            vec![Step::Session { progress: false, lasts: Duration::ZERO, end: Err(closed) }];
        let fake = Fake::new(Shape::Dial, false, script);
        let opens = fake.opens.clone();
        let task = tokio::spawn(super::run(ctx.clone(), Side::Source, fake, FakeSession));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let s = ctx.stats.side_snapshots().0;
        assert_eq!((s.color, s.detail.as_str()), (Color::Red, "buffer failed: log is closed"));
        assert_eq!(last_error(&ctx).as_deref(), Some("buffer failed: log is closed"));
        assert_eq!(ctx.stats.errors.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The engine reopens the buffer and starts the side again; nothing reconnects meanwhile.
        assert_eq!(opens.lock().expect("lock").len(), 1);
        ctx.cancel.cancel();
        tokio::time::timeout(Duration::from_millis(1), task)
            .await
            .expect("the stop ends the wait at once")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn settings_that_cannot_work_are_reported_once_and_not_retried() {
        /// Opens nothing: the side's settings cannot work.
        struct Unusable(Arc<Mutex<u32>>);
        impl Opener for Unusable {
            type Io = Step;
            fn shape(&self) -> Shape {
                Shape::Dial
            }
            async fn open(&mut self) -> Result<Opened<Step>, SideError> {
                *self.0.lock().expect("lock") += 1;
                Err(SideError::Config("`ftp://x` must start with http:// or https://".into()))
            }
        }

        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let tries = Arc::new(Mutex::new(0));
        let task = tokio::spawn(super::run(
            ctx.clone(),
            Side::Destination,
            Unusable(tries.clone()),
            FakeSession,
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(*tries.lock().expect("lock"), 1);
        let s = ctx.stats.side_snapshots().1;
        assert_eq!(s.color, Color::Red);
        assert!(s.detail.contains("must start with http://"), "{s:?}");
        ctx.cancel.cancel();
        task.await.expect("stops");
    }

    #[tokio::test(start_paused = true)]
    async fn a_listening_side_takes_no_connection_while_its_buffer_is_failed() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let closed =
            SideError::Buffer { doing: "buffer unavailable", source: iobp_log::Error::Closed };
        let script =
            vec![Step::Session { progress: false, lasts: Duration::ZERO, end: Err(closed) }];
        let fake = Fake::new(Shape::Concurrent { limit: None }, false, script);
        let opens = fake.opens.clone();
        let task = tokio::spawn(super::run(ctx.clone(), Side::Source, fake, FakeSession));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let s = ctx.stats.side_snapshots().0;
        assert_eq!((s.color, s.detail.as_str()), (Color::Red, "buffer unavailable: log is closed"));
        assert_eq!(s.connections, 0);
        // The one connection, and the accept that was waiting beside it; no accept after.
        assert_eq!(opens.lock().expect("lock").len(), 2);
        ctx.cancel.cancel();
        task.await.expect("stops");
    }
}

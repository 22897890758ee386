//! Server-sent events: everything the portals show live, on one stream per page (browsers
//! allow only a few connections per origin). Events:
//! - `pairs` every second: every pair's status (the overview, counters, charts);
//! - `health` every two seconds, when `health=true`;
//! - `message` for each message of `pair` as it is received or delivered (at most 100 a
//!   second per stream; beyond that a `skipped` event says how many were left out).
//!
//! A user holds at most [`crate::PortalLimits::streams_per_user`] streams and the process
//! [`crate::PortalLimits::streams`]; past them the answer is 429. A stream's slot is freed
//! when the stream is dropped: when the client closes the connection (noticed at the next
//! event, within a second) or it is closed for idleness.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use iobp_engine::FeedEntry;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::responses::{Malformed, Session};
use super::system::HealthDto;
use super::{ApiQuery, FeedEntryDto, PairStatusDto, pair_id};
use crate::WebState;
use crate::auth::{Auth, Viewer};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::limits::{StreamPermit, StreamRefusal};

/// Most `message` events per second per stream.
const MESSAGES_PER_SECOND: u32 = 100;
/// Retry-After of a refused stream: about when a stream closed meanwhile is noticed.
const RETRY_STREAM_AFTER_S: u64 = 5;

/// What to stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Also stream this pair's messages (`message` events).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pair: Option<String>,
    /// Also stream the System Health Overview (`health` events).
    health: Option<bool>,
}

/// One pair in a `pairs` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairEventDto {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Configured to run.
    pub enabled: bool,
    /// Live status.
    pub status: PairStatusDto,
}

/// One event of the stream, as OpenAPI 3.2 describes server-sent events (`itemSchema`): its
/// `event` name, and its `data`, JSON whose schema depends on the name.
pub(crate) enum StreamEvent {}

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        fn event(name: &str, description: &str, data: impl Into<RefOr<Schema>>) -> Object {
            ObjectBuilder::new()
                .description(Some(description))
                .property(
                    "event",
                    ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name])),
                )
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        .content_schema(Some(data)),
                )
                .required("event")
                .required("data")
                .build()
        }
        let skipped = ObjectBuilder::new()
            .property("messages", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
            .required("messages");
        OneOfBuilder::new()
            .description(Some("One server-sent event: its name (`event`) and its JSON (`data`)"))
            .item(event(
                "pairs",
                "Every second: every pair's status",
                ArrayBuilder::new().items(Ref::from_schema_name(PairEventDto::name())),
            ))
            .item(event(
                "health",
                "Every two seconds with `health=true`: the System Health Overview",
                Ref::from_schema_name(HealthDto::name()),
            ))
            .item(event(
                "message",
                "With `pair`: a message of that pair as it is received or delivered",
                Ref::from_schema_name(FeedEntryDto::name()),
            ))
            .item(event("skipped", "Messages left out beyond 100 a second", skipped))
            .into()
    }
}

impl ToSchema for StreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((PairEventDto::name().into(), PairEventDto::schema()));
        <PairEventDto as ToSchema>::schemas(schemas);
        schemas.push((HealthDto::name().into(), HealthDto::schema()));
        <HealthDto as ToSchema>::schemas(schemas);
        schemas.push((FeedEntryDto::name().into(), FeedEntryDto::schema()));
        <FeedEntryDto as ToSchema>::schemas(schemas);
    }
}

struct EventState {
    s: WebState,
    /// Held while the stream lives.
    _slot: StreamPermit,
    pairs_tick: tokio::time::Interval,
    health_tick: Option<tokio::time::Interval>,
    feed: Option<broadcast::Receiver<FeedEntry>>,
    window_start: Instant,
    sent_in_window: u32,
    skipped: u64,
}

fn json_event(name: &str, v: &impl Serialize) -> Event {
    Event::default().event(name).data(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

async fn maybe_tick(t: Option<&mut tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn maybe_recv(
    r: Option<&mut broadcast::Receiver<FeedEntry>>,
) -> Result<FeedEntry, broadcast::error::RecvError> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn next_event(st: &mut EventState, e: &FeedEntry) -> Option<Event> {
    if st.window_start.elapsed() >= Duration::from_secs(1) {
        st.window_start = Instant::now();
        st.sent_in_window = 0;
        if st.skipped > 0 {
            let n = std::mem::take(&mut st.skipped);
            return Some(json_event("skipped", &serde_json::json!({ "messages": n })));
        }
    }
    if st.sent_in_window >= MESSAGES_PER_SECOND {
        st.skipped += 1;
        return None;
    }
    st.sent_in_window += 1;
    Some(json_event("message", &FeedEntryDto::from(e)))
}

fn stream_of(st: EventState) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(st, |mut st| async move {
        loop {
            tokio::select! {
                _ = st.pairs_tick.tick() => {
                    let v: Vec<PairEventDto> = st.s.engine.snapshots().iter().map(|p| PairEventDto {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        enabled: p.enabled,
                        status: PairStatusDto::from(p),
                    }).collect();
                    return Some((Ok(json_event("pairs", &v)), st));
                }
                () = maybe_tick(st.health_tick.as_mut()) => {
                    let h = super::system::health_dto(&st.s);
                    return Some((Ok(json_event("health", &h)), st));
                }
                r = maybe_recv(st.feed.as_mut()) => match r {
                    Ok(e) => {
                        if let Some(ev) = next_event(&mut st, &e) {
                            return Some((Ok(ev), st));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => st.skipped += n,
                    // The pair was deleted.
                    Err(broadcast::error::RecvError::Closed) => st.feed = None,
                },
            }
        }
    })
}

/// The live event stream (`text/event-stream`).
#[utoipa::path(get, path = "/api/v1/events", tag = "pairs", params(EventsQuery),
    responses(
        Session, Malformed,
        (status = 200, description = "Server-sent events: `pairs`, `health`, `message`, `skipped`",
            content(("text/event-stream", item_schema = StreamEvent))),
        (status = 404, description = "No pair with the id given in `pair`", body = ErrorBody),
        (status = 429, description = "The user already has the most live event streams allowed (8), or the server does (256); see Retry-After", body = ErrorBody),
    ))]
pub(crate) async fn events(
    State(s): State<WebState>,
    auth: Auth<Viewer>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let feed = match &q.pair {
        Some(id) => {
            let feed = s
                .engine
                .subscribe(pair_id(id)?)
                .ok_or_else(|| ApiError::not_found(format!("no channel pair with id `{id}`")))?;
            Some(feed)
        }
        None => None,
    };
    let mut pairs_tick = tokio::time::interval(Duration::from_secs(1));
    pairs_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let health_tick = q.health.unwrap_or(false).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs(2));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let slot = s.streams.open(auth.user()).map_err(|e| {
        if matches!(e, StreamRefusal::Process(_)) {
            tracing::warn!("live event stream refused: {e}");
        }
        ApiError::too_many_requests(e.to_string(), RETRY_STREAM_AFTER_S)
    })?;
    let st = EventState {
        s,
        _slot: slot,
        pairs_tick,
        health_tick,
        feed,
        window_start: Instant::now(),
        sent_in_window: 0,
        skipped: 0,
    };
    Ok(Sse::new(stream_of(st)).keep_alive(KeepAlive::default()))
}

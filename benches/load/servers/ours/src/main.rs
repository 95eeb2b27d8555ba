//! The load-test server for tower-sse: hyper 1, one `service_fn`, the whole
//! `SseLayer` (close detection, headers, no-buffering, keep-alive every
//! 15 s; CORS is off until given origins). Endpoints are described in
//! `benches/load/README.md`. With `LOAD_HUB=1`, `/sse/live` and `/publish`
//! go through tower-sse's own hub (topic `live`, history of
//! `LOAD_HUB_HISTORY` events, else the library's default) instead of the
//! shared broadcast channel, and `/sse/live` resumes from `Last-Event-ID`.
//! With `LOAD_HUB_REDIS=URL` too, the hub keeps its topic in Redis Streams
//! (every instance on that Redis serves the same topic), and
//! `/publish?count=K&inflight=M` keeps up to M publishes in flight.
//!
//! With `LOAD_HUB_SET=N` (2 to 64) too, `/sse/live` subscribes with
//! `Hub::subscribe_set` to a set of N topics: `live`, which `/publish`
//! publishes to, and `live-1` to `live-{N-1}`, shared by every subscriber
//! and quiet unless `/publish?count=K&spread=1` publishes K events to each
//! topic of the set (one to each in turn, K times).
//!
//! Routes for many topics (the hub only): `GET /sse/topic?name=NAME`
//! subscribes to the topic NAME; `GET /sse/topics?from=A&count=N`
//! subscribes with one set to the topics `tA` to `t{A+N-1}`;
//! `POST /publish?count=K&topic=NAME` publishes to NAME and answers its
//! subscriber count; `POST /publish?count=K&topics=N` publishes K events
//! round-robin over `t0` to `t{N-1}` and answers their subscriber counts
//! summed (`count=0`: only counts). `LOAD_HUB_MAX_TOPICS` sets the hub's
//! `max_topics`.
//!
//! Runs (any configuration; their hub, the library's defaults, is made on
//! the first): `POST /runs?tokens=N&rate=R&bytes=B` starts a run whose
//! producer task sends N token events of B bytes of data, R a second (the
//! first at once), then finishes it, and answers with the run followed from
//! its first event; `POST /runs/retained?runs=K&events=E&bytes=S` starts K
//! runs, sends E events of S bytes to each and finishes them, nobody
//! following, and answers with their encoded size in bytes, all together
//! (the hub keeps them for its run retention, 10 minutes).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use load_common::{
    announce, query_str, query_u64, route, token_data, Hub, Route, RunRequest, PAYLOAD,
    RUN_END_DATA, RUN_END_EVENT,
};
use tower::ServiceBuilder;
use tower_sse::{
    hub::{HubError, RunEnd, TopicSet},
    EncodedEvent, Event, EventStream, LastEventId, ServiceBuilderExt,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(load_common::ADDR).await?;
    announce(listener.local_addr()?.port());
    let set = live_set();
    let hubs = Arc::new(Hubs {
        broadcast: Hub::new(),
        ours: ours_hub(set.as_ref().map_or(1, TopicSet::len)),
        set,
        runs: std::sync::OnceLock::new(),
    });
    let service = ServiceBuilder::new()
        .sse()
        .service_fn(move |request| handle(request, hubs.clone()));
    let nodelay = load_common::nodelay_asked();
    loop {
        let (socket, _) = listener.accept().await?;
        if nodelay {
            let _ = socket.set_nodelay(true);
        }
        let mut builder = http1::Builder::new();
        if let Some(max) = max_buf_size() {
            builder.max_buf_size(max);
        }
        let connection = builder.serve_connection(
            TokioIo::new(socket),
            TowerToHyperService::new(service.clone()),
        );
        tokio::spawn(connection);
    }
}

/// The broadcast channel every server shares, and tower-sse's hub when
/// `LOAD_HUB=1`.
struct Hubs {
    broadcast: Hub<EncodedEvent>,
    ours: Option<tower_sse::hub::Hub>,
    /// The set `/sse/live` subscribes to when `LOAD_HUB_SET=N`.
    set: Option<TopicSet>,
    /// The hub of `/runs`, made on the first (so that the other
    /// measurements do not carry it).
    runs: std::sync::OnceLock<tower_sse::hub::Hub>,
}

impl Hubs {
    fn runs(&self) -> &tower_sse::hub::Hub {
        self.runs.get_or_init(tower_sse::hub::Hub::new)
    }
}

/// `live` and `live-1` to `live-{N-1}` when `LOAD_HUB_SET=N` (N from 2).
fn live_set() -> Option<TopicSet> {
    let n: usize = std::env::var("LOAD_HUB_SET").ok()?.parse().ok()?;
    if n < 2 {
        return None;
    }
    let names = std::iter::once("live".to_owned()).chain((1..n).map(|k| format!("live-{k}")));
    match TopicSet::new(names) {
        Ok(set) => Some(set),
        Err(error) => {
            eprintln!("LOAD_HUB_SET={n}: {error}");
            std::process::exit(2);
        }
    }
}

fn ours_hub(set_len: usize) -> Option<tower_sse::hub::Hub> {
    if std::env::var("LOAD_HUB").ok()? != "1" {
        return None;
    }
    let history = std::env::var("LOAD_HUB_HISTORY")
        .ok()
        .and_then(|history| history.parse().ok())
        .unwrap_or(1000); // the hub's default history
    let mut builder = tower_sse::hub::Hub::builder()
        .history(history)
        // The `/sse/topics` sets hold 64 topics; a larger live set is
        // refused by the library (at most 256).
        .max_topics_per_subscription(set_len.max(64));
    if let Some(max) = std::env::var("LOAD_HUB_MAX_TOPICS")
        .ok()
        .and_then(|max| max.parse().ok())
    {
        builder = builder.max_topics(max);
    }
    if let Ok(url) = std::env::var("LOAD_HUB_REDIS") {
        builder = builder.redis(url);
    }
    match builder.build() {
        Ok(hub) => Some(hub),
        Err(error) => {
            eprintln!("the hub: {error}");
            std::process::exit(2);
        }
    }
}

async fn handle(request: Request<Incoming>, hubs: Arc<Hubs>) -> Result<Response<Body>, Infallible> {
    let uri = request.uri();
    match (request.method().as_str(), uri.path()) {
        ("POST", "/runs") => {
            return Ok(match RunRequest::from_query(uri.query()) {
                Ok(asked) => Box::pin(start_run(hubs.runs(), asked)).await,
                Err(text) => self::text(StatusCode::BAD_REQUEST, text.into()),
            });
        }
        ("POST", "/runs/retained") => {
            return Ok(Box::pin(retain_runs(hubs.runs(), uri.query())).await);
        }
        _ => {}
    }
    if let Some(hub) = &hubs.ours {
        // The many-topics routes, the hub's only.
        match (request.method().as_str(), uri.path()) {
            ("GET", "/sse/topic") => {
                return Ok(match query_str(uri.query(), "name") {
                    Some(name) => Box::pin(hub_topic(hub, name, &request)).await,
                    None => text(StatusCode::BAD_REQUEST, "name must be a topic\n".into()),
                });
            }
            ("GET", "/sse/topics") => {
                let from = query_u64(uri.query(), "from").unwrap_or(0);
                let count = query_u64(uri.query(), "count").unwrap_or(0);
                let set = TopicSet::new((from..from.saturating_add(count)).map(numbered));
                return Ok(match set {
                    Ok(set) => Box::pin(hub_set(hub, &set, &request)).await,
                    Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
                });
            }
            _ => {}
        }
    }
    Ok(
        match route(request.method().as_str(), uri.path(), uri.query()) {
            Route::Burst { n } => burst(n),
            // The hub's futures are boxed, as axum boxes each route's: hyper
            // keeps this function's future for the connection's life, and
            // the other routes should not carry the hub's awaits in it.
            Route::Live => match (&hubs.ours, &hubs.set) {
                (Some(hub), Some(set)) => Box::pin(hub_set(hub, set, &request)).await,
                (Some(hub), None) => Box::pin(hub_live(hub, &request)).await,
                (None, _) => live(&hubs.broadcast),
            },
            Route::Publish { count } => match &hubs.ours {
                Some(hub) => {
                    let query = uri.query();
                    let inflight = query_u64(query, "inflight").unwrap_or(1).max(1) as usize;
                    let targets = if let Some(name) = query_str(query, "topic") {
                        Targets::One(name.to_owned())
                    } else if let Some(n) = query_u64(query, "topics").filter(|n| *n > 0) {
                        Targets::RoundRobin(n)
                    } else if let (Some(set), Some(1)) = (&hubs.set, query_u64(query, "spread")) {
                        Targets::Spread(set.iter().map(str::to_owned).collect())
                    } else {
                        Targets::Live
                    };
                    Box::pin(hub_publish(hub, count, inflight, targets)).await
                }
                None => publish(&hubs.broadcast, count),
            },
            Route::BadRequest(text) => self::text(StatusCode::BAD_REQUEST, text.into()),
            Route::NotFound => text(StatusCode::NOT_FOUND, "not found\n".into()),
        },
    )
}

/// `n` events with ids 1..=n, as fast as the client reads.
fn burst(n: u64) -> Response<Body> {
    let events = stream::iter(1..=n).map(|id| {
        Event::new()
            .id(itoa::Buffer::new().format(id))
            .map(|event| event.data(PAYLOAD))
    });
    EventStream::new(events)
        .max_frame_size(frame_cap())
        .max_unwritten(max_unwritten())
        .into_http_response()
        .map(|body| body.map_err(BoxError::from).boxed_unsync())
}

/// hyper's write buffer limit when `LOAD_MAX_BUF` (bytes, at least 8192)
/// is set: how much a connection holds for a client that does not read.
fn max_buf_size() -> Option<usize> {
    std::env::var("LOAD_MAX_BUF")
        .ok()
        .and_then(|max| max.parse().ok())
        .filter(|max| *max >= 8192)
}

/// The frame cap of burst streams: `LOAD_FRAME_CAP` (bytes) when the
/// harness sets it, else the library's default.
fn frame_cap() -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // 16 KiB: EventStream's default frame cap.
    *CAP.get_or_init(|| env_bytes("LOAD_FRAME_CAP", 16 * 1024))
}

/// How many bytes of a burst stream's frames the server may hold unwritten
/// (`EventStream::max_unwritten`): `LOAD_MAX_UNWRITTEN` (bytes) when set,
/// else no bound, the library's default.
fn max_unwritten() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| env_bytes("LOAD_MAX_UNWRITTEN", usize::MAX))
}

/// A byte count from the environment variable `name`, else `default`.
fn env_bytes(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(default)
}

/// Every event published from now on; each is encoded once and shared.
fn live(hub: &Hub<EncodedEvent>) -> Response<Body> {
    EventStream::new(hub.subscribe().map(Ok::<_, BoxError>))
        .into_http_response()
        .map(|body| body.boxed_unsync())
}

/// Publishes `count` events, each carrying its send time, encoded once;
/// answers with the number of subscribers.
fn publish(hub: &Hub<EncodedEvent>, count: u64) -> Response<Body> {
    let subscribers = hub.publish(count, |id, sent| {
        Event::new()
            .id(itoa::Buffer::new().format(id))
            .unwrap_or_default()
            .data(itoa::Buffer::new().format(sent))
            .encode()
    });
    text(StatusCode::OK, format!("{subscribers}\n"))
}

/// The hub's topic `live`, resumed after `Last-Event-ID` when there is one.
async fn hub_live(hub: &tower_sse::hub::Hub, request: &Request<Incoming>) -> Response<Body> {
    let last = LastEventId::from_request(request);
    match hub
        .subscribe("live", last.as_ref().map(LastEventId::as_str))
        .await
    {
        Ok(subscription) => subscription
            .into_http_response()
            .map(|body| body.map_err(|never| match never {}).boxed_unsync()),
        Err(error) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

/// The topic `name`, resumed after `Last-Event-ID` when there is one.
async fn hub_topic(
    hub: &tower_sse::hub::Hub,
    name: &str,
    request: &Request<Incoming>,
) -> Response<Body> {
    match hub.subscribe_from_headers(name, request.headers()).await {
        Ok(subscription) => subscription
            .into_http_response()
            .map(|body| body.map_err(|never| match never {}).boxed_unsync()),
        Err(error) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

/// One stream for every topic of `set`, resumed after `Last-Event-ID`;
/// no client key, so no per-client bound.
async fn hub_set(
    hub: &tower_sse::hub::Hub,
    set: &TopicSet,
    request: &Request<Incoming>,
) -> Response<Body> {
    match hub.subscribe_set(set, None, request.headers()).await {
        Ok(subscription) => subscription
            .into_http_response()
            .map(|body| body.map_err(|never| match never {}).boxed_unsync()),
        Err(error) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

/// The topic `t{n}` of the many-topics routes.
fn numbered(n: u64) -> String {
    format!("t{n}")
}

/// Where `/publish` publishes.
enum Targets {
    /// `live` (the default).
    Live,
    /// `topic=NAME`: that topic.
    One(String),
    /// `topics=N`: `t0` to `t{N-1}`, round-robin.
    RoundRobin(u64),
    /// `spread=1` with `LOAD_HUB_SET`: each topic of the set in turn, the
    /// count for each.
    Spread(Vec<String>),
}

impl Targets {
    /// How many publishes `count` makes.
    fn publishes(&self, count: u64) -> u64 {
        match self {
            Targets::Spread(names) => count * names.len() as u64,
            _ => count,
        }
    }

    /// The topic of the `i`-th publish.
    fn topic(&self, i: u64) -> std::borrow::Cow<'_, str> {
        match self {
            Targets::Live => "live".into(),
            Targets::One(name) => name.as_str().into(),
            Targets::RoundRobin(n) => numbered(i % n).into(),
            Targets::Spread(names) => names[(i % names.len() as u64) as usize].as_str().into(),
        }
    }

    /// The subscriber count `/publish` answers: of the topic, of `live` for
    /// a set, summed over `t0` to `t{N-1}` for `topics=N`.
    fn subscribers(&self, hub: &tower_sse::hub::Hub) -> usize {
        let of = |topic: &str| hub.topic_stats(topic).map_or(0, |stats| stats.subscribers);
        match self {
            Targets::Live | Targets::Spread(_) => of("live"),
            Targets::One(name) => of(name),
            Targets::RoundRobin(n) => (0..*n).map(|i| of(&numbered(i))).sum(),
        }
    }
}

/// Publishes `count` events to `targets` (the hub's topic `live` unless
/// the query names others), each carrying its send time, with up to
/// `inflight` publishes waiting for the backend at once (started in
/// order); answers with the subscriber count.
async fn hub_publish(
    hub: &tower_sse::hub::Hub,
    count: u64,
    inflight: usize,
    targets: Targets,
) -> Response<Body> {
    let targets = &targets;
    let published = stream::iter(0..targets.publishes(count))
        .map(|i| async move {
            let event = Event::new().data(itoa::Buffer::new().format(load_common::now_ns()));
            hub.publish(&targets.topic(i), event).await
        })
        .buffered(inflight)
        .filter_map(|result| std::future::ready(result.err()))
        .next()
        .await;
    if let Some(error) = published {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"));
    }
    let subscribers = targets.subscribers(hub);
    text(StatusCode::OK, format!("{subscribers}\n"))
}

/// Starts a run whose producer task sends `asked.tokens` token events, the
/// first at once and then one every period, then finishes it; answers with
/// the run followed from its first event, its id in `X-Run-Id` (the shape
/// of `docs/runs.md`).
async fn start_run(hub: &tower_sse::hub::Hub, asked: RunRequest) -> Response<Body> {
    let run = match hub.start_run().await {
        Ok(run) => run,
        Err(error) => return hub_error(error),
    };
    let id = run.id().to_owned();
    // Followed before the producer starts: from the run's first event.
    let follow = hub
        .follow_run(&id, &http::HeaderMap::new(), &http::Uri::default())
        .await;
    tokio::spawn(async move {
        // The first token at once, not on a timer's first tick (tokio's
        // timers round up to the next millisecond).
        let period = asked.period();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        for n in 1..=asked.tokens {
            if n > 1 {
                ticks.tick().await;
            }
            if run
                .send(Event::new().data(token_data(n, asked.bytes)))
                .await
                .is_err()
            {
                // Dropped unfinished: the run ends as failed.
                return;
            }
        }
        let _ = run.finish(RunEnd::completed()).await;
    });
    match follow {
        Ok(subscription) => {
            let mut response = subscription
                .into_http_response()
                .map(|body| body.map_err(|never| match never {}).boxed_unsync());
            if let Ok(value) = http::HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-run-id", value);
            }
            response
        }
        Err(error) => hub_error(error),
    }
}

/// Starts `runs` runs, sends `events` token events of `bytes` bytes of
/// data to each and finishes them, nobody following; answers with their
/// encoded size in bytes, all together (each event as the library encodes
/// it, with the id the hub gave it).
async fn retain_runs(hub: &tower_sse::hub::Hub, query: Option<&str>) -> Response<Body> {
    let (Some(runs), Some(events), Some(bytes)) = (
        query_u64(query, "runs"),
        query_u64(query, "events"),
        query_u64(query, "bytes").filter(|bytes| (1..=64 * 1024).contains(bytes)),
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "runs, events and bytes (1 to 65536) must be counts\n".into(),
        );
    };
    let encoded_len = |id: &dyn std::fmt::Display, event: Option<&str>, data: &str| {
        let mut encoded = Event::new().id(id.to_string()).map(|e| e.data(data));
        if let Some(event) = event {
            encoded = encoded.and_then(|e| e.event(event));
        }
        encoded.map_or(0, |e| e.encode().as_bytes().len() as u64)
    };
    let mut encoded = 0;
    for _ in 0..runs {
        let run = match hub.start_run().await {
            Ok(run) => run,
            Err(error) => return hub_error(error),
        };
        for n in 1..=events {
            let data = token_data(n, bytes as usize);
            match run.send(Event::new().data(&data)).await {
                Ok(id) => encoded += encoded_len(&id, None, &data),
                Err(error) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
            }
        }
        match run.finish(RunEnd::completed()).await {
            Ok(id) => encoded += encoded_len(&id, Some(RUN_END_EVENT), RUN_END_DATA),
            Err(error) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
        }
    }
    text(StatusCode::OK, format!("{encoded}\n"))
}

/// The hub's own answer to an error (`429` for too many runs, `404` for
/// no such run, ...).
fn hub_error(error: HubError) -> Response<Body> {
    error.into_http_response().map(|body| {
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync()
    })
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

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

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use load_common::{announce, route, Hub, Route, PAYLOAD};
use tower::ServiceBuilder;
use tower_sse::{EncodedEvent, Event, EventStream, LastEventId, ServiceBuilderExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(load_common::ADDR).await?;
    announce(listener.local_addr()?.port());
    let hubs = Arc::new(Hubs {
        broadcast: Hub::new(),
        ours: ours_hub(),
    });
    let service = ServiceBuilder::new()
        .sse()
        .service_fn(move |request| handle(request, hubs.clone()));
    loop {
        let (socket, _) = listener.accept().await?;
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
}

fn ours_hub() -> Option<tower_sse::hub::Hub> {
    if std::env::var("LOAD_HUB").ok()? != "1" {
        return None;
    }
    let history = std::env::var("LOAD_HUB_HISTORY")
        .ok()
        .and_then(|history| history.parse().ok())
        .unwrap_or(1000); // the hub's default history
    let mut builder = tower_sse::hub::Hub::builder().history(history);
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
    Ok(
        match route(request.method().as_str(), uri.path(), uri.query()) {
            Route::Burst { n } => burst(n),
            // The hub's futures are boxed, as axum boxes each route's: hyper
            // keeps this function's future for the connection's life, and
            // the other routes should not carry the hub's awaits in it.
            Route::Live => match &hubs.ours {
                Some(hub) => Box::pin(hub_live(hub, &request)).await,
                None => live(&hubs.broadcast),
            },
            Route::Publish { count } => match &hubs.ours {
                Some(hub) => {
                    let inflight = load_common::query_u64(uri.query(), "inflight").unwrap_or(1);
                    Box::pin(hub_publish(hub, count, inflight.max(1) as usize)).await
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
    EventStream::new(hub.subscribe())
        .into_http_response()
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
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

/// Publishes `count` events to the hub's topic `live`, each carrying its
/// send time, with up to `inflight` publishes waiting for the backend at
/// once (started in order); answers with the topic's subscriber count.
async fn hub_publish(hub: &tower_sse::hub::Hub, count: u64, inflight: usize) -> Response<Body> {
    let published = stream::iter(0..count)
        .map(|_| {
            let event = Event::new().data(itoa::Buffer::new().format(load_common::now_ns()));
            hub.publish("live", event)
        })
        .buffered(inflight)
        .filter_map(|result| std::future::ready(result.err()))
        .next()
        .await;
    if let Some(error) = published {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"));
    }
    let subscribers = hub.topic_stats("live").map_or(0, |stats| stats.subscribers);
    text(StatusCode::OK, format!("{subscribers}\n"))
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

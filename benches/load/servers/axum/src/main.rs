//! The load-test server for axum 0.8's own `Sse` response with
//! `KeepAlive::default()`, written the way axum's documentation shows.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Router,
};
use futures_util::{stream, StreamExt};
use load_common::{announce, query_u64, Hub, PAYLOAD};

/// What is broadcast: the id and the send time; each subscriber builds
/// its own axum `Event` (axum has no event encoded once for many streams).
type Live = Hub<(u64, u64)>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(load_common::ADDR).await?;
    announce(listener.local_addr()?.port());
    let hub = Arc::new(Live::new());
    let app = Router::new()
        .route("/sse/burst", get(burst))
        .route("/sse/live", get(live))
        .route("/publish", post(publish))
        .with_state(hub);
    axum::serve(listener, app).await
}

/// `n` events with ids 1..=n, as fast as the client reads.
async fn burst(uri: Uri) -> Response {
    let Some(n) = query_u64(uri.query(), "n") else {
        return (StatusCode::BAD_REQUEST, "n must be a count\n").into_response();
    };
    let events = stream::iter(1..=n).map(|id| {
        Ok::<_, Infallible>(
            Event::default()
                .id(itoa::Buffer::new().format(id))
                .data(PAYLOAD),
        )
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Every event published from now on.
async fn live(State(hub): State<Arc<Live>>) -> Response {
    let events = hub.subscribe().map(|(id, sent)| {
        Ok::<_, Infallible>(
            Event::default()
                .id(itoa::Buffer::new().format(id))
                .data(itoa::Buffer::new().format(sent)),
        )
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Publishes `count` events, each carrying its send time; answers with the
/// number of subscribers.
async fn publish(State(hub): State<Arc<Live>>, uri: Uri) -> Response {
    let Some(count) = query_u64(uri.query(), "count") else {
        return (StatusCode::BAD_REQUEST, "count must be a count\n").into_response();
    };
    let subscribers = hub.publish(count, |id, sent| (id, sent));
    format!("{subscribers}\n").into_response()
}

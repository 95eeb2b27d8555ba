//! The load-test server for axum 0.8's own `Sse` response with
//! `KeepAlive::default()`, written the way axum's documentation shows.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

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
use load_common::{announce, now_ns, query_u64, PAYLOAD};
use tokio::sync::broadcast::{self, error::RecvError};

struct Hub {
    sender: broadcast::Sender<(u64, u64)>,
    sequence: AtomicU64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(load_common::ADDR).await?;
    announce(listener.local_addr()?.port());
    let hub = Arc::new(Hub {
        sender: broadcast::channel(1024).0,
        sequence: AtomicU64::new(0),
    });
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
async fn live(State(hub): State<Arc<Hub>>) -> Response {
    let events = stream::unfold(hub.sender.subscribe(), |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok((id, sent)) => {
                    let event = Event::default()
                        .id(itoa::Buffer::new().format(id))
                        .data(itoa::Buffer::new().format(sent));
                    return Some((Ok::<_, Infallible>(event), receiver));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Publishes `count` events, each carrying its send time; answers with the
/// number of subscribers.
async fn publish(State(hub): State<Arc<Hub>>, uri: Uri) -> Response {
    let Some(count) = query_u64(uri.query(), "count") else {
        return (StatusCode::BAD_REQUEST, "count must be a count\n").into_response();
    };
    for _ in 0..count {
        let id = hub.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = hub.sender.send((id, now_ns()));
    }
    format!("{}\n", hub.sender.receiver_count()).into_response()
}

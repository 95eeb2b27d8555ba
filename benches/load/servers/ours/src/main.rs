//! The load-test server for tower-sse: hyper 1, one `service_fn`, the whole
//! `SseLayer` (close detection, headers, no-buffering, keep-alive every
//! 15 s; CORS is off until given origins). Endpoints are described in
//! `benches/load/README.md`.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use load_common::{announce, now_ns, query_u64, PAYLOAD};
use tokio::sync::broadcast::{self, error::RecvError};
use tower::ServiceBuilder;
use tower_sse::{EncodedEvent, Event, EventStream, ServiceBuilderExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

struct Hub {
    sender: broadcast::Sender<EncodedEvent>,
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
    let service = ServiceBuilder::new()
        .sse()
        .service_fn(move |request| handle(request, hub.clone()));
    loop {
        let (socket, _) = listener.accept().await?;
        let connection = http1::Builder::new().serve_connection(
            TokioIo::new(socket),
            TowerToHyperService::new(service.clone()),
        );
        tokio::spawn(connection);
    }
}

async fn handle(request: Request<Incoming>, hub: Arc<Hub>) -> Result<Response<Body>, Infallible> {
    let query = request.uri().query();
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/sse/burst") => match query_u64(query, "n") {
            Some(n) => burst(n),
            None => text(StatusCode::BAD_REQUEST, "n must be a count\n".into()),
        },
        (&Method::GET, "/sse/live") => live(&hub),
        (&Method::POST, "/publish") => match query_u64(query, "count") {
            Some(count) => publish(&hub, count),
            None => text(StatusCode::BAD_REQUEST, "count must be a count\n".into()),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    })
}

/// `n` events with ids 1..=n, as fast as the client reads.
fn burst(n: u64) -> Response<Body> {
    let events = stream::iter(1..=n).map(|id| {
        Event::new()
            .id(itoa::Buffer::new().format(id))
            .map(|event| event.data(PAYLOAD))
    });
    EventStream::new(events)
        .into_response()
        .map(|body| body.map_err(BoxError::from).boxed_unsync())
}

/// Every event published from now on; each is encoded once and shared.
fn live(hub: &Hub) -> Response<Body> {
    let events = stream::unfold(hub.sender.subscribe(), |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    EventStream::new(events)
        .into_response()
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// Publishes `count` events, each carrying its send time; answers with the
/// number of subscribers.
fn publish(hub: &Hub, count: u64) -> Response<Body> {
    for _ in 0..count {
        let id = hub.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let event = Event::new()
            .id(itoa::Buffer::new().format(id))
            .map(|event| event.data(itoa::Buffer::new().format(now_ns())).encode());
        if let Ok(event) = event {
            let _ = hub.sender.send(event);
        }
    }
    text(StatusCode::OK, format!("{}\n", hub.sender.receiver_count()))
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

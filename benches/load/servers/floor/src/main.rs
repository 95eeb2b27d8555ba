//! The floor of the load test: bare hyper 1 and the same runtime as the
//! other Rust servers, with no SSE logic at all. Burst events are written by
//! hand into frames of up to 16 KiB; live events are encoded once per
//! publish and the same bytes are written to every subscriber. No
//! keep-alive, no close detection, no headers but Content-Type.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use load_common::{announce, now_ns, query_u64, PAYLOAD};
use tokio::sync::broadcast::{self, error::RecvError};

type Body = UnsyncBoxBody<Bytes, Infallible>;

const FRAME: usize = 16 * 1024;

struct Hub {
    sender: broadcast::Sender<Bytes>,
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
    loop {
        let (socket, _) = listener.accept().await?;
        let hub = hub.clone();
        let service = service_fn(move |request| handle(request, hub.clone()));
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(socket), service));
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

fn put_event(buf: &mut BytesMut, id: u64, data: &[u8]) {
    buf.put_slice(b"id: ");
    buf.put_slice(itoa::Buffer::new().format(id).as_bytes());
    buf.put_slice(b"\ndata: ");
    buf.put_slice(data);
    buf.put_slice(b"\n\n");
}

/// `n` events with ids 1..=n, in frames of up to 16 KiB.
fn burst(n: u64) -> Response<Body> {
    let frames = stream::unfold(1, move |mut id| async move {
        if id > n {
            return None;
        }
        let mut buf = BytesMut::with_capacity(FRAME + 128);
        while id <= n && buf.len() < FRAME {
            put_event(&mut buf, id, PAYLOAD.as_bytes());
            id += 1;
        }
        Some((Ok(Frame::data(buf.freeze())), id))
    });
    event_stream(StreamBody::new(frames).boxed_unsync())
}

/// Every event published from now on, the same bytes for every subscriber.
fn live(hub: &Hub) -> Response<Body> {
    let frames = stream::unfold(hub.sender.subscribe(), |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(bytes) => return Some((Ok(Frame::data(bytes)), receiver)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    event_stream(StreamBody::new(frames).boxed_unsync())
}

fn publish(hub: &Hub, count: u64) -> Response<Body> {
    for _ in 0..count {
        let id = hub.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let mut buf = BytesMut::with_capacity(64);
        put_event(
            &mut buf,
            id,
            itoa::Buffer::new().format(now_ns()).as_bytes(),
        );
        let _ = hub.sender.send(buf.freeze());
    }
    text(StatusCode::OK, format!("{}\n", hub.sender.receiver_count()))
}

fn event_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response
}

//! The floor of the load test: bare hyper 1 and the same runtime as the
//! other Rust servers, with no SSE logic at all. Burst events are written by
//! hand into frames of up to 16 KiB; live events are encoded once per
//! publish and the same bytes are written to every subscriber. No
//! keep-alive, no close detection, no headers but Content-Type (and a
//! run's `X-Run-Id`).
//!
//! `POST /runs?tokens=N&rate=R&bytes=B` is a run without tower-sse: a
//! task of its own (beside the connection, as a run's producer is) encodes
//! each token event by hand, in the order and id shape of tower-sse's hub
//! (data, then `id: <epoch in hex>-<sequence>`, so that as many bytes cross
//! the wire), and hands it to the response through a channel, the first at
//! once and then one every period; the end is the hub's default end event,
//! written by hand. Nothing is kept.

use std::{
    convert::Infallible,
    fmt::Write as _,
    hash::{BuildHasher, Hasher},
    sync::Arc,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{stream, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use load_common::{
    announce, route, token_data, Hub, Route, RunRequest, PAYLOAD, RUN_END_DATA, RUN_END_EVENT,
};

type Body = UnsyncBoxBody<Bytes, Infallible>;

const FRAME: usize = 16 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(load_common::ADDR).await?;
    announce(listener.local_addr()?.port());
    let hub = Arc::new(Hub::new());
    let nodelay = load_common::nodelay_asked();
    loop {
        let (socket, _) = listener.accept().await?;
        if nodelay {
            let _ = socket.set_nodelay(true);
        }
        let hub = hub.clone();
        let service = service_fn(move |request| handle(request, hub.clone()));
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(socket), service));
    }
}

async fn handle(
    request: Request<Incoming>,
    hub: Arc<Hub<Bytes>>,
) -> Result<Response<Body>, Infallible> {
    let uri = request.uri();
    if (request.method().as_str(), uri.path()) == ("POST", "/runs") {
        return Ok(match RunRequest::from_query(uri.query()) {
            Ok(asked) => run(asked),
            Err(text) => self::text(StatusCode::BAD_REQUEST, text.into()),
        });
    }
    Ok(
        match route(request.method().as_str(), uri.path(), uri.query()) {
            Route::Burst { n } => burst(n),
            Route::Live => live(&hub),
            Route::Publish { count } => publish(&hub, count),
            Route::BadRequest(text) => self::text(StatusCode::BAD_REQUEST, text.into()),
            Route::NotFound => text(StatusCode::NOT_FOUND, "not found\n".into()),
        },
    )
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
fn live(hub: &Hub<Bytes>) -> Response<Body> {
    let frames = hub.subscribe().map(|bytes| Ok(Frame::data(bytes)));
    event_stream(StreamBody::new(frames).boxed_unsync())
}

fn publish(hub: &Hub<Bytes>, count: u64) -> Response<Body> {
    let subscribers = hub.publish(count, |id, sent| {
        let mut buf = BytesMut::with_capacity(64);
        put_event(&mut buf, id, itoa::Buffer::new().format(sent).as_bytes());
        buf.freeze()
    });
    text(StatusCode::OK, format!("{subscribers}\n"))
}

/// A run's stream: `asked.tokens` token events from a task of their own,
/// the first at once and then one every period, then the end event.
fn run(asked: RunRequest) -> Response<Body> {
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u64(load_common::now_ns());
    let random = random.finish();
    // The hub's ids: a 48-bit epoch in hex, then the event's sequence.
    let epoch = random & ((1 << 48) - 1);
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        // In the hub's order: type, data, then the id.
        let encode = |sequence: u64, event: Option<&str>, data: &[u8]| {
            let mut buf = BytesMut::with_capacity(64 + data.len());
            if let Some(event) = event {
                buf.put_slice(b"event: ");
                buf.put_slice(event.as_bytes());
                buf.put_slice(b"\n");
            }
            buf.put_slice(b"data: ");
            buf.put_slice(data);
            buf.put_slice(b"\nid: ");
            let _ = write!(buf, "{epoch:x}-{sequence}");
            buf.put_slice(b"\n\n");
            buf.freeze()
        };
        // The first token at once, not on a timer's first tick (tokio's
        // timers round up to the next millisecond).
        let period = asked.period();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        for n in 1..=asked.tokens {
            if n > 1 {
                ticks.tick().await;
            }
            let data = token_data(n, asked.bytes);
            if sender.send(encode(n, None, data.as_bytes())).is_err() {
                return;
            }
        }
        let end = encode(
            asked.tokens + 1,
            Some(RUN_END_EVENT),
            RUN_END_DATA.as_bytes(),
        );
        let _ = sender.send(end);
    });
    let frames = stream::unfold(receiver, |mut receiver| async move {
        let bytes = receiver.recv().await?;
        Some((Ok(Frame::data(bytes)), receiver))
    });
    let mut response = event_stream(StreamBody::new(frames).boxed_unsync());
    // As long as tower-sse's run ids, 32 hex digits.
    let id = format!("{random:016x}{:016x}", random.rotate_left(32) ^ epoch);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-run-id", value);
    }
    response
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

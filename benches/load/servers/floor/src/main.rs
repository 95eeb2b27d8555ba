//! The floor of the load test: bare hyper 1 and the same runtime as the
//! other Rust servers, with no SSE logic at all. Burst events are written by
//! hand into frames of up to 16 KiB; live events are encoded once per
//! publish and the same bytes are written to every subscriber. No
//! keep-alive, no close detection, no headers but Content-Type.

use std::{convert::Infallible, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{stream, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use load_common::{announce, route, Hub, Route, PAYLOAD};

type Body = UnsyncBoxBody<Bytes, Infallible>;

const FRAME: usize = 16 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(load_common::ADDR).await?;
    announce(listener.local_addr()?.port());
    let hub = Arc::new(Hub::new());
    loop {
        let (socket, _) = listener.accept().await?;
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

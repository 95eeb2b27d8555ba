//! A handler's stream that fails or panics behind events, read over real
//! HTTP/1.1 and HTTP/2 connections by an independent parser, on a
//! multi-threaded runtime as servers run. Behind the whole `SseLayer` every
//! event before the failure arrives, the response ends cleanly (so
//! `EventSource` reconnects with its `Last-Event-ID`), and `on_close` says
//! `Error` with the error's text or the panic's message. A bare `EventStream` on HTTP/1.1 gets its events out before the
//! error and ends broken.

mod common;

use std::{
    convert::Infallible,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt as _};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tower::ServiceBuilder;
use tower_sse::{
    close::Failure, CloseLayer, CloseReason, Event, EventStream, ServiceBuilderExt, SseLayer,
};

type Item = Result<Event, io::Error>;

/// Events in a long replay: 1 KiB each, enough to fill socket buffers.
const BIG: u32 = 20_000;

fn event(n: u32) -> Item {
    Ok(Event::new()
        .id(n.to_string())
        .unwrap()
        .data(format!("event {n}")))
}

fn big_event(n: u32) -> Item {
    Ok(Event::new()
        .id(n.to_string())
        .unwrap()
        .data("x".repeat(1024)))
}

/// Four ways to fail behind events.
fn failing_stream(path: &str) -> std::pin::Pin<Box<dyn Stream<Item = Item> + Send>> {
    let boom = || Err(io::Error::other("the source failed"));
    match path {
        // Events and the error ready in one poll.
        "/burst" => Box::pin(stream::iter([event(1), event(2), boom()])),
        // A wait, then an event alone, then the error in the next poll.
        "/across" => Box::pin(
            stream::iter([event(1), event(2)])
                .then(|item| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    item
                })
                .chain(stream::iter([boom()])),
        ),
        // Events, then a panic in the same poll.
        "/panic" => Box::pin(
            stream::iter([event(1), event(2)])
                .chain(stream::poll_fn(|_| panic!("the handler's stream panicked"))),
        ),
        // A 20 MB replay, then the error: more than any socket buffer holds.
        "/big" => Box::pin(stream::iter((1..=BIG).map(big_event)).chain(stream::iter([boom()]))),
        other => panic!("no route {other}"),
    }
}

/// What `on_close` saw of one stream: its path, reason and failure.
type Seen = Arc<Mutex<Vec<(String, CloseReason, Option<Failure>)>>>;

async fn serve(seen: Seen) -> common::TestServer {
    let close = CloseLayer::builder()
        .on_close(move |info| {
            let path = info.uri.path().to_owned();
            let failure = info.failure.clone();
            seen.lock().unwrap().push((path, info.reason, failure));
        })
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .sse_with(SseLayer::new().close(close))
        .service(tower::service_fn(|request: Request<Incoming>| async move {
            let stream = failing_stream(request.uri().path());
            Ok::<_, Infallible>(EventStream::new(stream).into_http_response())
        }));
    common::serve_service(service).await
}

/// The ids a real parser reads to the end, and whether the end was broken.
async fn read(client: &Client<HttpConnector, Empty<Bytes>>, url: String) -> (Vec<String>, bool) {
    let request = Request::get(url).body(Empty::new()).unwrap();
    let response: Response<Incoming> =
        tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .expect("answered within 10 s")
            .expect("the status line and headers arrive");
    assert_eq!(response.status(), 200);
    let (events, broke) =
        tokio::time::timeout(Duration::from_secs(30), common::events_until_end(response))
            .await
            .expect("the stream ends within 30 s");
    (events.into_iter().map(|event| event.id).collect(), broke)
}

async fn every_event_arrives_then_the_stream_ends(client: Client<HttpConnector, Empty<Bytes>>) {
    let seen: Seen = Arc::default();
    let server = serve(seen.clone()).await;
    let mut runs = 0;
    for path in ["/burst", "/across", "/panic"] {
        // Before the fix, 15 % of these runs lost events on HTTP/2.
        for _ in 0..40 {
            let (ids, broke) = read(&client, format!("http://{}{path}", server.addr)).await;
            assert_eq!(ids, ["1", "2"], "{path}");
            assert!(!broke, "{path}: ended broken");
            runs += 1;
        }
    }
    for _ in 0..3 {
        let (ids, broke) = read(&client, format!("http://{}/big", server.addr)).await;
        assert_eq!(ids.len(), BIG as usize, "a replay lost its tail");
        assert_eq!(ids.last().map(String::as_str), Some("20000"));
        assert!(!broke);
        runs += 1;
    }
    // Give the server a moment to drop the last bodies.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), runs);
    for (path, reason, failure) in seen {
        assert_eq!(reason, CloseReason::Error, "{path}");
        let expected = if path == "/panic" {
            Failure::Panic("the handler's stream panicked".to_owned())
        } else {
            Failure::Error("the source failed".to_owned())
        };
        assert_eq!(failure, Some(expected), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_before_an_error_or_panic_arrives_over_http1() {
    every_event_arrives_then_the_stream_ends(common::client()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_before_an_error_or_panic_arrives_over_http2() {
    every_event_arrives_then_the_stream_ends(common::h2c_client()).await;
}

/// Without the close layer, an `EventStream` on HTTP/1.1 still gets the
/// events out before the error (they used to be lost with the status line),
/// then the response ends broken.
#[tokio::test]
async fn a_bare_event_stream_writes_its_events_before_the_error_over_http1() {
    let server = common::serve(|request: Request<Incoming>| async move {
        EventStream::new(failing_stream(request.uri().path())).into_http_response()
    })
    .await;
    let client = common::client();
    for path in ["/burst", "/across"] {
        for _ in 0..3 {
            let (ids, broke) = read(&client, format!("http://{}{path}", server.addr)).await;
            assert_eq!(ids, ["1", "2"], "{path}");
            assert!(broke, "{path}: a failed body ends broken");
        }
    }
}

/// An event stream that says how long it is (a proxied upstream whose
/// `Content-Length` the handler dropped), writes one event and fails.
struct SizedThenFails {
    sent: bool,
}

impl http_body::Body for SizedThenFails {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        let frame = if std::mem::replace(&mut self.sent, true) {
            Err(io::Error::other("the upstream closed"))
        } else {
            Ok(http_body::Frame::data(Bytes::from_static(
                b"id: 1\ndata: event 1\n\n",
            )))
        };
        std::task::Poll::Ready(Some(frame))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(100)
    }
}

/// Found by an outside attack: a close layer without a trigger (no
/// shutdown, no lifetime) and no keep-alive passed an event stream's exact
/// length on to hyper, which then sent a `Content-Length` that the clean
/// end after an error could not honour (HTTP/1.1: the client lost the
/// whole response; HTTP/2: a reset). An event stream never has a length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_stream_of_a_stated_length_ends_cleanly_without_a_trigger() {
    let seen: Seen = Arc::default();
    let on_close = seen.clone();
    let close = CloseLayer::builder()
        .on_close(move |info| {
            let failure = info.failure.clone();
            on_close
                .lock()
                .unwrap()
                .push((info.uri.path().to_owned(), info.reason, failure));
        })
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .sse_with(SseLayer::new().close(close).without_keep_alive())
        .service(tower::service_fn(|_: Request<Incoming>| async {
            let response = Response::builder()
                .header(http::header::CONTENT_TYPE, "text/event-stream")
                .body(SizedThenFails { sent: false })
                .unwrap();
            Ok::<_, Infallible>(response)
        }));
    let server = common::serve_service(service).await;
    for client in [common::client(), common::h2c_client()] {
        let request = Request::get(format!("http://{}/sized", server.addr))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.expect("the response comes");
        assert_eq!(response.headers().get(http::header::CONTENT_LENGTH), None);
        let (events, broke) =
            tokio::time::timeout(Duration::from_secs(10), common::events_until_end(response))
                .await
                .expect("the stream ends within 10 s");
        let ids: Vec<String> = events.into_iter().map(|event| event.id).collect();
        assert_eq!(ids, ["1"]);
        assert!(!broke, "ended broken");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (_, reason, failure) in seen {
        assert_eq!(reason, CloseReason::Error);
        assert_eq!(
            failure,
            Some(Failure::Error("the upstream closed".to_owned()))
        );
    }
}

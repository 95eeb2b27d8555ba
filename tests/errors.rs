//! A handler's stream that fails or panics behind events, read over real
//! HTTP/1.1 and HTTP/2 connections by an independent parser: every event
//! before the failure arrives, then the response ends broken, and
//! `on_close` says `Error`.

mod common;

use std::{
    convert::Infallible,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{stream, Stream, StreamExt as _};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_sse::{CloseLayer, CloseReason, Event, EventStream, ServiceBuilderExt, SseLayer};

type Item = Result<Event, io::Error>;

fn event(n: u32) -> Item {
    Ok(Event::new()
        .id(n.to_string())
        .unwrap()
        .data(format!("event {n}")))
}

/// Three ways to fail behind events.
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
        other => panic!("no route {other}"),
    }
}

async fn serve(reasons: Arc<Mutex<Vec<CloseReason>>>) -> common::TestServer {
    let close = CloseLayer::builder()
        .on_close(move |info| reasons.lock().unwrap().push(info.reason))
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .sse_with(SseLayer::new().close(close))
        .service(tower::service_fn(|request: Request<Incoming>| async move {
            let stream = failing_stream(request.uri().path());
            Ok::<_, Infallible>(EventStream::new(stream).into_response())
        }));
    common::serve_service(service).await
}

async fn every_event_arrives_then_the_stream_breaks(
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<bytes::Bytes>,
    >,
) {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let server = serve(reasons.clone()).await;
    for path in ["/burst", "/across", "/panic"] {
        // Three runs each: the loss was seen in every run before the fix.
        for _ in 0..3 {
            let request = Request::get(format!("http://{}{path}", server.addr))
                .body(Empty::new())
                .unwrap();
            let response: Response<Incoming> =
                tokio::time::timeout(Duration::from_secs(10), client.request(request))
                    .await
                    .expect("answered within 10 s")
                    .expect("the status line and headers arrive");
            assert_eq!(response.status(), 200, "{path}");
            let (events, broke) =
                tokio::time::timeout(Duration::from_secs(10), common::events_until_end(response))
                    .await
                    .expect("the stream ends within 10 s");
            let seen: Vec<_> = events
                .iter()
                .map(|event| (event.id.as_str(), event.data.as_str()))
                .collect();
            assert_eq!(seen, [("1", "event 1"), ("2", "event 2")], "{path}");
            assert!(broke, "{path}: the response must end broken, not complete");
        }
    }
    // Give the server a moment to drop the last bodies.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reasons = reasons.lock().unwrap().clone();
    assert_eq!(reasons, vec![CloseReason::Error; 9]);
}

#[tokio::test]
async fn every_event_before_an_error_or_panic_arrives_over_http1() {
    every_event_arrives_then_the_stream_breaks(common::client()).await;
}

#[tokio::test]
async fn every_event_before_an_error_or_panic_arrives_over_http2() {
    every_event_arrives_then_the_stream_breaks(common::h2c_client()).await;
}

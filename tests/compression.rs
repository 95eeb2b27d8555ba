//! NoBufferingLayer with tower-http's CompressionLayer and a custom predicate
//! that would compress event streams.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::compression::{
    predicate::{NotForContentType, Predicate, SizeAbove},
    CompressionLayer,
};
use tower_sse::{Event, EventStream, NoBufferingLayer};

/// Events fed by the test through a channel.
struct Channel(mpsc::UnboundedReceiver<Event>);

impl futures_util::Stream for Channel {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }
}

/// A handler that streams the events the test sends.
fn handler(
    rx: mpsc::UnboundedReceiver<Event>,
) -> impl Service<Request<()>, Response = Response<EventStream<Channel>>, Error = Infallible> {
    let mut rx = Some(rx);
    tower::service_fn(move |_request: Request<()>| {
        let rx = rx.take().expect("one request per handler");
        async move { Ok::<_, Infallible>(EventStream::new(Channel(rx)).into_http_response()) }
    })
}

fn gzip_request() -> Request<()> {
    Request::builder()
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(())
        .unwrap()
}

/// The bytes the body gives within `wait` (without waiting for its end).
async fn bytes_within<B: Body<Data = Bytes> + Unpin>(body: &mut B, wait: Duration) -> Vec<u8>
where
    B::Error: std::fmt::Debug,
{
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                seen.extend_from_slice(&data);
            }
        }
    })
    .await;
    seen
}

/// A predicate that compresses everything, event streams included.
fn compress_everything() -> SizeAbove {
    SizeAbove::new(0)
}

#[tokio::test]
async fn a_custom_predicate_compresses_and_holds_back_events_without_our_marker() {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Event::new().data("first")).unwrap();
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(compress_everything()))
        .layer(NoBufferingLayer::new())
        .service(handler(rx));

    let response = service.oneshot(gzip_request()).await.unwrap();
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let mut body = Box::pin(response.into_body());
    let seen = bytes_within(&mut body, Duration::from_millis(300)).await;
    // The first event was sent, but the client cannot read it: it sits in
    // the compressor.
    assert!(
        !seen.windows(11).any(|w| w == b"data: first"),
        "the event was not readable as plain text"
    );
    drop(tx);
}

#[tokio::test]
async fn identity_encoding_makes_compression_skip_the_stream() {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Event::new().data("first")).unwrap();
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(compress_everything()))
        .layer(NoBufferingLayer::new().identity_encoding(true))
        .service(handler(rx));

    let response = service.oneshot(gzip_request()).await.unwrap();
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "identity");
    let mut body = Box::pin(response.into_body());
    let seen = bytes_within(&mut body, Duration::from_millis(300)).await;
    assert_eq!(
        seen, b"data: first\n\n",
        "the event arrived at once, uncompressed"
    );
    drop(tx);
}

#[tokio::test]
async fn a_predicate_that_skips_event_streams_needs_no_marker() {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Event::new().data("first")).unwrap();
    let predicate = compress_everything().and(NotForContentType::const_new("text/event-stream"));
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(predicate))
        .layer(NoBufferingLayer::new())
        .service(handler(rx));

    let response = service.oneshot(gzip_request()).await.unwrap();
    assert!(!response.headers().contains_key(header::CONTENT_ENCODING));
    let mut body = Box::pin(response.into_body());
    let seen = bytes_within(&mut body, Duration::from_millis(300)).await;
    assert_eq!(seen, b"data: first\n\n");
    drop(tx);
}

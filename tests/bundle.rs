//! The SseLayer bundle: every layer in order, other responses untouched,
//! `Data = Bytes` kept, and the layered service as `Clone + Send + Sync` as
//! the inner one.

mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use http::{header, Request, Response, Version};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_sse::{Event, EventStream, ServiceBuilderExt, SseCorsLayer, SseLayer};

fn assert_clone_send_sync<T: Clone + Send + Sync>(_: &T) {}
fn assert_bytes_body<B: Body<Data = Bytes>>() {}

/// A body that is not `Clone` (and needs not be).
struct NotClone(Full<Bytes>);

impl Body for NotClone {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }
}

#[test]
fn layered_service_is_clone_send_sync_with_no_clone_bound_on_the_body() {
    let service = ServiceBuilder::new()
        .layer(SseLayer::new())
        .service(service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(Response::new(NotClone(Full::new(Bytes::new()))))
        }));
    assert_clone_send_sync(&service);
    fn body_of<S: Service<Request<()>, Response = Response<B>>, B: Body<Data = Bytes>>(_: &S) {
        assert_bytes_body::<B>();
    }
    body_of(&service);
}

fn cors_on() -> SseLayer {
    SseLayer::new().cors(SseCorsLayer::builder().allow_origin(APP).build().unwrap())
}

const APP: &str = "https://app.example.com";

#[tokio::test(start_paused = true)]
async fn other_responses_pass_through_untouched_with_cors_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = ServiceBuilder::new()
        .sse_with(cors_on())
        .service(service_fn(move |_request: Request<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CONTENT_LENGTH, "11")
                    .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        }));
    let same_origin_post = Request::post("/api/login")
        .header(header::ORIGIN, "https://api.example.com")
        .body(())
        .unwrap();
    let json_get = |origin: &str| {
        Request::get("/api/items")
            .header(header::ORIGIN, origin)
            .header(header::ACCEPT, "application/json")
            .body(())
            .unwrap()
    };
    let post_preflight = Request::options("/api/items")
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(())
        .unwrap();
    let requests = [
        same_origin_post,
        json_get(APP),
        json_get("https://elsewhere.example"),
        post_preflight,
        Request::new(()),
    ];
    let count = requests.len();
    for request in requests {
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers().len(), 2);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "11");
        assert_eq!(response.body().size_hint().exact(), Some(11));
        // A minute later: still the same bytes, no comment was added.
        tokio::time::advance(Duration::from_secs(60)).await;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"ok\":true}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), count);
}

#[tokio::test(start_paused = true)]
async fn event_streams_get_every_layer() {
    let layer = cors_on();
    let service = ServiceBuilder::new()
        .sse_with(layer.clone())
        .service(service_fn(|_request: Request<()>| async {
            let events = stream::iter([Event::new().data("hello")]).chain(stream::pending());
            Ok::<_, Infallible>(EventStream::new(events).into_http_response())
        }));
    let request = Request::builder()
        .version(Version::HTTP_11)
        .header(header::ORIGIN, APP)
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(!headers.contains_key(header::CONNECTION));
    assert_eq!(layer.stats().open_streams, 1);
    let mut body = Box::pin(response.into_body());
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: hello\n\n");
    // Fifteen seconds of silence: a comment.
    let comment = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&comment[..], b":\n\n");
    drop(body);
    assert_eq!(layer.stats().open_streams, 0);

    let refused = Request::builder()
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap();
    assert_eq!(service.oneshot(refused).await.unwrap().status(), 403);
}

#[tokio::test]
async fn shutdown_holds_whether_it_is_given_before_or_after_the_close_layer() {
    use tower_sse::{CloseLayer, Shutdown};
    for before in [true, false] {
        let shutdown = Shutdown::new();
        let close = CloseLayer::builder().on_close(|_| {}).build().unwrap();
        let layer = if before {
            SseLayer::new().shutdown(&shutdown).close(close)
        } else {
            SseLayer::new().close(close).shutdown(&shutdown)
        };
        let service =
            ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(|_request: Request<()>| async {
                    let quiet = stream::pending::<Event>();
                    Ok::<_, Infallible>(EventStream::new(quiet).into_http_response())
                }));
        let body = service.oneshot(Request::new(())).await.unwrap().into_body();
        let mut body = std::pin::pin!(body);
        shutdown.trigger();
        let last = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the final frame comes at once")
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert!(last.starts_with(b"retry: "), "before: {before}");
        // An independent parser reads it as an event of its own type.
        let parsed = common::parse_bytes(last.to_vec()).await;
        assert_eq!(parsed.len(), 1, "{parsed:?}");
        assert_eq!(parsed[0].event, tower_sse::event::RETRY_EVENT);
        assert!(parsed[0].retry.is_some(), "{parsed:?}");
    }
}

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use tower::{service_fn, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::{event::MAX_RETRY, Event};

/// A body fed by the test, frame by frame.
struct TestBody {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, io::Error>>,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx)
    }
}

type Tx = mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>;
type Tested = Pin<Box<CloseBody<TestBody>>>;

/// What `on_close` saw, in order.
type Seen = Arc<Mutex<Vec<CloseInfo>>>;

fn recording(builder: CloseBuilder) -> (CloseLayer, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let layer = builder
        .on_close(move |info| record.lock().unwrap().push(info.clone()))
        .build()
        .unwrap();
    (layer, seen)
}

/// An event stream through `layer`, over a body the test feeds; returns the
/// handle the handler got.
async fn stream_body(layer: &CloseLayer) -> (Tx, Tested, CloseHandle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rx = Some(rx);
    let (handle_tx, mut handle_rx) = mpsc::unbounded_channel();
    let service = layer.layer(service_fn(move |request: Request<()>| {
        let handle = request.extensions().get::<CloseHandle>().cloned();
        handle_tx
            .send(handle.expect("the handle is in the extensions"))
            .unwrap();
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(TestBody {
                rx: rx.take().unwrap(),
            })
            .unwrap();
        async move { Ok::<_, io::Error>(response) }
    }));
    let request = Request::post("/events?room=1").body(()).unwrap();
    let body = service.oneshot(request).await.unwrap().into_body();
    (tx, Box::pin(body), handle_rx.recv().await.unwrap())
}

fn send(tx: &Tx, bytes: &'static [u8]) {
    tx.send(Ok(Frame::data(Bytes::from_static(bytes)))).unwrap();
}

fn poll(body: &mut Tested) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
    let waker = futures_util::task::noop_waker();
    body.as_mut().poll_frame(&mut Context::from_waker(&waker))
}

fn ready_data(body: &mut Tested) -> Bytes {
    match poll(body) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
        other => panic!("expected a data frame now, got {other:?}"),
    }
}

fn reasons(seen: &Seen) -> Vec<CloseReason> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|info| info.reason)
        .collect()
}

/// The delay of a `retry:` block at the end of `frame`.
fn retry_of(frame: &[u8]) -> Duration {
    let text = std::str::from_utf8(frame).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("retry: "))
        .expect("a retry line");
    assert!(text.ends_with("\n\n"));
    Duration::from_millis(line.parse().unwrap())
}

/// A layered service and the handles its requests got.
struct Captured<S> {
    service: S,
    handles: mpsc::UnboundedReceiver<CloseHandle>,
}

/// `handler` behind `layer`, and a receiver of the handle each request got.
fn capturing_handles<F, Fut>(
    layer: &CloseLayer,
    handler: F,
) -> Captured<
    impl tower::Service<Request<()>, Response = Response<CloseBody<Full<Bytes>>>, Error = io::Error>,
>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, io::Error>>,
{
    let (handle_tx, handle_rx) = mpsc::unbounded_channel();
    let service = layer.layer(service_fn(move |request: Request<()>| {
        let handle = request.extensions().get::<CloseHandle>().cloned();
        handle_tx
            .send(handle.expect("the handle is in the extensions"))
            .unwrap();
        handler()
    }));
    Captured {
        service,
        handles: handle_rx,
    }
}

fn full(bytes: &'static [u8]) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(bytes)))
}

#[tokio::test]
async fn dropping_the_body_before_its_end_is_client_gone() {
    let (layer, seen) = recording(CloseLayer::builder());
    let (tx, mut body, handle) = stream_body(&layer).await;
    send(&tx, b"data: a\n\n");
    ready_data(&mut body);
    assert_eq!(layer.stats().open_streams, 1);
    assert!(!handle.is_closed());
    drop(body);
    assert_eq!(handle.closed().await, CloseReason::ClientGone);
    assert_eq!(reasons(&seen), [CloseReason::ClientGone]);
    assert_eq!(layer.stats().open_streams, 0);
}

#[tokio::test]
async fn reading_to_the_end_is_completed_and_reported_once() {
    let (layer, seen) = recording(CloseLayer::builder());
    let (tx, mut body, handle) = stream_body(&layer).await;
    send(&tx, b"data: a\n\n");
    send(&tx, b"data: bc\n\n");
    drop(tx);
    assert_eq!(&ready_data(&mut body)[..], b"data: a\n\n");
    assert_eq!(&ready_data(&mut body)[..], b"data: bc\n\n");
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
    assert_eq!(handle.reason(), Some(CloseReason::Completed));
    drop(body);
    assert_eq!(reasons(&seen), [CloseReason::Completed]);

    let info = seen.lock().unwrap()[0].clone();
    assert_eq!(info.method, http::Method::POST);
    assert_eq!(info.uri.path(), "/events");
    assert_eq!((info.frames, info.bytes), (2, 9 + 10));
}

#[tokio::test]
async fn an_inner_error_is_error_and_the_event_stream_ends_cleanly() {
    let (layer, seen) = recording(CloseLayer::builder());
    let (tx, mut body, handle) = stream_body(&layer).await;
    send(&tx, b"data: a\n\n");
    assert_eq!(&ready_data(&mut body)[..], b"data: a\n\n");
    tx.send(Err(io::Error::other("boom"))).unwrap();
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(handle.reason(), Some(CloseReason::Error));
    assert_eq!(reasons(&seen), [CloseReason::Error]);
}

#[tokio::test]
async fn an_error_in_a_body_that_is_not_an_event_stream_goes_on() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rx = Some(rx);
    let service = CloseLayer::new().layer(service_fn(move |_request: Request<()>| {
        let body = TestBody {
            rx: rx.take().unwrap(),
        };
        async move { Ok::<_, io::Error>(Response::new(body)) }
    }));
    let body = service.oneshot(Request::new(())).await.unwrap().into_body();
    let mut body: Tested = Box::pin(body);
    tx.send(Err(io::Error::other("boom"))).unwrap();
    assert!(matches!(poll(&mut body), Poll::Ready(Some(Err(_)))));
    assert_eq!(body.handle().reason(), Some(CloseReason::Error));
}

#[tokio::test]
async fn shutdown_writes_a_jittered_retry_at_the_boundary_and_ends() {
    let shutdown = Shutdown::new();
    let (min, max) = (Duration::from_millis(100), Duration::from_millis(900));
    let (layer, seen) = recording(
        CloseLayer::builder()
            .shutdown(&shutdown)
            .reconnect_delay(min, max),
    );
    let mut open = Vec::new();
    for _ in 0..20 {
        let (tx, mut body, handle) = stream_body(&layer).await;
        send(&tx, b"data: a\n\n");
        ready_data(&mut body);
        assert!(poll(&mut body).is_pending());
        open.push((tx, body, handle));
    }
    assert_eq!(layer.stats().open_streams, 20);
    shutdown.trigger();
    let mut delays = Vec::new();
    for (_tx, mut body, handle) in open {
        let last = ready_data(&mut body);
        let delay = retry_of(&last);
        assert!((min..=max).contains(&delay), "{delay:?}");
        delays.push(delay);
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert_eq!(handle.closed().await, CloseReason::Shutdown);
    }
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 10, "delays are spread: {delays:?}");
    assert_eq!(reasons(&seen), [CloseReason::Shutdown; 20]);
    assert_eq!(layer.stats().open_streams, 0);
}

#[tokio::test]
async fn shutdown_waits_for_the_end_of_the_current_event() {
    let shutdown = Shutdown::new();
    let (layer, _seen) = recording(CloseLayer::builder().shutdown(&shutdown));
    let (tx, mut body, handle) = stream_body(&layer).await;
    send(&tx, b"data: half");
    ready_data(&mut body);
    shutdown.trigger();
    assert!(poll(&mut body).is_pending(), "no frame inside the event");
    assert!(!handle.is_closed());
    send(&tx, b"\n\n");
    assert_eq!(&ready_data(&mut body)[..], b"\n\n");
    assert!(ready_data(&mut body).starts_with(b"retry: "));
    assert_eq!(handle.reason(), Some(CloseReason::Shutdown));
}

#[tokio::test]
async fn streams_started_after_the_trigger_end_at_once() {
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let layer = CloseLayer::builder()
        .shutdown(&shutdown)
        .final_event(Event::new().event("bye").unwrap())
        .build()
        .unwrap();
    let (tx, mut body, handle) = stream_body(&layer).await;
    send(&tx, b"data: never\n\n");
    let last = ready_data(&mut body);
    assert!(
        last.starts_with(b"event: bye\ndata:\n\nretry: "),
        "{last:?}"
    );
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
    assert_eq!(handle.reason(), Some(CloseReason::Shutdown));
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_ends_the_stream_between_80_and_100_percent() {
    let max = Duration::from_secs(100);
    let (layer, seen) = recording(CloseLayer::builder().max_lifetime(max));
    let (_tx, mut body, handle) = stream_body(&layer).await;
    let start = tokio::time::Instant::now();
    assert!(poll(&mut body).is_pending());
    tokio::time::advance(max * 8 / 10 - Duration::from_millis(1)).await;
    assert!(poll(&mut body).is_pending(), "not before 80 %");
    let ended_after = loop {
        tokio::time::advance(Duration::from_millis(500)).await;
        if let Poll::Ready(Some(Ok(frame))) = poll(&mut body) {
            assert!(frame.into_data().unwrap().starts_with(b"retry: "));
            break tokio::time::Instant::now();
        }
    };
    assert!(
        ended_after - start <= max + Duration::from_millis(500),
        "not after 100 %"
    );
    assert_eq!(handle.reason(), Some(CloseReason::Expired));
    assert_eq!(reasons(&seen), [CloseReason::Expired]);
}

#[tokio::test]
async fn other_responses_keep_their_body_and_complete() {
    let layer = CloseLayer::builder()
        .shutdown(&{
            let shutdown = Shutdown::new();
            shutdown.trigger();
            shutdown
        })
        .build()
        .unwrap();
    let Captured {
        service,
        handles: mut handle_rx,
    } = capturing_handles(&layer, || async { Ok(full(b"{}")) });
    let body = service.oneshot(Request::new(())).await.unwrap().into_body();
    let handle = handle_rx.recv().await.unwrap();
    assert_eq!(body.size_hint().exact(), Some(2));
    // Shutdown does not touch it, and `collect` stops at `is_end_stream`.
    assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{}");
    assert_eq!(handle.reason(), Some(CloseReason::Completed));
    assert_eq!(layer.stats().open_streams, 0);
}

#[tokio::test]
async fn a_body_dropped_after_saying_it_ended_is_completed() {
    let layer = CloseLayer::new();
    let Captured {
        service,
        handles: mut handle_rx,
    } = capturing_handles(&layer, || async { Ok(full(b"x")) });
    let mut body = Box::pin(service.oneshot(Request::new(())).await.unwrap().into_body());
    let waker = futures_util::task::noop_waker();
    let frame = body.as_mut().poll_frame(&mut Context::from_waker(&waker));
    assert!(matches!(frame, Poll::Ready(Some(Ok(_)))));
    // A server sees `is_end_stream` and drops the body without polling on.
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(
        handle_rx.recv().await.unwrap().reason(),
        Some(CloseReason::Completed)
    );
}

#[tokio::test]
async fn a_response_future_dropped_before_the_response_is_client_gone() {
    let layer = CloseLayer::new();
    let Captured {
        service,
        handles: mut handle_rx,
    } = capturing_handles(&layer, std::future::pending);
    let future = service.oneshot(Request::new(()));
    let _ = tokio::time::timeout(Duration::from_millis(10), future).await;
    let handle = handle_rx.recv().await.unwrap();
    assert_eq!(handle.reason(), Some(CloseReason::ClientGone));
    drop(handle);
    assert_eq!(layer.stats().live_handles, 0);
}

#[tokio::test]
async fn a_failing_service_is_error() {
    let layer = CloseLayer::new();
    let Captured {
        service,
        handles: mut handle_rx,
    } = capturing_handles(&layer, || async { Err(io::Error::other("down")) });
    assert!(service.oneshot(Request::new(())).await.is_err());
    assert_eq!(
        handle_rx.recv().await.unwrap().reason(),
        Some(CloseReason::Error)
    );
}

#[tokio::test]
async fn a_panicking_callback_cannot_escape_from_drop() {
    let layer = CloseLayer::builder()
        .on_close(|_| panic!("callback bug"))
        .build()
        .unwrap();
    let (_tx, body, handle) = stream_body(&layer).await;
    drop(body); // would abort or unwind here if the panic escaped
    assert_eq!(handle.reason(), Some(CloseReason::ClientGone));
    assert_eq!(layer.stats().open_streams, 0);
}

#[tokio::test]
async fn every_handle_and_stream_is_released() {
    let layer = CloseLayer::new();
    for _ in 0..100 {
        let (tx, body, handle) = stream_body(&layer).await;
        drop((tx, body, handle));
    }
    assert_eq!(
        layer.stats(),
        CloseStats {
            open_streams: 0,
            live_handles: 0
        }
    );
}

#[test]
fn bad_settings_are_refused_with_errors_that_give_the_builder_back() {
    let second = Duration::from_secs(1);
    for (builder, kind) in [
        (
            CloseLayer::builder().max_lifetime(Duration::ZERO),
            CloseErrorKind::ZeroLifetime,
        ),
        (
            CloseLayer::builder().reconnect_delay(second * 2, second),
            CloseErrorKind::DelayRange,
        ),
        (
            CloseLayer::builder().reconnect_delay(Duration::ZERO, Duration::MAX),
            CloseErrorKind::DelayTooLong,
        ),
        (
            CloseLayer::builder().reconnect_delay(Duration::MAX, Duration::MAX),
            CloseErrorKind::DelayTooLong,
        ),
        (
            CloseLayer::builder().reconnect_delay(second, MAX_RETRY + Duration::from_millis(1)),
            CloseErrorKind::DelayTooLong,
        ),
    ] {
        assert_eq!(builder.build().unwrap_err().kind(), kind);
    }
    let error = |builder: CloseBuilder| builder.build().unwrap_err().to_string();
    assert!(error(CloseLayer::builder().reconnect_delay(second * 2, second)).contains("minimum"));
    assert!(
        error(CloseLayer::builder().reconnect_delay(second, Duration::MAX)).contains("24.8 days")
    );
    // What was set before comes back with the error: the callback too.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let refused = CloseLayer::builder()
        .on_close(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .max_lifetime(Duration::ZERO)
        .build()
        .unwrap_err();
    let layer = refused.into_builder().max_lifetime(second).build().unwrap();
    let config = layer.config.clone();
    let on_close = config.on_close.as_ref().expect("the callback was kept");
    on_close(&CloseInfo {
        reason: CloseReason::Completed,
        method: Default::default(),
        uri: Default::default(),
        duration: Duration::ZERO,
        frames: 0,
        bytes: 0,
        failure: None,
    });
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

/// Every extreme a setter accepts works at request time: no panic, the
/// final frame as documented.
#[tokio::test(start_paused = true)]
async fn extreme_settings_that_are_accepted_never_panic_later() {
    let shutdown = Shutdown::new();
    for builder in [
        CloseLayer::builder().max_lifetime(Duration::MAX),
        CloseLayer::builder().max_lifetime(Duration::from_nanos(1)),
        CloseLayer::builder().reconnect_delay(Duration::ZERO, Duration::ZERO),
        CloseLayer::builder().reconnect_delay(MAX_RETRY, MAX_RETRY),
        CloseLayer::builder().reconnect_delay(Duration::ZERO, MAX_RETRY),
    ] {
        let layer = builder.shutdown(&shutdown).build().unwrap();
        let (_tx, mut body, _handle) = stream_body(&layer).await;
        let _ = poll(&mut body);
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = poll(&mut body);
    }
    shutdown.trigger();
    let layer = CloseLayer::builder()
        .shutdown(&shutdown)
        .reconnect_delay(MAX_RETRY, MAX_RETRY)
        .build()
        .unwrap();
    let (_tx, mut body, _handle) = stream_body(&layer).await;
    assert_eq!(
        &ready_data(&mut body)[..],
        format!("retry: {}\nevent: sse-retry\ndata:\n\n", i32::MAX).as_bytes()
    );
}

#[test]
fn random_delays_stay_in_range_and_spread() {
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let delay = random_between(min, max);
        assert!((min..=max).contains(&delay));
        seen.insert(delay.as_millis());
    }
    assert!(seen.len() >= 10, "{seen:?}");
    assert_eq!(random_between(max, max), max);
}

#[tokio::test]
async fn the_handle_is_in_the_extensions_and_readiness_is_forwarded() {
    crate::test_util::assert_forwards_readiness(CloseLayer::new()).await;
    let (service, mut handle) = tower_test::mock::pair::<Request<()>, Response<String>>();
    let service = CloseLayer::new().layer(service);
    handle.allow(1);
    let call = tokio::spawn(service.oneshot(Request::new(())));
    let (request, send) = handle.next_request().await.unwrap();
    assert!(request.extensions().get::<CloseHandle>().is_some());
    send.send_response(Response::new(String::new()));
    call.await.unwrap().unwrap();
}

#[cfg(feature = "tracing")]
mod tracing_logs {
    use std::sync::{Arc, Mutex};

    use tracing::{
        field::{Field, Visit},
        span, Event, Metadata, Subscriber,
    };

    use super::*;

    /// A subscriber that keeps each event's fields as `name=value` text.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= tracing::Level::DEBUG
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(format!("{} ", event.metadata().level()));
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    #[tokio::test]
    async fn open_and_close_are_logged_at_debug_with_the_reason() {
        let recorder = Recorder::default();
        let _guard = tracing::subscriber::set_default(recorder.clone());
        let (tx, body, _handle) = stream_body(&CloseLayer::new()).await;
        drop((tx, body));
        let lines = recorder.0.lock().unwrap().clone();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("DEBUG") && lines[0].contains("event stream opened"));
        assert!(lines[0].contains("path=\"/events\""), "{lines:?}");
        assert!(lines[1].contains("event stream closed"));
        assert!(lines[1].contains("reason=client_gone"), "{lines:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn triggered_and_deadline_wait_for_the_trigger_whenever_it_comes() {
    let shutdown = Shutdown::new();
    let waiting = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.triggered().await }
    });
    let deadline = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.deadline(Duration::from_secs(5)).await;
            tokio::time::Instant::now()
        }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!waiting.is_finished() && !deadline.is_finished());
    shutdown.trigger();
    let triggered_at = tokio::time::Instant::now();
    waiting.await.unwrap();
    assert_eq!(
        deadline.await.unwrap() - triggered_at,
        Duration::from_secs(5)
    );
    // Long after the trigger: at once, since the grace counts from the
    // trigger; a later trigger does not move it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    shutdown.trigger();
    let start = tokio::time::Instant::now();
    shutdown.triggered().await;
    shutdown.deadline(Duration::from_secs(5)).await;
    shutdown.deadline(Duration::from_secs(30)).await;
    assert_eq!(tokio::time::Instant::now() - start, Duration::ZERO);
    // Partway through the grace: the rest of it.
    shutdown.deadline(Duration::from_secs(70)).await;
    assert_eq!(
        tokio::time::Instant::now() - triggered_at,
        Duration::from_secs(70)
    );
    // A grace beyond any clock never ends.
    let never = tokio::time::timeout(Duration::from_secs(3600), shutdown.deadline(Duration::MAX));
    assert!(never.await.is_err());
}

/// An event-stream service whose response carries `flag`, as a hub
/// subscription's does.
fn lag_marked(
    flag: &crate::body::EndSignal,
) -> impl tower::Service<Request<()>, Response = Response<Full<Bytes>>, Error = io::Error> + Clone {
    let marked = flag.clone();
    service_fn(move |_request: Request<()>| {
        let mut response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from_static(b"retry: 1000\n\n")))
            .unwrap();
        response.extensions_mut().insert(marked.clone());
        async move { Ok::<_, io::Error>(response) }
    })
}

/// Reads the stream's one frame, sets `flag` if `lagged`, then reads its
/// end.
async fn read_lagging<B>(body: B, flag: &crate::body::EndSignal, lagged: bool)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = Box::pin(body);
    assert!(body.frame().await.unwrap().is_ok());
    if lagged {
        flag.set(crate::body::EarlyEnd::Lagged);
    }
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn a_stream_that_ends_because_its_client_lagged_is_lagged() {
    for lagged in [true, false] {
        let (layer, seen) = recording(CloseLayer::builder());
        let flag = crate::body::EndSignal::default();
        let service = layer.layer(lag_marked(&flag));
        let response = service.oneshot(Request::new(())).await.unwrap();
        read_lagging(response.into_body(), &flag, lagged).await;
        let expected = if lagged {
            CloseReason::Lagged
        } else {
            CloseReason::Completed
        };
        assert_eq!(reasons(&seen), [expected]);
    }
}

#[tokio::test]
async fn nested_close_layers_both_see_a_lagged_stream() {
    let (outer, outer_seen) = recording(CloseLayer::builder());
    let (inner, inner_seen) = recording(CloseLayer::builder());
    let flag = crate::body::EndSignal::default();
    let service = outer.layer(inner.layer(lag_marked(&flag)));
    let response = service.oneshot(Request::new(())).await.unwrap();
    read_lagging(response.into_body(), &flag, true).await;
    assert_eq!(reasons(&inner_seen), [CloseReason::Lagged]);
    assert_eq!(reasons(&outer_seen), [CloseReason::Lagged]);
}

//! Helpers shared by the layers' unit tests.

use std::task::Poll;

#[cfg(feature = "layers")]
use http::{Request, Response};
#[cfg(feature = "layers")]
use tower_layer::Layer;
#[cfg(feature = "layers")]
use tower_service::Service;
#[cfg(feature = "layers")]
use tower_test::mock::{self, Mock};

#[cfg(feature = "layers")]
type MockService = Mock<Request<()>, Response<String>>;

/// Asserts that the service `layer` builds around a mock forwards the mock's
/// readiness, and calls the mock exactly once per call.
#[cfg(feature = "layers")]
pub(crate) async fn assert_forwards_readiness<L, B>(layer: L)
where
    L: Layer<MockService>,
    L::Service: Service<Request<()>, Response = Response<B>>,
    <L::Service as Service<Request<()>>>::Error: std::fmt::Debug,
{
    let (mut service, mut handle) = mock::spawn_layer(layer);

    handle.allow(0);
    assert!(service.poll_ready().is_pending(), "readiness is forwarded");
    handle.allow(1);
    assert!(
        matches!(service.poll_ready(), Poll::Ready(Ok(()))),
        "readiness is forwarded"
    );

    let response = service.call(Request::new(()));
    let (_request, send) = handle
        .next_request()
        .await
        .expect("the inner service was called");
    send.send_response(Response::new("inner".to_owned()));
    response.await.expect("the response passes through");
    assert!(
        handle.poll_request().is_pending(),
        "the inner service was called once"
    );
}

/// Polls `body` until it waits, keeping every data frame, as a server does
/// for a client that stopped reading; panics on anything else.
pub(crate) fn frames_until_pending<B>(
    body: &mut B,
    cx: &mut std::task::Context<'_>,
) -> Vec<bytes::Bytes>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut held = Vec::new();
    loop {
        match std::pin::Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                held.push(frame.into_data().expect("a data frame"));
            }
            Poll::Pending => return held,
            other => panic!("expected a frame or a wait, got {other:?}"),
        }
        assert!(held.len() < 10_000, "the body never waited");
    }
}

/// A waker that counts how often it was woken.
pub(crate) struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CountingWaker {
    /// How often it was woken.
    pub(crate) fn load(&self, ordering: std::sync::atomic::Ordering) -> usize {
        self.0.load(ordering)
    }
}

/// A waker and its count of wake-ups.
pub(crate) fn counting_waker() -> (std::task::Waker, std::sync::Arc<CountingWaker>) {
    let counter = std::sync::Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
    (counter.clone().into(), counter)
}

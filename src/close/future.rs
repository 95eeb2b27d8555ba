use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{Method, Response, Uri};
use pin_project::{pin_project, pinned_drop};

use super::{body::Tracker, layer::Config, CloseBody, CloseHandle, CloseReason};
use crate::{body::EndSignal, media::is_event_stream};

/// The response future of [`Close`](super::Close).
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    pending: Option<Pending>,
}

/// What the future hands to the body once the response is there.
struct Pending {
    handle: CloseHandle,
    config: Arc<Config>,
    origin: Option<Box<(Method, Uri)>>,
    /// A `HEAD` request: the server sends no body and drops it unread.
    head: bool,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        handle: CloseHandle,
        config: Arc<Config>,
        origin: Option<Box<(Method, Uri)>>,
        head: bool,
    ) -> Self {
        Self {
            inner,
            pending: Some(Pending {
                handle,
                config,
                origin,
                head,
            }),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CloseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let pending = this
            .pending
            .take()
            .expect("ResponseFuture polled after completion");
        match result {
            Ok(response) => {
                let stream = is_event_stream(response.headers());
                // Read, not taken: a second `CloseLayer` around this one
                // reports the same reason.
                let lag = response.extensions().get::<EndSignal>().cloned();
                let tracker =
                    Tracker::new(pending.handle, pending.config, pending.origin, stream, lag);
                if pending.head {
                    // Dropped unread, as it should be: complete, not gone.
                    tracker.ended();
                }
                Poll::Ready(Ok(response.map(|body| CloseBody::new(body, tracker))))
            }
            Err(error) => {
                pending.handle.close(CloseReason::Error);
                Poll::Ready(Err(error))
            }
        }
    }
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        // Dropped before the response: nobody will read the stream.
        if let Some(pending) = self.project().pending.take() {
            pending.handle.close(CloseReason::ClientGone);
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

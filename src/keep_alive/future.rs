use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::Response;
use pin_project::pin_project;

use super::{layer::Config, KeepAliveBody};
use crate::media::is_event_stream;

/// The response future of [`KeepAlive`](super::KeepAlive).
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    config: Option<Arc<Config>>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, config: Arc<Config>) -> Self {
        Self {
            inner,
            config: Some(config),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<KeepAliveBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let config = this
            .config
            .take()
            .expect("ResponseFuture polled after completion");
        let stream = config.enabled && is_event_stream(response.headers());
        Poll::Ready(Ok(response.map(|body| {
            if stream {
                KeepAliveBody::active(body, config)
            } else {
                KeepAliveBody::passthrough(body)
            }
        })))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{layer::Config, CloseBody, CloseHandle, CloseLayer, ResponseFuture};

/// The service built by [`CloseLayer`].
pub struct Close<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S> Close<S> {
    /// Wraps `inner` with the default [`CloseLayer`].
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&CloseLayer::new(), inner)
    }

    /// A layer that builds this service; the same as [`CloseLayer::new`].
    pub fn layer() -> CloseLayer {
        CloseLayer::new()
    }

    inner_service_accessors!();
}

impl<S: Clone> Clone for Close<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Close<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Close")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Close<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + AsRef<[u8]>,
{
    type Response = Response<CloseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let handle = CloseHandle::new(self.config.stats.clone());
        request.extensions_mut().insert(handle.clone());
        let origin = (self.config.on_close.is_some() || cfg!(feature = "tracing"))
            .then(|| Box::new((request.method().clone(), request.uri().clone())));
        let head = request.method() == http::Method::HEAD;
        ResponseFuture::new(
            self.inner.call(request),
            handle,
            self.config.clone(),
            origin,
            head,
        )
    }
}

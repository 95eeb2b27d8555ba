use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{layer::Config, KeepAliveBody, KeepAliveLayer, ResponseFuture};

/// The service built by [`KeepAliveLayer`].
pub struct KeepAlive<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S> KeepAlive<S> {
    /// Wraps `inner` with the default [`KeepAliveLayer`].
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&KeepAliveLayer::new(), inner)
    }

    /// A layer that builds this service; the same as [`KeepAliveLayer::new`].
    pub fn layer() -> KeepAliveLayer {
        KeepAliveLayer::new()
    }

    inner_service_accessors!();
}

impl<S: Clone> Clone for KeepAlive<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for KeepAlive<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAlive")
            .field("inner", &self.inner)
            .field("interval", &self.config.interval)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeepAlive<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + AsRef<[u8]>,
{
    type Response = Response<KeepAliveBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), self.config.clone())
    }
}

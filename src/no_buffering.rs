//! [`NoBufferingLayer`]: tells proxies to pass each event through at once.
//!
//! On responses whose media type is `text/event-stream` the layer sets:
//!
//! - `X-Accel-Buffering: no`, which makes nginx pass the response through
//!   without buffering it (nginx buffers proxied responses by default, so
//!   events arrive late and in batches);
//! - the `no-transform` directive of `Cache-Control`, added to the
//!   directives the handler set (or to `no-cache`, the same default as
//!   `SseHeadersLayer` (feature `layers`), when it set none), so that
//!   transforming proxies and CDNs do not compress or rewrite the stream.
//!
//! Every other response passes through exactly as it was.
//!
//! # Compression
//!
//! A compressor holds bytes back until it has enough to compress, which
//! delays events the same way proxy buffering does. tower-http's
//! `CompressionLayer` skips `text/event-stream` with its default predicate,
//! but a custom predicate (`SizeAbove`, say) compresses event streams too, and
//! it does not look at `no-transform`. Two ways out:
//!
//! - keep `text/event-stream` out of the predicate:
//!   `predicate.and(NotForContentType::const_new("text/event-stream"))`;
//! - or turn on [`NoBufferingLayer::identity_encoding`]: the layer then sets
//!   `Content-Encoding: identity` on event streams that have no
//!   `Content-Encoding`, and compressors that never re-encode an encoded
//!   response (tower-http's and nginx's `gzip`) leave the stream alone. It is
//!   off by default because HTTP discourages `identity` in
//!   `Content-Encoding` (RFC 9110, section 8.4.1).
//!
//! Either way the compression layer must sit outside this one (added after
//! it with `ServiceBuilder`, or with a later `.layer()` call in axum), so
//! that it sees the headers this layer sets.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::NoBufferingLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(NoBufferingLayer::new())
//!     .service(service_fn(|_request: Request<()>| async {
//!         let response = Response::builder()
//!             .header("content-type", "text/event-stream")
//!             .body(String::new())
//!             .unwrap();
//!         Ok::<_, Infallible>(response)
//!     }));
//!
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.headers()["x-accel-buffering"], "no");
//! assert_eq!(response.headers()["cache-control"], "no-cache, no-transform");
//! # }
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::BytesMut;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::media::{is_event_stream, list_items, NO_CACHE_NO_TRANSFORM};

/// The `X-Accel-Buffering` response header, read by nginx.
pub static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Tells proxies not to buffer or transform event streams; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct NoBufferingLayer {
    identity_encoding: bool,
    /// Off: every response passes through (used by the bundle's switch).
    enabled: bool,
}

impl Default for NoBufferingLayer {
    fn default() -> Self {
        Self {
            identity_encoding: false,
            enabled: true,
        }
    }
}

impl NoBufferingLayer {
    /// A layer that sets `X-Accel-Buffering: no` and `no-transform`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also sets `Content-Encoding: identity` on event streams without a
    /// `Content-Encoding`, so that compression layers that never re-encode
    /// leave them alone (see [Compression](self#compression)).
    ///
    /// Default: off.
    pub fn identity_encoding(mut self, on: bool) -> Self {
        self.identity_encoding = on;
        self
    }

    /// A layer that passes every response through (the bundle's off switch).
    pub(crate) fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

impl<S> Layer<S> for NoBufferingLayer {
    type Service = NoBuffering<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NoBuffering {
            inner,
            layer: *self,
        }
    }
}

/// The service built by [`NoBufferingLayer`].
#[derive(Debug)]
pub struct NoBuffering<S> {
    inner: S,
    layer: NoBufferingLayer,
}

impl<S> NoBuffering<S> {
    /// Wraps `inner` with the default [`NoBufferingLayer`].
    pub fn new(inner: S) -> Self {
        NoBufferingLayer::new().layer(inner)
    }

    /// A layer that builds this service; the same as
    /// [`NoBufferingLayer::new`].
    pub fn layer() -> NoBufferingLayer {
        NoBufferingLayer::new()
    }

    inner_service_accessors!();
}

impl<S: Clone> Clone for NoBuffering<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for NoBuffering<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            layer: self.layer,
        }
    }
}

/// The response future of [`NoBuffering`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    layer: NoBufferingLayer,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if this.layer.enabled {
            set_headers(response.headers_mut(), this.layer.identity_encoding);
        }
        Poll::Ready(Ok(response))
    }
}

fn set_headers(headers: &mut HeaderMap, identity_encoding: bool) {
    if !is_event_stream(headers) {
        return;
    }
    headers.insert(&X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    add_no_transform(headers);
    if identity_encoding && !headers.contains_key(header::CONTENT_ENCODING) {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
}

/// Adds `no-transform` to `Cache-Control`, keeping every directive already
/// there (joined into one header line when there were several).
fn add_no_transform(headers: &mut HeaderMap) {
    let values = headers.get_all(header::CACHE_CONTROL);
    if values.iter().next().is_none() {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(NO_CACHE_NO_TRANSFORM),
        );
        return;
    }
    let has_no_transform = list_items(headers, header::CACHE_CONTROL)
        .any(|directive| directive.eq_ignore_ascii_case(b"no-transform"));
    if has_no_transform {
        return;
    }
    let mut joined = BytesMut::new();
    for value in values {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(b"no-transform");
    // Joining valid header values with ", " keeps them valid.
    if let Ok(value) = HeaderValue::from_maybe_shared(joined.freeze()) {
        headers.insert(header::CACHE_CONTROL, value);
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, ServiceExt};

    use super::*;

    async fn respond(layer: NoBufferingLayer, headers: &[(HeaderName, &'static str)]) -> HeaderMap {
        let headers = headers.to_vec();
        let service = layer.layer(service_fn(move |_request: Request<()>| {
            let mut response = Response::new(());
            for (name, value) in &headers {
                response
                    .headers_mut()
                    .append(name.clone(), HeaderValue::from_static(value));
            }
            async move { Ok::<_, Infallible>(response) }
        }));
        service
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .headers()
            .clone()
    }

    fn sse() -> (HeaderName, &'static str) {
        (header::CONTENT_TYPE, "text/event-stream")
    }

    #[tokio::test]
    async fn event_stream_gets_x_accel_buffering_no_and_no_transform() {
        let headers = respond(NoBufferingLayer::new(), &[sse()]).await;
        assert_eq!(headers[&X_ACCEL_BUFFERING], "no");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
        assert!(!headers.contains_key(header::CONTENT_ENCODING));
    }

    #[tokio::test]
    async fn no_transform_is_added_to_the_handlers_directives() {
        let headers = respond(
            NoBufferingLayer::new(),
            &[sse(), (header::CACHE_CONTROL, "public, max-age=5")],
        )
        .await;
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=5, no-transform"
        );
    }

    #[tokio::test]
    async fn several_cache_control_lines_are_joined_with_no_transform() {
        let headers = respond(
            NoBufferingLayer::new(),
            &[
                sse(),
                (header::CACHE_CONTROL, "private"),
                (header::CACHE_CONTROL, "max-age=0"),
            ],
        )
        .await;
        let values: Vec<_> = headers.get_all(header::CACHE_CONTROL).iter().collect();
        assert_eq!(values, ["private, max-age=0, no-transform"]);
    }

    #[tokio::test]
    async fn an_existing_no_transform_is_not_added_twice() {
        let headers = respond(
            NoBufferingLayer::new(),
            &[sse(), (header::CACHE_CONTROL, "no-store,  No-Transform ")],
        )
        .await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store,  No-Transform ");
    }

    #[tokio::test]
    async fn handler_x_accel_buffering_yes_is_overridden_on_event_streams() {
        let headers = respond(
            NoBufferingLayer::new(),
            &[sse(), (X_ACCEL_BUFFERING.clone(), "yes")],
        )
        .await;
        assert_eq!(headers[&X_ACCEL_BUFFERING], "no");
    }

    #[tokio::test]
    async fn identity_encoding_marks_event_streams_without_an_encoding() {
        let layer = NoBufferingLayer::new().identity_encoding(true);
        let headers = respond(layer, &[sse()]).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "identity");

        let headers = respond(layer, &[sse(), (header::CONTENT_ENCODING, "br")]).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "br");
    }

    #[tokio::test]
    async fn other_responses_are_left_exactly_as_they_were() {
        let original = [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=60"),
        ];
        let layer = NoBufferingLayer::new().identity_encoding(true);
        let headers = respond(layer, &original).await;
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=60");
        assert!(respond(layer, &[]).await.is_empty());
    }

    #[tokio::test]
    async fn readiness_is_forwarded_and_the_inner_service_called_once() {
        crate::test_util::assert_forwards_readiness(NoBufferingLayer::new()).await;
    }
}

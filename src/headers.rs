//! [`SseHeadersLayer`]: the response headers an event stream needs, right for
//! each HTTP version.
//!
//! On responses whose media type is `text/event-stream` the layer:
//!
//! - sets `Cache-Control: no-cache` when the handler set no `Cache-Control`
//!   (a handler that sets its own, for a CDN fan-out, keeps it);
//! - removes `Content-Length`: an event stream has no length;
//! - removes `Connection` on HTTP/2 and later, where it is illegal (hyper
//!   strips it with a warning, and Safari drops the whole connection when it
//!   sees it), and never adds one on HTTP/1: HTTP/1.1 keeps connections open
//!   by default, and only the server knows when it will not (a client that
//!   asked to close, HTTP/1.0, keep-alive switched off, graceful shutdown),
//!   so a `Connection: keep-alive` from a layer could contradict the
//!   `close` the server adds (`keep-alive, close`);
//! - never adds `Transfer-Encoding`: the server owns framing.
//!
//! Every other response passes through exactly as it was. With
//! [`SseHeadersLayer::assume_event_stream`] the layer also sets
//! `Content-Type: text/event-stream` on responses that have no
//! `Content-Type`, for routes that only ever stream.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response, Version};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::SseHeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(SseHeadersLayer::new().assume_event_stream(true))
//!     .service(service_fn(|_request: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     }));
//!
//! let request = Request::builder().version(Version::HTTP_11).body(()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["content-type"], "text/event-stream");
//! assert_eq!(response.headers()["cache-control"], "no-cache");
//! assert!(!response.headers().contains_key("connection"));
//! # }
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{header, HeaderMap, HeaderValue, Request, Response, Version};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::media::{is_event_stream, NO_CACHE, TEXT_EVENT_STREAM};

/// Adds the headers an event stream needs; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct SseHeadersLayer {
    assume_event_stream: bool,
}

impl SseHeadersLayer {
    /// A layer that acts on responses that declare `text/event-stream`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Treats a response without `Content-Type` as an event stream and sets
    /// `Content-Type: text/event-stream` on it. A response with another
    /// `Content-Type` (a JSON error, say) is still left alone.
    ///
    /// Default: off.
    pub fn assume_event_stream(mut self, assume: bool) -> Self {
        self.assume_event_stream = assume;
        self
    }
}

impl<S> Layer<S> for SseHeadersLayer {
    type Service = SseHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseHeaders {
            inner,
            layer: *self,
        }
    }
}

/// The service built by [`SseHeadersLayer`].
#[derive(Debug)]
pub struct SseHeaders<S> {
    inner: S,
    layer: SseHeadersLayer,
}

impl<S> SseHeaders<S> {
    /// Wraps `inner` with the default [`SseHeadersLayer`].
    pub fn new(inner: S) -> Self {
        SseHeadersLayer::new().layer(inner)
    }

    /// A layer that builds this service; the same as [`SseHeadersLayer::new`].
    pub fn layer() -> SseHeadersLayer {
        SseHeadersLayer::new()
    }

    inner_service_accessors!();
}

impl<S: Clone> Clone for SseHeaders<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseHeaders<S>
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
        // `Connection` is a hop-by-hop header of HTTP/1: illegal from HTTP/2
        // on. On HTTP/1 the layer leaves it to the server, which alone knows
        // whether it will keep the connection (HTTP/1.1 keeps it by default;
        // hyper says `close` when the client asked, on HTTP/1.0 without
        // keep-alive, with keep-alive off and during graceful shutdown).
        let remove_connection = request.version() >= Version::HTTP_2;
        ResponseFuture {
            remove_connection,
            inner: self.inner.call(request),
            assume_event_stream: self.layer.assume_event_stream,
        }
    }
}

/// The response future of [`SseHeaders`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    remove_connection: bool,
    assume_event_stream: bool,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        set_headers(
            response.headers_mut(),
            *this.remove_connection,
            *this.assume_event_stream,
        );
        Poll::Ready(Ok(response))
    }
}

fn set_headers(headers: &mut HeaderMap, remove_connection: bool, assume_event_stream: bool) {
    if assume_event_stream && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TEXT_EVENT_STREAM),
        );
    }
    if !is_event_stream(headers) {
        return;
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    }
    headers.remove(header::CONTENT_LENGTH);
    if remove_connection {
        headers.remove(header::CONNECTION);
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{header::HeaderName, HeaderValue};
    use tower::{service_fn, ServiceExt};

    use super::*;

    /// Calls a handler that answers with `headers`, through `layer`, for a
    /// request of `version`.
    async fn respond(
        layer: SseHeadersLayer,
        version: Version,
        headers: &[(HeaderName, &'static str)],
    ) -> HeaderMap {
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
        let request = Request::builder().version(version).body(()).unwrap();
        service.oneshot(request).await.unwrap().headers().clone()
    }

    fn sse() -> (HeaderName, &'static str) {
        (header::CONTENT_TYPE, "text/event-stream")
    }

    #[tokio::test]
    async fn event_stream_gets_no_cache_and_no_connection_header_on_http1() {
        for version in [Version::HTTP_10, Version::HTTP_11] {
            let headers = respond(SseHeadersLayer::new(), version, &[sse()]).await;
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(!headers.contains_key(header::CONNECTION), "{version:?}");
            assert!(!headers.contains_key(header::TRANSFER_ENCODING));
        }
    }

    #[tokio::test]
    async fn no_connection_header_on_http2_or_later_even_when_the_handler_set_one() {
        for version in [Version::HTTP_2, Version::HTTP_3] {
            let headers = respond(SseHeadersLayer::new(), version, &[sse()]).await;
            assert!(!headers.contains_key(header::CONNECTION), "{version:?}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");

            let headers = respond(
                SseHeadersLayer::new(),
                version,
                &[sse(), (header::CONNECTION, "keep-alive")],
            )
            .await;
            assert!(!headers.contains_key(header::CONNECTION), "{version:?}");
        }
    }

    #[tokio::test]
    async fn handler_cache_control_and_connection_are_kept() {
        let headers = respond(
            SseHeadersLayer::new(),
            Version::HTTP_11,
            &[
                sse(),
                (header::CACHE_CONTROL, "public, max-age=1"),
                (header::CONNECTION, "close"),
            ],
        )
        .await;
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=1");
        assert_eq!(headers[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn content_length_is_removed_from_event_streams() {
        let headers = respond(
            SseHeadersLayer::new(),
            Version::HTTP_11,
            &[sse(), (header::CONTENT_LENGTH, "12")],
        )
        .await;
        assert!(!headers.contains_key(header::CONTENT_LENGTH));
    }

    #[tokio::test]
    async fn other_responses_are_left_exactly_as_they_were() {
        let original = [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_LENGTH, "2"),
        ];
        for layer in [
            SseHeadersLayer::new(),
            SseHeadersLayer::new().assume_event_stream(true),
        ] {
            let headers = respond(layer, Version::HTTP_11, &original).await;
            assert_eq!(headers.len(), 2);
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(headers[header::CONTENT_LENGTH], "2");
        }
        // Without a content type and without `assume_event_stream`: untouched.
        let headers = respond(SseHeadersLayer::new(), Version::HTTP_11, &[]).await;
        assert!(headers.is_empty());
    }

    #[tokio::test]
    async fn assume_event_stream_sets_the_content_type_when_none_was_set() {
        let layer = SseHeadersLayer::new().assume_event_stream(true);
        let headers = respond(layer, Version::HTTP_2, &[]).await;
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn media_type_with_parameters_and_other_case_is_an_event_stream() {
        let headers = respond(
            SseHeadersLayer::new(),
            Version::HTTP_11,
            &[(header::CONTENT_TYPE, "Text/Event-Stream; charset=utf-8")],
        )
        .await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn readiness_is_forwarded_and_the_inner_service_called_once() {
        crate::test_util::assert_forwards_readiness(SseHeadersLayer::new()).await;
    }
}

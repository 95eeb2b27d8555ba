//! [`SseLayer`]: every layer, in the right order, with one `.layer()`.
//!
//! ```text
//! request ->  SseCorsLayer       may this origin open a stream? (off until origins are given)
//!             CloseLayer         close handle, reason on close, shutdown, max lifetime
//!             SseHeadersLayer    Content-Type, Cache-Control, no Connection on HTTP/2
//!             NoBufferingLayer   X-Accel-Buffering: no, Cache-Control no-transform
//!             KeepAliveLayer     comment frames when the stream is idle
//!             your service
//! ```
//!
//! Why this order: CORS is outermost so that a refused origin costs nothing
//! (no handle, no stream). Close wraps everything that writes, so that the
//! bytes it counts and the event boundary it waits for include the
//! keep-alive comments, and so that its final frame is the last thing
//! written. Headers and no-buffering only touch headers; keep-alive sits
//! next to the handler, so the comments it adds pass through close's
//! accounting.
//!
//! The defaults are right for a public deployment behind nginx: a comment
//! every 15 seconds, `X-Accel-Buffering: no`, `Cache-Control: no-cache,
//! no-transform`, close reasons on. Like each layer, the bundle passes
//! responses that are not event streams through untouched (their bodies are
//! wrapped, never changed) and keeps the body's `Data` type, so it can wrap
//! a whole tonic server.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use futures_util::stream;
//! use http::{Request, Version};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::{Event, EventStream, Shutdown, SseCorsLayer, SseLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::new();
//! let layer = SseLayer::new()
//!     .cors(SseCorsLayer::builder().allow_origin("https://app.example.com").build()?)
//!     .shutdown(&shutdown);
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_request: Request<()>| async {
//!         let events = stream::iter([Event::new().data("hello")]);
//!         Ok::<_, Infallible>(EventStream::new(events).into_http_response())
//!     }));
//!
//! let request = Request::builder().version(Version::HTTP_11).body(())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.headers()["cache-control"], "no-cache, no-transform");
//! assert_eq!(response.headers()["x-accel-buffering"], "no");
//! # Ok(())
//! # }
//! ```

use tower_layer::Layer;

use crate::{
    close::{Close, CloseLayer, Shutdown},
    cors::{SseCors, SseCorsLayer},
    headers::{SseHeaders, SseHeadersLayer},
    keep_alive::{KeepAlive, KeepAliveLayer},
    no_buffering::{NoBuffering, NoBufferingLayer},
};

/// The service [`SseLayer`] builds: the five layers around `S`.
pub type Sse<S> = SseCors<Close<SseHeaders<NoBuffering<KeepAlive<S>>>>>;

/// The response body of [`Sse`], around the inner service's body `B`.
pub type SseBody<B> =
    crate::cors::CorsBody<crate::close::CloseBody<crate::keep_alive::KeepAliveBody<B>>>;

/// All five layers in the order of the [module docs](self), each
/// configurable or, where it makes sense, switched off.
#[derive(Debug, Clone)]
#[must_use]
pub struct SseLayer {
    cors: SseCorsLayer,
    close: CloseLayer,
    /// Given with [`SseLayer::shutdown`]; applied to whichever close layer
    /// the bundle ends up with.
    shutdown: Option<Shutdown>,
    headers: SseHeadersLayer,
    no_buffering: NoBufferingLayer,
    keep_alive: KeepAliveLayer,
}

impl SseLayer {
    /// Every layer with its defaults; CORS off (requests pass through)
    /// until [`cors`](SseLayer::cors) gives it origins.
    pub fn new() -> Self {
        Self {
            cors: SseCorsLayer::off(),
            close: CloseLayer::new(),
            shutdown: None,
            headers: SseHeadersLayer::new(),
            no_buffering: NoBufferingLayer::new(),
            keep_alive: KeepAliveLayer::new(),
        }
    }

    /// CORS with the given layer (built with [`SseCorsLayer::builder`]).
    ///
    /// Default: off.
    pub fn cors(mut self, cors: SseCorsLayer) -> Self {
        self.cors = cors;
        self
    }

    /// The close layer (shutdown, maximum lifetime, `on_close`).
    ///
    /// Default: [`CloseLayer::new`].
    pub fn close(mut self, close: CloseLayer) -> Self {
        self.close = match &self.shutdown {
            Some(shutdown) => close.with_shutdown(shutdown),
            None => close,
        };
        self
    }

    /// Ends every open event stream when `shutdown` is triggered; the same
    /// as configuring it on the [`close`](SseLayer::close) layer, before or
    /// after that layer is given. It replaces a trigger the close layer was
    /// built with: a close layer has one.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.close = self.close.with_shutdown(shutdown);
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// The headers layer.
    ///
    /// Default: [`SseHeadersLayer::new`].
    pub fn headers(mut self, headers: SseHeadersLayer) -> Self {
        self.headers = headers;
        self
    }

    /// The no-buffering layer.
    ///
    /// Default: [`NoBufferingLayer::new`].
    pub fn no_buffering(mut self, no_buffering: NoBufferingLayer) -> Self {
        self.no_buffering = no_buffering;
        self
    }

    /// Lets proxies buffer: switches the no-buffering headers off (for a
    /// deployment with no proxy, or one configured to stream already).
    pub fn allow_buffering(mut self) -> Self {
        self.no_buffering = NoBufferingLayer::off();
        self
    }

    /// The keep-alive layer.
    ///
    /// Default: [`KeepAliveLayer::new`] (a comment after 15 s of silence).
    pub fn keep_alive(mut self, keep_alive: KeepAliveLayer) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Switches keep-alive comments off.
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = KeepAliveLayer::off();
        self
    }

    /// Open streams and live handles, from the close layer.
    pub fn stats(&self) -> crate::close::CloseStats {
        self.close.stats()
    }
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = Sse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.keep_alive.layer(inner);
        let inner = self.no_buffering.layer(inner);
        let inner = self.headers.layer(inner);
        let inner = self.close.layer(inner);
        self.cors.layer(inner)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use http::{header, Request, Response, StatusCode};
    use tower_test::mock;

    use super::*;
    use crate::close::CloseHandle;

    const APP: &str = "https://app.example.com";

    fn every_option_on() -> SseLayer {
        SseLayer::new()
            .cors(SseCorsLayer::builder().allow_origin(APP).build().unwrap())
            .shutdown(&Shutdown::new())
    }

    #[tokio::test]
    async fn the_bundle_forwards_readiness_and_calls_the_inner_service_once() {
        crate::test_util::assert_forwards_readiness(every_option_on()).await;
    }

    fn stream_request(origin: &str) -> Request<()> {
        Request::get("/events")
            .header(header::ORIGIN, origin)
            .header(header::ACCEPT, "text/event-stream")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn an_allowed_stream_reaches_the_mock_with_a_close_handle_and_gets_every_header() {
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(every_option_on());
        handle.allow(1);
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        let response = service.call(stream_request(APP));
        let (request, send) = handle.next_request().await.expect("the mock was called");
        assert!(request.extensions().get::<CloseHandle>().is_some());
        let mut inner = Response::new("data: one\n\n".to_owned());
        inner
            .headers_mut()
            .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        send.send_response(inner);
        let response = response.await.unwrap();
        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
        assert_eq!(headers["x-accel-buffering"], "no");
    }

    #[tokio::test]
    async fn a_refused_origin_gets_403_and_the_mock_is_never_called() {
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(every_option_on());
        handle.allow(1);
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        let response = service
            .call(stream_request("https://evil.example"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(handle.poll_request().is_pending(), "never called");
    }

    #[tokio::test]
    async fn other_responses_pass_through_the_bundle_untouched() {
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<()>, Response<String>, _>(every_option_on());
        handle.allow(1);
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        let request = Request::post("/api/items")
            .header(header::ORIGIN, APP)
            .body(())
            .unwrap();
        let response = service.call(request);
        let (_request, send) = handle.next_request().await.unwrap();
        let mut inner = Response::new("{}".to_owned());
        inner
            .headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        send.send_response(inner);
        let response = response.await.unwrap();
        assert_eq!(response.headers().len(), 1, "{:?}", response.headers());
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// An idle stream costs what hyper keeps for it: the body for the
    /// stream's life, and the room of the response future for the
    /// connection's (hyper keeps it for the next request). The body was
    /// larger by 240 bytes, the future by 48, while the keep-alive layer
    /// copied its settings into each and the close layer held an unused
    /// lifetime timer inline. (The CORS headers stay inline in the future:
    /// boxing them saved 80 bytes of heap and, with glibc's allocator,
    /// cost the idle load test 1.4 kB of resident memory per connection
    /// in one measurement, 2026-12-07.)
    #[tokio::test]
    async fn the_stack_adds_little_to_an_idle_streams_body_and_future() {
        use std::mem::{size_of, size_of_val};
        use tower_service::Service;
        let respond = |_: Request<()>| {
            std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(
                String::new(),
            )))
        };
        let mut service = every_option_on().layer(tower::service_fn(respond));
        let inner = respond(stream_request(APP));
        let future = service.call(stream_request(APP));
        let added = size_of_val(&future) - size_of_val(&inner);
        assert!(added <= 160, "the layers add {added} bytes to the future");
        let response = future.await.unwrap();
        let timer = size_of::<tokio::time::Sleep>();
        let added = size_of_val(response.body()) - size_of::<String>() - timer;
        assert!(
            added <= 160,
            "the layers add {added} bytes and a timer to the body"
        );
    }
}

//! [`ServiceBuilderExt`]: `.sse()` and one method per layer on
//! `tower::ServiceBuilder`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use futures_util::stream;
//! use http::Request;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::{Event, EventStream, ServiceBuilderExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .sse()
//!     .service(service_fn(|_request: Request<()>| async {
//!         let events = stream::iter([Event::new().data("hello")]);
//!         Ok::<_, Infallible>(EventStream::new(events).into_http_response())
//!     }));
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.headers()["x-accel-buffering"], "no");
//! # }
//! ```

use tower::ServiceBuilder;
use tower_layer::Stack;

use crate::{
    CloseLayer, KeepAliveLayer, NoBufferingLayer, SseCorsLayer, SseHeadersLayer, SseLayer,
};

/// Adds tower-sse's layers to [`tower::ServiceBuilder`].
///
/// This trait is sealed: it is implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds [`SseLayer::new`]: every layer with its defaults.
    fn sse(self) -> ServiceBuilder<Stack<SseLayer, L>>;

    /// Adds an [`SseLayer`] configured by the caller.
    fn sse_with(self, layer: SseLayer) -> ServiceBuilder<Stack<SseLayer, L>>;

    /// Adds an [`SseCorsLayer`].
    fn sse_cors(self, layer: SseCorsLayer) -> ServiceBuilder<Stack<SseCorsLayer, L>>;

    /// Adds a [`CloseLayer`].
    fn sse_close(self, layer: CloseLayer) -> ServiceBuilder<Stack<CloseLayer, L>>;

    /// Adds [`SseHeadersLayer::new`].
    fn sse_headers(self) -> ServiceBuilder<Stack<SseHeadersLayer, L>>;

    /// Adds [`NoBufferingLayer::new`].
    fn sse_no_buffering(self) -> ServiceBuilder<Stack<NoBufferingLayer, L>>;

    /// Adds a [`KeepAliveLayer`].
    fn sse_keep_alive(self, layer: KeepAliveLayer) -> ServiceBuilder<Stack<KeepAliveLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn sse(self) -> ServiceBuilder<Stack<SseLayer, L>> {
        self.layer(SseLayer::new())
    }

    fn sse_with(self, layer: SseLayer) -> ServiceBuilder<Stack<SseLayer, L>> {
        self.layer(layer)
    }

    fn sse_cors(self, layer: SseCorsLayer) -> ServiceBuilder<Stack<SseCorsLayer, L>> {
        self.layer(layer)
    }

    fn sse_close(self, layer: CloseLayer) -> ServiceBuilder<Stack<CloseLayer, L>> {
        self.layer(layer)
    }

    fn sse_headers(self) -> ServiceBuilder<Stack<SseHeadersLayer, L>> {
        self.layer(SseHeadersLayer::new())
    }

    fn sse_no_buffering(self) -> ServiceBuilder<Stack<NoBufferingLayer, L>> {
        self.layer(NoBufferingLayer::new())
    }

    fn sse_keep_alive(self, layer: KeepAliveLayer) -> ServiceBuilder<Stack<KeepAliveLayer, L>> {
        self.layer(layer)
    }
}

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

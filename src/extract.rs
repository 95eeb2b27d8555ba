//! axum integration (feature `axum`, on `axum-core` only): [`LastEventId`]
//! and `CloseHandle` (feature `layers`) as handler arguments, and the hub's
//! `Subscription` and `HubError` (feature `hub`) as handler results.
//!
//! ```
//! # #[cfg(all(feature = "layers", feature = "hub", feature = "layers",
//! #     feature = "layers", feature = "layers", feature = "layers"))]
//! # mod example {
//! use axum::{extract::{Path, State}, routing::get, Router};
//! use tower_sse::{hub::{Hub, HubError, Subscription}, CloseHandle, LastEventId, SseLayer};
//!
//! async fn events(
//!     State(hub): State<Hub>,
//!     Path(room): Path<String>,
//!     last: Option<LastEventId>,
//!     handle: CloseHandle,
//! ) -> Result<Subscription, HubError> {
//!     tokio::spawn(async move {
//!         let reason = handle.closed().await;
//!         println!("stream closed: {reason}");
//!     });
//!     hub.subscribe(&room, last.as_ref().map(LastEventId::as_str)).await
//! }
//!
//! pub fn app(hub: Hub) -> Router {
//!     Router::new()
//!         .route("/events/{room}", get(events))
//!         .layer(SseLayer::new())
//!         .with_state(hub)
//! }
//! # }
//! ```

use std::convert::Infallible;

use axum_core::extract::OptionalFromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
#[cfg(feature = "layers")]
use http::StatusCode;

use crate::LastEventId;

/// `Option<LastEventId>` as a handler argument: `None` without the header
/// (or with one that is not UTF-8), never a rejection. Take it as an
/// `Option`: a bare `LastEventId` argument is not an extractor (axum then
/// says the handler does not satisfy `Handler`).
impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(LastEventId::from_headers(&parts.headers))
    }
}

/// `CloseHandle` as a handler argument, put in the request by `CloseLayer`
/// (or `SseLayer`); without that layer the handler is not called and the
/// response is [`MissingCloseLayer`].
#[cfg(feature = "layers")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for crate::CloseHandle {
    type Rejection = MissingCloseLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<crate::CloseHandle>()
            .cloned()
            .ok_or(MissingCloseLayer)
    }
}

/// The rejection of a `CloseHandle` argument on a route that `CloseLayer`
/// (or `SseLayer`) does not wrap: `500 Internal Server Error` with a text
/// body that names the missing layer (a server bug, not the client's).
#[cfg(feature = "layers")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissingCloseLayer;

#[cfg(feature = "layers")]
impl std::fmt::Display for MissingCloseLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "this route takes a CloseHandle, but no CloseLayer (or SseLayer) wraps it: \
             add `.layer(SseLayer::new())` to the router",
        )
    }
}

#[cfg(feature = "layers")]
impl std::error::Error for MissingCloseLayer {}

#[cfg(feature = "layers")]
impl IntoResponse for MissingCloseLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// An event stream as a handler's result: `EventStream::into_http_response`,
/// as axum's response.
impl<S> IntoResponse for crate::EventStream<S>
where
    S: futures_core::Stream,
    S::Item: crate::StreamItem,
    crate::EventStream<S>: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <crate::EventStream<S> as http_body::Body>::Error: Into<axum_core::BoxError>,
{
    fn into_response(self) -> Response {
        self.into_http_response().map(axum_core::body::Body::new)
    }
}

/// A subscription as a handler's result: its event-stream response (marked
/// for `CloseReason::Lagged`).
#[cfg(feature = "hub")]
impl IntoResponse for crate::hub::Subscription {
    fn into_response(self) -> Response {
        self.into_http_response().map(axum_core::body::Body::new)
    }
}

/// A failed subscribe as a handler's result: `HubError::into_http_response`, an event
/// stream that tells the browser to come back later when the hub is full
/// (a `503` would make it give up for good), `400 Bad Request` for a topic
/// name that is too long.
#[cfg(feature = "hub")]
impl IntoResponse for crate::hub::HubError {
    fn into_response(self) -> Response {
        self.into_http_response().map(axum_core::body::Body::new)
    }
}

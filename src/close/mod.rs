//! [`CloseLayer`]: tells the handler when and why its event stream ended,
//! and ends open streams cleanly on shutdown.
//!
//! Before calling the inner service, the layer puts a [`CloseHandle`] into
//! the request extensions. The handler (or the task that feeds its stream)
//! awaits [`CloseHandle::closed`] to stop producing, and learns why the
//! stream ended ([`CloseReason`]):
//!
//! - `ClientGone`: the body was dropped before its end (the client closed
//!   the connection, it broke, a write failed, or the response was dropped
//!   before it was sent);
//! - `Completed`: the handler's stream ended;
//! - `Error`: the handler's body returned an error or panicked; the event
//!   stream then ends cleanly after everything it wrote (a failed body would
//!   make the server drop what it had not yet written), and `EventSource`
//!   reconnects with its `Last-Event-ID`;
//! - `Shutdown`: a [`Shutdown`] trigger ended it;
//! - `Expired`: its maximum lifetime ended it;
//! - `Lagged`: the client read too slowly for its producer (a hub
//!   subscription that fell behind the topic's history, feature `hub`);
//! - `Unavailable`: its producer's backend became unreachable (a hub on
//!   Redis that lost Redis for longer than its grace, feature `redis`).
//!
//! [`CloseBuilder::on_close`] is called once per event stream with the
//! reason, the request's method and URI, the stream's duration, the
//! frames and bytes it wrote, and for a body that failed, its error's text
//! or its panic's message ([`Failure`]). The response ends cleanly on
//! purpose, so the failure is not lost: it reaches `on_close`, the
//! `tracing` log at `warn` (feature `tracing`) and the metrics (feature
//! `metrics`). Node's `req.on('close')` fires the same way
//! whichever side closed; this tells them apart.
//!
//! # Graceful shutdown
//!
//! An event stream never ends by itself, so a server's graceful shutdown
//! waits for it forever. Give the layer a [`Shutdown`] and trigger it from the
//! server's shutdown signal: every open event stream writes one final frame
//! at its next event boundary (by default a `retry:` with a delay drawn at
//! random between 1 and 5 seconds, so a thousand clients do not reconnect in
//! the same millisecond; [`CloseBuilder::final_event`] adds an event before
//! it) and ends, and graceful shutdown completes. With
//! [`CloseBuilder::max_lifetime`], each stream also ends the same way after a
//! lifetime drawn between 80 % and 100 % of the maximum.
//!
//! A stream whose handler stops in the middle of an event (never the case
//! with [`EventStream`](crate::EventStream), whose frames hold whole events)
//! waits for that event's end before its final frame.
//!
//! A layer ends streams; it cannot close connections. A client that has
//! stopped reading keeps its connection open after its stream ended, while
//! the last bytes wait in a full socket buffer, and graceful shutdown waits
//! for it forever. So the server loop gives up after a grace period:
//! [`Shutdown::deadline`] resolves that long after the trigger.
//!
//! ```text
//! // hyper-util: connections in a JoinSet, watched by GracefulShutdown
//! shutdown.trigger();
//! tokio::select! {
//!     () = graceful.shutdown() => {}
//!     () = shutdown.deadline(GRACE) => {} // clients that stopped reading
//! }
//! connections.shutdown().await; // drops the stragglers' connections
//!
//! // axum: race the server against the deadline; return from main after it
//! let server = axum::serve(listener, app).with_graceful_shutdown(signal_then_trigger);
//! tokio::select! {
//!     result = server => result?,
//!     () = shutdown.deadline(GRACE) => {}
//! }
//! ```
//!
//! `examples/hyper.rs` and `examples/axum.rs` have both loops in full
//! (`serve_with_grace`); `tests/shutdown.rs` runs each with 1,000 open
//! streams of which 100 belong to clients that stopped reading: the server
//! is done within the grace period plus one second, and every reading
//! client gets its final frame. [`CloseLayer::stats`] counts streams, not
//! connections: a stream whose last frame was handed to the server is
//! closed, though its connection may wait for the grace period.
//!
//! Responses that are not event streams keep their body as it is; their
//! handle resolves `Completed` when the body ends (or `ClientGone` when it
//! is dropped before).
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tokio::sync::mpsc;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::{CloseHandle, CloseLayer, CloseReason, Event, EventStream, Shutdown};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shutdown = Shutdown::new();
//! let (reasons, mut seen) = mpsc::unbounded_channel();
//! let service = ServiceBuilder::new()
//!     .layer(CloseLayer::builder().shutdown(&shutdown).build().unwrap())
//!     .service(service_fn(move |request: Request<()>| {
//!         let handle = request.extensions().get::<CloseHandle>().unwrap().clone();
//!         let reasons = reasons.clone();
//!         // The producer stops when the stream ends, and learns why.
//!         tokio::spawn(async move {
//!             let _ = reasons.send(handle.closed().await);
//!         });
//!         let ticks = futures_util::stream::repeat_with(|| Event::new().data("tick"));
//!         async move { Ok::<_, Infallible>(EventStream::new(ticks).into_http_response()) }
//!     }));
//!
//! let body = service.oneshot(Request::new(())).await.unwrap().into_body();
//! let mut body = std::pin::pin!(body);
//! assert!(body.frame().await.is_some());
//!
//! shutdown.trigger();
//! let mut last = Vec::new();
//! while let Some(frame) = body.frame().await {
//!     last = frame.unwrap().into_data().unwrap().to_vec();
//! }
//! assert!(last.starts_with(b"retry: "));
//! assert_eq!(seen.recv().await, Some(CloseReason::Shutdown));
//! # }
//! ```

mod body;
mod future;
mod handle;
mod layer;
mod service;
mod shutdown;

pub use body::CloseBody;
pub use future::ResponseFuture;
pub use handle::{CloseHandle, CloseReason};
pub use layer::{
    CloseBuilder, CloseError, CloseErrorKind, CloseInfo, CloseLayer, CloseStats, Failure,
};
pub use service::Close;
pub use shutdown::Shutdown;

use crate::jitter::random_between;

#[cfg(test)]
mod tests;

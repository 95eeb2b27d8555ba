//! Tower layers that make Server-Sent Events right for every tower-based
//! server: axum, tonic, or plain hyper.
//!
//! An event stream (`text/event-stream`, WHATWG HTML section 9.2) is easy to
//! start and hard to get right: the encoder must not let a newline in an id
//! forge an event, proxies buffer events unless told not to, idle streams are
//! cut, a vanished client goes unnoticed, and open streams hang graceful
//! shutdown. tower-sse answers each of these in one place.
//!
//! Layers (each acts on event-stream responses only and leaves every other
//! response exactly as it was):
//!
//! - [`SseCorsLayer`] (feature `cors`): CORS with credentials for exact
//!   origins; other origins get 403 before any stream opens;
//! - [`SseHeadersLayer`] (feature `headers`): `Cache-Control`,
//!   `Content-Length`, and no `Connection` on HTTP/2 and later;
//! - [`NoBufferingLayer`] (feature `no-buffering`): `X-Accel-Buffering: no`
//!   and `no-transform`, so proxies pass each event at once;
//! - [`KeepAliveLayer`] (feature `keep-alive`): a comment frame when the
//!   stream has been idle, never inside an event;
//! - [`CloseLayer`] (feature `close`): a [`CloseHandle`] in each request
//!   that tells the handler when and why its stream ended, and a
//!   [`Shutdown`] trigger that ends open streams so graceful shutdown
//!   completes.
//!
//! Beside the layers, a producer of event streams:
//!
//! - `hub::Hub` (feature `hub`): publish an event once to every subscriber
//!   of a topic, and resume a reconnecting browser from its
//!   `Last-Event-ID` without losing an event, or tell it with a gap event
//!   when that cannot be done.
//!
//! The foundation every layer stands on:
//!
//! - [`Event`]: a spec-exact encoder that refuses unsafe ids and types with
//!   a typed [`EventError`] instead of writing them or panicking;
//! - [`EventStream`]: any `Stream` of events as an [`http_body::Body`] with
//!   `Data = Bytes`, joining ready events into one frame;
//! - [`LastEventId`]: the `Last-Event-ID` header a reconnecting browser sends;
//! - [`stop_reconnecting`]: the `204 No Content` that stops reconnects.
//!
//! # Example
//!
//! A complete hyper server with every layer: a stream of ticks at
//! `GET /events` for pages on `https://app.example.com` (with cookies), that
//! ends cleanly on Ctrl-C.
//!
//! ```no_run
//! # #[cfg(all(feature = "cors", feature = "close", feature = "headers",
//! #     feature = "no-buffering", feature = "keep-alive"))]
//! # mod example {
//! use std::{convert::Infallible, time::Duration};
//!
//! use futures_util::stream;
//! use hyper::{body::Incoming, Request};
//! use hyper_util::{
//!     rt::{TokioExecutor, TokioIo},
//!     server::{conn::auto, graceful::GracefulShutdown},
//!     service::TowerToHyperService,
//! };
//! use tower::ServiceBuilder;
//! use tower_sse::{Event, EventStream, Shutdown, SseCorsLayer, SseLayer};
//!
//! #[tokio::main]
//! pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let shutdown = Shutdown::new();
//!     // One layer, five concerns, outermost first: CORS (a refused origin
//!     // costs nothing), close (sees every byte written, ends streams on
//!     // shutdown), headers, no-buffering, keep-alive (next to the handler,
//!     // so close counts its comments).
//!     let layer = SseLayer::new()
//!         .cors(SseCorsLayer::builder().allow_origin("https://app.example.com").build()?)
//!         .shutdown(&shutdown);
//!     let service = ServiceBuilder::new()
//!         .layer(layer)
//!         .service_fn(|_request: Request<Incoming>| async {
//!             let ticks = stream::unfold(1u64, |n| async move {
//!                 tokio::time::sleep(Duration::from_secs(1)).await;
//!                 let event = Event::new().id(n.to_string()).ok()?.data("tick");
//!                 Some((event, n + 1))
//!             });
//!             Ok::<_, Infallible>(EventStream::new(ticks).into_response())
//!         });
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     let graceful = GracefulShutdown::new();
//!     loop {
//!         tokio::select! {
//!             accepted = listener.accept() => {
//!                 let (socket, _) = accepted?;
//!                 let connection = auto::Builder::new(TokioExecutor::new())
//!                     .serve_connection(TokioIo::new(socket), TowerToHyperService::new(service.clone()))
//!                     .into_owned();
//!                 let connection = graceful.watch(connection);
//!                 tokio::spawn(connection);
//!             }
//!             _ = tokio::signal::ctrl_c() => break,
//!         }
//!     }
//!     // Every open stream writes a final `retry:` and ends, so this returns.
//!     shutdown.trigger();
//!     graceful.shutdown().await;
//!     Ok(())
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! # Features
//!
//! One per layer, all on by default: `headers`, `no-buffering`,
//! `keep-alive`, `close`, `cors`, and `util` (`ServiceBuilderExt`, with
//! every layer). Also on by default: `hub` (no dependency). Off by default:
//! `json` (`Event::json_data`, with serde), `tracing` (logs of stream open
//! and close), `metrics` (counters and gauges through the `metrics`
//! facade), `axum` (extractors and responses, with `axum-core`), and `full`
//! (everything).
//!
// The overview names every layer; with a layer's feature off its link
// points at the feature table instead, so that each feature alone
// documents without a broken link.
#![cfg_attr(feature = "cors", doc = "[`SseCorsLayer`]: crate::SseCorsLayer")]
#![cfg_attr(not(feature = "cors"), doc = "[`SseCorsLayer`]: #features")]
#![cfg_attr(
    feature = "headers",
    doc = "[`SseHeadersLayer`]: crate::SseHeadersLayer"
)]
#![cfg_attr(not(feature = "headers"), doc = "[`SseHeadersLayer`]: #features")]
#![cfg_attr(
    feature = "no-buffering",
    doc = "[`NoBufferingLayer`]: crate::NoBufferingLayer"
)]
#![cfg_attr(not(feature = "no-buffering"), doc = "[`NoBufferingLayer`]: #features")]
#![cfg_attr(
    feature = "keep-alive",
    doc = "[`KeepAliveLayer`]: crate::KeepAliveLayer"
)]
#![cfg_attr(not(feature = "keep-alive"), doc = "[`KeepAliveLayer`]: #features")]
#![cfg_attr(feature = "close", doc = "[`CloseLayer`]: crate::CloseLayer")]
#![cfg_attr(not(feature = "close"), doc = "[`CloseLayer`]: #features")]
#![cfg_attr(feature = "close", doc = "[`CloseHandle`]: crate::CloseHandle")]
#![cfg_attr(not(feature = "close"), doc = "[`CloseHandle`]: #features")]
#![cfg_attr(feature = "close", doc = "[`Shutdown`]: crate::Shutdown")]
#![cfg_attr(not(feature = "close"), doc = "[`Shutdown`]: #features")]
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a service whose inner service
/// is the field `inner`.
#[allow(unused_macros)] // used by the layers, each behind its own feature
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Takes the inner service back.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

mod body;
#[cfg(all(
    feature = "util",
    feature = "cors",
    feature = "close",
    feature = "headers",
    feature = "no-buffering",
    feature = "keep-alive"
))]
#[cfg_attr(docsrs, doc(cfg(feature = "util")))]
mod builder;
#[cfg(all(
    feature = "cors",
    feature = "close",
    feature = "headers",
    feature = "no-buffering",
    feature = "keep-alive"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "cors",
        feature = "close",
        feature = "headers",
        feature = "no-buffering",
        feature = "keep-alive"
    )))
)]
pub mod bundle;
#[cfg(feature = "close")]
#[cfg_attr(docsrs, doc(cfg(feature = "close")))]
pub mod close;
#[cfg(feature = "cors")]
#[cfg_attr(docsrs, doc(cfg(feature = "cors")))]
pub mod cors;
pub mod event;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
#[cfg(feature = "headers")]
#[cfg_attr(docsrs, doc(cfg(feature = "headers")))]
pub mod headers;
#[cfg(feature = "hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
pub mod hub;
#[cfg(any(feature = "close", feature = "hub"))]
mod jitter;
#[cfg(feature = "keep-alive")]
#[cfg_attr(docsrs, doc(cfg(feature = "keep-alive")))]
pub mod keep_alive;
mod last_event_id;
mod media;
mod metrics;
#[cfg(feature = "no-buffering")]
#[cfg_attr(docsrs, doc(cfg(feature = "no-buffering")))]
pub mod no_buffering;
#[cfg(test)]
mod test_util;

pub use body::{stop_reconnecting, EventStream, StreamItem, DEFAULT_MAX_FRAME_SIZE};
#[cfg(all(
    feature = "util",
    feature = "cors",
    feature = "close",
    feature = "headers",
    feature = "no-buffering",
    feature = "keep-alive"
))]
pub use builder::ServiceBuilderExt;
#[cfg(all(
    feature = "cors",
    feature = "close",
    feature = "headers",
    feature = "no-buffering",
    feature = "keep-alive"
))]
pub use bundle::{Sse, SseBody, SseLayer};
#[cfg(feature = "close")]
pub use close::{Close, CloseHandle, CloseLayer, CloseReason, Shutdown};
#[cfg(feature = "cors")]
pub use cors::{SseCors, SseCorsLayer};
#[cfg(feature = "json")]
pub use event::JsonDataError;
pub use event::{EncodedEvent, Event, EventError};
#[cfg(all(feature = "axum", feature = "close"))]
pub use extract::MissingCloseLayer;
#[cfg(feature = "headers")]
pub use headers::{SseHeaders, SseHeadersLayer};
#[cfg(feature = "keep-alive")]
pub use keep_alive::{KeepAlive, KeepAliveLayer};
pub use last_event_id::{LastEventId, LAST_EVENT_ID};
#[cfg(feature = "no-buffering")]
pub use no_buffering::{NoBuffering, NoBufferingLayer};

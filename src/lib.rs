//! Tower layers that make Server-Sent Events right for every tower-based
//! server: axum, tonic, or plain hyper.
//!
//! An event stream (`text/event-stream`, WHATWG HTML section 9.2) is easy to
//! start and hard to get right: the encoder must not let a newline in an id
//! forge an event, proxies buffer events unless told not to, idle streams are
//! cut, a vanished client goes unnoticed, and open streams hang graceful
//! shutdown. tower-sse answers each of these in one place.
//!
//! # Example
//!
//! An axum 0.8 app whose `/events` route streams a hub topic to pages on
//! `https://app.example.com` (with their cookies), beside a JSON route, and
//! that shuts down cleanly on Ctrl-C:
//!
//! ```no_run
//! # #[cfg(all(feature = "layers", feature = "hub", feature = "axum"))]
//! # mod example {
//! use std::time::Duration;
//!
//! use axum::{extract::State, http::HeaderMap, routing::get, Json, Router};
//! use tower_sse::{
//!     hub::{Hub, HubError, Subscription},
//!     Event, Shutdown, SseCorsLayer, SseLayer,
//! };
//!
//! // Resumes exactly after the browser's `Last-Event-ID` (or starts with a
//! // `gap` event when that is no longer kept), then goes live.
//! async fn events(State(hub): State<Hub>, headers: HeaderMap) -> Result<Subscription, HubError> {
//!     hub.subscribe_from_headers("news", &headers).await
//! }
//!
//! async fn status() -> Json<&'static str> {
//!     Json("ok") // no event stream: every layer leaves it alone
//! }
//!
//! #[tokio::main]
//! pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let hub = Hub::new();
//!     let shutdown = Shutdown::new();
//!     // One layer, five concerns, outermost first: CORS (a refused origin
//!     // costs nothing), close (sees every byte written, ends streams on
//!     // shutdown), headers, no-buffering, keep-alive (next to the handler,
//!     // so that close counts its comments).
//!     let sse = SseLayer::new()
//!         .cors(SseCorsLayer::builder().allow_origin("https://app.example.com").build()?)
//!         .shutdown(&shutdown);
//!     let app = Router::new()
//!         .route("/events", get(events))
//!         .route("/status", get(status))
//!         .with_state(hub.clone())
//!         .layer(sse);
//!
//!     tokio::spawn(async move {
//!         for n in 1u64.. {
//!             let _ = hub.publish("news", Event::new().data(format!("item {n}"))).await;
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!     });
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     let trigger = shutdown.clone();
//!     let server = axum::serve(listener, app).with_graceful_shutdown(async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         // Every open stream writes a final `retry:` and ends.
//!         trigger.trigger();
//!     });
//!     tokio::select! {
//!         result = server => result?,
//!         // Clients that stopped reading keep their connections: give up on them.
//!         () = shutdown.deadline(Duration::from_secs(5)) => {}
//!     }
//!     Ok(())
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! `examples/hyper.rs` is the same for plain hyper (with its accept loop),
//! and `examples/tonic.rs` puts a stream beside a gRPC service.
//!
//! # What is here
//!
//! Layers (feature `layers`), each acting on event-stream responses only
//! and leaving every other response exactly as it was:
//!
//! - [`SseLayer`]: the five below in the right order, with one `.layer()`;
//! - [`SseCorsLayer`]: CORS with credentials for exact origins; other
//!   origins get 403 before any stream opens;
//! - [`CloseLayer`]: a [`CloseHandle`] in each request that tells the
//!   handler when and why its stream ended, and a [`Shutdown`] trigger that
//!   ends open streams so graceful shutdown completes;
//! - [`SseHeadersLayer`]: `Cache-Control`, `Content-Length`, and no
//!   `Connection` on HTTP/2 and later;
//! - [`NoBufferingLayer`]: `X-Accel-Buffering: no` and `no-transform`, so
//!   proxies pass each event at once;
//! - [`KeepAliveLayer`]: a comment frame when the stream has been idle,
//!   never inside an event.
//!
//! A producer of event streams: `hub::Hub` (feature `hub`) publishes an
//! event once to every subscriber of a topic and resumes a reconnecting
//! browser from its `Last-Event-ID` without losing an event, or tells it
//! with a gap event when that cannot be done; on one instance or, with
//! feature `redis`, many. Its runs (`Hub::start_run`) are topics with an
//! end, for a long job (a language model's answer) that outlives a reload
//! and stops on demand.
//!
//! The wire format, always there:
//!
//! - [`Event`]: a spec-exact encoder that refuses unsafe ids and types with
//!   a typed [`EventError`] instead of writing them or panicking;
//! - [`EventStream`]: any `Stream` of events as an [`http_body::Body`] with
//!   `Data = Bytes`, joining ready events into one frame;
//! - [`LastEventId`]: the `Last-Event-ID` header a reconnecting browser sends;
//! - [`EndSignal`]: how a producer tells `CloseLayer` why its stream ended;
//! - [`stop_reconnecting`]: the `204 No Content` that stops reconnects.
//!
//! # Configuring a layer
//!
//! One rule for every layer: `XLayer::new()` is the layer with its
//! defaults. A layer none of whose settings can be wrong takes its setters
//! on itself ([`SseHeadersLayer`], [`NoBufferingLayer`], and [`SseLayer`],
//! which takes built layers). A layer where a setting can be wrong is
//! configured through `XLayer::builder()`: its setters only record and
//! return the builder, and its one fallible step is `build()`, whose error
//! says what to change and gives the builder back ([`KeepAliveLayer`],
//! [`CloseLayer`], [`SseCorsLayer`], and `Hub::builder()`). Builders are
//! `Clone` and `Debug`. Each service `X<S>` has `X::new(inner)` and
//! `X::layer()` when its layer has defaults; `SseCors` has neither, since
//! CORS needs origins. Nothing panics on a bad setting or a bad request.
//!
//! # Errors
//!
//! One shape for every error type: a struct whose `kind()` gives a
//! `#[non_exhaustive]` enum to match on, whose `Display` says what went
//! wrong and what to change, and which gives back what the failed call took
//! (`into_event()`, `into_builder()`), so nothing is lost.
//!
//! # Features
//!
//! | feature | what | default |
//! | --- | --- | --- |
//! | `layers` | every layer and `ServiceBuilderExt` | on |
//! | `hub` | `hub::Hub` in memory | on |
//! | `redis` | the hub on Redis Streams | off |
//! | `redis-tls` | the hub's Redis over TLS (`rediss://`), with rustls | off |
//! | `axum` | extractors and responses, on `axum-core` | off |
//! | `metrics` | counters and gauges through the `metrics` facade | off |
//! | `tracing` | logs of stream open, close and failure | off |
//! | `json` | `Event::json_data`, with serde | off |
//! | `full` | everything | off |
//!
// The overview names the layers; with `layers` off its links point at the
// feature table instead, so that each feature alone documents without a
// broken link.
#![cfg_attr(
    feature = "layers",
    doc = "[`SseLayer`]: crate::SseLayer\n[`SseCorsLayer`]: crate::SseCorsLayer\n\
           [`CloseLayer`]: crate::CloseLayer\n[`CloseHandle`]: crate::CloseHandle\n\
           [`Shutdown`]: crate::Shutdown\n[`SseHeadersLayer`]: crate::SseHeadersLayer\n\
           [`NoBufferingLayer`]: crate::NoBufferingLayer\n[`KeepAliveLayer`]: crate::KeepAliveLayer"
)]
#![cfg_attr(
    not(feature = "layers"),
    doc = "[`SseLayer`]: #features\n[`SseCorsLayer`]: #features\n[`CloseLayer`]: #features\n\
           [`CloseHandle`]: #features\n[`Shutdown`]: #features\n[`SseHeadersLayer`]: #features\n\
           [`NoBufferingLayer`]: #features\n[`KeepAliveLayer`]: #features"
)]
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a service whose inner service
/// is the field `inner`.
#[cfg(feature = "layers")]
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
#[cfg(feature = "layers")]
mod builder;
#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
pub mod bundle;
#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
pub mod close;
#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
pub mod cors;
pub mod event;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
pub mod headers;
#[cfg(feature = "hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
pub mod hub;
#[cfg(any(feature = "layers", feature = "hub"))]
mod jitter;
#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
pub mod keep_alive;
mod last_event_id;
#[cfg(feature = "layers")]
mod media;
#[cfg(any(feature = "layers", feature = "hub"))]
mod metrics;
#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
pub mod no_buffering;
#[cfg(test)]
mod test_util;

pub use body::{stop_reconnecting, EarlyEnd, EndSignal, EventStream, StreamItem};
#[cfg(feature = "json")]
pub use event::JsonDataError;
pub use event::{EncodedEvent, Event, EventError, EventType};
#[cfg(all(feature = "layers", feature = "axum"))]
pub use extract::MissingCloseLayer;
pub use last_event_id::{LastEventId, LAST_EVENT_ID};
#[cfg(feature = "layers")]
pub use {
    builder::ServiceBuilderExt,
    bundle::{Sse, SseBody, SseLayer},
    close::{Close, CloseHandle, CloseLayer, CloseReason, Shutdown},
    cors::{SseCors, SseCorsLayer},
    headers::{SseHeaders, SseHeadersLayer},
    keep_alive::{KeepAlive, KeepAliveLayer},
    no_buffering::{NoBuffering, NoBufferingLayer},
};

/// The Rust snippets of the README and of the guides under `docs/`,
/// compiled and run as doctests (`cargo test --doc --all-features`); each
/// file is gated on the features its snippets use.
#[cfg(doctest)]
mod doc_files {
    #[cfg(all(feature = "layers", feature = "axum", feature = "hub"))]
    #[doc = include_str!("../README.md")]
    mod readme {}

    #[cfg(all(feature = "layers", feature = "axum", feature = "hub"))]
    #[doc = include_str!("../docs/coming-from-axum.md")]
    mod coming_from_axum {}

    #[cfg(all(feature = "layers", feature = "axum", feature = "hub"))]
    #[doc = include_str!("../docs/runs.md")]
    mod runs {}

    #[cfg(all(feature = "layers", feature = "axum", feature = "hub"))]
    #[doc = include_str!("../docs/many-topics.md")]
    mod many_topics {}

    #[cfg(feature = "layers")]
    mod bundle {
        #[doc = include_str!("../docs/layers.md")]
        mod layers {}
        #[doc = include_str!("../docs/shutdown.md")]
        mod shutdown {}
        #[doc = include_str!("../docs/nginx.md")]
        mod nginx {}
        #[doc = include_str!("../docs/browsers.md")]
        mod browsers {}
        #[doc = include_str!("../docs/demo.md")]
        mod demo {}
        #[doc = include_str!("../docs/speed.md")]
        mod speed {}
    }

    #[cfg(all(feature = "hub", feature = "axum"))]
    #[doc = include_str!("../docs/hub.md")]
    mod hub {}

    #[cfg(feature = "hub")]
    #[doc = include_str!("../docs/slow-clients.md")]
    mod slow_clients {}

    #[cfg(feature = "redis")]
    #[doc = include_str!("../docs/scaling-out.md")]
    mod scaling_out {}

    #[cfg(all(feature = "metrics", feature = "hub"))]
    #[doc = include_str!("../docs/metrics.md")]
    mod metrics {}
}

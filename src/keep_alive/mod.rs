//! [`KeepAliveLayer`]: comment frames that keep idle event streams open.
//!
//! Proxies and load balancers cut connections that stay quiet (nginx after
//! 60 s by default, AWS ALB after 60 s, Cloudflare after 100 s), and a comment
//! line is the only keep-alive the event-stream format has. Writing one also
//! shows a vanished client: the write fails and the server drops the body.
//!
//! On responses whose media type is `text/event-stream`, the layer writes a
//! comment frame (`:\n\n` by default) after [`interval`] (15 s by default)
//! in which the stream wrote nothing. Every data frame and every comment
//! restarts the wait, so a busy stream gets no comments. (The wait starts
//! when the inner body, polled again after a write, has nothing more to
//! send: a burst of frames reads the clock once, not once per frame.) The comment is only
//! ever written between events: the body tracks, from the bytes it passes
//! on, whether the stream stands at an event boundary (the start, or just
//! after a blank line, with CR, LF or CRLF line ends, even when a CRLF is
//! split across two frames), so it is safe on bodies whose frames split
//! events, such as a proxied upstream. A comment that falls due in the
//! middle of an event is not written; the wait starts again.
//!
//! Every other response passes through with its body untouched.
//!
//! The body keeps the inner body's `Data` type (it needs `From<Bytes>` to
//! make the comment, and `AsRef<[u8]>` to read the bytes it passes on), so a
//! tonic server, which needs `Data = Bytes`, can be wrapped.
//!
//! Each stream holds one [`tokio::time::Sleep`], reset only when it fires:
//! the body needs a Tokio runtime with time enabled, as hyper servers have.
//!
//! [`interval`]: KeepAliveBuilder::interval
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use futures_util::stream;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::{Event, EventStream, KeepAliveLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = KeepAliveLayer::builder()
//!     .interval(Duration::from_secs(10))
//!     .comment("ping")
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_request: Request<()>| async {
//!         let quiet = stream::pending::<Event>();
//!         Ok::<_, Infallible>(EventStream::new(quiet).into_http_response())
//!     }));
//!
//! let body = service.oneshot(Request::new(())).await?.into_body();
//! // The body holds a timer, so it is pinned to be read.
//! let mut body = std::pin::pin!(body);
//! // Nothing happens on the stream; ten seconds later a comment is written.
//! let frame = body.frame().await.unwrap()?.into_data().unwrap();
//! assert_eq!(&frame[..], b": ping\n\n");
//! # Ok(())
//! # }
//! ```

mod body;
mod future;
mod layer;
mod service;

pub use body::KeepAliveBody;
pub use future::ResponseFuture;
pub use layer::{KeepAliveBuilder, KeepAliveError, KeepAliveErrorKind, KeepAliveLayer};
pub use service::KeepAlive;

#[cfg(test)]
mod tests;

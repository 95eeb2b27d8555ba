//! [`SseCorsLayer`]: lets pages on other origins open event streams with
//! cookies (`new EventSource(url, { withCredentials: true })`), safely.
//!
//! - Origins are allowed by an exact list (scheme, host and port as the
//!   browser serializes them: `https://app.example.com`,
//!   `http://localhost:5173`), or by a predicate. Matching is exact:
//!   `https://app.example.com.evil.test`, `https://evil-app.example.com`,
//!   another scheme or port, or another case are all refused unless listed.
//!   `null` is refused unless listed.
//! - An allowed origin gets `Access-Control-Allow-Origin: <that origin>`,
//!   `Access-Control-Allow-Credentials: true` (credentials are on by
//!   default), and `Origin` appended to `Vary`.
//! - The layer judges only requests for event streams, and recognises them
//!   before the handler runs: a request whose `Accept` lists
//!   `text/event-stream` (`EventSource` always sends it), and a preflight
//!   (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) that asks
//!   for `GET` with request headers that are all allowed here
//!   (`Last-Event-ID`, which a reconnecting `EventSource` sends, and any
//!   configured with [`allow_header`](SseCorsBuilder::allow_header)).
//!   A page that reads a stream with `fetch` and another method (a `POST`
//!   that starts a job and streams it) sends `Accept: text/event-stream`
//!   too; its route is declared with
//!   [`stream_route`](SseCorsBuilder::stream_route), so that its preflights
//!   are answered here as well, and so that a request to it from another
//!   origin is refused whatever its `Accept` says (a form POST would
//!   otherwise start the job with the user's cookies).
//! - Such a request from any other origin gets `403 Forbidden` with a short
//!   plain-text reason, and the inner service is never called: no stream is
//!   opened for a page that could not read it. (A browser that gets a stream
//!   without the right CORS headers still sends the cookie and the server
//!   still streams; the page only sees an error.)
//! - Such a preflight from an allowed origin is answered by the layer: `204`
//!   with `GET` and the allowed headers. A preflight from another origin,
//!   or for another method or other headers, goes on to the inner service,
//!   so the app's own CORS (tower-http's `CorsLayer`, say) answers it.
//! - Every other request passes through exactly as it came: a JSON route, a
//!   same-origin `POST` (browsers send `Origin` on it) and a plain `OPTIONS`
//!   get no status change and no header. The one exception: when its
//!   response turns out to be an event stream and the origin is allowed, the
//!   response gets the CORS headers (a `fetch` that did not ask for the
//!   stream can read it); a refused origin's stream gets none, so its page
//!   cannot read it, but the handler has run.
//! - A request for an event stream from an allowed origin gets the headers
//!   when its response is an event stream, a `204` (so that `EventSource`
//!   stops reconnecting) or a redirect (which a cross-origin request follows
//!   only with them); never on another answer, errors included, so that
//!   asking for a stream (`Accept` needs no preflight) cannot unlock
//!   credentialed reads of a JSON route.
//! - Requests without `Origin` (same-origin `GET`, curl, server to server)
//!   pass through untouched. A stream request from the app's own page (such
//!   as a streaming `fetch` POST, which sends `Origin`) is never refused,
//!   even when its origin is not listed. The app's own page is told by
//!   `Sec-Fetch-Site: same-origin` (no page can set that header) or, where
//!   browsers send none (plain HTTP outside localhost, older browsers), by
//!   an `Origin` that names the request's `Host`; behind a proxy that
//!   rewrites `Host`, list the app's own origin.
//! - [`any_origin`](SseCorsBuilder::any_origin) serves public streams
//!   without cookies; combined with credentials it is a build error, never a
//!   panic and never silently changed.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_sse::SseCorsLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cors = SseCorsLayer::builder()
//!     .allow_origin("https://app.example.com")
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(cors)
//!     .service(service_fn(|_request: Request<()>| async {
//!         let stream = Response::builder()
//!             .header("content-type", "text/event-stream")
//!             .body(String::from("data: hello\n\n"))?;
//!         Ok::<_, http::Error>(stream)
//!     }));
//!
//! // A request for an event stream, as `EventSource` sends it.
//! let request = |origin| {
//!     Request::builder()
//!         .header("origin", origin)
//!         .header("accept", "text/event-stream")
//!         .body(())
//!         .unwrap()
//! };
//! let allowed = service.clone().oneshot(request("https://app.example.com")).await?;
//! assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
//! assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
//!
//! let refused = service.oneshot(request("https://app.example.com.evil.test")).await?;
//! assert_eq!(refused.status(), StatusCode::FORBIDDEN);
//!
//! // A wildcard with credentials is a mistake, reported when building.
//! assert!(SseCorsLayer::builder().any_origin().build().is_err());
//! # Ok(())
//! # }
//! ```

mod config;
mod service;

pub use config::{CorsError, CorsErrorKind, SseCorsBuilder, SseCorsLayer};
pub use service::{CorsBody, ResponseFuture, SseCors};

#[cfg(test)]
mod tests;

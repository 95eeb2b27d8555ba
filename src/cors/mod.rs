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
//! - A request from any other origin gets `403 Forbidden` with a short
//!   plain-text reason, and the inner service is never called: no stream is
//!   opened for a page that could not read it. (A browser that gets a stream
//!   without the right CORS headers still sends the cookie and the server
//!   still streams; the page only sees an error.)
//! - Requests without `Origin` (same-origin, curl, server to server) pass
//!   through untouched.
//! - Only a real preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) is answered by the layer: `204` with
//!   `GET` allowed and `Last-Event-ID` (plus any configured header) allowed.
//!   Every other `OPTIONS` request reaches the inner service.
//! - [`any_origin`](SseCorsBuilder::any_origin) serves public streams
//!   without cookies; combined with credentials it is a build error, never a
//!   panic and never silently changed.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
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
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     }));
//!
//! let request = |origin| Request::builder().header("origin", origin).body(()).unwrap();
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

pub use config::{CorsError, SseCorsBuilder, SseCorsLayer};
pub use service::{CorsBody, ResponseFuture, SseCors};

#[cfg(test)]
mod tests;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tower_service::Service;

use super::config::Config;

/// The service built by [`SseCorsLayer`](super::SseCorsLayer).
pub struct SseCors<S> {
    pub(super) inner: S,
    pub(super) config: Option<Arc<Config>>,
}

/// Made by [`SseCorsLayer`](super::SseCorsLayer) (from
/// [`SseCorsLayer::builder`](super::SseCorsLayer::builder)): CORS has
/// no default to offer, so there is no `SseCors::new` or `SseCors::layer`.
impl<S> SseCors<S> {
    inner_service_accessors!();
}

impl<S: Clone> Clone for SseCors<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SseCors<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseCors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

const FORBIDDEN: &str = "origin not allowed to open this stream\n";

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseCors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Response = Response<CorsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (Some(config), Some(origin)) = (&self.config, request.headers().get(header::ORIGIN))
        else {
            // Off, or same-origin, curl, server to server: not ours to judge.
            return ResponseFuture::call(self.inner.call(request), None);
        };
        let headers = request.headers();
        // Two `Origin` headers are no browser's (it sends one): the first
        // one alone must not open a stream, whatever the second says.
        let one_origin = headers.get_all(header::ORIGIN).iter().nth(1).is_none();
        let allowed = one_origin && config.allows(origin);
        if request.method() == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            // A preflight: ours only when it can be for an event stream and
            // the origin may open one; any other goes to the app's own CORS.
            if allowed && config.owns_preflight(headers, request.uri().path()) {
                let origin = origin.clone();
                let method = headers[header::ACCESS_CONTROL_REQUEST_METHOD].clone();
                return ResponseFuture::answer(
                    StatusCode::NO_CONTENT,
                    preflight_headers(config, origin, method),
                    "",
                );
            }
            return ResponseFuture::call(self.inner.call(request), None);
        }
        // A declared stream route is judged whatever its `Accept` says: a
        // form or a `no-cors` fetch from another site would otherwise start
        // the job with the user's cookies.
        let stream_request = crate::media::accepts_event_stream(headers)
            || config.is_stream_route(request.method(), request.uri().path());
        // The app's own page (a streaming `fetch` POST sends `Origin`) is
        // not a cross-origin request: never refused.
        if stream_request && !allowed && !(one_origin && is_same_origin(&request, origin)) {
            crate::metrics::cors_refused();
            return ResponseFuture::answer(StatusCode::FORBIDDEN, forbidden_headers(), FORBIDDEN);
        }
        let allow = allowed.then(|| Allow {
            origin: origin.clone(),
            credentials: config.credentials,
            stream_request,
            expose: config.expose_headers.clone(),
        });
        ResponseFuture::call(self.inner.call(request), allow)
    }
}

/// Whether the request comes from the server's own origin: the browser
/// says so (`Sec-Fetch-Site: same-origin`, a header no page can set), or,
/// where browsers send no `Sec-Fetch-Site` (plain HTTP outside localhost,
/// older browsers), `Origin` names the host and port the request was sent
/// to (`Host`, or the URI's authority on HTTP/2). A page cannot forge its
/// `Origin`, so only a page served from that very host and port matches.
/// Behind a proxy that rewrites `Host` the fallback does not match, and the
/// app lists its own origin.
///
/// What "the same origin" means in the fallback:
/// - The `Origin` is taken as browsers write it: scheme `http` or `https`,
///   host in lower case (the URL standard's serialization). Any other
///   spelling (`http://LOCALHOST:8080`) is no browser's and is not the
///   app's own.
/// - The host and port must equal the `Host` header's (compared without
///   letter case, as DNS names are), the port defaulting to the `Origin`
///   scheme's (80 or 443).
/// - The scheme is not compared with the connection's: behind a proxy that
///   ends TLS, the server sees plain HTTP for an `https` page, and one host
///   and port serve one scheme, so a browser cannot send a request to
///   `host:port` from a page of the other scheme on that same `host:port`.
///   Where `Host` carries no port, that holds only partly: an `http` page
///   calling the `https` server of the same name matches too. This reaches
///   only browsers that send no `Sec-Fetch-Site`, and such a response gets
///   no CORS headers, so the page cannot read it.
fn is_same_origin<B>(request: &Request<B>, origin: &HeaderValue) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes().eq_ignore_ascii_case(b"same-origin");
    }
    let host = match (headers.get(header::HOST), request.uri().authority()) {
        (Some(host), _) => host.as_bytes(),
        (None, Some(authority)) => authority.as_str().as_bytes(),
        (None, None) => return false,
    };
    let origin = origin.as_bytes();
    if origin.iter().any(u8::is_ascii_uppercase) {
        return false;
    }
    let (default_port, authority): (&[u8], &[u8]) =
        if let Some(authority) = origin.strip_prefix(b"https://") {
            (b":443", authority)
        } else if let Some(authority) = origin.strip_prefix(b"http://") {
            (b":80", authority)
        } else {
            return false;
        };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// The CORS headers an allowed origin's response may get.
struct Allow {
    origin: HeaderValue,
    credentials: bool,
    /// The request asked for an event stream (`Accept`).
    stream_request: bool,
    /// `Access-Control-Expose-Headers`, when configured.
    expose: Option<HeaderValue>,
}

impl Allow {
    /// Adds the headers to a response that is an event stream. A request
    /// for one also gets them on the answers `EventSource` acts on that have
    /// no body to read: `204` (stop reconnecting) and redirects (which a
    /// cross-origin request follows only with them). Never on another
    /// answer: asking for a stream (`Accept` needs no preflight) must not
    /// unlock credentialed reads of a JSON route, its errors included, nor
    /// override the app's own CORS there.
    fn apply(self, status: StatusCode, headers: &mut HeaderMap) {
        let answers_stream_request =
            self.stream_request && (status == StatusCode::NO_CONTENT || status.is_redirection());
        if !answers_stream_request && !crate::media::is_event_stream(headers) {
            return;
        }
        // `insert` replaces any CORS headers the handler set.
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.origin);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        } else {
            headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        }
        if let Some(expose) = self.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
        vary_origin(headers);
    }
}

fn forbidden_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers
}

fn preflight_headers(config: &Config, origin: HeaderValue, method: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if config.credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    // The method asked for: `GET`, or a stream route's.
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        config.allow_headers.clone(),
    );
    if let Some(max_age) = &config.max_age {
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    headers
}

/// Appends `Origin` to `Vary` unless it is already there.
fn vary_origin(headers: &mut HeaderMap) {
    let present = crate::media::list_items(headers, header::VARY)
        .any(|item| item == b"*" || item.eq_ignore_ascii_case(b"origin"));
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The response future of [`SseCors`].
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    /// The inner service was called; these headers go on its response.
    Call {
        #[pin]
        future: F,
        allow: Option<Allow>,
    },
    /// The layer answers by itself (preflight, 403).
    Answer {
        status: StatusCode,
        headers: Option<HeaderMap>,
        body: &'static str,
    },
}

impl<F> ResponseFuture<F> {
    fn call(future: F, allow: Option<Allow>) -> Self {
        Self {
            kind: Kind::Call { future, allow },
        }
    }

    fn answer(status: StatusCode, headers: HeaderMap, body: &'static str) -> Self {
        Self {
            kind: Kind::Answer {
                status,
                headers: Some(headers),
                body,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CorsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Call { future, allow } => {
                let response = std::task::ready!(future.poll(cx))?;
                let (mut parts, body) = response.into_parts();
                if let Some(allow) = allow.take() {
                    allow.apply(parts.status, &mut parts.headers);
                }
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    CorsBody {
                        kind: BodyKind::Inner { body },
                    },
                )))
            }
            KindProj::Answer {
                status,
                headers,
                body,
            } => {
                let mut response = Response::new(CorsBody {
                    kind: BodyKind::Message {
                        text: (!body.is_empty()).then(|| Bytes::from_static(body.as_bytes())),
                    },
                });
                *response.status_mut() = *status;
                *response.headers_mut() = headers.take().unwrap_or_default();
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The response body of [`SseCors`]: the inner service's body, or the
/// layer's own short answer (403 or preflight).
#[pin_project]
pub struct CorsBody<B> {
    #[pin]
    kind: BodyKind<B>,
}

#[pin_project(project = BodyKindProj)]
enum BodyKind<B> {
    Inner {
        #[pin]
        body: B,
    },
    Message {
        text: Option<Bytes>,
    },
}

impl<B> Body for CorsBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Message { text } => {
                Poll::Ready(text.take().map(|text| Ok(Frame::data(text.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Message { text } => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Message { text } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |text| text.len() as u64))
            }
        }
    }
}

impl<B> fmt::Debug for CorsBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            BodyKind::Inner { .. } => "inner",
            BodyKind::Message { .. } => "message",
        };
        f.debug_struct("CorsBody").field("kind", &kind).finish()
    }
}

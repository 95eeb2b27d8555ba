use std::{
    error::Error as StdError,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use tower_layer::Layer;

use super::SseCors;
use crate::last_event_id::LAST_EVENT_ID;

type Predicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The longest `Access-Control-Max-Age` written: 24 hours, Firefox's cap
/// (Chromium's is 2 hours).
const MAX_AGE_CAP_SECS: u64 = 24 * 60 * 60;

/// Which origins may open a stream.
#[derive(Clone)]
enum Origins {
    /// Exact serialized origins (`null` included only when listed).
    List(Vec<HeaderValue>),
    Predicate(Predicate),
    Any,
}

/// What the layer's services share.
pub(super) struct Config {
    origins: Origins,
    pub(super) credentials: bool,
    /// `Access-Control-Allow-Headers` for preflights.
    pub(super) allow_headers: HeaderValue,
    /// The same names, to judge `Access-Control-Request-Headers`.
    allow_header_names: Vec<HeaderName>,
    pub(super) max_age: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers` for streams, when any was given.
    pub(super) expose_headers: Option<HeaderValue>,
    /// Routes read by `fetch` with another method than `GET`: a path and
    /// a method.
    stream_routes: Vec<(String, Method)>,
}

impl Config {
    /// Whether a request from `origin` (the `Origin` header) is allowed.
    pub(super) fn allows(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            Origins::List(list) => list.iter().any(|allowed| allowed == origin),
            Origins::Predicate(predicate) => origin.to_str().is_ok_and(|origin| predicate(origin)),
            Origins::Any => true,
        }
    }

    /// Whether a preflight (`OPTIONS` with `Access-Control-Request-Method`)
    /// can be for an event stream, and so is the layer's to answer: it asks
    /// for `GET`, and for request headers that are all allowed here
    /// (`Last-Event-ID`, the only header `EventSource` adds that needs a
    /// preflight, and the configured ones), at least one of them. A browser
    /// never preflights a `GET` that needs no such header, and asks for
    /// `POST`, `DELETE` or other headers only for other routes: those
    /// preflights belong to the app's own CORS.
    ///
    /// A route given with [`SseCorsBuilder::stream_route`] also owns the
    /// preflights for its path and method whose request headers are all
    /// allowed ones (none at all included).
    /// Whether `method` on `path` is a declared stream route.
    pub(super) fn is_stream_route(&self, method: &Method, path: &str) -> bool {
        self.stream_routes
            .iter()
            .any(|(route, allowed)| route == path && allowed == method)
    }

    pub(super) fn owns_preflight(&self, headers: &HeaderMap, path: &str) -> bool {
        let Some(method) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) else {
            return false;
        };
        let method = method.as_bytes();
        let route = method != b"GET"
            && self
                .stream_routes
                .iter()
                .any(|(route, allowed)| route == path && allowed.as_str().as_bytes() == method);
        if method != b"GET" && !route {
            return false;
        }
        let mut asked = 0;
        for name in crate::media::list_items(headers, header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let allowed = self
                .allow_header_names
                .iter()
                .any(|allowed| name.eq_ignore_ascii_case(allowed.as_str().as_bytes()));
            if !allowed {
                return false;
            }
            asked += 1;
        }
        asked > 0 || route
    }
}

/// CORS for event streams, with credentials; see the [module docs](super).
///
/// Built with [`SseCorsLayer::builder`].
#[derive(Clone)]
#[must_use]
pub struct SseCorsLayer {
    /// `None`: off, every request passes through (the bundle's default until
    /// origins are given).
    pub(super) config: Option<Arc<Config>>,
}

impl SseCorsLayer {
    /// A layer that passes every request through (the bundle's default).
    pub(crate) fn off() -> Self {
        Self { config: None }
    }

    /// Starts a layer that allows nothing yet; add origins, then
    /// [`build`](SseCorsBuilder::build).
    pub fn builder() -> SseCorsBuilder {
        SseCorsBuilder {
            origins: Some(Origins::List(Vec::new())),
            credentials: true,
            allow_headers: vec![LAST_EVENT_ID.clone()],
            max_age: None,
            stream_routes: Vec::new(),
            expose_headers: Vec::new(),
            error: None,
        }
    }
}

impl fmt::Debug for SseCorsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(config) = &self.config else {
            return f.write_str("SseCorsLayer(off)");
        };
        let origins = match &config.origins {
            Origins::List(list) => format!("{list:?}"),
            Origins::Predicate(_) => "<predicate>".to_owned(),
            Origins::Any => "*".to_owned(),
        };
        f.debug_struct("SseCorsLayer")
            .field("origins", &origins)
            .field("credentials", &config.credentials)
            .field("allow_headers", &config.allow_headers)
            .field("max_age", &config.max_age)
            .finish()
    }
}

impl<S> Layer<S> for SseCorsLayer {
    type Service = SseCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseCors {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Builds an [`SseCorsLayer`]. Mistakes are reported by
/// [`build`](SseCorsBuilder::build), never by a panic.
#[derive(Clone)]
#[must_use]
pub struct SseCorsBuilder {
    origins: Option<Origins>,
    credentials: bool,
    allow_headers: Vec<HeaderName>,
    max_age: Option<Duration>,
    stream_routes: Vec<(String, Method)>,
    expose_headers: Vec<HeaderName>,
    /// The first mistake a setter refused, reported by `build`.
    error: Option<Mistake>,
}

/// A value a setter refused: what, and for an origin, the origin and the
/// spelling to use.
#[derive(Clone, Debug)]
struct Mistake {
    kind: CorsErrorKind,
    invalid: Option<(String, String)>,
}

impl SseCorsBuilder {
    /// Allows one origin, written as the browser serializes it:
    /// `scheme://host` or `scheme://host:port`, lowercase, no trailing
    /// slash, no default port (`https://app.example.com`,
    /// `http://localhost:5173`). `null` allows the opaque origin of
    /// sandboxed frames and `file:` pages; it is refused unless listed.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        match canonical_origin(origin) {
            Ok(value) => match &mut self.origins {
                Some(Origins::List(list)) => list.push(value),
                _ => self.mistake(CorsErrorKind::MixedOrigins, None),
            },
            Err(hint) => self.mistake(
                CorsErrorKind::InvalidOrigin,
                Some((origin.to_owned(), hint)),
            ),
        }
        self
    }

    /// Allows each of `origins`; see [`allow_origin`](Self::allow_origin).
    pub fn allow_origins<'a>(mut self, origins: impl IntoIterator<Item = &'a str>) -> Self {
        for origin in origins {
            self = self.allow_origin(origin);
        }
        self
    }

    /// Allows the origins for which `predicate` returns `true`. It is given
    /// the `Origin` header as sent (requests whose `Origin` is not visible
    /// ASCII are refused before it is called).
    pub fn allow_origin_fn<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        match &self.origins {
            Some(Origins::List(list)) if list.is_empty() => {
                self.origins = Some(Origins::Predicate(Arc::new(predicate)));
            }
            _ => self.mistake(CorsErrorKind::MixedOrigins, None),
        }
        self
    }

    /// Allows every origin, for public streams without cookies. Requires
    /// [`allow_credentials(false)`](Self::allow_credentials): browsers
    /// refuse credentials with a wildcard, and echoing any origin with
    /// credentials would hand every site the user's session.
    pub fn any_origin(mut self) -> Self {
        match &self.origins {
            Some(Origins::List(list)) if list.is_empty() => self.origins = Some(Origins::Any),
            _ => self.mistake(CorsErrorKind::MixedOrigins, None),
        }
        self
    }

    /// Whether the browser may send cookies with the stream
    /// (`new EventSource(url, { withCredentials: true })`).
    ///
    /// Default: `true`.
    pub fn allow_credentials(mut self, credentials: bool) -> Self {
        self.credentials = credentials;
        self
    }

    /// Adds a request header a preflight may ask for, such as
    /// `Authorization` for `EventSource` polyfills that send headers.
    /// `Last-Event-ID` is always allowed.
    pub fn allow_header(mut self, header: HeaderName) -> Self {
        if !self.allow_headers.contains(&header) {
            self.allow_headers.push(header);
        }
        self
    }

    /// How long a browser may cache a preflight answer
    /// (`Access-Control-Max-Age`, whole seconds). Longer than 24 hours is
    /// written as 24 hours: no browser keeps an answer longer (Firefox caps
    /// it at 24 hours, Chromium at 2).
    ///
    /// Default: not sent (browsers then cache it for 5 seconds).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Lets a page read a response header of the stream with `fetch`
    /// (`Access-Control-Expose-Headers`): the id of a run in `X-Run-Id`,
    /// say. Browsers hide every other header but a few from a cross-origin
    /// page.
    ///
    /// Default: none.
    pub fn expose_header(mut self, header: HeaderName) -> Self {
        if !self.expose_headers.contains(&header) {
            self.expose_headers.push(header);
        }
        self
    }

    /// Declares a route that a page reads with `fetch` and another method
    /// than `GET`: `POST /runs` that starts a job and answers with its event
    /// stream, say. Its preflights from allowed origins are answered here,
    /// like those of `GET` streams: `204` with `method` and the allowed
    /// request headers (add `Content-Type` with
    /// [`allow_header`](Self::allow_header) for a JSON body). `path` is the
    /// request's path, matched exactly (`/runs`, not `/runs/7`; list each).
    /// The request itself is judged as every stream request is, by its
    /// `Accept: text/event-stream`, so send that header from the page.
    ///
    /// A browser sends a preflight only for a request that is not
    /// "simple": a JSON `Content-Type` or an `Authorization` header, say.
    /// Allow those headers with [`allow_header`](Self::allow_header), or the
    /// preflight is not this layer's to answer.
    ///
    /// Without it, such preflights go on to the inner service (the app's
    /// own CORS): a JSON `POST` elsewhere is never answered by this layer.
    ///
    /// A path that does not start with `/`, or the methods `GET` (always
    /// owned), `OPTIONS`, `CONNECT` and `TRACE`, are refused by
    /// [`build`](Self::build) ([`CorsErrorKind::InvalidRoute`]).
    pub fn stream_route(mut self, path: &str, method: Method) -> Self {
        let refused = !path.starts_with('/')
            || [Method::GET, Method::OPTIONS, Method::CONNECT, Method::TRACE].contains(&method);
        if refused {
            self.mistake(CorsErrorKind::InvalidRoute, None);
        } else if !self
            .stream_routes
            .iter()
            .any(|(p, m)| p == path && *m == method)
        {
            self.stream_routes.push((path.to_owned(), method));
        }
        self
    }

    /// The layer, or the first mistake in its settings.
    ///
    /// # Errors
    ///
    /// A [`CorsError`] that says what to change.
    pub fn build(mut self) -> Result<SseCorsLayer, CorsError> {
        let kind = match (&self.error, &self.origins) {
            (Some(mistake), _) => Some(mistake.kind),
            (None, None) => Some(CorsErrorKind::NoOrigins),
            (None, Some(Origins::List(list))) if list.is_empty() => Some(CorsErrorKind::NoOrigins),
            (None, Some(Origins::Any)) if self.credentials => {
                Some(CorsErrorKind::AnyOriginWithCredentials)
            }
            _ => None,
        };
        if let Some(kind) = kind {
            let invalid = self.error.take().and_then(|mistake| mistake.invalid);
            return Err(CorsError {
                kind,
                invalid,
                builder: Box::new(self),
            });
        }
        let origins = self.origins.take().unwrap_or(Origins::List(Vec::new()));
        let allow_headers = joined(&self.allow_headers);
        let expose_headers =
            (!self.expose_headers.is_empty()).then(|| joined(&self.expose_headers));
        let max_age = self
            .max_age
            .map(|max_age| HeaderValue::from(max_age.as_secs().min(MAX_AGE_CAP_SECS)));
        Ok(SseCorsLayer {
            config: Some(Arc::new(Config {
                origins,
                credentials: self.credentials,
                allow_headers,
                allow_header_names: self.allow_headers,
                stream_routes: self.stream_routes,
                expose_headers,
                max_age,
            })),
        })
    }

    fn mistake(&mut self, kind: CorsErrorKind, invalid: Option<(String, String)>) {
        self.error.get_or_insert(Mistake { kind, invalid });
    }
}

impl fmt::Debug for SseCorsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseCorsBuilder")
            .field("credentials", &self.credentials)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Header names as one list value (`last-event-id, content-type`).
fn joined(names: &[HeaderName]) -> HeaderValue {
    let names: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    HeaderValue::from_str(&names.join(", "))
        .expect("header names joined by commas are a valid header value")
}

/// The browser's serialization of `origin`, or why it is not one.
fn canonical_origin(origin: &str) -> Result<HeaderValue, String> {
    let invalid = |hint: &str| hint.to_owned();
    if origin == "null" {
        return Ok(HeaderValue::from_static("null"));
    }
    if origin == "*" {
        return Err(invalid("use any_origin() for every origin"));
    }
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| invalid("write it as scheme://host or scheme://host:port"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(invalid("the scheme must be http or https, in lowercase"));
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        let trimmed = format!(
            "{scheme}://{}",
            rest.split(['/', '?', '#']).next().unwrap_or("")
        );
        return Err(invalid(&format!(
            "an origin has no path, query or trailing slash: write {trimmed}"
        )));
    }
    let (host, port) = if let Some(inside) = rest.strip_prefix('[') {
        let end = inside
            .find(']')
            .ok_or_else(|| invalid("an IPv6 host needs its closing bracket"))?;
        let (host, after) = rest.split_at(end + 2);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(invalid("write [address]:port")),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the host is missing"));
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the port must be digits"));
        }
        if port.len() > 1 && port.starts_with('0') {
            let trimmed = port.trim_start_matches('0');
            return Err(invalid(&format!(
                "browsers write the port without leading zeros: write {scheme}://{host}:{}",
                if trimmed.is_empty() { "0" } else { trimmed }
            )));
        }
        if port.len() > 5 || port.parse::<u32>().map_or(true, |port| port > 65535) {
            return Err(invalid("the port must be at most 65535"));
        }
    }
    let with_port = |host: &str| match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    if let Some(address) = host.strip_prefix('[') {
        let address = address.strip_suffix(']').unwrap_or(address);
        let Ok(parsed) = address.parse::<Ipv6Addr>() else {
            return Err(invalid("an IPv6 host is [address], such as [::1]"));
        };
        let serialized = serialize_ipv6(parsed);
        if serialized != address {
            return Err(invalid(&format!(
                "browsers write this address as {}",
                with_port(&format!("[{serialized}]"))
            )));
        }
    } else if host.contains(['[', ']', ':']) {
        return Err(invalid("the host has characters a browser would not send"));
    } else if ends_in_a_number(host) {
        // Browsers read such a host as an IPv4 address, and write it as
        // four decimal numbers.
        match parse_ipv4(host) {
            Some(parsed) if parsed.to_string() == host => {}
            Some(parsed) => {
                return Err(invalid(&format!(
                    "browsers write this address as {}",
                    with_port(&parsed.to_string())
                )))
            }
            None => {
                return Err(invalid(
                    "browsers refuse this host: a host ending in a number is an IPv4 \
                     address, such as 127.0.0.1",
                ))
            }
        }
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(&format!(
            "browsers send the host in lowercase: write {}",
            origin.to_ascii_lowercase()
        )));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    {
        return Err(invalid("the host has characters a browser would not send"));
    }
    let default_port = if scheme == "https" { "443" } else { "80" };
    if port == Some(default_port) {
        return Err(invalid(&format!(
            "browsers omit the default port: write {scheme}://{host}"
        )));
    }
    HeaderValue::from_str(origin).map_err(|_| invalid("not a valid header value"))
}

/// Whether browsers read `host` as an IPv4 address: its last label (a
/// trailing dot aside) is a number, decimal or `0x` hexadecimal.
fn ends_in_a_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    if let Some(hex) = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
}

/// A host that ends in a number read as browsers read it (the URL
/// standard's IPv4 parser): up to four dot-separated numbers, each decimal,
/// `0x` hexadecimal or `0`-prefixed octal, the last filling the bytes the
/// others leave. `None` where browsers refuse the URL.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (hex, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        if part.is_empty() {
            return None;
        }
        let number = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        numbers.push(number);
    }
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|number| *number > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut address = *last;
    for (i, number) in leading.iter().enumerate() {
        address += number << (8 * (3 - i));
    }
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

/// An IPv6 address as browsers serialize it (the URL standard): lowercase
/// hexadecimal pieces without leading zeros, the first longest run of two
/// or more zero pieces written `::`, never dotted IPv4.
fn serialize_ipv6(address: Ipv6Addr) -> String {
    let pieces = address.segments();
    let (mut run_start, mut run_len) = (None, 1);
    let mut i = 0;
    while i < pieces.len() {
        if pieces[i] != 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < pieces.len() && pieces[i] == 0 {
            i += 1;
        }
        if i - start > run_len {
            (run_start, run_len) = (Some(start), i - start);
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < pieces.len() {
        if Some(i) == run_start {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += run_len;
            continue;
        }
        out.push_str(&format!("{:x}", pieces[i]));
        if i + 1 < pieces.len() {
            out.push(':');
        }
        i += 1;
    }
    out
}

/// A CORS setting that cannot work, with the builder it came from.
#[derive(Clone)]
pub struct CorsError {
    kind: CorsErrorKind,
    /// For an invalid origin: the origin as given, and what to write.
    invalid: Option<(String, String)>,
    builder: Box<SseCorsBuilder>,
}

/// Which CORS setting cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorsErrorKind {
    /// No origin was allowed.
    NoOrigins,
    /// `any_origin()` with credentials.
    AnyOriginWithCredentials,
    /// A list of origins mixed with a predicate or `any_origin()`.
    MixedOrigins,
    /// An origin not written as a browser sends it
    /// ([`CorsError::invalid_origin`] names it).
    InvalidOrigin,
    /// A [`stream_route`](SseCorsBuilder::stream_route) whose path does
    /// not start with `/`, or whose method is `GET`, `OPTIONS`, `CONNECT`
    /// or `TRACE`.
    InvalidRoute,
}

impl CorsError {
    /// Which setting cannot work.
    pub fn kind(&self) -> CorsErrorKind {
        self.kind
    }

    /// For [`CorsErrorKind::InvalidOrigin`]: the origin as it was given.
    pub fn invalid_origin(&self) -> Option<&str> {
        self.invalid.as_ref().map(|(origin, _)| origin.as_str())
    }

    /// The builder with every setting it took (a refused origin was not
    /// taken), to change the one at fault and build again.
    pub fn into_builder(self) -> SseCorsBuilder {
        *self.builder
    }
}

impl fmt::Debug for CorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsError")
            .field("kind", &self.kind)
            .field("invalid", &self.invalid)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for CorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.invalid) {
            (CorsErrorKind::NoOrigins, _) => f.write_str(
                "no origin is allowed: add allow_origin(..), allow_origin_fn(..) or any_origin()",
            ),
            (CorsErrorKind::AnyOriginWithCredentials, _) => f.write_str(
                "any_origin() cannot be combined with credentials: list the origins that may \
                 send cookies with allow_origin(..), or call allow_credentials(false) for a \
                 public stream",
            ),
            (CorsErrorKind::MixedOrigins, _) => f.write_str(
                "use one of: a list of origins, a predicate, or any_origin(); not several",
            ),
            (CorsErrorKind::InvalidOrigin, Some((origin, hint))) => {
                write!(f, "`{origin}` is not an origin as browsers send it: {hint}")
            }
            (CorsErrorKind::InvalidOrigin, None) => {
                f.write_str("an origin is not written as browsers send it")
            }
            (CorsErrorKind::InvalidRoute, _) => f.write_str(
                "a stream route needs a path that starts with `/` and a method other than GET \
                 (always allowed), OPTIONS, CONNECT or TRACE",
            ),
        }
    }
}

impl StdError for CorsError {}

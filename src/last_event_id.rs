//! [`LastEventId`]: the id a reconnecting browser asks to resume after.

use std::fmt;

use http::{HeaderMap, HeaderName, Request};

/// The `Last-Event-ID` request header.
pub static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The id of the last event a reconnecting client received, from the
/// `Last-Event-ID` request header.
///
/// Browsers send the id as raw UTF-8 bytes, which [`HeaderValue::to_str`]
/// (visible ASCII only) would reject; this reads the bytes as UTF-8. A header
/// that is not valid UTF-8 gives no id, like a missing one: it is never a
/// panic or an error response. An empty header gives an empty id (the stream
/// sent `id:` to reset it).
///
/// [`HeaderValue::to_str`]: http::HeaderValue::to_str
///
/// # Example
///
/// ```
/// use tower_sse::LastEventId;
///
/// // A browser sends the id it last saw as raw UTF-8 bytes. (`HeaderValue`
/// // from a `&str` takes visible ASCII only, so build it from the bytes.)
/// let sent = http::HeaderValue::from_bytes("événement-41".as_bytes()).unwrap();
/// let request = http::Request::builder()
///     .header("last-event-id", sent)
///     .body(())
///     .unwrap();
/// let id = LastEventId::from_request(&request).unwrap();
/// assert_eq!(id.as_str(), "événement-41");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LastEventId(String);

impl LastEventId {
    /// Reads the id from request headers. With several `Last-Event-ID`
    /// headers, the first one is used.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(&LAST_EVENT_ID)?;
        let id = std::str::from_utf8(value.as_bytes()).ok()?;
        Some(Self(id.to_owned()))
    }

    /// Reads the id from a request's headers.
    pub fn from_request<B>(request: &Request<B>) -> Option<Self> {
        Self::from_headers(request.headers())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LastEventId").field(&self.0).finish()
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers_with(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&LAST_EVENT_ID, HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn raw_utf8_id_is_read_as_sent() {
        let id = LastEventId::from_headers(&headers_with("ид-42 ✓".as_bytes())).unwrap();
        assert_eq!(id.as_str(), "ид-42 ✓");
    }

    #[test]
    fn invalid_utf8_gives_no_id() {
        assert_eq!(
            LastEventId::from_headers(&headers_with(b"\xff\xfe41")),
            None
        );
        assert_eq!(LastEventId::from_headers(&headers_with(b"4\xc3")), None);
    }

    #[test]
    fn missing_header_gives_no_id_and_empty_header_gives_empty_id() {
        assert_eq!(LastEventId::from_headers(&HeaderMap::new()), None);
        let empty = LastEventId::from_headers(&headers_with(b"")).unwrap();
        assert_eq!(empty.as_str(), "");
    }

    #[test]
    fn header_name_is_matched_without_case() {
        let request = Request::builder()
            .header("Last-Event-ID", "7")
            .body(())
            .unwrap();
        assert_eq!(LastEventId::from_request(&request).unwrap().as_str(), "7");
    }
}

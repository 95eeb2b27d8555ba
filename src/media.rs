//! "Is this response an event stream?", answered in one place.

use http::{header, HeaderMap};

/// The media type of an event stream.
pub(crate) const TEXT_EVENT_STREAM: &str = "text/event-stream";

/// The `Cache-Control` an event stream gets when its handler set none: it
/// must never be served from a cache.
#[allow(dead_code)] // used by the layers, each behind its own feature
pub(crate) const NO_CACHE: &str = "no-cache";

/// [`NO_CACHE`] with `no-transform`, for the no-buffering layer.
#[allow(dead_code)] // used by the layers, each behind its own feature
pub(crate) const NO_CACHE_NO_TRANSFORM: &str = "no-cache, no-transform";

/// Whether `headers` declare an event stream: the `Content-Type` media type is
/// `text/event-stream`, compared without regard to case, parameters ignored.
#[allow(dead_code)] // used by the layers, each behind its own feature
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let essence = match value.iter().position(|&b| b == b';') {
        Some(end) => &value[..end],
        None => value,
    };
    trim_spaces(essence).eq_ignore_ascii_case(TEXT_EVENT_STREAM.as_bytes())
}

/// `bytes` without leading and trailing spaces and tabs (optional white space
/// in HTTP). `<[u8]>::trim_ascii` is newer than our MSRV.
pub(crate) fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_content_type(value: &'static [u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    }

    #[test]
    fn both_default_cache_controls_say_no_cache() {
        assert!(NO_CACHE_NO_TRANSFORM.starts_with(NO_CACHE));
    }

    #[test]
    fn media_type_is_matched_without_case_and_parameters() {
        for value in [
            &b"text/event-stream"[..],
            b"Text/Event-Stream",
            b"text/event-stream; charset=utf-8",
            b"text/event-stream;charset=utf-8",
            b" text/event-stream ",
        ] {
            assert!(is_event_stream(&with_content_type(value)), "{value:?}");
        }
    }

    #[test]
    fn other_media_types_and_no_content_type_are_not_event_streams() {
        for value in [
            &b"application/json"[..],
            b"text/event-streams",
            b"text/event",
            b"text/plain; x=text/event-stream",
            b"application/grpc",
            b"",
            b"\xff\xfe",
        ] {
            assert!(!is_event_stream(&with_content_type(value)), "{value:?}");
        }
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}

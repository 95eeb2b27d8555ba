//! "Is this response an event stream?", answered in one place.

use http::{header, HeaderMap, HeaderName};

pub(crate) use crate::body::TEXT_EVENT_STREAM;

/// The `Cache-Control` an event stream gets when its handler set none: it
/// must never be served from a cache.
pub(crate) const NO_CACHE: &str = "no-cache";

/// [`NO_CACHE`] with `no-transform`, for the no-buffering layer.
pub(crate) const NO_CACHE_NO_TRANSFORM: &str = "no-cache, no-transform";

/// Whether `headers` declare an event stream: the `Content-Type` media type is
/// `text/event-stream`, compared without regard to case, parameters ignored.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    is_text_event_stream(split_media(value.as_bytes()).0)
}

/// A media type or range split at its first `;`: the type, trimmed, and its
/// parameters, each trimmed.
fn split_media(value: &[u8]) -> (&[u8], impl Iterator<Item = &[u8]>) {
    let mut parts = value.split(|&b| b == b';');
    let essence = trim_spaces(parts.next().unwrap_or_default());
    (essence, parts.map(trim_spaces))
}

fn is_text_event_stream(essence: &[u8]) -> bool {
    essence.eq_ignore_ascii_case(TEXT_EVENT_STREAM.as_bytes())
}

/// The items of a comma-separated header list (`Accept`, `Vary`,
/// `Access-Control-Request-Headers`) across all of the header's values,
/// trimmed, empty items skipped.
pub(crate) fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(trim_spaces)
        .filter(|item| !item.is_empty())
}

/// Whether a request asks for an event stream: its `Accept` header lists
/// the media range `text/event-stream` (without regard to case, parameters
/// ignored, but not with `q=0`, which refuses it). `EventSource` always
/// sends `Accept: text/event-stream`; `*/*` and absent `Accept` do not
/// count, since every `fetch` sends them.
pub(crate) fn accepts_event_stream(headers: &HeaderMap) -> bool {
    list_items(headers, header::ACCEPT).any(|range| {
        let (essence, mut parameters) = split_media(range);
        is_text_event_stream(essence) && !parameters.any(is_zero_quality)
    })
}

/// `q=0`, `q=0.`, `q=0.0`, up to three zeros: the client refuses the range.
fn is_zero_quality(parameter: &[u8]) -> bool {
    let Some(value) = parameter
        .strip_prefix(b"q=")
        .or_else(|| parameter.strip_prefix(b"Q="))
    else {
        return false;
    };
    match value {
        [b'0'] => true,
        [b'0', b'.', zeros @ ..] => zeros.len() <= 3 && zeros.iter().all(|&b| b == b'0'),
        _ => false,
    }
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

    fn with_accept(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn an_accept_that_lists_event_streams_asks_for_one() {
        for values in [
            &["text/event-stream"][..],
            &["Text/Event-Stream"],
            &["application/json, text/event-stream"],
            &["text/html", "text/event-stream;q=0.5"],
            &["text/event-stream ; charset=utf-8"],
            &["text/event-stream;q=0.001"],
        ] {
            assert!(accepts_event_stream(&with_accept(values)), "{values:?}");
        }
    }

    #[test]
    fn any_other_accept_does_not_ask_for_an_event_stream() {
        for values in [
            &[][..],
            &["*/*"],
            &["text/*"],
            &["application/json"],
            &["text/event-streams"],
            &["text/event-stream;q=0"],
            &["text/event-stream; q=0.000"],
            &["application/x; y=text/event-stream"],
        ] {
            assert!(!accepts_event_stream(&with_accept(values)), "{values:?}");
        }
    }
}

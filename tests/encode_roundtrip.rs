//! Property test: random events, encoded by tower-sse and parsed by an
//! independent parser (the `eventsource-stream` crate), come back exactly.

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{stream, FutureExt, StreamExt};
use proptest::prelude::*;
use tower_sse::{event::EventErrorKind, Event};

/// Text mixing any Unicode with the characters that matter to the format.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => Just('\n'),
        2 => Just('\r'),
        1 => Just(' '),
        1 => Just(':'),
        1 => Just('\0'),
        1 => Just('\u{feff}'),
        1 => Just('\u{2028}'),
        1 => Just('\u{85}'),
    ];
    prop::collection::vec(ch, 0..12).prop_map(|chars| chars.into_iter().collect())
}

#[derive(Debug, Clone)]
struct Spec {
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    comment: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::weighted(0.9, text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(0u64..100_000),
        prop::option::of(text()),
    )
        .prop_map(|(data, event, id, retry, comment)| Spec {
            data,
            event,
            id,
            retry,
            comment,
        })
}

/// The browser's view of line ends: CRLF and CR become LF.
fn normalized(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

fn parse(bytes: Vec<Bytes>) -> Vec<eventsource_stream::Event> {
    stream::iter(bytes.into_iter().map(Ok::<_, std::convert::Infallible>))
        .eventsource()
        .map(|event| event.expect("encoder output parses"))
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn encoded_events_parse_back_exactly(specs in prop::collection::vec(spec(), 1..6)) {
        let mut encoded = Vec::new();
        let mut expected = Vec::new();
        let mut last_id = String::new();

        for spec in &specs {
            let mut event = Event::new();
            if let Some(comment) = &spec.comment {
                event = event.comment(comment);
            }
            let mut typed = false;
            if let Some(kind) = &spec.event {
                match event.clone().event(kind) {
                    Ok(with_type) => {
                        event = with_type;
                        typed = true;
                    }
                    Err(error) => {
                        prop_assert_eq!(error.kind(), EventErrorKind::TypeLineBreak);
                        prop_assert!(kind.contains(['\r', '\n']));
                    }
                }
            }
            if let Some(id) = &spec.id {
                match event.clone().id(id) {
                    Ok(with_id) => {
                        event = with_id;
                        last_id = id.clone();
                    }
                    Err(error) => {
                        prop_assert!(matches!(
                            error.kind(),
                            EventErrorKind::IdLineBreak | EventErrorKind::IdNul
                        ));
                        prop_assert!(id.contains(['\r', '\n', '\0']));
                    }
                }
            }
            if let Some(ms) = spec.retry {
                event = event.retry(Duration::from_millis(ms));
            }
            if let Some(data) = &spec.data {
                event = event.data(data);
            }

            let bytes = event.encode().into_bytes();
            prop_assert!(bytes.ends_with(b"\n\n") || &bytes[..] == b"\n");
            prop_assert!(!bytes.contains(&b'\r'));
            prop_assert!(!bytes.starts_with(&[0xef, 0xbb, 0xbf]));
            encoded.push(bytes);

            // An event is dispatched when it has data, or a type (then it is
            // written with an empty data line).
            if spec.data.is_some() || typed {
                let kind = spec.event.as_deref().filter(|kind| typed && !kind.is_empty());
                expected.push((
                    kind.unwrap_or("message").to_owned(),
                    spec.data.as_deref().map(normalized).unwrap_or_default(),
                    last_id.clone(),
                ));
            }
        }

        let parsed: Vec<_> = parse(encoded)
            .into_iter()
            .map(|event| (event.event, event.data, event.id))
            .collect();
        prop_assert_eq!(parsed, expected);
    }
}

/// What README's guide says of axum 0.8's `Sse` beside ours, checked: a CRLF
/// in data becomes two line ends there (the parser reads an extra empty
/// line), empty data writes no `data` field (a browser drops the event);
/// ours keeps one line end and writes `data:`.
#[tokio::test]
async fn axum_doubles_crlf_and_drops_empty_data_where_ours_does_not() {
    use axum::response::{sse::Event as AxumEvent, IntoResponse, Sse};
    use http_body_util::BodyExt;

    async fn axum_bytes(event: AxumEvent) -> Vec<u8> {
        let events = stream::iter([Ok::<_, std::convert::Infallible>(event)]);
        let body = Sse::new(events).into_response().into_body();
        body.collect().await.unwrap().to_bytes().to_vec()
    }
    async fn parsed(bytes: Vec<u8>) -> Vec<String> {
        stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))])
            .eventsource()
            .map(|event| event.unwrap().data)
            .collect()
            .await
    }

    let axum = axum_bytes(AxumEvent::default().data("a\r\nb")).await;
    assert_eq!(parsed(axum).await, ["a\n\nb"]);
    let ours = Event::new().data("a\r\nb").encode().as_bytes().to_vec();
    assert_eq!(parsed(ours).await, ["a\nb"]);

    let axum = axum_bytes(AxumEvent::default().event("ping").data("")).await;
    assert!(!String::from_utf8_lossy(&axum).contains("data"), "{axum:?}");
    let ours = Event::new().event("ping").unwrap().data("").encode();
    assert_eq!(ours.as_bytes(), b"event: ping\ndata:\n\n");
}

//! Every public setter at its extremes, through the whole `SseLayer`: each
//! value is either refused where the layer is built, with a typed error, or
//! works at request time. No setting may panic later.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_sse::{
    close::CloseErrorKind, event::MAX_RETRY, keep_alive::KeepAliveErrorKind, CloseLayer, Event,
    EventStream, KeepAliveLayer, Shutdown, SseCorsLayer, SseLayer,
};

const NS: Duration = Duration::from_nanos(1);

/// One event-stream request through `layer` whose handler writes `events`
/// (a burst) and then waits forever with a frame cap of `cap`; returns the
/// body, pinned.
async fn open(
    layer: SseLayer,
    events: usize,
    cap: usize,
) -> std::pin::Pin<Box<impl http_body::Body<Data = Bytes, Error = Infallible>>> {
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_request: Request<()>| async move {
            let burst = stream::iter((0..events).map(|n| Event::new().data(n.to_string())));
            let events = burst.chain(stream::pending());
            Ok::<_, Infallible>(
                EventStream::new(events)
                    .max_frame_size(cap)
                    .into_http_response(),
            )
        },
    ));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Box::pin(response.into_body())
}

async fn next_frame(
    body: &mut std::pin::Pin<Box<impl http_body::Body<Data = Bytes, Error = Infallible>>>,
) -> Bytes {
    body.frame().await.unwrap().unwrap().into_data().unwrap()
}

#[tokio::test(start_paused = true)]
async fn keep_alive_intervals_are_refused_or_work() {
    let table = [
        (Duration::ZERO, Err(KeepAliveErrorKind::ZeroInterval)),
        (NS, Err(KeepAliveErrorKind::ZeroInterval)),
        (
            Duration::from_millis(1) - NS,
            Err(KeepAliveErrorKind::ZeroInterval),
        ),
        (Duration::from_millis(1), Ok(())),
        (MAX_INTERVAL, Ok(())),
        (MAX_INTERVAL + NS, Err(KeepAliveErrorKind::IntervalTooLong)),
        (
            Duration::from_secs(u64::MAX / 2),
            Err(KeepAliveErrorKind::IntervalTooLong),
        ),
        (Duration::MAX, Err(KeepAliveErrorKind::IntervalTooLong)),
    ];
    // 24 hours: the longest interval.
    const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
    for (interval, expected) in table {
        let built = KeepAliveLayer::builder().interval(interval).build();
        assert_eq!(
            built.as_ref().map(|_| ()).map_err(|e| e.kind()),
            expected,
            "{:?}",
            built
        );
        let Ok(layer) = built else { continue };
        let mut body = open(SseLayer::new().keep_alive(layer), 1, 64 * 1024).await;
        assert_eq!(&next_frame(&mut body).await[..], b"data: 0\n\n");
        assert_eq!(&next_frame(&mut body).await[..], b":\n\n", "{interval:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn close_settings_are_refused_or_work() {
    let second = Duration::from_secs(1);
    let table = [
        (
            Some(Duration::ZERO),
            (second, second),
            Err(CloseErrorKind::ZeroLifetime),
        ),
        (Some(NS), (second, second), Ok(())),
        (Some(Duration::MAX), (second, second), Ok(())),
        (None, (Duration::ZERO, Duration::ZERO), Ok(())),
        (None, (MAX_RETRY, MAX_RETRY), Ok(())),
        (
            None,
            (second, Duration::ZERO),
            Err(CloseErrorKind::DelayRange),
        ),
        (
            None,
            (Duration::ZERO, MAX_RETRY + NS),
            Err(CloseErrorKind::DelayTooLong),
        ),
        (
            None,
            (Duration::MAX, Duration::MAX),
            Err(CloseErrorKind::DelayTooLong),
        ),
    ];
    for (lifetime, (min, max), expected) in table {
        let shutdown = Shutdown::new();
        let mut builder = CloseLayer::builder()
            .shutdown(&shutdown)
            .reconnect_delay(min, max);
        if let Some(lifetime) = lifetime {
            builder = builder.max_lifetime(lifetime);
        }
        let built = builder.build();
        assert_eq!(
            built.as_ref().map(|_| ()).map_err(|e| e.kind()),
            expected,
            "{:?}",
            built
        );
        let Ok(layer) = built else { continue };
        let mut body = open(SseLayer::new().close(layer), 1, 64 * 1024).await;
        let first = next_frame(&mut body).await;
        // A lifetime of 1 ns may already have ended the stream.
        let last = if first.starts_with(b"retry: ") {
            first
        } else {
            assert_eq!(&first[..], b"data: 0\n\n");
            shutdown.trigger();
            next_frame(&mut body).await
        };
        let text = std::str::from_utf8(&last).unwrap();
        let millis: u64 = text
            .strip_prefix("retry: ")
            .and_then(|rest| rest.strip_suffix("\nevent: sse-retry\ndata:\n\n"))
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("a retry frame, got {text:?}"));
        assert!(millis <= i32::MAX as u64, "{text:?}");
        assert!(body.frame().await.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn any_frame_cap_writes_every_event_once_in_order() {
    let expected: String = (0..200).map(|n| format!("data: {n}\n\n")).collect();
    for cap in [0, 1, 9, 10, 64 * 1024, usize::MAX] {
        let mut body = open(SseLayer::new().without_keep_alive(), 200, cap).await;
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            seen.extend_from_slice(&next_frame(&mut body).await);
        }
        assert_eq!(String::from_utf8(seen).unwrap(), expected, "cap {cap}");
    }
}

#[tokio::test]
async fn cors_max_age_at_its_extremes_is_written_as_seconds_up_to_a_day() {
    for (max_age, written) in [
        (Duration::ZERO, "0"),
        (Duration::from_millis(1_999), "1"),
        (Duration::from_secs(7_200), "7200"),
        (Duration::from_secs(86_400), "86400"),
        (Duration::from_secs(86_401), "86400"),
        (Duration::MAX, "86400"),
    ] {
        let cors = SseCorsLayer::builder()
            .allow_origin("https://app.example.com")
            .max_age(max_age)
            .build()
            .unwrap();
        let service = ServiceBuilder::new()
            .layer(SseLayer::new().cors(cors))
            .service(service_fn(|_request: Request<()>| async {
                Ok::<_, Infallible>(EventStream::new(stream::empty::<Event>()).into_http_response())
            }));
        let preflight = Request::builder()
            .method(Method::OPTIONS)
            .header(header::ORIGIN, "https://app.example.com")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "last-event-id")
            .body(())
            .unwrap();
        let response = service.oneshot(preflight).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_MAX_AGE],
            written,
            "{max_age:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn keep_alive_comments_are_refused_or_written_on_every_idle_interval() {
    let table = [
        (String::new(), Ok(())),
        ("ping".to_owned(), Ok(())),
        ("x".repeat(2048), Ok(())),
        ("x".repeat(2049), Err(KeepAliveErrorKind::CommentTooLong)),
        ("x".repeat(1 << 20), Err(KeepAliveErrorKind::CommentTooLong)),
        (
            "a\nb".to_owned(),
            Err(KeepAliveErrorKind::CommentHasLineBreak),
        ),
    ];
    for (comment, expected) in table {
        let built = KeepAliveLayer::builder()
            .interval(Duration::from_secs(1))
            .comment(comment.clone())
            .build();
        assert_eq!(
            built.as_ref().map(|_| ()).map_err(|e| e.kind()),
            expected,
            "{} bytes",
            comment.len()
        );
        let Ok(layer) = built else { continue };
        let mut body = open(SseLayer::new().keep_alive(layer), 1, 64 * 1024).await;
        assert_eq!(&next_frame(&mut body).await[..], b"data: 0\n\n");
        let written = if comment.is_empty() {
            ":\n\n".to_owned()
        } else {
            format!(": {comment}\n\n")
        };
        for _ in 0..2 {
            assert_eq!(next_frame(&mut body).await, written.as_bytes());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_final_event_with_nothing_in_it_is_refused() {
    let table = [
        (Event::new(), Err(CloseErrorKind::EmptyFinalEvent)),
        (Event::new().data(""), Ok("data:\n\n")),
        (Event::new().comment("bye"), Ok(": bye\n\n")),
        (
            Event::new().event("bye").unwrap(),
            Ok("event: bye\ndata:\n\n"),
        ),
    ];
    for (event, expected) in table {
        let shutdown = Shutdown::new();
        let built = CloseLayer::builder()
            .shutdown(&shutdown)
            .final_event(event)
            .build();
        let written = match (built, expected) {
            (Err(error), Err(expected)) => {
                assert_eq!(error.kind(), expected);
                continue;
            }
            (Ok(layer), Ok(written)) => (layer, written),
            (built, expected) => panic!("{built:?}, expected {expected:?}"),
        };
        let (layer, written) = written;
        let mut body = open(SseLayer::new().close(layer), 1, 64 * 1024).await;
        assert_eq!(&next_frame(&mut body).await[..], b"data: 0\n\n");
        shutdown.trigger();
        let last = next_frame(&mut body).await;
        let text = std::str::from_utf8(&last).unwrap();
        assert!(text.starts_with(written), "{text:?}");
        assert!(text[written.len()..].starts_with("retry: "), "{text:?}");
    }
}

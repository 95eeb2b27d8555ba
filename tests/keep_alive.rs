//! KeepAliveLayer on a real hyper server, read by a real client, and on
//! axum's own `Sse` responses.

mod common;

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use futures_util::{stream, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Incoming;
use tower::{ServiceBuilder, ServiceExt};
use tower_sse::{Event, EventStream, KeepAliveLayer};

#[tokio::test]
async fn an_idle_stream_gets_comments_at_the_interval_and_no_spurious_events() {
    let interval = Duration::from_millis(200);
    let service = ServiceBuilder::new()
        .layer(
            KeepAliveLayer::builder()
                .interval(interval)
                .build()
                .unwrap(),
        )
        .service_fn(|_request: Request<Incoming>| async {
            // One event, then silence for 1.1 s, then one more event.
            let events = stream::iter(0..2).then(|n| async move {
                if n == 1 {
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                }
                Event::new().id(n.to_string()).unwrap().data("x")
            });
            Ok::<_, Infallible>(EventStream::new(events).into_http_response())
        });
    let server = common::serve_service(service).await;

    let response = common::get(server.addr, "/events").await;
    let start = Instant::now();
    let mut raw = Vec::new();
    let mut comment_times = Vec::new();
    let mut body = BodyDataStream::new(response.into_body());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        if &chunk[..] == b":\n\n" {
            comment_times.push(start.elapsed());
        }
        raw.extend_from_slice(&chunk);
    }

    // 1.1 s of silence with a 200 ms interval: five comments, 200 ms apart
    // (four allowed, for a loaded machine whose timers run late), and never
    // closer together than the interval.
    assert!(
        (4..=5).contains(&comment_times.len()),
        "comments at {comment_times:?}"
    );
    for pair in comment_times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(190),
            "comments at {comment_times:?}"
        );
    }
    // The independent parser sees exactly the two events.
    let events: Vec<_> = common::parse_bytes(raw).await;
    let ids: Vec<_> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids, ["0", "1"]);
}

#[tokio::test(start_paused = true)]
async fn axum_sse_responses_get_comments_too() {
    use axum::response::{sse::Event as AxumEvent, IntoResponse, Sse};

    let service = ServiceBuilder::new()
        .layer(KeepAliveLayer::new())
        .service_fn(|_request: Request<()>| async {
            // axum's own keep-alive is off: the stream is silent.
            let quiet = stream::pending::<Result<AxumEvent, Infallible>>();
            Ok::<Response<axum::body::Body>, Infallible>(Sse::new(quiet).into_response())
        });
    let response = service.oneshot(Request::new(())).await.unwrap();
    let mut body = Box::pin(response.into_body());
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(&frame.into_data().unwrap()[..], b":\n\n");
}

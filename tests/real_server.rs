//! A real hyper server streams `EventStream` bodies to a real client that
//! parses them with an independent parser.

mod common;

use std::time::Duration;

use futures_util::{stream, StreamExt};
use tower_sse::{Event, EventStream};

#[tokio::test]
async fn events_reach_a_real_client_exactly() {
    let server = common::serve(|_request| async {
        let events = stream::iter(0..5).then(|n| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Event::new()
                .event(if n % 2 == 0 { "even" } else { "odd" })
                .unwrap()
                .id(n.to_string())
                .unwrap()
                .data(format!("line {n}\r\nsecond\rthird\n"))
        });
        EventStream::new(events).into_http_response()
    })
    .await;

    let response = common::get(server.addr, "/events").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events: Vec<_> = common::parse_events(response).collect().await;

    assert_eq!(events.len(), 5);
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.event, if n % 2 == 0 { "even" } else { "odd" });
        assert_eq!(event.id, n.to_string());
        assert_eq!(event.data, format!("line {n}\nsecond\nthird\n"));
    }
}

#[tokio::test]
async fn a_burst_arrives_whole_and_in_order() {
    let shared = Event::new().event("fan").unwrap().data("out").encode();
    let server = common::serve(move |_request| {
        let shared = shared.clone();
        async move {
            let burst = (0..10_000).map(move |n| {
                if n % 2 == 0 {
                    shared.clone()
                } else {
                    Event::new().id(n.to_string()).unwrap().data("x").encode()
                }
            });
            EventStream::new(stream::iter(burst)).into_http_response()
        }
    })
    .await;

    let response = common::get(server.addr, "/").await;
    let events: Vec<_> = common::parse_events(response).collect().await;
    assert_eq!(events.len(), 10_000);
    for (n, event) in events.iter().enumerate() {
        if n % 2 == 0 {
            assert_eq!((event.event.as_str(), event.data.as_str()), ("fan", "out"));
        } else {
            assert_eq!(event.id, n.to_string());
            assert_eq!(event.data, "x");
        }
    }
}

#[tokio::test]
async fn stop_reconnecting_answers_204_over_the_wire() {
    let server = common::serve(|_request| async {
        tower_sse::stop_reconnecting::<http_body_util::Empty<bytes::Bytes>>()
    })
    .await;
    let response = common::get(server.addr, "/events").await;
    assert_eq!(response.status(), 204);
}

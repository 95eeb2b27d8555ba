//! The demo example, served for real and read by an independent parser.

#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Empty};
use tokio::{net::TcpListener, sync::oneshot};

async fn start() -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(demo::serve(listener, Duration::from_millis(20), async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

#[tokio::test]
async fn demo_streams_numbered_ticks_and_resumes_after_last_event_id() {
    let (addr, _stop, _server) = start().await;

    let response = common::get(addr, "/events").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(
        response.headers()["cache-control"],
        "no-cache, no-transform"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(response.headers()["connection"], "keep-alive");
    let ticks: Vec<_> = common::parse_events(response).take(3).collect().await;
    for (event, n) in ticks.iter().zip(1..) {
        assert_eq!(event.event, "tick");
        assert_eq!(event.id, n.to_string());
        assert_eq!(event.data, format!("tick {n}"));
    }

    let request = Request::get(format!("http://{addr}/events"))
        .header("last-event-id", "41")
        .body(Empty::new())
        .unwrap();
    let response = common::client().request(request).await.unwrap();
    let first = common::parse_events(response).next().await.unwrap();
    assert_eq!(first.id, "42");
}

#[tokio::test]
async fn demo_answers_other_paths_with_404() {
    let (addr, _stop, _server) = start().await;
    let response = common::get(addr, "/nope").await;
    assert_eq!(response.status(), 404);
    // Not an event stream: the layers added nothing.
    assert!(!response.headers().contains_key("x-accel-buffering"));
    assert!(!response.headers().contains_key("cache-control"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("/events"));
}

#[tokio::test]
async fn demo_shutdown_ends_open_streams_and_returns() {
    let (addr, stop, server) = start().await;
    let response = common::get(addr, "/events").await;
    let mut events = common::parse_events(response);
    assert!(events.next().await.is_some());

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("the server stopped within 1 s of the signal while a client was connected");
    result.unwrap().unwrap();
    // The client sees its stream end rather than hang, after a final
    // `retry:` (which the parser reports with no event of its own).
    let rest = tokio::time::timeout(Duration::from_secs(1), events.collect::<Vec<_>>()).await;
    assert!(rest.is_ok(), "the client's stream ended");
}

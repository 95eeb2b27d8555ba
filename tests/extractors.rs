//! The axum feature on a real axum router over real HTTP/1.1: `CloseHandle`
//! and `Option<LastEventId>` as handler arguments, a hub `Subscription` and
//! `HubError` as handler results, and the rejection when no `CloseLayer`
//! wraps the route.

mod common;

use std::time::Duration;

use axum::{
    extract::{Path, State},
    routing::get,
    Router,
};
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::sync::mpsc;
use tower_sse::{
    hub::{Hub, HubError, Subscription},
    CloseHandle, CloseReason, Event, LastEventId, SseLayer,
};

async fn events(
    State((hub, reasons)): State<(Hub, mpsc::UnboundedSender<CloseReason>)>,
    Path(room): Path<String>,
    last: Option<LastEventId>,
    handle: CloseHandle,
) -> Result<Subscription, HubError> {
    tokio::spawn(async move {
        let _ = reasons.send(handle.closed().await);
    });
    hub.subscribe(&room, last.as_ref().map(LastEventId::as_str))
        .await
}

async fn get_with(
    addr: std::net::SocketAddr,
    path: &str,
    last: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut request = Request::get(format!("http://{addr}{path}"));
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        common::client().request(request.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn handlers_take_the_close_handle_and_the_last_event_id_and_return_a_subscription() {
    let hub = Hub::builder().max_topics(2).build().unwrap();
    let (reasons, mut closed) = mpsc::unbounded_channel();
    let router = Router::new()
        .route("/events/{room}", get(events))
        .layer(SseLayer::new())
        .with_state((hub.clone(), reasons));
    let server = common::serve_service(router).await;

    let first = hub.publish("r", Event::new().data("1")).await.unwrap();
    hub.publish("r", Event::new().data("2")).await.unwrap();
    let response = get_with(server.addr, "/events/r", Some(&first.to_string())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut events = common::parse_events(response);
    use futures_util::StreamExt as _;
    let event = events.next().await.unwrap();
    assert_eq!(event.data, "2", "resumed after the id the extractor read");
    drop(events);
    let reason = tokio::time::timeout(Duration::from_secs(5), closed.recv())
        .await
        .unwrap();
    assert_eq!(reason, Some(CloseReason::ClientGone));

    // Without Last-Event-ID: `None`, a fresh subscription.
    let response = get_with(server.addr, "/events/r", None).await;
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(
        frame.starts_with(b"event: sse-position\nid: "),
        "the position event: {frame:?}"
    );

    // HubError as a response: a third topic in a hub of two says when to
    // come back (a 503 would stop the browser for good).
    let _held = get_with(server.addr, "/events/second", None).await;
    let response = get_with(server.addr, "/events/third", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).starts_with("retry: ")
            && String::from_utf8_lossy(&body).contains("\nevent: sse-retry\ndata:\n"),
        "{body:?}"
    );
}

#[tokio::test]
async fn a_close_handle_argument_without_the_layer_is_a_500_that_names_it() {
    let router = Router::new().route(
        "/events",
        get(|_handle: CloseHandle| async { "never called" }),
    );
    let server = common::serve_service(router).await;
    let response = get_with(server.addr, "/events", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("CloseLayer"), "{text}");
    assert!(!text.contains("never called"));
}

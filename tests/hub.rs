//! The hub behind the whole `SseLayer` (CORS origins given, keep-alive,
//! close reasons, shutdown) on an axum router beside JSON routes, over real
//! HTTP/1.1 and HTTP/2 connections, read by an independent parser.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tower_sse::{
    hub::Hub, CloseLayer, CloseReason, Event, KeepAliveLayer, LastEventId, Shutdown, SseCorsLayer,
    SseLayer,
};

const APP: &str = "http://localhost:5173";

type Reasons = Arc<Mutex<Vec<CloseReason>>>;

/// Without the `axum` feature's conversions: what a plain handler writes.
async fn events(State(hub): State<Hub>, Path(topic): Path<String>, headers: HeaderMap) -> Response {
    let last = LastEventId::from_headers(&headers);
    match hub
        .subscribe(&topic, last.as_ref().map(LastEventId::as_str))
        .await
    {
        Ok(subscription) => subscription.into_http_response().into_response(),
        Err(error) => error.into_http_response().into_response(),
    }
}

/// The app: a hub topic per path, a JSON publish route, a JSON health
/// route, and every layer.
fn app(hub: Hub, shutdown: &Shutdown, reasons: Reasons) -> Router {
    let close = CloseLayer::builder()
        .on_close(move |info| reasons.lock().unwrap().push(info.reason))
        .build()
        .unwrap();
    let sse = SseLayer::new()
        .cors(SseCorsLayer::builder().allow_origin(APP).build().unwrap())
        .close(close)
        .shutdown(shutdown)
        .keep_alive(
            KeepAliveLayer::builder()
                .interval(Duration::from_millis(200))
                .build()
                .unwrap(),
        );
    Router::new()
        .route("/events/{topic}", get(events))
        .route(
            "/publish/{topic}",
            post(
                |State(hub): State<Hub>, Path(topic): Path<String>, body: String| async move {
                    match hub.publish(&topic, Event::new().data(body)).await {
                        Ok(id) => (
                            StatusCode::OK,
                            Json(serde_json::json!({ "id": id.to_string() })),
                        )
                            .into_response(),
                        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
                    }
                },
            ),
        )
        .route(
            "/api/health",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .layer(sse)
        .with_state(hub)
}

struct Setup {
    server: common::TestServer,
    hub: Hub,
    shutdown: Shutdown,
    reasons: Reasons,
}

async fn setup(hub: Hub) -> Setup {
    let shutdown = Shutdown::new();
    let reasons = Reasons::default();
    let server = common::serve_service(app(hub.clone(), &shutdown, reasons.clone())).await;
    Setup {
        server,
        hub,
        shutdown,
        reasons,
    }
}

async fn open(
    client: &Client<HttpConnector, Empty<Bytes>>,
    setup: &Setup,
    topic: &str,
    last_event_id: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut request = Request::get(format!("http://{}/events/{topic}", setup.server.addr))
        .header(header::ORIGIN, APP)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(request.body(Empty::new()).unwrap()),
    )
    .await
    .expect("answered within 10 s")
    .expect("the request succeeded");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    response
}

async fn publish(hub: &Hub, topic: &str, range: std::ops::RangeInclusive<u32>) {
    for n in range {
        hub.publish(topic, Event::new().data(n.to_string()))
            .await
            .unwrap();
    }
}

async fn next_event(
    events: &mut (impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin),
) -> eventsource_stream::Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
}

/// Reads two events from `first`, breaks the connection, reconnects to
/// `second` with the last id, and checks that events 3 to 9 arrive once, in
/// order: 1-5 and 9 published on `first`'s hub, 6-8 (while the browser was
/// away) on `second`'s.
async fn break_and_resume(
    client: &Client<HttpConnector, Empty<Bytes>>,
    first: &Setup,
    second: &Setup,
) {
    let response = open(client, first, "room", None).await;
    let mut events = common::parse_events(response);
    assert_eq!(next_event(&mut events).await.event, "sse-position");
    publish(&first.hub, "room", 1..=5).await;
    let mut last = String::new();
    for n in 1..=2 {
        let event = next_event(&mut events).await;
        assert_eq!(event.data, n.to_string());
        last = event.id;
    }
    // The connection breaks; events go on meanwhile.
    drop(events);
    publish(&second.hub, "room", 6..=8).await;
    let response = open(client, second, "room", Some(&last)).await;
    let mut events = common::parse_events(response);
    for n in 3..=9 {
        if n == 9 {
            publish(&first.hub, "room", 9..=9).await;
        }
        let event = next_event(&mut events).await;
        assert_eq!(event.data, n.to_string(), "every event once, in order");
        assert_eq!(event.event, "message");
    }
}

async fn a_reconnect_resumes_exactly(client: Client<HttpConnector, Empty<Bytes>>) {
    let setup = setup(Hub::new()).await;
    break_and_resume(&client, &setup, &setup).await;
    let stats = setup.hub.topic_stats("room").unwrap();
    assert_eq!((stats.resumes, stats.replayed, stats.gaps), (1, 6, 0));

    // JSON routes beside it are untouched.
    let health = common::get(setup.server.addr, "/api/health").await;
    assert_eq!(health.headers()[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn a_reconnect_resumes_exactly_over_http1() {
    a_reconnect_resumes_exactly(common::client()).await;
}

#[tokio::test]
async fn a_reconnect_resumes_exactly_over_http2() {
    a_reconnect_resumes_exactly(common::h2c_client()).await;
}

/// Two instances of the whole app on one Redis: a browser reading from A
/// reconnects to B (a load balancer's choice) with its `Last-Event-ID`
/// and gets every event once, in order, published on either.
#[cfg(feature = "redis")]
async fn a_reconnect_to_another_instance_resumes_exactly(
    client: Client<HttpConnector, Empty<Bytes>>,
) {
    use common::redis_server::{Persistence, RedisServer};
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let prefix = format!("hub{}:", common::random_tag());
    let hub = || {
        Hub::builder()
            .redis(redis.url())
            .redis_key_prefix(&prefix)
            .build()
            .unwrap()
    };
    let (a, b) = (setup(hub()).await, setup(hub()).await);
    break_and_resume(&client, &a, &b).await;
    let stats = b.hub.topic_stats("room").unwrap();
    assert_eq!((stats.resumes, stats.gaps), (1, 0));
    let health = common::get(b.server.addr, "/api/health").await;
    assert_eq!(health.headers()[header::CONTENT_TYPE], "application/json");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_to_another_instance_resumes_exactly_over_http1() {
    a_reconnect_to_another_instance_resumes_exactly(common::client()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_to_another_instance_resumes_exactly_over_http2() {
    a_reconnect_to_another_instance_resumes_exactly(common::h2c_client()).await;
}

async fn a_lost_id_gets_the_gap_event(client: Client<HttpConnector, Empty<Bytes>>) {
    let setup = setup(Hub::builder().history(3).build().unwrap()).await;
    let response = open(&client, &setup, "room", None).await;
    let mut events = common::parse_events(response);
    assert_eq!(next_event(&mut events).await.event, "sse-position");
    publish(&setup.hub, "room", 1..=1).await;
    let seen = next_event(&mut events).await;
    drop(events);
    publish(&setup.hub, "room", 2..=7).await;

    for (asked, reason) in [
        (seen.id.clone(), "history-truncated"),
        ("not-an-id".to_owned(), "unknown-id"),
        ("x".repeat(500), "unknown-id"),
        ("123abc-4".to_owned(), "restarted"),
    ] {
        let response = open(&client, &setup, "room", Some(&asked)).await;
        let mut events = common::parse_events(response);
        let gap = next_event(&mut events).await;
        assert_eq!(gap.event, "gap");
        let data: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(data["reason"], reason, "{asked}");
        if asked.len() <= 64 {
            assert_eq!(data["last_event_id"], asked.as_str());
        } else {
            assert!(data["last_event_id"].is_null());
        }
        // The whole history follows, then live events.
        for n in 5..=7 {
            assert_eq!(next_event(&mut events).await.data, n.to_string());
        }
        // The gap's id resumes exactly.
        let response = open(&client, &setup, "room", Some(&gap.id)).await;
        let mut again = common::parse_events(response);
        assert_eq!(next_event(&mut again).await.data, "5");
    }
    assert_eq!(setup.hub.topic_stats("room").unwrap().gaps, 4);
}

#[tokio::test]
async fn a_lost_id_gets_the_gap_event_over_http1() {
    a_lost_id_gets_the_gap_event(common::client()).await;
}

#[tokio::test]
async fn a_lost_id_gets_the_gap_event_over_http2() {
    a_lost_id_gets_the_gap_event(common::h2c_client()).await;
}

async fn a_client_that_stops_reading_lags_then_learns_of_the_gap(
    client: Client<HttpConnector, Empty<Bytes>>,
) {
    let setup = setup(Hub::builder().history(50).build().unwrap()).await;
    let response = open(&client, &setup, "big", None).await;
    // The client reads nothing while 20 MB are published: far more than
    // the sockets, hyper and HTTP/2 windows hold, and 50 events of history.
    let text = "x".repeat(10_000);
    // The first event arrives, then the client stops reading.
    setup
        .hub
        .publish("big", Event::new().data(&text))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while !bytes.windows(6).any(|window| window == b"data: ") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the first event within 10 s")
            .unwrap()
            .unwrap();
        bytes.extend_from_slice(frame.data_ref().unwrap());
    }
    for _ in 1..2_000 {
        setup
            .hub
            .publish("big", Event::new().data(&text))
            .await
            .unwrap();
        // Let the server write what the connection takes.
        tokio::task::yield_now().await;
    }
    let rest = tokio::time::timeout(Duration::from_secs(60), body.collect())
        .await
        .expect("the stream ends")
        .expect("cleanly")
        .to_bytes();
    bytes.extend_from_slice(&rest);
    let retry_at = bytes
        .windows(9)
        .rposition(|window| window == b"\n\nretry: ")
        .expect("a retry at the end")
        + 2;
    let (events, end) = bytes.split_at(retry_at);
    let end = String::from_utf8_lossy(end);
    let retry_ms: u64 = end
        .strip_prefix("retry: ")
        .and_then(|rest| rest.strip_suffix("\nevent: sse-retry\ndata:\n\n"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("ends with a retry: {end:?}"));
    assert!((1000..=5000).contains(&retry_ms), "{retry_ms}");
    // An independent parser reads the end as an event of its own type,
    // with the delay (a bare `retry:` is dropped by eventsource-stream).
    let end_events = common::parse_bytes(end.as_bytes().to_vec()).await;
    assert_eq!(end_events.len(), 1, "{end_events:?}");
    assert_eq!(end_events[0].event, tower_sse::event::RETRY_EVENT);
    assert_eq!(end_events[0].retry, Some(Duration::from_millis(retry_ms)));
    assert_eq!(
        (end_events[0].data.as_str(), end_events[0].id.as_str()),
        ("", "")
    );
    let delivered: Vec<_> = common::parse_bytes(events.to_vec())
        .await
        .into_iter()
        .filter(|event| !event.data.is_empty())
        .collect();
    assert!(
        !delivered.is_empty() && delivered.len() < 2_000,
        "{} delivered",
        delivered.len()
    );
    let seq = |id: &str| id.rsplit_once('-').unwrap().1.parse::<u64>().unwrap();
    assert_eq!(seq(&delivered[0].id), 1, "from the first event");
    for pair in delivered.windows(2) {
        assert_eq!(seq(&pair[1].id), seq(&pair[0].id) + 1, "nothing skipped");
    }
    let stats = setup.hub.topic_stats("big").unwrap();
    assert_eq!(stats.lagged, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*setup.reasons.lock().unwrap(), [CloseReason::Lagged]);

    // The browser reconnects with the last id it saw: the gap event.
    let last = &delivered.last().unwrap().id;
    let response = open(&client, &setup, "big", Some(last)).await;
    let mut events = common::parse_events(response);
    let gap = next_event(&mut events).await;
    assert_eq!(gap.event, "gap");
    assert!(gap.data.contains("history-truncated"), "{}", gap.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_lags_then_learns_of_the_gap_over_http1() {
    a_client_that_stops_reading_lags_then_learns_of_the_gap(common::client()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_lags_then_learns_of_the_gap_over_http2() {
    a_client_that_stops_reading_lags_then_learns_of_the_gap(common::h2c_client()).await;
}

#[tokio::test]
async fn idle_hub_streams_get_keep_alive_comments() {
    let setup = setup(Hub::new()).await;
    let response = open(&common::client(), &setup, "quiet", None).await;
    let mut body = response.into_body();
    let mut frames = Vec::new();
    for _ in 0..2 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame within 5 s")
            .unwrap()
            .unwrap();
        frames.push(frame.into_data().unwrap());
    }
    // The topic's position, then a comment while idle.
    let position = std::str::from_utf8(&frames[0]).unwrap();
    assert!(
        position.starts_with("event: sse-position\nid: ") && position.ends_with("-0\ndata:\n\n"),
        "{position:?}"
    );
    assert_eq!(frames[1], Bytes::from_static(b":\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_thousand_hub_streams_each_with_its_final_frame() {
    common::assert_open_files_allow(4_096);
    let setup = setup(Hub::new()).await;
    let client = common::client();
    let mut bodies = Vec::new();
    for _ in 0..1_000 {
        bodies.push(open(&client, &setup, "all", None).await.into_body());
    }
    assert_eq!(setup.hub.topic_stats("all").unwrap().subscribers, 1_000);
    setup.shutdown.trigger();
    let mut readers = tokio::task::JoinSet::new();
    for body in bodies {
        readers.spawn(async move {
            let bytes = body.collect().await.expect("a clean end").to_bytes();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(
                text.ends_with("\n\n") && text.contains("retry: "),
                "{text:?}"
            );
        });
    }
    let results = tokio::time::timeout(Duration::from_secs(30), readers.join_all())
        .await
        .expect("every stream ended");
    assert_eq!(results.len(), 1_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reasons = setup.reasons.lock().unwrap().clone();
    assert_eq!(reasons.len(), 1_000);
    assert!(reasons
        .iter()
        .all(|reason| *reason == CloseReason::Shutdown));
    assert_eq!(setup.hub.topic_stats("all").unwrap().subscribers, 0);
}

#[tokio::test]
async fn subscribers_that_vanish_leave_nothing_behind() {
    let setup = setup(Hub::new()).await;
    for _ in 0..20 {
        let client = common::client();
        let mut opened = Vec::new();
        for _ in 0..100 {
            opened.push(open(&client, &setup, "t", None).await);
        }
        assert!(setup.hub.topic_stats("t").unwrap().subscribers >= 100);
        drop(opened);
        drop(client);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while setup.hub.topic_stats("t").unwrap().subscribers > 0 {
        assert!(tokio::time::Instant::now() < deadline, "subscribers left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every one of the 2,000 streams was reported gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while setup.reasons.lock().unwrap().len() < 2_000 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(setup
        .reasons
        .lock()
        .unwrap()
        .iter()
        .all(|reason| *reason == CloseReason::ClientGone));
}

#[tokio::test]
async fn a_bad_topic_is_a_400_and_a_full_hub_says_come_back_later() {
    let setup = setup(Hub::builder().max_topics(1).build().unwrap()).await;
    let _first = open(&common::client(), &setup, "one", None).await;
    let get = |topic: String| {
        let request = Request::get(format!("http://{}/events/{topic}", setup.server.addr))
            .header(header::ACCEPT, "text/event-stream")
            .body(Empty::<Bytes>::new())
            .unwrap();
        common::client().request(request)
    };
    let response = get("t".repeat(300)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Full: not a 503 (EventSource would give up for good) but a stream
    // that only says when to come back, and ends.
    let response = get("two".to_owned()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let retry: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("retry: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((10_000..=30_000).contains(&retry), "{text:?}");
}

#[tokio::test]
async fn max_lifetime_ends_hub_streams_with_a_retry_and_expired() {
    let reasons = Reasons::default();
    let record = reasons.clone();
    let hub = Hub::new();
    let close = CloseLayer::builder()
        .max_lifetime(Duration::from_millis(300))
        .on_close(move |info| record.lock().unwrap().push(info.reason))
        .build()
        .unwrap();
    let router = Router::new()
        .route("/events/{topic}", get(events))
        .layer(SseLayer::new().close(close))
        .with_state(hub.clone());
    let server = common::serve_service(router).await;
    let response = common::get(server.addr, "/events/t").await;
    hub.publish("t", Event::new().data("1")).await.unwrap();
    let bytes = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the stream ends within its lifetime")
        .expect("cleanly")
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("data: 1\n"), "{text:?}");
    assert!(
        text.contains("retry: ") && text.ends_with("\n\n"),
        "{text:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*reasons.lock().unwrap(), [CloseReason::Expired]);
    assert_eq!(hub.topic_stats("t").unwrap().subscribers, 0);
}

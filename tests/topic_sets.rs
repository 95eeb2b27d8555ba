//! Many topics over one stream, the way an app deploys it: an axum router
//! with the whole `SseLayer` (CORS origins given), tower-http's CORS and
//! compression for the JSON routes, a handler that maps the session cookie
//! to the topics the user may read, over real HTTP/1.1 and HTTP/2
//! connections, read by an independent parser (`eventsource-stream`).

mod common;

use std::time::Duration;

use axum::{extract::State, routing::get, Json, Router};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tower_http::{compression::CompressionLayer, cors::CorsLayer};
use tower_sse::{
    hub::{Hub, HubError, Subscription, TopicSet},
    Event, SseCorsLayer, SseLayer,
};

const APP: &str = "http://localhost:5173";
const EVIL: &str = "http://evil.example";

/// The user a request's `session` cookie names (the app's real check of a
/// signed session goes here).
fn user_of(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .find_map(|cookie| cookie.trim().strip_prefix("session="))
        .map(str::to_owned)
}

/// The pattern the docs show: the topics from the URL, checked against what
/// this user may read, then one stream for all of them.
async fn events(
    State(hub): State<Hub>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Subscription, HubError> {
    let user = user_of(&headers);
    let own = user.as_ref().map(|user| format!("user:{user}"));
    let topics = TopicSet::from_query(uri.query(), "topic")?
        .check(|topic| topic == "ticks" || topic == "notes" || Some(topic) == own.as_deref())?;
    // Visitors without a session read only public topics here; they are
    // not bounded (an app would give their address as the key).
    hub.subscribe_set(&topics, user.as_deref(), &headers).await
}

fn router(hub: Hub) -> Router {
    let app_cors = CorsLayer::new()
        .allow_origin([HeaderValue::from_static(APP)])
        .allow_methods([Method::GET, Method::POST]);
    let sse = SseLayer::new().cors(SseCorsLayer::builder().allow_origin(APP).build().unwrap());
    Router::new()
        .route("/events", get(events))
        .route("/api/items", get(|| async { Json(vec!["item"; 400]) }))
        .with_state(hub)
        .layer(CompressionLayer::new())
        .layer(app_cors)
        .layer(sse)
}

/// A stream request as `EventSource` sends it from the app's page.
fn stream_request(
    addr: std::net::SocketAddr,
    query: &str,
    user: Option<&str>,
) -> http::request::Builder {
    let mut request = Request::get(format!("http://{addr}/events?{query}"))
        .header(header::ORIGIN, APP)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(user) = user {
        request = request.header(header::COOKIE, format!("theme=dark; session={user}"));
    }
    request
}

async fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    request: http::request::Builder,
) -> Response<Incoming> {
    tokio::time::timeout(
        Duration::from_secs(10),
        client.request(request.body(Empty::new()).unwrap()),
    )
    .await
    .expect("answered within 10 s")
    .expect("the request succeeded")
}

type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = eventsource_stream::Event> + Send>>;

fn events_of(response: Response<Incoming>) -> Events {
    Box::pin(common::parse_events(response))
}

async fn next(events: &mut Events) -> eventsource_stream::Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
}

async fn publish(hub: &Hub, topic: &str, n: u32) {
    hub.publish(topic, Event::new().data(format!("{topic} {n}")))
        .await
        .unwrap();
}

/// Reads data events until `count` arrived, skipping the hub's own events.
async fn read_data(events: &mut Events, count: usize) -> Vec<(String, String, String)> {
    let mut got = Vec::new();
    while got.len() < count {
        let event = next(events).await;
        if event.event == "sse-position" {
            continue;
        }
        got.push((event.event, event.data, event.id));
    }
    got
}

async fn three_topics_resume_exactly_and_never_carry_another_user_s_events(
    client: Client<HttpConnector, Empty<Bytes>>,
) {
    let hub = Hub::new();
    let server = common::serve_service(router(hub.clone())).await;
    let query = "topic=ticks&topic=notes&topic=user%3Aann";
    let response = send(
        &client,
        stream_request(server.addr, query, Some("ann")).header(header::ACCEPT_ENCODING, "gzip"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    assert!(!response.headers().contains_key(header::CONTENT_ENCODING));
    let mut stream = events_of(response);
    let position = next(&mut stream).await;
    assert_eq!(position.event, "sse-position");
    for n in 1..=3 {
        publish(&hub, "ticks", n).await;
    }
    publish(&hub, "user:bob", 1).await;
    publish(&hub, "notes", 1).await;
    publish(&hub, "user:ann", 1).await;
    let seen = read_data(&mut stream, 3).await;
    assert_eq!(
        seen.iter()
            .map(|(t, d, _)| format!("{t}/{d}"))
            .collect::<Vec<_>>(),
        ["ticks/ticks 1", "ticks/ticks 2", "ticks/ticks 3"]
    );
    let last_id = seen[2].2.clone();
    assert!(last_id.len() <= 128, "{last_id}");
    drop(stream);

    // While the page is away: more on every topic, and bob's.
    publish(&hub, "notes", 2).await;
    publish(&hub, "ticks", 4).await;
    publish(&hub, "user:bob", 2).await;
    publish(&hub, "user:ann", 2).await;
    let response = send(
        &client,
        stream_request(server.addr, query, Some("ann")).header("last-event-id", &last_id),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = events_of(response);
    let seen = read_data(&mut stream, 5).await;
    let seen: Vec<String> = seen
        .into_iter()
        .map(|(t, d, _)| format!("{t}/{d}"))
        .collect();
    // Publish order across topics, each once, bob's never.
    assert_eq!(
        seen,
        [
            "notes/notes 1",
            "user:ann/user:ann 1",
            "notes/notes 2",
            "ticks/ticks 4",
            "user:ann/user:ann 2"
        ]
    );
    publish(&hub, "user:bob", 3).await;
    publish(&hub, "ticks", 5).await;
    let live = read_data(&mut stream, 1).await;
    assert_eq!(
        (live[0].0.as_str(), live[0].1.as_str()),
        ("ticks", "ticks 5")
    );

    // The JSON route beside it is still compressed by the app's layers.
    let response = send(
        &client,
        Request::get(format!("http://{}/api/items", server.addr))
            .header(header::ORIGIN, APP)
            .header(header::ACCEPT_ENCODING, "gzip"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
}

async fn refusals_come_before_any_stream_opens(client: Client<HttpConnector, Empty<Bytes>>) {
    let hub = Hub::new();
    let server = common::serve_service(router(hub.clone())).await;
    // Another user's topic; an unknown topic; no session at all.
    for (query, user) in [
        ("topic=ticks&topic=user%3Abob", Some("ann")),
        ("topic=admin", Some("ann")),
        ("topic=user%3Aann", None),
    ] {
        let response = send(&client, stream_request(server.addr, query, user)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("may not read"), "{body}");
    }
    assert_eq!(hub.topic_count(), 0, "no topic made for a refused stream");
    // A set that cannot be: 400.
    for query in ["", "topic=%zz", "topic=a%0Ab", "other=1"] {
        let response = send(&client, stream_request(server.addr, query, Some("ann"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query:?}");
    }
    // A page on another origin, with ann's cookie: the CORS layer's 403.
    let response = send(
        &client,
        Request::get(format!("http://{}/events?topic=user%3Aann", server.addr))
            .header(header::ORIGIN, EVIL)
            .header(header::ACCEPT, "text/event-stream")
            .header(header::COOKIE, "session=ann"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(hub.topic_count(), 0);
}

async fn a_client_past_its_bound_gets_a_retry_and_a_closed_tab_frees_its_slot(
    client: Client<HttpConnector, Empty<Bytes>>,
) {
    let hub = Hub::builder().client_limit(2, 64).build().unwrap();
    let server = common::serve_service(router(hub.clone())).await;
    let addr = server.addr;
    let open = || {
        let client = client.clone();
        async move {
            send(
                &client,
                stream_request(addr, "topic=ticks&topic=notes", Some("ann")),
            )
            .await
        }
    };
    let mut first = events_of(open().await);
    assert_eq!(next(&mut first).await.event, "sse-position");
    let mut second = events_of(open().await);
    assert_eq!(next(&mut second).await.event, "sse-position");
    assert_eq!(hub.client_count("ann"), (2, 4));

    // The third tab: a 200 that tells the browser to come back later.
    let response = open().await;
    assert_eq!(response.status(), StatusCode::OK);
    let (events, broke) = common::events_until_end(response).await;
    assert!(!broke);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "sse-retry");
    let retry = events[0].retry.expect("a retry");
    assert!((10..=30).contains(&retry.as_secs()), "{retry:?}");
    assert_eq!(hub.client_refusals(), 1);
    // Bob is not held back by ann.
    let mut bob = events_of(
        send(
            &client,
            stream_request(server.addr, "topic=ticks", Some("bob")),
        )
        .await,
    );
    assert_eq!(next(&mut bob).await.event, "sse-position");

    // Ann closes a tab: its share comes back as soon as the server sees it.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.client_count("ann").0 != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut again = events_of(open().await);
    assert_eq!(next(&mut again).await.event, "sse-position");
    drop(second);
}

macro_rules! over_http1_and_http2 {
    ($($check:ident),* $(,)?) => {
        mod http1 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::common::client()).await;
                }
            )*
        }
        mod http2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::common::h2c_client()).await;
                }
            )*
        }
    };
}

over_http1_and_http2!(
    three_topics_resume_exactly_and_never_carry_another_user_s_events,
    refusals_come_before_any_stream_opens,
    a_client_past_its_bound_gets_a_retry_and_a_closed_tab_frees_its_slot,
);

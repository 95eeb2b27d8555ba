//! Events through a real nginx, with nginx's defaults (proxy buffering on).
//!
//! nginx is started by the test with its own configuration in a temporary
//! directory, listening on 127.0.0.1 only, and stopped by its PID when the
//! test ends, failed or not. Without nginx the tests say SKIPPED; with
//! `TOWER_SSE_REQUIRE_NGINX=1` (set by `.ci/run`) a missing nginx fails them.

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{stream, StreamExt};
use http::{Request, Response};
use hyper::body::Incoming;
use tower::{util::BoxCloneService, ServiceBuilder};
use tower_sse::{Event, EventStream, KeepAliveLayer, NoBufferingLayer, SseHeadersLayer};

use common::nginx::{find_nginx, start_nginx, REQUIRE};

type Sent = Arc<Mutex<Vec<Instant>>>;

type TickBody = EventStream<stream::BoxStream<'static, Event>>;
type Handler = BoxCloneService<Request<Incoming>, Response<TickBody>, Infallible>;

/// A handler that sends `count` events, one every `period`, recording when
/// each one left the handler.
fn ticking_handler(count: usize, period: Duration, sent: Sent) -> Handler {
    BoxCloneService::new(tower::service_fn(move |_request| {
        let sent = sent.clone();
        let events = stream::iter(0..count)
            .then(move |n| {
                let sent = sent.clone();
                async move {
                    tokio::time::sleep(period).await;
                    sent.lock().unwrap().push(Instant::now());
                    Event::new().id(n.to_string()).unwrap().data("tick")
                }
            })
            .boxed();
        std::future::ready(Ok(EventStream::new(events).into_http_response()))
    }))
}

/// For each event the client got through nginx, how long after it was sent.
async fn delays_through_nginx(no_buffering: bool) -> Option<Vec<Duration>> {
    let binary = find_nginx();
    if !common::tool_available("nginx", binary.as_deref(), REQUIRE) {
        return None;
    }
    let sent: Sent = Arc::default();
    let handler = ticking_handler(10, Duration::from_millis(200), sent.clone());
    let server = if no_buffering {
        common::serve_service(
            ServiceBuilder::new()
                .layer(SseHeadersLayer::new())
                .layer(NoBufferingLayer::new())
                .service(handler),
        )
        .await
    } else {
        common::serve_service(
            ServiceBuilder::new()
                .layer(SseHeadersLayer::new())
                .service(handler),
        )
        .await
    };
    let nginx = start_nginx(&binary.unwrap(), &[server.addr], "", "");

    let response = common::get(nginx.addr, "/events").await;
    assert_eq!(response.status(), 200);
    let mut events = common::parse_events(response);
    let mut arrived = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("events keep coming through nginx")
    {
        assert_eq!(event.id, arrived.len().to_string());
        arrived.push(Instant::now());
    }
    drop(nginx);
    let sent = sent.lock().unwrap();
    assert_eq!(arrived.len(), 10, "every event arrived");
    Some(
        arrived
            .iter()
            .zip(sent.iter())
            .map(|(a, s)| a.duration_since(*s))
            .collect(),
    )
}

#[tokio::test]
async fn with_no_buffering_every_event_passes_nginx_within_100_ms() {
    let Some(delays) = delays_through_nginx(true).await else {
        return;
    };
    eprintln!("delays with NoBufferingLayer: {delays:?}");
    for (n, delay) in delays.iter().enumerate() {
        assert!(
            *delay < Duration::from_millis(100),
            "event {n} took {delay:?}"
        );
    }
}

#[tokio::test]
async fn with_buffering_allowed_nginx_holds_events_back() {
    let Some(delays) = delays_through_nginx(false).await else {
        return;
    };
    eprintln!("delays without NoBufferingLayer: {delays:?}");
    // Buffered: the first event waits until the stream ends, two seconds on.
    assert!(
        delays[0] > Duration::from_secs(1),
        "the first event arrived after {:?}: nginx did not buffer",
        delays[0]
    );
}

/// A handler that sends one event, stays quiet for `quiet`, then sends a
/// second event and ends.
fn quiet_handler(quiet: Duration) -> Handler {
    BoxCloneService::new(tower::service_fn(move |_request| {
        let events = stream::iter(0..2)
            .then(move |n| async move {
                if n == 1 {
                    tokio::time::sleep(quiet).await;
                }
                Event::new().id(n.to_string()).unwrap().data("x")
            })
            .boxed();
        std::future::ready(Ok(EventStream::new(events).into_http_response()))
    }))
}

/// The ids a client got through nginx with `proxy_read_timeout 2s` from a
/// stream quiet for 5 s, and whether the connection was cut.
async fn through_short_read_timeout(keep_alive: Option<Duration>) -> Option<(Vec<String>, bool)> {
    let binary = find_nginx();
    if !common::tool_available("nginx", binary.as_deref(), REQUIRE) {
        return None;
    }
    let handler = quiet_handler(Duration::from_secs(5));
    let base = ServiceBuilder::new()
        .layer(SseHeadersLayer::new())
        .layer(NoBufferingLayer::new());
    let server = match keep_alive {
        Some(interval) => {
            let layer = KeepAliveLayer::builder()
                .interval(interval)
                .build()
                .unwrap();
            common::serve_service(base.layer(layer).service(handler)).await
        }
        None => common::serve_service(base.service(handler)).await,
    };
    let nginx = start_nginx(
        &binary.unwrap(),
        &[server.addr],
        "",
        "proxy_read_timeout 2s;",
    );
    let response = common::get(nginx.addr, "/events").await;
    assert_eq!(response.status(), 200);
    let (events, cut) =
        tokio::time::timeout(Duration::from_secs(15), common::events_until_end(response))
            .await
            .expect("the stream ended within 15 s");
    drop(nginx);
    Some((events.into_iter().map(|event| event.id).collect(), cut))
}

#[tokio::test]
async fn without_keep_alive_nginx_cuts_a_stream_quiet_for_5_s() {
    let Some((ids, cut)) = through_short_read_timeout(None).await else {
        return;
    };
    eprintln!("without keep-alive: ids {ids:?}, cut: {cut}");
    assert_eq!(ids, ["0"], "the second event never arrived");
    assert!(cut, "nginx cut the connection");
}

#[tokio::test]
async fn with_a_1_s_keep_alive_a_stream_quiet_for_5_s_survives_nginx() {
    let Some((ids, cut)) = through_short_read_timeout(Some(Duration::from_secs(1))).await else {
        return;
    };
    eprintln!("with keep-alive: ids {ids:?}, cut: {cut}");
    assert_eq!(ids, ["0", "1"], "both events arrived");
    assert!(!cut, "the stream ended normally");
}

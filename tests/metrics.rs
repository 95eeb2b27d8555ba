//! The `metrics` feature, read by a recorder installed for this test binary:
//! the whole `SseLayer` (CORS origins given) and a hub, over real HTTP/1.1.

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{extract::State, http::HeaderMap, routing::get, Router};
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use tower_sse::{
    hub::{Hub, HubError, Subscription},
    Event, EventStream, KeepAliveLayer, SseCorsLayer, SseLayer,
};

/// Every counter and gauge by name and sorted labels (`name{a=b,c=d}`).
#[derive(Default)]
struct Recording {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<Level>>>,
}

#[derive(Default)]
struct Level(Mutex<f64>);

struct Count(Arc<AtomicU64>);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Level {
    fn increment(&self, value: f64) {
        *self.0.lock().unwrap() += value;
    }
    fn decrement(&self, value: f64) {
        *self.0.lock().unwrap() -= value;
    }
    fn set(&self, value: f64) {
        *self.0.lock().unwrap() = value;
    }
}

fn name(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

struct Shared(Arc<Recording>);

impl Recorder for Shared {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.0.counters.lock().unwrap();
        let count = counters.entry(name(key)).or_default().clone();
        Counter::from_arc(Arc::new(Count(count)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.0.gauges.lock().unwrap();
        Gauge::from_arc(gauges.entry(name(key)).or_default().clone())
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl Recording {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    fn gauge(&self, name: &str) -> f64 {
        self.gauges
            .lock()
            .unwrap()
            .get(name)
            .map_or(0.0, |level| *level.0.lock().unwrap())
    }

    /// Waits (a bounded while) until `check` holds.
    async fn until(&self, what: &str, check: impl Fn(&Recording) -> bool) {
        for _ in 0..200 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{what}: counters {:?}",
            self.counters.lock().unwrap().keys().collect::<Vec<_>>()
        );
    }
}

const APP: &str = "http://localhost:5173";

async fn events(State(hub): State<Hub>, headers: HeaderMap) -> Result<Subscription, HubError> {
    hub.subscribe_from_headers("room", &headers).await
}

/// One event, then the error or panic the path names.
async fn failing(uri: http::Uri) -> axum::response::Response {
    use futures_util::{stream, StreamExt as _};
    let first = stream::iter([Ok::<_, std::io::Error>(Event::new().data("before"))]);
    let response = if uri.path() == "/panics" {
        let panics = stream::poll_fn(|_| panic!("the producer panicked"));
        EventStream::new(first.chain(panics).boxed()).into_http_response()
    } else {
        let fails = stream::iter([Err(std::io::Error::other("the producer failed"))]);
        EventStream::new(first.chain(fails).boxed()).into_http_response()
    };
    response.map(axum::body::Body::new)
}

async fn open(
    addr: std::net::SocketAddr,
    origin: &str,
    last: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut request = Request::get(format!("http://{addr}/events"))
        .header(header::ORIGIN, origin)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    common::client()
        .request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn layers_and_hub_report_through_the_metrics_facade() {
    let recording = Arc::new(Recording::default());
    metrics::set_global_recorder(Shared(recording.clone())).unwrap();

    let hub = Hub::builder()
        .history(2)
        .per_topic_metrics(true)
        .build()
        .unwrap();
    let sse = SseLayer::new()
        .cors(SseCorsLayer::builder().allow_origin(APP).build().unwrap())
        .keep_alive(
            KeepAliveLayer::builder()
                .interval(Duration::from_millis(50))
                .build()
                .unwrap(),
        );
    let router = Router::new()
        .route("/events", get(events))
        .route("/fails", get(failing))
        .route("/panics", get(failing))
        .layer(sse)
        .with_state(hub.clone());
    let server = common::serve_service(router).await;

    // Streams whose producer fails and panics: counted by kind.
    for (path, kind) in [("fails", "error"), ("panics", "panic")] {
        let request = Request::get(format!("http://{}/{path}", server.addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = common::client().request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"data: before\n\n"), "{path}: {body:?}");
        let name = format!("tower_sse_stream_failures_total{{kind={kind}}}");
        recording.until(&name, |r| r.counter(&name) == 1).await;
    }
    assert_eq!(
        recording.counter("tower_sse_streams_closed_total{reason=error}"),
        2
    );

    // A refused origin.
    let refused = open(server.addr, "http://evil.example", None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(recording.counter("tower_sse_cors_refused_total"), 1);

    // A stream that is open, idle (a keep-alive comment), then left.
    let response = open(server.addr, APP, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    recording
        .until("open and subscribed", |r| {
            r.gauge("tower_sse_streams_open") == 1.0
                && r.gauge("tower_sse_hub_subscribers{topic=room}") == 1.0
        })
        .await;
    let mut body = response.into_body();
    // Frames until a keep-alive comment (a frame of its own).
    let mut read = Vec::new();
    loop {
        let frame = body.frame().await.unwrap().unwrap();
        let data = frame.into_data().unwrap();
        read.extend_from_slice(&data);
        if &data[..] == b":\n\n" {
            break;
        }
    }
    assert!(recording.counter("tower_sse_keep_alive_comments_total") >= 1);
    drop(body);
    recording
        .until("closed as client_gone", |r| {
            r.counter("tower_sse_streams_closed_total{reason=client_gone}") == 1
                && r.gauge("tower_sse_streams_open") == 0.0
                && r.gauge("tower_sse_hub_subscribers{topic=room}") == 0.0
        })
        .await;
    assert!(recording.counter("tower_sse_frames_written_total") >= 2);
    assert!(recording.counter("tower_sse_bytes_written_total") >= read.len() as u64);

    // The hub: publishes, an exact resume, a gap.
    let first = hub.publish("room", Event::new().data("1")).await.unwrap();
    for n in 2..=4 {
        hub.publish("room", Event::new().data(n.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(
        recording.counter("tower_sse_hub_published_total{topic=room}"),
        4
    );
    let gap = open(server.addr, APP, Some(&first.to_string())).await;
    drop(gap);
    assert_eq!(
        recording.counter("tower_sse_hub_gaps_total{reason=history-truncated,topic=room}"),
        1
    );
    assert_eq!(
        recording.counter("tower_sse_hub_replayed_total{topic=room}"),
        2
    );

    // A client that stops reading while the history (2 events) moves on
    // lags: its stream ends with a retry and the hub counts it.
    let slow = open(server.addr, APP, None).await;
    let mut body = slow.into_body();
    let first_frame = body.frame().await.unwrap().unwrap();
    assert!(first_frame
        .data_ref()
        .unwrap()
        .starts_with(b"event: sse-position"));
    let text = "x".repeat(10_000);
    for _ in 0..2_000 {
        hub.publish("room", Event::new().data(&text)).await.unwrap();
        tokio::task::yield_now().await;
    }
    let rest = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("the lagging stream ends")
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("retry: "));
    recording
        .until("lagged and closed as lagged", |r| {
            r.counter("tower_sse_hub_lagged_total{topic=room}") == 1
                && r.counter("tower_sse_streams_closed_total{reason=lagged}") == 1
        })
        .await;
}

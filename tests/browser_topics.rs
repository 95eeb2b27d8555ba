//! Many hub topics over one `EventSource`, in real browsers (Chromium and
//! Firefox, headless), over HTTP/1.1 behind the whole `SseLayer`:
//! - a page that follows 8 topics holds one connection, so its ordinary
//!   `fetch` calls to the same origin all complete (a browser gives an
//!   origin 6 HTTP/1.1 connections; 8 `EventSource`s, one per topic, hold
//!   all of them and the page's next `fetch` waits);
//! - the server breaks the stream while events are published to every
//!   topic; the browser reconnects by itself with its `Last-Event-ID`, which
//!   holds every topic's position, and every topic's events arrive exactly
//!   once, in publish order.
//!
//! Without a browser its tests say SKIPPED; with
//! `TOWER_SSE_REQUIRE_CHROMIUM=1` and `TOWER_SSE_REQUIRE_FIREFOX=1` a
//! missing browser fails them.

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{mpsc, watch};
use tower::ServiceBuilder;
use tower_sse::{
    hub::{Hub, Start, TopicSet},
    Event, EventStream, SseLayer,
};

use common::Browser;

/// The topics the page follows, all over one stream.
const TOPICS: usize = 8;

/// Rounds of events: each round publishes one event (its number) to every
/// topic, in topic order.
const ROUNDS: usize = 60;

/// The round before which the server breaks the stream.
const BREAK_AT: usize = 10;

/// Time between rounds: the browser comes back 300 ms after the break, so
/// about 20 rounds are published while it is away.
const ROUND_EVERY: Duration = Duration::from_millis(15);

/// How long a page may take to report.
const REPORT_WITHIN: Duration = Duration::from_secs(60);

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn topic(i: usize) -> String {
    format!("t{i}")
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
    response
}

/// One `/events` request as the server saw it: its `Last-Event-ID`, and
/// how each topic of its set started.
#[derive(Debug, Clone)]
struct Opened {
    last_event_id: Option<String>,
    starts: Vec<(String, Start)>,
}

/// The app: `/page`, `/events?topic=..` (a set of hub topics, resumed
/// from `Last-Event-ID`, ended when `breaks` changes), `/ping?i=N` (an
/// ordinary answer) and `/report` (what the page found).
struct App {
    hub: Hub,
    breaks: watch::Sender<u64>,
    opened: Mutex<Vec<Opened>>,
    reports: mpsc::UnboundedSender<serde_json::Value>,
}

async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/page" => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            PAGE.replace("TOPICS", &TOPICS.to_string()),
        ),
        "/events" => {
            let topics = match TopicSet::from_query(request.uri().query(), "topic") {
                Ok(topics) => topics,
                Err(error) => {
                    return error
                        .into_http_response()
                        .map(|b| Full::from(b).boxed_unsync())
                }
            };
            let mut ended = app.breaks.subscribe();
            let subscription = match app
                .hub
                .subscribe_set(&topics, None, request.headers())
                .await
            {
                Ok(subscription) => subscription,
                Err(error) => {
                    return error
                        .into_http_response()
                        .map(|b| Full::from(b).boxed_unsync())
                }
            };
            app.opened.lock().unwrap().push(Opened {
                last_event_id: request
                    .headers()
                    .get("last-event-id")
                    .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned()),
                starts: subscription
                    .how_each_started()
                    .map(|(name, start)| (name.to_owned(), start))
                    .collect(),
            });
            // Come back 300 ms after a break.
            let retry = Event::new().retry(Duration::from_millis(300)).encode();
            let events = stream::iter([retry])
                .chain(subscription)
                .take_until(async move {
                    let _ = ended.changed().await;
                });
            EventStream::new(events)
                .into_http_response()
                .map(|body| body.boxed_unsync())
        }
        "/ping" => {
            let query = request.uri().query().unwrap_or_default().to_owned();
            text(StatusCode::OK, "text/plain", format!("pong {query}"))
        }
        "/report" => {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let _ = app.reports.send(serde_json::from_slice(&body).unwrap());
            text(StatusCode::NO_CONTENT, "text/plain", String::new())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found".into()),
    }
}

/// The next report of the page, within [`REPORT_WITHIN`].
async fn report(
    browser: Browser,
    reports: &mut mpsc::UnboundedReceiver<serde_json::Value>,
) -> serde_json::Value {
    let report = tokio::time::timeout(REPORT_WITHIN, reports.recv())
        .await
        .expect("the page reported in time")
        .unwrap();
    eprintln!("{browser:?}: {report}");
    report
}

/// One `EventSource` for 8 topics leaves the page its other connections:
/// 8 `fetch` calls made while it is open all complete. Then the server
/// breaks the stream while events are published to every topic: the
/// browser's own reconnect (with `Last-Event-ID`) resumes every topic
/// exactly, and each event arrives once, in publish order. And the
/// contrast: 8 `EventSource`s, one per topic, leave a `fetch` waiting.
async fn one_stream_for_eight_topics_leaves_fetch_free_and_resumes_every_topic_exactly(
    browser: Browser,
) {
    let Some(binary) = browser.available() else {
        return;
    };
    let (reports, mut reported) = mpsc::unbounded_channel();
    let app = Arc::new(App {
        hub: Hub::builder().history(10_000).build().unwrap(),
        breaks: watch::channel(0).0,
        opened: Mutex::default(),
        reports,
    });
    let service = ServiceBuilder::new().layer(SseLayer::new()).service_fn({
        let app = app.clone();
        move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, request).await) }
        }
    });
    let server = common::serve_service(service).await;
    let port = server.addr.port();
    let process = browser.launch(&binary, &format!("http://localhost:{port}/page"), port);

    // The stream is open (its position event came): 8 fetches, at once.
    let fetched = report(browser, &mut reported).await;
    assert_eq!(fetched["phase"], "fetched", "{fetched}");
    let expected: Vec<String> = (0..8).map(|i| format!("200 pong i={i}")).collect();
    assert_eq!(fetched["results"], serde_json::json!(expected), "{fetched}");
    assert_eq!(fetched["readyState"], 1, "still open: {fetched}");

    // Every topic, round after round; the stream broken before round
    // BREAK_AT; then the end.
    for round in 0..ROUNDS {
        if round == BREAK_AT {
            app.breaks.send_modify(|n| *n += 1);
        }
        for i in 0..TOPICS {
            app.hub
                .publish(&topic(i), Event::new().data(round.to_string()))
                .await
                .unwrap();
        }
        tokio::time::sleep(ROUND_EVERY).await;
    }
    for i in 0..TOPICS {
        app.hub
            .publish(&topic(i), Event::new().data("end"))
            .await
            .unwrap();
    }
    let done = report(browser, &mut reported).await;
    assert_eq!(done["phase"], "done", "{done}");
    let rounds: Vec<u64> = (0..ROUNDS as u64).collect();
    for i in 0..TOPICS {
        assert_eq!(
            done["got"][topic(i)],
            serde_json::json!(rounds),
            "every event of {} once, in order: {done}",
            topic(i)
        );
    }
    // Across topics too, in publish order: round by round, topic by topic.
    let order: Vec<String> = done["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|seen| seen.as_str().unwrap().to_owned())
        .collect();
    let published: Vec<String> = (0..ROUNDS)
        .flat_map(|round| (0..TOPICS).map(move |i| format!("{}:{round}", topic(i))))
        .collect();
    assert_eq!(order, published);
    assert_eq!(done["gaps"], serde_json::json!([]), "{done}");
    assert_eq!(done["positions"], 1, "one fresh start: {done}");

    // The browser came back once, by itself, with an id holding every
    // topic's position, and each topic resumed exactly; the break fell
    // while events were published, so some were replayed.
    let opened = app.opened.lock().unwrap().clone();
    eprintln!("{browser:?}: streams opened {opened:?}");
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert_eq!(opened[0].last_event_id, None);
    let last_id = opened[1].last_event_id.as_deref().unwrap_or_default();
    assert!(last_id.starts_with('t'), "a set's id: {opened:?}");
    assert_eq!(opened[1].starts.len(), TOPICS);
    let mut replayed = 0;
    for (name, start) in &opened[1].starts {
        match start {
            Start::Exact { replayed: n } => replayed += n,
            other => panic!("{name} started {other:?}"),
        }
    }
    assert!(replayed >= TOPICS as u64, "replayed {replayed}: {opened:?}");

    // The contrast: one EventSource per topic.
    let contrast = report(browser, &mut reported).await;
    assert_eq!(contrast["phase"], "contrast", "{contrast}");
    assert_eq!(
        contrast["opened"], 6,
        "6 connections per origin: {contrast}"
    );
    assert_eq!(
        contrast["fetch"], "AbortError",
        "the fetch waited: {contrast}"
    );
    drop(process);
}

/// Follows `TOPICS` topics over one stream; reports `fetched` (8 fetches
/// made once the stream is open), `done` (once `end` came on every topic,
/// and half a second more for anything after it) and `contrast` (8
/// `EventSource`s, one per topic, then a `fetch`).
const PAGE: &str = r##"<!doctype html>
<title>tower-sse: many topics over one stream</title>
<script>
  const topics = Array.from({ length: TOPICS }, (_, i) => `t${i}`);
  const report = (phase, result) =>
    fetch("/report", { method: "POST", body: JSON.stringify({ phase, ...result }) });
  const got = Object.fromEntries(topics.map((topic) => [topic, []]));
  const ended = new Set();
  const order = [];
  const gaps = [];
  let positions = 0;
  let done = false;

  // A fetch that gives up after `ms`: its answer, or the error's name.
  async function ping(i, ms) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), ms);
    try {
      const response = await fetch(`/ping?i=${i}`, { signal: controller.signal });
      return `${response.status} ${await response.text()}`;
    } catch (error) {
      return error.name;
    } finally {
      clearTimeout(timer);
    }
  }

  const source = new EventSource("/events?" + topics.map((t) => `topic=${t}`).join("&"));
  source.addEventListener("sse-position", async () => {
    positions += 1;
    if (positions > 1) return;
    const results = await Promise.all(topics.map((_, i) => ping(i, 5000)));
    report("fetched", { results, readyState: source.readyState });
  });
  source.addEventListener("gap", (event) => gaps.push(JSON.parse(event.data)));
  for (const topic of topics) {
    source.addEventListener(topic, (event) => {
      if (event.data === "end") ended.add(topic);
      else {
        got[topic].push(Number(event.data));
        order.push(`${topic}:${event.data}`);
      }
      if (ended.size === topics.length && !done) {
        done = true;
        setTimeout(finish, 500);
      }
    });
  }

  async function finish() {
    source.close();
    await report("done", { got, order, gaps, positions });
    // One EventSource per topic: 6 of them take every connection.
    const sources = topics.map((t) => new EventSource(`/events?topic=${t}`));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const fetched = await ping("late", 3000);
    const opened = sources.filter((s) => s.readyState === EventSource.OPEN).length;
    for (const s of sources) s.close();
    report("contrast", { opened, fetch: fetched });
  }
</script>
"##;

common::in_every_browser!(
    one_stream_for_eight_topics_leaves_fetch_free_and_resumes_every_topic_exactly,
);

//! Real browsers, Chromium and Firefox, both headless, each test once per
//! engine:
//! - CORS with credentials: `new EventSource(url, { withCredentials: true })`
//!   from a page on `http://localhost:P1` to a stream on
//!   `http://localhost:P2` (cross-origin, same site), after a cookie was set
//!   for the stream's origin;
//! - an event with only an id sets the id the browser sends back;
//! - a stream marked `Content-Encoding: identity` is read;
//! - a reconnect answered with `204` stops the browser for good;
//! - a stream read with `fetch` and `POST` from another origin
//!   (`credentials: 'include'`, a JSON body, the body read as it arrives
//!   with a `ReadableStream` reader), behind the whole `SseLayer` on an axum
//!   router: it streams with the cookie when the route is declared with
//!   `SseCorsBuilder::stream_route`, and is blocked at its preflight, before
//!   the handler, when it is not.
//!
//! Without a browser its tests say SKIPPED; with
//! `TOWER_SSE_REQUIRE_CHROMIUM=1` and `TOWER_SSE_REQUIRE_FIREFOX=1` (set by
//! `.ci/run`) a missing browser fails them.

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tokio::{net::TcpListener, sync::mpsc};
use tower::ServiceBuilder;
use tower_sse::{Event, EventStream, SseCorsLayer, SseLayer};

use common::Browser;

/// How long a page may take to report: Firefox starts in a few seconds on
/// this machine, Chromium in one.
const REPORT_WITHIN: Duration = Duration::from_secs(60);

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// What the stream server saw.
#[derive(Default)]
struct Seen {
    /// The `Cookie` header of each stream the handler opened.
    streams: Vec<Option<String>>,
}

/// Runs the page and the stream server, with `allowed` as the stream
/// server's only allowed origin (`None`: the page's own), starts Chromium at
/// the stream origin's `/login`, and returns what the page reported and
/// what the stream server saw.
async fn run(
    browser: Browser,
    allowed: Option<&str>,
) -> Option<(serde_json::Value, Vec<Option<String>>)> {
    let binary = browser.available()?;
    let page_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_port = page_listener.local_addr().unwrap().port();
    let page_origin = format!("http://localhost:{page_port}");
    drop(page_listener);

    // The stream server: /login sets the cookie and sends the browser to the
    // page; /events streams three events behind the CORS layer.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let cors = SseCorsLayer::builder()
        .allow_origin(allowed.unwrap_or(&page_origin))
        .build()
        .unwrap();
    let page_url = format!("{page_origin}/page");
    let stream_service =
        ServiceBuilder::new()
            .layer(cors)
            .service_fn(move |request: Request<Incoming>| {
                let record = record.clone();
                let page_url = page_url.clone();
                async move {
                    let response = match request.uri().path() {
                        "/login" => Response::builder()
                            .status(StatusCode::FOUND)
                            .header(header::LOCATION, page_url)
                            .header(
                                header::SET_COOKIE,
                                "session=s3cret; Path=/; SameSite=Lax; HttpOnly",
                            )
                            .body(Full::new(Bytes::new()).boxed_unsync())
                            .unwrap(),
                        "/events" => {
                            let cookie = request
                                .headers()
                                .get(header::COOKIE)
                                .and_then(|value| value.to_str().ok())
                                .map(str::to_owned);
                            record.lock().unwrap().streams.push(cookie);
                            let events = stream::iter(["one", "two", "three"].into_iter().zip(1..))
                                .map(|(text, id)| {
                                    Event::new().id(id.to_string()).unwrap().data(text)
                                })
                                .chain(stream::pending());
                            EventStream::new(events)
                                .into_http_response()
                                .map(|body| body.boxed_unsync())
                        }
                        _ => text(StatusCode::NOT_FOUND, "not found"),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
    let stream_server = common::serve_service(stream_service).await;
    let stream_port = stream_server.addr.port();

    // The page server: /page opens the stream; /report receives the result.
    let (reports, mut reported) = mpsc::unbounded_channel::<Bytes>();
    let page = PAGE.replace("STREAM_PORT", &stream_port.to_string());
    let page: &'static str = Box::leak(page.into_boxed_str());
    let page_listener = TcpListener::bind(("127.0.0.1", page_port)).await.unwrap();
    let page_server = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = page_listener.accept().await else {
                continue;
            };
            let reports = reports.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let reports = reports.clone();
                async move {
                    let response = match (request.method(), request.uri().path()) {
                        (&Method::GET, "/page") => {
                            let mut response = text(StatusCode::OK, page);
                            response.headers_mut().insert(
                                header::CONTENT_TYPE,
                                "text/html; charset=utf-8".parse().unwrap(),
                            );
                            response
                        }
                        (&Method::POST, "/report") => {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let _ = reports.send(body);
                            text(StatusCode::NO_CONTENT, "")
                        }
                        _ => text(StatusCode::NOT_FOUND, "not found"),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service),
            );
        }
    });

    let process = browser.launch(
        &binary,
        &format!("http://localhost:{stream_port}/login"),
        stream_port,
    );
    let report = tokio::time::timeout(REPORT_WITHIN, reported.recv())
        .await
        .expect("the page reported in time")
        .unwrap();
    drop(process);
    page_server.abort();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let streams = std::mem::take(&mut seen.lock().unwrap().streams);
    Some((report, streams))
}

const PAGE: &str = r##"<!doctype html>
<title>tower-sse CORS test</title>
<script>
  const url = "http://" + location.hostname + ":STREAM_PORT/events";
  const source = new EventSource(url, { withCredentials: true });
  const got = [];
  const report = (result) =>
    fetch("/report", { method: "POST", body: JSON.stringify(result) });
  source.onmessage = (event) => {
    got.push(event.data + "#" + event.lastEventId);
    if (got.length === 3) {
      source.close();
      report({ ok: true, got });
    }
  };
  source.onerror = () => {
    source.close();
    report({ ok: false, got });
  };
</script>
"##;

async fn an_allowed_page_receives_events_and_the_cookie_reaches_the_stream(browser: Browser) {
    let Some((report, streams)) = run(browser, None).await else {
        return;
    };
    eprintln!("{browser:?}: page reported {report}; streams saw cookies {streams:?}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["got"],
        serde_json::json!(["one#1", "two#2", "three#3"])
    );
    assert_eq!(streams, [Some("session=s3cret".to_owned())]);
}

async fn a_page_not_allowed_gets_an_error_and_no_stream_is_opened(browser: Browser) {
    let Some((report, streams)) = run(browser, Some("http://localhost:1")).await else {
        return;
    };
    eprintln!(
        "{browser:?}: page reported {report}; streams opened: {}",
        streams.len()
    );
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["got"], serde_json::json!([]));
    assert!(streams.is_empty(), "the handler never ran");
}

/// What a scripted stream sends on its n-th request (from 0).
struct Answer {
    status: StatusCode,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    /// Stay open after the body (else end it).
    stay_open: bool,
}

/// Serves `page` at `/page` and `answer(n)` for the n-th `/events` request
/// on one origin, opens the page in `browser`, and returns what the page
/// reported to `/report` and the `Last-Event-ID` of each `/events` request.
async fn scripted(
    browser: Browser,
    page: &'static str,
    answer: fn(usize) -> Answer,
    settle: Duration,
) -> Option<(String, Vec<Option<String>>)> {
    let binary = browser.available()?;
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let (reports, mut reported) = mpsc::unbounded_channel::<Bytes>();
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let record = record.clone();
        let reports = reports.clone();
        async move {
            let response = match request.uri().path() {
                "/page" => {
                    let mut response = text(StatusCode::OK, page);
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        "text/html; charset=utf-8".parse().unwrap(),
                    );
                    response
                }
                "/events" => {
                    let last = request
                        .headers()
                        .get("last-event-id")
                        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
                    let n = {
                        let mut seen = record.lock().unwrap();
                        seen.push(last);
                        seen.len() - 1
                    };
                    let answer = answer(n);
                    let frames = stream::iter([Ok::<_, Infallible>(http_body::Frame::data(
                        Bytes::from_static(answer.body),
                    ))])
                    .chain(stream::pending().take(usize::from(answer.stay_open)));
                    let mut response =
                        Response::new(http_body_util::StreamBody::new(frames).boxed_unsync());
                    *response.status_mut() = answer.status;
                    for (name, value) in answer.headers {
                        response.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    response
                }
                "/report" => {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let _ = reports.send(body);
                    text(StatusCode::NO_CONTENT, "")
                }
                _ => text(StatusCode::NOT_FOUND, "not found"),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let server = common::serve_service(service).await;
    let url = format!("http://localhost:{}/page", server.addr.port());
    let process = browser.launch(&binary, &url, server.addr.port());
    let report = tokio::time::timeout(REPORT_WITHIN, reported.recv())
        .await
        .expect("the page reported in time")
        .unwrap();
    // Whatever the browser would still do (a reconnect it should not make).
    tokio::time::sleep(settle).await;
    drop(process);
    let requests = std::mem::take(&mut *seen.lock().unwrap());
    Some((String::from_utf8_lossy(&report).into_owned(), requests))
}

const EVENT_STREAM: &[(&str, &str)] = &[("content-type", "text/event-stream")];

/// The first request gets `first`, then the stream ends (the browser
/// reconnects after 100 ms); the reconnect gets one message. Returns what
/// the page reported and the `Last-Event-ID` of each request.
async fn position_then_message(
    browser: Browser,
    answer: fn(usize) -> Answer,
) -> Option<(String, Vec<Option<String>>)> {
    let result = scripted(browser, FIRST_MESSAGE_PAGE, answer, Duration::ZERO).await;
    if let Some((report, requests)) = &result {
        eprintln!("{browser:?}: page reported {report}; Last-Event-ID sent: {requests:?}");
    }
    result
}

/// What the hub starts a fresh subscriber with: its position as the id of
/// an `sse-position` event with empty data. Both engines keep the id (and
/// no `message` handler sees the event), so the reconnect resumes.
async fn the_hub_s_position_event_sets_the_id_sent_back(browser: Browser) {
    let answer = |n| Answer {
        status: StatusCode::OK,
        headers: EVENT_STREAM,
        body: if n == 0 {
            b"retry: 100\n\nevent: sse-position\nid: pos-1\ndata:\n\n"
        } else {
            b"data: done\n\n"
        },
        stay_open: n > 0,
    };
    let Some((report, requests)) = position_then_message(browser, answer).await else {
        return;
    };
    assert_eq!(report, "done#pos-1#1", "kept, and not a message");
    assert_eq!(requests, [None, Some("pos-1".to_owned())]);
}

/// An event with an id and no data: the standard says the browser keeps
/// the id without dispatching the event. Chromium does; Firefox keeps no
/// id from it (which is why the hub's position event has data).
async fn an_event_with_only_an_id(browser: Browser) {
    let answer = |n| Answer {
        status: StatusCode::OK,
        headers: EVENT_STREAM,
        body: if n == 0 {
            b"retry: 100\nid: pos-1\n\n"
        } else {
            b"data: done\n\n"
        },
        stay_open: n > 0,
    };
    let Some((report, requests)) = position_then_message(browser, answer).await else {
        return;
    };
    match browser {
        Browser::Chromium => {
            assert_eq!(report, "done#pos-1#1");
            assert_eq!(requests, [None, Some("pos-1".to_owned())]);
        }
        Browser::Firefox => {
            assert_eq!(report, "done##1");
            assert_eq!(requests, [None, None]);
        }
    }
}

/// `NoBufferingLayer::identity_encoding(true)` marks streams
/// `Content-Encoding: identity`: the browser must still read them.
async fn a_stream_marked_identity_encoding_is_read(browser: Browser) {
    let answer = |_| Answer {
        status: StatusCode::OK,
        headers: &[
            ("content-type", "text/event-stream"),
            ("content-encoding", "identity"),
        ],
        body: b"id: 7\ndata: plain\n\n",
        stay_open: true,
    };
    let Some((report, requests)) =
        scripted(browser, FIRST_MESSAGE_PAGE, answer, Duration::ZERO).await
    else {
        return;
    };
    assert_eq!(report, "plain#7#1");
    assert_eq!(requests.len(), 1);
}

/// A reconnect answered with `204 No Content` stops the browser: no more
/// requests, `readyState` CLOSED.
async fn a_204_on_reconnect_stops_the_browser(browser: Browser) {
    let answer = |n| match n {
        0 => Answer {
            status: StatusCode::OK,
            headers: EVENT_STREAM,
            body: b"retry: 100\nid: 1\ndata: first\n\n",
            stay_open: false,
        },
        _ => Answer {
            status: StatusCode::NO_CONTENT,
            headers: &[],
            body: b"",
            stay_open: false,
        },
    };
    // Wait a second after the report: a browser that ignored the 204 would
    // reconnect ten times in it.
    let Some((report, requests)) =
        scripted(browser, STOP_PAGE, answer, Duration::from_secs(1)).await
    else {
        return;
    };
    assert_eq!(report, "first;error:2", "an error, then CLOSED (2)");
    assert_eq!(
        requests,
        [None, Some("1".to_owned())],
        "no request after the 204"
    );
}

/// What a full hub answers (`HubError::into_http_response`): a `200` stream with a
/// comment and a `retry:` only, then its end. The browser must come back
/// (a `503` would stop it for good).
async fn a_stream_with_only_a_retry_brings_the_browser_back(browser: Browser) {
    let answer = |n| Answer {
        status: StatusCode::OK,
        headers: EVENT_STREAM,
        body: if n == 0 {
            b": the hub is full; try again later\nretry: 200\n\n"
        } else {
            b"id: 3\ndata: back\n\n"
        },
        stay_open: n > 0,
    };
    let Some((report, requests)) =
        scripted(browser, FIRST_MESSAGE_PAGE, answer, Duration::ZERO).await
    else {
        return;
    };
    assert_eq!(report, "back#3#1");
    assert_eq!(requests, [None, None]);
}

/// Reports the first message as `data#lastEventId#messages so far`.
const FIRST_MESSAGE_PAGE: &str = r##"<!doctype html>
<title>tower-sse browser test</title>
<script>
  const source = new EventSource("/events");
  let dispatched = 0;
  source.onmessage = (event) => {
    dispatched += 1;
    source.close();
    fetch("/report", { method: "POST", body: event.data + "#" + event.lastEventId + "#" + dispatched });
  };
</script>
"##;

/// Reports the messages, then the `readyState` after the error that the
/// `204` causes (once it is CLOSED).
const STOP_PAGE: &str = r##"<!doctype html>
<title>tower-sse 204 test</title>
<script>
  const source = new EventSource("/events");
  const got = [];
  source.onmessage = (event) => got.push(event.data);
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      fetch("/report", { method: "POST", body: got.join(",") + ";error:" + source.readyState });
    }
  };
</script>
"##;

/// What the stream origin's app saw in [`fetch_a_post_stream`].
#[derive(Default)]
struct AppSeen {
    /// Each request that got through the layer to the router's routes, as
    /// `METHOD /path`.
    reached: Vec<String>,
    /// The `Cookie` header of each run the `/runs` handler started, with its
    /// JSON body.
    runs: Vec<(Option<String>, serde_json::Value)>,
    /// For each run, whether the page said it had read a token before the
    /// last event was sent (the handler waits up to 10 s for it).
    read_before_the_end: Vec<bool>,
}

/// The stream origin's state.
#[derive(Clone)]
struct StreamApp {
    page_url: String,
    seen: Arc<Mutex<AppSeen>>,
    /// Told by the page once it has read the first token.
    first_token_read: Arc<tokio::sync::Notify>,
}

/// The page origin's state.
#[derive(Clone)]
struct PageApp {
    page: &'static str,
    reports: mpsc::UnboundedSender<Bytes>,
    first_token_read: Arc<tokio::sync::Notify>,
}

/// What a page posts to start a run.
#[derive(serde::Deserialize, serde::Serialize)]
struct Run {
    prompt: String,
    count: u64,
}

/// Serves `app` with axum (HTTP/1.1) on `listener` until the task is
/// aborted.
fn serve_axum(listener: TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// A page on `http://localhost:P1` reads `POST /runs` on
/// `http://localhost:P2` with `fetch`: an axum router with that stream
/// route, a JSON route (`POST /api/settings`) and `/login`, behind the
/// whole `SseLayer` with CORS for the page's origin (and `Content-Type`),
/// the route declared with `stream_route` when `declared`. The browser
/// starts at `/login`, which sets the cookie and sends it to the page.
/// Returns what the page reported and what the app saw.
async fn fetch_a_post_stream(
    browser: Browser,
    declared: bool,
) -> Option<(serde_json::Value, AppSeen)> {
    use axum::{
        extract::State,
        response::{Html, IntoResponse},
        routing::{get, post},
        Json, Router,
    };

    let binary = browser.available()?;
    // Both listeners first, so that neither port can be taken meanwhile.
    let page_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_port = page_listener.local_addr().unwrap().port();
    let stream_port = stream_listener.local_addr().unwrap().port();
    let page_origin = format!("http://localhost:{page_port}");

    let cors = SseCorsLayer::builder()
        .allow_origin(&page_origin)
        .allow_header(header::CONTENT_TYPE);
    let cors = if declared {
        cors.stream_route("/runs", Method::POST)
    } else {
        cors
    };
    let first_token_read = Arc::new(tokio::sync::Notify::new());
    let seen = Arc::new(Mutex::new(AppSeen::default()));
    let state = StreamApp {
        page_url: format!("{page_origin}/page"),
        seen: seen.clone(),
        first_token_read: first_token_read.clone(),
    };

    async fn login(State(app): State<StreamApp>) -> impl IntoResponse {
        (
            StatusCode::FOUND,
            [
                (header::LOCATION, app.page_url),
                (
                    header::SET_COOKIE,
                    "session=s3cret; Path=/; SameSite=Lax; HttpOnly".to_owned(),
                ),
            ],
        )
    }

    /// Streams `count` events `data: PROMPT-N` with ids, 5 ms apart; the
    /// last one only once the page has said it read the first (or after
    /// 10 s), so that a page that got the body at its end is caught.
    async fn runs(
        State(app): State<StreamApp>,
        headers: http::HeaderMap,
        Json(run): Json<Run>,
    ) -> impl IntoResponse {
        let cookie = headers
            .get(header::COOKIE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        app.seen
            .lock()
            .unwrap()
            .runs
            .push((cookie, serde_json::to_value(&run).unwrap()));
        let events = stream::unfold(1, move |n| {
            let app = app.clone();
            let prompt = run.prompt.clone();
            let count = run.count;
            async move {
                if n > count {
                    return None;
                }
                if n == count {
                    let read = tokio::time::timeout(
                        Duration::from_secs(10),
                        app.first_token_read.notified(),
                    )
                    .await
                    .is_ok();
                    app.seen.lock().unwrap().read_before_the_end.push(read);
                } else if n > 1 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let event = Event::new().id_number(n).data(format!("{prompt}-{n}"));
                Some((event, n + 1))
            }
        });
        EventStream::new(Box::pin(events)).into_http_response()
    }

    async fn settings(Json(_settings): Json<serde_json::Value>) -> Json<serde_json::Value> {
        Json(serde_json::json!({ "saved": true }))
    }

    let record = seen.clone();
    let stream_app = Router::new()
        .route("/login", get(login))
        .route("/runs", post(runs))
        .route("/api/settings", post(settings))
        .with_state(state)
        .layer(tower::util::MapRequestLayer::new(
            move |request: axum::extract::Request| {
                record.lock().unwrap().reached.push(format!(
                    "{} {}",
                    request.method(),
                    request.uri().path()
                ));
                request
            },
        ))
        .layer(SseLayer::new().cors(cors.build().unwrap()));
    let stream_server = serve_axum(stream_listener, stream_app);

    // The page origin: /page runs the fetch, /first-token-read passes the
    // page's word on to the handler, /report receives the result.
    let (reports, mut reported) = mpsc::unbounded_channel::<Bytes>();
    let page = FETCH_PAGE.replace("STREAM_PORT", &stream_port.to_string());
    let page_app = Router::new()
        .route(
            "/page",
            get(|State(app): State<PageApp>| async move { Html(app.page) }),
        )
        .route(
            "/first-token-read",
            post(|State(app): State<PageApp>| async move {
                app.first_token_read.notify_one();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/report",
            post(|State(app): State<PageApp>, body: Bytes| async move {
                let _ = app.reports.send(body);
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(PageApp {
            page: Box::leak(page.into_boxed_str()),
            reports,
            first_token_read,
        });
    let page_server = serve_axum(page_listener, page_app);

    let process = browser.launch(
        &binary,
        &format!("http://localhost:{stream_port}/login"),
        stream_port,
    );
    let report = tokio::time::timeout(REPORT_WITHIN, reported.recv())
        .await
        .expect("the page reported in time")
        .unwrap();
    drop(process);
    page_server.abort();
    stream_server.abort();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "{browser:?}: page reported {report}; the app saw {:?}, runs {:?}, read before the end {:?}",
        seen.reached, seen.runs, seen.read_before_the_end
    );
    Some((report, seen))
}

/// The requests for `/runs` and `/api/settings` that reached the routes.
fn reached_the_routes(seen: &AppSeen) -> Vec<&str> {
    seen.reached
        .iter()
        .map(String::as_str)
        .filter(|request| request.ends_with(" /runs") || request.ends_with(" /api/settings"))
        .collect()
}

/// The streaming `fetch` of an AI-style app: `POST` with a JSON body and
/// the cookie, the answer an event stream read as it arrives. With the
/// route declared, the layer answers its preflight and marks the stream
/// for the page's origin with credentials: every token arrives in order,
/// the first before the server sent the last, the cookie reaches the
/// handler. The JSON route beside it keeps the app's own CORS (here none:
/// its preflight reaches the router and the browser blocks the `POST`).
async fn a_post_stream_from_another_origin_streams_with_the_cookie(browser: Browser) {
    let Some((report, seen)) = fetch_a_post_stream(browser, true).await else {
        return;
    };
    assert_eq!(report["ok"], true, "{report}");
    let tokens: Vec<String> = (1..=20).map(|n| format!("token-{n}")).collect();
    let ids: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    assert_eq!(report["tokens"], serde_json::json!(tokens), "{report}");
    assert_eq!(report["ids"], serde_json::json!(ids), "{report}");
    assert_eq!(report["contentType"], "text/event-stream", "{report}");
    assert_eq!(
        seen.runs,
        [(
            Some("session=s3cret".to_owned()),
            serde_json::json!({ "prompt": "token", "count": 20 })
        )],
        "one run, with the cookie and the page's JSON body"
    );
    assert_eq!(
        seen.read_before_the_end,
        [true],
        "the page read a token before the server sent the last one"
    );
    assert_eq!(
        reached_the_routes(&seen),
        ["POST /runs", "OPTIONS /api/settings"],
        "the layer answered the stream's preflight; the JSON route's went on to the router"
    );
    assert_eq!(report["settings"], "blocked", "{report}");
}

/// The same app without `stream_route`: the stream's preflight goes on to
/// the router, which has no CORS, so the browser blocks the `POST` and the
/// handler never runs.
async fn a_post_stream_without_stream_route_is_blocked_before_the_handler(browser: Browser) {
    let Some((report, seen)) = fetch_a_post_stream(browser, false).await else {
        return;
    };
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["tokens"], serde_json::json!([]), "{report}");
    assert!(seen.runs.is_empty(), "the handler never ran");
    assert_eq!(
        reached_the_routes(&seen),
        ["OPTIONS /runs", "OPTIONS /api/settings"],
        "both preflights went on to the router; no POST followed"
    );
    assert_eq!(report["settings"], "blocked", "{report}");
}

/// Starts a run with a streaming `fetch` to the stream origin, reads the
/// body with a reader, splits it into events at blank lines, tells its own
/// origin once it has read the first token, then tries the JSON route, and
/// reports `{ ok, tokens, ids, reads, contentType, error, settings }`.
const FETCH_PAGE: &str = r##"<!doctype html>
<title>tower-sse fetch stream test</title>
<script>
  const base = "http://" + location.hostname + ":STREAM_PORT";
  const report = (result) =>
    fetch("/report", { method: "POST", body: JSON.stringify(result) });
  (async () => {
    const tokens = [];
    const ids = [];
    let reads = 0;
    let result;
    try {
      const response = await fetch(base + "/runs", {
        method: "POST",
        credentials: "include",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ prompt: "token", count: 20 }),
      });
      if (!response.ok) throw new Error("status " + response.status);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        reads += 1;
        buffer += decoder.decode(value, { stream: true });
        const frames = buffer.split("\n\n");
        buffer = frames.pop();
        for (const frame of frames) {
          let data = null;
          let id = null;
          for (const line of frame.split("\n")) {
            const value = line.slice(line.indexOf(":") + 1).replace(/^ /, "");
            if (line.startsWith("data:")) data = data === null ? value : data + "\n" + value;
            if (line.startsWith("id:")) id = value;
          }
          if (data === null) continue;
          tokens.push(data);
          ids.push(id);
          if (tokens.length === 1) fetch("/first-token-read", { method: "POST" });
        }
      }
      result = { ok: true, tokens, ids, reads, contentType: response.headers.get("content-type") };
    } catch (error) {
      result = { ok: false, tokens, ids, reads, error: String(error) };
    }
    try {
      await fetch(base + "/api/settings", {
        method: "POST",
        credentials: "include",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ theme: "dark" }),
      });
      result.settings = "read";
    } catch (error) {
      result.settings = "blocked";
    }
    report(result);
  })();
</script>
"##;

// One test per engine for each check above.
common::in_every_browser!(
    an_allowed_page_receives_events_and_the_cookie_reaches_the_stream,
    a_page_not_allowed_gets_an_error_and_no_stream_is_opened,
    the_hub_s_position_event_sets_the_id_sent_back,
    an_event_with_only_an_id,
    a_stream_marked_identity_encoding_is_read,
    a_204_on_reconnect_stops_the_browser,
    a_stream_with_only_a_retry_brings_the_browser_back,
    a_post_stream_from_another_origin_streams_with_the_cookie,
    a_post_stream_without_stream_route_is_blocked_before_the_handler,
);

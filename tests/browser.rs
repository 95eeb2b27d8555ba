//! CORS with credentials in a real browser: headless Chromium opens
//! `new EventSource(url, { withCredentials: true })` from a page on
//! `http://localhost:P1` to a stream on `http://localhost:P2` (cross-origin,
//! same site), after a cookie was set for the stream's origin.
//!
//! Without Chromium the tests say SKIPPED; with
//! `TOWER_SSE_REQUIRE_CHROMIUM=1` (set by `.ci/run`) a missing Chromium
//! fails them.

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
use tower_sse::{Event, EventStream, SseCorsLayer};

const REQUIRE: &str = "TOWER_SSE_REQUIRE_CHROMIUM";

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
async fn run(allowed: Option<&str>) -> Option<(serde_json::Value, Vec<Option<String>>)> {
    let binary = common::find_chromium();
    if !common::tool_available("chromium", binary.as_deref(), REQUIRE) {
        return None;
    }
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
                                .into_response()
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

    let chromium = common::launch_chromium(
        &binary.unwrap(),
        &format!("http://localhost:{stream_port}/login"),
        stream_port,
    );
    let report = tokio::time::timeout(Duration::from_secs(30), reported.recv())
        .await
        .expect("the page reported within 30 s")
        .unwrap();
    drop(chromium);
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

#[tokio::test]
async fn an_allowed_page_receives_events_and_the_cookie_reaches_the_stream() {
    let Some((report, streams)) = run(None).await else {
        return;
    };
    eprintln!("page reported {report}; streams saw cookies {streams:?}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["got"],
        serde_json::json!(["one#1", "two#2", "three#3"])
    );
    assert_eq!(streams, [Some("session=s3cret".to_owned())]);
}

#[tokio::test]
async fn a_page_not_allowed_gets_an_error_and_no_stream_is_opened() {
    let Some((report, streams)) = run(Some("http://localhost:1")).await else {
        return;
    };
    eprintln!("page reported {report}; streams opened: {}", streams.len());
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["got"], serde_json::json!([]));
    assert!(streams.is_empty(), "the handler never ran");
}

/// The hub starts a fresh subscriber with an event that carries only an id
/// (its position): the standard says the browser keeps the id without
/// dispatching the event. Chromium must send it back on the reconnect.
#[tokio::test]
async fn an_event_with_only_an_id_sets_the_id_chromium_sends_back() {
    let binary = common::find_chromium();
    if !common::tool_available("chromium", binary.as_deref(), REQUIRE) {
        return;
    }
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let (reports, mut reported) = mpsc::unbounded_channel::<Bytes>();
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let record = record.clone();
        let reports = reports.clone();
        async move {
            let response = match request.uri().path() {
                "/page" => {
                    let mut response = text(StatusCode::OK, POSITION_PAGE);
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
                        .map(|value| value.to_str().unwrap().to_owned());
                    let first = {
                        let mut seen = record.lock().unwrap();
                        seen.push(last);
                        seen.len() == 1
                    };
                    // First: the position only, then the end (the browser
                    // reconnects after 100 ms). Then: one message.
                    let body: &'static [u8] = if first {
                        b"retry: 100\nid: pos-1\n\n"
                    } else {
                        b"data: done\n\n"
                    };
                    let events = stream::iter([Ok::<_, Infallible>(http_body::Frame::data(
                        Bytes::from_static(body),
                    ))])
                    .chain(stream::pending().take(usize::from(!first)));
                    let mut response =
                        Response::new(http_body_util::StreamBody::new(events).boxed_unsync());
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
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
    let chromium = common::launch_chromium(&binary.unwrap(), &url, server.addr.port());
    let report = tokio::time::timeout(Duration::from_secs(30), reported.recv())
        .await
        .expect("the page reported within 30 s")
        .unwrap();
    drop(chromium);
    assert_eq!(&report[..], b"done#pos-1");
    assert_eq!(*seen.lock().unwrap(), [None, Some("pos-1".to_owned())]);
}

const POSITION_PAGE: &str = r##"<!doctype html>
<title>tower-sse position test</title>
<script>
  const source = new EventSource("/events");
  let dispatched = 0;
  source.onmessage = (event) => {
    dispatched += 1;
    source.close();
    fetch("/report", { method: "POST", body: event.data + "#" + event.lastEventId + (dispatched > 1 ? "#extra" : "") });
  };
</script>
"##;

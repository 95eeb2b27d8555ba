//! The demo example, served for real and read by an independent parser.

#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;

mod common;

use std::{net::SocketAddr, time::Duration};

use futures_util::StreamExt;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// What "Generate" writes in these tests: the demo is given it, and the
/// tests check against it. Non-ASCII characters (split across reads by the
/// browser's decoder), a word with a line break in it (one event, two
/// `data:` lines), 67 words.
const TEXT: &str = "Tokens arrive one by one \u{2014} \u{ab}like these\u{bb} \u{2014} and each \
one is kept exactly once. The page was reloaded somewhere in the middle of this \
sentence, or the next one: it asked for the run again with the \
id of the last token it kept.\nNothing is missing and nothing came twice; \u{65e5}\u{672c}\u{8a9e} \
and \u{1f680} made the trip as well. That is the end of this text.";

/// Time between the words of a run in these tests: a run lasts 2.7 s.
const WORD_PERIOD: Duration = Duration::from_millis(40);

/// The events a run writes for `text`: one per word, with the space after
/// it.
fn words(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

struct Demo {
    page: SocketAddr,
    stream: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start() -> Demo {
    start_with(1000, None).await
}

async fn start_with(
    history: usize,
    checks: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Demo {
    start_with_script(history, checks, None).await
}

/// The demo with `script` run by its page before the page's own.
async fn start_with_script(
    history: usize,
    checks: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    script: Option<&str>,
) -> Demo {
    let page_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = page_listener.local_addr().unwrap();
    let stream = stream_listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(demo::serve(
        page_listener,
        stream_listener,
        demo::Options {
            period: Duration::from_millis(20),
            history,
            text: TEXT.to_owned(),
            word_period: WORD_PERIOD,
            checks,
            script: script.map(str::to_owned),
        },
        async {
            let _ = stopped.await;
        },
    ));
    Demo {
        page,
        stream,
        stop,
        server,
    }
}

fn get(addr: SocketAddr, path: &str) -> http::request::Builder {
    Request::get(format!("http://{addr}{path}"))
}

async fn send(request: http::request::Builder) -> http::Response<hyper::body::Incoming> {
    common::client()
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_page_points_at_the_stream_origin() {
    let demo = start().await;
    let response = common::get(demo.page, "/").await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let html = std::str::from_utf8(&body).unwrap();
    assert!(html
        .contains("new EventSource(`${streamOrigin}/events?${query}`, { withCredentials: true })"));
    assert!(html.contains(&format!("location.hostname}}:{}", demo.stream.port())));
    // Not an event stream: the layers added nothing.
    let response = common::get(demo.page, "/nope").await;
    assert_eq!(response.status(), 404);
    assert!(!response.headers().contains_key("x-accel-buffering"));
}

#[tokio::test]
async fn events_answer_on_both_origins_with_every_layer() {
    let demo = start().await;
    for addr in [demo.page, demo.stream] {
        let response = common::get(addr, "/events").await;
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-cache, no-transform");
        assert_eq!(headers["x-accel-buffering"], "no");
        let events: Vec<_> = common::parse_events(response).take(4).collect().await;
        assert_eq!(events[0].event, "welcome");
        let welcome: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(welcome["session"], serde_json::Value::Null);
        assert_eq!(welcome["resume"]["kind"], "fresh");
        // Without a query and a session: the public topics, each fresh.
        assert_eq!(
            welcome["topics"],
            serde_json::json!({
                "notes": { "kind": "fresh", "replayed": 0 },
                "ticks": { "kind": "fresh", "replayed": 0 },
            })
        );
        // The topics' position, then live events from the hub, typed by
        // their topic, with ids that hold every topic's position; the
        // numbers run on across both topics.
        assert_eq!(events[1].event, "sse-position");
        for event in &events[1..] {
            assert!(event.id.starts_with('t'), "a set's id: {event:?}");
        }
        assert_eq!(events[2].event, topic_of(number(&events[2])));
        assert_eq!(events[3].event, topic_of(number(&events[3])));
        assert_eq!(number(&events[3]), number(&events[2]) + 1);
        assert_ne!(events[2].id, events[3].id);
    }
}

/// The tick number of a `ticks` event (`{"n": N}`) or a `notes` event
/// (`tick N\n...`).
fn number(event: &eventsource_stream::Event) -> u64 {
    match event.event.as_str() {
        "ticks" => {
            let tick: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            tick["n"].as_u64().unwrap()
        }
        "notes" => event
            .data
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap(),
        other => panic!("not a tick: {other} {event:?}"),
    }
}

/// The topic the demo publishes tick `n` to.
fn topic_of(n: u64) -> &'static str {
    if n % 5 == 0 {
        "notes"
    } else {
        "ticks"
    }
}

#[tokio::test]
async fn the_page_origin_is_allowed_in_both_spellings_and_others_are_refused() {
    let demo = start().await;
    let port = demo.page.port();
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let response = send(
            get(demo.stream, "/events")
                .header(header::ORIGIN, &origin)
                .header(header::ACCEPT, "text/event-stream"),
        )
        .await;
        assert_eq!(response.status(), 200, "{origin}");
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            origin.as_str()
        );
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
    }
    // As EventSource asks: refused before the handler runs.
    let response = send(
        get(demo.stream, "/events")
            .header(header::ORIGIN, "http://localhost:1")
            .header(header::ACCEPT, "text/event-stream"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// The page's buttons POST to the stream origin with the cookie: those
/// routes answer the page's origin with the app's own CORS (tower-http's
/// `CorsLayer`), preflight included, and no other origin.
#[tokio::test]
async fn the_control_routes_have_the_app_s_cors_for_the_page_only() {
    let demo = start().await;
    let page = format!("http://localhost:{}", demo.page.port());
    for path in ["/break?stream=999", "/end?stream=999"] {
        let call = |origin: &str| {
            Request::post(format!("http://{}{path}", demo.stream))
                .header(header::ORIGIN, origin)
                .body(Empty::new())
                .unwrap()
        };
        // No such stream: the page can read that answer too.
        let response = common::client().request(call(&page)).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], page.as_str());
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");

        let response = common::client()
            .request(call("http://localhost:1"))
            .await
            .unwrap();
        assert!(!response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

        let preflight = Request::options(format!("http://{}{path}", demo.stream))
            .header(header::ORIGIN, &page)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Empty::new())
            .unwrap();
        let response = common::client().request(preflight).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], page.as_str());
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
    }
    // Another method on a control route: told which one to use.
    let response = send(get(demo.stream, "/break?stream=1")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
}

#[tokio::test]
async fn login_sets_a_cookie_and_the_server_can_end_the_stream_for_good() {
    let demo = start().await;
    let login = send(
        get(demo.stream, "/login")
            .header(header::HOST, format!("localhost:{}", demo.stream.port())),
    )
    .await;
    assert_eq!(login.status(), StatusCode::FOUND);
    assert_eq!(
        login.headers()[header::LOCATION],
        format!("http://localhost:{}/", demo.page.port()).as_str()
    );
    let cookie = login.headers()[header::SET_COOKIE].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_owned();
    assert!(session.starts_with("demo_session="));

    let response = send(get(demo.stream, "/events").header(header::COOKIE, &session)).await;
    let mut events = common::parse_events(response);
    let welcome = events.next().await.unwrap();
    let welcome: serde_json::Value = serde_json::from_str(&welcome.data).unwrap();
    assert_eq!(
        welcome["session"].as_str(),
        session.strip_prefix("demo_session=")
    );

    let stream_id = welcome["stream"].as_u64().unwrap();
    let request = Request::post(format!("http://{}/end?stream={stream_id}", demo.stream))
        .header(header::COOKIE, &session)
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        common::client().request(request).await.unwrap().status(),
        200
    );
    // The stream ends ...
    tokio::time::timeout(Duration::from_secs(2), events.collect::<Vec<_>>())
        .await
        .expect("the server ended the stream");
    // ... and the browser's reconnect is told to stop.
    let reconnect = send(
        get(demo.stream, "/events")
            .header(header::COOKIE, &session)
            .header("last-event-id", "3"),
    )
    .await;
    assert_eq!(reconnect.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn demo_resumes_after_last_event_id_from_the_hub() {
    let demo = start().await;
    let response = common::get(demo.page, "/events").await;
    let events: Vec<_> = common::parse_events(response).take(3).collect().await;
    // The position before the first live event.
    let last = events[1].id.clone();
    let first = number(&events[2]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = send(get(demo.page, "/events").header("last-event-id", &last)).await;
    let events: Vec<_> = common::parse_events(response).take(8).collect().await;
    let welcome: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(welcome["resume"]["kind"], "exact");
    assert!(welcome["resume"]["replayed"].as_u64().unwrap() >= 5);
    for topic in ["ticks", "notes"] {
        assert_eq!(welcome["topics"][topic]["kind"], "exact", "{welcome}");
    }
    assert!(welcome["topics"]["ticks"]["replayed"].as_u64().unwrap() >= 4);
    // Every event after the position, once, in publish order across the
    // two topics.
    for (k, event) in events[1..].iter().enumerate() {
        assert_eq!(number(event), first + k as u64, "{events:?}");
        assert_eq!(event.event, topic_of(number(event)));
    }
    // An id the hub never gave: each topic's gap event, then the kept
    // events.
    let response = send(get(demo.page, "/events").header("last-event-id", "41")).await;
    let events: Vec<_> = common::parse_events(response).take(3).collect().await;
    let mut gapped = Vec::new();
    for gap in &events[1..] {
        assert_eq!(gap.event, "gap");
        let data: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(data["reason"], "unknown-id", "{data}");
        gapped.push(data["topic"].as_str().unwrap().to_owned());
    }
    gapped.sort();
    assert_eq!(gapped, ["notes", "ticks"]);
}

/// Logs in as `user` over HTTP; returns the `Cookie` header to send.
async fn log_in(demo: &Demo, user: &str) -> String {
    let login = send(get(demo.stream, &format!("/login?user={user}"))).await;
    assert_eq!(login.status(), StatusCode::FOUND, "{user}");
    let cookie = login.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// `POST /send` with `form` as the body, as the page sends it.
async fn send_form(demo: &Demo, cookie: Option<&str>, form: &str) -> (StatusCode, String) {
    let mut request = post(demo.stream, "/send").header(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded;charset=UTF-8",
    );
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(
            form.to_owned(),
        )))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A message goes to its recipient's topic only: the recipient's stream
/// gets it, another user's stream does not, and a stream that asks for
/// another user's topic is refused with 403 before it opens (a
/// `Last-Event-ID` cannot add one either).
#[tokio::test]
async fn a_message_reaches_its_recipient_only_and_another_user_s_topic_is_403() {
    let demo = start().await;
    let ann = log_in(&demo, "ann").await;
    let bob = log_in(&demo, "bob").await;
    let open = |cookie: String, query: &'static str| {
        let stream = demo.stream;
        async move { send(get(stream, &format!("/events{query}")).header(header::COOKIE, cookie)).await }
    };
    // Without a query: the public topics and the user's own.
    let ann_stream = open(ann.clone(), "").await;
    assert_eq!(ann_stream.status(), StatusCode::OK);
    let mut ann_events = common::parse_events(ann_stream);
    let welcome = ann_events.next().await.unwrap();
    let welcome: serde_json::Value = serde_json::from_str(&welcome.data).unwrap();
    assert_eq!(welcome["user"], "ann");
    let mut topics: Vec<_> = welcome["topics"].as_object().unwrap().keys().collect();
    topics.sort();
    assert_eq!(topics, ["notes", "ticks", "user:ann"]);
    let bob_stream = open(bob.clone(), "?topic=user%3Abob").await;
    assert_eq!(bob_stream.status(), StatusCode::OK);
    let mut bob_events = common::parse_events(bob_stream);
    assert_eq!(bob_events.next().await.unwrap().event, "welcome");
    assert_eq!(bob_events.next().await.unwrap().event, "sse-position");

    let (status, body) = send_form(&demo, Some(&ann), "to=bob&text=hi+bob%21").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = send_form(&demo, Some(&bob), "to=ann&text=hi+ann").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = bob_events.next().await.unwrap();
    assert_eq!(got.event, "user:bob");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&got.data).unwrap(),
        serde_json::json!({ "from": "ann", "text": "hi bob!" })
    );
    // Ann's stream: ticks and notes, then bob's message to her, and never
    // hers to bob.
    let mut to_ann = Vec::new();
    while to_ann.is_empty() {
        let event = ann_events.next().await.unwrap();
        assert!(
            ["ticks", "notes", "user:ann", "sse-position"].contains(&&*event.event),
            "{event:?}"
        );
        if event.event == "user:ann" {
            to_ann.push(event.data);
        }
    }
    assert_eq!(to_ann, [r#"{"from":"bob","text":"hi ann"}"#]);

    // Another user's topic, alone or with others, from any origin: 403,
    // no stream.
    for (cookie, query) in [
        (Some(&ann), "?topic=user%3Abob"),
        (Some(&ann), "?topic=ticks&topic=user:bob"),
        (None, "?topic=user:ann"),
    ] {
        let mut request = get(demo.stream, &format!("/events{query}"))
            .header(header::ACCEPT, "text/event-stream")
            .header(
                header::ORIGIN,
                format!("http://localhost:{}", demo.page.port()),
            );
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = send(request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("user:"),
            "the answer names the topic: {body:?}"
        );
    }
    // A bad set: 400.
    for query in ["?", "?topic=", "?topic=%0A", "?other=1"] {
        let response =
            send(get(demo.stream, &format!("/events{query}")).header(header::COOKIE, &ann)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
}

/// `POST /send` checks what it is given: a session, a form, a known
/// recipient with a valid name, a text of 1 to 500 characters; anything
/// else is a 4xx that says what is wrong.
#[tokio::test]
async fn sending_refuses_bad_input_with_a_4xx_that_says_why() {
    let demo = start().await;
    let ann = log_in(&demo, "ann").await;
    let long = format!("to=ann&text={}", "x".repeat(501));
    let cases: &[(Option<&str>, &str, StatusCode, &str)] = &[
        (None, "to=ann&text=hi", StatusCode::UNAUTHORIZED, "log in"),
        (Some(&ann), "to=zoe&text=hi", StatusCode::NOT_FOUND, "zoe"),
        (
            Some(&ann),
            "to=Ann&text=hi",
            StatusCode::BAD_REQUEST,
            "user name",
        ),
        (
            Some(&ann),
            "to=&text=hi",
            StatusCode::BAD_REQUEST,
            "user name",
        ),
        (Some(&ann), "to=ann", StatusCode::BAD_REQUEST, "`text`"),
        (
            Some(&ann),
            "to=ann&text=+++",
            StatusCode::BAD_REQUEST,
            "characters",
        ),
        (
            Some(&ann),
            "to=ann&text=a%0Ab",
            StatusCode::BAD_REQUEST,
            "control",
        ),
        (Some(&ann), &long, StatusCode::BAD_REQUEST, "500"),
        (
            Some(&ann),
            "to=ann&text=%ff",
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            Some(&ann),
            "to=ann&text=%zz",
            StatusCode::BAD_REQUEST,
            "percent",
        ),
        (
            Some(&ann),
            "to=ann&text=%+1",
            StatusCode::BAD_REQUEST,
            "percent",
        ),
        (
            Some(&ann),
            "to=ann&to=bob&text=hi",
            StatusCode::BAD_REQUEST,
            "twice",
        ),
        (
            Some(&ann),
            "to=ann&text=hi&x=1",
            StatusCode::BAD_REQUEST,
            "unknown",
        ),
    ];
    for (cookie, form, status, says) in cases {
        let (got, body) = send_form(&demo, *cookie, form).await;
        assert_eq!(got, *status, "{form}: {body}");
        assert!(body.contains(says), "{form}: {body}");
    }
    // Not a form.
    let request = post(demo.stream, "/send")
        .header(header::COOKIE, &ann)
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Too large.
    let (got, _) = send_form(&demo, Some(&ann), &"x".repeat(5000)).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    // Bad names at login.
    for query in [
        "?user=",
        "?user=Ann",
        "?user=a%3Ab",
        "?user=a&user=b",
        "?who=x",
    ] {
        let response = send(get(demo.stream, &format!("/login{query}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    // And a good one still works.
    let (got, body) = send_form(&demo, Some(&ann), "to=ann&text=%C2%ABhi%C2%BB").await;
    assert_eq!(got, StatusCode::ACCEPTED, "{body}");
}

fn post(addr: SocketAddr, path: &str) -> http::request::Builder {
    Request::post(format!("http://{addr}{path}"))
}

/// `POST /generate` as the page sends it.
async fn generate(demo: &Demo) -> http::Response<hyper::body::Incoming> {
    send(post(demo.stream, "/generate").header(header::ACCEPT, "text/event-stream")).await
}

/// `POST /generate` streams the run from its first event: a `run` event
/// with the run's id (also in `X-Run-Id`), one event per word, the end.
/// `GET /generate/{id}?last_event_id=` after any of them sends exactly the
/// events after it; after the end, `204`; a run the demo never had, `404`.
#[tokio::test]
async fn generate_streams_the_text_and_a_resume_after_any_event_sends_exactly_the_rest() {
    let demo = start().await;
    let response = generate(&demo).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let (events, broke) = common::events_until_end(response).await;
    assert!(!broke);
    assert_eq!(events[0].event, "run");
    let started: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(started["run"], id.as_str());
    let last = events.last().unwrap();
    assert_eq!(last.event, "run-end");
    assert_eq!(last.data, r#"{"outcome":"completed"}"#);
    let written: Vec<&str> = events[1..events.len() - 1]
        .iter()
        .map(|event| event.data.as_str())
        .collect();
    assert_eq!(written, words(TEXT), "one event per word, in order");
    assert_eq!(written.concat(), TEXT);

    let ids_and_data = |events: &[eventsource_stream::Event]| -> Vec<(String, String)> {
        events
            .iter()
            .map(|event| (event.id.clone(), event.data.clone()))
            .collect()
    };
    let total = events.len();
    for after in [0, 1, total / 2, total - 2] {
        let path = format!("/generate/{id}?last_event_id={}", events[after].id);
        let response = send(get(demo.stream, &path)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let (rest, broke) = common::events_until_end(response).await;
        assert!(!broke);
        assert_eq!(
            ids_and_data(&rest),
            ids_and_data(&events[after + 1..]),
            "after event {after}"
        );
    }
    let path = format!("/generate/{id}?last_event_id={}", last.id);
    let response = send(get(demo.stream, &path)).await;
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "the end was seen"
    );
    let response = send(get(demo.stream, "/generate/0123456789abcdef")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// "Stop" from anywhere: the run ends as stopped, for the stream that
/// started it and for another that follows it, with the words written until
/// then; the run is no longer running, so a second stop finds nothing.
#[tokio::test]
async fn stop_ends_the_run_as_stopped_for_every_follower() {
    let demo = start().await;
    let response = generate(&demo).await;
    let id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let mut started = common::parse_events(response);
    let first: Vec<_> = (&mut started).take(3).collect().await;
    let follower = send(get(demo.stream, &format!("/generate/{id}"))).await;
    assert_eq!(follower.status(), StatusCode::OK);

    let stop = send(post(demo.stream, &format!("/generate/{id}/stop"))).await;
    assert_eq!(stop.status(), StatusCode::ACCEPTED);
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(2), started.collect::<Vec<_>>())
        .await
        .expect("the run ended at once");
    let started: Vec<_> = first.into_iter().chain(rest).collect();
    let (followed, broke) = common::events_until_end(follower).await;
    assert!(!broke);
    for events in [&started, &followed] {
        let end = events.last().unwrap();
        assert_eq!(end.event, "run-end");
        assert_eq!(end.data, r#"{"outcome":"stopped"}"#);
        let written: Vec<&str> = events[1..events.len() - 1]
            .iter()
            .map(|event| event.data.as_str())
            .collect();
        assert!(written.len() >= 2 && written.len() < words(TEXT).len());
        assert_eq!(written, words(TEXT)[..written.len()]);
    }
    assert_eq!(
        started.iter().map(|event| &event.id).collect::<Vec<_>>(),
        followed.iter().map(|event| &event.id).collect::<Vec<_>>(),
        "both streams saw the same events"
    );
    let again = send(post(demo.stream, &format!("/generate/{id}/stop"))).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

/// The run routes answer the page's origin, across origins, with the
/// cookie: `SseCorsLayer` marks the streams and answers the POST stream's
/// preflight (declared with `stream_route`, for a page that would send
/// JSON: this one sends none); the app's CORS makes the other
/// answers readable (a run that is gone: `404`, and the stop). Another
/// origin's stream request is refused before a run starts.
#[tokio::test]
async fn the_run_routes_answer_the_page_s_origin_only() {
    let demo = start().await;
    let page = format!("http://localhost:{}", demo.page.port());
    let readable = |response: &http::Response<hyper::body::Incoming>| {
        let headers = response.headers();
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN) == Some(&page.parse().unwrap())
            && headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS] == "true"
    };
    let response = send(
        post(demo.stream, "/generate")
            .header(header::ORIGIN, &page)
            .header(header::ACCEPT, "text/event-stream"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(readable(&response), "{:?}", response.headers());
    let id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    drop(response);

    let preflight = send(
        Request::options(format!("http://{}/generate", demo.stream))
            .header(header::ORIGIN, &page)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type"),
    )
    .await;
    // Answered by `SseCorsLayer` (the app's CORS answers `200`).
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
        "POST"
    );
    let allowed = preflight.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("content-type"), "{allowed}");

    let gone = send(
        get(demo.stream, "/generate/0123456789abcdef?last_event_id=x")
            .header(header::ORIGIN, &page)
            .header(header::ACCEPT, "text/event-stream"),
    )
    .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(
        readable(&gone),
        "the page can read the 404: {:?}",
        gone.headers()
    );

    let stop =
        send(post(demo.stream, &format!("/generate/{id}/stop")).header(header::ORIGIN, &page))
            .await;
    assert_eq!(stop.status(), StatusCode::ACCEPTED);
    assert!(readable(&stop), "{:?}", stop.headers());

    let refused = send(
        post(demo.stream, "/generate")
            .header(header::ORIGIN, "http://localhost:1")
            .header(header::ACCEPT, "text/event-stream"),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Other methods: told which one to use.
    for (request, allow) in [
        (get(demo.stream, "/generate"), "POST"),
        (post(demo.stream, &format!("/generate/{id}")), "GET"),
        (get(demo.stream, &format!("/generate/{id}/stop")), "POST"),
    ] {
        let response = send(request).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], allow);
    }
}

/// Drives the demo page in a headless browser with a self-check: after 3
/// ticks the server breaks the stream (no 204), the browser reconnects by
/// itself, and the page reports every tick number it got.
async fn browser_check(
    browser: common::Browser,
    history: usize,
    check: &str,
) -> Option<serde_json::Value> {
    let binary = browser.available()?;
    let (checks, mut reported) = tokio::sync::mpsc::unbounded_channel();
    let demo = start_with(history, Some(checks)).await;
    let url = format!("http://localhost:{}/?check={check}", demo.page.port());
    let process = browser.launch(&binary, &url, demo.page.port());
    let report = tokio::time::timeout(Duration::from_secs(90), reported.recv())
        .await
        .expect("the page reported within 90 s")
        .unwrap();
    drop(process);
    eprintln!("{browser:?}: {report}");
    Some(serde_json::from_str(&report).unwrap())
}

fn numbers(report: &serde_json::Value, key: &str) -> Vec<u64> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect()
}

async fn every_tick_arrives_once_in_order_across_a_broken_connection(browser: common::Browser) {
    let Some(report) = browser_check(browser, 1000, "resume").await else {
        return;
    };
    // Both topics together, in publish order: every number once.
    let ticks = numbers(&report, "ticks");
    assert!(ticks.len() >= 13, "{report}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "every tick once, in order: {ticks:?}");
    }
    // Each topic's own, on its events' types.
    for topic in ["ticks", "notes"] {
        let own = numbers(&report["byTopic"], topic);
        assert!(
            own.iter().all(|&n| topic_of(n) == topic),
            "{topic}: {own:?}"
        );
    }
    let resumes = report["resumes"].as_array().unwrap();
    assert_eq!(resumes[0]["kind"], "fresh");
    // The reconnect came after 1 s of 20 ms ticks: dozens were replayed,
    // of both topics.
    assert_eq!(resumes[1]["kind"], "exact", "{report}");
    assert!(resumes[1]["replayed"].as_u64().unwrap() >= 10, "{report}");
    let topics = &resumes[1]["topics"];
    assert_eq!(topics["ticks"]["kind"], "exact", "{report}");
    assert_eq!(topics["notes"]["kind"], "exact", "{report}");
    assert!(
        topics["ticks"]["replayed"].as_u64().unwrap() >= 8,
        "{report}"
    );
    assert!(
        topics["notes"]["replayed"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["gaps"].as_array().unwrap().len(), 0);
    assert_eq!(report["holes"], 0);
}

async fn the_gap_event_arrives_when_the_history_is_too_short(browser: common::Browser) {
    let Some(report) = browser_check(browser, 2, "gap").await else {
        return;
    };
    let resumes = report["resumes"].as_array().unwrap();
    assert_eq!(resumes[1]["kind"], "gap", "{report}");
    assert_eq!(resumes[1]["reason"], "history-truncated");
    // Each topic missed more than its history holds: each has its own gap
    // event, naming it.
    let gaps = report["gaps"].as_array().unwrap();
    let mut gapped: Vec<_> = gaps.iter().map(|gap| gap["topic"].as_str()).collect();
    gapped.sort();
    assert_eq!(gapped, [Some("notes"), Some("ticks")], "{report}");
    for gap in gaps {
        assert_eq!(gap["reason"], "history-truncated");
        assert_eq!(
            resumes[1]["topics"][gap["topic"].as_str().unwrap()]["kind"],
            "gap",
            "{report}"
        );
    }
    let missed = |topic: &str| {
        let gap = gaps.iter().find(|gap| gap["topic"] == topic).unwrap();
        gap["missed"].as_u64().unwrap()
    };
    assert!(missed("ticks") >= 10, "{report}");
    assert!(missed("notes") >= 1, "{report}");
    // Jumps only where a topic's gap event said so: one per topic, over
    // exactly the events it says were missed. A topic's numbers start
    // where the first stream started (fresh: just before its first event),
    // so a topic with no event before the break jumps from there.
    assert_eq!(report["holes"], 0, "{report}");
    let first = numbers(&report, "ticks")[0];
    for topic in ["ticks", "notes"] {
        let start = (0..first)
            .rev()
            .find(|&n| topic_of(n) == topic)
            .unwrap_or(0);
        let own: Vec<u64> = [start]
            .into_iter()
            .chain(numbers(&report["byTopic"], topic))
            .collect();
        let next = |n: u64| (n + 1..).find(|&m| topic_of(m) == topic).unwrap();
        let jumps: Vec<_> = own
            .windows(2)
            .filter(|pair| pair[1] != next(pair[0]))
            .collect();
        assert_eq!(jumps.len(), 1, "{topic}: {own:?}");
        let skipped = (jumps[0][0] + 1..jumps[0][1])
            .filter(|&n| topic_of(n) == topic)
            .count() as u64;
        assert_eq!(skipped, missed(topic), "{topic}: {own:?} {report}");
    }
}

/// Opens the demo's page in `browser` with `script` (built by
/// [`script`]), which drives the page and reports to `/check`, and returns
/// the report and the errors and warnings of the browser's own console:
/// Chromium's through the DevTools protocol (every source: CORS refusals,
/// failed loads and 404s, uncaught errors, `console.*`). Firefox's console
/// is out of reach without its remote protocol (`None`): there the page's
/// hooks in the script are the witness.
async fn drive(
    browser: common::Browser,
    script: &str,
) -> Option<(serde_json::Value, Option<Vec<String>>)> {
    let binary = browser.available()?;
    let (checks, mut reported) = tokio::sync::mpsc::unbounded_channel();
    let demo = start_with_script(1000, Some(checks), Some(script)).await;
    let port = demo.page.port();
    // `localhost` for both origins: same site, so the cookie travels.
    let url = format!("http://localhost:{port}/");
    let within = Duration::from_secs(90);
    let (report, console) = match browser {
        common::Browser::Chromium => {
            let process =
                browser.launch_with(&binary, "about:blank", port, &["--remote-debugging-port=0"]);
            let mut devtools = common::devtools::DevTools::connect(process.profile()).await;
            devtools.call("Runtime.enable", serde_json::json!({})).await;
            devtools.call("Log.enable", serde_json::json!({})).await;
            devtools
                .call("Page.navigate", serde_json::json!({ "url": url }))
                .await;
            let mut console = Vec::new();
            let deadline = tokio::time::sleep(within);
            tokio::pin!(deadline);
            let report = loop {
                tokio::select! {
                    report = reported.recv() => break report.unwrap(),
                    Some(event) = devtools.next_event() => {
                        console.extend(common::devtools::console_problem(&event));
                    }
                    () = &mut deadline => {
                        let page = devtools
                            .call("Runtime.evaluate", serde_json::json!({
                                "expression": PAGE_STATE,
                                "returnByValue": true,
                            }))
                            .await;
                        panic!(
                            "no report from the page within {within:?}; the page: {}; console: {console:#?}",
                            page["result"]["value"]
                        );
                    }
                }
            };
            // Whatever the console shows right after the last step.
            let settle = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    Some(event) = devtools.next_event() => {
                        console.extend(common::devtools::console_problem(&event));
                    }
                    () = &mut settle => break,
                }
            }
            drop(process);
            (report, Some(console))
        }
        common::Browser::Firefox => {
            let process = browser.launch(&binary, &url, port);
            let report = tokio::time::timeout(within, reported.recv())
                .await
                .expect("the page reported in time")
                .unwrap();
            drop(process);
            (report, None)
        }
    };
    eprintln!("{browser:?}: {report}\n{browser:?} console: {console:#?}");
    Some((serde_json::from_str(&report).unwrap(), console))
}

/// Pressing every button of the demo's page leaves its console clean: no
/// CORS refusal for the page's calls to the stream origin, no 404, no
/// uncaught error. A newcomer reads any of them as a bug in the crate.
async fn every_button_of_the_demo_leaves_the_console_clean(browser: common::Browser) {
    let Some((report, console)) = drive(browser, &script(TOUR)).await else {
        return;
    };
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    assert_eq!(
        report["steps"],
        serde_json::json!([
            "login", "break", "close", "break", "end", "reopen", "end", "reopen", "send",
            "generate", "stop"
        ]),
        "{report}"
    );
    assert_eq!(report["run"]["outcome"], "stopped", "{report}");
    // Logged in as the page's default user, whose stream carries their own
    // topic: the message to self came back on it.
    assert_eq!(report["me"], "alice", "{report}");
    assert_eq!(
        report["messages"],
        serde_json::json!([{ "topic": "user:alice", "from": "alice", "text": "a note to self" }]),
        "{report}"
    );
    // The cookie set by "Log in" travelled with the stream.
    assert!(
        report["session"].as_str().unwrap().starts_with('s'),
        "{report}"
    );
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    if let Some(console) = console {
        assert!(console.is_empty(), "{console:#?}");
    }
}

/// What the page holds, for a test that waited in vain for its report.
const PAGE_STATE: &str = r#"JSON.stringify({
  url: location.href,
  readyState: document.readyState,
  drive: sessionStorage.getItem("drive"),
  generation: sessionStorage.getItem("generation"),
  runState: document.getElementById("run-state")?.textContent,
})"#;

/// A script for the demo's page, run before the page's own: `HOOKS`, then
/// `steps`, which define `async function drive()`: it returns
/// `"navigating"` when it leaves the page (the script goes on in the next
/// one, from sessionStorage), or what to add to the report. The report,
/// `{error, steps, problems, ...}`, goes to `/check`.
fn script(steps: &str) -> String {
    format!("(() => {{\n{HOOKS}\n{steps}\n{REPORT}\n}})();")
}

/// Hooks that record what a developer would see in the console
/// (`console.error` and `warn`, uncaught errors and rejections, a failed
/// load, a `fetch` that failed, CORS included, or got an error status),
/// and the helpers the steps use. What they record is kept in
/// sessionStorage, across navigations, with a trace of the script's own
/// progress (loaded, drove, reported) that `PAGE_STATE` shows when the
/// report never comes.
const HOOKS: &str = r#"
  const load = () => JSON.parse(sessionStorage.getItem("drive"))
    ?? { phase: "start", steps: [], problems: [], trace: [] };
  const save = (state) => sessionStorage.setItem("drive", JSON.stringify(state));
  const record = (key, text) => { const state = load(); state[key].push(text); save(state); };
  const problem = (text) => record("problems", `${location.pathname}: ${text}`);
  for (const level of ["error", "warn"]) {
    const original = console[level];
    console[level] = (...args) => {
      problem(`console.${level}: ${args.join(" ")}`);
      original.apply(console, args);
    };
  }
  record("trace", `script ${document.readyState} ${Date.now()}`);
  addEventListener("error", (event) => problem(event.message
    ? `uncaught: ${event.message}`
    : `failed to load: ${event.target.currentSrc || event.target.href || event.target.tagName}`), true);
  addEventListener("unhandledrejection", (event) => problem(`unhandled rejection: ${event.reason}`));
  const pageFetch = window.fetch;
  window.fetch = async (url, init = {}) => {
    const what = `${init.method ?? "GET"} ${url}`;
    let response;
    try {
      response = await pageFetch(url, init);
    } catch (error) {
      problem(`fetch ${what} failed: ${error}`);
      throw error;
    }
    if (!response.ok) problem(`fetch ${what}: ${response.status}`);
    return response;
  };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function until(what, condition, ms = 15000) {
    for (const start = Date.now(); !condition(); await sleep(50)) {
      if (Date.now() - start > ms) throw new Error(`no ${what} within ${ms} ms`);
    }
  }
  async function press(id, then = async () => {}) {
    record("steps", id);
    $(id).click();
    await then();
  }
  // The page's run as it keeps it: {run, last, text, words, outcome, resumes}.
  const run = () => JSON.parse(sessionStorage.getItem("generation"));
  const words = () => run()?.words ?? 0;
"#;

/// Runs `drive()` once the page's own script has run, and reports.
const REPORT: &str = r#"
  addEventListener("DOMContentLoaded", async () => {
    let error = null;
    let found = {};
    record("trace", `drive ${load().phase} ${Date.now()}`);
    try {
      found = await drive();
      record("trace", `drove ${Date.now()}`);
      if (found === "navigating") return;
    } catch (failure) {
      error = String(failure);
    }
    const { steps, problems } = load();
    const report = { error, steps, problems, ...found };
    pageFetch("/check", { method: "POST", body: JSON.stringify(report) })
      .then((response) => record("trace", `reported ${response.status} ${Date.now()}`),
        (error) => record("trace", `report failed ${error} ${Date.now()}`));
  });
"#;

/// Presses every button and waits for what each one does. Logging in is
/// a navigation: the tour goes on in the next page.
const TOUR: &str = r#"
  const open = () => $("state").textContent === "open" && $("stream").textContent !== "?";
  async function newStream(id) {
    const before = $("stream").textContent;
    await press(id, () => until(`new stream after ${id}`,
      () => open() && $("stream").textContent !== before));
  }

  async function drive() {
    if (load().phase === "start") {
      await until("stream", open);
      save({ ...load(), phase: "logged in" });
      await press("login");
      return "navigating";
    }
    await until("stream with the session", () => open() && /^s\d+$/.test($("session").textContent));
    await newStream("break");
    await press("close", () => until("close", () => $("state").textContent === "closed"));
    // Nothing is open: nothing to break or end.
    await press("break");
    await press("end", () => sleep(500));
    await newStream("reopen");
    await press("end", () => until("end by the server",
      () => $("closed").textContent.startsWith("Closed by the server")));
    await newStream("reopen");
    await sleep(1000);
    $("to").value = "alice";
    $("text").value = "a note to self";
    await press("send", () => until("the message", () => seen.messages.length > 0));
    await press("generate", () => until("3 words", () => words() >= 3));
    await press("stop", () => until("the run's end", () => run().outcome !== null));
    return { session: $("session").textContent, run: run(), me: $("me").textContent,
      messages: seen.messages };
  }
"#;

/// Presses "Generate", reloads the page `RELOAD_AFTER` ms after the run's
/// id arrived, and reports the page once the run has ended: what it kept
/// before the reload, its run, and what it shows.
const RELOAD: &str = r#"
  async function drive() {
    if (load().phase === "start") {
      await press("generate", () => until("the run's id", () => run()?.run));
      await sleep(RELOAD_AFTER);
      save({ ...load(), phase: "reloaded", atReload: run() });
      record("steps", "reload");
      location.reload();
      return "navigating";
    }
    await until("the run's end", () => run()?.outcome, 30000);
    return { atReload: load().atReload, run: run(), output: $("output").textContent,
      state: $("run-state").textContent };
  }
"#;

/// Presses "Generate", then "Stop" after 3 words, and reports the page once
/// the run has ended (and a moment later, to catch a word after the end).
const STOP: &str = r#"
  async function drive() {
    await press("generate", () => until("3 words", () => words() >= 3));
    await press("stop", () => until("the run's end", () => run().outcome !== null));
    await sleep(300);
    return { run: run(), output: $("output").textContent, state: $("run-state").textContent };
  }
"#;

/// "Generate", then a reload of the page at a random point of the run:
/// the page resumes the same run after the last word it kept, and ends
/// with the whole text, exactly (no word twice, none missing), and the
/// console stays clean.
async fn a_reload_mid_run_resumes_it_and_the_text_is_exact(browser: common::Browser) {
    let total = words(TEXT).len();
    // From the run's id to 12 words before its end: the page has not seen
    // the end when it reloads.
    let latest = WORD_PERIOD.as_millis() as u64 * (total as u64 - 12);
    let reload_after = common::random_tag() % latest;
    eprintln!("{browser:?}: reloading {reload_after} ms after the run's id arrived");
    let steps = RELOAD.replace("RELOAD_AFTER", &reload_after.to_string());
    let Some((report, console)) = drive(browser, &script(&steps)).await else {
        return;
    };
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    assert_eq!(
        report["steps"],
        serde_json::json!(["generate", "reload"]),
        "{report}"
    );
    let before = &report["atReload"];
    assert_eq!(
        before["outcome"],
        serde_json::Value::Null,
        "mid-run: {report}"
    );
    let kept = before["text"].as_str().unwrap();
    assert!(TEXT.starts_with(kept), "{report}");
    assert_eq!(
        kept,
        words(TEXT)[..before["words"].as_u64().unwrap() as usize].concat(),
        "{report}"
    );
    let run = &report["run"];
    assert_eq!(run["run"], before["run"], "the same run: {report}");
    assert_eq!(
        run["resumes"], 1,
        "resumed once, after the reload: {report}"
    );
    assert_eq!(run["outcome"], "completed", "{report}");
    assert_eq!(run["words"], total, "every word once: {report}");
    assert_eq!(report["output"], TEXT, "the page shows the text, exactly");
    assert_eq!(run["text"], TEXT);
    assert!(
        report["state"]
            .as_str()
            .unwrap()
            .starts_with(&format!("completed: {total} words, resumed 1 time")),
        "{report}"
    );
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    if let Some(console) = console {
        assert!(console.is_empty(), "{console:#?}");
    }
}

/// "Generate", then "Stop": the server ends the run as stopped, and the
/// page shows it, with the words written until then and nothing after.
async fn stop_ends_the_run_and_the_page_shows_it(browser: common::Browser) {
    let Some((report, console)) = drive(browser, &script(STOP)).await else {
        return;
    };
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    let run = &report["run"];
    assert_eq!(run["outcome"], "stopped", "{report}");
    let written = run["words"].as_u64().unwrap() as usize;
    let total = words(TEXT).len();
    assert!((3..total).contains(&written), "{report}");
    assert_eq!(
        report["output"],
        words(TEXT)[..written].concat(),
        "{report}"
    );
    assert!(
        report["state"]
            .as_str()
            .unwrap()
            .starts_with(&format!("stopped: {written} words")),
        "{report}"
    );
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    if let Some(console) = console {
        assert!(console.is_empty(), "{console:#?}");
    }
}

/// Each page logs in as the user of its URL (`?as=NAME`), says when its
/// stream (with its own topic) is open, waits for the test's "go" (a
/// message from carol), sends a message to the other user with the form,
/// waits for theirs and a second more, then asks for the other user's
/// topic, as a stream from the page (cross-origin, with the cookie) and as
/// a `fetch` on its own origin, and reports what came. It also listens on
/// its stream for the other user's topic: a leak would show there.
const TWO_USERS: &str = r#"
  // What a stream that asks for `query` does in the browser, within 3 s
  // (a refused stream must not open, nor come back).
  function tryStream(query) {
    return new Promise((resolve) => {
      const es = new EventSource(`${streamOrigin}/events?${query}`, { withCredentials: true });
      const seenHere = { opened: false, events: 0, errors: 0 };
      es.onopen = () => { seenHere.opened = true; };
      for (const type of ["welcome", "ticks", "message"]) es.addEventListener(type, () => { seenHere.events += 1; });
      es.onerror = () => { seenHere.errors += 1; };
      setTimeout(() => {
        seenHere.readyState = es.readyState;
        es.close();
        resolve(seenHere);
      }, 3000);
    });
  }

  async function drive() {
    if (load().phase === "start") {
      const as = new URLSearchParams(location.search).get("as");
      // Once the page has asked who it is: leaving before would abort that.
      await until("stream", () => $("state").textContent === "open");
      save({ ...load(), phase: "logged in", as });
      $("user").value = as;
      $("user").dispatchEvent(new Event("input"));
      await press("login");
      return "navigating";
    }
    const as = load().as;
    const other = as === "alice" ? "bob" : "alice";
    await until("my stream", () => $("state").textContent === "open" && $("me").textContent === as);
    const leaked = [];
    source.addEventListener(`user:${other}`, (event) => leaked.push(event.data));
    await pageFetch("/check", { method: "POST", body: JSON.stringify({ ready: as }) });
    await until("go", () => seen.messages.some((m) => m.from === "carol"), 30000);
    $("to").value = other;
    $("text").value = `from ${as} to ${other}`;
    await press("send", () => until("sent", () => $("send-state").textContent.startsWith("202")));
    await until(`${other}'s message`, () => seen.messages.some((m) => m.from === other));
    await sleep(1000);
    const refused = await tryStream(`topic=ticks&topic=user%3A${other}`);
    // A stream, if it were allowed, would never end: read only an error's body.
    const controller = new AbortController();
    const response = await pageFetch(`/events?topic=user%3A${other}`, { signal: controller.signal });
    const body = response.ok ? "(a stream)" : await response.text();
    controller.abort();
    return { as, me: $("me").textContent, messages: seen.messages, leaked, refused,
      sameOrigin: { status: response.status, body } };
  }
"#;

/// Two users, each in a browser of their own (a cookie belongs to the
/// browser): each page gets the messages sent to its user, and never one
/// sent to the other; a page that asks for the other user's topic is
/// refused before any stream opens.
async fn a_user_never_sees_another_user_s_messages(browser: common::Browser) {
    let Some(binary) = browser.available() else {
        return;
    };
    let (checks, mut reported) = tokio::sync::mpsc::unbounded_channel();
    let demo = start_with_script(1000, Some(checks), Some(&script(TWO_USERS))).await;
    let port = demo.page.port();
    let _alice = browser.launch(&binary, &format!("http://localhost:{port}/?as=alice"), port);
    let _bob = browser.launch(
        &binary,
        &format!("http://localhost:{port}/?as=bob"),
        port.wrapping_add(1),
    );
    async fn next_report(
        browser: common::Browser,
        reported: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    ) -> serde_json::Value {
        let report = tokio::time::timeout(Duration::from_secs(90), reported.recv())
            .await
            .expect("the pages reported within 90 s")
            .unwrap();
        eprintln!("{browser:?}: {report}");
        serde_json::from_str(&report).unwrap()
    }
    let mut ready = Vec::new();
    for _ in 0..2 {
        ready.push(
            next_report(browser, &mut reported).await["ready"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ready.sort();
    assert_eq!(ready, ["alice", "bob"]);
    // Both streams are open: "go", from a third user.
    let carol = log_in(&demo, "carol").await;
    for to in ["alice", "bob"] {
        let (status, body) = send_form(&demo, Some(&carol), &format!("to={to}&text=go")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let mut reports = [
        next_report(browser, &mut reported).await,
        next_report(browser, &mut reported).await,
    ];
    reports.sort_by_key(|report| report["as"].as_str().map(str::to_owned));
    for (report, (me, other)) in reports.iter().zip([("alice", "bob"), ("bob", "alice")]) {
        assert_eq!(report["error"], serde_json::Value::Null, "{report}");
        assert_eq!(report["as"], me, "{report}");
        assert_eq!(report["me"], me, "{report}");
        let topic = format!("user:{me}");
        // Exactly what was sent to this user, once each, in order: never
        // the message this page sent to the other user, nor carol's to them.
        assert_eq!(
            report["messages"],
            serde_json::json!([
                { "topic": topic, "from": "carol", "text": "go" },
                { "topic": topic, "from": other, "text": format!("from {other} to {me}") },
            ]),
            "{report}"
        );
        assert_eq!(report["leaked"], serde_json::json!([]), "{report}");
        // The stream that asks for the other user's topic never opens, and
        // the browser does not try again (a 403 fails the connection).
        let refused = &report["refused"];
        assert_eq!(refused["opened"], false, "{report}");
        assert_eq!(refused["events"], 0, "{report}");
        assert_eq!(refused["readyState"], 2, "CLOSED: {report}");
        // On the page's own origin the answer can be read: 403, naming the
        // topic.
        assert_eq!(report["sameOrigin"]["status"], 403, "{report}");
        let body = report["sameOrigin"]["body"].as_str().unwrap();
        assert!(body.contains(&format!("user:{other}")), "{report}");
        assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    }
}

#[tokio::test]
async fn demo_shutdown_ends_open_streams_and_returns() {
    let demo = start().await;
    let response = common::get(demo.page, "/events").await;
    let mut body = http_body_util::BodyDataStream::new(response.into_body());
    assert!(body.next().await.is_some());

    demo.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), demo.server)
        .await
        .expect("the server stopped within 1 s of the signal while a client was connected")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        rest.extend_from_slice(&chunk);
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("retry: "),
        "the stream ended with its final frame"
    );
}

mod chromium {
    #[tokio::test]
    async fn every_button_of_the_demo_leaves_the_console_clean() {
        super::every_button_of_the_demo_leaves_the_console_clean(super::common::Browser::Chromium)
            .await;
    }

    #[tokio::test]
    async fn every_tick_arrives_once_in_order_across_a_broken_connection() {
        super::every_tick_arrives_once_in_order_across_a_broken_connection(
            super::common::Browser::Chromium,
        )
        .await;
    }

    #[tokio::test]
    async fn a_reload_mid_run_resumes_it_and_the_text_is_exact() {
        super::a_reload_mid_run_resumes_it_and_the_text_is_exact(super::common::Browser::Chromium)
            .await;
    }

    #[tokio::test]
    async fn stop_ends_the_run_and_the_page_shows_it() {
        super::stop_ends_the_run_and_the_page_shows_it(super::common::Browser::Chromium).await;
    }

    #[tokio::test]
    async fn a_user_never_sees_another_user_s_messages() {
        super::a_user_never_sees_another_user_s_messages(super::common::Browser::Chromium).await;
    }

    #[tokio::test]
    async fn the_gap_event_arrives_when_the_history_is_too_short() {
        super::the_gap_event_arrives_when_the_history_is_too_short(
            super::common::Browser::Chromium,
        )
        .await;
    }
}

mod firefox {
    #[tokio::test]
    async fn every_button_of_the_demo_leaves_the_console_clean() {
        super::every_button_of_the_demo_leaves_the_console_clean(super::common::Browser::Firefox)
            .await;
    }

    #[tokio::test]
    async fn every_tick_arrives_once_in_order_across_a_broken_connection() {
        super::every_tick_arrives_once_in_order_across_a_broken_connection(
            super::common::Browser::Firefox,
        )
        .await;
    }

    #[tokio::test]
    async fn a_reload_mid_run_resumes_it_and_the_text_is_exact() {
        super::a_reload_mid_run_resumes_it_and_the_text_is_exact(super::common::Browser::Firefox)
            .await;
    }

    #[tokio::test]
    async fn stop_ends_the_run_and_the_page_shows_it() {
        super::stop_ends_the_run_and_the_page_shows_it(super::common::Browser::Firefox).await;
    }

    #[tokio::test]
    async fn a_user_never_sees_another_user_s_messages() {
        super::a_user_never_sees_another_user_s_messages(super::common::Browser::Firefox).await;
    }

    #[tokio::test]
    async fn the_gap_event_arrives_when_the_history_is_too_short() {
        super::the_gap_event_arrives_when_the_history_is_too_short(super::common::Browser::Firefox)
            .await;
    }
}

/// A stream that ended forgets its ender: asking the server to end it
/// afterwards finds nothing (each one used to stay in memory for good).
#[tokio::test]
async fn a_stream_that_ended_leaves_nothing_behind() {
    let demo = start().await;
    let response = common::get(demo.stream, "/events").await;
    let mut events = common::parse_events(response);
    let welcome = events.next().await.unwrap();
    let welcome: serde_json::Value = serde_json::from_str(&welcome.data).unwrap();
    let stream_id = welcome["stream"].as_u64().unwrap();
    drop(events);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request = Request::post(format!("http://{}/end?stream={stream_id}", demo.stream))
        .body(Empty::new())
        .unwrap();
    let response = common::client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, ServiceExt};
use tower_layer::Layer;

use super::*;

const APP: &str = "https://app.example.com";
const CREATED: StatusCode = StatusCode::CREATED;
const JSON: &str = "application/json";
const LOCAL: &str = "http://localhost:5173";

fn layer() -> SseCorsLayer {
    SseCorsLayer::builder()
        .allow_origins([APP, LOCAL])
        .build()
        .unwrap()
}

/// Calls a handler through `layer`; returns the response and how many times
/// the handler ran.
async fn call(layer: &SseCorsLayer, request: Request<()>) -> (Response<CorsBody<String>>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = layer.layer(service_fn(move |_request: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .header("vary", "Accept-Encoding")
                .body("data: x\n\n".to_owned())
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    }));
    let response = service.oneshot(request).await.unwrap();
    (response, calls.load(Ordering::SeqCst))
}

/// A request for an event stream, as `EventSource` sends it.
fn from(origin: &str) -> Request<()> {
    Request::get("/events")
        .header(header::ORIGIN, origin)
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap()
}

async fn text(response: Response<CorsBody<String>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn allowed_origin_is_echoed_with_credentials_and_vary_appended() {
    let (response, calls) = call(&layer(), from(APP)).await;
    assert_eq!(calls, 1);
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let vary: Vec<_> = headers.get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    assert_eq!(text(response).await, "data: x\n\n");
}

#[tokio::test]
async fn forbidden_origin_gets_403_without_calling_the_service() {
    let (response, calls) = call(&layer(), from("https://evil.example")).await;
    assert_eq!(calls, 0);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert!(text(response).await.contains("origin not allowed"));
}

#[tokio::test]
async fn requests_without_origin_pass_through_untouched() {
    let request = Request::get("/events").body(()).unwrap();
    let (response, calls) = call(&layer(), request).await;
    assert_eq!(calls, 1);
    assert_eq!(response.headers().len(), 2);
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn spoofed_origins_are_all_refused() {
    let spoofs = [
        "https://app.example.com.evil.test",
        "https://evil-app.example.com",
        "https://evilapp.example.com",
        "https://app.example.co",
        "https://app.example.com:443",
        "https://app.example.com:8443",
        "https://app.example.com/",
        "https://app.example.com/path",
        "http://app.example.com",
        "HTTPS://app.example.com",
        "https://APP.example.com",
        "https://App.Example.Com",
        "https://sub.app.example.com",
        "https://app.example.com.",
        " https://app.example.com",
        "https://app.example.com ",
        "https://app.example.com\t",
        "https://user@app.example.com",
        "null",
        "",
        "*",
        "http://localhost:5174",
        "http://localhost",
        "https://localhost:5173",
        "http://127.0.0.1:5173",
        "http://localhost:5173.evil.test",
        "http://[::1]:5173",
        "file://",
        "app.example.com",
    ];
    assert!(spoofs.len() >= 20);
    for spoof in spoofs {
        let Ok(value) = http::HeaderValue::from_str(spoof) else {
            continue;
        };
        let request = Request::get("/events")
            .header(header::ORIGIN, value)
            .header(header::ACCEPT, "text/event-stream")
            .body(())
            .unwrap();
        let (response, calls) = call(&layer(), request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{spoof:?}");
        assert_eq!(calls, 0, "{spoof:?}");
    }
    // Bytes that are not text are refused too.
    let request = Request::get("/events")
        .header(
            header::ORIGIN,
            http::HeaderValue::from_bytes(b"https://app.example.com\xff").unwrap(),
        )
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap();
    assert_eq!(
        call(&layer(), request).await.0.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn null_origin_is_allowed_only_when_listed() {
    let with_null = SseCorsLayer::builder()
        .allow_origins([APP, "null"])
        .build()
        .unwrap();
    let (response, _) = call(&with_null, from("null")).await;
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "null"
    );
    assert_eq!(
        call(&layer(), from("null")).await.0.status(),
        StatusCode::FORBIDDEN
    );
}

fn preflight(origin: &str) -> Request<()> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/events")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "last-event-id, authorization",
        )
        .body(())
        .unwrap()
}

#[tokio::test]
async fn a_real_preflight_is_answered_without_calling_the_service() {
    let layer = SseCorsLayer::builder()
        .allow_origin(APP)
        .allow_header(header::AUTHORIZATION)
        .max_age(Duration::from_secs(600))
        .build()
        .unwrap();
    let (response, calls) = call(&layer, preflight(APP)).await;
    assert_eq!(calls, 0);
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET");
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "last-event-id, authorization"
    );
    assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");
    assert!(headers[header::VARY].to_str().unwrap().contains("Origin"));
    assert_eq!(text(response).await, "");

    // A foreign origin's preflight is not answered: it goes on to the app
    // (whose own CORS, if any, decides), and the stream request itself
    // gets 403.
    let (passed, calls) = call(&layer, preflight("https://evil.example")).await;
    assert_eq!(calls, 1);
    assert!(!passed
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

fn preflight_for(method: &str, headers: Option<&str>) -> Request<()> {
    let mut request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/items")
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method);
    if let Some(headers) = headers {
        request = request.header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers);
    }
    request.body(()).unwrap()
}

#[tokio::test]
async fn preflights_that_cannot_be_for_an_event_stream_reach_the_service() {
    for (method, headers) in [
        ("POST", Some("content-type")),
        ("DELETE", None),
        ("PUT", Some("last-event-id")),
        ("GET", Some("authorization")),
        ("GET", Some("last-event-id, x-csrf-token")),
        ("GET", None),
        ("get", Some("last-event-id")),
    ] {
        let (response, calls) =
            call_answering(&layer(), preflight_for(method, headers), CREATED, JSON).await;
        assert_eq!(calls, 1, "{method} {headers:?}");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{method} {headers:?}"
        );
        assert_eq!(response.headers().len(), 1, "{method} {headers:?}");
    }
    // The same GET preflight for Last-Event-ID is the layer's own.
    let (response, calls) = call_answering(
        &layer(),
        preflight_for("GET", Some("Last-Event-ID")),
        CREATED,
        JSON,
    )
    .await;
    assert_eq!((response.status(), calls), (StatusCode::NO_CONTENT, 0));
}

#[tokio::test]
async fn requests_that_do_not_ask_for_an_event_stream_pass_through_untouched() {
    let same_origin_post = Request::post("/api/login")
        .header(header::ORIGIN, "https://api.example.com")
        .header(header::CONTENT_TYPE, "application/json")
        .body(())
        .unwrap();
    let json_from = |origin: &str| {
        Request::get("/api/items")
            .header(header::ORIGIN, origin)
            .header(header::ACCEPT, "application/json, */*")
            .body(())
            .unwrap()
    };
    for request in [
        same_origin_post,
        json_from(APP),
        json_from("https://evil.example"),
    ] {
        let (response, calls) = call_answering(&layer(), request, CREATED, JSON).await;
        assert_eq!(calls, 1);
        assert_eq!(response.status(), StatusCode::CREATED);
        let names: Vec<_> = response.headers().keys().collect();
        assert_eq!(names, [header::CONTENT_TYPE]);
        assert_eq!(text(response).await, "{\"secret\":1}");
    }
}

#[tokio::test]
async fn a_response_that_turns_out_to_be_an_event_stream_gets_its_headers() {
    // No `Accept` (a `fetch` that did not ask): the handler runs, and an
    // allowed origin still gets the headers on the stream it returned.
    let request = Request::get("/events")
        .header(header::ORIGIN, APP)
        .body(())
        .unwrap();
    let (response, calls) = call(&layer(), request).await;
    assert_eq!(calls, 1);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    // A foreign origin's gets none, so its page cannot read the stream.
    let request = Request::get("/events")
        .header(header::ORIGIN, "https://evil.example")
        .body(())
        .unwrap();
    let (response, calls) = call(&layer(), request).await;
    assert_eq!(calls, 1);
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn a_stream_request_with_two_origins_is_refused_whatever_the_first_says() {
    for origins in [
        [APP, "https://evil.example"],
        ["https://evil.example", APP],
        [APP, APP],
    ] {
        let mut request = from(origins[0]);
        request
            .headers_mut()
            .append(header::ORIGIN, origins[1].parse().unwrap());
        let (response, calls) = call(&layer(), request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origins:?}");
        assert_eq!(calls, 0, "{origins:?}");
    }
}

#[tokio::test]
async fn other_options_requests_reach_the_service() {
    // OPTIONS with an Origin but no Access-Control-Request-Method.
    let request = Request::builder()
        .method(Method::OPTIONS)
        .header(header::ORIGIN, APP)
        .body(())
        .unwrap();
    let (response, calls) = call_answering(&layer(), request, CREATED, JSON).await;
    assert_eq!(calls, 1);
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // OPTIONS without an Origin.
    let request = Request::builder()
        .method(Method::OPTIONS)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(())
        .unwrap();
    assert_eq!(call(&layer(), request).await.1, 1);
}

#[tokio::test]
async fn a_predicate_decides_and_credentials_can_be_off() {
    let layer = SseCorsLayer::builder()
        .allow_origin_fn(|origin| {
            origin.ends_with(".trusted.example") && origin.starts_with("https://")
        })
        .allow_credentials(false)
        .build()
        .unwrap();
    let (response, _) = call(&layer, from("https://a.trusted.example")).await;
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://a.trusted.example"
    );
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    assert_eq!(
        call(&layer, from("https://trusted.example.evil"))
            .await
            .0
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn any_origin_without_credentials_echoes_the_origin() {
    let layer = SseCorsLayer::builder()
        .any_origin()
        .allow_credentials(false)
        .build()
        .unwrap();
    let (response, _) = call(&layer, from("https://anyone.example")).await;
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://anyone.example"
    );
}

#[test]
fn any_origin_with_credentials_is_a_build_error() {
    let error = SseCorsLayer::builder().any_origin().build().unwrap_err();
    assert_eq!(error.kind(), CorsErrorKind::AnyOriginWithCredentials);
    assert!(error.to_string().contains("allow_credentials(false)"));
}

#[test]
fn origins_not_written_as_browsers_send_them_are_build_errors() {
    for (origin, hint) in [
        ("https://app.example.com/", "write https://app.example.com"),
        (
            "https://app.example.com:443",
            "write https://app.example.com",
        ),
        ("http://localhost:80", "write http://localhost"),
        ("https://App.example.com", "write https://app.example.com"),
        ("ftp://app.example.com", "http or https"),
        ("app.example.com", "scheme://host"),
        ("https://app.example.com:x", "digits"),
        ("http://a:08080", "write http://a:8080"),
        ("http://a:65536", "at most 65535"),
        ("http://a:123456", "at most 65535"),
        ("http://[]", "IPv6"),
        ("http://[]:80", "IPv6"),
        ("http://[zz]", "IPv6"),
        ("http://[::1::2]", "IPv6"),
        ("http://[0:0:0:0:0:0:0:1]:8080", "as http://[::1]:8080"),
        ("http://[::0001]", "as http://[::1]"),
        ("http://[::ffff:127.0.0.1]", "as http://[::ffff:7f00:1]"),
        ("http://[2001:DB8::1]", "as http://[2001:db8::1]"),
        ("http://127.1", "as http://127.0.0.1"),
        ("http://0x7f.0.0.1:8080", "as http://127.0.0.1:8080"),
        ("http://1.2.3", "as http://1.2.0.3"),
        ("http://01.2.3.4", "as http://1.2.3.4"),
        ("http://0", "as http://0.0.0.0"),
        ("http://1.2.3.4.", "as http://1.2.3.4"),
        ("http://2130706433", "as http://127.0.0.1"),
        ("http://256.1.1.1", "browsers refuse this host"),
        ("http://1.2.3.4.5", "browsers refuse this host"),
        ("http://example.123", "browsers refuse this host"),
        ("http://a.0x", "browsers refuse this host"),
        ("http://localhost:00", "write http://localhost:0"),
        ("*", "any_origin"),
    ] {
        let error = SseCorsLayer::builder()
            .allow_origin(origin)
            .build()
            .unwrap_err();
        assert!(
            error.kind() == CorsErrorKind::InvalidOrigin
                && error.invalid_origin() == Some(origin)
                && error.to_string().contains(hint),
            "{origin}: {error}"
        );
    }
    for good in [
        "https://app.example.com",
        "http://localhost:5173",
        "http://[::1]:8080",
        "http://[::1]",
        "http://a:65535",
        "http://a:0",
        "http://127.0.0.1:8080",
        "http://[2001:db8::1]:8080",
        "http://[1::]",
        "http://[1:0:0:2::3]",
        "http://1.example",
        "null",
    ] {
        assert!(
            SseCorsLayer::builder().allow_origin(good).build().is_ok(),
            "{good}"
        );
    }
}

#[test]
fn no_origin_and_mixed_origins_are_build_errors() {
    assert_eq!(
        SseCorsLayer::builder().build().unwrap_err().kind(),
        CorsErrorKind::NoOrigins
    );
    assert_eq!(
        SseCorsLayer::builder()
            .allow_origin(APP)
            .any_origin()
            .allow_credentials(false)
            .build()
            .unwrap_err()
            .kind(),
        CorsErrorKind::MixedOrigins
    );
}

#[tokio::test]
async fn readiness_is_forwarded_and_the_inner_service_called_once() {
    crate::test_util::assert_forwards_readiness(layer()).await;
}

/// Calls a handler that answers `status` with `content_type` through
/// `layer`; returns the response and how many times the handler ran.
async fn call_answering(
    layer: &SseCorsLayer,
    request: Request<()>,
    status: StatusCode,
    content_type: &'static str,
) -> (Response<CorsBody<String>>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = layer.layer(service_fn(move |_request: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let response = Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body("{\"secret\":1}".to_owned())
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    }));
    let response = service.oneshot(request).await.unwrap();
    (response, calls.load(Ordering::SeqCst))
}

#[tokio::test]
async fn asking_for_a_stream_does_not_unlock_reads_of_other_successes() {
    // `Accept` needs no preflight: a page of an allowed origin must not read
    // a JSON route with the user's cookies by asking for a stream.
    for status in [StatusCode::OK, StatusCode::CREATED] {
        let (response, calls) =
            call_answering(&layer(), from(APP), status, "application/json").await;
        assert_eq!(calls, 1);
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{status}: {:?}",
            response.headers()
        );
        assert!(!response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
    // Nor of its errors, whose bodies can say as much.
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::CONFLICT,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let (response, _) = call_answering(&layer(), from(APP), status, "application/json").await;
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{status}"
        );
    }
    // Answers without a body to read do get them: `EventSource` acts on a
    // 204 (stop reconnecting), and follows a cross-origin redirect only with
    // them.
    for status in [
        StatusCode::NO_CONTENT,
        StatusCode::FOUND,
        StatusCode::TEMPORARY_REDIRECT,
    ] {
        let (response, _) = call_answering(&layer(), from(APP), status, "text/plain").await;
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            APP,
            "{status}"
        );
    }
}

#[tokio::test]
async fn without_fetch_metadata_an_origin_naming_the_host_is_the_apps_own() {
    // Plain HTTP outside localhost: browsers send no `Sec-Fetch-Site`.
    let own = |origin: &str, host: &str| {
        Request::post("/chat")
            .header(header::ORIGIN, origin)
            .header(header::HOST, host)
            .header(header::ACCEPT, "text/event-stream")
            .body(())
            .unwrap()
    };
    for (origin, host) in [
        ("http://app.test:8080", "app.test:8080"),
        ("http://app.test", "app.test"),
        ("http://app.test", "app.test:80"),
        ("https://app.test", "App.Test:443"),
        // Behind a proxy that ends TLS the server sees plain HTTP: the
        // scheme is not compared, one host and port serve one scheme.
        ("https://localhost:8080", "localhost:8080"),
    ] {
        let (response, calls) = call(&layer(), own(origin, host)).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::OK, 1),
            "{origin} {host}"
        );
    }
    for (origin, host) in [
        ("http://app.test:8080", "app.test:8081"),
        ("http://evil.test", "app.test"),
        ("http://app.test", "app.test:443"),
        ("http://app.test.evil", "app.test"),
        // No browser writes an origin's host in capitals.
        ("http://LOCALHOST:8080", "localhost:8080"),
        ("http://App.Test", "app.test"),
        // Only http and https pages send a request a server could call its own.
        ("ws://app.test:8080", "app.test:8080"),
        ("file://app.test", "app.test"),
        ("app.test:8080", "app.test:8080"),
    ] {
        let (response, calls) = call(&layer(), own(origin, host)).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::FORBIDDEN, 0),
            "{origin} {host}"
        );
    }
    // HTTP/2 carries the host in the URI's authority.
    let h2 = Request::post("https://app.test:8443/chat")
        .header(header::ORIGIN, "https://app.test:8443")
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap();
    assert_eq!(call(&layer(), h2).await.0.status(), StatusCode::OK);
    // When the browser does say where the request comes from, that wins.
    let mut cross = own("http://app.test:8080", "app.test:8080");
    cross.headers_mut().insert(
        "sec-fetch-site",
        http::HeaderValue::from_static("same-site"),
    );
    assert_eq!(
        call(&layer(), cross).await.0.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_apps_own_streaming_post_is_not_judged() {
    // A same-origin `fetch` POST that streams (chat completions and the
    // like) sends `Origin`; the browser marks it `Sec-Fetch-Site:
    // same-origin`, which no page can set.
    let request = Request::post("/chat")
        .header(header::ORIGIN, "https://api.example.com")
        .header("sec-fetch-site", "same-origin")
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap();
    let (response, calls) = call(&layer(), request).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // The same request from another site is judged.
    let request = Request::post("/chat")
        .header(header::ORIGIN, "https://api.example.com")
        .header("sec-fetch-site", "cross-site")
        .header(header::ACCEPT, "text/event-stream")
        .body(())
        .unwrap();
    let (response, calls) = call(&layer(), request).await;
    assert_eq!((response.status(), calls), (StatusCode::FORBIDDEN, 0));
}

#[tokio::test]
async fn a_refused_origin_gives_back_the_builder_with_every_other_setting() {
    let error = SseCorsLayer::builder()
        .allow_origin(APP)
        .allow_header(header::AUTHORIZATION)
        .allow_origin("https://App.example.com")
        .max_age(std::time::Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), CorsErrorKind::InvalidOrigin);
    // Fixed and built again: the first origin, the header and the max age
    // were kept.
    let layer = error
        .into_builder()
        .allow_origin("https://app.example.com")
        .build()
        .unwrap();
    let (response, _) = call(&layer, preflight(APP)).await;
    assert_eq!(response.headers()[header::ACCESS_CONTROL_MAX_AGE], "60");
}

/// A layer that also owns `POST /runs`, read by `fetch` with a JSON body.
fn layer_with_a_post_stream() -> SseCorsLayer {
    SseCorsLayer::builder()
        .allow_origin(APP)
        .allow_header(header::CONTENT_TYPE)
        .stream_route("/runs", Method::POST)
        .build()
        .unwrap()
}

fn preflight_to(path: &str, origin: &str, method: &str, headers: Option<&str>) -> Request<()> {
    let mut request = Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method);
    if let Some(headers) = headers {
        request = request.header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers);
    }
    request.body(()).unwrap()
}

#[tokio::test]
async fn a_stream_routes_preflight_is_answered_like_a_get_streams() {
    let layer = layer_with_a_post_stream();
    for headers in [
        Some("content-type"),
        None,
        Some("Content-Type, Last-Event-ID"),
    ] {
        let request = preflight_to("/runs", APP, "POST", headers);
        let (response, calls) = call_answering(&layer, request, CREATED, JSON).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::NO_CONTENT, 0),
            "{headers:?}"
        );
        let answer = response.headers();
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            answer[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "last-event-id, content-type"
        );
    }
    // A GET stream's preflight still gets `GET`.
    let request = preflight_to("/events", APP, "GET", Some("last-event-id"));
    let (response, _) = call_answering(&layer, request, CREATED, JSON).await;
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET"
    );
}

#[tokio::test]
async fn preflights_beside_a_stream_route_go_on_to_the_apps_cors() {
    let layer = layer_with_a_post_stream();
    for (path, origin, method, headers) in [
        // Another path, a longer one, another method, a header not allowed.
        ("/api/items", APP, "POST", Some("content-type")),
        ("/runs/7", APP, "POST", Some("content-type")),
        ("/runs", APP, "PUT", Some("content-type")),
        ("/runs", APP, "post", Some("content-type")),
        ("/runs", APP, "POST", Some("content-type, x-csrf-token")),
        // An origin not allowed: its own CORS decides (and its stream
        // request gets 403).
        (
            "/runs",
            "https://evil.example",
            "POST",
            Some("content-type"),
        ),
    ] {
        let request = preflight_to(path, origin, method, headers);
        let (response, calls) = call_answering(&layer, request, CREATED, JSON).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::CREATED, 1),
            "{path} {origin} {method} {headers:?}"
        );
        assert!(!response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}

#[tokio::test]
async fn a_stream_routes_post_is_judged_by_its_accept_header() {
    let layer = layer_with_a_post_stream();
    let post = |origin: &str| {
        Request::post("/runs")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(())
            .unwrap()
    };
    let (response, calls) = call(&layer, post(APP)).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    let (response, calls) = call(&layer, post("https://evil.example")).await;
    assert_eq!((response.status(), calls), (StatusCode::FORBIDDEN, 0));
}

#[test]
fn stream_routes_that_cannot_be_are_build_errors() {
    for (path, method) in [
        ("runs", Method::POST),
        ("", Method::POST),
        ("/runs", Method::GET),
        ("/runs", Method::OPTIONS),
        ("/runs", Method::CONNECT),
        ("/runs", Method::TRACE),
    ] {
        let error = SseCorsLayer::builder()
            .allow_origin(APP)
            .stream_route(path, method.clone())
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), CorsErrorKind::InvalidRoute, "{path} {method}");
        assert!(error.to_string().contains("stream route"), "{error}");
    }
}

#[tokio::test]
async fn exposed_headers_are_named_on_streams_and_a_404_unlocks_nothing() {
    let exposing = SseCorsLayer::builder()
        .allow_origin(APP)
        .expose_header(http::HeaderName::from_static("x-run-id"))
        .build()
        .unwrap();
    // Asking for a stream must not unlock a JSON route's 404 (its body can
    // say which records exist for the user).
    let (gone, _) = call_answering(&exposing, from(APP), StatusCode::NOT_FOUND, JSON).await;
    assert!(!gone
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // A stream names the headers the page may read.
    let (stream, _) = call(&exposing, from(APP)).await;
    assert_eq!(
        stream.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
        "x-run-id"
    );
    // Without `expose_header`, none.
    let (stream, _) = call(&layer(), from(APP)).await;
    assert!(!stream
        .headers()
        .contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
}

#[tokio::test]
async fn a_declared_stream_route_is_judged_whatever_its_accept_says() {
    let layer = layer_with_a_post_stream();
    // A form POST or a no-cors fetch from another site: no stream `Accept`,
    // yet it would start the job with the user's cookies.
    for accept in [
        None,
        Some("*/*"),
        Some("text/html"),
        Some("text/event-stream;q=0"),
    ] {
        let mut request = Request::post("/runs").header(header::ORIGIN, "https://evil.example");
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let (response, calls) = call(&layer, request.body(()).unwrap()).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::FORBIDDEN, 0),
            "{accept:?}"
        );
    }
    // The same from the allowed origin reaches the handler.
    let request = Request::post("/runs")
        .header(header::ORIGIN, APP)
        .body(())
        .unwrap();
    let (response, calls) = call(&layer, request).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
    // Another method or path is not the route's.
    let other = Request::post("/api/items")
        .header(header::ORIGIN, "https://evil.example")
        .body(())
        .unwrap();
    assert_eq!(call(&layer, other).await.1, 1);
}

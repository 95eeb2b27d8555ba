//! The whole `SseLayer`, CORS origins given, on a whole axum router beside
//! JSON routes and tower-http's `CorsLayer` for the app's own CORS, over
//! real HTTP/1.1 and HTTP/2 connections: each CORS layer does its own job.

mod common;

use std::time::Duration;

use axum::{
    routing::{get, post},
    Json, Router,
};
use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tower_http::cors::CorsLayer;
use tower_sse::{Event, EventStream, SseCorsLayer, SseLayer};

const APP: &str = "http://localhost:5173";
const EVIL: &str = "http://evil.example";

fn router() -> Router {
    let events = || async {
        let events = stream::iter(["one", "two"]).map(|text| Event::new().data(text));
        EventStream::new(events).into_http_response()
    };
    // The app's own CORS: JSON routes, no credentials.
    let app_cors = CorsLayer::new()
        .allow_origin([HeaderValue::from_static(APP)])
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE]);
    let sse = SseLayer::new().cors(SseCorsLayer::builder().allow_origin(APP).build().unwrap());
    Router::new()
        .route("/events", get(events))
        .route(
            "/api/items",
            post(|| async { (StatusCode::CREATED, Json(serde_json::json!({"id": 1}))) })
                .get(|| async { Json(serde_json::json!([1, 2])) }),
        )
        .layer(app_cors)
        .layer(sse)
}

async fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    request: http::request::Builder,
) -> Response<Incoming> {
    let request = request.body(Empty::new()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("answered within 10 s")
        .expect("the request succeeded")
}

async fn body_text(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn each_cors_layer_does_its_own_job(client: Client<HttpConnector, Empty<Bytes>>) {
    let server = common::serve_service(router()).await;
    let url = |path: &str| format!("http://{}{path}", server.addr);

    // A preflight for POST: tower-http's answers it, ours lets it through.
    let response = send(
        &client,
        Request::options(url("/api/items"))
            .header(header::ORIGIN, APP)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type"),
    )
    .await;
    assert!(response.status().is_success(), "{}", response.status());
    let methods = response.headers()[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

    // The JSON POST: the app's CORS headers only (no credentials), the
    // handler's status and body.
    let response = send(
        &client,
        Request::post(url("/api/items")).header(header::ORIGIN, APP),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    assert_eq!(body_text(response).await, r#"{"id":1}"#);

    // A JSON GET from a foreign origin reaches the handler: the app's CORS
    // gives it no headers, and ours does not judge it.
    let response = send(
        &client,
        Request::get(url("/api/items")).header(header::ORIGIN, EVIL),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert_eq!(body_text(response).await, "[1,2]");

    // The event stream's preflight (a reconnect sends Last-Event-ID): ours.
    let response = send(
        &client,
        Request::options(url("/events"))
            .header(header::ORIGIN, APP)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "last-event-id"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "last-event-id"
    );
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );

    // The event stream itself, as EventSource asks for it: ours, with
    // credentials, and every event.
    let response = send(
        &client,
        Request::get(url("/events"))
            .header(header::ORIGIN, APP)
            .header(header::ACCEPT, "text/event-stream"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let data: Vec<String> = common::parse_events(response)
        .map(|event| event.data)
        .collect()
        .await;
    assert_eq!(data, ["one", "two"]);

    // A foreign origin asking for the stream: 403.
    let response = send(
        &client,
        Request::get(url("/events"))
            .header(header::ORIGIN, EVIL)
            .header(header::ACCEPT, "text/event-stream"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn each_cors_layer_does_its_own_job_over_http1() {
    each_cors_layer_does_its_own_job(common::client()).await;
}

#[tokio::test]
async fn each_cors_layer_does_its_own_job_over_http2() {
    each_cors_layer_does_its_own_job(common::h2c_client()).await;
}

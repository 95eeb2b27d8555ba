//! SseHeadersLayer and NoBufferingLayer on real hyper connections, HTTP/1.1
//! and HTTP/2 (h2c, prior knowledge).

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use futures_util::{stream, StreamExt};
use http::{HeaderMap, Request, Response, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_sse::{Event, EventStream, NoBufferingLayer, SseHeadersLayer};

/// Serves two events through both layers, recording the response headers as
/// the layers left them (before hyper writes or strips anything).
async fn server() -> (common::TestServer, Arc<Mutex<Vec<HeaderMap>>>) {
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let record = recorded.clone();
    let service = ServiceBuilder::new()
        .map_response(move |response: Response<_>| {
            record.lock().unwrap().push(response.headers().clone());
            response
        })
        .layer(SseHeadersLayer::new())
        .layer(NoBufferingLayer::new())
        .service_fn(|_request: Request<Incoming>| async {
            let events = stream::iter(["one", "two"].map(|text| Event::new().data(text)));
            Ok::<_, Infallible>(EventStream::new(events).into_http_response())
        });
    (common::serve_service(service).await, recorded)
}

fn assert_sse_headers(headers: &HeaderMap) {
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(!headers.contains_key("content-length"));
}

async fn read_events(response: Response<Incoming>) -> Vec<String> {
    common::parse_events(response)
        .map(|event| event.data)
        .collect()
        .await
}

#[tokio::test]
async fn http1_stream_gets_no_connection_header_and_stays_open() {
    let (server, recorded) = server().await;
    let client = common::client();
    for _ in 0..2 {
        let request = Request::get(format!("http://{}/events", server.addr))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_11);
        assert_sse_headers(response.headers());
        assert!(!response.headers().contains_key("connection"));
        assert_eq!(read_events(response).await, ["one", "two"]);
    }
    assert!(!recorded.lock().unwrap()[0].contains_key("connection"));
}

#[tokio::test]
async fn http2_stream_never_gets_a_connection_header() {
    let (server, recorded) = server().await;
    let request = Request::get(format!("http://{}/events", server.addr))
        .body(Empty::new())
        .unwrap();
    let response = common::h2c_client().request(request).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_sse_headers(response.headers());
    assert!(!response.headers().contains_key("connection"));
    // What the layer produced, before hyper could strip anything.
    let produced = recorded.lock().unwrap()[0].clone();
    assert_sse_headers(&produced);
    assert!(!produced.contains_key("connection"));
    assert_eq!(read_events(response).await, ["one", "two"]);
}

#[tokio::test]
async fn both_layers_give_the_same_headers_in_either_order() {
    use tower::ServiceExt;
    let handler = tower::service_fn(|_request: Request<()>| async {
        let events = stream::iter([Event::new().data("x")]);
        Ok::<_, Infallible>(EventStream::new(events).into_http_response())
    });
    let headers_outside = ServiceBuilder::new()
        .layer(SseHeadersLayer::new())
        .layer(NoBufferingLayer::new())
        .service(handler)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    let headers_inside = ServiceBuilder::new()
        .layer(NoBufferingLayer::new())
        .layer(SseHeadersLayer::new())
        .service(handler)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_sse_headers(headers_outside.headers());
    assert_eq!(headers_outside.headers(), headers_inside.headers());
}

/// Sends `request` as raw bytes and returns the response's head as written
/// on the wire (lowercased), reading until the connection closes.
async fn raw_head(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_end(&mut response),
    )
    .await
    .expect("the server closes the connection after the stream")
    .unwrap();
    let response = String::from_utf8_lossy(&response).to_lowercase();
    let head = response.split("\r\n\r\n").next().unwrap().to_owned();
    assert!(
        head.starts_with("http/1.") && head[8..].starts_with(" 200"),
        "{head}"
    );
    head
}

fn connection_headers(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|line| line.strip_prefix("connection:"))
        .map(str::trim)
        .collect()
}

#[tokio::test]
async fn no_keep_alive_on_the_wire_for_http10_or_a_request_that_asks_to_close() {
    let (server, _) = server().await;
    let head = raw_head(server.addr, "GET /events HTTP/1.0\r\n\r\n").await;
    assert!(!head.contains("keep-alive"), "{head}");
    let head = raw_head(
        server.addr,
        "GET /events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(connection_headers(&head), ["close"], "{head}");
}

/// hyper adds `Connection: close` when it will close (keep-alive off, or a
/// graceful shutdown); the layer adds nothing that could contradict it.
#[tokio::test]
async fn a_server_that_closes_says_only_close() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(SseHeadersLayer::new())
        .service_fn(|_request: Request<Incoming>| async {
            let events = stream::iter(["one"].map(|text| Event::new().data(text)));
            Ok::<_, Infallible>(EventStream::new(events).into_http_response())
        });
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(
                hyper_util::rt::TokioIo::new(socket),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .await;
    });
    let head = raw_head(addr, "GET /events HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(connection_headers(&head), ["close"], "{head}");
    server.abort();
}

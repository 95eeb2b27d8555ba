//! The framework examples, served for real and read by an independent
//! parser.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod axum_example;

#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod hyper_example;

#[allow(dead_code)]
#[path = "../examples/tonic.rs"]
mod tonic_example;

mod common;

use std::{net::SocketAddr, time::Duration};

use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

const PERIOD: Duration = Duration::from_millis(20);
const GRACE: Duration = Duration::from_secs(5);

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn assert_sse_headers(response: &http::Response<hyper::body::Incoming>) {
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
}

async fn stop(stop: oneshot::Sender<()>, server: JoinHandle<std::io::Result<()>>) {
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("the server stopped within 1 s, streams open or not")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn axum_example_streams_both_kinds_and_leaves_json_alone() {
    let (listener, addr) = listener().await;
    let (stop_tx, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(axum_example::serve(listener, PERIOD, GRACE, async {
        let _ = stopped.await;
    }));

    let response = common::get(addr, "/events").await;
    assert_sse_headers(&response);
    let ticks: Vec<_> = common::parse_events(response).take(3).collect().await;
    let ids: Vec<_> = ticks.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert!(ticks.iter().all(|event| event.event == "tick"));

    let response = common::get(addr, "/axum-events").await;
    assert_sse_headers(&response);
    let ticks: Vec<_> = common::parse_events(response).take(2).collect().await;
    assert_eq!(ticks[0].event, "axum-tick");
    assert_eq!(ticks[1].data, "2");

    let response = common::get(addr, "/api/status").await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(!response.headers().contains_key("x-accel-buffering"));
    assert!(!response.headers().contains_key("cache-control"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["streams_served"], 1);

    // With a stream open, shutdown still completes at once.
    let open = common::get(addr, "/events").await;
    stop(stop_tx, server).await;
    drop(open);
}

#[tokio::test]
async fn hyper_example_streams_counts_behind_the_layers() {
    let (listener, addr) = listener().await;
    let (stop_tx, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(hyper_example::serve(listener, PERIOD, GRACE, async {
        let _ = stopped.await;
    }));
    let response = common::get(addr, "/events").await;
    assert_sse_headers(&response);
    let counts: Vec<_> = common::parse_events(response).take(3).collect().await;
    let data: Vec<_> = counts.iter().map(|event| event.data.as_str()).collect();
    assert_eq!(data, ["1", "2", "3"]);
    assert_eq!(common::get(addr, "/nope").await.status(), 404);

    let open = common::get(addr, "/events").await;
    stop(stop_tx, server).await;
    drop(open);
}

#[tokio::test]
async fn tonic_example_answers_grpc_untouched_and_streams_on_the_same_port() {
    use tonic_example::{HelloReply, HelloRequest, SAY_HELLO};

    let (listener, addr) = listener().await;
    let (stop_tx, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tonic_example::serve(listener, PERIOD, GRACE, async {
        let _ = stopped.await;
    }));

    // gRPC through the layered server, with tonic's own client.
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let reply: tonic::Response<HelloReply> = grpc
        .unary(
            tonic::Request::new(HelloRequest {
                name: "tower-sse".to_owned(),
            }),
            http::uri::PathAndQuery::from_static(SAY_HELLO),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap();
    let metadata = reply.metadata().clone().into_headers();
    assert_eq!(reply.into_inner().message, "Hello, tower-sse!");
    assert_eq!(metadata["content-type"], "application/grpc");
    for added in [
        "cache-control",
        "x-accel-buffering",
        "connection",
        "access-control-allow-origin",
    ] {
        assert!(!metadata.contains_key(added), "{added} on a gRPC response");
    }

    // The event stream, over HTTP/1.1, on the same port.
    let response = common::get(addr, "/events").await;
    assert_sse_headers(&response);
    let ticks: Vec<_> = common::parse_events(response).take(2).collect().await;
    assert_eq!(ticks[1].data, "2");

    let open = common::get(addr, "/events").await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("tonic stopped within 2 s with a stream open")
        .unwrap()
        .unwrap();
    drop(open);
}

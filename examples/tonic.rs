//! tower-sse with tonic 0.14: a gRPC service and an event stream on the same
//! port, with `SseLayer` applied to the whole server by
//! `Server::builder().layer(..)`. gRPC responses pass through untouched.
//!
//! Run: `cargo run --example tonic` (or `-- 127.0.0.1:8080`), then
//! `curl -N -i http://127.0.0.1:3003/events` for the stream (HTTP/1.1,
//! thanks to `accept_http1(true)`), and call `demo.Greeter/SayHello` with
//! any gRPC client.
//!
//! The gRPC service is written out by hand below, as `tonic-build` would
//! generate it from this proto, so that building the example needs no
//! `protoc`:
//!
//! ```proto
//! syntax = "proto3";
//! package demo;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{routing::get, Extension};
use futures_util::stream;
use tokio::net::TcpListener;
use tonic::{
    server::{Grpc, NamedService, UnaryService},
    service::Routes,
    transport::{server::TcpIncoming, Server},
};
use tonic_prost::ProstCodec;
use tower_sse::{CloseHandle, Event, EventStream, EventType, Shutdown, SseLayer};

/// `demo.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `demo.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The path of the one method.
pub const SAY_HELLO: &str = "/demo.Greeter/SayHello";

/// The `demo.Greeter` service.
#[derive(Clone, Default)]
pub struct Greeter;

impl NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = std::future::Ready<Result<tonic::Response<HelloReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        let name = request.into_inner().name;
        std::future::ready(Ok(tonic::Response::new(HelloReply {
            message: format!("Hello, {name}!"),
        })))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Greeter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == SAY_HELLO {
            Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.unary(SayHello, request).await)
            })
        } else {
            Box::pin(async move { Ok(tonic::Status::unimplemented("").into_http()) })
        }
    }
}

#[allow(dead_code)] // the example tests include this file and call `serve`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3003".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{}/events and gRPC",
        listener.local_addr()?
    );
    serve(
        listener,
        Duration::from_secs(1),
        Duration::from_secs(5),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await
}

/// Serves gRPC and `/events` on `listener` until `signal`, then ends open
/// streams so that tonic's graceful shutdown completes; `grace` after the
/// trigger (this signal's, or anyone's) it stops waiting for connections
/// whose clients stopped reading.
pub async fn serve(
    listener: TcpListener,
    period: Duration,
    grace: Duration,
    signal: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    // The event stream is an axum route, added through tonic's axum interop.
    let events = axum::Router::new().route(
        "/events",
        get(
            move |Extension(handle): Extension<CloseHandle>| async move {
                let ticks = stream::unfold(1u64, move |n| async move {
                    tokio::time::sleep(period).await;
                    let event = Event::new()
                        .event_type(EventType::from_static("tick"))
                        .id_number(n)
                        .data(n.to_string());
                    Some((event, n + 1))
                });
                // The handle is there for gRPC calls too; here it only logs.
                tokio::spawn(async move { println!("/events closed: {}", handle.closed().await) });
                EventStream::new(ticks).into_http_response()
            },
        ),
    );
    let routes = Routes::from(events).add_service(Greeter);
    let server = Server::builder()
        .accept_http1(true)
        .layer(SseLayer::new().shutdown(&shutdown))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
            signal.await;
            trigger.trigger();
        });
    tokio::select! {
        result = server => result?,
        () = shutdown.deadline(grace) => println!("connections still open after {grace:?}: dropped"),
    }
    Ok(())
}

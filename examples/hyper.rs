//! tower-sse with plain hyper 1 and hyper-util, no framework: a `service_fn`
//! wrapped with `ServiceBuilder::new().sse()`.
//!
//! Run: `cargo run --example hyper` (or `-- 127.0.0.1:8080`), then
//! `curl -N -i http://127.0.0.1:3002/events`: a `count` event every
//! second, with the SSE headers. Ctrl-C ends the stream with a final
//! `retry:` frame and stops the server.

use std::{convert::Infallible, future::Future, pin::pin, time::Duration};

use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};
use tower::ServiceBuilder;
use tower_sse::{Event, EventStream, EventType, ServiceBuilderExt, Shutdown, SseLayer};

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[allow(dead_code)] // the example tests include this file and call `serve`
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3002".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}/events", listener.local_addr()?);
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

async fn handle(
    request: Request<Incoming>,
    period: Duration,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() != "/events" {
        let mut response =
            Response::new(Full::new(Bytes::from_static(b"try /events\n")).boxed_unsync());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    let counts = stream::unfold(1u64, move |n| async move {
        tokio::time::sleep(period).await;
        let event = Event::new()
            .event_type(EventType::from_static("count"))
            .id_number(n)
            .data(n.to_string());
        Some((event, n + 1))
    });
    Ok(EventStream::new(counts)
        .into_http_response()
        .map(|body| body.boxed_unsync()))
}

/// Serves until `signal`, then ends open streams and waits for their
/// connections to close, at most `grace`.
pub async fn serve(
    listener: TcpListener,
    period: Duration,
    grace: Duration,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shutdown = Shutdown::new();
    let service = ServiceBuilder::new()
        .sse_with(SseLayer::new().shutdown(&shutdown))
        .service_fn(move |request| handle(request, period));
    serve_with_grace(listener, service, &shutdown, grace, signal).await
}

/// hyper's HTTP/1 write buffer limit, and its HTTP/2 send buffer limit per
/// stream.
const MAX_BUF_SIZE: usize = 32 * 1024;

/// The most concurrent streams one HTTP/2 connection may open (hyper's
/// default is 200); each may hold `MAX_BUF_SIZE` for a client that stops
/// reading.
const MAX_STREAMS: u32 = 100;

/// The server loop: serves `service` on `listener` until `signal`, then
/// triggers `shutdown` (every event stream writes its final frame and ends)
/// and waits for the connections to close, at most `grace`: after that it
/// drops the connections whose clients stopped reading, so it always
/// returns.
pub async fn serve_with_grace<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: &Shutdown,
    grace: Duration,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    // The connections' tasks, so that the stragglers can be dropped.
    let mut connections = JoinSet::new();
    let mut signal = pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let socket = match accepted {
                    Ok((socket, _)) => socket,
                    Err(error) => {
                        // Out of file descriptors, say: keep serving the
                        // open connections, and try again in a moment.
                        eprintln!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // What hyper holds for a client that stops reading: 32 KiB
                // instead of about 400 KiB (BENCHMARKS.md: 49 KB per
                // stalled stream instead of 117 KB, same CPU per event).
                builder.http1().max_buf_size(MAX_BUF_SIZE);
                // The same bound per HTTP/2 stream: hyper's default send
                // buffer is about 400 KiB per stream, and a connection may
                // hold 200 streams.
                builder
                    .http2()
                    .max_send_buf_size(MAX_BUF_SIZE)
                    .max_concurrent_streams(MAX_STREAMS);
                let connection = builder
                    .serve_connection(TokioIo::new(socket), TowerToHyperService::new(service.clone()))
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    let _ = connection.await;
                });
            }
            Some(_) = connections.join_next() => {} // reap finished connections
            () = &mut signal => break,
        }
    }
    drop(listener);
    // Every stream writes its final frame and ends; connections close once
    // their clients have read it. A client that stopped reading never does:
    // give up on it after `grace`.
    shutdown.trigger();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = shutdown.deadline(grace) => {
            while connections.try_join_next().is_some() {}
            println!("{} connections still open after {grace:?}: dropped", connections.len());
        }
    }
    connections.shutdown().await;
    Ok(())
}

//! The tower-sse demo: a hyper server that streams a `tick` event every
//! second at `GET /events`, with the close, SSE headers, anti-buffering and
//! keep-alive layers.
//!
//! Run it with `cargo run --example demo` (or `-- --addr 127.0.0.1:8080`),
//! then open http://127.0.0.1:3000/events in a browser, or
//! `curl -N http://127.0.0.1:3000/events`. Reconnect with a `Last-Event-ID`
//! header (`curl -N -H 'Last-Event-ID: 41' ...`) and the count resumes after
//! that id. Ctrl-C or SIGTERM ends every open stream (each gets a final
//! `retry:` frame) and stops the server. The log shows why each stream
//! closed: `client_gone` when you close the tab or curl, `shutdown` on
//! Ctrl-C.
//!
//! Behind nginx, the stream needs no extra nginx configuration: the
//! response carries `X-Accel-Buffering: no` (from `NoBufferingLayer`), which
//! turns nginx's proxy buffering off for it alone.

use std::{
    convert::Infallible, future::Future, net::SocketAddr, pin::pin, process::ExitCode,
    time::Duration,
};

use bytes::Bytes;
use futures_util::stream;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_sse::{
    CloseLayer, Event, EventStream, KeepAliveLayer, LastEventId, NoBufferingLayer, Shutdown,
    SseHeadersLayer,
};

const DEFAULT_ADDR: &str = "127.0.0.1:3000";

type DemoBody = UnsyncBoxBody<Bytes, Infallible>;

#[allow(dead_code)] // the integration test includes this file and calls `serve`
fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("demo: {message}\nusage: demo [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on http://{}/events", listener.local_addr()?);
        serve(listener, Duration::from_secs(1), shutdown_signal()).await
    });
    match result {
        Ok(()) => {
            println!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo: {addr}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut addr = DEFAULT_ADDR.to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    addr.parse()
        .map_err(|_| format!("`{addr}` is not an address like 127.0.0.1:3000"))
}

/// Serves the demo on `listener` until `shutdown` resolves, then ends every
/// open stream and waits for the connections to close.
pub async fn serve(
    listener: TcpListener,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let end_streams = Shutdown::new();
    let close = CloseLayer::new().shutdown(&end_streams).on_close(|info| {
        println!(
            "{} {} closed: {} after {:.1?}, {} frames, {} bytes",
            info.method,
            info.uri.path(),
            info.reason,
            info.duration,
            info.frames,
            info.bytes
        );
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let service = ServiceBuilder::new()
                    .layer(close.clone())
                    .layer(SseHeadersLayer::new())
                    .layer(NoBufferingLayer::new())
                    // A comment after 15 s of silence keeps proxies from
                    // cutting the stream.
                    .layer(KeepAliveLayer::new())
                    .service_fn(move |request| {
                        let response = route(request, period);
                        async move { Ok::<_, Infallible>(response) }
                    });
                let service = hyper_util::service::TowerToHyperService::new(service);
                let connection = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(socket), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    // Open event streams never end by themselves: end them, or the graceful
    // shutdown below would wait forever.
    end_streams.trigger();
    graceful.shutdown().await;
    Ok(())
}

fn route(request: Request<Incoming>, period: Duration) -> Response<DemoBody> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/events") => {
            let after = LastEventId::from_request(&request)
                .and_then(|id| id.as_str().parse::<u64>().ok())
                .unwrap_or(0);
            let response = EventStream::new(ticks(after + 1, period)).into_response();
            response.map(|body| body.boxed_unsync())
        }
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "tower-sse demo: the event stream is at /events\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the event stream is at /events\n",
        ),
    }
}

/// One `tick` event per `period`, numbered from `first`. The stream lives in
/// the response body: when the stream ends (client gone, shutdown), the body
/// and this stream are dropped, and ticking stops.
fn ticks(first: u64, period: Duration) -> impl futures_util::Stream<Item = Event> {
    stream::unfold(first, move |n| async move {
        tokio::time::sleep(period).await;
        let event = Event::new()
            .event("tick")
            .ok()?
            .id(n.to_string())
            .ok()?
            .data(format!("tick {n}"));
        Some((event, n + 1))
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<DemoBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

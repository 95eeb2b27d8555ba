//! tower-sse with axum 0.8: one `.layer(SseLayer::new())` on the router.
//!
//! Run: `cargo run --example axum --features axum` (or `-- 127.0.0.1:8080`), then open
//! http://127.0.0.1:3001/ in a browser, or:
//!
//! - `curl -N -i http://127.0.0.1:3001/events`: our `EventStream`, fed by a
//!   task that stops when the close handle says the stream ended;
//! - `curl -N -i http://127.0.0.1:3001/axum-events`: axum's own `Sse`, with
//!   the same headers, keep-alive and shutdown from the layer;
//! - `curl -i http://127.0.0.1:3001/api/status`: JSON, untouched by the
//!   layer.
//!
//! Ctrl-C ends open streams with a final `retry:` frame and the server
//! stops: axum's `with_graceful_shutdown` no longer waits forever.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::State,
    response::{sse::Event as AxumEvent, Html, IntoResponse, Sse},
    routing::get,
    Json, Router,
};
use futures_util::{stream, Stream, StreamExt};
use tokio::{net::TcpListener, sync::mpsc};
use tower_sse::{CloseHandle, Event, EventStream, EventType, Shutdown, SseLayer};

#[allow(dead_code)] // the example tests include this file and call `app`
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
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

/// Serves the app until `signal`, then ends open streams and returns once
/// axum's graceful shutdown completes, or `grace` after the signal.
pub async fn serve(
    listener: TcpListener,
    period: Duration,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = Shutdown::new();
    serve_with_grace(listener, app(&shutdown, period), &shutdown, grace, signal).await
}

/// The server loop: serves `app` until `signal`, triggers `shutdown` (every
/// event stream writes its final frame and ends) and returns once axum's
/// graceful shutdown completes, or `grace` after the signal: a client that
/// stopped reading keeps its connection open, and axum would wait for it
/// forever. The connections still open then close when the runtime ends
/// (when `main` returns). `shutdown` triggered from elsewhere starts the
/// grace period too: whoever triggers it is shutting the server down.
pub async fn serve_with_grace(
    listener: TcpListener,
    app: Router,
    shutdown: &Shutdown,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let trigger = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        signal.await;
        trigger.trigger();
    });
    tokio::select! {
        result = server => result,
        () = shutdown.deadline(grace) => {
            println!("connections still open after {grace:?}: dropped");
            Ok(())
        }
    }
}

#[derive(Clone)]
struct AppState {
    period: Duration,
    served: Arc<AtomicU64>,
}

/// The router: two event streams, a JSON route and a page, behind the layer.
pub fn app(shutdown: &Shutdown, period: Duration) -> Router {
    let state = AppState {
        period,
        served: Arc::default(),
    };
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/axum-events", get(axum_events))
        .route("/api/status", get(status))
        .with_state(state)
        .layer(SseLayer::new().shutdown(shutdown))
}

/// Events from a producer task, which stops when the stream ends.
/// `CloseHandle` is a handler argument with the `axum` feature (without
/// it, `Extension<CloseHandle>` reads the same handle).
async fn events(State(state): State<AppState>, handle: CloseHandle) -> impl IntoResponse {
    state.served.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            n += 1;
            let event = Event::new()
                .event_type(EventType::from_static("tick"))
                .id_number(n)
                .data(format!("tick {n}"));
            tokio::select! {
                reason = handle.closed() => {
                    println!("/events closed: {reason}");
                    return;
                }
                sent = tx.send(event) => if sent.is_err() { return },
            }
            tokio::time::sleep(state.period).await;
        }
    });
    // axum's `serve` keeps hyper's default buffers (a client that stops
    // reading could hold about 117 KB); the bound keeps it to about 45 KB,
    // and the producer's `send` waits while the client does not read.
    EventStream::new(Receiver(rx))
        .max_unwritten(16 * 1024)
        .into_http_response()
}

/// axum's own `Sse` (without axum's keep-alive: the layer adds it).
async fn axum_events(State(state): State<AppState>) -> impl IntoResponse {
    let period = state.period;
    let ticks = stream::iter(1u64..).then(move |n| async move {
        tokio::time::sleep(period).await;
        Ok::<_, Infallible>(AxumEvent::default().event("axum-tick").data(n.to_string()))
    });
    Sse::new(ticks)
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "streams_served": state.served.load(Ordering::Relaxed) }))
}

/// An `mpsc::Receiver` as a `Stream`.
struct Receiver(mpsc::Receiver<Event>);

impl Stream for Receiver {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }
}

const PAGE: &str = r#"<!doctype html>
<title>tower-sse with axum</title>
<h1>tower-sse with axum</h1>
<p>Events from <code>/events</code>:</p>
<ul id="log"></ul>
<script>
  const log = document.getElementById("log");
  const source = new EventSource("/events");
  source.addEventListener("tick", (event) => {
    const item = document.createElement("li");
    item.textContent = `${event.type} #${event.lastEventId}: ${event.data}`;
    log.prepend(item);
  });
</script>
"#;

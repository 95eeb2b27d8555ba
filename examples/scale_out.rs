//! Many instances, one stream: the hub on Redis Streams, behind a load
//! balancer.
//!
//! Start Redis, then one command per instance (each on its own port, all on
//! the same Redis):
//!
//! ```text
//! cargo run --example scale_out --features redis,axum -- --port 3001 --redis redis://127.0.0.1:6379
//! cargo run --example scale_out --features redis,axum -- --port 3002 --redis redis://127.0.0.1:6379
//! ```
//!
//! Then read from one instance and publish on the other:
//!
//! ```text
//! curl -N -i http://127.0.0.1:3001/events/news
//! curl -X POST --data 'hello' http://127.0.0.1:3002/publish/news
//! ```
//!
//! Every event has its Redis stream id, so a reconnect with
//! `Last-Event-ID` resumes exactly on either instance (put both behind
//! nginx, as docs/scaling-out.md shows). Responses carry
//! `X-Instance`: which instance served them. Ctrl-C (or SIGTERM) ends open
//! streams with a jittered `retry:` so clients move to the other instance.
//!
//! `GET /health` says the process answers (a liveness probe); `GET /ready`
//! says whether the hub can serve (a readiness probe): `200` while it reads
//! from Redis and Redis refuses none of its commands, else `503` with why,
//! in Redis's words (`unhealthy: the hub's Redis refuses its commands until
//! a setting changes: Redis refused the URL's credentials …`).

use std::{net::SocketAddr, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use tokio::net::TcpListener;
use tower_sse::{
    hub::{Hub, HubErrorKind},
    Event, Shutdown, SseCorsLayer, SseLayer,
};

/// How the instance is started.
#[derive(Clone, Debug)]
pub struct Options {
    pub port: u16,
    pub redis: String,
    /// The page origin allowed to open streams with cookies (CORS).
    pub origin: String,
    /// How many events each topic keeps for resuming.
    pub history: usize,
}

impl Options {
    /// Reads `--port N --redis URL [--origin URL] [--history N]`.
    pub fn from_args(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = Self {
            port: 3001,
            redis: "redis://127.0.0.1:6379".into(),
            origin: "http://localhost:3000".into(),
            history: 1000,
        };
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--port" => options.port = value.parse().map_err(|_| "--port: a number")?,
                "--redis" => options.redis = value,
                "--origin" => options.origin = value,
                "--history" => {
                    options.history = value.parse().map_err(|_| "--history: a number")?;
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(options)
    }
}

#[allow(dead_code)] // the tests run this file's `serve` in a process of its own
#[tokio::main]
async fn main() {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!(
                "{error}\nusage: scale_out --port N --redis URL [--origin URL] [--history N]"
            );
            std::process::exit(2);
        }
    };
    if let Err(error) = serve(options, shutdown_signal()).await {
        eprintln!("{error}");
        std::process::exit(1);
    }
}

#[derive(Clone)]
struct App {
    hub: Hub,
    instance: HeaderValue,
}

/// Serves one instance until `signal`, then ends open streams (each writes
/// a jittered `retry:`) and returns within 5 seconds.
pub async fn serve(
    options: Options,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder()
        .history(options.history)
        .redis(&options.redis)
        .build()?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    let addr = listener.local_addr()?;
    let app = App {
        hub,
        instance: HeaderValue::from_str(&addr.port().to_string())?,
    };
    let shutdown = Shutdown::new();
    let cors = SseCorsLayer::builder()
        .allow_origins([options.origin.as_str()])
        .build()?;
    let router = Router::new()
        .route("/events/{topic}", get(events))
        .route("/publish/{topic}", post(publish))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(app)
        .layer(SseLayer::new().cors(cors).shutdown(&shutdown));
    println!("instance on http://{addr}/ with Redis at {}", options.redis);
    let trigger = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        signal.await;
        trigger.trigger();
    });
    tokio::select! {
        result = server => result?,
        () = shutdown.deadline(Duration::from_secs(5)) => {}
    }
    Ok(())
}

/// The topic's events, resumed after the browser's `Last-Event-ID` on
/// whichever instance it reached.
async fn events(State(app): State<App>, Path(topic): Path<String>, headers: HeaderMap) -> Response {
    let mut response = match app.hub.subscribe_from_headers(&topic, &headers).await {
        Ok(subscription) => subscription.into_response(),
        // Redis unreachable: a `retry:`, so the browser tries again (maybe
        // on another instance); never a status that stops EventSource.
        Err(error) => error.into_response(),
    };
    response.headers_mut().insert("x-instance", app.instance);
    response
}

/// Publishes the request body (text) as one event; answers with its id.
async fn publish(State(app): State<App>, Path(topic): Path<String>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body must be UTF-8 text\n").into_response();
    };
    match app.hub.publish(&topic, Event::new().data(text)).await {
        Ok(id) => format!("{id}\n").into_response(),
        Err(error) if error.kind() == HubErrorKind::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response()
        }
        // Redis refuses the hub's commands (a wrong password, OOM): not an
        // outage that passes, but the server's own fault until fixed.
        Err(error) if error.kind() == HubErrorKind::Misconfigured => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

/// The readiness probe: `200` while the hub reads from Redis and Redis
/// refuses none of its commands, else `503`; the body says which, with what
/// Redis said (`/health` only says the process answers).
async fn ready(State(app): State<App>) -> Response {
    let health = app.hub.health();
    let status = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{health}\n")).into_response()
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

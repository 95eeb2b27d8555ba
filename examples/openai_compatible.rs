//! An OpenAI-compatible chat completions endpoint whose answers are
//! resumable runs: `POST /v1/chat/completions` with `"stream": true` starts
//! a run and streams it (`data: {json chunk}` events, `data: [DONE]` at the
//! end), through the whole `SseLayer`; the job outlives the connection, a
//! reload resumes it exactly, and it can be stopped from anywhere.
//!
//! The tokens come from a fake model: a fixed text, one word every few
//! milliseconds.
//!
//! ```text
//! cargo run --example openai_compatible --all-features -- --addr 127.0.0.1:3000
//! ```
//!
//! - `POST /v1/chat/completions`: `{"model": "..", "messages": [..],
//!   "stream": true}` answers with the run's stream, its id in the
//!   `X-Run-Id` header and in every chunk's `id`; without `"stream": true`,
//!   the whole completion as JSON (after the run finished).
//! - `GET /v1/runs/{id}`: resumes the run after `Last-Event-ID` (or the
//!   `last_event_id` query parameter, for `fetch`); `204` once everything
//!   was seen, `404` once the run is gone.
//! - `POST /v1/runs/{id}/stop`: stops it; the stream ends with `[DONE]`.
//!
//! Options: `--addr HOST:PORT` (port 0 picks one; the address is printed),
//! `--token-ms N` (default 20), `--text TEXT` (the fake model's answer),
//! `--origin URL` (a page origin allowed to call it with `fetch` and
//! cookies), `--redis URL` (the hub on Redis: every instance started with
//! the same URL serves every run, resumes it and stops it; see
//! `docs/runs.md`).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tower_sse::{
    close::CloseInfo,
    hub::{Hub, HubError, HubErrorKind, PublishError, Run, RunEnd, RunOutcome},
    CloseLayer, Event, Shutdown, SseCorsLayer, SseLayer,
};

/// The fake model's answer unless `--text` says otherwise.
const TEXT: &str = "Server-Sent Events carry a language model's answer token by token; \
                    a run keeps it resumable after a reload and stoppable from anywhere.";

/// How the server is started.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    pub token: Duration,
    pub text: String,
    pub origin: Option<String>,
    pub redis: Option<String>,
}

impl Options {
    /// Reads the options above.
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            token: Duration::from_millis(20),
            text: TEXT.to_owned(),
            origin: None,
            redis: None,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--addr" => options.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
                "--token-ms" => {
                    let ms: u64 = value()?.parse().map_err(|e| format!("--token-ms: {e}"))?;
                    options.token = Duration::from_millis(ms);
                }
                "--text" => options.text = value()?,
                "--origin" => options.origin = Some(value()?),
                "--redis" => options.redis = Some(value()?),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(options)
    }
}

#[tokio::main]
async fn main() {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!(
                "{error}\nusage: openai_compatible [--addr HOST:PORT] [--token-ms N] [--text TEXT] \
                 [--origin URL] [--redis URL]"
            );
            std::process::exit(2);
        }
    };
    if let Err(error) = serve(options).await {
        eprintln!("{error}");
        std::process::exit(1);
    }
}

#[derive(Clone)]
struct App {
    hub: Hub,
    token: Duration,
    text: Arc<str>,
}

/// Milliseconds since the Unix epoch, for the log lines tests read.
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// Serves until Ctrl-C or SIGTERM, then ends open streams and returns
/// within 5 seconds.
pub async fn serve(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let mut hub = Hub::builder();
    if let Some(redis) = &options.redis {
        hub = hub.redis(redis);
    }
    let app = App {
        hub: hub.build()?,
        token: options.token,
        text: options.text.into(),
    };
    let shutdown = Shutdown::new();
    // Every stream's end is logged with when it was seen, so that a test
    // can tell how soon a client that left was noticed.
    let close = CloseLayer::builder()
        .shutdown(&shutdown)
        .on_close(|info: &CloseInfo| {
            println!(
                "closed {} {} reason={} at_ms={}",
                info.method,
                info.uri.path(),
                info.reason,
                unix_ms()
            );
        })
        .build()?;
    let mut sse = SseLayer::new().close(close);
    if let Some(origin) = &options.origin {
        let cors = SseCorsLayer::builder()
            .allow_origin(origin)
            .allow_header(axum::http::header::CONTENT_TYPE)
            .allow_header(axum::http::header::AUTHORIZATION)
            .stream_route("/v1/chat/completions", Method::POST)
            .expose_header(axum::http::HeaderName::from_static("x-run-id"))
            .build()?;
        sse = sse.cors(cors);
    }
    let router = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/runs/{id}", get(resume))
        .route("/v1/runs/{id}/stop", post(stop))
        .with_state(app)
        .layer(sse);
    let listener = TcpListener::bind(options.addr).await?;
    println!("listening on http://{}/v1", listener.local_addr()?);
    let trigger = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        trigger.trigger();
    });
    tokio::select! {
        result = server => result?,
        () = shutdown.deadline(Duration::from_secs(5)) => {}
    }
    Ok(())
}

#[derive(Deserialize)]
struct Request {
    model: Option<String>,
    /// `null` and missing are `false`, as the OpenAI API reads them.
    stream: Option<bool>,
}

/// The longest model name echoed back: the name comes from the client and
/// is copied into every chunk a run keeps.
const MAX_MODEL_LEN: usize = 64;

/// Starts a run and answers with its stream (or, without `stream`, the
/// whole completion once the run finished).
async fn completions(State(app): State<App>, Json(request): Json<Request>) -> Response {
    let run = match app.hub.start_run().await {
        Ok(run) => run,
        Err(error) => return api_error(error),
    };
    let id = run.id().to_owned();
    let mut model = request.model.unwrap_or_else(|| "fake-model".into());
    if model.len() > MAX_MODEL_LEN {
        let mut end = MAX_MODEL_LEN;
        while !model.is_char_boundary(end) {
            end -= 1;
        }
        model.truncate(end);
    }
    println!("run {id} started at_ms={}", unix_ms());
    // Followed before the producer starts, from the first event (a new
    // run: the request's `Last-Event-ID` or query means nothing here).
    let follow = match app
        .hub
        .follow_run(&id, &HeaderMap::new(), &Uri::default())
        .await
    {
        Ok(follow) => follow,
        // Nobody could read it: dropped, the run ends as failed.
        Err(error) => return api_error(error),
    };
    tokio::spawn(produce(run, model.clone(), app.text.clone(), app.token));
    if request.stream != Some(true) {
        // The whole completion: read from the run, so that the job goes on
        // if this client leaves, and a stop gives what was made so far.
        let text = match collect(follow).await {
            Ok(text) => text,
            Err(message) => {
                let body = json!({"error": {"message": message, "type": "server_error"}});
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        };
        return Json(json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": created(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }],
        }))
        .into_response();
    }
    with_run_id(Ok(follow), &id)
}

/// The text of a run's chunks, read to its end.
/// `Err` with the message of an error chunk (a run that failed), or of a
/// run that ended without `[DONE]` (its producer gone).
async fn collect(mut subscription: tower_sse::hub::Subscription) -> Result<String, String> {
    use futures_util::StreamExt as _;
    let mut text = String::new();
    while let Some(event) = subscription.next().await {
        let event = String::from_utf8_lossy(event.as_bytes()).into_owned();
        for line in event.lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if let Ok(chunk) = serde_json::from_str::<serde_json::Value>(data) {
                if let Some(message) = chunk["error"]["message"].as_str() {
                    return Err(message.to_owned());
                }
                if chunk["outcome"] == "failed" {
                    return Err(chunk["reason"].as_str().unwrap_or("failed").to_owned());
                }
                if let Some(content) = chunk["choices"][0]["delta"]["content"].as_str() {
                    text.push_str(content);
                }
            }
        }
    }
    Ok(text)
}

/// Resumes a run after the client's last event id.
async fn resume(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    with_run_id(app.hub.follow_run(&id, &headers, &uri).await, &id)
}

/// Stops a run from any request (with `--redis`, on any instance).
async fn stop(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.hub.stop_run(&id).await {
        Ok(true) => {
            println!("run {id} stop requested at_ms={}", unix_ms());
            StatusCode::ACCEPTED.into_response()
        }
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => api_error(error),
    }
}

/// A hub error as an API client (not `EventSource`) reads it: `429` for a
/// hub full of runs, `404` for a run that is gone, `503` with
/// `Retry-After` when Redis cannot be reached (the OpenAI clients retry
/// it), an OpenAI-shaped JSON error body. `HubError::into_response`
/// answers a subscribe's way instead (a `200` stream with a `retry:`),
/// which only `EventSource` understands.
fn api_error(error: HubError) -> Response {
    let (status, retry_after) = match error.kind() {
        HubErrorKind::TooManyRuns => (StatusCode::TOO_MANY_REQUESTS, Some("30")),
        HubErrorKind::NoSuchRun => (StatusCode::NOT_FOUND, None),
        HubErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Some("5")),
        HubErrorKind::Misconfigured => (StatusCode::SERVICE_UNAVAILABLE, Some("30")),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    let body = json!({"error": {"message": error.to_string(), "type": "server_error"}});
    let mut response = (status, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static(seconds),
        );
    }
    response
}

fn with_run_id(
    follow: Result<tower_sse::hub::Subscription, tower_sse::hub::HubError>,
    id: &str,
) -> Response {
    let mut response = match follow {
        Ok(subscription) => subscription.into_response(),
        Err(error) => error.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-run-id", value);
    }
    response
}

fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The fake model: one chunk per word of `text`, every `token`, then the
/// last chunk and `[DONE]`; a stop ends it early, with `[DONE]` too.
async fn produce(run: Run, model: String, text: Arc<str>, token: Duration) {
    let id = format!("chatcmpl-{}", run.id());
    let created = created();
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
        .to_string()
    };
    // An event without an id is never refused for its id. With `--redis`,
    // a send fails when Redis is down: the run ends as failed rather than
    // go on with a hole in its text (a token that timed out may still have
    // been written: sending it again could write it twice). A send also
    // fails when the run ended without its producer (its lease lapsed):
    // `stopped` has resolved then, and the loop ends.
    let send = |data: String| run.send(Event::new().data(data));
    let failed = |error: PublishError| RunEnd::failed(format!("a token was not written: {error}"));
    let stopped = run.stopped();
    tokio::pin!(stopped);
    let mut words = text.split_inclusive(' ');
    let first = send(chunk(json!({"role": "assistant", "content": ""}), None)).await;
    let outcome = match first {
        Err(error) if error.kind() != HubErrorKind::NoSuchRun => failed(error),
        _ => loop {
            tokio::select! {
                () = &mut stopped => {
                    let _ = send(chunk(json!({}), Some("stop"))).await;
                    break RunEnd::stopped();
                }
                () = tokio::time::sleep(token) => {}
            }
            let (delta, last) = match words.next() {
                Some(word) => (json!({"content": word}), None),
                None => (json!({}), Some("stop")),
            };
            match send(chunk(delta, last)).await {
                Err(error) if error.kind() != HubErrorKind::NoSuchRun => break failed(error),
                _ if last.is_some() => break RunEnd::completed(),
                _ => {}
            }
        },
    };
    let said = match outcome.outcome() {
        RunOutcome::Stopped => "stopped",
        RunOutcome::Completed => "completed",
        RunOutcome::Failed(reason) => {
            // What the OpenAI clients read as an error (they raise it),
            // before `[DONE]`: a failed answer must not pass for a whole
            // one. Not written either if Redis is still down: the run then
            // ends as failed when its lease lapses (a `run-end` event).
            let error = json!({"error": {"message": reason, "type": "server_error"}});
            let _ = send(error.to_string()).await;
            "failed"
        }
        _ => "failed",
    };
    let id = run.id().to_owned();
    let _ = run.finish(outcome.event(Event::new().data("[DONE]"))).await;
    println!("run {id} {said} at_ms={}", unix_ms());
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

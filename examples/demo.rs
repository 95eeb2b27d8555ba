//! The tower-sse demo: a page on one origin streams events from another,
//! with a cookie, behind every layer.
//!
//! Run it with `cargo run --example demo`, then open http://127.0.0.1:3000/
//! (or http://localhost:3000/). The page serves from `--addr` (default
//! 127.0.0.1:3000); the stream comes from `--stream-addr` (default: the same
//! host, the next port), a second origin. Press "Log in" (as a user name of
//! your choice) to get a cookie on the stream's origin, then watch the stream carry it across origins
//! (`EventSource` with `withCredentials`). "Close from the page" closes the
//! stream from the browser; "Ask the server to end it" makes the server end
//! the stream and answer the browser's reconnect with 204, which stops it.
//! The buttons ask the stream's origin with `fetch` (`POST /break`, `POST
//! /end`, with the cookie): those routes have the app's own CORS, tower-http's
//! `CorsLayer`, beside `SseCorsLayer`, which answers for event streams only.
//! One `EventSource` carries several hub topics (feature `hub`,
//! `Hub::subscribe_set`): `ticks`, `notes`, and, once logged in as NAME, the
//! private topic `user:NAME`, asked for in its URL
//! (`/events?topic=ticks&topic=notes&topic=user:NAME`). The server checks
//! the set against the session (`TopicSet::check`): another user's topic is
//! refused with 403 before any stream opens. Each event's type is its
//! topic, and the page routes them with `addEventListener(topic, ..)`. The
//! form "Send" (`POST /send`, `to` and `text`) publishes a message to
//! `user:<to>`: only that user's pages get it. "Break the connection" makes
//! the server end the stream without 204, the browser reconnects by itself
//! with its `Last-Event-ID` (which holds every topic's position), and the
//! page shows, per topic, how it resumed and how many events were
//! replayed. With `--history N` smaller than the ticks missed during the
//! reconnect (`--history 2`), the page shows each topic's gap event
//! instead. The log here says why each stream closed. Ctrl-C or SIGTERM
//! ends every open stream (each gets a final `retry:` frame) and stops the
//! server.
//!
//! "Generate" starts a resumable run (feature `hub`): `POST /generate` on
//! the stream's origin writes a fixed text word by word and answers with
//! the run's stream, which the page reads with `fetch`. Reload the page
//! mid-run: it resumes with `GET /generate/{id}?last_event_id=...` and the
//! text goes on exactly where it was, no word twice, none missing. "Stop"
//! (`POST /generate/{id}/stop`) makes the server end the run as stopped.
//!
//! `/events` also answers on the page's own address, for `curl -N -i`.
//! Behind nginx no extra configuration is needed: every stream carries
//! `X-Accel-Buffering: no`, which turns nginx's proxy buffering off for it.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::pin,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinSet,
};
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::cors::CorsLayer;
use tower_sse::{
    hub::{Hub, HubError, Run, RunEnd, Start, Subscription, TopicSet},
    CloseLayer, Event, EventStream, EventType, LastEventId, Shutdown, SseCorsLayer, SseLayer,
};

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const COOKIE: &str = "demo_session";

/// The public topics: every page may read them.
const TICKS: &str = "ticks";
const NOTES: &str = "notes";

/// The most sessions the demo keeps (a login past it is refused).
const MAX_SESSIONS: usize = 10_000;

/// The longest message `POST /send` takes, in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// What "Generate" writes, word by word.
const TEXT: &str = "This answer is a run on the server, streamed into the page word by \
word with fetch. Reload the page while it is being written: the page asks for the \
run again with the id of the last word it kept, and the server sends exactly the \
words that came after it, none twice and none missing. Press Stop instead, and the \
server ends the run; every page that follows it sees the end.";

/// The first event of a run: JSON, `{"run": id}`. The page reads the id
/// from it, as `X-Run-Id` is not exposed to other origins.
const RUN_STARTED: EventType = EventType::from_static("run");

type DemoBody = UnsyncBoxBody<Bytes, Infallible>;

#[allow(dead_code)] // the integration test includes this file and calls `serve`
fn main() -> ExitCode {
    let (addr, stream_addr, history) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!(
                "demo: {message}\nusage: demo [--addr HOST:PORT] [--stream-addr HOST:PORT] [--history N]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        let page = TcpListener::bind(addr).await?;
        let stream = TcpListener::bind(stream_addr).await?;
        println!("page:   http://{}/", page.local_addr()?);
        println!("stream: http://{}/events", stream.local_addr()?);
        let options = Options {
            period: Duration::from_secs(1),
            history,
            text: TEXT.to_owned(),
            word_period: Duration::from_millis(50),
            checks: None,
            script: None,
        };
        serve(page, stream, options, shutdown_signal()).await
    });
    match result {
        Ok(()) => {
            println!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<(SocketAddr, SocketAddr, usize), String> {
    let parse = |text: &str| -> Result<SocketAddr, String> {
        text.parse()
            .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:3000"))
    };
    let mut addr = parse(DEFAULT_ADDR)?;
    let mut stream_addr = None;
    let mut history = 1000; // the hub's default
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--history" => {
                let text = args.next().ok_or("--history needs a number of events")?;
                history = text.parse().ok().filter(|&n| n > 0).ok_or(format!(
                    "--history: `{text}` is not a number of events (1 or more)"
                ))?;
            }
            "--addr" => addr = parse(&args.next().ok_or("--addr needs HOST:PORT")?)?,
            "--stream-addr" => {
                stream_addr = Some(parse(&args.next().ok_or("--stream-addr needs HOST:PORT")?)?);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let next_port = addr
        .port()
        .checked_add(1)
        .ok_or("--addr has the last port: give --stream-addr")?;
    Ok((
        addr,
        stream_addr.unwrap_or(SocketAddr::new(addr.ip(), next_port)),
        history,
    ))
}

/// How the demo runs.
pub struct Options {
    /// Time between ticks.
    pub period: Duration,
    /// Events the hub keeps per topic.
    pub history: usize,
    /// What "Generate" writes, one event per word (the space after a word
    /// goes with it, so the events joined are the text).
    pub text: String,
    /// Time between the words of a run.
    pub word_period: Duration,
    /// Where the page's self-checks (`/?check=...`) are sent, besides the
    /// log.
    pub checks: Option<mpsc::UnboundedSender<String>>,
    /// A script the page runs before its own (its test drives the page
    /// with one).
    pub script: Option<String>,
}

/// What the routes share.
struct Demo {
    page_port: u16,
    stream_port: u16,
    hub: Hub,
    text: Arc<str>,
    word_period: Duration,
    checks: Option<mpsc::UnboundedSender<String>>,
    script: Option<String>,
    next_stream: AtomicU64,
    /// Streams the server may be asked to end, by id.
    enders: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// Sessions whose stream the server ended: their reconnect gets 204.
    finished: Mutex<HashSet<String>>,
    /// Who each session cookie belongs to: session -> user name.
    sessions: Mutex<HashMap<String, String>>,
}

/// The address a request came from (put in its extensions when the
/// connection is accepted): the `client` key of a stream without a session.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

/// Serves the page on `page` and the stream on `stream` until `shutdown`
/// resolves, then ends every open stream and waits for the connections.
pub async fn serve(
    page: TcpListener,
    stream: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let page_addr = page.local_addr()?;
    let hub = Hub::builder()
        .history(options.history)
        .build()
        .map_err(std::io::Error::other)?;
    let ticker = tokio::spawn(tick(hub.clone(), options.period));
    let demo = Arc::new(Demo {
        page_port: page_addr.port(),
        stream_port: stream.local_addr()?.port(),
        hub,
        text: options.text.into(),
        word_period: options.word_period,
        checks: options.checks,
        script: options.script,
        next_stream: AtomicU64::new(1),
        enders: Mutex::default(),
        finished: Mutex::default(),
        sessions: Mutex::default(),
    });
    // The page's origin as given by --addr, and the same with `localhost`:
    // page and stream must share the host name, or the browser treats the
    // cookie as a third-party cookie and drops it.
    let page_origins = [
        format!("http://{page_addr}"),
        format!("http://localhost:{}", page_addr.port()),
    ];
    // `POST /generate` answers with an event stream read by `fetch`. This
    // page's request needs no preflight (no body, and `Accept` is a
    // safelisted header); a page that sends its prompt as JSON does, and
    // these two lines answer it.
    let cors = SseCorsLayer::builder()
        .allow_origins(page_origins.iter().map(String::as_str))
        .stream_route("/generate", Method::POST)
        .allow_header(header::CONTENT_TYPE)
        .build()
        .map_err(std::io::Error::other)?;
    // The app's own CORS for the page's other calls to this origin: its
    // buttons POST to /break, /end, /send and /generate/{id}/stop, and it
    // asks who is logged in (GET /session), with the cookie. `SseCorsLayer` leaves every request that is not for an event
    // stream to it. The run routes go through it too: `SseCorsLayer`
    // marks their event streams (and `204`) for the page, and this layer
    // lets the page read their other answers (`404` for a run that is
    // gone), which `SseCorsLayer` leaves alone.
    let app_cors = CorsLayer::new()
        .allow_origin(
            page_origins
                .iter()
                .map(|origin| HeaderValue::from_str(origin))
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)?,
        )
        .allow_credentials(true)
        .allow_methods([Method::POST]);
    let controls = ServiceBuilder::new().layer(app_cors).service_fn({
        let demo = demo.clone();
        move |request| {
            let demo = demo.clone();
            async move { Ok::<_, Infallible>(control(&demo, request).await) }
        }
    });
    let end_streams = Shutdown::new();
    let close = CloseLayer::builder()
        .shutdown(&end_streams)
        .on_close(|info| {
            println!(
                "{} {} closed: {} after {:.1?}, {} frames, {} bytes",
                info.method,
                info.uri.path(),
                info.reason,
                info.duration,
                info.frames,
                info.bytes
            );
        })
        .build()
        .map_err(std::io::Error::other)?;
    let layer = SseLayer::new().cors(cors).close(close);
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |request: Request<Incoming>| {
                let demo = demo.clone();
                let controls = controls.clone();
                async move {
                    if is_control(request.uri().path()) {
                        controls.oneshot(request).await
                    } else {
                        Ok(route(&demo, request).await)
                    }
                }
            });

    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = page.accept() => accepted,
            accepted = stream.accept() => accepted,
            Some(_) = connections.join_next() => continue,
            () = &mut shutdown => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: keep serving the open
                // connections, and try again in a moment instead of spinning.
                eprintln!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(
                TokioIo::new(socket),
                TowerToHyperService::new(service.clone().map_request(
                    move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(Peer(peer));
                        request
                    },
                )),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _ = connection.await;
        });
    }
    // Open event streams never end by themselves: end them, or the graceful
    // shutdown below would wait forever. A client that stopped reading keeps
    // its connection open after its last frame: give up on it after a grace
    // period.
    end_streams.trigger();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = end_streams.deadline(GRACE) => {
            while connections.try_join_next().is_some() {}
            println!("{} connections still open after {GRACE:?}: dropped", connections.len());
        }
    }
    connections.shutdown().await;
    ticker.abort();
    Ok(())
}

/// Publishes a tick every period: `{"n": N}` (JSON) to the hub's `ticks`
/// topic, and every fifth time a plain-text note of two lines to `notes`
/// instead. The numbers run across both topics, so a page can tell that
/// the set's stream keeps publish order across topics.
async fn tick(hub: Hub, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    for n in 1u64.. {
        interval.tick().await;
        let (topic, event) = if n % 5 == 0 {
            let note = format!("tick {n}\nis a multiple of five");
            (NOTES, Event::new().data(note))
        } else {
            let tick = serde_json::json!({ "n": n });
            (TICKS, Event::new().data(tick.to_string()))
        };
        if let Err(error) = hub.publish(topic, event).await {
            eprintln!("publish failed: {error}");
        }
    }
}

/// How long shutdown waits for clients to read their last frame.
const GRACE: Duration = Duration::from_secs(5);

async fn route(demo: &Arc<Demo>, request: Request<Incoming>) -> Response<DemoBody> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => page(demo),
        (&Method::GET, "/events") => events(demo, &request).await,
        (&Method::GET, "/login") => login(demo, &request),
        (&Method::POST, "/check") => check(demo, request).await,
        _ => text(StatusCode::NOT_FOUND, "not found: try / or /events\n"),
    }
}

fn session_of(request: &Request<Incoming>) -> Option<String> {
    let cookies = request.headers().get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then(|| value.to_owned())
    })
}

/// The user the request's session cookie belongs to, if any.
fn user_of(demo: &Demo, request: &Request<Incoming>) -> Option<String> {
    let session = session_of(request)?;
    demo.sessions.lock().unwrap().get(&session).cloned()
}

/// A user name: 1 to 32 of `a-z`, `0-9`, `-` and `_`, so that `user:NAME`
/// is a topic name and an event type that needs no escaping anywhere.
fn is_user_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

const BAD_USER_NAME: &str = "a user name is 1 to 32 of a-z, 0-9, - and _\n";

/// The private topic of `user`: only their pages may read it.
fn user_topic(user: &str) -> String {
    format!("user:{user}")
}

/// What `user` (`None`: nobody logged in) may read: the public topics, and
/// their own topic.
fn may_read(user: Option<&str>, topic: &str) -> bool {
    topic == TICKS
        || topic == NOTES
        || user.is_some_and(|user| topic.strip_prefix("user:") == Some(user))
}

/// The stream: a `welcome` event (JSON: the stream's id, the session the
/// cookie named and its user, how the resume went, in all and per topic;
/// no id, so the browser's last event id stays the last event's), then the
/// hub's topics over one stream: those of `?topic=..&topic=..`, or without
/// a query `ticks`, `notes` and the user's own topic. Each topic either
/// resumes after `Last-Event-ID` or gets a gap event, then live events.
/// Ends when the server is asked to.
async fn events(demo: &Arc<Demo>, request: &Request<Incoming>) -> Response<DemoBody> {
    let session = session_of(request);
    if let Some(session) = &session {
        if demo.finished.lock().unwrap().remove(session) {
            // The server ended this session's stream: stop its reconnects.
            return tower_sse::stop_reconnecting::<Full<Bytes>>().map(|body| body.boxed_unsync());
        }
    }
    let user = user_of(demo, request);
    let topics = match request.uri().query() {
        Some(query) => TopicSet::from_query(Some(query), "topic"),
        None => {
            let own = user.as_deref().map(user_topic);
            TopicSet::new([TICKS, NOTES].into_iter().chain(own.as_deref()))
        }
    };
    // Checked before anything else: another user's topic is a 403, and no
    // `Last-Event-ID` can add a topic to the set.
    let topics = match topics.and_then(|topics| topics.check(|t| may_read(user.as_deref(), t))) {
        Ok(topics) => topics,
        Err(error) => {
            eprintln!("stream refused: {error}");
            return hub_error(error);
        }
    };
    // The user's streams count against their bound, wherever they come
    // from; without a session, the address's.
    let client = match (&user, request.extensions().get::<Peer>()) {
        (Some(user), _) => Some(format!("user {user}")),
        (None, Some(Peer(peer))) => Some(format!("address {}", peer.ip())),
        (None, None) => None,
    };
    let last = LastEventId::from_request(request);
    let mut subscription = match demo
        .hub
        .subscribe_set(&topics, client.as_deref(), request.headers())
        .await
    {
        Ok(subscription) => subscription,
        Err(error) => {
            eprintln!("subscribe failed: {error}");
            return hub_error(error);
        }
    };
    let resume = start_json(subscription.how_it_started());
    let each: serde_json::Map<String, serde_json::Value> = subscription
        .how_each_started()
        .map(|(topic, start)| (topic.to_owned(), start_json(start)))
        .collect();
    let id = demo.next_stream.fetch_add(1, Ordering::Relaxed);
    let (ender, ended) = oneshot::channel::<()>();
    demo.enders.lock().unwrap().insert(id, ender);
    let welcome = serde_json::json!({
        "stream": id,
        "session": session,
        "user": user,
        "last_event_id": last.as_ref().map(LastEventId::as_str),
        "resume": resume,
        "topics": each,
    });
    // Reconnect after one second when the stream breaks.
    let welcome = Event::new()
        .event_type(WELCOME)
        .retry(Duration::from_secs(1))
        .data(welcome.to_string())
        .encode();
    let signal = subscription.end_signal();
    // However the stream ends, its ender goes with it.
    let forget = Forget {
        demo: demo.clone(),
        id,
    };
    let events = stream::iter([welcome])
        .chain(subscription)
        .take_until(ended)
        .inspect(move |_| {
            let _ = &forget;
        });
    let mut response = EventStream::new(events)
        .into_http_response()
        .map(|body| body.boxed_unsync());
    signal.mark(&mut response);
    response
}

/// The first event of every stream of `/events`.
const WELCOME: EventType = EventType::from_static("welcome");

/// How a subscription, or one topic of it, started, for the page.
fn start_json(start: Start) -> serde_json::Value {
    match start {
        Start::Exact { replayed } => serde_json::json!({ "kind": "exact", "replayed": replayed }),
        Start::Gap { reason, replayed } => {
            serde_json::json!({ "kind": "gap", "reason": reason.as_str(), "replayed": replayed })
        }
        _ => serde_json::json!({ "kind": "fresh", "replayed": 0 }),
    }
}

/// Removes a stream's ender when the stream is dropped.
struct Forget {
    demo: Arc<Demo>,
    id: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Ok(mut enders) = self.demo.enders.lock() {
            enders.remove(&self.id);
        }
    }
}

/// `GET /login?user=NAME` (or without `user`: a guest name): starts a
/// session for the user, sets its cookie on this (the stream's) origin,
/// and sends the browser back to the page on the same host name.
fn login(demo: &Demo, request: &Request<Incoming>) -> Response<DemoBody> {
    let user = match form(request.uri().query().unwrap_or(""), &["user"]) {
        Ok(mut fields) => fields.remove("user"),
        Err(message) => return text_owned(StatusCode::BAD_REQUEST, message),
    };
    let user = match user {
        Some(user) if is_user_name(&user) => user,
        Some(_) => return text(StatusCode::BAD_REQUEST, BAD_USER_NAME),
        None => format!("guest{}", demo.next_stream.fetch_add(1, Ordering::Relaxed)),
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.rsplit_once(':').map(|(name, _)| name))
        .filter(|name| matches!(*name, "localhost" | "127.0.0.1"))
        .unwrap_or("127.0.0.1");
    // Not guessable by another user, as the session says who reads which
    // private topic (a real app takes its session ids from its framework).
    let session = format!("s{}", random_number());
    {
        let mut sessions = demo.sessions.lock().unwrap();
        if sessions.len() >= MAX_SESSIONS {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sessions: restart the demo\n",
            );
        }
        println!("session {session}: {user}");
        sessions.insert(session.clone(), user);
    }
    let mut response = text(StatusCode::FOUND, "");
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("http://{host}:{}/", demo.page_port)) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{COOKIE}={session}; Path=/; SameSite=Lax; HttpOnly"
    )) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A number nobody else can predict (std's hasher keys are random per
/// process), for session ids.
fn random_number() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// The fields of a query string or a form body (`a=1&b=2`, percent-encoded,
/// `+` a space), each at most once and each one of `names`; otherwise what
/// is wrong.
fn form(text: &str, names: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut fields = HashMap::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(key), Some(value)) = (percent_decode(key), percent_decode(value)) else {
            return Err("the form is not percent-encoded UTF-8\n".to_owned());
        };
        if !names.contains(&key.as_str()) {
            return Err(format!(
                "unknown field {key:?}: expected {}\n",
                names.join(", ")
            ));
        }
        if fields.insert(key.clone(), value).is_some() {
            return Err(format!("field {key:?} given twice\n"));
        }
    }
    Ok(fields)
}

/// Percent-decodes a query or form value (`+` is a space); `None` for a
/// bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Whether `path` is one of the page's calls to the stream origin that
/// have the app's own CORS: the buttons', the session's and the run routes.
fn is_control(path: &str) -> bool {
    matches!(path, "/break" | "/end" | "/generate" | "/session" | "/send")
        || path.starts_with("/generate/")
}

/// The page's calls to the stream origin, behind the app's own CORS.
async fn control(demo: &Demo, request: Request<Incoming>) -> Response<DemoBody> {
    let method = request.method().clone();
    match request.uri().path() {
        "/end" if method == Method::POST => end(demo, &request, true),
        "/break" if method == Method::POST => end(demo, &request, false),
        "/generate" if method == Method::POST => generate(demo).await,
        "/send" if method == Method::POST => send_message(demo, request).await,
        "/session" if method == Method::GET => session(demo, &request),
        "/session" => method_not_allowed("GET"),
        "/break" | "/end" | "/generate" | "/send" => method_not_allowed("POST"),
        path => {
            let rest = path.strip_prefix("/generate/").unwrap_or_default();
            match rest.split_once('/') {
                None if method == Method::GET => resume(demo, &request, rest).await,
                None => method_not_allowed("GET"),
                Some((id, "stop")) if method == Method::POST => stop(demo, id).await,
                Some((_, "stop")) => method_not_allowed("POST"),
                Some(_) => text(StatusCode::NOT_FOUND, "no such route\n"),
            }
        }
    }
}

/// `GET /session`: who the cookie says is logged in (JSON, `{"session":
/// .., "user": ..}`, both `null` without a session), so that the page
/// knows which private topic to ask for.
fn session(demo: &Demo, request: &Request<Incoming>) -> Response<DemoBody> {
    let user = user_of(demo, request);
    let session = user.as_ref().and(session_of(request));
    let body = serde_json::json!({ "session": session, "user": user }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /send` with a form body (`to=NAME&text=...`, which a page sends
/// without a preflight): publishes `{"from": me, "text": ..}` to the
/// topic `user:NAME`, which only NAME's pages may read. The sender must be
/// logged in, and NAME must have logged in since the demo started; the
/// text is 1 to 500 characters without control characters.
async fn send_message(demo: &Demo, request: Request<Incoming>) -> Response<DemoBody> {
    let Some(from) = user_of(demo, &request) else {
        return text(StatusCode::UNAUTHORIZED, "log in to send messages\n");
    };
    let form_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| {
            value
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a form: Content-Type: application/x-www-form-urlencoded\n",
        );
    }
    let body = http_body_util::Limited::new(request.into_body(), 4096);
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n"),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the form is not UTF-8\n");
    };
    let mut fields = match form(body, &["to", "text"]) {
        Ok(fields) => fields,
        Err(message) => return text_owned(StatusCode::BAD_REQUEST, message),
    };
    let (Some(to), Some(message)) = (fields.remove("to"), fields.remove("text")) else {
        return text(StatusCode::BAD_REQUEST, "the form needs `to` and `text`\n");
    };
    if !is_user_name(&to) {
        return text(StatusCode::BAD_REQUEST, BAD_USER_NAME);
    }
    let chars = message.chars().count();
    if message.trim().is_empty()
        || chars > MAX_MESSAGE_CHARS
        || message.chars().any(char::is_control)
    {
        return text(
            StatusCode::BAD_REQUEST,
            "a message is 1 to 500 characters, not only spaces, without control characters\n",
        );
    }
    if !demo
        .sessions
        .lock()
        .unwrap()
        .values()
        .any(|user| *user == to)
    {
        return text_owned(
            StatusCode::NOT_FOUND,
            format!("nobody called {to:?} has logged in\n"),
        );
    }
    let data = serde_json::json!({ "from": from, "text": message }).to_string();
    match demo
        .hub
        .publish(&user_topic(&to), Event::new().data(data))
        .await
    {
        Ok(_) => text_owned(StatusCode::ACCEPTED, format!("sent to {to}\n")),
        Err(error) => {
            eprintln!("publish failed: {error}");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub did not take the message\n",
            )
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<DemoBody> {
    let body = match allow {
        "GET" => "GET only\n",
        _ => "POST only\n",
    };
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, body);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// `POST /generate`: starts a run that writes the demo's text word by word
/// and answers with its stream: a `run` event (its id), one event per
/// word, then `run-end`. The run's id is also in `X-Run-Id`, for clients
/// that can read it (curl, the page's own origin).
async fn generate(demo: &Demo) -> Response<DemoBody> {
    let run = match demo.hub.start_run().await {
        Ok(run) => run,
        Err(error) => return hub_error(error),
    };
    let id = run.id().to_owned();
    // A new run is followed from its first event: nothing in the request
    // (a `Last-Event-ID`, a query) says otherwise.
    let follow = demo
        .hub
        .follow_run(&id, &HeaderMap::new(), &Uri::default())
        .await;
    let started = serde_json::json!({ "run": id });
    // No id of its own: the hub gives ids, so this cannot fail on the
    // memory hub.
    let _ = run
        .send(
            Event::new()
                .event_type(RUN_STARTED)
                .data(started.to_string()),
        )
        .await;
    println!("run {id} started");
    tokio::spawn(write_words(run, demo.text.clone(), demo.word_period));
    let mut response = follow_response(follow);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-run-id", value);
    }
    response
}

/// The run's producer: one event per word of `text` (with the space after
/// it), one every `period`, then the end: completed, or stopped as soon as
/// someone asks. It goes on when the page that started it is reloaded.
async fn write_words(run: Run, text: Arc<str>, period: Duration) {
    let mut stopped = pin!(run.stopped());
    let mut end = RunEnd::completed();
    for word in text.split_inclusive(' ') {
        tokio::select! {
            () = &mut stopped => {
                end = RunEnd::stopped();
                break;
            }
            () = tokio::time::sleep(period) => {}
        }
        let _ = run.send(Event::new().data(word)).await;
    }
    println!("run {} ended: {:?}", run.id(), end.outcome());
    let _ = run.finish(end).await;
}

/// `GET /generate/{id}`: the run's events after the page's last one
/// (`Last-Event-ID`, or `?last_event_id=` from `fetch`), then its end;
/// `204` when the page saw the end already, `404` when the run is gone.
async fn resume(demo: &Demo, request: &Request<Incoming>, id: &str) -> Response<DemoBody> {
    follow_response(
        demo.hub
            .follow_run(id, request.headers(), request.uri())
            .await,
    )
}

/// `POST /generate/{id}/stop`: asks the run to stop (from any page).
async fn stop(demo: &Demo, id: &str) -> Response<DemoBody> {
    if demo.hub.stop_run(id).await.unwrap_or(false) {
        text(StatusCode::ACCEPTED, "stopping\n")
    } else {
        text(StatusCode::NOT_FOUND, "no such run running here\n")
    }
}

fn follow_response(follow: Result<Subscription, HubError>) -> Response<DemoBody> {
    match follow {
        Ok(subscription) => subscription
            .into_http_response()
            .map(|body| body.boxed_unsync()),
        Err(error) => hub_error(error),
    }
}

fn hub_error(error: HubError) -> Response<DemoBody> {
    error
        .into_http_response()
        .map(|body| Full::from(body).boxed_unsync())
}

/// Ends stream `?stream=N`. For good (`/end`): its session's reconnect
/// will get 204. Or as a broken connection would (`/break`): the browser
/// reconnects by itself and resumes.
fn end(demo: &Demo, request: &Request<Incoming>, for_good: bool) -> Response<DemoBody> {
    let id = request
        .uri()
        .query()
        .and_then(|query| query.strip_prefix("stream="))
        .and_then(|id| id.parse::<u64>().ok());
    let Some(ender) = id.and_then(|id| demo.enders.lock().unwrap().remove(&id)) else {
        return text(StatusCode::NOT_FOUND, "no such open stream\n");
    };
    if let Some(session) = session_of(request).filter(|_| for_good) {
        demo.finished.lock().unwrap().insert(session);
    }
    let _ = ender.send(());
    text(StatusCode::OK, "ended\n")
}

/// A page's self-check result (`/?check=resume` or `/?check=gap`): logged,
/// and handed to whoever runs the demo (its test). Read before the answer:
/// read after it (on a task of its own), the body was lost now and then
/// (in about one run in five of the reload test in Chromium).
async fn check(demo: &Demo, request: Request<Incoming>) -> Response<DemoBody> {
    let body = http_body_util::Limited::new(request.into_body(), 1 << 20);
    let Ok(body) = body.collect().await else {
        return text(StatusCode::BAD_REQUEST, "unreadable check\n");
    };
    let result = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    println!("page check: {result}");
    if let Some(checks) = &demo.checks {
        let _ = checks.send(result);
    }
    text(StatusCode::NO_CONTENT, "")
}

fn page(demo: &Demo) -> Response<DemoBody> {
    let mut html = PAGE.replace("STREAM_PORT", &demo.stream_port.to_string());
    if let Some(script) = &demo.script {
        html = html.replacen("<title>", &format!("<script>{script}</script>\n<title>"), 1);
    }
    let mut response = Response::new(Full::new(Bytes::from(html)).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<DemoBody> {
    text_owned(status, body.to_owned())
}

fn text_owned(status: StatusCode, body: String) -> Response<DemoBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
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

const PAGE: &str = r##"<!doctype html>
<meta charset="utf-8">
<title>tower-sse demo</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem; }
  code, td { font-family: ui-monospace, monospace; font-size: 13px; }
  table { border-collapse: collapse; width: 100%; }
  td, th { border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
  #state { font-weight: bold; }
  button { margin-right: .5rem; }
  .gap { background: #fff3cd; }
  #output { white-space: pre-wrap; border: 1px solid #ddd; padding: .5rem; min-height: 3em; }
</style>
<h1>tower-sse demo</h1>
<p>This page comes from <code id="page-origin"></code>; the stream comes from
<code id="stream-origin"></code>, another origin on the same host name.
<label>Log in as <input id="user" value="alice" size="12"></label>
<a id="login">Log in</a> on the stream's origin to get a cookie there, then
watch it travel with the stream (<code>EventSource</code> with
<code>withCredentials: true</code>, allowed by <code>SseCorsLayer</code>).
The cookie belongs to the browser: to be two users at once, use a second
browser profile or a private window.</p>
<p>State: <span id="state">connecting</span> &middot; stream <span id="stream">?</span>
&middot; session cookie seen by the server: <span id="session">?</span>
&middot; user: <span id="me">?</span></p>
<p>One <code>EventSource</code>, several topics: <code id="topics">?</code></p>
<p>Resume: <span id="resume">?</span> &middot; ticks: <span id="ticks">none yet</span></p>
<table>
  <thead><tr><th>topic</th><th>how this stream started</th><th>replayed</th><th>received on this stream</th></tr></thead>
  <tbody id="per-topic"></tbody>
</table>
<p>
  <button id="break">Break the connection</button>
  <button id="close">Close from the page</button>
  <button id="end">Ask the server to end it</button>
  <button id="reopen">Open again</button>
</p>
<p id="closed"></p>
<h2>Messages</h2>
<p>A message goes to the topic <code>user:NAME</code> of its recipient, which
only NAME's pages may read: the server checks the topics a stream asks for
against its session cookie, and refuses another user's with 403.</p>
<form id="send-form">
  <label>To <input id="to" size="12" required></label>
  <label>Text <input id="text" size="30" maxlength="500" required></label>
  <button id="send">Send</button>
  <span id="send-state"></span>
</form>
<ul id="messages"></ul>
<h2>A resumable run</h2>
<p>"Generate" starts a run on the server, which writes a text word by word;
the page reads it with <code>fetch</code> (<code>POST /generate</code>).
Reload the page while it is being written: the page resumes the run with the
id of the last word it kept (<code>GET /generate/{id}?last_event_id=...</code>)
and the text goes on exactly where it was. "Stop" asks the server to end
it.</p>
<p>
  <button id="generate">Generate</button>
  <button id="stop" disabled>Stop</button>
  <span id="run-state">no run yet</span>
</p>
<div id="output"></div>
<table>
  <thead><tr><th>type</th><th>id</th><th>data</th></tr></thead>
  <tbody id="events"></tbody>
</table>
<p><small>The ticks and the notes come from two hub topics, over one stream
with the user's own topic. "Break the connection" ends the stream as a
network failure would: the browser reconnects by itself with the id of the
last event it saw (<code>Last-Event-ID</code>, which holds every topic's
position) and the hub sends, for each topic, the events it missed, then
live ones. When the hub no longer holds them (run the demo with
<code>--history 2</code>), that topic starts with its own <code>gap</code>
event instead. Behind nginx: every stream is sent with <code>X-Accel-Buffering: no</code>
and <code>Cache-Control: no-cache, no-transform</code>, so nginx and other proxies
pass each event at once, and a comment every 15 s keeps idle streams open.</small></p>
<script>
  const streamOrigin = `${location.protocol}//${location.hostname}:STREAM_PORT`;
  const check = new URLSearchParams(location.search).get("check");
  document.getElementById("page-origin").textContent = location.origin;
  document.getElementById("stream-origin").textContent = streamOrigin;
  const stateNames = ["connecting", "open", "closed"];
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  const userInput = document.getElementById("user");
  const loginHref = () => {
    document.getElementById("login").href =
      `${streamOrigin}/login?user=${encodeURIComponent(userInput.value.trim())}`;
  };
  userInput.oninput = loginHref;
  loginHref();
  let source = null;
  let streamId = null;
  let endedByServer = false;
  // Who the session cookie says we are (`GET /session`), and so the topics
  // this page asks for.
  let me = null;
  let topics = ["ticks", "notes"];
  // Break and end act on the open stream: without one they are off (a
  // stream that ended is not there to end).
  function openStream(id) {
    streamId = id;
    for (const button of ["break", "end"]) document.getElementById(button).disabled = id === null;
  }
  // What the page saw: every tick number in order (both topics), each
  // topic's own numbers, each welcome's resume, each gap, the messages,
  // and numbers that jumped without their topic's gap event before them.
  const seen = { ticks: [], byTopic: { ticks: [], notes: [] }, resumes: [], gaps: [], holes: 0,
    messages: [], others: [] };
  const gapPending = {};
  // Per topic, how this stream started (from the welcome) and what came.
  let perTopic = {};

  function row(type, id, data, className) {
    const tr = document.createElement("tr");
    if (className) tr.className = className;
    for (const cell of [type, id, data]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.append(td);
    }
    document.getElementById("events").prepend(tr);
  }

  function showPerTopic() {
    const body = document.getElementById("per-topic");
    body.replaceChildren();
    for (const [topic, t] of Object.entries(perTopic)) {
      const tr = document.createElement("tr");
      const how = t.kind === "gap" ? `gap (${t.reason}${t.missed != null ? `, ${t.missed} missed` : ""})` : t.kind;
      for (const cell of [topic, how, t.replayed, t.received]) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.append(td);
      }
      body.append(tr);
    }
  }

  function arrived(topic) {
    if (perTopic[topic]) perTopic[topic].received += 1;
    showPerTopic();
  }

  // Tick numbers run across both topics: the notes have the multiples of
  // five, the ticks the others.
  const owner = (n) => (n % 5 === 0 ? "notes" : "ticks");
  function nextOf(topic, n) {
    do n += 1; while (owner(n) !== topic);
    return n;
  }

  function tick(topic, n) {
    const mine = seen.byTopic[topic];
    const last = mine[mine.length - 1];
    if (last !== undefined && n !== nextOf(topic, last) && !gapPending[topic]) seen.holes += 1;
    gapPending[topic] = false;
    mine.push(n);
    seen.ticks.push(n);
    arrived(topic);
    show("ticks", `${seen.ticks.length} received, last ${n}, ` +
      (seen.holes === 0 ? "none missing" : `${seen.holes} unexplained jumps`));
    selfCheck();
  }

  function message(event) {
    const { from, text } = JSON.parse(event.data);
    seen.messages.push({ topic: event.type, from, text });
    arrived(event.type);
    const li = document.createElement("li");
    li.textContent = `${from}: ${text}`;
    document.getElementById("messages").prepend(li);
    row(event.type, event.lastEventId, event.data);
  }

  function open() {
    endedByServer = false;
    openStream(null);
    show("closed", "");
    topics = ["ticks", "notes", ...(me?.user ? [`user:${me.user}`] : [])];
    show("topics", topics.join(", "));
    const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join("&");
    source = new EventSource(`${streamOrigin}/events?${query}`, { withCredentials: true });
    source.onopen = () => show("state", "open");
    source.addEventListener("welcome", (event) => {
      const welcome = JSON.parse(event.data);
      openStream(welcome.stream);
      seen.resumes.push({ ...welcome.resume, topics: welcome.topics, at: seen.ticks.length });
      show("stream", `#${welcome.stream}`);
      show("session", welcome.session ?? "none (log in first)");
      show("me", welcome.user ?? "nobody");
      perTopic = {};
      for (const [topic, start] of Object.entries(welcome.topics)) {
        perTopic[topic] = { ...start, received: 0 };
      }
      showPerTopic();
      const resume = welcome.resume;
      show("resume", resume.kind === "fresh" ? "fresh (live events only)"
        : resume.kind === "exact" ? `exact after the last event seen: ${resume.replayed} missed events replayed`
        : `gap (${resume.reason}), then ${resume.replayed} kept events`);
      row("welcome", event.lastEventId, event.data);
    });
    // One gap event per topic that could not resume; its data names it.
    source.addEventListener("gap", (event) => {
      const gap = JSON.parse(event.data);
      seen.gaps.push(gap);
      gapPending[gap.topic] = true;
      if (perTopic[gap.topic]) perTopic[gap.topic].missed = gap.missed;
      showPerTopic();
      row("gap", event.lastEventId, event.data, "gap");
    });
    // Each event's type is its topic.
    source.addEventListener("ticks", (event) => {
      tick("ticks", JSON.parse(event.data).n);
      row(event.type, event.lastEventId, event.data);
    });
    source.addEventListener("notes", (event) => {
      tick("notes", parseInt(event.data.split(/\s/)[1], 10));
      row(event.type, event.lastEventId, event.data);
    });
    if (me?.user) source.addEventListener(`user:${me.user}`, message);
    source.onerror = () => {
      openStream(null);
      show("state", stateNames[source.readyState]);
      if (source.readyState === EventSource.CLOSED) {
        show("closed", endedByServer
          ? "Closed by the server: it ended the stream and answered the reconnect with 204 No Content, which tells EventSource to stop."
          : "Closed: the server refused the stream or stopped it.");
        if (!endedByServer) explainRefusal();
      } else {
        show("closed", "The stream broke; EventSource is reconnecting (it sends Last-Event-ID).");
      }
    };
  }

  // A stream refused for good: if the session now belongs to someone else
  // (another tab logged in), that is why (403 for a topic not theirs).
  async function explainRefusal() {
    const now = await whoami();
    if ((now?.user ?? null) !== (me?.user ?? null)) {
      show("closed", `Closed: this page asked for ${topics.join(", ")}, but the session cookie now says ` +
        `${now?.user ?? "nobody"} (another tab logged in): the server refused with 403. Reload the page.`);
    }
  }

  async function whoami() {
    try {
      const response = await fetch(`${streamOrigin}/session`, { credentials: "include" });
      return await response.json();
    } catch (error) {
      show("closed", `/session failed: ${error.message}`);
      return null;
    }
  }

  document.getElementById("send-form").onsubmit = async (event) => {
    event.preventDefault();
    const body = new URLSearchParams({
      to: document.getElementById("to").value.trim(),
      text: document.getElementById("text").value,
    });
    show("send-state", "sending");
    try {
      // A form body: no preflight.
      const response = await fetch(`${streamOrigin}/send`, { method: "POST", credentials: "include", body });
      show("send-state", `${response.status}: ${await response.text()}`);
    } catch (error) {
      show("send-state", `failed: ${error.message}`);
    }
  };

  // Asks the stream's origin to end the open stream (`/break` or `/end`):
  // a cross-origin POST with the cookie, which the app's CORS allows.
  async function control(path) {
    if (streamId === null) return;
    try {
      const response = await fetch(`${streamOrigin}${path}?stream=${streamId}`,
        { method: "POST", credentials: "include" });
      if (!response.ok) show("closed", `${path}: ${response.status} ${await response.text()}`);
    } catch (error) {
      show("closed", `${path} failed: ${error.message}`);
    }
  }

  const breakConnection = () => control("/break");

  // Self-checks for the tests: `?check=resume` or `?check=gap` breaks the
  // connection after 3 ticks and reports what arrived after the reconnect,
  // once every event the reconnect replays has come (13 numbers can be
  // there before the replay's last ones: with a history of 2 per topic,
  // one topic's replay may be newer than the other's).
  let broken = false;
  let reported = false;
  function selfCheck() {
    if (!check || reported) return;
    if (!broken && seen.ticks.length >= 3) {
      broken = true;
      breakConnection();
    } else if (broken && seen.resumes.length >= 2 && seen.ticks.length >= 13
      && seen.ticks.length - seen.resumes[1].at >= (seen.resumes[1].replayed ?? 0)) {
      reported = true;
      source.close();
      fetch("/check", { method: "POST", body: JSON.stringify({ check, ...seen }) });
    }
  }

  document.getElementById("break").onclick = breakConnection;
  document.getElementById("close").onclick = () => {
    if (source) source.close();
    openStream(null);
    show("state", "closed");
    show("closed", "Closed from the page: the server logs client_gone.");
  };
  document.getElementById("end").onclick = () => {
    endedByServer = true;
    return control("/end");
  };
  document.getElementById("reopen").onclick = () => { if (source) source.close(); open(); };
  for (const button of ["break", "end"]) document.getElementById(button).disabled = true;
  whoami().then((who) => {
    me = who;
    open();
  });

  // The resumable run. The page keeps the run's id, the id of the last
  // event it kept and the text so far in sessionStorage, written together
  // after each event (one synchronous step: a reload cannot come between
  // them), so a reload resumes after exactly the words it shows.
  const RUN = "generation";
  let generation = JSON.parse(sessionStorage.getItem(RUN) ?? "null");
  const saveRun = () => sessionStorage.setItem(RUN, JSON.stringify(generation));
  let runNote = "";
  let stopAsked = false;

  function showRun() {
    const g = generation;
    document.getElementById("output").textContent = g ? g.text : "";
    const running = g !== null && g.outcome === null;
    document.getElementById("generate").disabled = running;
    document.getElementById("stop").disabled = !running || g.run === null || stopAsked;
    const resumed = g && g.resumes > 0 ? `, resumed ${g.resumes} time${g.resumes > 1 ? "s" : ""}` : "";
    show("run-state", g === null ? "no run yet"
      : running ? `running: ${g.words} words${resumed}${runNote}`
      : `${g.outcome}: ${g.words} words${resumed}${runNote}`);
  }

  // One event of the run (`data` null: an id alone): its id and what it
  // adds, stored at once.
  function runEvent(type, id, data) {
    const g = generation;
    if (data !== null) {
      if (type === "run") g.run = JSON.parse(data).run;
      else if (type === "message") { g.text += data; g.words += 1; }
      else if (type === "run-end") g.outcome = JSON.parse(data).outcome;
      else if (type === "gap") runNote = ` (gap: ${data})`;
    }
    if (id !== null) g.last = id;
    saveRun();
    showRun();
  }

  // Reads an event stream as EventSource does (lines end in LF here):
  // each event's type, id and data (null when it has none: EventSource
  // dispatches no event, but keeps its id), in order; comments are
  // skipped.
  async function readEvents(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = "message", id = null;
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "data") data.push(value);
          else if (field === "event") type = value;
          else if (field === "id") id = value;
        }
        if (data.length > 0) onEvent(type, id, data.join("\n"));
        else if (id !== null) onEvent(type, id, null);
      }
    }
  }

  // Follows the run until its end: the first request (the POST, or a
  // resume after a reload), then, when the stream breaks before the end,
  // a resume after the last event kept, a second later (five failures in
  // a row and the page gives up).
  async function followRun(first) {
    let failures = 0;
    for (let request = first; failures < 5; request = resumeRun) {
      try {
        const response = await request();
        if (response.status === 204) {
          // The server says the page saw the end already.
          if (generation.outcome === null) generation.outcome = "ended";
        } else if (response.status === 404) {
          generation.outcome = "gone";
          runNote = " (the server no longer has this run)";
        } else if (response.ok) {
          await readEvents(response, runEvent);
          failures = 0;
        } else {
          runNote = ` (${response.status} ${await response.text()})`;
          failures += 1;
        }
      } catch (error) {
        runNote = ` (${error.message})`;
        failures += 1;
      }
      if (generation.outcome !== null || generation.run === null) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    if (generation.outcome === null) {
      generation.outcome = "lost";
      if (generation.run === null && runNote === "") runNote = " (no run started)";
    }
    saveRun();
    showRun();
  }

  const resumeRun = () => {
    generation.resumes += 1;
    saveRun();
    runNote = "";
    const last = encodeURIComponent(generation.last ?? "");
    return fetch(`${streamOrigin}/generate/${encodeURIComponent(generation.run)}?last_event_id=${last}`,
      { credentials: "include", headers: { Accept: "text/event-stream" } });
  };

  document.getElementById("generate").onclick = () => {
    generation = { run: null, last: null, text: "", words: 0, outcome: null, resumes: 0 };
    runNote = "";
    stopAsked = false;
    saveRun();
    showRun();
    // `Accept: text/event-stream` tells SseCorsLayer this is a stream.
    followRun(() => fetch(`${streamOrigin}/generate`,
      { method: "POST", credentials: "include", headers: { Accept: "text/event-stream" } }));
  };
  document.getElementById("stop").onclick = async () => {
    stopAsked = true;
    showRun();
    try {
      const response = await fetch(`${streamOrigin}/generate/${encodeURIComponent(generation.run)}/stop`,
        { method: "POST", credentials: "include" });
      // The run's end comes on its stream; this only says it was asked.
      if (!response.ok) runNote = ` (stop: ${response.status} ${await response.text()})`;
    } catch (error) {
      runNote = ` (stop failed: ${error.message})`;
    }
    showRun();
  };

  // After a reload: the text kept so far, and the rest of the run.
  showRun();
  if (generation !== null && generation.outcome === null) {
    if (generation.run === null) {
      generation.outcome = "lost";
      runNote = " (the page was reloaded before the run's id arrived)";
      saveRun();
      showRun();
    } else {
      followRun(resumeRun);
    }
  }
</script>
"##;

//! Errors that say what they are, and a health signal: a hub on a real
//! `redis-server` (started here, killed by its PID) that refuses the hub's
//! commands (a wrong password, a database out of range, `NOAUTH`, `OOM`, a
//! renamed command) gives `HubErrorKind::Misconfigured` with what Redis
//! said, answers subscribers with a long `retry:`, opens a bounded number
//! of connections, logs each cause once, and reports it in `Hub::health`;
//! an outage ends subscribers at the documented grace; the `scale_out`
//! example's `/ready` route answers from `Hub::health`.
//!
//! Without `redis-server` each test says SKIPPED; with
//! `TOWER_SSE_REQUIRE_REDIS=1` (set by `.ci/run`) it fails.

#[allow(dead_code)]
#[path = "../examples/scale_out.rs"]
mod scale_out;

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use http_body_util::BodyExt;
use tower_sse::{
    hub::{Hub, HubErrorKind, Subscription},
    Event,
};

/// A `redis-server` on a free loopback port with extra arguments (such as
/// `--rename-command`, which only a start can set), without persistence,
/// killed by its PID when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    /// The default user's password, once a test sets one.
    password: Option<String>,
}

impl Redis {
    fn start(args: &[&str]) -> Option<Self> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists());
        if !common::tool_available(
            "redis-server",
            binary.as_deref(),
            common::redis_server::REQUIRE,
        ) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-redis-errors-{}-{}",
            std::process::id(),
            common::random_tag()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            child: None,
            port: 0,
            dir,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            password: None,
        };
        for _ in 0..5 {
            redis.port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if redis.launch(binary.as_ref().unwrap()) {
                return Some(redis);
            }
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    fn launch(&mut self, binary: &PathBuf) -> bool {
        let mut child = Command::new(binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                // Exited: most likely the port was taken meanwhile.
                return false;
            }
            if self
                .try_command("PING")
                .is_some_and(|reply| reply == "+PONG\r\n")
            {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not answer within 10 s");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Runs one command (inline form), as the default user, and returns
    /// the raw reply (a bulk reply read whole).
    fn command(&self, line: &str) -> String {
        self.try_command(line)
            .unwrap_or_else(|| panic!("redis-server did not answer {line}"))
    }

    fn try_command(&self, line: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if let Some(password) = &self.password {
            stream
                .write_all(format!("AUTH {password}\r\n").as_bytes())
                .ok()?;
            let mut ok = [0; 5];
            stream.read_exact(&mut ok).ok()?;
        }
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0; 16 * 1024];
        loop {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
            if complete(&reply) {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    }

    /// How many connections Redis has accepted since it started (each
    /// call of [`command`](Redis::command) is one).
    fn connections(&self) -> u64 {
        self.command("INFO stats")
            .lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("INFO stats has total_connections_received")
    }

    /// Kills the server with SIGKILL.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Whether `reply` is one whole RESP reply (a line, or a bulk string).
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|pair| pair == b"\r\n") else {
        return false;
    };
    if reply[0] != b'$' {
        return true;
    }
    let length: i64 = std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    length < 0 || reply.len() >= end + 2 + length as usize + 2
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped server takes SIGKILL too, but wake it for its log.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prefix() -> String {
    format!("errors{}:", common::random_tag())
}

fn hub(url: String, prefix: &str) -> Hub {
    Hub::builder()
        .redis(url)
        .redis_key_prefix(prefix)
        .build()
        .expect("the hub builds")
}

/// What the tracing subscriber of this test binary captured (feature
/// `tracing`): every event, to count the `error` lines of one hub (its
/// key prefix is in every line).
#[cfg(feature = "tracing")]
mod logs {
    use std::{fmt::Write, sync::Mutex};

    static LINES: Mutex<Vec<(tracing::Level, String)>> = Mutex::new(Vec::new());

    struct Capture;

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            LINES
                .lock()
                .unwrap()
                .push((*event.metadata().level(), fields.0));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Captures from now on (once per test binary).
    pub fn install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::subscriber::set_global_default(Capture).expect("no other subscriber");
        });
    }

    /// The `error` lines logged for the hub with key prefix `prefix`.
    pub fn errors(prefix: &str) -> Vec<String> {
        LINES
            .lock()
            .unwrap()
            .iter()
            .filter(|(level, line)| {
                *level == tracing::Level::ERROR && line.contains(&format!("prefix={prefix} "))
            })
            .map(|(_, line)| line.clone())
            .collect()
    }
}

/// Installs the log capture when the feature is on.
fn capture_logs() {
    #[cfg(feature = "tracing")]
    logs::install();
}

/// The retry a subscriber is answered with, in milliseconds, after
/// checking the answer is a `200` event stream a browser comes back from.
fn answered_retry(error: tower_sse::hub::HubError) -> u64 {
    let response = error.into_http_response();
    assert_eq!(
        response.status(),
        200,
        "not a status that stops EventSource"
    );
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.body();
    body.lines()
        .find_map(|line| line.strip_prefix("retry: "))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a retry in {body:?}"))
}

/// Checks everything a refusal must give, `says` being what the errors'
/// text must contain (lower case): 200 publishes and a subscribe fail as
/// `Misconfigured` with it, give the event back, open at most 3 connections
/// between them, log it once, and `health` reports it. `settle`: how long
/// to let the reader fail before counting, so that its own reconnects
/// (spaced by a backoff that doubles up to 2 s) are few in the count.
async fn assert_refusal(redis: &Redis, url: String, says: &str, reading: bool) {
    capture_logs();
    let prefix = prefix();
    let hub = hub(url, &prefix);
    // Let the reader find out (and, when it cannot read, back off).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = redis.connections();
    let started = Instant::now();
    for n in 0..200 {
        let error = hub
            .publish("t", Event::new().data(n.to_string()))
            .await
            .expect_err("Redis refuses the publish");
        assert_eq!(error.kind(), HubErrorKind::Misconfigured, "{error}");
        let text = error.to_string();
        assert!(text.to_lowercase().contains(says), "{text}");
        assert!(text.contains("refuses its commands"), "{text}");
        assert_eq!(
            error.into_event().encode().as_bytes(),
            format!("data: {n}\n\n").as_bytes(),
            "the event comes back"
        );
    }
    let took = started.elapsed();
    let refused = hub
        .subscribe("new-topic", None)
        .await
        .expect_err("Redis refuses to load the topic");
    assert_eq!(refused.kind(), HubErrorKind::Misconfigured, "{refused}");
    assert!(
        refused.to_string().to_lowercase().contains(says),
        "{refused}"
    );
    // One fewer: the count's own connection.
    let opened = redis.connections() - before - 1;
    println!(
        "{says}: 200 refused publishes and a subscribe in {took:?} opened {opened} connections"
    );
    assert!(
        opened <= 3,
        "200 refused publishes and a subscribe opened {opened} connections"
    );
    let retry = answered_retry(refused);
    assert!(
        (30_000..=60_000).contains(&retry),
        "a refusal is answered with a long retry: {retry} ms"
    );
    let health = hub.health();
    assert!(!health.is_healthy(), "{health}");
    assert_eq!(health.is_connected(), reading, "{health}");
    let shown = health.to_string();
    assert!(shown.starts_with("unhealthy: "), "{shown}");
    assert!(shown.to_lowercase().contains(says), "{shown}");
    let (last, at) = health.last_error().expect("a last error");
    assert_eq!(last.kind(), HubErrorKind::Misconfigured, "{last}");
    assert!(at.elapsed() < Duration::from_secs(5));
    #[cfg(feature = "tracing")]
    {
        // Refused by the publishes, the subscribe and (but for the
        // renamed command) the reader, every 2 s: one cause, one line.
        let logged = logs::errors(&prefix);
        assert_eq!(logged.len(), 1, "logged once, not per call: {logged:#?}");
        assert!(logged[0].to_lowercase().contains(says), "{logged:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_misconfiguration_that_says_so() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    assert_eq!(
        redis.command("ACL SETUSER app on >right ~* &* +@all"),
        "+OK\r\n"
    );
    let url = format!("redis://app:wrong@127.0.0.1:{}", redis.port);
    assert_refusal(&redis, url, "credentials", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_password_is_a_misconfiguration_that_says_so() {
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    assert_eq!(redis.command("CONFIG SET requirepass secret"), "+OK\r\n");
    redis.password = Some("secret".into());
    // Connecting works (the client's setup needs no password); every
    // command is answered `NOAUTH`, on the same connection.
    assert_refusal(&redis, redis.url(), "noauth", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_out_of_range_is_a_misconfiguration_that_says_so() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let url = format!("{}/99", redis.url());
    assert_refusal(&redis, url, "db index is out of range", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_command_is_a_misconfiguration_that_says_so() {
    let Some(redis) = Redis::start(&["--rename-command", "XADD", ""]) else {
        return;
    };
    // Reading works (XREAD is there): only publishing and loading a new
    // topic (which writes its start entry) are refused.
    assert_refusal(&redis, redis.url(), "unknown redis command", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_publishes_as_a_misconfiguration_until_it_has_room() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    capture_logs();
    let prefix = prefix();
    let hub = hub(redis.url(), &prefix);
    let mut live = hub.subscribe("t", None).await.unwrap();
    next(&mut live).await;
    assert_eq!(
        redis.command("CONFIG SET maxmemory-policy noeviction"),
        "+OK\r\n"
    );
    assert_eq!(redis.command("CONFIG SET maxmemory 1mb"), "+OK\r\n");
    // A big publish fills what is left (Redis checks the limit before a
    // command, so one may still go in).
    let big = "x".repeat(2 << 20);
    let mut refused = None;
    for _ in 0..3 {
        match hub.publish("t", Event::new().data(&*big)).await {
            Ok(_) => assert!(next(&mut live).await.len() > 2 << 20),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.expect("a full Redis refuses the publish");
    assert_eq!(refused.kind(), HubErrorKind::Misconfigured, "{refused}");
    assert!(
        refused.to_string().contains("OOM command not allowed"),
        "{refused}"
    );
    let before = redis.connections();
    for _ in 0..200 {
        let error = hub
            .publish("t", Event::new().data("small"))
            .await
            .expect_err("still full");
        assert_eq!(error.kind(), HubErrorKind::Misconfigured, "{error}");
    }
    let opened = redis.connections() - before - 1;
    println!("OOM: 200 refused publishes opened {opened} connections");
    assert!(
        opened <= 1,
        "an error reply keeps the connection: {opened} opened"
    );
    // Reading still works: the live subscriber is not cut, and the
    // instance is connected, yet unhealthy.
    let health = hub.health();
    assert!(health.is_connected() && !health.is_healthy(), "{health}");
    assert!(health.to_string().contains("OOM"), "{health}");
    assert!(quiet(&mut live).await, "no retry for the live subscriber");
    #[cfg(feature = "tracing")]
    {
        let logged = logs::errors(&prefix);
        assert_eq!(logged.len(), 1, "logged once: {logged:#?}");
        assert!(logged[0].contains("OOM"), "{logged:#?}");
    }
    // Room again: publishing works, and the hub is healthy.
    assert_eq!(redis.command("CONFIG SET maxmemory 0"), "+OK\r\n");
    hub.publish("t", Event::new().data("after"))
        .await
        .expect("published once Redis has room");
    let health = hub.health();
    assert!(health.is_healthy(), "{health}");
    let seen = next(&mut live).await;
    assert!(seen.contains("data: after"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_reader_and_a_memory_hub_is_always_healthy() {
    let memory = Hub::new();
    let health = memory.health();
    assert!(health.is_healthy() && health.is_connected(), "{health}");
    assert_eq!(health.to_string(), "healthy: memory hub");
    assert!(health.last_error().is_none() && health.last_read().is_none());

    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let hub = hub(redis.url(), &prefix());
    let health = wait_for(&hub, true).await;
    assert!(health.is_healthy(), "{health}");
    assert!(health
        .to_string()
        .starts_with("healthy: reading from Redis"));
    let last_read = health.last_read().expect("read once");
    assert!(last_read.elapsed() < Duration::from_secs(3));
    // Reads end every 2 s even when nothing happens.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let later = hub.health().last_read().unwrap();
    assert!(later > last_read, "the reader read again");
    redis.kill();
    let killed = Instant::now();
    let health = wait_for(&hub, false).await;
    assert!(!health.is_healthy(), "{health}");
    let since = health.since();
    assert!(
        since >= killed - Duration::from_millis(100) && since.elapsed() < Duration::from_secs(2),
        "down since the first failed read: {:?} after the kill",
        since.saturating_duration_since(killed)
    );
    let (error, _) = health.last_error().expect("the failure");
    assert_eq!(error.kind(), HubErrorKind::Unavailable, "{error}");
    let shown = health.to_string();
    assert!(
        shown.starts_with("unhealthy: not reading from Redis since "),
        "{shown}"
    );
    assert!(shown.contains("unreachable"), "{shown}");
}

/// Waits (10 s at most) until the hub's health is `connected`.
async fn wait_for(hub: &Hub, connected: bool) -> tower_sse::hub::Health {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = hub.health();
        if health.is_connected() == connected {
            return health;
        }
        assert!(Instant::now() < deadline, "still {health}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The subscription's next event, as text, within 10 s.
async fn next(subscription: &mut Subscription) -> String {
    let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an event within 10 s")
        .expect("an event, not the end");
    String::from_utf8_lossy(event.as_bytes()).into_owned()
}

/// Whether nothing arrives within 300 ms.
async fn quiet(subscription: &mut Subscription) -> bool {
    tokio::time::timeout(Duration::from_millis(300), subscription.next())
        .await
        .is_err()
}

/// How long after `broken` a live subscriber of a hub with the default
/// grace (5 s) gets its `retry:` and ends.
async fn cut_after(redis: &mut Redis, hub: &Hub, broken: impl FnOnce(&mut Redis)) -> Duration {
    let mut live = hub.subscribe("t", None).await.unwrap();
    next(&mut live).await;
    hub.publish("t", Event::new().data("1")).await.unwrap();
    assert!(next(&mut live).await.contains("data: 1"));
    // In the middle of a blocking read.
    tokio::time::sleep(Duration::from_millis(700)).await;
    broken(redis);
    let at = Instant::now();
    let last = tokio::time::timeout(Duration::from_secs(20), async {
        let mut last = String::new();
        while let Some(event) = live.next().await {
            last = String::from_utf8_lossy(event.as_bytes()).into_owned();
        }
        last
    })
    .await
    .expect("the stream ends");
    assert!(last.contains("retry:"), "{last}");
    at.elapsed()
}

/// The documented grace is what a subscriber waits: killed, Redis closes
/// its connections, the reader's next read fails at once, and the
/// subscriber is cut 5 s later (within a tolerance of 1.5 s on a loaded
/// machine), not 5 s after the reader's later failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_ends_live_subscribers_at_the_grace() {
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let hub = hub(redis.url(), &prefix());
    let took = cut_after(&mut redis, &hub, Redis::kill).await;
    println!("killed: cut after {took:?} (grace 5 s)");
    assert!(
        took >= Duration::from_millis(4_750) && took <= Duration::from_millis(6_500),
        "cut {took:?} after the kill, for a grace of 5 s"
    );
    let refused = hub.subscribe("t", None).await.unwrap_err();
    assert_eq!(refused.kind(), HubErrorKind::Unavailable, "{refused}");
    assert!(
        refused.to_string().contains("redis_outage_grace"),
        "{refused}"
    );
}

/// A Redis that stops answering without closing its connections (a stalled
/// host: here SIGSTOP) is noticed when a read is not answered by its block
/// time plus `redis_timeout`; the grace counts from when its answer was
/// due, so the cut comes at most a block time (2 s) after the grace, not a
/// block and a timeout after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_ends_live_subscribers_within_a_block_of_the_grace() {
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let hub = hub(redis.url(), &prefix());
    let took = cut_after(&mut redis, &hub, |redis| {
        let status = Command::new("kill")
            .args(["-STOP", &redis.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    })
    .await;
    println!("stalled: cut after {took:?} (grace 5 s, block 2 s)");
    assert!(
        took >= Duration::from_millis(4_750) && took <= Duration::from_millis(8_500),
        "cut {took:?} after the stall, for a grace of 5 s and a block of 2 s"
    );
}

/// The example's routes: `/ready` answers from `Hub::health` (200, then 503
/// once Redis is gone, saying why); on a Redis that refuses the password it
/// is 503 from the start, a publish is a 500 and a subscribe a long retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_s_readiness_route_says_whether_and_why_not() {
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    assert_eq!(
        redis.command("ACL SETUSER app on >right ~* &* +@all"),
        "+OK\r\n"
    );
    let good = serve_example(&redis.url()).await;
    let wrong = serve_example(&format!("redis://app:wrong@127.0.0.1:{}", redis.port)).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = request(good, "GET", "/ready").await;
        if status == 200 {
            assert!(body.starts_with("healthy: reading from Redis"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "not ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, body) = request(wrong, "GET", "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("unhealthy: "), "{body}");
    assert!(body.contains("credentials"), "{body}");
    let (status, body) = request(wrong, "POST", "/publish/news").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("refuses its commands"), "{body}");
    let (status, body) = request(wrong, "GET", "/events/news").await;
    assert_eq!(status, 200, "{body}");
    let retry: u64 = body
        .lines()
        .find_map(|line| line.strip_prefix("retry: "))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a retry in {body:?}"));
    assert!((30_000..=60_000).contains(&retry), "{retry}");

    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = request(good, "GET", "/ready").await;
        if status == 503 {
            assert!(
                body.starts_with("unhealthy: not reading from Redis"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "still ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves the `scale_out` example on a free port with `redis`, until the
/// test ends.
async fn serve_example(redis: &str) -> SocketAddr {
    let port = common::nginx::free_port();
    let args = ["--port", &port.to_string(), "--redis", redis].map(String::from);
    let options = scale_out::Options::from_args(args.into_iter()).unwrap();
    tokio::spawn(async move {
        scale_out::serve(options, std::future::pending())
            .await
            .unwrap();
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the example did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    addr
}

/// Status and body of one request (an event stream is read to its end).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), common::client().request(request))
        .await
        .expect("an answer within 10 s")
        .expect("the request succeeded");
    let status = response.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the body ends within 10 s")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

//! Many instances, one stream, the way it is deployed: two processes of the
//! `scale_out` example on one real `redis-server`, behind a real nginx
//! upstream configured as docs/scaling-out.md says, read through nginx by
//! reconnecting clients that parse with an independent parser, while a
//! steady publisher writes to the topic and instance A, then Redis, are
//! killed with SIGKILL and started again; and a rolling restart (A down for
//! 2 s, then B) under 50 subscribers.
//!
//! The example binary is built by `cargo test` (the README's command);
//! nginx and redis-server come from the distribution's packages (missing
//! ones say SKIPPED, or fail with `TOWER_SSE_REQUIRE_NGINX=1` and
//! `TOWER_SSE_REQUIRE_REDIS=1`, which `.ci/run` sets).

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{
    nginx::{find_nginx, free_port, start_nginx, Nginx},
    redis_server::{Persistence, RedisServer},
};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyDataStream, Empty};
use tokio::task::JoinHandle;
use tower_sse::{hub::Hub, Event};

/// The parameters of each `server` line in the `upstream` of
/// docs/scaling-out.md ("Behind nginx"). `max_fails=0`: nginx counts a
/// failed server as working again only once a request through it completes,
/// and an event stream never completes, so with `max_fails=1` (nginx's
/// default) a rolling restart left both servers marked failed and nginx
/// answered 502 ("no live upstreams"), on which `EventSource` stops for good.
const SERVER_PARAMETERS: &str = "max_fails=0";

/// The `location` settings of docs/scaling-out.md: HTTP/1.1 and keep-alive
/// to the upstream, a read timeout longer than the keep-alive comments'
/// interval, and a dead upstream skipped at once (per connection, which is
/// what `max_fails=0` leaves to do the work).
const LOCATION: &str = "proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_read_timeout 1h;
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout;";

/// One process of the example, killed with SIGKILL when dropped.
struct Instance {
    child: Option<Child>,
    port: u16,
    redis: String,
}

fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let binary = target.join("examples").join("scale_out");
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test --all-features` builds it (or `cargo build --example \
         scale_out --features redis,axum`)",
        binary.display()
    );
    binary
}

impl Instance {
    fn start(port: u16, redis: &str) -> Self {
        let mut instance = Self {
            child: None,
            port,
            redis: redis.into(),
        };
        instance.restart();
        instance
    }

    fn restart(&mut self) {
        self.kill();
        let child = Command::new(example_binary())
            .args(["--port", &self.port.to_string(), "--redis", &self.redis])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !healthy(self.port) {
            assert!(Instant::now() < deadline, "the instance did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no final frame; connections just break.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

/// What one reconnecting client saw.
#[derive(Default, Debug)]
struct Log {
    /// The data of every message, in order.
    data: Vec<u32>,
    /// When each message arrived.
    arrived: Vec<Instant>,
    /// The reason of every gap event.
    gaps: Vec<String>,
    /// For each gap event, how many messages came before it.
    gap_positions: Vec<usize>,
    /// The instance that served each connection.
    instances: Vec<String>,
    /// When each stream ended or broke.
    breaks: Vec<Instant>,
    /// Every status other than 200 that a request got: `EventSource` stops
    /// reconnecting for good on any of them (a 204 is how a server asks it
    /// to).
    refused: Vec<u16>,
}

/// Reads `/events/news` through nginx like `EventSource`: on any end or
/// break, reconnects with the last event id it got (without waiting the
/// `retry:` the server asked for, to keep the test short). A status other
/// than 200 is logged; `EventSource` would stop there for good, this client
/// goes on trying, so that a test can say how long the outage lasted.
async fn client(url: String, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) {
    let client = common::client();
    let mut last_id: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut request = Request::get(&url);
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let response = match client.request(request.body(Empty::new()).unwrap()).await {
            Ok(response) if response.status() == 200 => response,
            Ok(response) => {
                log.lock().unwrap().refused.push(response.status().as_u16());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let instance = response
            .headers()
            .get("x-instance")
            .map_or("?".into(), |value| value.to_str().unwrap().to_owned());
        log.lock().unwrap().instances.push(instance);
        let mut events = BodyDataStream::new(response.into_body()).eventsource();
        while let Some(Ok(event)) = events.next().await {
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            let mut log = log.lock().unwrap();
            match event.event.as_str() {
                "message" => {
                    log.data.push(event.data.parse().expect("a number"));
                    log.arrived.push(Instant::now());
                }
                "gap" => {
                    let gap: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                    log.gaps.push(gap["reason"].as_str().unwrap().to_owned());
                    let position = log.data.len();
                    log.gap_positions.push(position);
                }
                _ => {}
            }
        }
        if !stop.load(Ordering::Relaxed) {
            log.lock().unwrap().breaks.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count` clients of `url`, each with its log, stopped by `stop`.
fn spawn_clients(
    url: &str,
    count: usize,
    stop: &Arc<AtomicBool>,
) -> (Vec<Arc<Mutex<Log>>>, Vec<JoinHandle<()>>) {
    let logs: Vec<Arc<Mutex<Log>>> = (0..count).map(|_| Arc::default()).collect();
    let clients = logs
        .iter()
        .map(|log| tokio::spawn(client(url.into(), log.clone(), stop.clone())))
        .collect();
    (logs, clients)
}

/// Waits until every client has a stream open through nginx.
async fn all_connected(logs: &[Arc<Mutex<Log>>]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs
        .iter()
        .any(|log| log.lock().unwrap().instances.is_empty())
    {
        assert!(Instant::now() < deadline, "clients connect through nginx");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `limit`) until every client got event `last`; says whether
/// they all did.
async fn all_got(logs: &[Arc<Mutex<Log>>], last: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if logs
            .iter()
            .all(|log| log.lock().unwrap().data.last() == Some(&last))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The logs, taken out of their locks.
fn take_logs(logs: Vec<Arc<Mutex<Log>>>) -> Vec<Log> {
    logs.into_iter()
        .map(|log| std::mem::take(&mut *log.lock().unwrap()))
        .collect()
}

/// Events acknowledged by Redis, with when.
type Acked = Arc<Mutex<Vec<(u32, Instant)>>>;

/// A worker on the same Redis publishing 1, 2, ... every 10 ms.
async fn publisher(hub: Hub, acked: Acked, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if hub
            .publish("news", Event::new().data(n.to_string()))
            .await
            .is_ok()
        {
            acked.lock().unwrap().push((n, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Redis, instances A and B of the example on it, and nginx in front of
/// them with the settings of docs/scaling-out.md; dropped in this order.
struct Deployment {
    nginx: Nginx,
    a: Instance,
    b: Instance,
    redis: RedisServer,
    /// The topic's URL through nginx.
    url: String,
}

/// Starts a [`Deployment`], or `None` when nginx or redis-server is missing
/// (and allowed to be).
fn deploy(persistence: Persistence) -> Option<Deployment> {
    let nginx_binary = find_nginx();
    if !common::tool_available("nginx", nginx_binary.as_deref(), common::nginx::REQUIRE) {
        return None;
    }
    let redis = RedisServer::start(persistence)?;
    let a = Instance::start(free_port(), &redis.url());
    let b = Instance::start(free_port(), &redis.url());
    let nginx = start_nginx(
        &nginx_binary.unwrap(),
        &[
            format!("127.0.0.1:{}", a.port).parse().unwrap(),
            format!("127.0.0.1:{}", b.port).parse().unwrap(),
        ],
        SERVER_PARAMETERS,
        LOCATION,
    );
    let url = format!("http://{}/events/news", nginx.addr);
    Some(Deployment {
        nginx,
        a,
        b,
        redis,
        url,
    })
}

/// Kills instance A, starts it again, kills Redis and starts it again,
/// under a steady publish and four clients reading through nginx; returns
/// what the clients saw, what was acknowledged, and when Redis was killed
/// and came back.
async fn run(
    persistence: Persistence,
) -> Option<(Vec<Log>, Vec<(u32, Instant)>, Instant, Instant)> {
    let Deployment {
        nginx,
        mut a,
        b,
        mut redis,
        url,
    } = deploy(persistence)?;
    let worker = Hub::builder().redis(redis.url()).build().unwrap();
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let (logs, clients) = spawn_clients(&url, 4, &stop_reading);
    // Every client connected before anything is published.
    all_connected(&logs).await;
    let publishing = tokio::spawn(publisher(worker, acked.clone(), stop_publishing.clone()));
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    pause(500).await;
    a.kill();
    pause(700).await;
    tokio::task::block_in_place(|| a.restart());
    pause(700).await;
    let redis_killed = Instant::now();
    redis.kill();
    pause(500).await;
    tokio::task::block_in_place(|| redis.restart());
    let redis_back = Instant::now();
    pause(1500).await;
    stop_publishing.store(true, Ordering::Relaxed);
    publishing.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let last = acked.last().expect("something was acknowledged").0;
    assert!(
        all_got(&logs, last, Duration::from_secs(20)).await,
        "every client gets the last event: {:?}",
        logs.iter()
            .map(|log| log.lock().unwrap().data.last().copied())
            .collect::<Vec<_>>()
    );
    stop_reading.store(true, Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    drop((nginx, a, b));
    let logs = take_logs(logs);
    let published = acked.last().map_or(0, |(n, _)| *n);
    eprintln!(
        "{persistence:?}: {} of {published} publishes acknowledged",
        acked.len()
    );
    for (n, log) in logs.iter().enumerate() {
        eprintln!(
            "client {n}: {} events, gaps {:?}, served by {:?}",
            log.data.len(),
            log.gaps,
            log.instances
        );
    }
    Some((logs, acked, redis_killed, redis_back))
}

fn assert_in_order_and_moved(logs: &[Log], a_and_b: usize) {
    for (n, log) in logs.iter().enumerate() {
        assert!(
            log.data.windows(2).all(|w| w[0] < w[1]),
            "client {n}: every event once, in order: {:?}",
            log.data
        );
        assert_eq!(
            log.refused,
            Vec::<u16>::new(),
            "client {n}: no status on which EventSource stops for good"
        );
    }
    let instances: std::collections::HashSet<&String> =
        logs.iter().flat_map(|log| &log.instances).collect();
    assert_eq!(
        instances.len(),
        a_and_b,
        "both instances served: {instances:?}"
    );
    let reconnects: usize = logs.iter().map(|log| log.instances.len() - 1).sum();
    assert!(reconnects >= 2, "clients of A reconnected: {logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_fsynced_log_no_client_loses_an_acknowledged_event() {
    let Some((logs, acked, _, _)) = run(Persistence::AppendFsyncAlways).await else {
        return;
    };
    assert_in_order_and_moved(&logs, 2);
    for (n, log) in logs.iter().enumerate() {
        assert_eq!(log.gaps, Vec::<String>::new(), "client {n}: no gap");
        let missing: Vec<u32> = acked
            .iter()
            .map(|(event, _)| *event)
            .filter(|event| log.data.binary_search(event).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "client {n} lost acknowledged events {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persistence_clients_get_a_gap_event_and_lose_nothing_else() {
    let Some((logs, acked, killed, back)) = run(Persistence::None).await else {
        return;
    };
    assert_in_order_and_moved(&logs, 2);
    for (n, log) in logs.iter().enumerate() {
        assert!(
            log.gaps.iter().any(|reason| reason == "restarted"),
            "client {n} was told of the loss: {:?}",
            log.gaps
        );
        // What Redis held before it was killed (less the last 100 ms, which
        // it may have lost before the instances read it) and everything
        // after it came back arrives.
        let missing: Vec<u32> = acked
            .iter()
            .filter(|(_, at)| *at + Duration::from_millis(100) < killed || *at > back)
            .map(|(event, _)| *event)
            .filter(|event| log.data.binary_search(event).is_err())
            .collect();
        assert!(missing.is_empty(), "client {n} lost {missing:?}");
    }
}

/// Every event once and in order, and every acknowledged event that did not
/// arrive announced: a gap event came where it would have been.
fn assert_no_silent_loss(n: usize, log: &Log, acked: &[(u32, Instant)]) {
    assert!(
        log.data.windows(2).all(|w| w[0] < w[1]),
        "client {n}: every event once, in order: {:?}",
        log.data
    );
    let silent: Vec<u32> = acked
        .iter()
        .map(|(event, _)| *event)
        .filter(|event| log.data.binary_search(event).is_err())
        .filter(|event| {
            let at = log.data.partition_point(|received| received < event);
            !log.gap_positions.contains(&at)
        })
        .collect();
    assert!(
        silent.is_empty(),
        "client {n} lost acknowledged events without a gap event: {silent:?}"
    );
}

/// For each break of a client's stream, how long until its next event
/// arrived (`None`: none did).
fn back_after(log: &Log) -> Vec<Option<Duration>> {
    log.breaks
        .iter()
        .map(|at| {
            let next = log.arrived.partition_point(|arrived| arrived <= at);
            log.arrived.get(next).map(|arrived| *arrived - *at)
        })
        .collect()
}

/// The rolling restart of a deploy: instance A killed, down 2 s, started
/// again; once it is healthy, the same for B; under 50 subscribers reading
/// through nginx and a publisher writing every 10 ms. With `max_fails=1
/// fail_timeout=1s` in place of [`SERVER_PARAMETERS`] it fails: 21,784
/// responses 502, half the clients back only after 25 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_stops_no_subscriber_and_loses_nothing() {
    let Some(Deployment {
        nginx,
        mut a,
        mut b,
        redis,
        url,
    }) = deploy(Persistence::None)
    else {
        return;
    };
    let worker = Hub::builder().redis(redis.url()).build().unwrap();
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let (logs, clients) = spawn_clients(&url, 50, &stop_reading);
    all_connected(&logs).await;
    let publishing = tokio::spawn(publisher(worker, acked.clone(), stop_publishing.clone()));
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    let started = Instant::now();
    pause(1000).await;
    for instance in [&mut a, &mut b] {
        instance.kill();
        pause(2000).await;
        // Back when it answers its health check.
        tokio::task::block_in_place(|| instance.restart());
    }
    pause(2000).await;
    stop_publishing.store(true, Ordering::Relaxed);
    publishing.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let last = acked.last().expect("something was acknowledged").0;
    // Long enough to tell slow from never (the assertions below say which).
    all_got(&logs, last, Duration::from_secs(30)).await;
    let ended = Instant::now();
    stop_reading.store(true, Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    let no_live_upstreams = nginx.error_log().matches("no live upstreams").count();
    drop((nginx, a, b));
    let logs = take_logs(logs);

    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    for status in logs.iter().flat_map(|log| &log.refused) {
        *refused.entry(*status).or_default() += 1;
    }
    let backs: Vec<Vec<Option<Duration>>> = logs.iter().map(back_after).collect();
    let slowest = |backs: &[Option<Duration>], log: &Log| -> Duration {
        backs
            .iter()
            .zip(&log.breaks)
            .map(|(back, at)| back.unwrap_or(ended - *at))
            .max()
            .unwrap_or_default()
    };
    let never = backs.iter().flatten().filter(|back| back.is_none()).count();
    let mut slowest_per_client: Vec<Duration> = backs
        .iter()
        .zip(&logs)
        .map(|(backs, log)| slowest(backs, log))
        .collect();
    slowest_per_client.sort();
    eprintln!(
        "rolling restart: {} of {last} publishes acknowledged; {} breaks; statuses other than \
         200 {refused:?}; nginx logged \"no live upstreams\" {no_live_upstreams} times; back \
         after a break: median client {:?}, slowest client {:?}, {never} breaks never back \
         (test {:?} from the first publish)",
        acked.len(),
        logs.iter().map(|log| log.breaks.len()).sum::<usize>(),
        slowest_per_client[slowest_per_client.len() / 2],
        slowest_per_client.last().unwrap(),
        ended - started,
    );

    assert!(
        refused.is_empty(),
        "nginx answered with statuses on which EventSource stops for good: {refused:?}"
    );
    for (n, (log, backs)) in logs.iter().zip(&backs).enumerate() {
        assert!(
            !log.breaks.is_empty(),
            "client {n}: its instance went down, so its stream broke"
        );
        assert!(
            backs
                .iter()
                .all(|back| back.is_some_and(|back| back < Duration::from_secs(5))),
            "client {n}: back within 5 s of each break: {backs:?}"
        );
        assert_no_silent_loss(n, log, &acked);
    }
    drop(redis);
}

//! Many instances, one stream, the way it is deployed: two processes of the
//! `scale_out` example on one real `redis-server`, behind a real nginx
//! upstream, read through nginx by reconnecting clients that parse with an
//! independent parser, while a steady publisher writes to the topic and
//! instance A, then Redis, are killed with SIGKILL and started again.
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
    nginx::{find_nginx, free_port, start_nginx},
    redis_server::{Persistence, RedisServer},
};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyDataStream, Empty};
use tower_sse::{hub::Hub, Event};

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
         scale_out --features redis,axum,util`)",
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
    /// The reason of every gap event.
    gaps: Vec<String>,
    /// The instance that served each connection.
    instances: Vec<String>,
}

/// Reads `/events/news` through nginx like `EventSource`: on any end or
/// break, reconnects with the last event id it got (without waiting the
/// `retry:` the server asked for, to keep the test short).
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
            _ => {
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
                "message" => log.data.push(event.data.parse().expect("a number")),
                "gap" => {
                    let gap: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                    log.gaps.push(gap["reason"].as_str().unwrap().to_owned());
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// Kills instance A, starts it again, kills Redis and starts it again,
/// under a steady publish and four clients reading through nginx; returns
/// what the clients saw, what was acknowledged, and when Redis was killed
/// and came back.
async fn run(
    persistence: Persistence,
) -> Option<(Vec<Log>, Vec<(u32, Instant)>, Instant, Instant)> {
    let nginx_binary = find_nginx();
    if !common::tool_available("nginx", nginx_binary.as_deref(), common::nginx::REQUIRE) {
        return None;
    }
    let mut redis = RedisServer::start(persistence)?;
    let mut a = Instance::start(free_port(), &redis.url());
    let b = Instance::start(free_port(), &redis.url());
    // The settings that matter for event streams behind nginx: HTTP/1.1 and
    // keep-alive to the upstream, a read timeout longer than the keep-alive
    // comments' interval, and a dead upstream skipped at once.
    let nginx = start_nginx(
        &nginx_binary.unwrap(),
        &[
            format!("127.0.0.1:{}", a.port).parse().unwrap(),
            format!("127.0.0.1:{}", b.port).parse().unwrap(),
        ],
        "max_fails=1 fail_timeout=1s",
        "proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_read_timeout 1h;
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout;",
    );
    let url = format!("http://{}/events/news", nginx.addr);
    let worker = Hub::builder().redis(redis.url()).build().unwrap();
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let logs: Vec<Arc<Mutex<Log>>> = (0..4).map(|_| Arc::default()).collect();
    let clients: Vec<_> = logs
        .iter()
        .map(|log| tokio::spawn(client(url.clone(), log.clone(), stop_reading.clone())))
        .collect();
    // Every client connected before anything is published.
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs
        .iter()
        .any(|log| log.lock().unwrap().instances.is_empty())
    {
        assert!(Instant::now() < deadline, "clients connect through nginx");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while logs
        .iter()
        .any(|log| log.lock().unwrap().data.last() != Some(&last))
    {
        assert!(
            Instant::now() < deadline,
            "every client gets the last event: {:?}",
            logs.iter()
                .map(|log| log.lock().unwrap().data.last().copied())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_reading.store(true, Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    drop((nginx, a, b));
    let logs: Vec<Log> = logs
        .into_iter()
        .map(|log| std::mem::take(&mut *log.lock().unwrap()))
        .collect();
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

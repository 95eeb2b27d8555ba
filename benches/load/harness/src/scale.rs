//! `load redis`: the hub on Redis Streams beside the memory hub, in one run.
//!
//! - Cross-instance delivery: three setups at once, taking turns of
//!   publishing: one memory-hub instance with `2 x each` subscribers;
//!   instances A and B on one `redis-server` with `each` subscribers each,
//!   events published on A; one Redis-hub instance with `2 x each` (the
//!   backend's cost without a second process). Latency (receive time minus
//!   the send time the event carries) and server CPU per delivery, counted
//!   during each setup's turns (both instances' CPU; Redis's own apart).
//!   A and B run `instance_workers` tokio worker threads each (1: together
//!   the two the single instances have on a 2-core machine).
//! - Publish throughput to one topic from one publisher: one publish at a
//!   time, and 64 in flight (the Redis client pipelines them on one
//!   connection).
//! - Redis memory per retained event (`MEMORY USAGE` of the topic's stream
//!   over its length).
//!
//! The harness starts `redis-server` itself (Debian's package) on a free
//! loopback port, without persistence.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use load_common::now_ns;

use crate::{
    client, measure,
    report::quantile,
    servers::{Kind, Server, Servers},
    Error,
};

/// What one invocation measures.
pub struct Plan {
    pub reps: usize,
    /// Subscribers on each instance.
    pub each: usize,
    /// Events per delivery measurement, and per second.
    pub events: u64,
    pub rate: f64,
    /// Events each setup publishes in its turn.
    pub turn: u64,
    /// Tokio worker threads of each of the two instances A and B.
    pub instance_workers: usize,
    /// Events per throughput measurement.
    pub throughput: u64,
    /// Events retained for the memory measurement.
    pub retained: u64,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            reps: 3,
            each: 1_000,
            events: 500,
            rate: 100.0,
            turn: 50,
            instance_workers: 1,
            throughput: 20_000,
            retained: 10_000,
        }
    }

    pub fn smoke() -> Self {
        Self {
            reps: 1,
            each: 20,
            events: 20,
            rate: 100.0,
            turn: 10,
            instance_workers: 1,
            throughput: 500,
            retained: 500,
        }
    }
}

/// A `redis-server` on a free loopback port, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Result<Self, Error> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                format!("cannot start redis-server (apt-get install redis-server): {error}")
            })?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.command("PING").ok().as_deref() != Some("+PONG\r\n") {
            if Instant::now() > deadline {
                return Err("redis-server did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn command(&self, line: &str) -> Result<String, Error> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{line}\r\n").as_bytes())?;
        let mut reply = vec![0; 4096];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    /// An integer reply.
    fn integer(&self, line: &str) -> Result<u64, Error> {
        let reply = self.command(line)?;
        reply
            .strip_prefix(':')
            .and_then(|rest| rest.trim().parse().ok())
            .ok_or_else(|| format!("{line}: {reply:?}").into())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Delivery {
    latencies_ns: Vec<u64>,
    expected: u64,
    /// Server CPU (all instances) per delivery.
    cpu_ns: f64,
    /// Redis's CPU per delivery.
    redis_cpu_ns: f64,
}

/// Reads `k` messages (skipping the position event) until the deadline;
/// returns their latencies.
async fn read_messages(body: Incoming, k: u64, deadline: tokio::time::Instant) -> Vec<u64> {
    let mut events = body.into_data_stream().eventsource();
    let mut latencies = Vec::with_capacity(k as usize);
    while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, events.next()).await {
        let received = now_ns();
        if event.event != "message" {
            continue;
        }
        if let Ok(sent) = event.data.parse::<u64>() {
            latencies.push(received.saturating_sub(sent));
        }
        if latencies.len() as u64 >= k {
            break;
        }
    }
    latencies
}

/// One setup of a delivery measurement: its instances (events are
/// published on the first) and how many subscribers each has.
struct Setup<'a> {
    instances: Vec<&'a Server>,
    subscribers: usize,
    on_redis: bool,
}

/// The setups' streams opened, then `k` events for each, published at
/// `rate` in turns of `turn` events, setup after setup: the setups share
/// the machine's state of the moment (this machine is shared, and its
/// noise moves between seconds), and each is measured only while it is
/// the one publishing.
async fn deliver(
    setups: &[Setup<'_>],
    k: u64,
    turn: u64,
    rate: f64,
    redis: &Redis,
) -> Result<Vec<Delivery>, Error> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let deadline = tokio::time::Instant::now()
        + period * (k * setups.len() as u64) as u32
        + Duration::from_secs(60);
    let mut readers = Vec::new();
    let mut publishers = Vec::new();
    for setup in setups {
        let mut bodies = Vec::new();
        for server in &setup.instances {
            bodies.extend(client::open_streams(server.addr, "/sse/live", setup.subscribers).await?);
        }
        readers.push(
            bodies
                .into_iter()
                .map(|body| tokio::spawn(read_messages(body, k, deadline)))
                .collect::<Vec<_>>(),
        );
        publishers.push(client::connect(setup.instances[0].addr).await?);
    }
    // Every instance reads the topic before the first publish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = |servers: &[&Server]| -> Result<u64, Error> {
        servers
            .iter()
            .map(|server| Ok(measure::cpu_ns(server.pid())?))
            .sum()
    };
    let mut spent = vec![(0u64, 0u64); setups.len()];
    let mut published = 0;
    while published < k {
        let now = turn.min(k - published);
        for (n, setup) in setups.iter().enumerate() {
            let before = (cpu(&setup.instances)?, measure::cpu_ns(redis.child.id())?);
            let mut ticks = tokio::time::interval(period);
            for _ in 0..now {
                ticks.tick().await;
                client::publish(&mut publishers[n], 1).await?;
            }
            // The last event of the turn delivered before the next turn.
            tokio::time::sleep(Duration::from_millis(100)).await;
            spent[n].0 += cpu(&setup.instances)? - before.0;
            if setup.on_redis {
                spent[n].1 += measure::cpu_ns(redis.child.id())? - before.1;
            }
        }
        published += now;
    }
    let mut deliveries = Vec::new();
    for ((setup, reading), (cpu_ns, redis_ns)) in setups.iter().zip(readers).zip(spent) {
        let mut latencies_ns = Vec::new();
        for reader in reading {
            latencies_ns.extend(reader.await?);
        }
        let delivered = latencies_ns.len().max(1) as f64;
        deliveries.push(Delivery {
            expected: k * (setup.subscribers * setup.instances.len()) as u64,
            cpu_ns: cpu_ns as f64 / delivered,
            redis_cpu_ns: redis_ns as f64 / delivered,
            latencies_ns,
        });
    }
    Ok(deliveries)
}

/// Events per second of one publisher: `count` events, `inflight` at once.
async fn throughput(server: &Server, count: u64, inflight: usize) -> Result<f64, Error> {
    let mut publisher = client::connect(server.addr).await?;
    let started = Instant::now();
    let path = format!("/publish?count={count}&inflight={inflight}");
    let response = client::send(&mut publisher, Method::POST, &path).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != 200 {
        return Err(format!("POST {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Every run's value, in order.
fn runs(values: &[f64]) -> String {
    let values: Vec<String> = values.iter().map(|value| format!("{value:.2}")).collect();
    values.join(", ")
}

fn ms(latencies: &[u64], q: f64) -> f64 {
    quantile(latencies, q).map_or(f64::NAN, |ns| ns as f64 / 1e6)
}

/// Runs the plan; prints one table; returns whether the goals were met.
pub async fn run(servers: &Servers, plan: &Plan) -> Result<bool, Error> {
    let redis = Redis::start()?;
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let mut add = |name: &str, value: f64| match rows.iter_mut().find(|(row, _)| row == name) {
        Some((_, values)) => values.push(value),
        None => rows.push((name.to_owned(), vec![value])),
    };
    let mut ratios = Vec::new();
    let mut p99_excess = Vec::new();
    for rep in 0..plan.reps {
        // Three setups, all running at once, taking turns: the memory hub,
        // two instances on Redis, one instance on Redis (what the backend
        // costs without the second process; its own Redis database, so
        // that it does not read A's topic).
        let mut this_rep = [None, None];
        servers.hub_redis.replace(None);
        let memory = servers.start(Kind::Hub)?;
        servers.hub_redis.replace(Some(redis.url()));
        // Two instances share the machine's two cores: one worker thread
        // each, as the one instance has two.
        servers.hub_workers.set(Some(plan.instance_workers));
        let a = servers.start(Kind::Hub)?;
        let b = servers.start(Kind::Hub)?;
        servers.hub_workers.set(None);
        servers
            .hub_redis
            .replace(Some(format!("{}/1", redis.url())));
        let single = servers.start(Kind::Hub)?;
        servers.hub_redis.replace(None);
        let mut setups = vec![
            Setup {
                instances: vec![&memory],
                subscribers: 2 * plan.each,
                on_redis: false,
            },
            Setup {
                instances: vec![&a, &b],
                subscribers: plan.each,
                on_redis: true,
            },
            Setup {
                instances: vec![&single],
                subscribers: 2 * plan.each,
                on_redis: true,
            },
        ];
        setups.rotate_left(rep % 3);
        let deliveries = deliver(&setups, plan.events, plan.turn, plan.rate, &redis).await?;
        for (setup, delivery) in setups.iter().zip(deliveries) {
            let index = match (setup.on_redis, setup.instances.len()) {
                (false, _) => 0,
                (true, 2) => 1,
                _ => 2,
            };
            let mut latencies = delivery.latencies_ns.clone();
            latencies.sort_unstable();
            let name = match index {
                1 => format!("redis, {} subscribers on each of A and B", plan.each),
                2 => format!("redis, {} subscribers on one instance", 2 * plan.each),
                _ => format!("memory, {} subscribers on one instance", 2 * plan.each),
            };
            add(
                &format!("{name}: delivered (%)"),
                100.0 * latencies.len() as f64 / delivery.expected as f64,
            );
            add(&format!("{name}: latency p50 (ms)"), ms(&latencies, 0.5));
            add(&format!("{name}: latency p99 (ms)"), ms(&latencies, 0.99));
            add(
                &format!("{name}: server CPU per delivery (ns)"),
                delivery.cpu_ns,
            );
            if setup.on_redis {
                add(
                    &format!("{name}: redis-server CPU per delivery (ns)"),
                    delivery.redis_cpu_ns,
                );
            }
            if index < 2 {
                this_rep[index] = Some((delivery.cpu_ns, ms(&latencies, 0.99)));
            }
        }
        drop(setups);
        drop((memory, a, b, single));
        servers.hub_redis.replace(None);
        if let [Some((memory_cpu, memory_p99)), Some((redis_cpu, redis_p99))] = this_rep {
            ratios.push(redis_cpu / memory_cpu);
            p99_excess.push(redis_p99 - memory_p99);
        }
        for on_redis in [false, true] {
            servers.hub_redis.replace(on_redis.then(|| redis.url()));
            let server = servers.start(Kind::Hub)?;
            let backend = if on_redis { "redis" } else { "memory" };
            for inflight in [1, 64] {
                let rate = throughput(&server, plan.throughput, inflight).await?;
                add(
                    &format!(
                        "publish {} events, {inflight} in flight, {backend}: events/s",
                        plan.throughput
                    ),
                    rate,
                );
            }
        }
        servers.hub_redis.replace(None);
    }
    // Memory per retained event: a fresh topic of `retained` events.
    servers.hub_redis.replace(Some(redis.url()));
    servers.hub_history.set(Some(plan.retained as usize));
    let server = servers.start(Kind::Hub)?;
    redis.command("DEL tower-sse:live")?;
    let mut publisher = client::connect(server.addr).await?;
    client::publish(&mut publisher, plan.retained).await?;
    let len = redis.integer("XLEN tower-sse:live")?;
    let bytes = redis.integer("MEMORY USAGE tower-sse:live SAMPLES 0")?;
    drop(server);
    servers.hub_redis.replace(None);
    servers.hub_history.set(None);

    println!("\n| measurement | median | runs |\n|---|---|---|");
    for (name, values) in &mut rows {
        // Every run in its order, before the median sorts them.
        let each = runs(values);
        println!("| {name} | {:.2} | {each} |", median(values));
    }
    println!(
        "| redis memory per retained event ({len} entries of {} published; each holds a \
         `data:` line of 26 B and a previous id of ~15 B) | {:.1} B | 1 |",
        plan.retained,
        bytes as f64 / len.max(1) as f64
    );
    let cpu_ratio = median(&mut ratios);
    let excess = median(&mut p99_excess);
    println!(
        "\nredis / memory CPU per delivery, same run: {cpu_ratio:.2}x (runs: {})",
        runs(&ratios)
    );
    println!(
        "redis p99 - memory p99: {excess:.2} ms (runs: {})",
        runs(&p99_excess)
    );
    let met = cpu_ratio <= 1.3 && excess <= 5.0;
    println!(
        "goals (CPU <= 1.3x memory, p99 <= memory p99 + 5 ms): {}",
        if met { "met" } else { "MISSED" }
    );
    Ok(met)
}

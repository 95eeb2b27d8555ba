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
//! - Many topics (issue 24): one instance with N topics (`t0`..), each
//!   with one subscriber (a stream per topic), and 100 publishes a second
//!   spread round-robin over them for a bounded time: Redis's CPU (per
//!   second of wall time and per published event), delivery latency and
//!   server CPU per delivery. Then more instances, each holding every
//!   topic in sets of 64 (`/sse/topics`: 10,000 streams per instance would
//!   not fit the open-file limit), to see Redis's cost per event grow with
//!   the instances that read each topic.
//!
//! The harness starts `redis-server` itself (Debian's package) on a free
//! loopback port, without persistence.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use eventsource_stream::{EventStream, Eventsource};
use futures_util::StreamExt;
use http::Method;
use http_body_util::{BodyDataStream, BodyExt};
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
    /// Topic counts of the many-topics measurement (none: skipped).
    pub topics: Vec<usize>,
    /// Instances reading every topic, in ascending order (the first has a
    /// stream per topic; the others are added to it, holding the topics
    /// in sets).
    pub instances: Vec<usize>,
    /// How long the many-topics measurement publishes, and how many
    /// events a second.
    pub topic_seconds: f64,
    pub topic_rate: f64,
    /// Only the many-topics measurement.
    pub topics_only: bool,
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
            topics: vec![100, 1_000, 10_000],
            instances: vec![1, 2, 4],
            topic_seconds: 20.0,
            topic_rate: 100.0,
            topics_only: false,
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
            topics: vec![10, 100],
            instances: vec![1, 2],
            topic_seconds: 2.0,
            topic_rate: 100.0,
            topics_only: false,
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
        if plan.topics_only {
            break;
        }
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
    let mut retained = None;
    if !plan.topics_only {
        retained = Some(retained_bytes(servers, &redis, plan).await?);
    }
    // Many topics: per repetition, each topic count with each number of
    // instances (the order of the topic counts rotated).
    let mut topic_goals = TopicGoals::default();
    for rep in 0..plan.reps {
        let mut counts = plan.topics.clone();
        if !counts.is_empty() {
            let len = counts.len();
            counts.rotate_left(rep % len);
        }
        let mut per_event = Vec::new();
        for &topics in &counts {
            let runs = many_topics(servers, &redis, topics, plan).await?;
            for run in runs {
                let name = if run.instances == 1 {
                    format!("topics, {topics} x 1 stream each, 1 instance")
                } else {
                    format!(
                        "topics, {topics} x 1 stream each on A, {} more instance{} holding all \
                         {topics} in sets of {SET}",
                        run.instances - 1,
                        if run.instances == 2 { "" } else { "s" }
                    )
                };
                add(&format!("{name}: delivered (%)"), run.delivered_percent);
                add(
                    &format!("{name}: latency p50 (ms), streams on A"),
                    run.p50_ms,
                );
                add(
                    &format!("{name}: latency p99 (ms), streams on A"),
                    run.p99_ms,
                );
                add(
                    &format!("{name}: server CPU per delivery (ns), all instances"),
                    run.server_cpu_ns,
                );
                add(
                    &format!("{name}: server CPU while quiet, before (% of a core), all instances"),
                    run.quiet_server,
                );
                add(
                    &format!("{name}: redis-server CPU (% of a core)"),
                    run.redis_percent,
                );
                add(
                    &format!("{name}: redis-server CPU while quiet, before (% of a core)"),
                    run.quiet_percent,
                );
                add(
                    &format!("{name}: redis-server CPU per published event (µs)"),
                    run.redis_us_per_event,
                );
                if run.instances == 1 {
                    per_event.push((topics, run.redis_us_per_event));
                    if Some(&topics) == plan.topics.iter().max() {
                        topic_goals.widest_percent.push(run.redis_percent);
                        topic_goals.widest_p99.push(run.p99_ms);
                    }
                }
            }
        }
        let narrowest = plan.topics.iter().min();
        let widest = plan.topics.iter().max();
        let of = |count: Option<&usize>| {
            per_event
                .iter()
                .find(|(topics, _)| Some(topics) == count)
                .map(|(_, us)| *us)
        };
        if let (Some(narrow), Some(wide)) = (of(narrowest), of(widest)) {
            topic_goals.growth.push(wide / narrow);
        }
    }

    println!("\n| measurement | median | runs |\n|---|---|---|");
    for (name, values) in &mut rows {
        // Every run in its order, before the median sorts them.
        let each = runs(values);
        println!("| {name} | {:.2} | {each} |", median(values));
    }
    let mut met = true;
    if let Some((len, bytes)) = retained {
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
        met = cpu_ratio <= 1.3 && excess <= 5.0;
        println!(
            "goals (CPU <= 1.3x memory, p99 <= memory p99 + 5 ms): {}",
            if met { "met" } else { "MISSED" }
        );
    }
    if let (Some(narrowest), Some(widest)) = (plan.topics.iter().min(), plan.topics.iter().max()) {
        met &= topic_goals.print(*narrowest, *widest);
    }
    Ok(met)
}

/// Redis memory per retained event: a fresh topic of `retained` events;
/// the stream's length and `MEMORY USAGE`.
async fn retained_bytes(
    servers: &Servers,
    redis: &Redis,
    plan: &Plan,
) -> Result<(u64, u64), Error> {
    servers.hub_redis.replace(Some(redis.url()));
    servers.hub_history.set(Some(plan.retained as usize));
    let server = servers.start(Kind::Hub)?;
    redis.command("DEL tower-sse:{live}")?;
    let mut publisher = client::connect(server.addr).await?;
    client::publish(&mut publisher, plan.retained).await?;
    let len = redis.integer("XLEN tower-sse:{live}")?;
    let bytes = redis.integer("MEMORY USAGE tower-sse:{live} SAMPLES 0")?;
    drop(server);
    servers.hub_redis.replace(None);
    servers.hub_history.set(None);
    Ok((len, bytes))
}

/// Topics in each set of the extra instances' streams (the hub's default
/// `max_topics_per_subscription`).
const SET: usize = 64;

/// The goals of the many-topics measurement, each run's figure.
#[derive(Default)]
struct TopicGoals {
    /// Redis CPU (% of a core) and p99 (ms) at the most topics, one
    /// instance.
    widest_percent: Vec<f64>,
    widest_p99: Vec<f64>,
    /// Redis CPU per published event at the most topics over the fewest,
    /// one instance, within each repetition.
    growth: Vec<f64>,
}

impl TopicGoals {
    /// Prints the goals; returns whether they were met.
    fn print(&mut self, narrowest: usize, widest: usize) -> bool {
        let percent = median(&mut self.widest_percent);
        let p99 = median(&mut self.widest_p99);
        let growth = median(&mut self.growth);
        let goals = [
            (
                format!("at {widest} topics, redis-server CPU <= 5 % of a core"),
                percent,
                format!("{percent:.2} % (runs: {})", runs(&self.widest_percent)),
                percent <= 5.0,
            ),
            (
                format!("at {widest} topics, p99 <= 20 ms"),
                p99,
                format!("{p99:.2} ms (runs: {})", runs(&self.widest_p99)),
                p99 <= 20.0,
            ),
            (
                format!(
                    "redis-server CPU per published event at {widest} topics <= 1.5x at {narrowest}"
                ),
                growth,
                format!("{growth:.2}x (runs: {})", runs(&self.growth)),
                growth <= 1.5,
            ),
        ];
        println!("\n| many-topics goal (one instance) | median | result |\n|---|---|---|");
        let mut met = true;
        for (goal, value, shown, ok) in goals {
            // NaN (not measured) is not met.
            let ok = ok && !value.is_nan();
            met &= ok;
            println!(
                "| {goal} | {shown} | {} |",
                if ok { "met" } else { "MISSED" }
            );
        }
        met
    }
}

/// One configuration of the many-topics measurement.
struct TopicsRun {
    instances: usize,
    delivered_percent: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_ns: f64,
    redis_percent: f64,
    /// Redis's CPU before the first publish, topics held.
    quiet_percent: f64,
    /// The instances' CPU then, summed.
    quiet_server: f64,
    redis_us_per_event: f64,
}

/// An open stream of the many-topics measurement: a topic's own on
/// instance A, or the `n`-th set of `SET` topics (`t{n*SET}`..) on an
/// instance added to it.
struct Held {
    events: EventStream<BodyDataStream<Incoming>>,
    set: bool,
    n: usize,
}

impl Held {
    fn new(body: Incoming, set: bool, n: usize) -> Self {
        Self {
            events: body.into_data_stream().eventsource(),
            set,
            n,
        }
    }
}

/// Reads events until `k` of the topics' own have come or the deadline;
/// their latencies, and the stream, still open. A topic's stream types
/// them `message`; a set's by their topic (`t12`). The hub's own events
/// (position, gap) are skipped.
async fn read_topic_events(
    mut held: Held,
    k: u64,
    deadline: tokio::time::Instant,
) -> (Held, Vec<u64>) {
    let mut latencies = Vec::with_capacity(k as usize);
    while (latencies.len() as u64) < k {
        let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, held.events.next()).await
        else {
            break;
        };
        let received = now_ns();
        let ours = if held.set {
            event.event.starts_with('t')
        } else {
            event.event == "message"
        };
        if let (true, Ok(sent)) = (ours, event.data.parse::<u64>()) {
            latencies.push(received.saturating_sub(sent));
        }
    }
    (held, latencies)
}

/// `topics` topics on a fresh Redis, a stream for each on instance A;
/// `published` events go round-robin from `t0`: how many topic `t` gets.
fn share(published: u64, topics: usize, t: usize) -> u64 {
    published / topics as u64 + u64::from((t as u64) < published % topics as u64)
}

/// The many-topics measurement at `topics` topics, once for each count of
/// instances in `plan.instances` (ascending; instances are added to the
/// running ones, and every stream stays open throughout).
async fn many_topics(
    servers: &Servers,
    redis: &Redis,
    topics: usize,
    plan: &Plan,
) -> Result<Vec<TopicsRun>, Error> {
    redis.command("FLUSHALL")?;
    servers.hub_redis.replace(Some(redis.url()));
    servers.hub_max_topics.set(Some(topics + SET));
    let result = many_topics_on(servers, redis, topics, plan).await;
    servers.hub_redis.replace(None);
    servers.hub_max_topics.set(None);
    result
}

async fn many_topics_on(
    servers: &Servers,
    redis: &Redis,
    topics: usize,
    plan: &Plan,
) -> Result<Vec<TopicsRun>, Error> {
    let a = servers.start(Kind::Hub)?;
    let opening = Instant::now();
    let paths: Vec<String> = (0..topics)
        .map(|t| format!("/sse/topic?name=t{t}"))
        .collect();
    let mut streams: Vec<Held> = client::open_paths(a.addr, &paths)
        .await?
        .into_iter()
        .enumerate()
        .map(|(t, body)| Held::new(body, false, t))
        .collect();
    let count_path = format!("/publish?count=0&topics={topics}");
    let mut publisher = client::connect(a.addr).await?;
    let counted = client::post_count(&mut publisher, &count_path).await?;
    if counted != topics as u64 {
        return Err(format!("instance A counts {counted} subscribers of {topics} topics").into());
    }
    eprintln!(
        "load: {topics} topic streams opened on instance A in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    let mut instances = vec![a];
    let mut results = Vec::new();
    let period = Duration::from_secs_f64(1.0 / plan.topic_rate);
    let published = (plan.topic_seconds * plan.topic_rate).ceil().max(1.0) as u64;
    for &wanted in &plan.instances {
        // The instances added: each holds every topic, in sets.
        while instances.len() < wanted {
            let server = servers.start(Kind::Hub)?;
            let paths: Vec<String> = (0..topics)
                .step_by(SET)
                .map(|from| format!("/sse/topics?from={from}&count={}", SET.min(topics - from)))
                .collect();
            let bodies = client::open_paths(server.addr, &paths).await?;
            let mut counter = client::connect(server.addr).await?;
            let counted = client::post_count(&mut counter, &count_path).await?;
            if counted != topics as u64 {
                return Err(format!(
                    "instance {} counts {counted} subscribers of {topics} topics",
                    instances.len() + 1
                )
                .into());
            }
            streams.extend(
                bodies
                    .into_iter()
                    .enumerate()
                    .map(|(n, body)| Held::new(body, true, n)),
            );
            instances.push(server);
        }
        // Every instance has read what subscribing brought, and subscribed
        // to every topic's channel.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Redis while every topic is held and nothing is published: what
        // the readers' pings and Redis's own timers cost.
        let cpu = |servers: &[Server]| -> Result<u64, Error> {
            servers
                .iter()
                .map(|server| Ok(measure::cpu_ns(server.pid())?))
                .sum()
        };
        let quiet = Duration::from_secs_f64(plan.topic_seconds.min(2.0));
        let quiet_before = (cpu(&instances)?, measure::cpu_ns(redis.child.id())?);
        let quiet_wall = Instant::now();
        tokio::time::sleep(quiet).await;
        let quiet_ns = quiet_wall.elapsed().as_nanos() as f64;
        let quiet_server = 100.0 * (cpu(&instances)? - quiet_before.0) as f64 / quiet_ns;
        let quiet_percent =
            100.0 * (measure::cpu_ns(redis.child.id())? - quiet_before.1) as f64 / quiet_ns;
        let deadline =
            tokio::time::Instant::now() + period * published as u32 + Duration::from_secs(20);
        // Readers for the streams that get events; the others wait.
        let mut readers = Vec::new();
        let mut waiting = Vec::new();
        let mut expected = 0;
        for held in streams.drain(..) {
            let k = if held.set {
                let from = held.n * SET;
                (from..topics.min(from + SET))
                    .map(|t| share(published, topics, t))
                    .sum()
            } else {
                share(published, topics, held.n)
            };
            expected += k;
            if k == 0 {
                waiting.push(held);
            } else {
                readers.push(tokio::spawn(read_topic_events(held, k, deadline)));
            }
        }
        let before = (cpu(&instances)?, measure::cpu_ns(redis.child.id())?);
        let wall = Instant::now();
        let mut ticks = tokio::time::interval(period);
        for i in 0..published {
            ticks.tick().await;
            let path = format!("/publish?count=1&topic=t{}", i % topics as u64);
            client::post_count(&mut publisher, &path).await?;
        }
        let mut on_a = Vec::new();
        let mut delivered = 0;
        for reader in readers {
            let (held, latencies) = reader.await?;
            delivered += latencies.len() as u64;
            if !held.set {
                on_a.extend(latencies);
            }
            waiting.push(held);
        }
        let wall = wall.elapsed();
        let server_ns = cpu(&instances)? - before.0;
        let redis_ns = measure::cpu_ns(redis.child.id())? - before.1;
        streams = waiting;
        on_a.sort_unstable();
        let run = TopicsRun {
            instances: instances.len(),
            delivered_percent: 100.0 * delivered as f64 / expected.max(1) as f64,
            p50_ms: ms(&on_a, 0.5),
            p99_ms: ms(&on_a, 0.99),
            server_cpu_ns: server_ns as f64 / delivered.max(1) as f64,
            redis_percent: 100.0 * redis_ns as f64 / wall.as_nanos() as f64,
            quiet_percent,
            quiet_server,
            redis_us_per_event: redis_ns as f64 / 1e3 / published as f64,
        };
        eprintln!(
            "load: {topics} topics, {} instances, {published} events in {:.1} s: delivered \
             {:.1} %, p99 {:.2} ms, redis-server {:.2} % of a core, {:.1} µs per event",
            run.instances,
            wall.as_secs_f64(),
            run.delivered_percent,
            run.p99_ms,
            run.redis_percent,
            run.redis_us_per_event
        );
        results.push(run);
    }
    // The streams close before their servers stop.
    drop(streams);
    drop(instances);
    Ok(results)
}

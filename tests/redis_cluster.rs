//! The hub on a real Redis Cluster (three primaries, a replica each, made
//! here with `redis-cli --cluster create`): topics spread over every
//! primary, two instances publish, follow and resume through any node,
//! and a primary killed under a steady publish fails over with no silent
//! loss.
//!
//! Without `redis-server` or `redis-cli` the tests say SKIPPED; with
//! `TOWER_SSE_REQUIRE_REDIS=1` (set by `.ci/run`) they fail.

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::redis_server::RedisCluster;
use futures_util::StreamExt;
use tower_sse::{
    hub::{Hub, Start, Subscription, TopicSet},
    Event,
};

fn hub(urls: Vec<String>, prefix: &str) -> Hub {
    Hub::builder()
        .redis_cluster(urls)
        .redis_key_prefix(prefix)
        .redis_timeout(Duration::from_millis(1_500))
        .redis_outage_grace(Duration::from_secs(30))
        .history(10_000)
        .build()
        .expect("the hub builds")
}

fn with_id(id: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Some(id) = id {
        headers.insert("last-event-id", id.parse().unwrap());
    }
    headers
}

/// One event as a client reads it: type, data, id.
async fn next(subscription: &mut Subscription) -> Option<(String, String, String)> {
    let event = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("an event or the end within 30 s")?;
    let (mut kind, mut data, mut id) = (String::new(), String::new(), String::new());
    for line in std::str::from_utf8(event.as_bytes()).unwrap().lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            kind = value.into();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = value.into();
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = value.into();
        }
    }
    Some((kind, data, id))
}

#[tokio::test]
async fn cluster_settings_that_cannot_work_are_refused_when_built() {
    use tower_sse::hub::HubConfigErrorKind;
    let no_nodes = Hub::builder().redis_cluster(Vec::<String>::new()).build();
    assert_eq!(no_nodes.unwrap_err().kind(), HubConfigErrorKind::RedisUrl);
    let both = Hub::builder()
        .redis("redis://127.0.0.1:1")
        .redis_cluster(["redis://127.0.0.1:2"])
        .build();
    assert_eq!(both.unwrap_err().kind(), HubConfigErrorKind::RedisUrl);
    let bad = Hub::builder()
        .redis_cluster(["redis://127.0.0.1:2", "not a url"])
        .build();
    assert_eq!(bad.unwrap_err().kind(), HubConfigErrorKind::RedisUrl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_spread_over_every_primary_and_resume_on_any_instance() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let urls = cluster.urls();
    let a = hub(urls.clone(), "spread:");
    // B knows the cluster by other nodes than A.
    let b = hub(urls.iter().rev().cloned().collect(), "spread:");
    let names: Vec<String> = (0..30).map(|n| format!("user:{n}")).collect();
    let topics = TopicSet::new(&names).unwrap();
    let mut on_b = b
        .subscribe_set(&topics, None, &with_id(None))
        .await
        .unwrap();
    assert_eq!(on_b.how_it_started(), Start::Fresh);
    next(&mut on_b).await.unwrap();
    for round in 1..=2 {
        for name in &names {
            a.publish(name, Event::new().data(round.to_string()))
                .await
                .unwrap();
        }
    }
    // Every topic's streams live on the primaries, and every primary holds
    // some.
    for primary in cluster.primaries() {
        let keys = cluster.nodes[primary].command("DBSIZE");
        let count: u64 = keys.trim_start_matches(':').trim().parse().unwrap();
        assert!(count > 0, "primary {primary} holds no topic");
    }
    // B got them all, each topic in order (across primaries, in the order
    // the announcements reached B's node).
    let mut id = String::new();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..45 {
        let (kind, data, event_id) = next(&mut on_b).await.unwrap();
        seen.entry(kind).or_default().push(data);
        id = event_id;
    }
    drop(on_b);
    // Resumed on A with B's id: the rest, exactly.
    let mut on_a = a
        .subscribe_set(&topics, None, &with_id(Some(&id)))
        .await
        .unwrap();
    assert_eq!(on_a.how_it_started(), Start::Exact { replayed: 15 });
    for _ in 0..15 {
        let (kind, data, _) = next(&mut on_a).await.unwrap();
        seen.entry(kind).or_default().push(data);
    }
    for name in &names {
        assert_eq!(seen[name], ["1", "2"], "{name}: every event once, in order");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), on_a.next())
            .await
            .is_err(),
        "nothing twice"
    );
    // A single-topic subscriber on another node's view, too.
    let one = b.subscribe("user:3", None).await.unwrap();
    assert_eq!(one.how_it_started(), Start::Fresh);
    // Runs (their three keys in one slot, spread over the primaries):
    // started on A, followed and stopped on B.
    let uri = http::Uri::from_static("/runs/x");
    for _ in 0..6 {
        let run = a.start_run().await.unwrap();
        let id = run.id().to_owned();
        let mut follower = b.follow_run(&id, &with_id(None), &uri).await.unwrap();
        run.send(Event::new().data("token")).await.unwrap();
        assert_eq!(next(&mut follower).await.unwrap().1, "token");
        assert!(b.stop_run(&id).await.unwrap());
        tokio::time::timeout(Duration::from_secs(10), run.stopped())
            .await
            .expect("the stop reaches A over the cluster");
        run.finish(tower_sse::hub::RunEnd::stopped()).await.unwrap();
        let (kind, data, _) = next(&mut follower).await.unwrap();
        assert_eq!(
            (kind.as_str(), data.as_str()),
            ("run-end", "{\"outcome\":\"stopped\"}")
        );
        assert!(next(&mut follower).await.is_none(), "the run's stream ends");
    }
}

/// A primary killed while events are published to topics on every
/// primary: its replica takes over, publishes go on (each retried until
/// acknowledged), and a follower on the other instance, reconnecting with
/// its last id after every few events, gets every acknowledged event of
/// every topic in order, or a gap event for that topic before what it
/// missed: never a silent loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_steady_publishing_loses_nothing_silently() {
    const ROUNDS: u32 = 150;
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let urls = cluster.urls();
    let a = hub(urls.clone(), "failover:");
    let b = hub(urls.iter().rev().cloned().collect(), "failover:");
    let names: Vec<String> = (0..9).map(|n| format!("t{n}")).collect();
    let topics = TopicSet::new(&names).unwrap();
    let mut stream = b
        .subscribe_set(&topics, None, &with_id(None))
        .await
        .unwrap();
    let mut last_id = next(&mut stream).await.unwrap().2;
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (a, names, done) = (a.clone(), names.clone(), done.clone());
        tokio::spawn(async move {
            let mut retried = 0;
            let mut blocked = Duration::ZERO;
            for round in 1..=ROUNDS {
                for name in &names {
                    let started = std::time::Instant::now();
                    while a
                        .publish(name, Event::new().data(round.to_string()))
                        .await
                        .is_err()
                    {
                        retried += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    blocked = blocked.max(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.store(true, Ordering::Release);
            (retried, blocked)
        })
    };
    // Kill a primary a moment in.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let victim = cluster.primaries()[0];
    cluster.nodes[victim].kill();
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut gaps = 0;
    let mut reconnects = 0;
    let mut stream = Some(stream);
    loop {
        let mut current = match stream.take() {
            Some(current) => current,
            None => {
                reconnects += 1;
                // During the failover a topic of the dead primary cannot be
                // loaded: the browser is told to retry, and does.
                let mut tries = 0;
                loop {
                    match b
                        .subscribe_set(&topics, None, &with_id(Some(&last_id)))
                        .await
                    {
                        Ok(subscription) => break subscription,
                        Err(error) => {
                            tries += 1;
                            assert!(tries < 60, "not back within 30 s: {error}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        };
        let mut ended = false;
        for _ in 0..(reconnects % 11) + 3 {
            if names.iter().all(|name| seen.get(name) == Some(&ROUNDS)) {
                break;
            }
            let Some((kind, data, id)) = next(&mut current).await else {
                ended = true;
                break;
            };
            if !id.is_empty() {
                last_id = id;
            }
            match kind.as_str() {
                "gap" => {
                    gaps += 1;
                    let topic = data
                        .split("\"topic\":\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap();
                    // Anything of that topic may come next (its history).
                    seen.remove(topic);
                }
                "sse-position" | "sse-retry" | "" => {}
                topic => {
                    let n: u32 = data.parse().unwrap();
                    let before = seen.get(topic).copied();
                    assert!(
                        before.map_or(true, |before| n == before + 1 || n == before),
                        "{topic}: event {n} after {before:?} without a gap event"
                    );
                    seen.insert(topic.to_owned(), n);
                }
            }
        }
        let complete = names.iter().all(|name| seen.get(name) == Some(&ROUNDS));
        if complete {
            break;
        }
        if !ended {
            // The page goes away and comes back with its last id.
            drop(current);
        }
        assert!(reconnects < 2_000, "never caught up: {seen:?}");
    }
    let (retried, blocked) = publisher.await.unwrap();
    assert!(done.load(Ordering::Acquire));
    cluster.wait_until_ok();
    println!("failover: {reconnects} reconnects, {gaps} gap events, {retried} publishes retried, publishing blocked at most {blocked:?}"
    );
}

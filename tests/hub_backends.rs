//! The hub's behaviour on both backends: the same checks run against the
//! memory hub and against a hub on a real `redis-server` (started here on a
//! free port, without persistence unless a test asks for it), then checks
//! that only Redis has: two instances on one Redis, and Redis killed and
//! restarted under a steady publish.
//!
//! Without `redis-server` the Redis half says SKIPPED; with
//! `TOWER_SSE_REQUIRE_REDIS=1` (set by `.ci/run`) it fails.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::redis_server::{Persistence, RedisServer};
use futures_util::StreamExt;
use tower_sse::{
    hub::{EventId, GapReason, Hub, HubBuilder, HubErrorKind, Start, Subscription, TopicSet},
    Event,
};

/// Where a test's hubs keep their topics.
struct Backend {
    redis: Option<RedisServer>,
    prefix: String,
}

impl Backend {
    fn memory() -> Self {
        Self {
            redis: None,
            prefix: String::new(),
        }
    }

    fn redis(persistence: Persistence) -> Option<Self> {
        Some(Self {
            redis: Some(RedisServer::start(persistence)?),
            prefix: format!("test{}:", common::random_tag()),
        })
    }

    fn is_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// A hub built from `builder` on this backend; every hub of a Redis
    /// backend shares its topics (another instance of the same app).
    fn hub(&self, builder: HubBuilder) -> Hub {
        let builder = match &self.redis {
            Some(redis) => builder
                .redis(redis.url())
                .redis_key_prefix(&self.prefix)
                .redis_timeout(Duration::from_millis(500))
                .redis_outage_grace(Duration::from_secs(5)),
            None => builder,
        };
        builder.build().expect("the hub builds")
    }

    /// A hub after the topic's history is gone: a new memory hub (a new
    /// process), or the topic's stream deleted from Redis (Redis restarted
    /// without persistence) and a new instance.
    fn after_losing(&self, topic: &str) -> Hub {
        if let Some(redis) = &self.redis {
            let reply = redis.command(&format!("DEL {}{{{topic}}}", self.prefix));
            assert_eq!(reply, ":1\r\n", "the stream existed");
        }
        self.hub(Hub::builder())
    }
}

/// What a client sees of one encoded event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    retry: bool,
}

fn parse(bytes: &[u8]) -> Seen {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(text.ends_with("\n\n"), "one whole event: {text:?}");
    let mut seen = Seen::default();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let (field, value) = line
            .split_once(": ")
            .unwrap_or((line.trim_end_matches(':'), ""));
        match field {
            "event" => seen.event = Some(value.into()),
            "data" => seen.data = Some(value.into()),
            "id" => seen.id = Some(value.into()),
            "retry" => seen.retry = true,
            _ => {}
        }
    }
    seen
}

/// The subscription's next event, within 10 s.
async fn next(subscription: &mut Subscription) -> Option<Seen> {
    tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an event or the end within 10 s")
        .map(|event| parse(event.as_bytes()))
}

/// Whether nothing arrives within 300 ms.
async fn quiet(subscription: &mut Subscription) -> bool {
    tokio::time::timeout(Duration::from_millis(300), subscription.next())
        .await
        .is_err()
}

async fn publish_n(hub: &Hub, topic: &str, range: std::ops::RangeInclusive<u32>) -> Vec<EventId> {
    let mut ids = Vec::new();
    for n in range {
        ids.push(
            hub.publish(topic, Event::new().data(n.to_string()))
                .await
                .expect("published"),
        );
    }
    ids
}

/// Waits until the hub's local copy of `topic` holds `published` events
/// (with Redis, the reader delivers them a moment after the publish).
async fn settled(hub: &Hub, topic: &str, published: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = hub.topic_stats(topic).map_or(0, |stats| stats.published);
        if got >= published {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {published} events arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn an_id_in_the_history_resumes_exactly_then_goes_live(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let ids = publish_n(&hub, "t", 1..=5).await;
    let mut resumed = hub.subscribe("t", Some(&ids[1].to_string())).await.unwrap();
    assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 3 });
    for n in 3..=5 {
        let seen = next(&mut resumed).await.unwrap();
        assert_eq!(seen.data.as_deref(), Some(n.to_string().as_str()));
        assert_eq!(seen.id, Some(ids[n - 1].to_string()));
    }
    assert!(quiet(&mut resumed).await, "nothing twice");
    let six = publish_n(&hub, "t", 6..=6).await;
    let seen = next(&mut resumed).await.unwrap();
    assert_eq!(
        (seen.data.as_deref(), seen.id),
        (Some("6"), Some(six[0].to_string()))
    );
}

async fn without_an_id_a_subscriber_gets_its_position_then_live_events_only(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let ids = publish_n(&hub, "t", 1..=3).await;
    let mut live = hub.subscribe("t", None).await.unwrap();
    assert_eq!(live.how_it_started(), Start::Fresh);
    let position = next(&mut live).await.unwrap();
    assert_eq!(position.event.as_deref(), Some("sse-position"));
    assert_eq!(position.id, Some(ids[2].to_string()));
    assert!(quiet(&mut live).await, "no replay");
    publish_n(&hub, "t", 4..=4).await;
    assert_eq!(next(&mut live).await.unwrap().data.as_deref(), Some("4"));
    // The position resumes exactly.
    let mut again = hub.subscribe("t", position.id.as_deref()).await.unwrap();
    assert_eq!(again.how_it_started(), Start::Exact { replayed: 1 });
    assert_eq!(next(&mut again).await.unwrap().data.as_deref(), Some("4"));
}

async fn an_id_older_than_the_history_gets_a_gap_event_then_the_history(backend: Backend) {
    let hub = backend.hub(Hub::builder().history(3));
    let ids = publish_n(&hub, "t", 1..=6).await;
    let mut resumed = hub.subscribe("t", Some(&ids[0].to_string())).await.unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::HistoryTruncated,
            replayed: 3
        }
    );
    let gap = next(&mut resumed).await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert!(gap
        .data
        .as_deref()
        .unwrap()
        .contains("\"reason\":\"history-truncated\""));
    assert_eq!(
        gap.id,
        Some(ids[2].to_string()),
        "the id before the history"
    );
    for n in 4..=6 {
        assert_eq!(next(&mut resumed).await.unwrap().data, Some(n.to_string()));
    }
    let again = hub.subscribe("t", gap.id.as_deref()).await.unwrap();
    assert_eq!(again.how_it_started(), Start::Exact { replayed: 3 });
}

async fn unknown_and_malformed_ids_get_a_gap_whose_id_resumes_exactly(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    publish_n(&hub, "t", 1..=2).await;
    let long = "7".repeat(100);
    for asked in ["garbage", "1-2-3", "99999999999999999-0", &long] {
        let mut resumed = hub.subscribe("t", Some(asked)).await.unwrap();
        assert_eq!(
            resumed.how_it_started(),
            Start::Gap {
                reason: GapReason::UnknownId,
                replayed: 2
            },
            "{asked}"
        );
        let gap = next(&mut resumed).await.unwrap();
        let again = hub.subscribe("t", gap.id.as_deref()).await.unwrap();
        assert_eq!(
            again.how_it_started(),
            Start::Exact { replayed: 2 },
            "{asked}"
        );
    }
}

async fn an_id_from_an_earlier_life_of_the_topic_gets_a_restarted_gap(backend: Backend) {
    let before = backend.hub(Hub::builder());
    let old = publish_n(&before, "t", 1..=3).await;
    let hub = backend.after_losing("t");
    publish_n(&hub, "t", 1..=1).await;
    let mut resumed = hub.subscribe("t", Some(&old[2].to_string())).await.unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            replayed: 1
        }
    );
    let gap = next(&mut resumed).await.unwrap();
    assert!(gap.data.unwrap().contains("\"reason\":\"restarted\""));
    assert_eq!(next(&mut resumed).await.unwrap().data.as_deref(), Some("1"));
}

async fn an_old_id_on_a_topic_emptied_since_gets_a_restarted_gap(backend: Backend) {
    let before = backend.hub(Hub::builder());
    let old = publish_n(&before, "t", 1..=2).await;
    let hub = backend.after_losing("t");
    let resumed = hub.subscribe("t", Some(&old[1].to_string())).await.unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            replayed: 0
        }
    );
}

async fn a_subscriber_beyond_the_history_gets_a_retry_and_ends(backend: Backend) {
    let hub = backend.hub(Hub::builder().history(3));
    publish_n(&hub, "t", 1..=1).await;
    let mut slow = hub.subscribe("t", None).await.unwrap();
    let signal = slow.end_signal();
    next(&mut slow).await.unwrap();
    publish_n(&hub, "t", 2..=10).await;
    settled(&hub, "t", 10).await;
    let retry = next(&mut slow).await.unwrap();
    assert!(
        retry.retry && retry.event.as_deref() == Some(tower_sse::event::RETRY_EVENT),
        "{retry:?}"
    );
    assert_eq!(next(&mut slow).await, None, "the stream ends");
    assert_eq!(slow.early_end(), Some(tower_sse::EarlyEnd::Lagged));
    assert_eq!(signal.get(), Some(tower_sse::EarlyEnd::Lagged));
    assert_eq!(hub.topic_stats("t").unwrap().lagged, 1);
}

async fn a_waiting_subscriber_is_woken_by_a_publish(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let mut waiting = hub.subscribe("t", None).await.unwrap();
    next(&mut waiting).await.unwrap();
    let publisher = hub.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publisher
            .publish("t", Event::new().data("late"))
            .await
            .unwrap();
    });
    assert_eq!(
        next(&mut waiting).await.unwrap().data.as_deref(),
        Some("late")
    );
}

async fn an_event_with_its_own_id_is_refused_and_given_back(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let error = hub
        .publish("t", Event::new().id("mine").unwrap().data("kept"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::IdSet);
    let back = error.into_event().encode();
    assert_eq!(back.as_bytes(), b"id: mine\ndata: kept\n\n");
}

/// A browser that reconnects again and again, each time with the last id it
/// saw, while events are published: every event once, in order.
async fn subscribes_racing_publishes_lose_and_repeat_nothing(backend: Backend) {
    const EVENTS: u32 = 2_000;
    let hub = backend.hub(Hub::builder().history(5_000));
    let first = publish_n(&hub, "t", 0..=0).await;
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 1..=EVENTS {
                hub.publish("t", Event::new().data(n.to_string()))
                    .await
                    .unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut last_id = first[0].to_string();
    let mut last = 0;
    let mut reconnects = 0;
    while last < EVENTS {
        let mut resumed = hub.subscribe("t", Some(&last_id)).await.unwrap();
        assert!(
            matches!(resumed.how_it_started(), Start::Exact { .. }),
            "{:?}",
            resumed.how_it_started()
        );
        reconnects += 1;
        // A few events, then the connection breaks.
        for _ in 0..(reconnects % 7) + 1 {
            let Some(seen) = next(&mut resumed).await else {
                panic!("the stream ended");
            };
            let n: u32 = seen.data.unwrap().parse().unwrap();
            assert_eq!(n, last + 1, "every event once, in order");
            last = n;
            last_id = seen.id.unwrap();
            if last == EVENTS {
                break;
            }
        }
    }
    publisher.await.unwrap();
    assert!(reconnects > 100, "{reconnects} reconnects");
}

async fn ids_read_from_headers_are_bounded_and_need_not_be_utf8(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let ids = publish_n(&hub, "t", 1..=2).await;
    let mut headers = http::HeaderMap::new();
    let fresh = hub.subscribe_from_headers("t", &headers).await.unwrap();
    assert_eq!(fresh.how_it_started(), Start::Fresh);
    headers.insert("last-event-id", ids[0].to_string().parse().unwrap());
    let exact = hub.subscribe_from_headers("t", &headers).await.unwrap();
    assert_eq!(exact.how_it_started(), Start::Exact { replayed: 1 });
    for bytes in [&b"\xff\xfe"[..], &[b'7'; 65][..]] {
        headers.insert(
            "last-event-id",
            http::HeaderValue::from_bytes(bytes).unwrap(),
        );
        let mut unknown = hub.subscribe_from_headers("t", &headers).await.unwrap();
        assert_eq!(
            unknown.how_it_started(),
            Start::Gap {
                reason: GapReason::UnknownId,
                replayed: 2
            }
        );
        let gap = next(&mut unknown).await.unwrap();
        assert_eq!(
            gap.data.as_deref(),
            Some(r#"{"reason":"unknown-id","last_event_id":null}"#)
        );
    }
}

async fn subscribing_is_bounded_in_topics_and_name_length(backend: Backend) {
    let hub = backend.hub(Hub::builder().max_topics(2));
    let _a = hub.subscribe("a", None).await.unwrap();
    let _b = hub.subscribe("b", None).await.unwrap();
    let full = hub.subscribe("c", None).await.unwrap_err();
    assert_eq!(full.kind(), HubErrorKind::TooManyTopics);
    assert_eq!(
        full.into_http_response().status(),
        200,
        "a retry, not a status that stops EventSource"
    );
    let long = "x".repeat(tower_sse::hub::MAX_TOPIC_LEN + 1);
    let error = hub.subscribe(&long, None).await.unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::TopicTooLong);
    assert_eq!(error.into_http_response().status(), 400);
    let error = hub
        .publish(&long, Event::new().data("kept"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::TopicTooLong);
    assert_eq!(error.into_event().encode().as_bytes(), b"data: kept\n\n");
    assert_eq!(hub.topic_count(), 2);
}

/// An idle topic is dropped from the instance; what a reconnect gets then
/// differs: the memory hub lost the history with the topic (a `restarted`
/// gap), while Redis still has it (an exact resume).
async fn a_topic_dropped_while_idle_resumes_as_its_backend_allows(backend: Backend) {
    let hub = backend.hub(Hub::builder().idle_timeout(Duration::from_millis(100)));
    let old = publish_n(&hub, "quiet", 1..=2).await;
    let mut once = hub.subscribe("quiet", None).await.unwrap();
    next(&mut once).await.unwrap();
    drop(once);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Any subscribe sweeps.
    let _other = hub.subscribe("other", None).await.unwrap();
    assert_eq!(hub.topic_stats("quiet"), None, "dropped");
    let resumed = hub
        .subscribe("quiet", Some(&old[0].to_string()))
        .await
        .unwrap();
    if backend.is_redis() {
        assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 1 });
    } else {
        assert!(matches!(
            resumed.how_it_started(),
            Start::Gap {
                reason: GapReason::Restarted,
                ..
            }
        ));
    }
}

// ---- Many topics over one stream (`Hub::subscribe_set`) ----

/// The request headers of a reconnect with `id`.
fn with_id(id: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Some(id) = id {
        headers.insert("last-event-id", id.parse().unwrap());
    }
    headers
}

fn set(topics: &[&str]) -> TopicSet {
    TopicSet::new(topics).unwrap()
}

/// A set subscription to `topics` with `id` as its `Last-Event-ID`, no
/// client bound.
async fn open_set(hub: &Hub, topics: &[&str], id: Option<&str>) -> Subscription {
    hub.subscribe_set(&set(topics), None, &with_id(id))
        .await
        .unwrap()
}

/// A set's next data event as (topic, data, id), skipping the hub's
/// position events; `None` at the end.
async fn next_in_set(subscription: &mut Subscription) -> Option<(String, String, String)> {
    loop {
        let seen = next(subscription).await?;
        if seen.event.as_deref() == Some("sse-position") {
            continue;
        }
        return Some((seen.event?, seen.data.unwrap_or_default(), seen.id?));
    }
}

/// A page on one stream of four topics, broken at random points while a
/// publisher writes to every topic in a random interleaving: each topic's
/// events arrive once each, in order, across every reconnect.
async fn a_set_resumes_every_topic_exactly_after_breaks_at_random_points(backend: Backend) {
    const EVENTS: u32 = 400;
    let topics = ["alpha", "beta", "gamma", "delta"];
    let hub = backend.hub(Hub::builder().history(5_000));
    let mut seed = common::random_tag() | 1;
    eprintln!("seed {seed}");
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let order: Vec<usize> = (0..EVENTS).map(|_| (random() % 4) as usize).collect();
    let mut first = hub
        .subscribe_set(&set(&topics), None, &with_id(None))
        .await
        .unwrap();
    assert_eq!(first.how_it_started(), Start::Fresh);
    let position = next(&mut first).await.unwrap();
    assert_eq!(position.event.as_deref(), Some("sse-position"));
    let mut last_id = position.id.unwrap();
    drop(first);
    let publisher = {
        let hub = hub.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let mut counts = [0u32; 4];
            for (n, &topic) in order.iter().enumerate() {
                counts[topic] += 1;
                hub.publish(topics[topic], Event::new().data(counts[topic].to_string()))
                    .await
                    .unwrap();
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            counts
        })
    };
    let mut seen = [0u32; 4];
    let mut reconnects = 0;
    while seen.iter().sum::<u32>() < EVENTS {
        let mut resumed = hub
            .subscribe_set(&set(&topics), None, &with_id(Some(&last_id)))
            .await
            .unwrap();
        assert!(
            matches!(resumed.how_it_started(), Start::Exact { .. }),
            "{:?}",
            resumed.how_it_started()
        );
        reconnects += 1;
        for _ in 0..(random() % 9) + 1 {
            let Some((topic, data, id)) = next_in_set(&mut resumed).await else {
                panic!("the stream ended");
            };
            let index = topics
                .iter()
                .position(|t| *t == topic)
                .expect("a topic of the set");
            let n: u32 = data.parse().unwrap();
            assert_eq!(n, seen[index] + 1, "{topic}: every event once, in order");
            seen[index] = n;
            last_id = id;
            if seen.iter().sum::<u32>() == EVENTS {
                break;
            }
        }
    }
    assert_eq!(publisher.await.unwrap(), seen);
    assert!(reconnects > 40, "{reconnects} reconnects");
}

/// Events are typed by their topic; a publisher's own type follows it.
async fn a_set_s_events_name_their_topic_and_keep_their_own_type(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let mut stream = open_set(&hub, &["b", "a"], None).await;
    let position = next(&mut stream).await.unwrap();
    assert_eq!(position.event.as_deref(), Some("sse-position"));
    hub.publish("a", Event::new().data("plain")).await.unwrap();
    hub.publish("b", Event::new().event("added").unwrap().data("typed"))
        .await
        .unwrap();
    // Order across topics is another test's (`a_set_writes_its_topics_in_publish_order`).
    let mut both = [
        next(&mut stream).await.unwrap(),
        next(&mut stream).await.unwrap(),
    ];
    both.sort_by(|x, y| x.event.cmp(&y.event));
    let [plain, typed] = both;
    assert_eq!(
        (plain.event.as_deref(), plain.data.as_deref()),
        (Some("a"), Some("plain"))
    );
    assert_eq!(
        (typed.event.as_deref(), typed.data.as_deref()),
        (Some("b:added"), Some("typed"))
    );
    assert!(typed.id.unwrap().len() <= 128);
}

/// Publish order across topics, for publishes one after another: the memory
/// hub keeps it; on Redis the instance reads the topics in one read, so the
/// order holds for publishes that were read apart (settled here).
async fn a_set_writes_its_topics_in_publish_order(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let mut stream = open_set(&hub, &["x", "y", "z"], None).await;
    next(&mut stream).await.unwrap();
    let mut expected = Vec::new();
    let mut counts = std::collections::HashMap::new();
    for (n, topic) in ["y", "x", "z", "x", "y", "y", "z", "x"]
        .into_iter()
        .enumerate()
    {
        hub.publish(topic, Event::new().data(n.to_string()))
            .await
            .unwrap();
        *counts.entry(topic).or_insert(0u64) += 1;
        settled(&hub, topic, counts[topic]).await;
        expected.push((topic.to_string(), n.to_string()));
    }
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let (topic, data, _) = next_in_set(&mut stream).await.unwrap();
        got.push((topic, data));
    }
    assert_eq!(got, expected);
}

/// Pages of one set in a live fan-out: the first subscription to write an
/// event writes it, the others at the same positions take its bytes (one
/// copy); one that resumed behind writes its own, with its own positions.
async fn subscriptions_of_one_set_share_what_they_write(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let topics = ["news", "prices"];
    let mut pages = Vec::new();
    for _ in 0..3 {
        let mut page = open_set(&hub, &topics, None).await;
        next(&mut page).await.unwrap(); // its position event
        pages.push(page);
    }
    let mut last_id = String::new();
    for (n, topic) in ["news", "prices", "news"].into_iter().enumerate() {
        hub.publish(topic, Event::new().data(n.to_string()))
            .await
            .unwrap();
        let mut written = Vec::new();
        for page in &mut pages {
            let event = tokio::time::timeout(Duration::from_secs(10), page.next())
                .await
                .expect("the event within 10 s")
                .unwrap();
            written.push(event);
        }
        let first = written[0].as_bytes();
        assert_eq!(parse(first).data.as_deref(), Some(&*n.to_string()));
        for other in &written[1..] {
            assert_eq!(other.as_bytes().as_ptr(), first.as_ptr(), "one copy of {n}");
        }
        if n == 0 {
            last_id = parse(first).id.unwrap();
        }
    }
    // Resumed after the first event: the two others again, with the same
    // ids as the pages got (its own copies: it is behind them).
    let mut behind = open_set(&hub, &topics, Some(&last_id)).await;
    let (_, one, _) = next_in_set(&mut behind).await.unwrap();
    let (_, two, id) = next_in_set(&mut behind).await.unwrap();
    assert_eq!((one.as_str(), two.as_str()), ("1", "2"));
    let mut again = open_set(&hub, &topics, Some(&id)).await;
    assert!(quiet(&mut again).await, "its id holds every position");
}

/// One topic whose events left its history gets a gap event naming it;
/// the other topics resume exactly, with no gap.
async fn one_topic_past_its_history_gets_its_own_gap_and_the_others_resume_exactly(
    backend: Backend,
) {
    let hub = backend.hub(Hub::builder().history(3));
    let topics = set(&["busy", "calm"]);
    let mut stream = hub
        .subscribe_set(&topics, None, &with_id(None))
        .await
        .unwrap();
    next(&mut stream).await.unwrap();
    publish_n(&hub, "busy", 1..=1).await;
    publish_n(&hub, "calm", 1..=1).await;
    next_in_set(&mut stream).await.unwrap();
    let (_, _, id) = next_in_set(&mut stream).await.unwrap();
    drop(stream);
    publish_n(&hub, "busy", 2..=9).await;
    publish_n(&hub, "calm", 2..=3).await;
    let mut resumed = hub
        .subscribe_set(&topics, None, &with_id(Some(&id)))
        .await
        .unwrap();
    let starts: Vec<(String, Start)> = resumed
        .how_each_started()
        .map(|(topic, start)| (topic.to_string(), start))
        .collect();
    assert!(
        matches!(
            starts[0].1,
            Start::Gap {
                reason: GapReason::HistoryTruncated,
                ..
            }
        ),
        "{starts:?}"
    );
    assert_eq!(starts[1], ("calm".into(), Start::Exact { replayed: 2 }));
    let gap = next(&mut resumed).await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    let data = gap.data.unwrap();
    assert!(data.contains("\"topic\":\"busy\""), "{data}");
    assert!(data.contains("history-truncated"), "{data}");
    let mut got = Vec::new();
    while let Some(seen) = tokio::time::timeout(Duration::from_millis(300), resumed.next())
        .await
        .ok()
        .flatten()
    {
        let seen = parse(seen.as_bytes());
        if seen.event.as_deref() == Some("sse-position") {
            continue;
        }
        got.push((seen.event.unwrap(), seen.data.unwrap()));
    }
    got.sort();
    let mut expected: Vec<(String, String)> = (7..=9)
        .map(|n| ("busy".to_string(), n.to_string()))
        .chain((2..=3).map(|n| ("calm".to_string(), n.to_string())))
        .collect();
    expected.sort();
    assert_eq!(
        got, expected,
        "busy's history, calm's missed events, nothing twice"
    );
}

/// A reconnect whose URL names another set: the topics in both resume, the
/// new one starts fresh, the one left out is not sent.
async fn a_changed_set_resumes_the_topics_in_both_and_starts_new_ones_fresh(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let mut stream = open_set(&hub, &["a", "b"], None).await;
    next(&mut stream).await.unwrap();
    publish_n(&hub, "a", 1..=1).await;
    let (_, _, id) = next_in_set(&mut stream).await.unwrap();
    drop(stream);
    publish_n(&hub, "a", 2..=2).await;
    publish_n(&hub, "b", 1..=1).await;
    publish_n(&hub, "c", 1..=1).await;
    let mut resumed = open_set(&hub, &["a", "c"], Some(&id)).await;
    let starts: Vec<(&str, Start)> = resumed.how_each_started().collect();
    assert_eq!(
        starts,
        [("a", Start::Exact { replayed: 1 }), ("c", Start::Fresh)]
    );
    let (topic, data, _) = next_in_set(&mut resumed).await.unwrap();
    assert_eq!((topic.as_str(), data.as_str()), ("a", "2"));
    publish_n(&hub, "b", 2..=2).await;
    publish_n(&hub, "c", 2..=2).await;
    let (topic, data, _) = next_in_set(&mut resumed).await.unwrap();
    assert_eq!(
        (topic.as_str(), data.as_str()),
        ("c", "2"),
        "b is not in the set any more"
    );
}

/// An id from a stream that had a topic this request may not have does
/// not add it, and an id edited to point anywhere only moves where the
/// allowed topics resume.
async fn an_id_never_widens_the_set(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let mut admin = open_set(&hub, &["public", "secret"], None).await;
    next(&mut admin).await.unwrap();
    publish_n(&hub, "secret", 1..=3).await;
    let (_, _, admin_id) = next_in_set(&mut admin).await.unwrap();
    let mut user = open_set(&hub, &["public"], Some(&admin_id)).await;
    publish_n(&hub, "secret", 4..=4).await;
    publish_n(&hub, "public", 1..=1).await;
    let (topic, data, _) = next_in_set(&mut user).await.unwrap();
    assert_eq!((topic.as_str(), data.as_str()), ("public", "1"));
    assert!(quiet(&mut user).await, "nothing of secret");
    // Garbage and truncated ids: a gap per topic, never another topic.
    for bad in ["t", "tAAAA", &admin_id[..admin_id.len() - 2], "tX_-9"] {
        let mut user = open_set(&hub, &["public"], Some(bad)).await;
        let first = next(&mut user).await.unwrap();
        assert_eq!(first.event.as_deref(), Some("gap"), "{bad}");
        while let Ok(Some(seen)) =
            tokio::time::timeout(Duration::from_millis(200), user.next()).await
        {
            let seen = parse(seen.as_bytes());
            let kind = seen.event.unwrap_or_default();
            assert!(
                ["public", "gap", "sse-position"].contains(&kind.as_str()),
                "{bad}: {kind}"
            );
        }
    }
}

/// The client bound: the stream past it is refused (answered with a
/// `retry:`, not a status that stops `EventSource`), and a closed stream
/// gives its share back at once.
async fn a_client_past_its_bound_is_refused_until_a_stream_closes(backend: Backend) {
    let hub = backend.hub(Hub::builder().client_limit(2, 5));
    let one = hub
        .subscribe_set(&set(&["a", "b"]), Some("ann"), &with_id(None))
        .await
        .unwrap();
    let two = hub
        .subscribe_set(&set(&["c"]), Some("ann"), &with_id(None))
        .await
        .unwrap();
    assert_eq!(hub.client_count("ann"), (2, 3));
    let error = hub
        .subscribe_set(&set(&["d"]), Some("ann"), &with_id(None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::ClientLimit);
    let response = error.into_http_response();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(response.body().contains("retry: "), "{}", response.body());
    // Another client is not affected.
    let _bob = hub
        .subscribe_set(&set(&["a"]), Some("bob"), &with_id(None))
        .await
        .unwrap();
    drop(two);
    assert_eq!(hub.client_count("ann"), (1, 2));
    // Topics are bounded too: 2 + 4 > 5.
    let error = hub
        .subscribe_set(&set(&["c", "d", "e", "f"]), Some("ann"), &with_id(None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::ClientLimit);
    let _three = hub
        .subscribe_set(&set(&["c", "d", "e"]), Some("ann"), &with_id(None))
        .await
        .unwrap();
    assert_eq!(hub.client_refusals(), 2);
    drop(one);
    assert_eq!(hub.client_count("ann"), (1, 3));
}

/// Sets are bounded in size, and every topic of a refused set is given
/// back (a full hub refuses the whole set).
async fn a_set_is_bounded_and_a_refused_set_holds_nothing(backend: Backend) {
    let hub = backend.hub(Hub::builder().max_topics_per_subscription(3).max_topics(4));
    let error = hub
        .subscribe_set(&set(&["a", "b", "c", "d"]), None, &with_id(None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::BadTopic);
    assert_eq!(
        error.into_http_response().status(),
        http::StatusCode::BAD_REQUEST
    );
    let held = open_set(&hub, &["a", "b", "c"], None).await;
    let error = hub
        .subscribe_set(&set(&["a", "x", "y"]), None, &with_id(None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::TooManyTopics);
    assert_eq!(hub.topic_stats("a").unwrap().subscribers, 1, "a given back");
    drop(held);
    assert_eq!(hub.topic_stats("a").unwrap().subscribers, 0);
}

/// A set larger than 64 topics (its wake-up marks take several words):
/// every topic wakes the stream, and publish order holds across them.
async fn a_set_of_a_hundred_topics_is_woken_by_each_in_publish_order(backend: Backend) {
    let hub = backend.hub(Hub::builder().max_topics_per_subscription(100));
    let names: Vec<String> = (0..100).map(|n| format!("topic-{n:02}")).collect();
    let topics = TopicSet::new(&names).unwrap();
    let mut stream = hub
        .subscribe_set(&topics, None, &with_id(None))
        .await
        .unwrap();
    next(&mut stream).await.unwrap();
    // Each topic alone, the stream waiting in between.
    for n in [99, 0, 64, 63, 1, 65, 98] {
        publish_n(&hub, &names[n], 1..=1).await;
        let (topic, _, _) = next_in_set(&mut stream).await.unwrap();
        assert_eq!(topic, names[n]);
    }
    // Several at once, across the words, in publish order.
    let order = [70, 3, 27, 64, 0, 99, 31, 32, 63];
    for &n in &order {
        hub.publish(&names[n], Event::new().data(n.to_string()))
            .await
            .unwrap();
        settled(
            &hub,
            &names[n],
            if [99, 0, 64, 63].contains(&n) { 2 } else { 1 },
        )
        .await;
    }
    for &n in &order {
        let (topic, data, _) = next_in_set(&mut stream).await.unwrap();
        assert_eq!((topic, data), (names[n].clone(), n.to_string()));
    }
}

/// Found by an outside attack: a `Last-Event-ID` of any length was copied
/// into every topic's gap event (64 topics x 300 KB of tabs, escaped six
/// bytes each: 118 MB written). Now a junk id costs little.
async fn a_junk_id_of_any_length_costs_a_set_s_gap_events_little(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let names: Vec<String> = (0..64).map(|n| format!("t{n}")).collect();
    let topics = TopicSet::new(&names).unwrap();
    let junk = format!("a{}b", "\t".repeat(300 * 1024));
    let mut headers = http::HeaderMap::new();
    headers.insert("last-event-id", http::HeaderValue::from_str(&junk).unwrap());
    let mut stream = hub.subscribe_set(&topics, None, &headers).await.unwrap();
    let mut bytes = 0;
    for _ in 0..65 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
        bytes += event.as_bytes().len();
    }
    assert!(
        bytes < 64 * 1024,
        "{bytes} bytes for 64 gaps and a position"
    );
}

/// Found by an outside attack: what a set's events are typed as must
/// never be taken for something else.
async fn a_set_s_event_types_never_pass_for_another_kind_of_event(backend: Backend) {
    let hub = backend.hub(Hub::builder().client_limit(4, 4));
    // An event published with an empty type is the topic's.
    let mut stream = open_set(&hub, &["odd"], None).await;
    next(&mut stream).await.unwrap();
    hub.publish("odd", Event::new().event("").unwrap().data("x"))
        .await
        .unwrap();
    let seen = next(&mut stream).await.unwrap();
    assert_eq!(seen.event.as_deref(), Some("odd"));
    // Topics named as the browser's or the hub's own events are refused.
    for name in ["message", "open", "error", "sse-position", "sse-retry"] {
        let error = TopicSet::new([name]).unwrap_err();
        assert_eq!(error.kind(), HubErrorKind::BadTopic, "{name}");
    }
    let error = hub
        .subscribe_set(&set(&["gap", "user:ann"]), None, &with_id(None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::BadTopic);
    // A set no client may ever hold: 400, not a retry forever.
    let error = hub
        .subscribe_set(
            &set(&["a", "b", "c", "d", "e"]),
            Some("ann"),
            &with_id(None),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::BadTopic);
    assert_eq!(
        error.into_http_response().status(),
        http::StatusCode::BAD_REQUEST
    );
}

/// A set's event is the topic's own event with its type line replaced by
/// the topic's (and the own type after it) and its id replaced by the
/// set's, every other line as it was, byte for byte.
async fn a_set_s_events_are_the_topic_s_events_retyped_and_reidentified(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let mut one = hub.subscribe("odd", None).await.unwrap();
    next(&mut one).await.unwrap();
    let mut many = open_set(&hub, &["odd", "other"], None).await;
    next(&mut many).await.unwrap();
    let events = [
        Event::new().data("plain"),
        Event::new().data("two\nlines").comment("a note"),
        Event::new().event("added").unwrap().data("typed"),
        Event::new().data("data first").event("later").unwrap(),
        Event::new().event("only-a-type").unwrap(),
        Event::new()
            .retry(std::time::Duration::from_millis(1500))
            .data("retry too"),
        Event::new().data("event: not a field\nid: nor this"),
        Event::new().comment("only a comment"),
        Event::new().data(""),
    ];
    for event in events {
        hub.publish("odd", event).await.unwrap();
        let own = tokio::time::timeout(Duration::from_secs(10), one.next())
            .await
            .unwrap()
            .unwrap();
        let set = tokio::time::timeout(Duration::from_secs(10), many.next())
            .await
            .unwrap()
            .unwrap();
        let own = std::str::from_utf8(own.as_bytes()).unwrap();
        let set = std::str::from_utf8(set.as_bytes()).unwrap();
        let own_type = own
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .next_back();
        let mut expected = format!(
            "event: odd{}\n",
            own_type.map(|t| format!(":{t}")).unwrap_or_default()
        );
        for line in own.lines().filter(|line| !line.is_empty()) {
            if !line.starts_with("event: ") && !line.starts_with("id: ") {
                expected.push_str(line);
                expected.push('\n');
            }
        }
        let (body, id) = set.rsplit_once("id: ").unwrap();
        assert_eq!(body, expected, "{own:?}");
        assert!(id.starts_with('t') && id.ends_with("\n\n"), "{set:?}");
    }
}

macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Backend::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(backend) = super::Backend::redis(super::Persistence::None) else {
                        return;
                    };
                    assert!(backend.is_redis());
                    super::$check(backend).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_id_in_the_history_resumes_exactly_then_goes_live,
    without_an_id_a_subscriber_gets_its_position_then_live_events_only,
    an_id_older_than_the_history_gets_a_gap_event_then_the_history,
    unknown_and_malformed_ids_get_a_gap_whose_id_resumes_exactly,
    an_id_from_an_earlier_life_of_the_topic_gets_a_restarted_gap,
    an_old_id_on_a_topic_emptied_since_gets_a_restarted_gap,
    a_subscriber_beyond_the_history_gets_a_retry_and_ends,
    a_waiting_subscriber_is_woken_by_a_publish,
    an_event_with_its_own_id_is_refused_and_given_back,
    subscribes_racing_publishes_lose_and_repeat_nothing,
    ids_read_from_headers_are_bounded_and_need_not_be_utf8,
    subscribing_is_bounded_in_topics_and_name_length,
    a_topic_dropped_while_idle_resumes_as_its_backend_allows,
    a_run_is_followed_resumed_stopped_and_ended,
    a_set_resumes_every_topic_exactly_after_breaks_at_random_points,
    a_set_s_events_name_their_topic_and_keep_their_own_type,
    a_set_writes_its_topics_in_publish_order,
    subscriptions_of_one_set_share_what_they_write,
    one_topic_past_its_history_gets_its_own_gap_and_the_others_resume_exactly,
    a_changed_set_resumes_the_topics_in_both_and_starts_new_ones_fresh,
    an_id_never_widens_the_set,
    a_client_past_its_bound_is_refused_until_a_stream_closes,
    a_set_is_bounded_and_a_refused_set_holds_nothing,
    a_set_of_a_hundred_topics_is_woken_by_each_in_publish_order,
    a_junk_id_of_any_length_costs_a_set_s_gap_events_little,
    a_set_s_event_types_never_pass_for_another_kind_of_event,
    a_set_s_events_are_the_topic_s_events_retyped_and_reidentified,
);

/// A run followed, stopped, ended and resumed on the instance that started
/// it: on Redis, through the run's own stream, as on the memory hub.
async fn a_run_is_followed_resumed_stopped_and_ended(backend: Backend) {
    let hub = backend.hub(Hub::builder());
    let run = hub.start_run().await.unwrap();
    let id = run.id().to_owned();
    let none = http::HeaderMap::new();
    let uri = http::Uri::from_static("/runs/x");
    let mut follower = hub.follow_run(&id, &none, &uri).await.unwrap();
    let first = run.send(Event::new().data("1")).await.unwrap();
    run.send(Event::new().data("2")).await.unwrap();
    assert_eq!(
        next(&mut follower).await.unwrap().data.as_deref(),
        Some("1")
    );
    assert_eq!(
        next(&mut follower).await.unwrap().data.as_deref(),
        Some("2")
    );
    assert!(hub.stop_run(&id).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), run.stopped())
        .await
        .expect("the producer learns of the stop at once");
    run.finish(tower_sse::hub::RunEnd::stopped()).await.unwrap();
    let end = next(&mut follower).await.unwrap();
    assert_eq!(end.event.as_deref(), Some(tower_sse::hub::RUN_END_EVENT));
    assert_eq!(end.data.as_deref(), Some("{\"outcome\":\"stopped\"}"));
    assert_eq!(next(&mut follower).await, None, "the stream ends");
    let mut headers = http::HeaderMap::new();
    headers.insert("last-event-id", first.to_string().parse().unwrap());
    let mut resumed = hub.follow_run(&id, &headers, &uri).await.unwrap();
    assert_eq!(next(&mut resumed).await.unwrap().data.as_deref(), Some("2"));
    assert!(next(&mut resumed).await.unwrap().event.is_some());
    assert_eq!(next(&mut resumed).await, None);
}

// Redis only: many instances, and Redis going away.

/// Two instances of one app on one Redis (the second with a short lease
/// and retention, as given).
fn two_instances(backend: &Backend, lease: Duration, retention: Duration) -> (Hub, Hub) {
    let builder = || {
        Hub::builder()
            .redis_run_lease(lease)
            .run_retention(retention)
    };
    (backend.hub(builder()), backend.hub(builder()))
}

fn with_last_id(id: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("last-event-id", id.parse().unwrap());
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_on_one_instance_is_followed_resumed_and_stopped_on_another() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let (a, b) = two_instances(&backend, Duration::from_secs(10), Duration::from_secs(1));
    let uri = http::Uri::from_static("/runs/x");
    let run = a.start_run().await.unwrap();
    let id = run.id().to_owned();
    // The producer on A: a token every 20 ms until someone stops it.
    let producer = tokio::spawn(async move {
        let mut sent = 0u32;
        loop {
            tokio::select! {
                () = run.stopped() => break,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            sent += 1;
            run.send(Event::new().data(sent.to_string())).await.unwrap();
        }
        let end = run.finish(tower_sse::hub::RunEnd::stopped()).await.unwrap();
        (sent, end)
    });
    let mut on_b = b
        .follow_run(&id, &http::HeaderMap::new(), &uri)
        .await
        .unwrap();
    assert_eq!(on_b.how_it_started(), Start::Exact { replayed: 0 });
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next(&mut on_b).await.unwrap());
    }
    // Live tokens come with their announcements, sealed: B reads none back.
    let redis = backend.redis.as_ref().unwrap();
    redis.command("CONFIG RESETSTAT");
    for _ in 0..5 {
        seen.push(next(&mut on_b).await.unwrap());
    }
    assert_eq!(calls(redis, "xrange"), 0, "B read the run's tokens back");
    // A reload lands on B again: it resumes after the second token.
    let second = seen[1].id.clone().unwrap();
    let mut resumed = b
        .follow_run(&id, &with_last_id(&second), &uri)
        .await
        .unwrap();
    assert_eq!(next(&mut resumed).await.unwrap().data.as_deref(), Some("3"));
    // Stopped from B: A's producer hears it and ends the run.
    assert!(b.stop_run(&id).await.unwrap(), "the run runs");
    let (sent, end) = tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .expect("the producer on A stops within 5 s")
        .unwrap();
    let mut rest = Vec::new();
    while let Some(event) = next(&mut on_b).await {
        rest.push(event);
    }
    let last = rest.pop().unwrap();
    assert_eq!(last.event.as_deref(), Some(tower_sse::hub::RUN_END_EVENT));
    assert_eq!(last.data.as_deref(), Some("{\"outcome\":\"stopped\"}"));
    assert_eq!(last.id, Some(end.to_string()));
    let data: Vec<String> = seen
        .iter()
        .chain(&rest)
        .map(|event| event.data.clone().unwrap())
        .collect();
    let expected: Vec<String> = (1..=sent).map(|n| n.to_string()).collect();
    assert_eq!(data, expected, "every token once, in order");
    assert!(
        !b.stop_run(&id).await.unwrap(),
        "an ended run is not running"
    );
    assert!(!a.stop_run(&id).await.unwrap());
    // A client that saw the end: 204, on either instance.
    for hub in [&a, &b] {
        let done = hub
            .follow_run(&id, &with_last_id(&end.to_string()), &uri)
            .await
            .unwrap();
        assert_eq!(done.how_it_started(), Start::Finished);
    }
    // Gone after its retention, on every instance.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    for hub in [&a, &b] {
        let gone = hub.follow_run(&id, &http::HeaderMap::new(), &uri).await;
        assert_eq!(gone.err().map(|e| e.kind()), Some(HubErrorKind::NoSuchRun));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_instance_dies_ends_as_failed_for_every_follower() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let lease = Duration::from_millis(600);
    let uri = http::Uri::from_static("/runs/x");
    let (id, first) = a_run_on_an_instance_that_dies(&backend, lease);
    let b = backend.hub(Hub::builder().redis_run_lease(lease));
    let mut follower = b
        .follow_run(&id, &http::HeaderMap::new(), &uri)
        .await
        .unwrap();
    assert_eq!(
        next(&mut follower).await.unwrap().data.as_deref(),
        Some("1")
    );
    let started = std::time::Instant::now();
    let end = next(&mut follower).await.expect("the run ends");
    assert_eq!(end.event.as_deref(), Some(tower_sse::hub::RUN_END_EVENT));
    let outcome: serde_json::Value = serde_json::from_str(end.data.as_deref().unwrap()).unwrap();
    assert_eq!(outcome["outcome"], "failed");
    assert!(
        outcome["reason"].as_str().unwrap().contains("producer"),
        "{outcome}"
    );
    assert_eq!(next(&mut follower).await, None, "and the stream ends");
    eprintln!("the run ended {:?} after the follow", started.elapsed());
    // A reload resumes to the same end.
    let mut resumed = b
        .follow_run(&id, &with_last_id(&first.to_string()), &uri)
        .await
        .unwrap();
    assert_eq!(next(&mut resumed).await.unwrap(), end);
    assert_eq!(next(&mut resumed).await, None);
}

/// Instance A, on a runtime of its own that ends mid-run (killed): its
/// reader and its lease renewals end with it, its run unfinished after one
/// event. Gives the run's id and that event's id.
fn a_run_on_an_instance_that_dies(backend: &Backend, lease: Duration) -> (String, EventId) {
    let (redis_url, prefix) = (
        backend.redis.as_ref().unwrap().url(),
        backend.prefix.clone(),
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let a = Hub::builder()
                .redis(redis_url)
                .redis_key_prefix(&prefix)
                .redis_run_lease(lease)
                .build()
                .unwrap();
            let run = a.start_run().await.unwrap();
            let first = run.send(Event::new().data("1")).await.unwrap();
            let id = run.id().to_owned();
            // Killed: nothing of it runs again, not even its drop.
            std::mem::forget(run);
            (id, first)
        })
    })
    .join()
    .unwrap()
}

/// Issue 26, from an outside attack: the reader pinged (and renewed the
/// leases of quiet runs) only when nothing else woke it, so an instance
/// kept busy by announcements let a healthy run's lease lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_keeps_renewing_the_lease_of_its_quiet_run() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let lease = Duration::from_millis(600);
    let (a, b) = two_instances(&backend, lease, Duration::from_secs(60));
    let run = a.start_run().await.unwrap();
    let id = run.id().to_owned();
    // A's reader kept busy: a topic followed on A, published to from B
    // without a pause, for five leases.
    let mut busy = a.subscribe("busy", None).await.unwrap();
    let reading = tokio::spawn(async move { while busy.next().await.is_some() {} });
    let publisher = b.clone();
    let publishing = tokio::spawn(async move {
        let until = std::time::Instant::now() + lease * 5;
        while std::time::Instant::now() < until {
            let _ = publisher.publish("busy", Event::new().data("x")).await;
        }
    });
    publishing.await.unwrap();
    reading.abort();
    // The run still runs: a follow on B sees no end, and its next token.
    let uri = http::Uri::from_static("/runs/x");
    let mut follower = b
        .follow_run(&id, &http::HeaderMap::new(), &uri)
        .await
        .unwrap();
    assert_eq!(follower.how_it_started(), Start::Exact { replayed: 0 });
    run.send(Event::new().data("alive"))
        .await
        .expect("the run was not ended under its producer");
    assert_eq!(
        next(&mut follower).await.unwrap().data.as_deref(),
        Some("alive")
    );
}

/// From a review: the leases were renewed by the reader, so a reader that
/// kept reconnecting (its subscriptions' connection cut again and again,
/// as in a failover) let a healthy run's lease lapse; and a `finish`
/// whose future was dropped wrote no end, and its drop none either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_keeps_reconnecting_does_not_lapse_a_run_and_a_dropped_finish_still_ends_it()
{
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let lease = Duration::from_millis(600);
    let (a, b) = two_instances(&backend, lease, Duration::from_secs(60));
    let run = a.start_run().await.unwrap();
    let id = run.id().to_owned();
    let redis = backend.redis.as_ref().unwrap();
    // Every subscriptions' connection cut, every 100 ms, for five leases.
    let until = std::time::Instant::now() + lease * 5;
    while std::time::Instant::now() < until {
        redis.command("CLIENT KILL TYPE pubsub");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let uri = http::Uri::from_static("/runs/x");
    let mut follower = b
        .follow_run(&id, &http::HeaderMap::new(), &uri)
        .await
        .unwrap();
    assert_eq!(follower.how_it_started(), Start::Exact { replayed: 0 });
    run.send(Event::new().data("alive"))
        .await
        .expect("the run was not ended under its producer");
    assert_eq!(
        next(&mut follower).await.unwrap().data.as_deref(),
        Some("alive")
    );
    run.finish(tower_sse::hub::RunEnd::completed())
        .await
        .unwrap();
    // A finish given up on at once: the run still ends (with its own end
    // or, if that was not written, as failed), not a lease later.
    let (a, b) = two_instances(&backend, Duration::from_secs(30), Duration::from_secs(60));
    let run = a.start_run().await.unwrap();
    let mut follower = b
        .follow_run(run.id(), &http::HeaderMap::new(), &uri)
        .await
        .unwrap();
    let finishing = run.finish(tower_sse::hub::RunEnd::completed());
    let _ = tokio::time::timeout(Duration::from_micros(1), finishing).await;
    let end = next(&mut follower).await.expect("an end");
    assert_eq!(end.event.as_deref(), Some(tower_sse::hub::RUN_END_EVENT));
    assert_eq!(next(&mut follower).await, None);
}

/// From an outside attack: the leases of quiet runs were renewed one after
/// another, so that once the runs times a round trip passed the lease,
/// healthy runs lapsed (400 runs at 30 ms; here 9,000 at loopback's round
/// trip, with the shortest lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leases_of_many_quiet_runs_are_renewed_in_time() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let lease = Duration::from_millis(300);
    let (a, b) = two_instances(&backend, lease, Duration::from_secs(60));
    let mut runs = Vec::new();
    for _ in 0..9_000 {
        runs.push(a.start_run().await.unwrap());
    }
    tokio::time::sleep(lease * 5).await;
    let uri = http::Uri::from_static("/runs/x");
    for run in runs.iter().step_by(450) {
        let follower = b
            .follow_run(run.id(), &http::HeaderMap::new(), &uri)
            .await
            .unwrap();
        assert_eq!(
            follower.how_it_started(),
            Start::Exact { replayed: 0 },
            "a quiet run lapsed under its producer"
        );
    }
    for run in runs {
        run.finish(tower_sse::hub::RunEnd::completed())
            .await
            .unwrap();
    }
}

/// From an outside attack: when Redis lost part of a run that an instance
/// had read (a restart from an older snapshot; here, entries deleted by
/// hand), that instance served only what came after the break, though
/// Redis still held the rest; a new instance served it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_broke_is_served_again_from_what_redis_holds() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let (a, b) = two_instances(&backend, Duration::from_secs(10), Duration::from_secs(60));
    let uri = http::Uri::from_static("/runs/x");
    let none = http::HeaderMap::new();
    let run = a.start_run().await.unwrap();
    let id = run.id().to_owned();
    let mut follower = b.follow_run(&id, &none, &uri).await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(run.send(Event::new().data(n.to_string())).await.unwrap());
        assert_eq!(next(&mut follower).await.unwrap().data, Some(n.to_string()));
    }
    let redis = backend.redis.as_ref().unwrap();
    let key = format!("{}run:{{{id}}}", backend.prefix);
    let reply = redis.command(&format!("XDEL {key} {} {}", ids[3], ids[4]));
    assert_eq!(reply, ":2\r\n");
    run.send(Event::new().data("6")).await.unwrap();
    // B sees the break: its follower ends with a retry.
    let broke = next(&mut follower).await;
    assert!(broke.is_none() || broke.unwrap().retry);
    drop(follower);
    let mut again = b.follow_run(&id, &none, &uri).await.unwrap();
    assert_eq!(again.how_it_started(), Start::Exact { replayed: 4 });
    let mut data = Vec::new();
    for _ in 0..4 {
        data.push(next(&mut again).await.unwrap().data.unwrap());
    }
    assert_eq!(
        data,
        ["1", "2", "3", "6"],
        "what Redis holds, from the start"
    );
    run.finish(tower_sse::hub::RunEnd::completed())
        .await
        .unwrap();
}

/// From an outside attack: a run's stream deleted mid-run (or evicted)
/// left its followers waiting for the next stream check (30 s), and a stop
/// of a run whose producer was gone answered `true` and ended nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_run_ends_its_followers_and_a_stop_of_a_lapsed_run_ends_it() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let lease = Duration::from_millis(600);
    let (a, b) = two_instances(&backend, lease, Duration::from_secs(60));
    let uri = http::Uri::from_static("/runs/x");
    let none = http::HeaderMap::new();
    // Deleted mid-run.
    let run = a.start_run().await.unwrap();
    let id = run.id().to_owned();
    let mut follower = b.follow_run(&id, &none, &uri).await.unwrap();
    run.send(Event::new().data("1")).await.unwrap();
    assert_eq!(
        next(&mut follower).await.unwrap().data.as_deref(),
        Some("1")
    );
    let redis = backend.redis.as_ref().unwrap();
    let key = format!("{}run:{{{id}}}", backend.prefix);
    assert_eq!(redis.command(&format!("DEL {key}")), ":1\r\n");
    let refused = run.send(Event::new().data("2")).await.unwrap_err();
    assert_eq!(refused.kind(), HubErrorKind::NoSuchRun);
    assert!(run.is_stop_requested(), "the producer is told to stop");
    // The follower ends (with a retry) well before the 30 s stream check.
    let ended = next(&mut follower).await;
    assert!(ended.is_none() || ended.unwrap().retry);
    let gone = b.follow_run(&id, &none, &uri).await.err().map(|e| e.kind());
    assert_eq!(gone, Some(HubErrorKind::NoSuchRun));
    // Stopped after its producer died: ended as failed, not "stopping".
    let (id, first) = a_run_on_an_instance_that_dies(&backend, lease);
    tokio::time::sleep(lease * 2).await;
    assert!(!b.stop_run(&id).await.unwrap(), "nobody runs it");
    let mut resumed = b
        .follow_run(&id, &with_last_id(&first.to_string()), &uri)
        .await
        .unwrap();
    let end = next(&mut resumed).await.unwrap();
    assert_eq!(end.event.as_deref(), Some(tower_sse::hub::RUN_END_EVENT));
    assert!(end.data.unwrap().contains("\"failed\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_of_no_run_is_a_404_and_run_names_are_not_topics() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let hub = backend.hub(Hub::builder());
    let uri = http::Uri::from_static("/runs/x");
    let none = http::HeaderMap::new();
    for id in [
        "0123456789abcdef0123456789abcdef",
        "x",
        "0123456789abcdef0123456789abcde}",
        "",
    ] {
        let error = hub.follow_run(id, &none, &uri).await.err().unwrap();
        assert_eq!(error.kind(), HubErrorKind::NoSuchRun, "{id:?}");
        assert!(!hub.stop_run(id).await.unwrap());
    }
    let run = hub.start_run().await.unwrap();
    let name = format!("\0{}", run.id());
    let refused = hub
        .publish(&name, Event::new().data("x"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), HubErrorKind::BadTopic);
    let refused = hub.subscribe(&name, None).await.err().unwrap();
    assert_eq!(refused.kind(), HubErrorKind::BadTopic);
    assert_eq!(
        refused.into_http_response().status(),
        http::StatusCode::BAD_REQUEST
    );
    run.finish(tower_sse::hub::RunEnd::completed())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_deliver_one_order_under_concurrent_publishing() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    const EACH: u32 = 500;
    let a = backend.hub(Hub::builder().history(5_000));
    let b = backend.hub(Hub::builder().history(5_000));
    let mut on_a = a.subscribe("t", None).await.unwrap();
    let mut on_b = b.subscribe("t", None).await.unwrap();
    next(&mut on_a).await.unwrap();
    next(&mut on_b).await.unwrap();
    let publish = |hub: Hub, name: &'static str| {
        tokio::spawn(async move {
            for n in 1..=EACH {
                hub.publish("t", Event::new().data(format!("{name}{n}")))
                    .await
                    .unwrap();
            }
        })
    };
    let (pa, pb) = (publish(a.clone(), "a"), publish(b.clone(), "b"));
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..2 * EACH {
        seen_a.push(next(&mut on_a).await.unwrap());
        seen_b.push(next(&mut on_b).await.unwrap());
    }
    pa.await.unwrap();
    pb.await.unwrap();
    assert_eq!(
        seen_a, seen_b,
        "both instances deliver the same events in the same order"
    );
    let ids: Vec<(u64, u64)> = seen_a
        .iter()
        .map(|seen| {
            let (ms, seq) = seen.id.as_deref().unwrap().split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    for name in ["a", "b"] {
        let own: Vec<u32> = seen_a
            .iter()
            .filter_map(|seen| seen.data.as_deref()?.strip_prefix(name)?.parse().ok())
            .collect();
        assert_eq!(
            own,
            (1..=EACH).collect::<Vec<_>>(),
            "each publisher's order"
        );
    }
    assert!(
        quiet(&mut on_a).await && quiet(&mut on_b).await,
        "nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_resumes_on_another_instance_even_right_after_the_event() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let a = backend.hub(Hub::builder());
    let b = backend.hub(Hub::builder());
    let ids = publish_n(&a, "t", 1..=5).await;
    // B has never seen the topic: it loads it from Redis.
    let mut resumed = b.subscribe("t", Some(&ids[1].to_string())).await.unwrap();
    assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 3 });
    assert_eq!(next(&mut resumed).await.unwrap().data.as_deref(), Some("3"));
    // An id B's reader may not have read yet: fetched, never a gap.
    for n in 6..=105 {
        let id = publish_n(&a, "t", n..=n).await[0].to_string();
        let resumed = b.subscribe("t", Some(&id)).await.unwrap();
        assert_eq!(
            resumed.how_it_started(),
            Start::Exact { replayed: 0 },
            "event {n}"
        );
    }
}

/// A set's id resumes on another instance: Redis stream ids are the same
/// everywhere, and the set's id is made of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_resumes_exactly_on_another_instance() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let a = backend.hub(Hub::builder());
    let b = backend.hub(Hub::builder());
    let topics = set(&["feed", "notes", "user:1"]);
    let mut on_a = a
        .subscribe_set(&topics, None, &with_id(None))
        .await
        .unwrap();
    next(&mut on_a).await.unwrap();
    publish_n(&a, "feed", 1..=2).await;
    publish_n(&b, "notes", 1..=1).await;
    let mut id = String::new();
    for _ in 0..3 {
        id = next_in_set(&mut on_a).await.unwrap().2;
    }
    drop(on_a);
    publish_n(&a, "feed", 3..=3).await;
    publish_n(&a, "user:1", 1..=2).await;
    let mut on_b = b
        .subscribe_set(&topics, None, &with_id(Some(&id)))
        .await
        .unwrap();
    assert_eq!(on_b.how_it_started(), Start::Exact { replayed: 3 });
    let mut got = Vec::new();
    for _ in 0..3 {
        let (topic, data, _) = next_in_set(&mut on_b).await.unwrap();
        got.push(format!("{topic}={data}"));
    }
    got.sort();
    assert_eq!(got, ["feed=3", "user:1=1", "user:1=2"]);
    assert!(quiet(&mut on_b).await, "nothing twice");
}

/// One topic's stream lost (deleted, expired, evicted) while the page was
/// away: that topic alone gets a `restarted` gap, the others resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_topic_whose_stream_was_lost_gets_its_own_restarted_gap() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let hub = backend.hub(Hub::builder());
    let topics = set(&["kept", "lost"]);
    let mut stream = hub
        .subscribe_set(&topics, None, &with_id(None))
        .await
        .unwrap();
    next(&mut stream).await.unwrap();
    publish_n(&hub, "kept", 1..=1).await;
    publish_n(&hub, "lost", 1..=1).await;
    next_in_set(&mut stream).await.unwrap();
    let (_, _, id) = next_in_set(&mut stream).await.unwrap();
    drop(stream);
    publish_n(&hub, "kept", 2..=2).await;
    let later = backend.after_losing("lost");
    publish_n(&later, "lost", 1..=1).await;
    let mut resumed = later
        .subscribe_set(&topics, None, &with_id(Some(&id)))
        .await
        .unwrap();
    let starts: Vec<(&str, Start)> = resumed.how_each_started().collect();
    assert_eq!(starts[0], ("kept", Start::Exact { replayed: 1 }));
    assert!(
        matches!(
            starts[1],
            (
                "lost",
                Start::Gap {
                    reason: GapReason::Restarted,
                    ..
                }
            )
        ),
        "{starts:?}"
    );
    let gap = next(&mut resumed).await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert!(gap.data.unwrap().contains("\"topic\":\"lost\""));
}

/// Found by an outside attack: anyone may publish on a topic's channel.
/// Forged announcements (one without a seal, as the first announcements
/// were, and one with a seal of the right shape, each with the previous id
/// the instance last read, so that it would chain) and a real one sent
/// again later deliver nothing, and the next real event is the next event:
/// only an entry sealed with the hub's key that follows the last one read
/// is taken from its announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_replayed_announcement_delivers_nothing() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let hub = backend.hub(Hub::builder());
    let mut live = hub.subscribe("t", None).await.unwrap();
    next(&mut live).await.unwrap();
    let mut heard = RawSubscriber::new(redis, &backend.key("t"));
    let one = publish_n(&hub, "t", 1..=1).await[0].to_string();
    assert_eq!(next(&mut live).await.unwrap().id, Some(one.clone()));
    let real = heard.next_message();
    assert!(
        real.starts_with(format!("{one} ").as_bytes()),
        "{}",
        String::from_utf8_lossy(&real)
    );
    // A seal of the right shape, not made with the hub's key, on an entry
    // that follows the last one read.
    let (ms, seq) = one.split_once('-').unwrap();
    let forged = format!("{}-{seq}", ms.parse::<u64>().unwrap() + 1);
    let unsealed = format!("{forged} {one} data: forged");
    let sealed = format!("{forged} {one} {} data: forged\n", "0f".repeat(20));
    // Each heard alone (announcements heard together are read together).
    for payload in [unsealed, sealed] {
        let reply = redis.command(&resp(&[
            b"PUBLISH",
            backend.key("t").as_bytes(),
            payload.as_bytes(),
        ]));
        assert!(reply.starts_with(':'), "{reply}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The first event's own announcement, again.
    redis.command(&resp(&[b"PUBLISH", backend.key("t").as_bytes(), &real]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let two = publish_n(&hub, "t", 2..=2).await[0].to_string();
    let seen = next(&mut live).await.unwrap();
    assert_eq!((seen.data.as_deref(), seen.id), (Some("2"), Some(two)));
    assert!(quiet(&mut live).await);
}

/// Live events come with their announcements, sealed: neither the instance
/// that published them nor another reads them back from Redis. Hubs that
/// hold different seal keys (the key vanished, and a hub that started since
/// set a new one) lose nothing: they read each other's events back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_are_taken_from_their_announcements_on_every_instance() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let mut hubs = vec![backend.hub(Hub::builder()), backend.hub(Hub::builder())];
    let mut lives = Vec::new();
    for hub in &hubs {
        lives.push(hub.subscribe("t", None).await.unwrap());
    }
    for live in &mut lives {
        next(live).await.unwrap();
    }
    for round in 0..2 {
        if round == 1 {
            let reply = redis.command(&format!("DEL {}seal-key", backend.prefix));
            assert_eq!(reply, ":1\r\n", "the hubs' seal key is where the docs say");
            hubs.push(backend.hub(Hub::builder()));
            lives.push(hubs[2].subscribe("t", None).await.unwrap());
            next(&mut lives[2]).await.unwrap();
        }
        // Announcements still queued are read (and find nothing new).
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.command("CONFIG RESETSTAT");
        let mut ids = Vec::new();
        for n in 1..=12 {
            let hub = &hubs[n as usize % hubs.len()];
            ids.extend(publish_n(hub, "t", n..=n).await);
        }
        for live in &mut lives {
            for id in &ids {
                assert_eq!(next(live).await.unwrap().id, Some(id.to_string()));
            }
        }
        let read_back = calls(redis, "xrange");
        match round {
            0 => assert_eq!(read_back, 0, "live events were read back from Redis"),
            _ => assert!(
                read_back > 0,
                "an entry sealed with another key was trusted"
            ),
        }
    }
    for live in &mut lives {
        assert!(quiet(live).await);
    }
}

/// Found by an outside attack: an instance that reads a topic back (its
/// announcements not sealed with the key it holds: a publisher with
/// another key, an older version, a forged announcement) took the entries
/// published after the one announced as well, ahead of other topics'
/// entries published before them, so a set's events came out of publish
/// order. Entries after the newest one announced wait for their own
/// announcements now, and an announced id the stream does not hold (a
/// forged one) does not move where the entries taken end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_keeps_publish_order_when_its_instance_reads_every_entry_back() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let publisher = backend.hub(Hub::builder());
    // The publisher has read the seal key; the reader's is another.
    let _warm = publisher.subscribe("warm", None).await.unwrap();
    let reply = redis.command(&format!("DEL {}seal-key", backend.prefix));
    assert_eq!(reply, ":1\r\n");
    let reader = backend.hub(Hub::builder().history(5_000));
    let mut page = open_set(&reader, &["t", "u"], None).await;
    next(&mut page).await.unwrap();
    redis.command("CONFIG RESETSTAT");
    let mut sent = Vec::new();
    // Forged announcements of an entry far ahead, now and then: an id the
    // stream does not hold says nothing of where the entries announced end.
    let forged = format!("99999999999999-0 1-0 {} data: x\n", "0f".repeat(20));
    for n in 0..400 {
        let topic = ["t", "u"][n % 2];
        if n % 3 == 0 {
            redis.command(&resp(&[
                b"PUBLISH",
                backend.key("t").as_bytes(),
                forged.as_bytes(),
            ]));
        }
        publisher
            .publish(topic, Event::new().data(n.to_string()))
            .await
            .unwrap();
        sent.push((topic.to_owned(), n.to_string()));
    }
    let mut seen = Vec::new();
    for _ in 0..sent.len() {
        let (topic, data, _) = next_in_set(&mut page).await.unwrap();
        seen.push((topic, data));
    }
    assert_eq!(seen, sent);
    assert!(calls(redis, "xrange") > 0, "the reader trusted another key");
}

/// Found by an outside attack: a hub on another database of the same
/// Redis, whose seal key is a copy of this one's (a staging copy of
/// production's keys), is heard on the same channels: its entries must
/// not be taken as this database's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_seal_key_on_another_database_delivers_nothing() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let url = redis.url();
    let build = |db: u32| {
        Hub::builder()
            .redis(format!("{url}/{db}"))
            .redis_key_prefix(&backend.prefix)
            .build()
            .unwrap()
    };
    let prod = build(0);
    let mut live = prod.subscribe("s", None).await.unwrap();
    next(&mut live).await.unwrap();
    let one = prod.publish("s", Event::new().data("prod")).await.unwrap();
    assert_eq!(next(&mut live).await.unwrap().id, Some(one.to_string()));
    for key in [format!("{}seal-key", backend.prefix), backend.key("s")] {
        let reply = redis.command(&format!("COPY {key} {key} DB 1"));
        assert_eq!(reply, ":1\r\n", "{key}");
    }
    let staging = build(1);
    // Its reader has read the copied key before it publishes.
    let _warm = staging.subscribe("warm", None).await.unwrap();
    staging
        .publish("s", Event::new().data("staging"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let two = prod
        .publish("s", Event::new().data("prod 2"))
        .await
        .unwrap();
    let seen = next(&mut live).await.unwrap();
    assert_eq!(
        (seen.data.as_deref(), seen.id),
        (Some("prod 2"), Some(two.to_string()))
    );
    assert!(quiet(&mut live).await);
}

/// A plain connection subscribed to one channel.
struct RawSubscriber {
    stream: std::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawSubscriber {
    fn new(redis: &RedisServer, channel: &str) -> Self {
        use std::io::Write as _;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(resp(&[b"SUBSCRIBE", channel.as_bytes()]).as_bytes())
            .unwrap();
        stream.write_all(b"\r\n").unwrap();
        let mut subscriber = Self {
            stream,
            buffer: Vec::new(),
        };
        // The subscription's confirmation.
        subscriber.next_reply();
        subscriber
    }

    /// The payload of the next message.
    fn next_message(&mut self) -> Vec<u8> {
        let mut reply = self.next_reply();
        assert_eq!(reply[0], b"message");
        reply.pop().unwrap()
    }

    /// The next reply: an array of bulk strings and integers.
    fn next_reply(&mut self) -> Vec<Vec<u8>> {
        loop {
            if let Some((items, used)) = parse_array(&self.buffer) {
                self.buffer.drain(..used);
                return items;
            }
            let mut chunk = [0; 4096];
            let n = std::io::Read::read(&mut self.stream, &mut chunk).unwrap();
            assert!(n > 0, "Redis closed the subscription");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A RESP array at the start of `bytes` and its length, if it is whole.
fn parse_array(bytes: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let line = |at: usize| -> Option<(&[u8], usize)> {
        let end = at + bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&bytes[at..end], end + 2))
    };
    let number = |text: &[u8]| -> usize { std::str::from_utf8(text).unwrap().parse().unwrap() };
    let (head, mut at) = line(0)?;
    assert_eq!(head[0], b'*', "{}", String::from_utf8_lossy(bytes));
    let mut items = Vec::new();
    for _ in 0..number(&head[1..]) {
        let (head, next) = line(at)?;
        at = next;
        match head[0] {
            b'$' => {
                let len = number(&head[1..]);
                let item = bytes.get(at..at + len)?.to_vec();
                at += len + 2;
                if bytes.len() < at {
                    return None;
                }
                items.push(item);
            }
            _ => items.push(head[1..].to_vec()),
        }
    }
    Some((items, at))
}

/// `parts` as one RESP command (binary safe), without its last line end
/// (`RedisServer::command` adds it).
fn resp(parts: &[&[u8]]) -> String {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.truncate(out.len() - 2);
    String::from_utf8(out).expect("the tests' commands are text")
}

/// Found by an outside attack: pub/sub ignores Redis's database number, so
/// two deployments on databases 0 and 1 of one Redis, with the same prefix,
/// hear each other's announcements. Neither may lose or take an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_on_two_databases_of_one_redis_do_not_disturb_each_other() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let url = backend.redis.as_ref().unwrap().url();
    let build = |db: u32| {
        Hub::builder()
            .redis(format!("{url}/{db}"))
            .redis_key_prefix(&backend.prefix)
            .build()
            .unwrap()
    };
    let (prod, staging) = (build(0), build(1));
    let mut on_prod = prod.subscribe("t", None).await.unwrap();
    let mut on_staging = staging.subscribe("t", None).await.unwrap();
    next(&mut on_prod).await.unwrap();
    next(&mut on_staging).await.unwrap();
    for n in 0..200 {
        prod.publish("t", Event::new().data(format!("p{n}")))
            .await
            .unwrap();
        staging
            .publish("t", Event::new().data(format!("s{n}")))
            .await
            .unwrap();
    }
    for (stream, mark) in [(&mut on_prod, 'p'), (&mut on_staging, 's')] {
        for n in 0..200 {
            let seen = next(stream).await.unwrap();
            assert_eq!(seen.data, Some(format!("{mark}{n}")), "{seen:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_gives_typed_errors_in_time_then_recovers() {
    let Some(mut backend) = Backend::redis(Persistence::None) else {
        return;
    };
    backend.redis.as_mut().unwrap().kill();
    let hub = backend.hub(Hub::builder());
    let started = Instant::now();
    let error = hub
        .publish("t", Event::new().data("kept"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::Unavailable);
    assert_eq!(error.into_event().encode().as_bytes(), b"data: kept\n\n");
    // Given back as it was, even the event the hub had to add a line to.
    let typed = Event::new().event("note").unwrap();
    let error = hub.publish("t", typed.clone()).await.unwrap_err();
    let back = error.into_event().data("added");
    assert_eq!(back.encode(), typed.data("added").encode());
    let error = hub.subscribe("t", None).await.unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "each fails within its timeout: {:?}",
        started.elapsed()
    );
    let response = error.into_http_response();
    assert_eq!(
        response.status(),
        200,
        "not a status that stops EventSource"
    );
    assert!(response.body().contains("retry:"));
    backend.redis.as_mut().unwrap().restart();
    let id = hub.publish("t", Event::new().data("1")).await.unwrap();
    let mut fresh = hub.subscribe("t", None).await.unwrap();
    assert_eq!(next(&mut fresh).await.unwrap().id, Some(id.to_string()));
}

/// Publishes `1..` every few milliseconds until told to stop; records which
/// publishes Redis acknowledged.
fn steady_publisher(
    hub: Hub,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u32, bool)>> {
    tokio::spawn(async move {
        let mut log = Vec::new();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let ok = hub
                .publish("t", Event::new().data(n.to_string()))
                .await
                .is_ok();
            log.push((n, ok));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        log
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_with_an_fsynced_log_loses_nothing_acknowledged() {
    let Some(mut backend) = Backend::redis(Persistence::AppendFsyncAlways) else {
        return;
    };
    let hub = backend.hub(Hub::builder());
    let reader = backend.hub(Hub::builder());
    let mut live = reader.subscribe("t", None).await.unwrap();
    next(&mut live).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = steady_publisher(hub.clone(), stop.clone());
    let received = Arc::new(Mutex::new(Vec::<u32>::new()));
    let collector = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(event) = live.next().await {
                let seen = parse(event.as_bytes());
                if seen.retry {
                    return false;
                }
                if let Some(data) = seen.data {
                    received.lock().unwrap().push(data.parse().unwrap());
                }
            }
            true
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = backend.redis.as_mut().unwrap();
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let log = publisher.await.unwrap();
    let acknowledged: Vec<u32> = log.iter().filter(|(_, ok)| *ok).map(|(n, _)| *n).collect();
    assert!(
        log.iter().any(|(_, ok)| !ok),
        "publishing failed while Redis was down"
    );
    assert!(
        acknowledged.len() > 100,
        "{} acknowledged",
        acknowledged.len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().last() != acknowledged.last() {
        assert!(Instant::now() < deadline, "the last event arrives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    collector.abort();
    let received = received.lock().unwrap().clone();
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice"
    );
    let missing: Vec<&u32> = acknowledged
        .iter()
        .filter(|n| received.binary_search(n).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// A hub with a live subscriber that read events 1 to 3; then Redis
/// restarts without persistence.
async fn three_read_then_restart(backend: &mut Backend) -> (Hub, Subscription, Vec<EventId>) {
    let hub = backend.hub(Hub::builder());
    let mut live = hub.subscribe("t", None).await.unwrap();
    next(&mut live).await.unwrap();
    let ids = publish_n(&hub, "t", 1..=3).await;
    for n in 1..=3 {
        assert_eq!(next(&mut live).await.unwrap().data, Some(n.to_string()));
    }
    backend.redis.as_mut().unwrap().restart();
    (hub, live, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_shows_as_a_restarted_gap() {
    let Some(mut backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let (hub, mut live, ids) = three_read_then_restart(&mut backend).await;
    let mut four = Err(());
    for _ in 0..50 {
        match hub.publish("t", Event::new().data("4")).await {
            Ok(id) => {
                four = Ok(id);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let four = four.expect("publishing works again");
    // The entry after the restart does not follow the last one read: the
    // stream ends for a reconnect, which learns of the gap.
    let retry = next(&mut live).await.unwrap();
    assert!(retry.retry, "{retry:?}");
    assert_eq!(next(&mut live).await, None);
    // Once this instance has read event 4 (its reader may still be
    // reconnecting), the reconnect replays it after the gap event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.topic_stats("t").unwrap().history_len < 1 {
        assert!(Instant::now() < deadline, "event 4 is read");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut resumed = hub.subscribe("t", Some(&ids[2].to_string())).await.unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            replayed: 1
        }
    );
    next(&mut resumed).await.unwrap();
    let seen = next(&mut resumed).await.unwrap();
    assert_eq!(
        (seen.data.as_deref(), seen.id),
        (Some("4"), Some(four.to_string()))
    );
}

#[cfg(feature = "layers")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_the_grace_ends_streams_as_unavailable_and_recovers() {
    use tower::{service_fn, Layer, ServiceExt};
    use tower_sse::close::{CloseLayer, CloseReason};

    let Some(mut redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let hub = Hub::builder()
        .redis(redis.url())
        .redis_key_prefix(format!("test{}:", common::random_tag()))
        .redis_timeout(Duration::from_millis(300))
        .redis_outage_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let layer = {
        let reasons = reasons.clone();
        CloseLayer::builder()
            .on_close(move |info| reasons.lock().unwrap().push(info.reason))
            .build()
            .unwrap()
    };
    let service = layer.layer(service_fn(|_request: http::Request<()>| {
        let hub = hub.clone();
        async move {
            let subscription = hub.subscribe("t", None).await.unwrap();
            Ok::<_, std::convert::Infallible>(subscription.into_http_response())
        }
    }));
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    let reading = tokio::spawn(http_body_util::BodyExt::collect(response.into_body()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.kill();
    let body = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the stream ends within the grace and a reconnect attempt")
        .unwrap()
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("event: sse-position\n"), "{text}");
    assert!(text.ends_with("\n\n") && text.contains("retry:"), "{text}");
    assert_eq!(*reasons.lock().unwrap(), [CloseReason::Unavailable]);
    let refused = hub.subscribe("t", None).await.unwrap_err();
    assert_eq!(refused.kind(), HubErrorKind::Unavailable);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.subscribe("t", None).await.is_err() {
        assert!(Instant::now() < deadline, "subscribing works again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lost_in_a_restart_end_streams_even_with_nothing_published_since() {
    let Some(mut backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let (hub, mut live, ids) = three_read_then_restart(&mut backend).await;
    // The reader reconnects, sees the stream end before what it read, and
    // ends the stream; nothing needs to be published for that.
    let retry = next(&mut live).await.unwrap();
    assert!(retry.retry, "{retry:?}");
    assert_eq!(next(&mut live).await, None);
    let resumed = hub.subscribe("t", Some(&ids[2].to_string())).await.unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            replayed: 0
        }
    );
}

/// A Redis that accepts connections and never answers (a stalled server or
/// a black-holed network): every call still ends within its timeout, however
/// many wait at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_fails_every_call_within_its_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let hub = Hub::builder()
        .redis(url)
        .redis_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|n| {
            let hub = hub.clone();
            tokio::spawn(async move {
                if n % 2 == 0 {
                    hub.subscribe("t", None)
                        .await
                        .map(drop)
                        .map_err(|e| e.kind())
                } else {
                    hub.publish("t", Event::new().data("x"))
                        .await
                        .map(drop)
                        .map_err(|e| e.kind())
                }
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Err(HubErrorKind::Unavailable));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "50 calls at once took {took:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn redis_settings_out_of_range_are_refused_when_built() {
    use tower_sse::hub::HubConfigErrorKind;
    let url = "redis://127.0.0.1:1";
    for (builder, kind) in [
        (
            Hub::builder().redis(url).redis_timeout(Duration::ZERO),
            HubConfigErrorKind::RedisOutOfRange,
        ),
        (
            Hub::builder().redis(url).redis_timeout(Duration::MAX),
            HubConfigErrorKind::RedisOutOfRange,
        ),
        (
            Hub::builder()
                .redis(url)
                .redis_key_ttl(Some(Duration::ZERO)),
            HubConfigErrorKind::RedisOutOfRange,
        ),
        (
            Hub::builder().redis(url).redis_key_ttl(Some(Duration::MAX)),
            HubConfigErrorKind::RedisOutOfRange,
        ),
        (
            Hub::builder().redis(url).history(usize::MAX),
            HubConfigErrorKind::RedisOutOfRange,
        ),
        (
            Hub::builder().redis("http://nope"),
            HubConfigErrorKind::RedisUrl,
        ),
    ] {
        let error = builder.build().unwrap_err();
        assert_eq!(error.kind(), kind, "{error}");
    }
    // Extremes that are in range build, and a long grace never overflows.
    Hub::builder()
        .redis(url)
        .redis_timeout(Duration::from_secs(60))
        .redis_key_ttl(Some(Duration::from_secs(10 * 365 * 24 * 60 * 60)))
        .redis_outage_grace(Duration::MAX)
        .redis_key_ttl(None)
        .build()
        .unwrap();
    let outside = std::thread::spawn(move || Hub::builder().redis(url).build().unwrap_err().kind());
    assert_eq!(outside.join().unwrap(), HubConfigErrorKind::NoRuntime);
}

/// How many times Redis ran `command` since the last `CONFIG RESETSTAT`.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.command("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads on a quiet instance: what Redis is asked in an idle second.
fn reads(redis: &RedisServer) -> u64 {
    ["xread", "xrange", "xrevrange", "evalsha", "eval"]
        .iter()
        .map(|command| calls(redis, command))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_asks_nothing_between_events_and_reads_past_entries_it_did_not_write() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let hub = backend.hub(Hub::builder());
    let mut live = hub.subscribe("t", None).await.unwrap();
    next(&mut live).await.unwrap();
    let ids = publish_n(&hub, "t", 1..=3).await;
    for _ in 1..=3 {
        next(&mut live).await.unwrap();
    }
    // The announcements still queued are read (and find nothing new).
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.command("CONFIG RESETSTAT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = reads(redis);
    assert_eq!(idle, 0, "{idle} reads in an idle second: the reader polls");
    let more = publish_n(&hub, "t", 10..=12).await;
    for id in &more {
        assert_eq!(next(&mut live).await.unwrap().id, Some(id.to_string()));
    }
    // An entry someone else wrote under the hub's prefix (not announced):
    // the next publish shows that the topic cannot tell what came between,
    // so subscribers lag and learn of a gap.
    let reply = redis.command(&format!("XADD {}{{t}} * other 1", backend.prefix));
    assert!(reply.starts_with('$'), "{reply}");
    let four = publish_n(&hub, "t", 4..=4).await;
    let retry = next(&mut live).await.unwrap();
    assert!(retry.retry, "{retry:?}");
    assert_eq!(next(&mut live).await, None);
    let mut resumed = hub.subscribe("t", Some(&ids[2].to_string())).await.unwrap();
    assert!(
        matches!(resumed.how_it_started(), Start::Gap { .. }),
        "{:?}",
        resumed.how_it_started()
    );
    next(&mut resumed).await.unwrap();
    let seen = next(&mut resumed).await.unwrap();
    assert_eq!(seen.id, Some(four[0].to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_given_on_an_empty_topic_belongs_to_that_life_of_the_stream() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let hub = backend.hub(Hub::builder());
    let mut fresh = hub.subscribe("t", None).await.unwrap();
    let position = next(&mut fresh).await.unwrap().id.unwrap();
    assert_ne!(
        position, "0-0",
        "an id of this stream, not one every stream has"
    );
    drop(fresh);
    publish_n(&hub, "t", 1..=2).await;
    // The stream is lost (a restart without persistence, an expiry), and
    // starts again.
    let hub = backend.after_losing("t");
    publish_n(&hub, "t", 3..=3).await;
    let mut resumed = hub.subscribe("t", Some(&position)).await.unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            replayed: 1
        },
        "events 1 and 2 were lost: never a silent resume"
    );
    let gap = next(&mut resumed).await.unwrap();
    assert_ne!(gap.id.as_deref(), Some("0-0"));
    assert_eq!(next(&mut resumed).await.unwrap().data.as_deref(), Some("3"));
    // The gap event's id resumes exactly in this life...
    let again = hub.subscribe("t", gap.id.as_deref()).await.unwrap();
    assert_eq!(again.how_it_started(), Start::Exact { replayed: 1 });
    // ...and not in the next one.
    let hub = backend.after_losing("t");
    publish_n(&hub, "t", 4..=4).await;
    let later = hub.subscribe("t", gap.id.as_deref()).await.unwrap();
    assert!(matches!(
        later.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_after_redis_closed_the_idle_connection_succeeds() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let hub = backend.hub(Hub::builder());
    publish_n(&hub, "t", 1..=1).await;
    assert_eq!(redis.command("CONFIG SET timeout 1"), "+OK\r\n");
    for n in 2..=3 {
        // Redis closes connections idle for a second (checked every 100 ms
        // or so); the next publish must not fail for it.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        hub.publish("t", Event::new().data(n.to_string()))
            .await
            .unwrap_or_else(|error| panic!("publish {n} after an idle close: {error}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_returning_together_to_a_quiet_instance_start_at_the_latest_event() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let a = backend.hub(Hub::builder());
    let b = backend.hub(Hub::builder());
    // B knows the topic, then its last subscriber leaves: B stops reading.
    let mut once = b.subscribe("t", None).await.unwrap();
    next(&mut once).await.unwrap();
    drop(once);
    let ids = publish_n(&a, "t", 1..=5).await;
    let subscribing: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.subscribe("t", None).await.unwrap() })
        })
        .collect();
    let mut all = Vec::new();
    for subscribing in subscribing {
        all.push(subscribing.await.unwrap());
    }
    for subscription in &mut all {
        let position = next(subscription).await.unwrap();
        assert_eq!(position.id, Some(ids[4].to_string()), "the latest event");
        assert!(
            quiet(subscription).await,
            "no event from before it subscribed"
        );
    }
    // And the reader reads the topic again at once, not after its next
    // blocking read times out (2 s).
    publish_n(&a, "t", 6..=6).await;
    for subscription in &mut all {
        let seen = tokio::time::timeout(Duration::from_secs(1), next(subscription))
            .await
            .expect("delivered without waiting out the reader's block");
        assert_eq!(seen.unwrap().data.as_deref(), Some("6"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_expire_as_set_and_never_under_their_subscribers() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let key = |topic: &str| format!("{}{{{topic}}}", backend.prefix);
    // A quiet topic: its subscriber made the stream (a start entry that
    // lives the idle timeout); it must not expire under the subscriber.
    let hub = backend.hub(Hub::builder().idle_timeout(Duration::from_millis(300)));
    let mut quiet_one = hub.subscribe("quiet", None).await.unwrap();
    next(&mut quiet_one).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(redis.command(&format!("EXISTS {}", key("quiet"))), ":1\r\n");
    assert!(
        quiet(&mut quiet_one).await,
        "no break, no retry: nothing happened"
    );
    // Once it leaves, the stream expires.
    drop(quiet_one);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(redis.command(&format!("EXISTS {}", key("quiet"))), ":0\r\n");
    // Without a time to live, a publish removes the one the start entry had.
    let keep = backend.hub(Hub::builder().redis_key_ttl(None));
    let mut first = keep.subscribe("kept", None).await.unwrap();
    next(&mut first).await.unwrap();
    publish_n(&keep, "kept", 1..=1).await;
    assert_eq!(redis.command(&format!("PTTL {}", key("kept"))), ":-1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_redis_said() {
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    // A password Redis does not expect: every call fails the same way,
    // and the error says why, not that Redis is unavailable.
    let url = format!("redis://:not-the-password@127.0.0.1:{}", redis.port);
    let hub = Hub::builder().redis(url).build().unwrap();
    let error = hub.publish("t", Event::new().data("x")).await.unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::Misconfigured);
    let text = error.to_string().to_lowercase();
    assert!(text.contains("authentication"), "{text}");
    let error = hub.subscribe("t", None).await.unwrap_err();
    let text = error.to_string().to_lowercase();
    assert!(text.contains("authentication"), "{text}");
}

/// A stream deleted and made anew within one millisecond must not reuse the
/// ids of its earlier life (Redis starts a new stream's ids at the current
/// millisecond): an old id always reads as `restarted`, never as a place in
/// the new life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_anew_at_once_never_reuses_an_earlier_life_s_ids() {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let writer = backend.hub(Hub::builder());
    let reader = backend.hub(Hub::builder());
    for n in 0..200 {
        let topic = format!("t{n}");
        let old = publish_n(&writer, &topic, 1..=1).await;
        redis.command(&format!("DEL {}{{{topic}}}", backend.prefix));
        publish_n(&writer, &topic, 1..=1).await;
        let resumed = reader
            .subscribe(&topic, Some(&old[0].to_string()))
            .await
            .unwrap();
        assert!(
            matches!(
                resumed.how_it_started(),
                Start::Gap {
                    reason: GapReason::Restarted,
                    ..
                }
            ),
            "round {n}: {:?}",
            resumed.how_it_started()
        );
    }
}

// A topic's stream that vanishes (`DEL`, an expiry, an eviction) is a gap
// on every instance, whatever that instance was doing: never silence.

/// What a browser following a topic saw: the data of each event, in order,
/// and whether a gap event came.
#[derive(Debug)]
struct Followed {
    data: Vec<String>,
    gap: bool,
}

/// Follows `topic` on `hub` like a browser, from `subscription` (or, when
/// `None`, a reconnect with `last_id`): after each stream's end it
/// reconnects with the last id it saw. Stops at the first gap event, or
/// once it has every event of `expected`; 10 s without an event is the
/// silence this must never be, and fails.
async fn follow(
    hub: &Hub,
    topic: &str,
    subscription: Option<Subscription>,
    mut last_id: String,
    expected: &[&str],
) -> Followed {
    let mut followed = Followed {
        data: Vec::new(),
        gap: false,
    };
    let mut subscription = subscription;
    for _ in 0..20 {
        let mut current = match subscription.take() {
            Some(current) => current,
            None => hub.subscribe(topic, Some(&last_id)).await.unwrap(),
        };
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), current.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "silence: after {:?} (last id {last_id}), neither the rest of \
                         {expected:?} nor a gap event came within 10 s",
                        followed.data
                    )
                });
            let Some(event) = event else {
                // The stream ended: reconnect, as a browser does.
                break;
            };
            let seen = parse(event.as_bytes());
            if let Some(id) = seen.id {
                last_id = id;
            }
            if seen.event.as_deref() == Some("gap") {
                followed.gap = true;
                return followed;
            }
            if let Some(data) = seen.data.filter(|_| seen.event.is_none()) {
                followed.data.push(data);
                if followed.data == expected {
                    return followed;
                }
            }
        }
    }
    panic!("20 reconnects without the rest of {expected:?} or a gap: {followed:?}");
}

/// Every event of `expected` in order, or those before a gap: what was
/// missed is never missed silently.
fn assert_every_event_or_a_gap(followed: &Followed, expected: &[&str]) {
    assert!(
        expected.starts_with(&followed.data.iter().map(String::as_str).collect::<Vec<_>>()),
        "in order, none skipped: {followed:?}"
    );
    assert!(
        followed.gap || followed.data == expected,
        "every event or a gap: {followed:?}"
    );
}

/// How a topic's stream vanishes in these tests.
#[derive(Clone, Copy, Debug)]
enum Vanish {
    /// `DEL`.
    Deleted,
    /// Its time to live ends.
    Expired,
    /// `DEL`, when its ids were ahead of Redis's clock (a failover to a
    /// replica whose clock is behind): the next life's ids are lower.
    DeletedAheadOfTheClock,
}

impl Backend {
    fn key(&self, topic: &str) -> String {
        format!("{}{{{topic}}}", self.prefix)
    }

    /// Makes the ids of `topic`'s next entries run ahead of Redis's clock
    /// when `how` asks for it, before any of the events the test follows.
    fn prepare_to_vanish(&self, topic: &str, how: Vanish) {
        if let Vanish::DeletedAheadOfTheClock = how {
            let redis = self.redis.as_ref().unwrap();
            let reply = redis.command(&format!("XSETID {} 99999999999999-0", self.key(topic)));
            assert_eq!(reply, "+OK\r\n");
        }
    }

    /// Makes `topic`'s stream vanish.
    async fn vanish(&self, topic: &str, how: Vanish) {
        let redis = self.redis.as_ref().unwrap();
        let key = self.key(topic);
        match how {
            Vanish::Deleted | Vanish::DeletedAheadOfTheClock => {
                assert_eq!(redis.command(&format!("DEL {key}")), ":1\r\n");
            }
            Vanish::Expired => {
                assert_eq!(redis.command(&format!("PEXPIRE {key} 1")), ":1\r\n");
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Gone, or already started anew by an instance that saw it
                // gone (a start entry alone): its events are not there.
                let len = redis.command(&format!("XLEN {key}"));
                assert!([":0\r\n", ":1\r\n"].contains(&len.as_str()), "{len:?}");
            }
        }
    }
}

/// Issue 24: a subscriber on B reads event 1 and leaves (B stops reading
/// the topic); events 2 and 3 are published on A; the stream vanishes;
/// `after` are published (or none). The browser's reconnect to B with
/// event 1's id must get every event or a gap, on B as on A.
async fn a_stream_that_vanished_while_unread_here(how: Vanish, after: &[&str]) {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let a = backend.hub(Hub::builder());
    let b = backend.hub(Hub::builder());
    publish_n(&a, "t", 0..=0).await;
    backend.prepare_to_vanish("t", how);
    let mut once = b.subscribe("t", None).await.unwrap();
    next(&mut once).await.unwrap();
    let one = publish_n(&a, "t", 1..=1).await[0].to_string();
    assert_eq!(next(&mut once).await.unwrap().data.as_deref(), Some("1"));
    drop(once);
    publish_n(&a, "t", 2..=3).await;
    backend.vanish("t", how).await;
    for event in after {
        a.publish("t", Event::new().data(*event)).await.unwrap();
    }
    let mut expected = vec!["2", "3"];
    expected.extend_from_slice(after);
    for (name, hub) in [("B", &b), ("A", &a)] {
        let followed = follow(hub, "t", None, one.clone(), &expected).await;
        assert!(
            followed.gap,
            "on {name}, events 2 and 3 are gone: {followed:?}"
        );
        assert_every_event_or_a_gap(&followed, &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_while_an_instance_was_not_reading_it_is_a_gap_there_not_silence() {
    a_stream_that_vanished_while_unread_here(Vanish::Deleted, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_expired_while_an_instance_was_not_reading_it_is_a_gap_there_not_silence() {
    a_stream_that_vanished_while_unread_here(Vanish::Expired, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_anew_with_lower_ids_while_an_instance_was_not_reading_it_is_a_gap_there() {
    a_stream_that_vanished_while_unread_here(Vanish::DeletedAheadOfTheClock, &["4", "5"]).await;
}

/// Two subscribers on B and one on A, live and idle, have read events 1
/// to 3; the stream vanishes; events 4 and 5 are published on A. Each gets
/// both, or a gap.
async fn a_stream_that_vanished_under_live_subscribers(how: Vanish) {
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let a = backend.hub(Hub::builder());
    let b = backend.hub(Hub::builder());
    publish_n(&a, "t", 0..=0).await;
    backend.prepare_to_vanish("t", how);
    let mut live = Vec::new();
    for hub in [&b, &b, &a] {
        let mut subscription = hub.subscribe("t", None).await.unwrap();
        next(&mut subscription).await.unwrap();
        live.push((hub.clone(), subscription));
    }
    publish_n(&a, "t", 1..=3).await;
    let mut last_ids = Vec::new();
    for (_, subscription) in &mut live {
        for n in 1..=3 {
            let seen = next(subscription).await.unwrap();
            assert_eq!(seen.data, Some(n.to_string()));
            if n == 3 {
                last_ids.push(seen.id.unwrap());
            }
        }
    }
    backend.vanish("t", how).await;
    publish_n(&a, "t", 4..=5).await;
    for ((hub, subscription), last_id) in live.into_iter().zip(last_ids) {
        let followed = follow(&hub, "t", Some(subscription), last_id, &["4", "5"]).await;
        assert_every_event_or_a_gap(&followed, &["4", "5"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_live_subscribers_then_published_to_is_never_a_silent_loss() {
    a_stream_that_vanished_under_live_subscribers(Vanish::Deleted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_expired_under_live_subscribers_then_published_to_is_never_a_silent_loss() {
    a_stream_that_vanished_under_live_subscribers(Vanish::Expired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_anew_with_lower_ids_under_live_subscribers_is_never_a_silent_loss() {
    a_stream_that_vanished_under_live_subscribers(Vanish::DeletedAheadOfTheClock).await;
}

/// An event published, then lost with its stream before the instance's
/// reader got to it (an eviction right after the publish): its live
/// subscribers learn of the gap without waiting for the next publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_lost_with_its_stream_before_an_instance_read_it_is_a_gap_without_a_next_publish()
{
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    let hub = backend.hub(Hub::builder());
    let mut live = hub.subscribe("t", None).await.unwrap();
    next(&mut live).await.unwrap();
    publish_n(&hub, "t", 1..=1).await;
    let one = next(&mut live).await.unwrap().id.unwrap();
    // One atomic step, so the reader cannot read in between: an event as
    // another instance writes it (its previous id and its fields, announced
    // on the stream's channel), then the stream's end.
    let script = "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1] \
                  local id = redis.call('XADD', KEYS[1], '*', 'p', last, 'd', 'data: lost' .. string.char(10)) \
                  redis.call('PUBLISH', KEYS[1], id) \
                  return redis.call('DEL', KEYS[1])";
    let reply = redis.command(&format!("EVAL \"{script}\" 1 {}", backend.key("t")));
    assert_eq!(reply, ":1\r\n");
    let followed = follow(&hub, "t", Some(live), one, &["lost"]).await;
    assert!(followed.gap, "{followed:?}");
}

/// With a policy that may evict the hub's keys (`allkeys-lru`) under
/// memory pressure, a topic's stream vanishes whenever Redis needs room: a
/// browser following it on another instance, slower than the publisher
/// and reconnecting after every few events, gets every event in order, or
/// a gap event before what it missed. The publisher stops at the end, so
/// that nothing publishes the loss away: the stream, idle then, is evicted
/// while the browser is still behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_evicted_under_memory_pressure_are_gaps_never_silent_losses() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    const EVENTS: u32 = 300;
    let Some(backend) = Backend::redis(Persistence::None) else {
        return;
    };
    let redis = backend.redis.as_ref().unwrap();
    assert_eq!(redis.command("CONFIG SET maxmemory 2mb"), "+OK\r\n");
    assert_eq!(
        redis.command("CONFIG SET maxmemory-policy allkeys-lru"),
        "+OK\r\n"
    );
    let a = backend.hub(Hub::builder().history(100));
    let b = backend.hub(Hub::builder().history(100));
    let done = Arc::new(AtomicBool::new(false));
    // Events of 2 KiB to ever new topics, so that Redis evicts.
    let filler = {
        let (a, done) = (a.clone(), done.clone());
        tokio::spawn(async move {
            let filler = "x".repeat(2048);
            let mut n = 0u64;
            while !done.load(Relaxed) {
                n += 1;
                let _ = a
                    .publish(&format!("filler{n}"), Event::new().data(&*filler))
                    .await;
                if n % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    // Bursts with pauses, so that the stream is the least recently used
    // key now and then.
    let publisher = {
        let a = a.clone();
        tokio::spawn(async move {
            // Redis may refuse a publish (`OOM`) when it cannot evict in
            // time: published again until acknowledged (twice, when an
            // answer was lost).
            let mut refused = 0;
            for n in 1..=EVENTS {
                while a
                    .publish("t", Event::new().data(n.to_string()))
                    .await
                    .is_err()
                {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            refused
        })
    };
    let mut subscription = b.subscribe("t", None).await.unwrap();
    let mut last_id = next(&mut subscription).await.unwrap().id.unwrap();
    let mut subscription = Some(subscription);
    let (mut last, mut gaps, mut reconnects) = (0u32, 0, 0);
    'browser: loop {
        let mut current = match subscription.take() {
            Some(current) => current,
            None => {
                // B stops reading the topic until the browser is back.
                tokio::time::sleep(Duration::from_millis(100)).await;
                reconnects += 1;
                b.subscribe("t", Some(&last_id)).await.unwrap()
            }
        };
        for _ in 0..(reconnects % 13) + 1 {
            let Ok(event) = tokio::time::timeout(Duration::from_secs(10), current.next()).await
            else {
                // A gap whose history had nothing after it, just as the
                // publisher finished: the gap was the answer.
                if last == 0 && gaps > 0 && publisher.is_finished() {
                    break 'browser;
                }
                panic!(
                    "silence after event {last} (id {last_id}): no event and no gap \
                     (publisher finished: {})",
                    publisher.is_finished()
                );
            };
            let Some(event) = event else {
                continue 'browser;
            };
            let event = parse(event.as_bytes());
            if let Some(id) = event.id {
                last_id = id;
            }
            match (event.event.as_deref(), event.data.as_deref()) {
                (Some("gap"), _) => {
                    gaps += 1;
                    if publisher.is_finished() {
                        // Nothing more comes: the gap is the answer.
                        break 'browser;
                    }
                    // The history follows: anything may come next.
                    last = 0;
                }
                (None, Some(data)) => {
                    let n: u32 = data.parse().unwrap();
                    assert!(
                        last == 0 || n == last + 1 || n == last,
                        "event {n} after event {last} without a gap event"
                    );
                    last = n;
                    if n == EVENTS {
                        break 'browser;
                    }
                }
                _ => {}
            }
        }
    }
    done.store(true, Relaxed);
    let refused = publisher.await.unwrap();
    filler.await.unwrap();
    let info = redis.command("INFO stats");
    let evicted: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("evicted_keys:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    println!(
        "last event {last}, {gaps} gaps, {reconnects} reconnects, {evicted} keys evicted, \
         {refused} publishes refused"
    );
    assert!(evicted > 0, "Redis evicted keys");
}

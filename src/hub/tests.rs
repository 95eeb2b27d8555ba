use std::{future::poll_fn, pin::Pin, task::Poll, time::Duration};

use futures_core::Stream;
use futures_util::StreamExt;
use http_body::Body as _;

use super::*;

/// The memory hub's futures are ready at once: these tests read them so.
trait Now: std::future::Future + Sized {
    fn now(self) -> Self::Output {
        futures_util::FutureExt::now_or_never(self).expect("the memory hub never waits")
    }
}

impl<F: std::future::Future> Now for F {}

/// One encoded event read back field by field.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    id: Option<String>,
    kind: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
}

fn read(event: &EncodedEvent) -> Seen {
    let text = std::str::from_utf8(event.as_bytes()).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    let mut seen = Seen::default();
    for line in text.trim_end_matches('\n').split('\n') {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or((line.trim_end_matches(':'), ""));
        match name {
            "id" => seen.id = Some(value.into()),
            "event" => seen.kind = Some(value.into()),
            "data" => seen.data = Some(value.into()),
            "retry" => seen.retry = Some(value.parse().unwrap()),
            other => panic!("unexpected field {other:?} in {text:?}"),
        }
    }
    seen
}

/// Everything the subscription has ready now, without waiting.
fn ready(subscription: &mut Subscription) -> Vec<Seen> {
    let mut out = Vec::new();
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    while let Poll::Ready(Some(event)) = Pin::new(&mut *subscription).poll_next(&mut cx) {
        out.push(read(&event));
    }
    out
}

/// A fresh subscription, past its position event.
fn live(hub: &Hub, topic: &str) -> Subscription {
    let mut subscription = hub.subscribe(topic, None).now().unwrap();
    let first = ready(&mut subscription);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (first[0].data.as_deref(), first[0].kind.as_deref()),
        (Some(""), Some(POSITION_EVENT))
    );
    assert!(first[0].id.is_some());
    subscription
}

fn data(seen: &[Seen]) -> Vec<&str> {
    seen.iter()
        .map(|s| s.data.as_deref().unwrap_or(""))
        .collect()
}

fn publish_n(hub: &Hub, topic: &str, range: std::ops::RangeInclusive<u32>) -> Vec<EventId> {
    range
        .map(|n| {
            hub.publish(topic, Event::new().data(n.to_string()))
                .now()
                .unwrap()
        })
        .collect()
}

#[test]
fn ids_increase_by_one_per_topic_and_each_topic_has_its_own_epoch() {
    let hub = Hub::new();
    let a = publish_n(&hub, "a", 1..=3);
    let b = publish_n(&hub, "b", 1..=2);
    assert_eq!(
        a.iter().map(EventId::sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(b.iter().map(EventId::sequence).collect::<Vec<_>>(), [1, 2]);
    assert_ne!(a[0].epoch, b[0].epoch);
    let other = Hub::new();
    let c = other.publish("a", Event::new().data("x")).now().unwrap();
    assert_ne!(a[0].epoch, c.epoch, "a new hub is a new epoch");
}

#[test]
fn the_published_bytes_carry_the_id_the_hub_gave() {
    let hub = Hub::new();
    let mut live = live(&hub, "t");
    let id = hub
        .publish("t", Event::new().event("note").unwrap().data("a\nb"))
        .now()
        .unwrap();
    let seen = ready(&mut live);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id.as_deref(), Some(&*id.to_string()));
    assert_eq!(seen[0].kind.as_deref(), Some("note"));
}

#[test]
fn without_an_id_a_subscriber_gets_live_events_only() {
    let hub = Hub::new();
    let ids = publish_n(&hub, "t", 1..=3);
    let mut live = hub.subscribe("t", None).now().unwrap();
    assert_eq!(live.how_it_started(), Start::Fresh);
    // First the topic's position, as the id of an event of its own type
    // with empty data.
    let position = ready(&mut live);
    assert_eq!(
        position,
        [Seen {
            id: Some(ids[2].to_string()),
            kind: Some(POSITION_EVENT.to_owned()),
            data: Some(String::new()),
            retry: None,
        }]
    );
    publish_n(&hub, "t", 4..=5);
    assert_eq!(data(&ready(&mut live)), ["4", "5"]);
    // An empty header is no id.
    let mut empty = hub.subscribe("t", Some("")).now().unwrap();
    assert_eq!(empty.how_it_started(), Start::Fresh);
    assert_eq!(ready(&mut empty).len(), 1);
    // A reconnect with the position before any live event loses nothing.
    let early = hub.subscribe("t", Some(&ids[2].to_string())).now().unwrap();
    assert_eq!(early.how_it_started(), Start::Exact { replayed: 2 });
}

#[test]
fn an_id_in_the_history_resumes_exactly_then_goes_live() {
    let hub = Hub::new();
    let ids = publish_n(&hub, "t", 1..=5);
    let mut resumed = hub.subscribe("t", Some(&ids[1].to_string())).now().unwrap();
    assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 3 });
    publish_n(&hub, "t", 6..=6);
    assert_eq!(data(&ready(&mut resumed)), ["3", "4", "5", "6"]);
    // The last id: nothing to replay.
    let mut latest = hub.subscribe("t", Some(&ids[4].to_string())).now().unwrap();
    assert_eq!(latest.how_it_started(), Start::Exact { replayed: 1 });
    assert_eq!(data(&ready(&mut latest)), ["6"]);
    let stats = hub.topic_stats("t").unwrap();
    assert_eq!((stats.resumes, stats.replayed, stats.gaps), (2, 4, 0));
}

#[test]
fn an_id_older_than_the_history_gets_a_gap_event_then_the_history() {
    let hub = Hub::builder().history(3).build().unwrap();
    let ids = publish_n(&hub, "t", 1..=6);
    // Kept: 4, 5, 6. The browser saw 1: 2 and 3 are lost.
    let mut resumed = hub.subscribe("t", Some(&ids[0].to_string())).now().unwrap();
    assert_eq!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::HistoryTruncated,
            replayed: 3
        }
    );
    let seen = ready(&mut resumed);
    assert_eq!(seen[0].kind.as_deref(), Some("gap"));
    assert_eq!(
        seen[0].data.as_deref(),
        Some(&*format!(
            r#"{{"reason":"history-truncated","last_event_id":"{}","missed":2}}"#,
            ids[0]
        ))
    );
    // The gap's id is the one before the first replayed event: a reconnect
    // right after it resumes exactly.
    assert_eq!(seen[0].id.as_deref(), Some(&*ids[2].to_string()));
    assert_eq!(data(&seen[1..]), ["4", "5", "6"]);
    let again = hub.subscribe("t", seen[0].id.as_deref()).now().unwrap();
    assert_eq!(again.how_it_started(), Start::Exact { replayed: 3 });
}

#[test]
fn unknown_malformed_and_overlong_ids_get_an_unknown_id_gap() {
    let hub = Hub::new();
    let ids = publish_n(&hub, "t", 1..=2);
    let future = EventId::memory(ids[0].epoch, 3).to_string();
    let long = "7".repeat(MAX_LAST_EVENT_ID_LEN + 1);
    for (asked, shown) in [
        ("garbage", "\"garbage\"".to_owned()),
        ("q\"\\\u{1}", "\"q\\\"\\\\\\u0001\"".to_owned()),
        (&*future, format!("\"{future}\"")),
        (&*long, "null".to_owned()),
    ] {
        let mut resumed = hub.subscribe("t", Some(asked)).now().unwrap();
        assert_eq!(
            resumed.how_it_started(),
            Start::Gap {
                reason: GapReason::UnknownId,
                replayed: 2
            },
            "{asked}"
        );
        let seen = ready(&mut resumed);
        assert_eq!(
            seen[0].data.as_deref(),
            Some(&*format!(
                r#"{{"reason":"unknown-id","last_event_id":{shown}}}"#
            ))
        );
        assert_eq!(
            seen[0].id.as_deref(),
            Some(&*format!("{:x}-0", ids[0].epoch))
        );
        assert_eq!(data(&seen[1..]), ["1", "2"]);
    }
}

#[test]
fn an_id_from_an_earlier_hub_gets_a_restarted_gap() {
    let before = Hub::new();
    let old = publish_n(&before, "t", 1..=9);
    drop(before);
    let hub = Hub::new();
    publish_n(&hub, "t", 1..=1);
    let mut resumed = hub.subscribe("t", Some(&old[8].to_string())).now().unwrap();
    assert!(matches!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            replayed: 1
        }
    ));
    let seen = ready(&mut resumed);
    assert!(seen[0].data.as_deref().unwrap().contains("\"restarted\""));
    assert_eq!(data(&seen[1..]), ["1"]);
}

#[test]
fn a_gap_on_an_empty_topic_still_moves_the_browser_s_id() {
    let hub = Hub::new();
    let mut resumed = hub.subscribe("t", Some("nope")).now().unwrap();
    let seen = ready(&mut resumed);
    assert_eq!(seen.len(), 1);
    let gap_id = seen[0].id.clone().unwrap();
    let id = hub.publish("t", Event::new().data("1")).now().unwrap();
    assert_eq!(data(&ready(&mut resumed)), ["1"]);
    // Reconnecting with the gap's id before any event: exact, nothing lost.
    let again = hub.subscribe("t", Some(&gap_id)).now().unwrap();
    assert_eq!(again.how_it_started(), Start::Exact { replayed: 1 });
    assert_eq!(id.sequence(), 1);
}

#[test]
fn a_lagging_subscriber_within_the_history_loses_nothing() {
    let hub = Hub::builder().history(10).build().unwrap();
    let mut slow = live(&hub, "t");
    publish_n(&hub, "t", 1..=10);
    let expected: Vec<String> = (1..=10).map(|n| n.to_string()).collect();
    assert_eq!(data(&ready(&mut slow)), expected);
}

#[tokio::test]
async fn a_subscriber_beyond_the_history_gets_a_retry_and_ends_marked_lagged() {
    let hub = Hub::builder()
        .history(3)
        .reconnect_delay(Duration::from_millis(1000), Duration::from_millis(2000))
        .build()
        .unwrap();
    let slow = live(&hub, "t");
    let response = slow.into_http_response();
    let lag = response.extensions().get::<EndSignal>().cloned().unwrap();
    let mut body = response.into_body();
    let ids = publish_n(&hub, "t", 1..=4);
    let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
    let bytes = frame.unwrap().unwrap().into_data().unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let retry: u64 = text
        .strip_prefix("retry: ")
        .and_then(|rest| rest.strip_suffix("\nevent: sse-retry\ndata:\n\n"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1000..=2000).contains(&retry), "{text:?}");
    assert!(poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
        .await
        .is_none());
    assert_eq!(lag.get(), Some(crate::body::EarlyEnd::Lagged));
    assert_eq!(hub.topic_stats("t").unwrap().lagged, 1);
    // Its last id was none; reconnecting from the first event it missed
    // (had it read one) would give the gap event.
    let back = hub
        .subscribe("t", Some(&format!("{:x}-0", ids[0].epoch)))
        .now()
        .unwrap();
    assert!(matches!(
        back.how_it_started(),
        Start::Gap {
            reason: GapReason::HistoryTruncated,
            ..
        }
    ));
}

use crate::body::EndSignal;

#[tokio::test]
async fn a_bounded_subscription_takes_no_events_while_its_frames_are_held_then_lags() {
    let hub = Hub::builder().history(100).build().unwrap();
    let response = live(&hub, "t")
        .into_http_response()
        .map(|body| body.max_unwritten(4096));
    let lag = response.extensions().get::<EndSignal>().cloned().unwrap();
    let mut body = response.into_body();
    let text = "x".repeat(1000);
    // The server writes the first event (the bound holds from then on).
    hub.publish("t", Event::new().data(&text)).now().unwrap();
    let first = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
    drop(first.unwrap().unwrap());
    for _ in 0..50 {
        hub.publish("t", Event::new().data(&text)).now().unwrap();
    }
    // Then holds every frame, as for a client that stopped reading.
    let (waker, wakes) = crate::test_util::counting_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut held = crate::test_util::frames_until_pending(&mut body, &mut cx);
    let bytes: usize = held.iter().map(bytes::Bytes::len).sum();
    assert!(
        (4096..4096 + 16 * 1024 + 1100).contains(&bytes),
        "{bytes} bytes held"
    );
    // A wait for the client, not a turn: asked again, still nothing.
    assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
    assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The history moves on past it; then the client reads again.
    for _ in 0..200 {
        hub.publish("t", Event::new().data(&text)).now().unwrap();
    }
    held.clear();
    let mut last = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        last = Some(frame.unwrap().into_data().unwrap());
    }
    assert!(last.unwrap().starts_with(b"retry: "));
    assert_eq!(lag.get(), Some(crate::body::EarlyEnd::Lagged));
}

#[tokio::test]
async fn a_waiting_subscriber_is_woken_by_a_publish() {
    let hub = Hub::new();
    let mut live = live(&hub, "t");
    let publisher = hub.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        publisher
            .publish("t", Event::new().data("late"))
            .now()
            .unwrap();
    });
    let event = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(read(&event).data.as_deref(), Some("late"));
    task.await.unwrap();
}

#[test]
fn an_event_with_its_own_id_is_refused_and_given_back() {
    let hub = Hub::new();
    let error = hub
        .publish("t", Event::new().id("mine").unwrap().data("x"))
        .now()
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::IdSet);
    assert_eq!(
        error.into_event().encode().as_bytes(),
        b"id: mine\ndata: x\n\n"
    );
    assert_eq!(hub.topic_stats("t"), None, "nothing was published");
}

#[test]
fn topics_are_bounded_in_number_and_name_length() {
    let hub = Hub::builder().max_topics(2).build().unwrap();
    hub.publish("a", Event::new()).now().unwrap();
    let _b = hub.subscribe("b", None).now().unwrap();
    let error = hub
        .publish("c", Event::new().data("kept"))
        .now()
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::TooManyTopics);
    assert_eq!(error.into_event().encode().as_bytes(), b"data: kept\n\n");
    assert_eq!(
        hub.subscribe("c", None).now().unwrap_err().kind(),
        HubErrorKind::TooManyTopics
    );
    // Existing topics still work.
    hub.publish("a", Event::new()).now().unwrap();
    let long = "x".repeat(MAX_TOPIC_LEN + 1);
    assert_eq!(
        hub.subscribe(&long, None).now().unwrap_err().kind(),
        HubErrorKind::TopicTooLong
    );
    assert_eq!(hub.topic_count(), 2);
}

#[test]
fn history_is_bounded_by_count_and_by_age() {
    let hub = Hub::builder().history(3).build().unwrap();
    publish_n(&hub, "t", 1..=5);
    let stats = hub.topic_stats("t").unwrap();
    assert_eq!((stats.published, stats.history_len), (5, 3));
    let one = Event::new()
        .data("5")
        .trusted_id(b"x")
        .encode()
        .as_bytes()
        .len();
    assert!(stats.history_bytes >= 3 * one && stats.history_bytes < 3 * (one + 32));

    let hub = Hub::builder()
        .max_age(Duration::from_millis(50))
        .build()
        .unwrap();
    let ids = publish_n(&hub, "t", 1..=2);
    std::thread::sleep(Duration::from_millis(80));
    let resumed = hub.subscribe("t", Some(&ids[0].to_string())).now().unwrap();
    assert!(matches!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::HistoryTruncated,
            replayed: 0
        }
    ));
    assert_eq!(hub.topic_stats("t").unwrap().history_len, 0);
}

#[test]
fn idle_topics_are_dropped_and_their_old_ids_say_restarted() {
    let hub = Hub::builder()
        .idle_timeout(super::MIN_IDLE_TIMEOUT)
        .build()
        .unwrap();
    let old = publish_n(&hub, "quiet", 1..=2);
    let busy = hub.subscribe("busy", None).now().unwrap();
    std::thread::sleep(super::MIN_IDLE_TIMEOUT * 3);
    // Any publish or subscribe sweeps.
    hub.publish("other", Event::new()).now().unwrap();
    assert_eq!(hub.topic_stats("quiet"), None);
    assert!(hub.topic_stats("busy").is_some(), "it has a subscriber");
    let resumed = hub
        .subscribe("quiet", Some(&old[1].to_string()))
        .now()
        .unwrap();
    assert!(matches!(
        resumed.how_it_started(),
        Start::Gap {
            reason: GapReason::Restarted,
            ..
        }
    ));
    drop(busy);
}

#[test]
fn subscribers_that_leave_leave_nothing_behind() {
    let hub = Hub::new();
    let subscriptions: Vec<_> = (0..10_000)
        .map(|_| hub.subscribe("t", None).now().unwrap())
        .collect();
    assert_eq!(hub.topic_stats("t").unwrap().subscribers, 10_000);
    // Every one waits, and a publish wakes them all.
    let mut subscriptions = subscriptions;
    for subscription in &mut subscriptions {
        assert_eq!(ready(subscription).len(), 1, "the position event");
    }
    publish_n(&hub, "t", 1..=1);
    let topic = hub.topics().map.get("t").cloned().unwrap();
    assert!(topic.slot_memory().0 >= 10_000);
    drop(subscriptions);
    assert_eq!(hub.topic_stats("t").unwrap().subscribers, 0);
    assert_eq!(
        topic.slot_memory(),
        (0, 0),
        "the slots' memory is given back"
    );
    // The topic's notify holds no waiter: a publish wakes nobody.
    publish_n(&hub, "t", 2..=2);
}

#[test]
fn the_builder_refuses_what_cannot_work_and_gives_itself_back() {
    for (builder, words) in [
        (Hub::builder().history(0), "history"),
        (Hub::builder().max_topics(0), "max_topics"),
        (
            Hub::builder().reconnect_delay(Duration::from_secs(2), Duration::from_secs(1)),
            "min is greater",
        ),
        (
            Hub::builder().reconnect_delay(Duration::ZERO, MAX_RETRY + Duration::from_millis(1)),
            "MAX_RETRY",
        ),
        (Hub::builder().gap_event(""), "empty"),
        (Hub::builder().gap_event("a\nb"), "line break"),
        (
            Hub::builder().gap_event("sse-position"),
            "means something else",
        ),
        (
            Hub::builder().gap_event("sse-retry"),
            "means something else",
        ),
        (Hub::builder().gap_event("message"), "means something else"),
        (Hub::builder().max_age(Duration::ZERO), "max_age"),
    ] {
        let error = builder.build().unwrap_err();
        assert!(error.to_string().contains(words), "{error}");
        assert!(format!("{:?}", error.kind()).len() > 3);
        // Fixing one setting builds.
        let fixed = error
            .into_builder()
            .max_age(Duration::from_secs(1))
            .history(1)
            .max_topics(1)
            .reconnect_delay(Duration::ZERO, Duration::ZERO)
            .gap_event("gap");
        assert!(fixed.build().is_ok());
    }
}

#[test]
fn the_gap_event_type_can_be_set() {
    let hub = Hub::builder().gap_event("resync").build().unwrap();
    let mut resumed = hub.subscribe("t", Some("x")).now().unwrap();
    assert_eq!(ready(&mut resumed)[0].kind.as_deref(), Some("resync"));
}

#[test]
fn hub_and_subscription_are_send_sync_and_the_hub_clones() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    send_sync::<Hub>();
    send_sync::<Subscription>();
    send_sync::<crate::EventStream<Subscription>>();
    clone::<Hub>();
}

/// Reads the sequence number out of an event's id.
fn seq(seen: &Seen) -> u64 {
    EventId::parse(seen.id.as_deref().unwrap())
        .unwrap()
        .sequence()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_racing_publishes_loses_and_repeats_nothing() {
    let hub = Hub::builder().history(100_000).build().unwrap();
    let first = hub.publish("t", Event::new().data("0")).now().unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || {
            for n in 1..=20_000u32 {
                hub.publish("t", Event::new().data(n.to_string()))
                    .now()
                    .unwrap();
            }
        })
    };
    let mut iterations = 0;
    let mut last = first.to_string();
    while !publisher.is_finished() || iterations < 2_000 {
        iterations += 1;
        let asked = EventId::parse(&last).unwrap().sequence();
        let mut resumed = hub.subscribe("t", Some(&last)).now().unwrap();
        assert!(matches!(resumed.how_it_started(), Start::Exact { .. }));
        let seen = ready(&mut resumed);
        for (k, event) in seen.iter().enumerate() {
            assert_eq!(seq(event), asked + 1 + k as u64, "iteration {iterations}");
        }
        if let Some(event) = seen.get(seen.len() / 2) {
            last = event.id.clone().unwrap();
        }
        if iterations > 200_000 {
            break;
        }
    }
    publisher.await.unwrap();
    assert!(iterations >= 2_000);
}

mod property {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        Publish(u8),
        Read(usize, u8),
        Reconnect(usize),
        Drop(usize),
        Subscribe,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u8..6).prop_map(Step::Publish),
            4 => (0usize..4, 0u8..8).prop_map(|(s, n)| Step::Read(s, n)),
            1 => (0usize..4).prop_map(Step::Reconnect),
            1 => (0usize..4).prop_map(Step::Drop),
            1 => Just(Step::Subscribe),
        ]
    }

    struct Client {
        subscription: Option<Subscription>,
        last_id: Option<String>,
        last_seq: Option<u64>,
        expect_gap: bool,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every subscriber sees a contiguous increasing sequence, except
        /// right after a gap event, whose id names where it picks up.
        #[test]
        fn every_subscriber_sees_contiguous_ids_or_a_gap_first(
            history in 1usize..8,
            steps in proptest::collection::vec(step(), 1..120),
        ) {
            let hub = Hub::builder().history(history).build().unwrap();
            let mut clients: Vec<Client> = Vec::new();
            let mut published = 0u64;
            for step in steps {
                match step {
                    Step::Publish(n) => {
                        for _ in 0..n {
                            published += 1;
                            hub.publish("t", Event::new().data(published.to_string())).now().unwrap();
                        }
                    }
                    Step::Subscribe if clients.len() < 4 => clients.push(Client {
                        subscription: Some(hub.subscribe("t", None).now().unwrap()),
                        last_id: None,
                        last_seq: Some(published),
                        expect_gap: false,
                    }),
                    Step::Subscribe => {}
                    Step::Read(i, n) => {
                        let Some(client) = clients.get_mut(i) else { continue };
                        let Some(subscription) = client.subscription.as_mut() else { continue };
                        let waker = futures_util::task::noop_waker();
                        let mut cx = std::task::Context::from_waker(&waker);
                        for _ in 0..n {
                            match Pin::new(&mut *subscription).poll_next(&mut cx) {
                                Poll::Ready(Some(event)) => {
                                    let seen = read(&event);
                                    if seen.retry.is_some() {
                                        // Lagged: the browser would reconnect.
                                        prop_assert_eq!(seen.kind.as_deref(), Some(crate::event::RETRY_EVENT));
                                        prop_assert_eq!(seen.data.as_deref(), Some(""));
                                        prop_assert!(seen.id.is_none());
                                        continue;
                                    }
                                    let id = seq(&seen);
                                    if seen.kind.as_deref() == Some(POSITION_EVENT) {
                                        // A fresh subscriber's position.
                                        prop_assert_eq!(Some(id), client.last_seq);
                                        client.last_id = seen.id;
                                        continue;
                                    }
                                    if seen.kind.as_deref() == Some("gap") {
                                        prop_assert!(std::mem::take(&mut client.expect_gap));
                                        // It moves the browser's id forward.
                                        prop_assert!(client.last_seq.map_or(true, |last| id > last));
                                    } else {
                                        prop_assert!(!client.expect_gap);
                                        prop_assert_eq!(Some(id), client.last_seq.map(|s| s + 1));
                                    }
                                    client.last_seq = Some(id);
                                    client.last_id = seen.id;
                                }
                                Poll::Ready(None) => {
                                    client.subscription = None;
                                    break;
                                }
                                Poll::Pending => break,
                            }
                        }
                    }
                    Step::Reconnect(i) | Step::Drop(i) if i >= clients.len() => {}
                    Step::Reconnect(i) => {
                        let client = &mut clients[i];
                        client.subscription = None;
                        client.expect_gap = false;
                        let subscription = hub.subscribe("t", client.last_id.as_deref()).now().unwrap();
                        match subscription.how_it_started() {
                            Start::Exact { .. } => {}
                            Start::Gap { reason, .. } => {
                                prop_assert_eq!(reason, GapReason::HistoryTruncated);
                                client.expect_gap = true;
                            }
                            Start::Fresh => {
                                prop_assert!(client.last_id.is_none());
                                client.last_seq = Some(published);
                            }
                            Start::Finished => prop_assert!(false, "a topic never finishes"),
                        }
                        client.subscription = Some(subscription);
                    }
                    Step::Drop(i) => {
                        clients[i].subscription = None;
                    }
                }
            }
            drop(clients);
            prop_assert_eq!(hub.topic_stats("t").map_or(0, |t| t.subscribers), 0);
        }
    }
}

#[test]
fn ids_read_from_headers_are_bounded_and_need_not_be_utf8() {
    let hub = Hub::new();
    let ids = publish_n(&hub, "t", 1..=2);
    let mut headers = http::HeaderMap::new();
    let fresh = hub.subscribe_from_headers("t", &headers).now().unwrap();
    assert_eq!(fresh.how_it_started(), Start::Fresh);
    headers.insert("last-event-id", ids[0].to_string().parse().unwrap());
    let exact = hub.subscribe_from_headers("t", &headers).now().unwrap();
    assert_eq!(exact.how_it_started(), Start::Exact { replayed: 1 });
    for bytes in [&b"\xff\xfe"[..], &[b'7'; MAX_LAST_EVENT_ID_LEN + 1][..]] {
        headers.insert(
            "last-event-id",
            http::HeaderValue::from_bytes(bytes).unwrap(),
        );
        let mut unknown = hub.subscribe_from_headers("t", &headers).now().unwrap();
        assert_eq!(
            unknown.how_it_started(),
            Start::Gap {
                reason: GapReason::UnknownId,
                replayed: 2
            }
        );
        let seen = ready(&mut unknown);
        assert_eq!(
            seen[0].data.as_deref(),
            Some(r#"{"reason":"unknown-id","last_event_id":null}"#)
        );
    }
}

#[test]
fn a_full_hub_drops_topics_only_subscribers_made_once_they_leave() {
    let hub = Hub::builder().max_topics(3).build().unwrap();
    hub.publish("kept", Event::new().data("x")).now().unwrap();
    // A client asks for made-up topics (from the URL, say).
    let held = hub.subscribe("made-up-1", None).now().unwrap();
    drop(hub.subscribe("made-up-2", None).now().unwrap());
    // Full; the topic nobody subscribes to and nothing was published to
    // makes room, the held one and the published one stay.
    hub.publish("new", Event::new().data("y")).now().unwrap();
    assert!(hub.topic_stats("kept").is_some());
    assert!(hub.topic_stats("made-up-1").is_some());
    assert_eq!(hub.topic_stats("made-up-2"), None);
    assert_eq!(
        hub.subscribe("made-up-3", None).now().unwrap_err().kind(),
        HubErrorKind::TooManyTopics
    );
    drop(held);
}

#[test]
fn extreme_durations_build_and_never_panic_later() {
    let hub = Hub::builder()
        .idle_timeout(Duration::MAX)
        .max_age(Duration::MAX)
        .reconnect_delay(MAX_RETRY, MAX_RETRY)
        .build()
        .unwrap();
    let ids = publish_n(&hub, "t", 1..=3);
    let resumed = hub.subscribe("t", Some(&ids[0].to_string())).now().unwrap();
    assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 2 });
    let error = Hub::builder()
        .idle_timeout(Duration::from_millis(99))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("idle_timeout"), "{error}");
}

mod runs {
    use super::*;

    async fn follow(hub: &Hub, run: &str, last: Option<&str>) -> Result<Subscription, HubError> {
        let mut headers = http::HeaderMap::new();
        if let Some(last) = last {
            headers.insert("last-event-id", last.parse().unwrap());
        }
        hub.follow_run(run, &headers, &http::Uri::from_static("/runs/x"))
            .await
    }

    /// Everything ready, and whether the stream has ended.
    fn drain(subscription: &mut Subscription) -> (Vec<Seen>, bool) {
        let mut out = Vec::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            match Pin::new(&mut *subscription).poll_next(&mut cx) {
                Poll::Ready(Some(event)) => out.push(read(&event)),
                Poll::Ready(None) => return (out, true),
                Poll::Pending => return (out, false),
            }
        }
    }

    #[tokio::test]
    async fn a_follower_gets_every_event_from_the_first_then_the_end_and_its_stream_ends() {
        let hub = Hub::new();
        let run = hub.start_run().await.unwrap();
        let id = run.id().to_owned();
        run.send(Event::new().data("a")).await.unwrap();
        let mut early = follow(&hub, &id, None).await.unwrap();
        assert_eq!(early.how_it_started(), Start::Exact { replayed: 1 });
        run.send(Event::new().data("b")).await.unwrap();
        let (seen, ended) = drain(&mut early);
        assert_eq!(data(&seen), ["a", "b"]);
        assert!(!ended, "the run goes on");
        let last = run.finish(RunEnd::completed()).await.unwrap();
        let (seen, ended) = drain(&mut early);
        assert_eq!(seen[0].kind.as_deref(), Some(RUN_END_EVENT));
        assert_eq!(seen[0].data.as_deref(), Some("{\"outcome\":\"completed\"}"));
        assert_eq!(seen[0].id, Some(last.to_string()));
        assert!(ended, "the stream ends after the run's last event");
        // A late follower without an id gets it all, then the end.
        let mut late = follow(&hub, &id, None).await.unwrap();
        let (seen, ended) = drain(&mut late);
        assert_eq!(data(&seen)[..2], ["a", "b"]);
        assert!(ended && seen.len() == 3);
    }

    #[tokio::test]
    async fn a_reconnect_resumes_after_its_id_and_one_that_saw_the_end_gets_204() {
        let hub = Hub::new();
        let run = hub.start_run().await.unwrap();
        let id = run.id().to_owned();
        let first = run.send(Event::new().data("a")).await.unwrap();
        run.send(Event::new().data("b")).await.unwrap();
        let end = run
            .finish(RunEnd::stopped().event(Event::new().data("[DONE]")))
            .await
            .unwrap();
        let mut resumed = follow(&hub, &id, Some(&first.to_string())).await.unwrap();
        assert_eq!(resumed.how_it_started(), Start::Exact { replayed: 2 });
        let (seen, ended) = drain(&mut resumed);
        assert_eq!(data(&seen), ["b", "[DONE]"]);
        assert!(ended);
        let done = follow(&hub, &id, Some(&end.to_string())).await.unwrap();
        assert_eq!(done.how_it_started(), Start::Finished);
        let response = done.into_http_response();
        assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
        assert!(!response.headers().contains_key(http::header::CONTENT_TYPE));
        // An id that is not this run's: a gap, then everything.
        let mut other = follow(&hub, &id, Some("not-an-id")).await.unwrap();
        assert!(matches!(other.how_it_started(), Start::Gap { .. }));
        let (seen, ended) = drain(&mut other);
        assert_eq!(seen[0].kind.as_deref(), Some(DEFAULT_GAP_EVENT));
        assert_eq!(data(&seen)[1..], ["a", "b", "[DONE]"]);
        assert!(ended);
    }

    #[tokio::test]
    async fn a_fetch_client_resumes_with_the_query_parameter_read_like_the_header() {
        let hub = Hub::new();
        let run = hub.start_run().await.unwrap();
        let id = run.id().to_owned();
        let first = run.send(Event::new().data("a")).await.unwrap();
        run.send(Event::new().data("b")).await.unwrap();
        let uri: http::Uri = format!("/runs/{id}?x=1&last_event_id={first}")
            .parse()
            .unwrap();
        let mut resumed = hub
            .follow_run(&id, &http::HeaderMap::new(), &uri)
            .await
            .unwrap();
        assert_eq!(data(&drain(&mut resumed).0), ["b"]);
        // Too long, or not decodable: a gap, never an error.
        for query in [
            format!("last_event_id={}", "1".repeat(MAX_LAST_EVENT_ID_LEN + 1)),
            "last_event_id=%ff%fe".to_owned(),
            "last_event_id=%zz".to_owned(),
        ] {
            let uri: http::Uri = format!("/runs/{id}?{query}").parse().unwrap();
            let gap = hub
                .follow_run(&id, &http::HeaderMap::new(), &uri)
                .await
                .unwrap();
            assert!(matches!(gap.how_it_started(), Start::Gap { .. }), "{query}");
        }
        // The header wins over the query.
        let mut headers = http::HeaderMap::new();
        headers.insert("last-event-id", first.to_string().parse().unwrap());
        let uri: http::Uri = format!("/runs/{id}?last_event_id=nonsense")
            .parse()
            .unwrap();
        let mut by_header = hub.follow_run(&id, &headers, &uri).await.unwrap();
        assert_eq!(data(&drain(&mut by_header).0), ["b"]);
    }

    #[tokio::test]
    async fn stop_reaches_the_producer_at_once_and_a_dropped_run_ends_as_failed() {
        let hub = Hub::new();
        let run = hub.start_run().await.unwrap();
        let id = run.id().to_owned();
        use std::future::Future as _;
        let mut stopped = Box::pin(run.stopped());
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(stopped.as_mut().poll(&mut cx).is_pending());
        assert!(hub.stop_run(&id).await.unwrap());
        assert!(run.is_stop_requested());
        assert!(stopped.as_mut().poll(&mut cx).is_ready());
        assert!(!hub.stop_run("no-such-run").await.unwrap());
        let mut follower = follow(&hub, &id, None).await.unwrap();
        drop(run);
        let (seen, ended) = drain(&mut follower);
        assert_eq!(
            seen.last().unwrap().data.as_deref(),
            Some("{\"outcome\":\"failed\",\"reason\":\"the producer dropped the run unfinished\"}")
        );
        assert!(ended);
        assert!(
            !hub.stop_run(&id).await.unwrap(),
            "a finished run cannot be stopped"
        );
    }

    #[tokio::test]
    async fn a_finished_run_is_gone_after_its_retention_and_runs_are_bounded() {
        let hub = Hub::builder()
            .run_retention(Duration::from_millis(50))
            .max_runs(2)
            .build()
            .unwrap();
        let a = hub.start_run().await.unwrap();
        let a_id = a.id().to_owned();
        let b = hub.start_run().await.unwrap();
        let b_id = b.id().to_owned();
        // Two running runs: a third is refused with a status fetch retries.
        let full = hub.start_run().await.unwrap_err();
        assert_eq!(full.kind(), HubErrorKind::TooManyRuns);
        let response = full.into_http_response();
        assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "30");
        a.finish(RunEnd::completed()).await.unwrap();
        assert!(
            follow(&hub, &a_id, None).await.is_ok(),
            "resumable for a while"
        );
        std::thread::sleep(Duration::from_millis(80));
        let gone = follow(&hub, &a_id, None).await.unwrap_err();
        assert_eq!(gone.kind(), HubErrorKind::NoSuchRun);
        assert_eq!(
            gone.into_http_response().status(),
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(hub.run_count(), 1);
        // A finished run makes room for a new one before its retention ends.
        let c = hub.start_run().await.unwrap();
        b.finish(RunEnd::completed()).await.unwrap();
        let d = hub.start_run().await.unwrap();
        assert_eq!(
            follow(&hub, &b_id, None).await.unwrap_err().kind(),
            HubErrorKind::NoSuchRun,
            "the finished run made room"
        );
        assert!(
            follow(&hub, c.id(), None).await.is_ok() && follow(&hub, d.id(), None).await.is_ok()
        );
    }

    #[tokio::test]
    async fn an_empty_header_leaves_the_query_to_say_where_to_resume() {
        let hub = Hub::new();
        let run = hub.start_run().await.unwrap();
        let id = run.id().to_owned();
        let first = run.send(Event::new().data("a")).await.unwrap();
        run.send(Event::new().data("b")).await.unwrap();
        let uri: http::Uri = format!("/runs/{id}?last_event_id={first}").parse().unwrap();
        for empty in ["", " ", "  "] {
            let mut headers = http::HeaderMap::new();
            headers.insert("last-event-id", empty.parse().unwrap());
            let mut resumed = hub.follow_run(&id, &headers, &uri).await.unwrap();
            assert_eq!(data(&drain(&mut resumed).0), ["b"], "{empty:?}");
        }
    }

    #[tokio::test]
    async fn an_end_event_with_an_id_is_refused_and_the_run_still_ends() {
        let hub = Hub::new();
        let run = hub.start_run().await.unwrap();
        let id = run.id().to_owned();
        let error = run
            .finish(RunEnd::completed().event(Event::new().id("7").unwrap().data("x")))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), HubErrorKind::IdSet);
        let mut follower = follow(&hub, &id, None).await.unwrap();
        let (seen, ended) = drain(&mut follower);
        assert_eq!(seen[0].kind.as_deref(), Some(RUN_END_EVENT));
        assert!(ended);
    }
}

/// Every event the subscription has ready now, as written.
fn ready_bytes(subscription: &mut Subscription) -> Vec<EncodedEvent> {
    let mut out = Vec::new();
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    while let Poll::Ready(Some(event)) = Pin::new(&mut *subscription).poll_next(&mut cx) {
        out.push(event);
    }
    out
}

#[test]
fn subscriptions_of_one_set_at_the_same_positions_share_each_event_written() {
    let hub = Hub::new();
    let set = TopicSet::new(["a", "b"]).unwrap();
    let other = TopicSet::new(["a", "b", "c"]).unwrap();
    let open = |set: &TopicSet| {
        let mut subscription = hub
            .subscribe_set(set, None, &http::HeaderMap::new())
            .now()
            .unwrap();
        // The position event.
        assert_eq!(ready_bytes(&mut subscription).len(), 1);
        subscription
    };
    let (mut first, mut second, mut third) = (open(&set), open(&set), open(&other));
    assert_eq!(hub.shared.sets.len(), 2);
    // A live fan-out: each event is read by every subscription before the
    // next is published.
    for (topic, n) in [("a", 1), ("b", 2), ("a", 3)] {
        publish_n(&hub, topic, n..=n);
        let (one, two) = (ready_bytes(&mut first), ready_bytes(&mut second));
        assert_eq!((one.len(), two.len()), (1, 1));
        assert_eq!(read(&one[0]).data.as_deref(), Some(&*n.to_string()));
        assert_eq!(
            one[0].as_bytes().as_ptr(),
            two[0].as_bytes().as_ptr(),
            "one copy"
        );
        // Another set with these topics in it writes other ids.
        let three = ready_bytes(&mut third);
        assert_eq!(read(&three[0]).data, read(&one[0]).data);
        assert_ne!(read(&three[0]).id, read(&one[0]).id);
    }
    drop((first, second, third));
    assert_eq!(
        hub.shared.sets.len(),
        0,
        "the last to leave removes its set"
    );
}

#[test]
fn a_subscription_behind_another_of_its_set_writes_its_own_positions() {
    let hub = Hub::new();
    let set = TopicSet::new(["a", "b"]).unwrap();
    let open = || {
        let mut subscription = hub
            .subscribe_set(&set, None, &http::HeaderMap::new())
            .now()
            .unwrap();
        assert_eq!(ready_bytes(&mut subscription).len(), 1);
        subscription
    };
    let (mut ahead, mut behind) = (open(), open());
    publish_n(&hub, "a", 1..=2);
    // `ahead` writes both; `behind` then writes the first at positions the
    // last event written does not have.
    let ahead = ready_bytes(&mut ahead);
    let behind = ready_bytes(&mut behind);
    assert_eq!(behind.len(), 2);
    for (ahead, behind) in ahead.iter().zip(&behind) {
        assert_eq!(
            ahead.as_bytes(),
            behind.as_bytes(),
            "the same events, ids and all"
        );
    }
    // Each resumes where its id says: after the first, the second again.
    let mut headers = http::HeaderMap::new();
    let id = read(&behind[0]).id.unwrap();
    headers.insert("last-event-id", id.parse().unwrap());
    let mut resumed = hub.subscribe_set(&set, None, &headers).now().unwrap();
    let seen: Vec<Seen> = ready_bytes(&mut resumed).iter().map(read).collect();
    assert_eq!(data(&seen), ["2"]);
    assert_eq!(seen[0].id, read(&behind[1]).id);
}

#[test]
fn the_last_of_a_set_s_subscriptions_removes_its_entry_even_when_two_leave_at_once() {
    // Two subscriptions of a set dropped at the same moment on two
    // threads: each once saw the other's reference and neither removed
    // the entry (found by an outside attack: 25 of 20,000 sets stayed).
    let hub = Hub::new();
    for round in 0..5_000 {
        let set = TopicSet::new([format!("t{round}")]).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let subscription = hub
                    .subscribe_set(&set, None, &http::HeaderMap::new())
                    .now()
                    .unwrap();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    drop(subscription);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
    assert_eq!(hub.shared.sets.len(), 0);
}

#[test]
fn a_set_writes_each_stored_event_with_its_topic_type_and_the_set_id_in_place_of_its_own() {
    let hub = Hub::new();
    let set = TopicSet::new(["a", "b"]).unwrap();
    let mut fresh = hub
        .subscribe_set(&set, None, &http::HeaderMap::new())
        .now()
        .unwrap();
    let position = read(&ready_bytes(&mut fresh)[0]).id.unwrap();
    // Plain and typed events, a type after the data, a type and no data
    // (its `data:` line comes after the hub's id), a comment and a retry;
    // then enough plain ones that the first are replayed as history.
    let events = [
        ("a", Event::new().data("one\ntwo")),
        ("b", Event::new().event("note").unwrap().data("x")),
        ("a", Event::new().data("y").event("late").unwrap()),
        ("b", Event::new().event("ping").unwrap()),
        (
            "a",
            Event::new()
                .comment("c")
                .data("z")
                .retry(Duration::from_secs(3)),
        ),
    ];
    for (topic, event) in events {
        hub.publish(topic, event).now().unwrap();
    }
    publish_n(&hub, "b", 1..=6);
    // Sequences of two digits in `a` too.
    publish_n(&hub, "a", 7..=14);
    let mut expected = vec![
        "event: a\ndata: one\ndata: two\n",
        "event: b:note\ndata: x\n",
        "event: a:late\ndata: y\n",
        "event: b:ping\ndata:\n",
        "event: a\n: c\ndata: z\nretry: 3000\n",
        "event: b\ndata: 1\n",
        "event: b\ndata: 2\n",
        "event: b\ndata: 3\n",
        "event: b\ndata: 4\n",
        "event: b\ndata: 5\n",
        "event: b\ndata: 6\n",
    ];
    let more: Vec<String> = (7..=14).map(|n| format!("event: a\ndata: {n}\n")).collect();
    expected.extend(more.iter().map(String::as_str));
    // Each event is exactly as expected, then one id line, the set's, and
    // the blank line; the same whether replayed or read live.
    let check = |written: &[EncodedEvent]| {
        assert_eq!(written.len(), expected.len());
        for (event, expected) in written.iter().zip(&expected) {
            let text = std::str::from_utf8(event.as_bytes()).unwrap();
            let rest = text.strip_prefix(expected).unwrap_or_else(|| {
                panic!("{text:?} does not start with {expected:?}");
            });
            let id = rest.strip_suffix("\n\n").expect("the blank line");
            assert!(id.starts_with("id: t"), "the set's id: {text:?}");
            assert!(!id.contains('\n'), "one id line: {text:?}");
        }
    };
    check(&ready_bytes(&mut fresh));
    let mut headers = http::HeaderMap::new();
    headers.insert("last-event-id", position.parse().unwrap());
    let mut replayed = hub.subscribe_set(&set, None, &headers).now().unwrap();
    check(&ready_bytes(&mut replayed));
}

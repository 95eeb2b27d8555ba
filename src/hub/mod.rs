//! [`Hub`]: publish an event once, fan it out to every subscriber of its
//! topic, and resume a reconnecting browser from its `Last-Event-ID`
//! without losing an event, or tell it, with a gap event, when that cannot
//! be done.
//!
//! The hub is a producer of event streams, not a layer: a handler
//! subscribes and returns the subscription as its response, and the layers
//! (keep-alive, close, shutdown) treat it like any event stream.
//!
//! # What a browser sees
//!
//! - Every event carries an id from the hub (`3fa9c0d2e1b7-42`: an epoch,
//!   then the event's place in its topic). The browser sends the last one
//!   back in `Last-Event-ID` when it reconnects.
//! - A subscriber without an id first gets a [`POSITION_EVENT`]
//!   (`sse-position`, empty data) whose id is the topic's position, so that
//!   a reconnect before the first live event resumes too.
//! - A reconnect whose id is still in the topic's history gets every event
//!   after it, then live events: none lost, none twice.
//! - Otherwise the stream starts with one **gap event** (type `gap` unless
//!   [configured](HubBuilder::gap_event)), whose data is JSON saying why,
//!   `{"reason":"history-truncated","last_event_id":"…","missed":12}`, with
//!   `reason` one of `history-truncated`, `unknown-id`, `restarted` (see
//!   [`GapReason`]), `last_event_id` what the browser sent (`null` when
//!   longer than [`MAX_LAST_EVENT_ID_LEN`] or not UTF-8), and `missed` the
//!   number of lost
//!   events when it is known. Its id moves the browser's last event id past
//!   the loss, so the next reconnect does not report it again. The whole
//!   history follows, then live events. A page reloads its state on it:
//!
//!   ```js
//!   const events = new EventSource("/events/ticks");
//!   events.addEventListener("gap", (e) => {
//!     const gap = JSON.parse(e.data); // { reason, last_event_id, missed }
//!     reloadEverything();             // what was missed is unknown
//!   });
//!   ```
//! - A client that reads so slowly that its next event leaves the history
//!   gets a `retry:` (jittered) and its stream ends; the browser reconnects
//!   and gets the gap event. Events are never skipped silently, and the
//!   hub holds no more for a slow client than for a fast one: a
//!   subscription is a position in the topic's history, not a queue (what
//!   the HTTP server buffers for a client that stops reading is the
//!   server's; see the README's "Clients that stop reading").
//!
//! # Bounds and their defaults
//!
//! | bound | default | setter |
//! |---|---|---|
//! | events kept per topic | 1,000 | [`history`](HubBuilder::history) |
//! | age of kept events | none | [`max_age`](HubBuilder::max_age) |
//! | idle topic dropped after | 5 minutes | [`idle_timeout`](HubBuilder::idle_timeout) |
//! | topics | 10,000 | [`max_topics`](HubBuilder::max_topics) |
//! | topic name | 256 bytes | [`MAX_TOPIC_LEN`] |
//! | `Last-Event-ID` read | 64 bytes | [`MAX_LAST_EVENT_ID_LEN`] |
//!
//! The history is also each subscriber's buffer: a subscriber can fall
//! `history` events behind before it lags.
//!
//! # Runs
//!
//! [`Hub::start_run`] starts a topic with an end, for a long job whose
//! output is streamed (a language model's answer, an export): followers
//! ([`Hub::follow_run`]) get every event from the first, then the end, and a
//! reload resumes exactly; [`Hub::stop_run`] stops it from any request. See
//! `docs/runs.md`.
//!
//! # Many instances: Redis Streams
//!
//! With the `redis` feature, `HubBuilder::redis` keeps each topic in a
//! Redis stream: every instance of the app on the same Redis serves the same
//! events, with the stream's ids as event ids, so a browser resumes on
//! whichever instance its reconnect reaches. The API is the same; what
//! changes is that `publish` and `subscribe` wait for Redis (within
//! `redis_timeout`), that Redis going
//! away is [`HubErrorKind::Unavailable`], that Redis refusing the hub's
//! commands (a wrong password, `maxmemory` reached) is
//! [`HubErrorKind::Misconfigured`], and that [`Hub::health`] tells a
//! readiness probe which. See the README's "Scaling out".
//!
//! ```
//! # #[cfg(feature = "redis")]
//! # async fn build() -> Result<tower_sse::hub::Hub, tower_sse::hub::HubConfigError> {
//! # use tower_sse::hub::Hub;
//! // Inside the tokio runtime; nothing connects until the first use.
//! let hub = Hub::builder().redis("redis://127.0.0.1:6379").build()?;
//! # Ok(hub)
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use futures_util::StreamExt;
//! use tower_sse::{hub::{Hub, Start}, Event};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new();
//! let first = hub.publish("ticks", Event::new().data("1")).await?;
//! hub.publish("ticks", Event::new().data("2")).await?;
//!
//! // A browser that saw the first event reconnects with its id.
//! let id = first.to_string();
//! let mut events = hub.subscribe("ticks", Some(&id)).await?;
//! assert_eq!(events.how_it_started(), Start::Exact { replayed: 1 });
//! let replayed = events.next().await.unwrap();
//! let text = String::from_utf8_lossy(replayed.as_bytes()).into_owned();
//! assert!(text.starts_with("data: 2\nid: ") && text.ends_with("-2\n\n"));
//!
//! // In a handler: `return Ok(events.into_http_response())`.
//! # Ok(())
//! # }
//! ```

mod backend;
mod client;
mod health;
mod id;
#[cfg(feature = "redis")]
mod redis;
mod run;
mod set;
mod subscription;
mod topic;

pub use health::Health;
pub use id::{EventId, MAX_LAST_EVENT_ID_LEN};
pub use run::{Run, RunEnd, RunOutcome, Stopped, RUN_END_EVENT};
pub use set::{TopicSet, MAX_TOPICS_PER_SUBSCRIPTION};
pub use subscription::{GapReason, Start, Subscription};

use std::{
    collections::HashMap,
    error::Error as StdError,
    fmt,
    sync::{atomic::Ordering, Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use backend::Backend;
use topic::{Asked, Retention, Topic};

use crate::{
    event::{find_line_break, EncodedEvent, MAX_RETRY},
    jitter::random_u64,
    Event,
};

/// What the name of a run's topic starts with, on a hub with a backend
/// (followers there read a run as a topic fed from the backend's log): a
/// name no app can give (`publish` and `subscribe` refuse it).
const RUN_TOPIC: char = '\0';

/// The longest topic name: longer names are refused with
/// [`HubErrorKind::TopicTooLong`].
pub const MAX_TOPIC_LEN: usize = 256;

/// The default [`HubBuilder::history`]: 1,000 events per topic.
const DEFAULT_HISTORY: usize = 1000;

/// The default [`HubBuilder::idle_timeout`]: 5 minutes.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The shortest [`HubBuilder::idle_timeout`]: 100 ms. Shorter, a topic
/// would be dropped between two publishes, and every browser's id would be
/// from a past life of its topic.
const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(100);

/// The default [`HubBuilder::max_topics`]: 10,000.
const DEFAULT_MAX_TOPICS: usize = 10_000;

/// The default [`HubBuilder::reconnect_delay`] a lagging subscriber is
/// given: between 1 and 5 seconds.
const DEFAULT_RECONNECT_DELAY: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(5));

/// The default [`HubBuilder::gap_event`] type: `gap`.
pub const DEFAULT_GAP_EVENT: &str = "gap";

/// The type of the event a fresh subscription starts with: it carries the
/// topic's position as its id and empty data, so that the browser keeps the
/// id (Firefox keeps no id from an event without data) while no `message`
/// handler sees it.
pub const POSITION_EVENT: &str = "sse-position";

/// Publishes events to topics and gives out subscriptions that resume from
/// a `Last-Event-ID`. Cheap to clone: clones share the topics.
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    topics: Mutex<Topics>,
    runs: run::Runs,
    /// What each client holds (`subscribe_set` with a client key).
    clients: Arc<client::Clients>,
    /// What the subscriptions to each set share.
    sets: set::Shares,
    /// When the hub was built (what a memory hub's health is healthy since).
    born: Instant,
    /// The backend (Redis); `None`: the memory hub.
    backend: Option<Arc<dyn Backend>>,
}

impl Shared {
    fn topics(&self) -> MutexGuard<'_, Topics> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Config {
    retention: Retention,
    idle_timeout: Duration,
    max_topics: usize,
    reconnect_delay: (Duration, Duration),
    gap_event: Box<str>,
    /// Label the hub's metrics with the topic name.
    topic_labels: bool,
    /// The most topics one set subscription may have.
    max_set: usize,
}

struct Topics {
    map: HashMap<Box<str>, Arc<Topic>>,
    /// Epochs are `seed + n` for the n-th topic made: unique in this hub,
    /// and random across hubs and processes.
    seed: u64,
    made: u64,
    /// `None`: the idle timeout is too long to ever come.
    next_sweep: Option<Instant>,
    /// The last sweep made because the hub was full.
    last_full_sweep: Option<Instant>,
}

/// How often a full hub looks for topics to drop.
const FULL_SWEEP_EVERY: Duration = Duration::from_millis(100);

impl Hub {
    /// A hub with the default bounds (see the [module documentation](self)).
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// A builder to set the bounds.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            history: DEFAULT_HISTORY,
            max_age: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_topics: DEFAULT_MAX_TOPICS,
            reconnect_delay: DEFAULT_RECONNECT_DELAY,
            gap_event: DEFAULT_GAP_EVENT.into(),
            topic_labels: false,
            run_history: 100_000,
            run_retention: Duration::from_secs(10 * 60),
            max_runs: 10_000,
            max_set: 64,
            client_limit: (16, 256),
            #[cfg(feature = "redis")]
            redis: redis::RedisSettings::default(),
        }
    }

    /// Publishes `event` to `topic` (made if it does not exist): gives it
    /// the topic's next id, encodes it once, keeps it in the history and
    /// wakes every subscriber. Never waits for a subscriber. An event
    /// without data or a type (a comment or a `retry:` alone) still takes
    /// an id, which a browser does not dispatch and Firefox does not keep.
    ///
    /// # Errors
    ///
    /// [`PublishError`], which gives the event back, when the event already
    /// has an id (the hub's ids are what resume relies on: publish events
    /// without one), when the topic name is longer than [`MAX_TOPIC_LEN`]
    /// or starts with NUL ([`HubErrorKind::BadTopic`]: the hub's runs use
    /// those),
    /// or when the topic is new and the hub already holds
    /// [`max_topics`](HubBuilder::max_topics).
    ///
    /// With the Redis backend (feature `redis`) the event is appended to
    /// the topic's stream, and the id is the entry's; subscribers on every
    /// instance get it from there. The topic is not made on this instance,
    /// and [`max_topics`](HubBuilder::max_topics) does not apply (each
    /// topic's stream expires after
    /// `redis_key_ttl` without a publish).
    /// Redis unreachable, or not answering within
    /// `redis_timeout`, is
    /// [`HubErrorKind::Unavailable`]; the event may or may not have been
    /// appended then (the answer was lost), so publishing it again may
    /// publish it twice. Redis refusing the publish (a wrong password,
    /// `OOM`, a missing permission) is [`HubErrorKind::Misconfigured`],
    /// and the event was not appended. The memory backend never waits.
    pub async fn publish(&self, topic: &str, event: Event) -> Result<EventId, PublishError> {
        if event.has_id() {
            return Err(PublishError::new(HubErrorKind::IdSet, event));
        }
        if let Some(backend) = &self.shared.backend {
            if topic.len() > MAX_TOPIC_LEN {
                return Err(PublishError::new(HubErrorKind::TopicTooLong, event));
            }
            if topic.starts_with(RUN_TOPIC) {
                return Err(PublishError::new(HubErrorKind::BadTopic, event));
            }
            return backend
                .publish(topic, event)
                .await
                .map_err(|(error, event)| PublishError { error, event });
        }
        let mut event = event;
        loop {
            let now = Instant::now();
            let found = match self.topic(topic, now, false) {
                Ok(found) => found,
                Err(kind) => return Err(PublishError::new(kind, event)),
            };
            match found.publish(event, self.shared.config.retention, now) {
                Ok(id) => return Ok(id),
                // Dropped as idle meanwhile: publish to the one made anew.
                Err(back) => event = back,
            }
        }
    }

    /// Subscribes to `topic` (made if it does not exist), resuming after
    /// `last_event_id` (the `Last-Event-ID` the browser sent, if any).
    /// [`subscribe_from_headers`](Hub::subscribe_from_headers) reads it from
    /// the request more exactly: `LastEventId` gives no id for a header
    /// that is not UTF-8, which here would start fresh instead of with a
    /// gap event (browsers only send back ids they received, so this
    /// matters for other clients).
    ///
    /// The subscription's [`how_it_started`](Subscription::how_it_started) tells how it
    /// starts: without an id (or with an empty one), live events only,
    /// after a [`POSITION_EVENT`] whose id is the topic's position (the
    /// browser remembers it, so that a reconnect before the first live
    /// event loses nothing); with an id in the history, the events after
    /// it; otherwise a gap event and the whole history.
    ///
    /// # Errors
    ///
    /// [`HubError`] when the topic name is longer than [`MAX_TOPIC_LEN`] or
    /// starts with NUL ([`HubErrorKind::BadTopic`]),
    /// or when the topic is new and the hub already holds
    /// [`max_topics`](HubBuilder::max_topics); with the Redis backend, also
    /// when Redis cannot be reached within
    /// `redis_timeout` for a topic new to this
    /// instance, or has been unreachable for longer than
    /// `redis_outage_grace`
    /// ([`HubErrorKind::Unavailable`]), and when Redis refuses the hub's
    /// commands ([`HubErrorKind::Misconfigured`]).
    ///
    /// With the memory backend it never waits. With the Redis backend, a
    /// topic new to this instance is first loaded from Redis (one round
    /// trip), and an id newer than what this instance has read (the
    /// browser saw it on another instance a moment ago) is fetched too.
    pub async fn subscribe(
        &self,
        topic: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, HubError> {
        self.subscribe_asked(topic, Asked::from_bytes(last_event_id.map(str::as_bytes)))
            .await
    }

    /// [`subscribe`](Hub::subscribe) with the `Last-Event-ID` read from the
    /// request's headers: a header longer than [`MAX_LAST_EVENT_ID_LEN`] or
    /// not UTF-8 is an unknown id (a gap event), read without copying.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Hub::subscribe).
    pub async fn subscribe_from_headers(
        &self,
        topic: &str,
        headers: &http::HeaderMap,
    ) -> Result<Subscription, HubError> {
        let header = headers
            .get(&crate::LAST_EVENT_ID)
            .map(|value| value.as_bytes());
        self.subscribe_asked(topic, Asked::from_bytes(header)).await
    }

    async fn subscribe_asked(
        &self,
        topic: &str,
        asked: Asked<'_>,
    ) -> Result<Subscription, HubError> {
        let found = self
            .topic(topic, Instant::now(), true)
            .map_err(HubError::new)?;
        self.subscribe_found(topic, found, asked).await
    }

    /// Subscribes to `found` (the topic `topic`, already counted as one
    /// more subscriber), getting it ready with the backend first.
    async fn subscribe_found(
        &self,
        topic: &str,
        found: Arc<Topic>,
        asked: Asked<'_>,
    ) -> Result<Subscription, HubError> {
        if let Some(backend) = &self.shared.backend {
            // Counted as a subscriber by `topic`: uncounted if this fails,
            // or if the caller drops the future while the backend answers.
            let mut counted = Counted(Some(&found));
            // Boxed (see `Backend`): measured with Redis, an inline future
            // made every idle connection 3.3 KB larger.
            backend.clone().prepare(topic, &found, asked).await?;
            counted.0 = None;
        }
        let retention = if found.run {
            self.shared.runs.retention()
        } else {
            self.shared.config.retention
        };
        let (start, slot) = found.start(asked, retention, Instant::now());
        let first = self.first_event(&start, asked);
        Ok(Subscription::new(
            self.shared.clone(),
            found,
            start.next,
            start.how,
            first,
            slot,
        ))
    }

    /// Subscribes to every topic of `topics` over one stream, resuming each
    /// from the request's `Last-Event-ID`: what a page that needs several
    /// topics opens instead of one `EventSource` per topic (a browser gives
    /// an origin six HTTP/1.1 connections, and each `EventSource` holds one
    /// for its whole life). See `docs/many-topics.md`.
    ///
    /// Check `topics` against what the user may read first
    /// ([`TopicSet::check`]): the set is all the stream ever carries, and
    /// no `Last-Event-ID` adds to it.
    ///
    /// Each event's type names its topic: `notes` for an event published
    /// to `notes` without a type, `notes:added` for one published with the
    /// type `added`; route them with `addEventListener("notes", ..)`. Each
    /// event's id holds every topic's position (at most 128 bytes for ten
    /// topics), and the hub's gap and position events keep their types (a
    /// gap's data names its topic). A reconnect resumes every topic exactly;
    /// one that cannot be resumed gets its own gap event, the others do not;
    /// a topic new to the set starts fresh. Events arrive in publish order,
    /// within each topic and across them (with Redis: Redis's order, for
    /// the events published after the subscribe returned; see
    /// `docs/many-topics.md`).
    ///
    /// With `client` (the user's id, else the address), the stream counts
    /// against that client's bound
    /// ([`client_limit`](HubBuilder::client_limit)) until it ends: a tab
    /// that closes gives its share back at once.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Hub::subscribe), for any of the topics; also
    /// [`HubErrorKind::BadTopic`] for a set larger than
    /// [`max_topics_per_subscription`](HubBuilder::max_topics_per_subscription),
    /// and [`HubErrorKind::ClientLimit`] when `client` already holds its
    /// bound.
    pub async fn subscribe_set(
        &self,
        topics: &TopicSet,
        client: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<Subscription, HubError> {
        if topics.len() > self.shared.config.max_set {
            return Err(HubError {
                kind: HubErrorKind::BadTopic,
                detail: Some("more topics than max_topics_per_subscription".into()),
            });
        }
        if client.is_some() && topics.len() > self.shared.clients.max_topics() {
            // It would never fit: not a bound to come back to later.
            return Err(HubError {
                kind: HubErrorKind::BadTopic,
                detail: Some("more topics than client_limit allows one client".into()),
            });
        }
        if topics
            .iter()
            .any(|topic| topic == &*self.shared.config.gap_event)
        {
            return Err(HubError {
                kind: HubErrorKind::BadTopic,
                detail: Some("a topic is named as the hub's gap event type".into()),
            });
        }
        let held = match client {
            Some(key) => Some(self.shared.clients.hold(key, topics.len())?),
            None => None,
        };
        let header = headers
            .get(&crate::LAST_EVENT_ID)
            .map(|value| value.as_bytes());
        let asked = set::AskedSet::from_bytes(header);
        let log = self.is_backed();
        let now = Instant::now();
        // Each topic counted as subscribed; uncounted if anything fails, or
        // if the caller drops the future while the backend answers.
        let mut counted = CountedSet(Vec::with_capacity(topics.len()));
        for name in topics.iter() {
            counted
                .0
                .push(self.topic(name, now, true).map_err(HubError::new)?);
        }
        if let Some(backend) = &self.shared.backend {
            for (name, found) in topics.iter().zip(&counted.0) {
                let mut buf = [0; 48];
                let asked = asked.asked(name, topics, log, &mut buf);
                backend.clone().prepare(name, found, asked).await?;
            }
        }
        let found = std::mem::take(&mut counted.0);
        let now = Instant::now();
        let opened = topics
            .iter()
            .zip(found)
            .map(|(name, topic)| {
                let mut buf = [0; 48];
                let asked_id = asked.asked(name, topics, log, &mut buf);
                let (opening, slot) = topic.start(asked_id, self.shared.config.retention, now);
                let position = match (opening.first_id, asked_id) {
                    (Some(id), _) => Some(id),
                    (None, Asked::Id(text)) if log => id::EventId::parse_log(text),
                    (None, Asked::Id(text)) => id::EventId::parse(text),
                    (None, _) => None,
                }
                .unwrap_or_else(|| id::EventId::memory(0, 0));
                let gap = match opening.how {
                    Start::Gap { reason, .. } => Some((reason, opening.missed)),
                    _ => None,
                };
                set::Opened {
                    name: name.into(),
                    topic,
                    next: opening.next,
                    slot,
                    start: opening.how,
                    position,
                    gap,
                }
            })
            .collect();
        let asked_text = header.and_then(|header| std::str::from_utf8(header).ok());
        let stream = set::SetStream::new(&self.shared, opened, asked_text, held);
        Ok(Subscription::set(self.shared.clone(), stream))
    }

    /// How many set subscriptions `client` holds open, and how many topics
    /// they hold together (see [`client_limit`](HubBuilder::client_limit)).
    pub fn client_count(&self, client: &str) -> (usize, usize) {
        self.shared.clients.count(client)
    }

    /// How many set subscriptions were refused because their client held
    /// its bound, since the hub was built.
    pub fn client_refusals(&self) -> u64 {
        self.shared.clients.refused()
    }

    /// The topic's counters, or `None` if the hub holds no such topic.
    pub fn topic_stats(&self, topic: &str) -> Option<TopicStats> {
        let found = self.topics().map.get(topic).cloned()?;
        Some(found.stats())
    }

    /// How many topics the hub holds now.
    pub fn topic_count(&self) -> usize {
        self.topics().map.len()
    }

    /// The state of the hub's backend, for a readiness probe: connected or
    /// not and since when, the last read, the last error; see [`Health`].
    /// A memory hub is always healthy. Cheap: no call to Redis.
    pub fn health(&self) -> Health {
        if let Some(backend) = &self.shared.backend {
            return backend.health();
        }
        Health::memory(self.shared.born)
    }

    fn topics(&self) -> MutexGuard<'_, Topics> {
        self.shared.topics()
    }

    /// The topic named `name`, made if needed; with `subscribe`, counted as
    /// one more subscriber while the map is locked (so that no sweep drops
    /// it in between).
    fn topic(&self, name: &str, now: Instant, subscribe: bool) -> Result<Arc<Topic>, HubErrorKind> {
        if name.starts_with(RUN_TOPIC) {
            return Err(HubErrorKind::BadTopic);
        }
        self.topic_of(name, now, subscribe, false)
    }

    /// `topic`, for a run's topic too (`run`: made as one; its name starts
    /// with `RUN_TOPIC`).
    fn topic_of(
        &self,
        name: &str,
        now: Instant,
        subscribe: bool,
        run: bool,
    ) -> Result<Arc<Topic>, HubErrorKind> {
        // A run's name is its mark and an id of 32 characters.
        if !run && name.len() > MAX_TOPIC_LEN {
            return Err(HubErrorKind::TopicTooLong);
        }
        let config = &self.shared.config;
        let mut topics = self.topics();
        if topics.next_sweep.is_some_and(|next| now >= next) {
            topics.sweep(config.idle_timeout, now, false);
        }
        let found = match topics.map.get(name) {
            Some(found) => found.clone(),
            None => {
                let full_sweep_due = topics.last_full_sweep.map_or(true, |last| {
                    now.saturating_duration_since(last) >= FULL_SWEEP_EVERY
                });
                if topics.map.len() >= config.max_topics && full_sweep_due {
                    // Full: drop what is idle now, and topics that only a
                    // subscriber made and that nobody subscribes to any
                    // more, before refusing. At most every
                    // `FULL_SWEEP_EVERY`: a flood of new topics would
                    // otherwise scan every topic, under this lock, per
                    // refused request.
                    topics.sweep(config.idle_timeout, now, true);
                    topics.last_full_sweep = Some(now);
                }
                if topics.map.len() >= config.max_topics {
                    return Err(HubErrorKind::TooManyTopics);
                }
                let epoch = topics.seed.wrapping_add(topics.made) & id::EPOCH_MASK;
                topics.made += 1;
                // A run's label is its id, without the mark.
                let label = config
                    .topic_labels
                    .then(|| name.trim_start_matches(RUN_TOPIC));
                let mut made = Topic::new(epoch, now, label, self.is_backed());
                made.run = run;
                let made = Arc::new(made);
                topics.map.insert(name.into(), made.clone());
                made
            }
        };
        if subscribe {
            // A backend's reader did not read a topic without subscribers;
            // the first one back catches it up.
            if found.subscribers.fetch_add(1, Ordering::AcqRel) == 0 {
                found.resubscribed();
            }
        }
        Ok(found)
    }

    /// Whether topics are fed from a backend (Redis) rather than by
    /// `publish`.
    fn is_backed(&self) -> bool {
        self.shared.backend.is_some()
    }

    /// The event an opening starts with: the gap event, or a fresh
    /// subscriber's position event; none for an exact resume.
    fn first_event(&self, opening: &topic::Opening, asked: Asked<'_>) -> Option<EncodedEvent> {
        let id = opening.first_id?;
        Some(match opening.how {
            Start::Gap { reason, .. } => self.gap_event(id, reason, asked, opening.missed),
            _ => {
                let mut text = [0; 48];
                Event::new()
                    .event_type(crate::event::EventType::from_static(POSITION_EVENT))
                    .trusted_id(id.write(&mut text))
                    .data("")
                    .encode()
            }
        })
    }

    fn gap_event(
        &self,
        id: EventId,
        reason: GapReason,
        asked: Asked<'_>,
        missed: Option<u64>,
    ) -> EncodedEvent {
        let mut data = String::with_capacity(96);
        data.push_str("{\"reason\":\"");
        data.push_str(reason.as_str());
        data.push_str("\",\"last_event_id\":");
        match asked {
            Asked::Id(asked) => json_string(&mut data, asked),
            Asked::Nothing | Asked::Unreadable => data.push_str("null"),
        }
        if let Some(missed) = missed {
            data.push_str(",\"missed\":");
            data.push_str(&missed.to_string());
        }
        data.push('}');
        let event = match Event::new().event(&*self.shared.config.gap_event) {
            Ok(event) => event,
            // Checked when the hub was built.
            Err(error) => error.into_event(),
        };
        let mut text = [0; 48];
        event.trusted_id(id.write(&mut text)).data(data).encode()
    }
}

/// Uncounts a subscriber on drop (a subscribe that failed or was dropped
/// while waiting for the backend).
struct Counted<'a>(Option<&'a Topic>);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(topic) = self.0.take() {
            topic.abandon(Instant::now());
        }
    }
}

/// Uncounts the subscribers of a set on drop (a subscribe that failed or
/// was dropped while waiting for the backend).
struct CountedSet(Vec<Arc<Topic>>);

impl Drop for CountedSet {
    fn drop(&mut self) {
        let now = Instant::now();
        for topic in self.0.drain(..) {
            topic.abandon(now);
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.shared.config)
            .field("topics", &self.topic_count())
            .finish()
    }
}

impl Topics {
    /// Drops the topics nobody subscribes to that saw no publish for
    /// `idle` (with `unpublished`, also those nothing was ever published
    /// to); runs at most twice per `idle`, on a publish or subscribe, and
    /// when the hub is full.
    fn sweep(&mut self, idle: Duration, now: Instant, unpublished: bool) {
        self.map
            .retain(|_, topic| !topic.evict_if_idle(idle, now, unpublished));
        self.next_sweep = now.checked_add(idle / 2);
    }
}

/// Writes `text` as a JSON string.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds a [`Hub`]. Setters record; [`build`](HubBuilder::build) checks.
#[must_use]
#[derive(Debug, Clone)]
pub struct HubBuilder {
    history: usize,
    max_age: Option<Duration>,
    idle_timeout: Duration,
    max_topics: usize,
    reconnect_delay: (Duration, Duration),
    gap_event: String,
    topic_labels: bool,
    run_history: usize,
    run_retention: Duration,
    max_runs: usize,
    max_set: usize,
    client_limit: (usize, usize),
    #[cfg(feature = "redis")]
    redis: redis::RedisSettings,
}

impl HubBuilder {
    /// How many events each topic keeps for resuming (at least 1). The
    /// history is also how far a subscriber may fall behind before it
    /// lags. Default: 1,000.
    pub fn history(mut self, events: usize) -> Self {
        self.history = events;
        self
    }

    /// Drops kept events older than `age` (on the topic's next publish or
    /// subscribe), longer than zero. Like the count, this bounds how far
    /// behind a subscriber may fall: one whose next event is older lags.
    /// Default: no age limit.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Drops a topic, with its history, once nobody has subscribed to it
    /// and nothing was published to it for `idle` (checked on publishes and
    /// subscribes to any topic). A browser that reconnects later gets a gap
    /// event (`restarted`). Default: 5 minutes.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// The most topics the hub holds (at least 1); publishing or
    /// subscribing to one more is an error. Subscribing makes a topic, so
    /// when topic names come from requests, check them against the topics
    /// the app has before subscribing. Default: 10,000.
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.max_topics = topics;
        self
    }

    /// The range the `retry:` given to a lagging subscriber is drawn from,
    /// so that clients do not all come back at once; `min` at most `max`,
    /// and `max` at most
    /// [`MAX_RETRY`]. Default: 1 to 5 seconds.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_delay = (min, max);
        self
    }

    /// The type of the gap event (non-empty, no line break, and not
    /// `sse-position`, `sse-retry` or `message`, which mean something
    /// else). Default: `gap`
    /// ([`DEFAULT_GAP_EVENT`]).
    pub fn gap_event(mut self, event_type: impl Into<String>) -> Self {
        self.gap_event = event_type.into();
        self
    }

    /// The most events a run keeps (at least 1): its whole output, for a
    /// follower that comes from its start. A follower beyond it gets a gap
    /// event. Default: 100,000.
    pub fn run_history(mut self, events: usize) -> Self {
        self.run_history = events;
        self
    }

    /// How long a finished run stays resumable; then it is gone, and a
    /// late reconnect gets `404` ([`HubErrorKind::NoSuchRun`]). Default:
    /// 10 minutes.
    pub fn run_retention(mut self, retention: Duration) -> Self {
        self.run_retention = retention;
        self
    }

    /// The most runs the hub holds at once, running and finished (at
    /// least 1); one more is [`HubErrorKind::TooManyRuns`]. Default:
    /// 10,000.
    pub fn max_runs(mut self, runs: usize) -> Self {
        self.max_runs = runs;
        self
    }

    /// Labels the hub's metrics (feature `metrics`) with the topic's name
    /// (`topic`). Every topic is then a time series of its own in the
    /// metrics backend: turn it on only when the topics are few and known
    /// (a set of rooms, not one per user), since an unbounded label set is a
    /// known way to exhaust a backend. Default: off (totals over all
    /// topics).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn per_topic_metrics(mut self, on: bool) -> Self {
        self.topic_labels = on;
        self
    }

    /// The most topics one [`subscribe_set`](Hub::subscribe_set) may ask
    /// for, from 1 to [`MAX_TOPICS_PER_SUBSCRIPTION`]: a larger set is
    /// refused with [`HubErrorKind::BadTopic`] (`400`). Default: 64.
    pub fn max_topics_per_subscription(mut self, topics: usize) -> Self {
        self.max_set = topics;
        self
    }

    /// The bound on what one client holds (the key given to
    /// [`subscribe_set`](Hub::subscribe_set)): at most `streams` open set
    /// subscriptions, holding at most `topics` topics together, so that
    /// one client cannot fill the hub by opening streams or by naming new
    /// topics. A stream past the bound is refused with
    /// [`HubErrorKind::ClientLimit`], answered like a full hub: an event
    /// stream with a `retry:` of 10 to 30 seconds, so the browser comes
    /// back once a tab has closed (a status other than `200` would stop its
    /// `EventSource` for good). Each at least 1. Default: 16 streams, 256
    /// topics.
    pub fn client_limit(mut self, streams: usize, topics: usize) -> Self {
        self.client_limit = (streams, topics);
        self
    }

    /// The hub.
    ///
    /// # Errors
    ///
    /// [`HubConfigError`] naming the first setting that is out of range; it
    /// gives the builder back ([`HubConfigError::into_builder`]).
    pub fn build(self) -> Result<Hub, HubConfigError> {
        let (min, max) = self.reconnect_delay;
        let kind = if self.history == 0 {
            Some(HubConfigErrorKind::ZeroHistory)
        } else if self.max_age == Some(Duration::ZERO) {
            Some(HubConfigErrorKind::ZeroMaxAge)
        } else if self.max_topics == 0 {
            Some(HubConfigErrorKind::ZeroMaxTopics)
        } else if self.idle_timeout < MIN_IDLE_TIMEOUT {
            Some(HubConfigErrorKind::IdleTimeoutTooShort)
        } else if min > max {
            Some(HubConfigErrorKind::DelayRange)
        } else if max > MAX_RETRY {
            Some(HubConfigErrorKind::DelayTooLong)
        } else if self.run_history == 0 || self.max_runs == 0 {
            Some(HubConfigErrorKind::ZeroRuns)
        } else if self.max_set == 0 || self.max_set > MAX_TOPICS_PER_SUBSCRIPTION {
            Some(HubConfigErrorKind::TopicsPerSubscription)
        } else if self.client_limit.0 == 0 || self.client_limit.1 == 0 {
            Some(HubConfigErrorKind::ZeroClientLimit)
        } else if self.gap_event.is_empty()
            || find_line_break(self.gap_event.as_bytes()).is_some()
            || [POSITION_EVENT, crate::event::RETRY_EVENT, "message"].contains(&&*self.gap_event)
        {
            Some(HubConfigErrorKind::GapEventType)
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(HubConfigError {
                kind,
                builder: Box::new(self),
            });
        }
        let retention = Retention {
            len: self.history,
            age: self.max_age,
        };
        let backend = match self.backend(retention) {
            Ok(backend) => backend,
            Err(kind) => {
                return Err(HubConfigError {
                    kind,
                    builder: Box::new(self),
                })
            }
        };
        let now = Instant::now();
        let run_config = self.run_config();
        let hub = Hub {
            shared: Arc::new(Shared {
                config: Config {
                    retention,
                    idle_timeout: self.idle_timeout,
                    max_topics: self.max_topics,
                    reconnect_delay: self.reconnect_delay,
                    gap_event: self.gap_event.into(),
                    topic_labels: self.topic_labels,
                    max_set: self.max_set,
                },
                clients: Arc::new(client::Clients::new(
                    self.client_limit.0,
                    self.client_limit.1,
                )),
                runs: run::Runs::new(run_config),
                sets: set::Shares::default(),
                topics: Mutex::new(Topics {
                    map: HashMap::new(),
                    seed: random_u64(),
                    made: 0,
                    next_sweep: now.checked_add(self.idle_timeout / 2),
                    last_full_sweep: None,
                }),
                born: now,
                backend: backend.clone(),
            }),
        };
        if let Some(backend) = backend {
            backend.start(Arc::downgrade(&hub.shared));
        }
        Ok(hub)
    }

    fn run_config(&self) -> run::RunConfig {
        run::RunConfig {
            history: self.run_history,
            retention: self.run_retention,
            max: self.max_runs,
        }
    }

    /// The backend the settings ask for (`None`: the memory hub), or the
    /// first of its settings out of range. The one place that chooses.
    fn backend(
        &self,
        retention: Retention,
    ) -> Result<Option<Arc<dyn Backend>>, HubConfigErrorKind> {
        #[cfg(feature = "redis")]
        if let Some(backend) =
            redis::Backend::new(&self.redis, retention, self.idle_timeout, self.run_config())?
        {
            return Ok(Some(Arc::new(backend)));
        }
        let _ = retention;
        Ok(None)
    }
}

/// A topic's counters, from [`Hub::topic_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Subscriptions open now.
    pub subscribers: usize,
    /// Events published since the topic was made; with the Redis backend,
    /// events this instance read from Redis since it made the topic (one
    /// more for each break in the stream).
    pub published: u64,
    /// Events kept in the history.
    pub history_len: usize,
    /// Encoded bytes of the events kept.
    pub history_bytes: usize,
    /// Subscriptions that resumed exactly from a `Last-Event-ID`.
    pub resumes: u64,
    /// Events replays were to send (exact resumes and after gap events),
    /// counted when each subscription starts.
    pub replayed: u64,
    /// Subscriptions that started with a gap event.
    pub gaps: u64,
    /// Subscriptions ended because the client fell behind the history.
    pub lagged: u64,
}

/// What went wrong in [`Hub::publish`] or [`Hub::subscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HubErrorKind {
    /// The topic is new and the hub already holds
    /// [`max_topics`](HubBuilder::max_topics).
    TooManyTopics,
    /// The topic name is longer than [`MAX_TOPIC_LEN`].
    TopicTooLong,
    /// The published event already has an id: the hub gives ids.
    IdSet,
    /// Redis (feature `redis`) could not be reached, did not answer in
    /// time, or cannot serve yet (loading its data, or failing over:
    /// `LOADING`, `READONLY`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`,
    /// `BUSY`), or the instance's reader has failed so for longer than its
    /// grace: an outage, which passes by itself. Answered with a `retry:`
    /// of a few seconds.
    Unavailable,
    /// Redis (feature `redis`) answers, and refuses the hub's commands for
    /// a reason that lasts until someone changes something: the URL's
    /// password, user or database (`WRONGPASS`, `NOAUTH`, `DB index is out
    /// of range`), an ACL (`NOPERM`), a renamed command (`unknown
    /// command`), `maxmemory` with `noeviction` (`OOM`), a Redis Cluster
    /// node (`MOVED`), a key of another type under the hub's prefix
    /// (`WRONGTYPE`). Trying again soon will not help: the `Display` says
    /// what Redis said, and it is logged at `error` (feature `tracing`) once
    /// per cause. Answered with a `retry:` of 30 to 60 seconds.
    Misconfigured,
    /// No such run: never started (on this instance, for the memory hub),
    /// finished longer than its retention ago, or (for `Run::send`) already
    /// finished (with Redis: ended as failed by another instance when its
    /// lease lapsed).
    /// Answered `404`, so that `EventSource` stops.
    NoSuchRun,
    /// The hub holds [`max_runs`](HubBuilder::max_runs) runs, all still
    /// running (a finished one makes room for a new one).
    TooManyRuns,
    /// A topic name or a [`TopicSet`] that cannot be: a name starting with
    /// NUL (the hub's runs use those); a set with no topic, a name empty or
    /// with a CR, LF or NUL, a query string that does not decode, or more
    /// topics than
    /// [`max_topics_per_subscription`](HubBuilder::max_topics_per_subscription).
    /// Answered `400`: asking again will not help.
    BadTopic,
    /// The app refused a topic of the set ([`TopicSet::check`]). Answered
    /// `403`, so that `EventSource` stops.
    NotAllowed,
    /// The client already holds its bound
    /// ([`client_limit`](HubBuilder::client_limit)). Answered like a full
    /// hub, with a `retry:` of 10 to 30 seconds.
    ClientLimit,
}

impl fmt::Display for HubErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HubErrorKind::TooManyTopics => "the hub holds its maximum number of topics",
            HubErrorKind::TopicTooLong => "the topic name is longer than MAX_TOPIC_LEN",
            HubErrorKind::IdSet => {
                "the event already has an id; the hub gives ids, publish it without one"
            }
            HubErrorKind::Unavailable => {
                "the hub's Redis is unreachable, did not answer in time, or cannot serve yet"
            }
            HubErrorKind::Misconfigured => {
                "the hub's Redis refuses its commands until a setting changes"
            }
            HubErrorKind::NoSuchRun => {
                "no such run: never started (on this instance, for a memory hub), or finished and gone"
            }
            HubErrorKind::TooManyRuns => "the hub holds its maximum number of runs",
            HubErrorKind::BadTopic => "a topic name or set that cannot be",
            HubErrorKind::NotAllowed => "the request asks for a topic it may not read",
            HubErrorKind::ClientLimit => "the client holds its maximum of streams or topics",
        })
    }
}

/// [`Hub::subscribe`] failed. Answer it with [`into_http_response`](HubError::into_http_response) (or, with axum, return it):
/// not with a `503`, which makes `EventSource` give up for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubError {
    kind: HubErrorKind,
    /// What the backend said (the Redis client's error), when it said
    /// something.
    detail: Option<Arc<str>>,
}

/// The range the `retry:` of a full hub's answer is drawn from: a browser
/// comes back after 10 to 30 seconds.
const FULL_HUB_RETRY: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(30));

/// The range the `retry:` of a hub whose Redis refuses its commands is drawn
/// from: a browser comes back after 30 to 60 seconds, not every few seconds
/// until someone fixes a setting, and soon enough once it is fixed.
const MISCONFIGURED_RETRY: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(60));

impl HubError {
    fn new(kind: HubErrorKind) -> Self {
        Self { kind, detail: None }
    }

    /// What went wrong.
    pub fn kind(&self) -> HubErrorKind {
        self.kind
    }

    /// The answer to give the browser. Any status but `200` makes
    /// `EventSource` stop for good (the standard fails the connection), so
    /// a hub that is full, which it may stop being, answers with an event
    /// stream that holds only a `retry:` event (a delay drawn between 10
    /// and 30 seconds) and ends: the browser tries again later. A topic
    /// name that is too long will never work: `400 Bad Request`, and the
    /// browser stops. A hub whose Redis is unreachable answers like a full
    /// one, with a delay drawn from the hub's
    /// [`reconnect_delay`](HubBuilder::reconnect_delay) range. A hub whose
    /// Redis refuses its commands ([`HubErrorKind::Misconfigured`]) answers
    /// the same way with a delay of 30 to 60 seconds: not a status that
    /// stops the browser for good (it comes back once the setting is
    /// fixed), nor a reconnect every few seconds until then.
    ///
    /// A run that is not here (`NoSuchRun`) answers `404 Not Found`: the
    /// browser stops, and the page learns the run is gone. A hub holding
    /// its maximum of running runs (`TooManyRuns`, for the `POST` that
    /// starts one) answers `429 Too Many Requests` with `Retry-After: 30`,
    /// which `fetch`-based clients (the OpenAI libraries among them) retry
    /// on.
    ///
    /// With the `axum` feature, `HubError` is also an `IntoResponse` that
    /// gives this answer.
    pub fn into_http_response(self) -> http::Response<String> {
        let (status, content_type, body) = match self.kind {
            HubErrorKind::NoSuchRun => (
                http::StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                format!("{self}\n"),
            ),
            HubErrorKind::NotAllowed => (
                http::StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                format!("{self}\n"),
            ),
            // Runs are started with a `fetch` POST, not `EventSource`: a
            // `429` with `Retry-After` is what such clients retry on.
            HubErrorKind::TooManyRuns => {
                let mut response = http::Response::new(format!("{self}\n"));
                *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("30"),
                );
                return response;
            }
            HubErrorKind::TooManyTopics
            | HubErrorKind::ClientLimit
            | HubErrorKind::Unavailable
            | HubErrorKind::Misconfigured => {
                let ((min, max), comment) = match self.kind {
                    HubErrorKind::Unavailable => (
                        DEFAULT_RECONNECT_DELAY,
                        "the hub cannot reach its backend; try again later",
                    ),
                    HubErrorKind::Misconfigured => (
                        MISCONFIGURED_RETRY,
                        "the hub's backend refuses its commands; try again much later",
                    ),
                    HubErrorKind::ClientLimit => (
                        FULL_HUB_RETRY,
                        "this client holds its maximum of streams; try again later",
                    ),
                    _ => (FULL_HUB_RETRY, "the hub is full; try again later"),
                };
                let retry = crate::event::retry_event(crate::jitter::random_between(min, max))
                    .comment(comment)
                    .encode();
                let body = String::from_utf8_lossy(retry.as_bytes()).into_owned();
                (http::StatusCode::OK, "text/event-stream", body)
            }
            _ => (
                http::StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                format!("{self}\n"),
            ),
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)?;
        match &self.detail {
            Some(detail) => write!(f, ": {detail}"),
            None => Ok(()),
        }
    }
}

impl StdError for HubError {}

/// [`Hub::publish`] failed; the event is given back
/// ([`into_event`](PublishError::into_event)).
pub struct PublishError {
    error: HubError,
    event: Event,
}

impl PublishError {
    fn new(kind: HubErrorKind, event: Event) -> Self {
        Self {
            error: HubError::new(kind),
            event,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> HubErrorKind {
        self.error.kind
    }

    /// The event, as it was given to `publish`.
    pub fn into_event(self) -> Event {
        self.event
    }
}

impl fmt::Debug for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishError")
            .field("error", &self.error)
            .field("event", &self.event)
            .finish()
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "publish failed: {}", self.error)
    }
}

impl StdError for PublishError {}

/// A [`HubBuilder`] setting out of range; gives the builder back.
pub struct HubConfigError {
    kind: HubConfigErrorKind,
    builder: Box<HubBuilder>,
}

/// Which [`HubBuilder`] setting is out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HubConfigErrorKind {
    /// `history(0)`: the history must keep at least one event.
    ZeroHistory,
    /// `max_age(Duration::ZERO)`: every event would be dropped at once.
    ZeroMaxAge,
    /// `max_topics(0)`.
    ZeroMaxTopics,
    /// `run_history` or `max_runs` zero.
    ZeroRuns,
    /// `max_topics_per_subscription` zero or above
    /// [`MAX_TOPICS_PER_SUBSCRIPTION`].
    TopicsPerSubscription,
    /// `client_limit` with zero streams or zero topics.
    ZeroClientLimit,
    /// `idle_timeout` shorter than 100 ms.
    IdleTimeoutTooShort,
    /// `reconnect_delay` with `min` greater than `max`.
    DelayRange,
    /// `reconnect_delay` with `max` longer than
    /// [`MAX_RETRY`].
    DelayTooLong,
    /// `gap_event` empty, with a line break, or a type that means
    /// something else: `sse-position`, `sse-retry` (a gap would look like
    /// a fresh start or a reconnect delay) or `message` (every
    /// `onmessage` handler would take it for data).
    GapEventType,
    /// `redis` with a URL the Redis client cannot read, a
    /// `redis_cluster` node URL it cannot read, or both `redis` and
    /// `redis_cluster`.
    RedisUrl,
    /// `redis` with a `rediss://` (TLS) URL, and the crate built without
    /// its `redis-tls` feature: turn it on.
    RedisTlsFeatureOff,
    /// The TLS settings of `redis` cannot work: `redis_tls_root_ca` holds
    /// no certificate, or one that does not parse, or was given with a URL
    /// that is not `rediss://`; or the URL ends in `#insecure` (no check of
    /// the server's name), which this crate does not offer.
    RedisTls,
    /// `redis_timeout` zero or longer than `MAX_REDIS_TIMEOUT`,
    /// `redis_key_ttl` zero or longer than `MAX_REDIS_KEY_TTL`, or a
    /// `history` too long for Redis (over `i64::MAX`).
    RedisOutOfRange,
    /// `redis` set, and `build` called outside a tokio runtime (the hub
    /// starts its reader task there).
    NoRuntime,
}

impl HubConfigError {
    /// Which setting is out of range.
    pub fn kind(&self) -> HubConfigErrorKind {
        self.kind
    }

    /// The builder as it was, to fix and build again.
    pub fn into_builder(self) -> HubBuilder {
        *self.builder
    }
}

impl fmt::Debug for HubConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfigError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for HubConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid hub setting: ")?;
        f.write_str(match self.kind {
            HubConfigErrorKind::ZeroHistory => "history must keep at least 1 event",
            HubConfigErrorKind::ZeroMaxAge => "max_age must be longer than zero",
            HubConfigErrorKind::ZeroMaxTopics => "max_topics must be at least 1",
            HubConfigErrorKind::ZeroRuns => "run_history and max_runs must be at least 1",
            HubConfigErrorKind::TopicsPerSubscription => {
                "max_topics_per_subscription must be within 1..=MAX_TOPICS_PER_SUBSCRIPTION (256)"
            }
            HubConfigErrorKind::ZeroClientLimit => "client_limit must allow at least 1 of each",
            HubConfigErrorKind::IdleTimeoutTooShort => "idle_timeout must be at least 100 ms",
            HubConfigErrorKind::DelayRange => "reconnect_delay: min is greater than max",
            HubConfigErrorKind::DelayTooLong => {
                "reconnect_delay: max is longer than MAX_RETRY (2^31 - 1 ms)"
            }
            HubConfigErrorKind::GapEventType => {
                "gap_event: the type is empty, has a line break, or is one that means something \
                 else (sse-position, sse-retry, message)"
            }
            HubConfigErrorKind::RedisUrl => "redis: the URL is not a Redis URL",
            HubConfigErrorKind::RedisTlsFeatureOff => {
                "redis: rediss:// needs the `redis-tls` feature of tower-sse; turn it on"
            }
            HubConfigErrorKind::RedisTls => {
                "redis: redis_tls_root_ca must hold PEM certificates that parse, and needs a \
                 rediss:// URL; and #insecure (no check of the server's name) is not offered"
            }
            HubConfigErrorKind::RedisOutOfRange => {
                "redis_timeout must be within (0, 1 min], redis_key_ttl within (0, 10 years], \
                 and history at most i64::MAX"
            }
            HubConfigErrorKind::NoRuntime => {
                "a hub on Redis must be built inside a tokio runtime (it starts a reader task)"
            }
        })
    }
}

impl StdError for HubConfigError {}

#[cfg(test)]
mod tests;

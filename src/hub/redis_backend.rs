//! The Redis Streams backend (feature `redis`): one stream per topic, so
//! that every instance of an app serves the same events with the same ids.
//!
//! - Publishing runs a script that appends the event to the topic's stream
//!   (`XADD`, trimmed with `MAXLEN ~ history`) together with the id of the
//!   entry before it, in one atomic step. The entry's id is the event's id.
//! - Each instance has one reader: a task with a connection of its own that
//!   reads every topic this instance holds with one blocking `XREAD` and
//!   appends what it reads to the topics' local histories, which are what
//!   subscribers read (the same histories as the memory backend). A topic
//!   new to the instance is first primed with the stream's latest entries
//!   (`XREVRANGE`), and the reader is woken (`CLIENT UNBLOCK`) to include
//!   it.
//! - Each entry records its previous id, so a break (entries Redis dropped
//!   before this instance read them: trimming, or a restart without
//!   persistence) is seen when it is read, never assumed away.
//! - Publishing and priming share a connection; the reader's is its own,
//!   since a blocking read holds its connection.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, Cmd, Value};

use super::{
    id::StreamId,
    topic::{Asked, Retention, Topic},
    EventId, HubErrorKind, Shared,
};
use crate::{jitter::random_between, Event};

/// The default [`HubBuilder::redis_timeout`](super::HubBuilder::redis_timeout):
/// 2 seconds.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The default
/// [`HubBuilder::redis_outage_grace`](super::HubBuilder::redis_outage_grace):
/// 5 seconds.
pub const DEFAULT_REDIS_OUTAGE_GRACE: Duration = Duration::from_secs(5);

/// The default [`HubBuilder::redis_key_ttl`](super::HubBuilder::redis_key_ttl):
/// 24 hours.
pub const DEFAULT_REDIS_KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The default
/// [`HubBuilder::redis_key_prefix`](super::HubBuilder::redis_key_prefix):
/// `tower-sse:`.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "tower-sse:";

/// How long one blocking read waits before the reader looks again at which
/// topics it reads (a new topic wakes it sooner).
const BLOCK: Duration = Duration::from_secs(2);

/// The most entries one read takes per topic.
const READ_COUNT: usize = 1000;

/// Appends `ARGV[1]` (the event's encoded fields) to the stream `KEYS[1]`
/// with the id of the stream's last entry (`0-0` if none), trims the
/// stream to about `ARGV[2]` entries, renews its time to live (`ARGV[3]`
/// milliseconds, none if 0) and returns the new entry's id. A script runs
/// atomically: no other entry can come between the read and the append.
const PUBLISH: &str = r"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if last[1] then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'p', prev, 'd', ARGV[1])
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return id
";

/// The settings of the Redis backend, as the builder records them.
#[derive(Clone, Debug)]
pub(super) struct RedisSettings {
    pub(super) url: Option<String>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) grace: Duration,
    pub(super) key_ttl: Option<Duration>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            prefix: DEFAULT_REDIS_KEY_PREFIX.into(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            grace: DEFAULT_REDIS_OUTAGE_GRACE,
            key_ttl: Some(DEFAULT_REDIS_KEY_TTL),
        }
    }
}

/// One stream entry as the hub wrote it.
pub(super) struct RawEntry {
    pub(super) id: StreamId,
    /// The id of the entry before it when it was added (`0-0`: none).
    pub(super) prev: StreamId,
    /// The event's encoded fields, each line ending with LF, without the
    /// `id:` line and the blank line.
    pub(super) fields: Vec<u8>,
}

pub(super) struct Backend {
    client: Client,
    /// The connection for publishing and priming, made on first use and
    /// again after a failure.
    command: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    publish_sha: String,
    prefix: Box<str>,
    timeout: Duration,
    grace: Duration,
    /// Milliseconds; 0 for none.
    key_ttl: u64,
    history: usize,
    retention: Retention,
    /// The reader's client id on its connection (0 while it has none), for
    /// `CLIENT UNBLOCK`.
    reader_id: AtomicU64,
    /// A topic was primed: the reader, idle or blocked, reads it too.
    new_topic: tokio::sync::Notify,
    /// The reader has failed for longer than the grace.
    unavailable: AtomicBool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// The backend for `settings`, or why not.
    pub(super) fn new(
        settings: &RedisSettings,
        retention: Retention,
    ) -> Result<Option<Self>, super::HubConfigErrorKind> {
        let Some(url) = &settings.url else {
            return Ok(None);
        };
        let client = Client::open(url.as_str()).map_err(|_| super::HubConfigErrorKind::RedisUrl)?;
        Ok(Some(Self {
            client,
            command: tokio::sync::Mutex::new(None),
            publish_sha: redis::Script::new(PUBLISH).get_hash().to_owned(),
            prefix: settings.prefix.as_str().into(),
            timeout: settings.timeout,
            grace: settings.grace,
            key_ttl: settings.key_ttl.map_or(0, |ttl| {
                u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
            history: retention.len,
            retention,
            reader_id: AtomicU64::new(0),
            new_topic: tokio::sync::Notify::new(),
            unavailable: AtomicBool::new(false),
        }))
    }

    fn key(&self, topic: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + topic.len());
        key.push_str(&self.prefix);
        key.push_str(topic);
        key
    }

    fn connection_config(&self, response: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response))
    }

    /// Runs `cmd` on the command connection, within the timeout (connecting
    /// included); a failed connection is dropped and made again next time.
    async fn query(&self, cmd: &Cmd) -> Result<Value, redis::RedisError> {
        let attempt = async {
            let mut connection = {
                let mut slot = self.command.lock().await;
                match &*slot {
                    Some(connection) => connection.clone(),
                    None => {
                        let config = self.connection_config(self.timeout);
                        let made = self
                            .client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?;
                        *slot = Some(made.clone());
                        made
                    }
                }
            };
            cmd.query_async::<Value>(&mut connection).await
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))),
        };
        if let Err(error) = &result {
            if error.code().is_none() {
                *self.command.lock().await = None;
            }
        }
        result
    }

    /// Appends the event to the topic's stream; gives the event back if
    /// Redis cannot be reached or does not answer in time.
    pub(super) async fn publish(
        &self,
        topic: &str,
        mut event: Event,
    ) -> Result<EventId, (HubErrorKind, Event)> {
        let fields = event.stored_fields();
        let key = self.key(topic);
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(&self.publish_sha);
        let mut result = self
            .query(script_args(
                &mut evalsha,
                &key,
                fields,
                self.history,
                self.key_ttl,
            ))
            .await;
        if matches!(&result, Err(error) if error.code() == Some("NOSCRIPT")) {
            let mut eval = redis::cmd("EVAL");
            eval.arg(PUBLISH);
            result = self
                .query(script_args(
                    &mut eval,
                    &key,
                    fields,
                    self.history,
                    self.key_ttl,
                ))
                .await;
        }
        match result
            .ok()
            .as_ref()
            .and_then(as_bytes)
            .and_then(StreamId::parse)
        {
            Some(id) => Ok(id.event_id()),
            None => Err((HubErrorKind::Unavailable, event)),
        }
    }

    /// Gets `topic` ready for a subscriber: primed with the stream's latest
    /// entries if it is new here, and caught up with the stream if the
    /// subscriber asks for an id newer than the topic read so far (the
    /// browser saw it on another instance a moment ago).
    pub(super) async fn prepare(
        self: &Arc<Self>,
        name: &str,
        topic: &Topic,
        asked: Asked<'_>,
    ) -> Result<(), HubErrorKind> {
        if self.unavailable.load(Ordering::Acquire) {
            return Err(HubErrorKind::Unavailable);
        }
        let key = self.key(name);
        let new = !topic.primed.initialized();
        topic
            .primed
            .get_or_try_init(|| async {
                let mut cmd = redis::cmd("XREVRANGE");
                cmd.arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(self.history);
                let value = self
                    .query(&cmd)
                    .await
                    .map_err(|_| HubErrorKind::Unavailable)?;
                let mut entries = parse_entries(&value);
                entries.reverse();
                topic.append(&entries, true, self.retention, Instant::now());
                Ok::<(), HubErrorKind>(())
            })
            .await?;
        if new {
            self.wake_reader();
        }
        let asked = match asked {
            Asked::Id(text) => StreamId::parse(text.as_bytes()),
            _ => None,
        };
        let last = topic.last_stream_id();
        if let (Some(asked), Some(last)) = (asked, last) {
            if asked > last {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(&key)
                    .arg(format!("({last}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(self.history);
                let value = self
                    .query(&cmd)
                    .await
                    .map_err(|_| HubErrorKind::Unavailable)?;
                topic.append(
                    &parse_entries(&value),
                    false,
                    self.retention,
                    Instant::now(),
                );
            }
        }
        Ok(())
    }

    /// Makes the reader look again at the topics it reads.
    fn wake_reader(self: &Arc<Self>) {
        self.new_topic.notify_one();
        let id = self.reader_id.load(Ordering::Acquire);
        if id == 0 {
            return;
        }
        let backend = self.clone();
        tokio::spawn(async move {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("UNBLOCK").arg(id);
            // If it fails, the reader's next read includes the topic.
            let _ = backend.query(&cmd).await;
        });
    }
}

fn script_args<'a>(
    cmd: &'a mut Cmd,
    key: &str,
    fields: &[u8],
    history: usize,
    ttl: u64,
) -> &'a Cmd {
    cmd.arg(1).arg(key).arg(fields).arg(history).arg(ttl)
}

fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// Entries of an `XRANGE`/`XREVRANGE` reply (or one stream of an `XREAD`
/// reply) that the hub wrote; others are skipped.
fn parse_entries(value: &Value) -> Vec<RawEntry> {
    items(value)
        .iter()
        .filter_map(|entry| {
            let [id, fields] = items(entry) else {
                return None;
            };
            let id = StreamId::parse(as_bytes(id)?)?;
            let (mut prev, mut data) = (None, None);
            let fields = match fields {
                Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect::<Vec<_>>(),
                other => items(other)
                    .chunks_exact(2)
                    .map(|pair| (&pair[0], &pair[1]))
                    .collect(),
            };
            for (name, value) in fields {
                match as_bytes(name)? {
                    b"p" => prev = StreamId::parse(as_bytes(value)?),
                    b"d" => data = as_bytes(value).map(<[u8]>::to_vec),
                    _ => {}
                }
            }
            Some(RawEntry {
                id,
                prev: prev?,
                fields: data?,
            })
        })
        .collect()
}

/// The streams of an `XREAD` reply: key and entries.
fn parse_read(value: &Value) -> Vec<(&[u8], Vec<RawEntry>)> {
    let streams: Vec<(&Value, &Value)> = match value {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        other => items(other)
            .iter()
            .filter_map(|stream| match items(stream) {
                [key, entries] => Some((key, entries)),
                _ => None,
            })
            .collect(),
    };
    streams
        .into_iter()
        .filter_map(|(key, entries)| Some((as_bytes(key)?, parse_entries(entries))))
        .collect()
}

/// Starts the instance's reader on the current runtime; it ends when the
/// hub is dropped.
pub(super) fn spawn_reader(shared: Weak<Shared>, backend: Arc<Backend>) {
    tokio::spawn(read(shared, backend));
}

async fn read(shared: Weak<Shared>, backend: Arc<Backend>) {
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        match read_connected(&shared, &backend, &mut down_since).await {
            Ended::HubDropped => return,
            Ended::Failed => {}
        }
        backend.reader_id.store(0, Ordering::Release);
        let now = Instant::now();
        let since = *down_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= backend.grace
            && !backend.unavailable.swap(true, Ordering::AcqRel)
        {
            if let Some(shared) = shared.upgrade() {
                shared.each_topic(|topic| topic.set_unavailable(true));
            }
        }
        tokio::time::sleep(random_between(backoff / 2, backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

enum Ended {
    HubDropped,
    Failed,
}

/// Connects and reads until a failure.
async fn read_connected(
    shared: &Weak<Shared>,
    backend: &Arc<Backend>,
    down_since: &mut Option<Instant>,
) -> Ended {
    let config = backend.connection_config(BLOCK + backend.timeout);
    let connect = async {
        let mut connection = backend
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let id: u64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut connection)
            .await?;
        Ok::<_, redis::RedisError>((connection, id))
    };
    let Ok(Ok((mut connection, id))) = tokio::time::timeout(backend.timeout, connect).await else {
        return Ended::Failed;
    };
    backend.reader_id.store(id, Ordering::Release);
    if down_since.take().is_some() && backend.unavailable.swap(false, Ordering::AcqRel) {
        if let Some(hub) = shared.upgrade() {
            hub.each_topic(|topic| topic.set_unavailable(false));
        }
    }
    loop {
        let Some(hub) = shared.upgrade() else {
            return Ended::HubDropped;
        };
        let topics = hub.backed_topics();
        if topics.is_empty() {
            drop(hub);
            let notified = backend.new_topic.notified();
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            continue;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for (name, _, _) in &topics {
            cmd.arg(backend.key(name));
        }
        for (_, _, last) in &topics {
            cmd.arg(last.to_string());
        }
        let reply = tokio::time::timeout(
            BLOCK + backend.timeout,
            cmd.query_async::<Value>(&mut connection),
        )
        .await;
        let Ok(Ok(reply)) = reply else {
            return Ended::Failed;
        };
        let now = Instant::now();
        let streams = parse_read(&reply);
        if streams.is_empty() {
            continue;
        }
        let by_name: HashMap<&[u8], &Topic> = topics
            .iter()
            .map(|(name, topic, _)| (name.as_bytes(), &**topic))
            .collect();
        for (key, entries) in streams {
            let topic = key
                .strip_prefix(backend.prefix.as_bytes())
                .and_then(|name| by_name.get(name));
            if let Some(topic) = topic {
                topic.append(&entries, false, backend.retention, now);
            }
        }
    }
}

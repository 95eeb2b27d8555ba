//! The Redis Streams backend (feature `redis`): one stream per topic, so
//! that every instance of an app serves the same events with the same ids.
//!
//! - Publishing runs a script that appends the event to the topic's stream
//!   (`XADD`, trimmed with `MAXLEN ~ history`) together with the id of the
//!   entry before it, in one atomic step. The entry's id is the event's id.
//! - Each instance has one reader: a task that subscribes (Redis pub/sub)
//!   to the channel of every topic with subscribers here (the channel is
//!   named as the stream, and the publish script announces each new entry
//!   on it, sealed with a key the hubs keep in Redis: see `PUBLISH`). An
//!   announced entry with a good seal that follows the last one read is
//!   appended as announced; otherwise the reader reads the topic (`XRANGE`
//!   from the last entry read). Either way the entries go to the topics'
//!   local histories, which are what subscribers read (the same histories
//!   as the memory backend). Reading costs Redis per announced event, not
//!   per topic held: per-user topics by the ten thousand cost nothing
//!   while quiet. A topic new to the instance is first primed with the stream's
//!   latest entries (`XREVRANGE`), then subscribed to, then read once more
//!   (what came between). Pub/sub delivers at most once: after any
//!   reconnect every topic is read again. Topics without subscribers here
//!   are not subscribed to; their first subscriber catches them up
//!   (`XRANGE`).
//! - Each entry records its previous id, so a break (entries Redis dropped
//!   before this instance read them: trimming, or a restart without
//!   persistence) is seen when it is read, never assumed away.
//! - A stream that vanishes (`DEL`, its expiry, an eviction) shows nothing
//!   to a read after the last id read, as a quiet stream does; so does one
//!   made anew with lower ids. Every read path checks that the stream still
//!   holds what this instance read: a catch-up reads from the last entry
//!   read itself (an empty answer is a loss, not "nothing new"), and the
//!   reader watches the streams it reads every few seconds, in one script
//!   for all of them. A loss ends every subscriber's stream there, and the
//!   reconnect gets a gap event.
//! - A run is a stream of its own, read by followers as a topic (see
//!   `runs`); the instance that produces it holds a lease on it, and the
//!   reader listens for stops of the runs produced here.
//! - Publishing, priming and the reader's reads share a connection; the
//!   subscriptions have their own (a subscribed connection takes no other
//!   command), which the reader pings every `PING_EVERY` to learn that
//!   Redis still answers.
//! - A failure is an outage or a refusal (`failures`): only a failure that
//!   may have broken a connection drops it, connects are spaced by a
//!   capped, jittered backoff, and a refusal is the hub's
//!   `HubErrorKind::Misconfigured`. The reader's outage grace counts from
//!   its first failed read, on a timer of its own.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, Cmd, RedisError, Value};

use self::failures::{Call, Record, RECONNECT_FIRST, RECONNECT_MAX};

use futures_core::future::BoxFuture;

use super::{
    backend::Backend as HubBackend,
    id::StreamId,
    run::RunConfig,
    topic::{Asked, Feed, LogEntry, Retention, Topic},
    EventId, HubError, Shared,
};
use crate::{jitter::random_between, Event};

mod builder;
mod failures;
mod tls;

/// The default [`HubBuilder::redis_timeout`](super::HubBuilder::redis_timeout):
/// 2 seconds.
pub(super) const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The default
/// [`HubBuilder::redis_outage_grace`](super::HubBuilder::redis_outage_grace):
/// 5 seconds.
pub(super) const DEFAULT_REDIS_OUTAGE_GRACE: Duration = Duration::from_secs(5);

/// The default
/// [`HubBuilder::redis_run_lease`](super::HubBuilder::redis_run_lease): 10
/// seconds.
pub(super) const DEFAULT_RUN_LEASE: Duration = Duration::from_secs(10);

/// The shortest and longest
/// [`HubBuilder::redis_run_lease`](super::HubBuilder::redis_run_lease):
/// 300 milliseconds (the reader tends runs every third of a lease, at
/// most every `PING_EVERY`) and 10 minutes.
pub(super) const MIN_RUN_LEASE: Duration = Duration::from_millis(300);
pub(super) const MAX_RUN_LEASE: Duration = Duration::from_secs(10 * 60);

/// The default [`HubBuilder::redis_key_ttl`](super::HubBuilder::redis_key_ttl):
/// 24 hours.
pub(super) const DEFAULT_REDIS_KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The default
/// [`HubBuilder::redis_key_prefix`](super::HubBuilder::redis_key_prefix):
/// `tower-sse:`.
pub(super) const DEFAULT_REDIS_KEY_PREFIX: &str = "tower-sse:";

/// How often the reader pings Redis on its subscriptions' connection (to
/// learn that Redis still answers), and on the command connection when
/// nothing used it meanwhile (so that a publish after a quiet second finds
/// it alive without a ping of its own).
const PING_EVERY: Duration = Duration::from_secs(1);

/// A publish on a command connection unused for longer pings first: the
/// reader keeps it in use every `PING_EVERY` while Redis answers, so this
/// happens only when the reader is not reading (an outage).
const PING_FIRST_AFTER_MS: u64 = 3 * PING_EVERY.as_millis() as u64;

/// How often the reader looks at every topic held here, to unsubscribe
/// from those without subscribers (a topic new here is subscribed to at
/// once).
const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// How often, at most, the reader watches every stream it reads (see
/// `WATCH`): a cost per topic, so rare; what it finds (a stream made anew
/// by another writer with lower ids, a start entry about to expire) is not
/// urgent.
const WATCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// How often the reader looks at the seal key (see `SEAL_KEY`).
const SEAL_EVERY: Duration = Duration::from_secs(10);

/// The longest [`HubBuilder::redis_timeout`](super::HubBuilder::redis_timeout):
/// one minute.
pub(super) const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest [`HubBuilder::redis_key_ttl`](super::HubBuilder::redis_key_ttl):
/// 10 years.
pub(super) const MAX_REDIS_KEY_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Lua that adds the start entry (field `s`) of a new life of the stream
/// `KEYS[1]` and leaves its id in `start`. Its id is Redis's current
/// millisecond, and as sequence (the microsecond within it, plus one) times
/// 2^32: a new stream's ids would otherwise start again at sequence 0 of
/// the current millisecond, and a stream deleted and made anew within one
/// millisecond would reuse ids of its earlier life (whose entries in that
/// millisecond come after an earlier microsecond's start, and are far fewer
/// than 2^32).
macro_rules! start_entry {
    () => {
        "
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local us = tonumber(now[2]) % 1000
local start = redis.call('XADD', KEYS[1], string.format('%.0f-%.0f', ms, (us + 1) * 4294967296), 's', '1')
"
    };
}

/// Lua defining `announce(key, db, id, prev, fields)`: publishes on the
/// channel named as the stream `KEYS[1]` the entry `id` (after `prev`, with
/// `fields`) as `<id> <prev> <seal> <fields>`. The seal is
/// `sha1hex(k .. sha1hex(k .. m))`, `k` the seal key (see `SEAL_KEY`), `m`
/// the channel's length, `:`, the channel, the database's number `db` and
/// the announcement without its seal; `-` when the publisher has no key yet
/// (`key` empty). A reader trusts only an entry sealed with its own key and
/// database: anyone allowed to publish can announce anything, and pub/sub
/// ignores the database number, so a hub on another database of the same
/// Redis (another key, or a copy of this one's) is heard too. The
/// channel's length first: no other channel's message can be the same text.
/// The reader checks it with [`seal`].
macro_rules! announce {
    () => {
        "
local function announce(key, db, id, prev, fields)
  local seal = '-'
  if key ~= '' then
    local m = #KEYS[1] .. ':' .. KEYS[1] .. ' ' .. db .. ' ' .. id .. ' ' .. prev .. ' ' .. fields
    seal = redis.sha1hex(key .. redis.sha1hex(key .. m))
  end
  redis.call('PUBLISH', KEYS[1], id .. ' ' .. prev .. ' ' .. seal .. ' ' .. fields)
end
"
    };
}
pub(super) use announce;

/// Appends `ARGV[1]` (the event's encoded fields) to the stream `KEYS[1]`
/// with the id of the stream's last entry, trims the stream to about
/// `ARGV[2]` entries, renews its time to live (`ARGV[3]` milliseconds; 0:
/// none, removing the one a subscriber's start entry set), announces the
/// entry on the channel named as the stream, and returns the new entry's
/// id. A stream that does not exist (new, expired, or lost by Redis) first
/// gets a start entry, so that every life of a stream has an id of its own
/// to resume from, never `0-0`. A script runs atomically: no other entry
/// can come between the read and the append.
///
/// The announcement carries the entry itself (see `announce!`; `ARGV[4]`
/// the seal key, `ARGV[5]` the database's number), so that a reader that
/// holds the previous id appends it without reading it back.
const PUBLISH: &str = concat!(
    announce!(),
    "
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev
if last[1] then
  prev = last[1][1]
else",
    start_entry!(),
    "  prev = start
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'p', prev, 'd', ARGV[1])
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
announce(ARGV[4], ARGV[5], id, prev, ARGV[1])
return id
"
);

/// Sets the seal key `KEYS[1]` to `ARGV[1]` unless it has one, and returns
/// it: every hub on this database (and prefix) seals its announcements with
/// the first key set. A key that vanishes (an eviction, a `FLUSHDB`) is
/// set anew by the first hub to look, and the others take it up when they
/// look again (`SEAL_EVERY`); meanwhile their announcements are read back.
const SEAL_KEY: &str = "
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// Watches the streams `KEYS` that the reader reads (the topics with
/// subscribers here), `ARGV[i + 1]` being the last id read from `KEYS[i]`.
/// Returns, for each stream that now ends before that id (it vanished, with a `DEL`, an expiry or an
/// eviction, or was made anew with lower ids), its index and its last id
/// (`0-0`: none), flat: a blocking read cannot tell such a stream from a
/// quiet one. Every other stream with a time to live shorter than `ARGV[1]`
/// milliseconds gets that: the start entry of a quiet topic, which lives
/// only the hub's idle timeout, must not expire under its subscribers.
/// Streams without a time to live, or with a longer one (a publish renewed
/// it), are left alone, and so are runs' streams (their id read comes
/// with an `r` before it), which live as long as their run says. Ids are compared as decimal text, exactly for any
/// 64-bit part (Lua's numbers are doubles).
const WATCH: &str = r"
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then
    if #am ~= #bm then return #am < #bm end
    return am < bm
  end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
local lost = {}
for i, key in ipairs(KEYS) do
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  local id = last and last[1] or '0-0'
  local read, renew = ARGV[i + 1], true
  if string.sub(read, 1, 1) == 'r' then read, renew = string.sub(read, 2), false end
  if before(id, read) then
    lost[#lost + 1] = i - 1
    lost[#lost + 1] = id
  else
    local ttl = redis.call('PTTL', key)
    if renew and ttl >= 0 and ttl < tonumber(ARGV[1]) then redis.call('PEXPIRE', key, ARGV[1]) end
  end
end
return lost
";

/// Returns the latest `ARGV[1]` entries of the stream `KEYS[1]`, newest
/// first; a stream that does not exist first gets its start entry, expiring
/// after `ARGV[2]` milliseconds (renewed by the first publish), so that a
/// subscriber of an empty topic gets an id of this life of the stream.
const PRIME: &str = concat!(
    "
if redis.call('EXISTS', KEYS[1]) == 0 then",
    start_entry!(),
    "  if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
return redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
"
);

mod runs;

/// The settings of the Redis backend, as the builder records them.
/// `Debug` shows the URL without its password: a builder or a build error
/// printed in a log must not leak it.
#[derive(Clone)]
pub(super) struct RedisSettings {
    pub(super) url: Option<String>,
    /// The nodes of a Redis Cluster (`redis_cluster`).
    pub(super) cluster: Option<Vec<String>>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) grace: Duration,
    pub(super) key_ttl: Option<Duration>,
    pub(super) run_lease: Duration,
    pub(super) tls: tls::TlsSettings,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url.as_deref().map(redacted))
            .field(
                "cluster",
                &self
                    .cluster
                    .iter()
                    .flatten()
                    .map(|url| redacted(url))
                    .collect::<Vec<_>>(),
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .field("key_ttl", &self.key_ttl)
            .field("run_lease", &self.run_lease)
            .finish_non_exhaustive()
    }
}

/// `url` with the password of its user information replaced by `***`
/// (`redis://user:***@host:6379/0`); a URL without one, unchanged.
pub(super) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at]
        .split_once(':')
        .map_or(&rest[..at], |(user, _)| user);
    let had_password = rest[..at].contains(':') || !user.is_empty();
    if !had_password {
        return url.to_owned();
    }
    let user = if rest[..at].contains(':') { user } else { "" };
    format!("{scheme}://{user}:***{}", &rest[at..])
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            cluster: None,
            prefix: DEFAULT_REDIS_KEY_PREFIX.into(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            grace: DEFAULT_REDIS_OUTAGE_GRACE,
            key_ttl: Some(DEFAULT_REDIS_KEY_TTL),
            run_lease: DEFAULT_RUN_LEASE,
            tls: tls::TlsSettings::default(),
        }
    }
}

/// Whether a failed command may be sent again.
#[derive(Clone, Copy)]
enum Retry {
    /// It changes nothing, or changing it twice is harmless.
    Safe,
    /// It appends: twice would publish twice.
    Never,
}

/// A command connection: to one Redis, or to a Redis Cluster (which
/// follows `MOVED` and `ASK`, and finds the new primary after a failover).
#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    async fn query(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        match self {
            Connection::Single(connection) => cmd.query_async(connection).await,
            #[cfg(feature = "redis-cluster")]
            Connection::Cluster(connection) => cmd.query_async(connection).await,
        }
    }
}

/// Where the hub's Redis is: one per hub, so its variants' sizes do not
/// matter.
#[allow(clippy::large_enum_variant)]
enum Server {
    Single(Client),
    /// A Redis Cluster: commands go through the cluster client; the
    /// reader's subscriptions go to one of the nodes given (a `PUBLISH` in
    /// a cluster reaches every node), the next one after a failure.
    #[cfg(feature = "redis-cluster")]
    Cluster {
        cluster: redis::cluster::ClusterClient,
        nodes: Vec<Client>,
    },
}

/// The command connection and the spacing of connects.
struct CommandSlot {
    /// The connection, with its number (so that a failure drops only the
    /// connection it happened on).
    connection: Option<(u64, Connection)>,
    /// Connects started; the last one's number.
    connects: u64,
    /// No connect before this.
    next_connect: Option<tokio::time::Instant>,
    /// What the next connect adds to `next_connect` (jittered).
    backoff: Duration,
    /// When the connection was made.
    made_at: Option<tokio::time::Instant>,
    /// Why there is no connection: the failure that dropped it, or the
    /// last connect's.
    why: Option<RedisError>,
}

impl CommandSlot {
    /// The error to fail with at once, if there is no connection and none
    /// may be made now: why there is none, when the next connect is not due
    /// yet and either that is a refusal (waiting would not mend it) or the
    /// next connect is due after `deadline`.
    fn refusal(&self, deadline: tokio::time::Instant) -> Option<RedisError> {
        let (at, why) = (self.next_connect?, self.why.as_ref()?);
        let backing_off = tokio::time::Instant::now() < at;
        (backing_off && (failures::is_refusal(why) || at > deadline)).then(|| why.clone())
    }
}

/// The error of a call that did not end in time.
fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

pub(super) struct Backend {
    server: Server,
    /// Subscription connects made (which node of a cluster is next).
    pubsub_connects: AtomicU64,
    /// The connection for publishing and priming, made on first use and
    /// again after a failure that may have broken it, and how connects are
    /// spaced.
    command: std::sync::Mutex<CommandSlot>,
    /// Held while connecting: callers that find no connection wait for
    /// one attempt instead of each opening their own.
    connecting: tokio::sync::Mutex<()>,
    /// What failed and what works, for `Hub::health`.
    record: Record,
    /// When a command last succeeded (milliseconds since `born`).
    last_ok: AtomicU64,
    born: Instant,
    /// Tells the reader that a topic has its first subscriber here (to
    /// subscribe to it).
    wake: tokio::sync::Notify,
    /// Tells subscribes waiting for the reader that it subscribed to more
    /// topics (see `Feed::listening`).
    subscribed: tokio::sync::Notify,
    publish_sha: String,
    prime_sha: String,
    watch_sha: String,
    seal_sha: String,
    /// The key that seals announcements (see `PUBLISH`), as Redis holds it;
    /// `None` until the reader first read it.
    seal: std::sync::Mutex<Option<Arc<[u8]>>>,
    /// The database's number, as text (a cluster has only 0): sealed into
    /// every announcement.
    db: Box<str>,
    /// Milliseconds a start entry written by a subscriber lives without a
    /// publish (the hub's idle timeout).
    start_ttl: u64,
    prefix: Box<str>,
    timeout: Duration,
    grace: Duration,
    /// Milliseconds; 0 for none.
    key_ttl: u64,
    history: usize,
    retention: Retention,
    /// The reader has failed for longer than the grace.
    unavailable: AtomicBool,
    /// This instance's id, which its leases on runs hold (random).
    instance: Box<str>,
    run_lease: Duration,
    run_config: RunConfig,
    run_scripts: runs::RunScripts,
    /// The runs followed here (their topics, subscribed to by the reader),
    /// and when each was last looked at, whether its lease lapsed (see
    /// `runs::tend`).
    followed_runs: std::sync::Mutex<HashMap<Box<str>, Option<Instant>>>,
    /// Runs that ended without the reader reading their end (an
    /// announcement lost): for the reader to read.
    runs_to_read: std::sync::Mutex<Vec<Box<str>>>,
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
        idle_timeout: Duration,
        run_config: RunConfig,
    ) -> Result<Option<Self>, super::HubConfigErrorKind> {
        let server = match (&settings.url, &settings.cluster) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err(super::HubConfigErrorKind::RedisUrl),
            (Some(url), None) => Server::Single(tls::client(url, &settings.tls)?),
            (None, Some(urls)) if urls.is_empty() => {
                return Err(super::HubConfigErrorKind::RedisUrl)
            }
            #[cfg(feature = "redis-cluster")]
            (None, Some(urls)) => {
                // Each node's URL checked as one Redis's would be (which
                // feature a `rediss://` needs, say) before the cluster's.
                let nodes = urls
                    .iter()
                    .map(|url| tls::client(url, &settings.tls))
                    .collect::<Result<_, _>>()?;
                Server::Cluster {
                    cluster: tls::cluster_client(urls, &settings.tls, settings.timeout)?,
                    nodes,
                }
            }
            #[cfg(not(feature = "redis-cluster"))]
            (None, Some(_)) => return Err(super::HubConfigErrorKind::RedisUrl),
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(super::HubConfigErrorKind::NoRuntime);
        }
        let out_of_range = settings.timeout.is_zero()
            || settings.timeout > MAX_REDIS_TIMEOUT
            || settings
                .key_ttl
                .is_some_and(|ttl| ttl.is_zero() || ttl > MAX_REDIS_KEY_TTL)
            || i64::try_from(retention.len).is_err()
            || i64::try_from(run_config.history).is_err()
            || settings.run_lease < MIN_RUN_LEASE
            || settings.run_lease > MAX_RUN_LEASE;
        if out_of_range {
            return Err(super::HubConfigErrorKind::RedisOutOfRange);
        }
        let db = match &server {
            Server::Single(client) => client.get_connection_info().redis_settings().db(),
            #[cfg(feature = "redis-cluster")]
            Server::Cluster { .. } => 0,
        };
        Ok(Some(Self {
            db: db.to_string().into(),
            server,
            pubsub_connects: AtomicU64::new(0),
            command: std::sync::Mutex::new(CommandSlot {
                connection: None,
                connects: 0,
                next_connect: None,
                backoff: RECONNECT_FIRST,
                made_at: None,
                why: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
            record: Record::new(&settings.prefix),
            last_ok: AtomicU64::new(0),
            born: Instant::now(),
            wake: tokio::sync::Notify::new(),
            subscribed: tokio::sync::Notify::new(),
            publish_sha: redis::Script::new(PUBLISH).get_hash().to_owned(),
            prime_sha: redis::Script::new(PRIME).get_hash().to_owned(),
            watch_sha: redis::Script::new(WATCH).get_hash().to_owned(),
            seal_sha: redis::Script::new(SEAL_KEY).get_hash().to_owned(),
            seal: std::sync::Mutex::new(None),
            start_ttl: (idle_timeout.min(MAX_REDIS_KEY_TTL).as_millis() as u64).max(1),
            prefix: settings.prefix.as_str().into(),
            timeout: settings.timeout,
            grace: settings.grace,
            key_ttl: settings
                .key_ttl
                .map_or(0, |ttl| (ttl.as_millis() as u64).max(1)),
            history: retention.len,
            retention,
            unavailable: AtomicBool::new(false),
            instance: format!("{:016x}", crate::jitter::random_u64()).into(),
            run_lease: settings.run_lease,
            run_config,
            run_scripts: runs::RunScripts::new(),
            followed_runs: std::sync::Mutex::new(HashMap::new()),
            runs_to_read: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// The stream (and channel) of `topic`: the prefix, then the topic's
    /// name in braces, a hash tag, so that on a Redis Cluster everything
    /// of one topic is in one slot, and topics spread over the slots.
    /// A run's topic (its name starts with `RUN_TOPIC`) is the run's
    /// stream (see `runs`).
    fn key(&self, topic: &str) -> String {
        if let Some(run) = topic.strip_prefix(super::RUN_TOPIC) {
            return self.run_key(run, "");
        }
        let mut key = String::with_capacity(self.prefix.len() + topic.len() + 2);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(topic);
        key.push('}');
        key
    }

    /// The key that seals announcements, if the reader has read it.
    fn seal(&self) -> Option<Arc<[u8]>> {
        self.seal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the key that seals announcements (setting it if Redis has
    /// none: 128 random bits, as hex), within the timeout. On failure the
    /// key known stays (or none: announcements are then read back).
    async fn renew_seal(&self) {
        let key = format!("{}seal-key", self.prefix);
        let candidate = format!(
            "{:016x}{:016x}",
            crate::jitter::random_u64(),
            crate::jitter::random_u64()
        );
        let reply = self
            .script(
                (&self.seal_sha, SEAL_KEY),
                &[&key],
                &[candidate.as_bytes()],
                self.deadline(),
                Retry::Safe,
            )
            .await;
        if let Some(seal) = reply.ok().as_ref().and_then(as_bytes) {
            if !seal.is_empty() {
                *self
                    .seal
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seal.into());
            }
        }
    }

    fn connection_config(&self, response: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response))
    }

    /// The command connection, made if there is none. Connects that reach
    /// Redis (all but refused ones, which cost it nothing and find it back
    /// at once) are spaced by a jittered backoff that doubles from
    /// `RECONNECT_FIRST` to `RECONNECT_MAX`, and starts again once a command
    /// works on a connection that has lasted `RECONNECT_MAX` (so that a
    /// connection that works for one command and breaks on the next, as
    /// one to a demoted primary does, is not made anew at once each time).
    /// Within it, a caller fails at once with why there is no connection
    /// (the last connect's failure, or the one that dropped the connection)
    /// when that is a refusal (waiting would not mend it) or when the next
    /// connect is due after `deadline`; otherwise it waits for the next
    /// connect, so that a call made just before Redis is back succeeds.
    /// Callers that arrive while a connect is under way get its outcome, so
    /// that any number of them costs one connect.
    async fn connection(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(u64, Connection), RedisError> {
        let seen = {
            let slot = self.slot();
            if let Some((generation, connection)) = &slot.connection {
                return Ok((*generation, connection.clone()));
            }
            if let Some(why) = slot.refusal(deadline) {
                return Err(why);
            }
            slot.connects
        };
        let _connecting = self.connecting.lock().await;
        let wait = {
            let slot = self.slot();
            if let Some((generation, connection)) = &slot.connection {
                // Made while this caller waited.
                return Ok((*generation, connection.clone()));
            }
            if let (true, Some(why)) = (slot.connects != seen, &slot.why) {
                // Tried and failed while this caller waited.
                return Err(why.clone());
            }
            if let Some(why) = slot.refusal(deadline) {
                return Err(why);
            }
            slot.next_connect
        };
        if let Some(at) = wait {
            // Others wait on `connecting` meanwhile, for this connect.
            tokio::time::sleep_until(at).await;
        }
        let generation = {
            let mut slot = self.slot();
            slot.connects += 1;
            slot.connects
        };
        let started = tokio::time::Instant::now();
        let connect = async {
            match &self.server {
                Server::Single(client) => client
                    .get_multiplexed_async_connection_with_config(
                        &self.connection_config(self.timeout),
                    )
                    .await
                    .map(Connection::Single),
                #[cfg(feature = "redis-cluster")]
                Server::Cluster { cluster, .. } => cluster
                    .get_async_connection()
                    .await
                    .map(Connection::Cluster),
            }
        };
        let made = tokio::time::timeout_at(deadline, connect)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        let mut slot = self.slot();
        // A refused connect reached no Redis: the next may come at once (it
        // is the one that finds Redis back).
        if !made.as_ref().is_err_and(RedisError::is_connection_refusal) {
            let backoff = slot.backoff;
            slot.next_connect = Some(started + random_between(backoff / 2, backoff));
            slot.backoff = (backoff * 2).min(RECONNECT_MAX);
        }
        match made {
            Ok(made) => {
                slot.connection = Some((generation, made.clone()));
                slot.made_at = Some(tokio::time::Instant::now());
                slot.why = None;
                Ok((generation, made))
            }
            Err(error) => {
                slot.why = Some(error.clone());
                Err(error)
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, CommandSlot> {
        self.command
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `cmd` on the command connection, before `deadline` (connecting
    /// included). A connection is dropped when a failure may have broken it
    /// or shows it leads to the wrong server (see `failures`): an I/O error,
    /// a timeout, or a failover's `READONLY` or `MASTERDOWN`; the next
    /// command connects again (within the backoff). An error reply leaves
    /// it in use: Redis answered, so the connection works.
    /// A command that changes nothing (`Retry::Safe`) is tried once more
    /// on a new connection when it failed on an old one: after a Redis
    /// restart, the first command on the old connection always fails. A
    /// publish is not (`Retry::Never`): it may have been applied before the
    /// connection broke, and trying again could append it twice.
    async fn query(
        &self,
        cmd: &Cmd,
        deadline: tokio::time::Instant,
        retry: Retry,
    ) -> Result<Value, RedisError> {
        let mut tries = match retry {
            Retry::Safe => 2,
            Retry::Never => 1,
        };
        loop {
            let reused = self.slot().connection.is_some();
            let result = self.query_once(cmd, deadline).await;
            tries -= 1;
            match &result {
                Err(error)
                    if tries > 0
                        && reused
                        && error.code().is_none()
                        && tokio::time::Instant::now() < deadline => {}
                _ => return result,
            }
        }
    }

    async fn query_once(
        &self,
        cmd: &Cmd,
        deadline: tokio::time::Instant,
    ) -> Result<Value, RedisError> {
        let used = AtomicU64::new(0);
        let attempt = async {
            let (generation, mut connection) = self.connection(deadline).await?;
            used.store(generation, Ordering::Relaxed);
            connection.query(cmd).await
        };
        let result = tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        match &result {
            Ok(_) => {
                self.last_ok.store(self.millis(), Ordering::Relaxed);
                let mut slot = self.slot();
                if slot
                    .made_at
                    .is_some_and(|made| made.elapsed() >= RECONNECT_MAX)
                {
                    slot.backoff = RECONNECT_FIRST;
                }
            }
            Err(error) => {
                let generation = used.load(Ordering::Relaxed);
                if generation != 0 && failures::drops_connection(error) {
                    let mut slot = self.slot();
                    if slot
                        .connection
                        .as_ref()
                        .is_some_and(|(held, _)| *held == generation)
                    {
                        slot.connection = None;
                        slot.why = Some(error.clone());
                    }
                }
            }
        }
        result
    }

    fn millis(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Runs a script (by its hash, or its text when Redis does not have it
    /// cached) with one key and `args`.
    async fn script(
        &self,
        (sha, text): (&str, &str),
        keys: &[&str],
        args: &[&[u8]],
        deadline: tokio::time::Instant,
        retry: Retry,
    ) -> Result<Value, redis::RedisError> {
        let call = |command: &str, script: &str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script).arg(keys.len()).arg(keys);
            for arg in args {
                cmd.arg(*arg);
            }
            cmd
        };
        let result = self.query(&call("EVALSHA", sha), deadline, retry).await;
        match &result {
            Err(error) if error.code() == Some("NOSCRIPT") => {
                self.query(&call("EVAL", text), deadline, retry).await
            }
            _ => result,
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.timeout
    }

    /// The end of the grace of the reader's outage `outage`: if it still
    /// goes on, caught-up subscribers end and new ones are refused until
    /// the reader reads again.
    fn give_up(&self, shared: &Shared, outage: u64) {
        self.record.in_outage(outage, || {
            if self.unavailable.swap(true, Ordering::AcqRel) {
                return;
            }
            #[cfg(feature = "tracing")]
            tracing::warn!(
                prefix = %self.prefix,
                "hub: Redis unreadable for longer than the outage grace; \
                 ending caught-up streams and refusing new ones until it is back"
            );
            each_topic(shared, |topic| topic.set_unavailable(true));
        });
    }

    /// How often the reader watches its streams (see `WATCH`): every
    /// blocking read's time, and at least three times within a start
    /// entry's time to live, so that it is renewed in time.
    fn watch_every(&self) -> Duration {
        WATCH_AT_MOST_EVERY.min(Duration::from_millis(self.start_ttl / 3))
    }

    /// Appends the event to the topic's stream, within the timeout; gives
    /// the event back if Redis cannot be reached or does not answer in
    /// time.
    async fn publish_event(&self, topic: &str, event: Event) -> Result<EventId, (HubError, Event)> {
        let deadline = self.deadline();
        let key = self.key(topic);
        // A connection idle for a while may have been closed by Redis (a
        // restart, or its idle timeout): a publish on it would fail without
        // having been sent, and cannot be tried again safely. A ping finds
        // out first (and is tried again on a new connection). The reader
        // keeps the connection in use while Redis answers (`keep_warm`),
        // so a publish after a quiet second is one round trip.
        if self
            .millis()
            .saturating_sub(self.last_ok.load(Ordering::Relaxed))
            > PING_FIRST_AFTER_MS
            && self.slot().connection.is_some()
        {
            let _ = self.query(&redis::cmd("PING"), deadline, Retry::Safe).await;
        }
        let result = {
            let fields = event.stored_fields();
            let history = self.history.to_string();
            let ttl = self.key_ttl.to_string();
            let seal = self.seal();
            self.script(
                (&self.publish_sha, PUBLISH),
                &[&key],
                &[
                    &fields,
                    history.as_bytes(),
                    ttl.as_bytes(),
                    seal.as_deref().unwrap_or_default(),
                    self.db.as_bytes(),
                ],
                deadline,
                Retry::Never,
            )
            .await
        };
        match result {
            Ok(value) => match as_bytes(&value).and_then(StreamId::parse) {
                Some(id) => {
                    self.record.worked(Call::Publish);
                    Ok(id.event_id())
                }
                None => {
                    // Not the script's answer: not a Redis the hub can use.
                    let error = HubError {
                        kind: super::HubErrorKind::Misconfigured,
                        detail: Some(format!("unexpected reply {value:?}").into()),
                    };
                    self.record.failed_with(Call::Publish, &error);
                    Err((error, event))
                }
            },
            Err(error) => Err((self.record.failed(Call::Publish, &error), event)),
        }
    }

    /// Gets `topic` ready for a subscriber, within the timeout: primed
    /// with the stream's latest entries if it is new here, and caught up
    /// with the stream if this instance stopped reading it (its last
    /// subscriber here left; others arriving meanwhile wait for that catch
    /// up) or if the subscriber asks for an id newer than what the topic
    /// read so far (the browser saw it on another instance a moment ago).
    async fn prepare_topic(
        self: &Arc<Self>,
        name: &str,
        topic: &Topic,
        asked: Asked<'_>,
    ) -> Result<(), HubError> {
        if self.unavailable.load(Ordering::Acquire) {
            return Err(self.record.outage_error());
        }
        let Some(feed) = topic.feed.as_deref() else {
            return Ok(());
        };
        if topic.run {
            return self.prepare_run(name, topic, feed).await;
        }
        let deadline = self.deadline();
        let work = async {
            let key = self.key(name);
            let new = !feed.primed.initialized();
            feed.primed
                .get_or_try_init(|| async {
                    self.load_latest(&key, topic, true, deadline).await?;
                    // Loaded now: nothing to catch up.
                    feed.stale.store(false, Ordering::Release);
                    self.record.worked(Call::Load);
                    Ok::<(), RedisError>(())
                })
                .await?;
            if new {
                self.wake_reader();
            }
            if feed.stale.load(Ordering::Acquire) {
                let _catching_up = feed.catching_up.lock().await;
                if feed.stale.load(Ordering::Acquire) {
                    self.catch_up(&key, topic, deadline).await?;
                    feed.stale.store(false, Ordering::Release);
                    // The reader reads the topic again from now on.
                    self.wake_reader();
                }
            }
            self.until_listening(feed, deadline).await;
            let asked = match asked {
                Asked::Id(text) => StreamId::parse(text.as_bytes()),
                _ => None,
            };
            let behind = asked
                .zip(topic.last_stream_id())
                .is_some_and(|(asked, last)| asked > last);
            if behind {
                self.catch_up(&key, topic, deadline).await?;
            }
            Ok(())
        };
        // One deadline for all of it, waits for other subscribers included.
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
            .map_err(|error| self.record.failed(Call::Load, &error))
    }

    /// Waits until the reader listens to the topic's announcements (or
    /// until `deadline`): every later publish then reaches this instance in
    /// publish order (what a set's subscription writes its topics' events
    /// in); until then they come by the reader's catch-up read, in id
    /// order. Not an error if it takes longer: the catch-up read follows.
    async fn until_listening(&self, feed: &Feed, deadline: tokio::time::Instant) {
        let listening = async {
            loop {
                let subscribed = self.subscribed.notified();
                if feed.listening.load(Ordering::Acquire) {
                    return;
                }
                subscribed.await;
            }
        };
        let _ = tokio::time::timeout_at(deadline, listening).await;
    }

    /// What a topic's history keeps: a run's, or a topic's.
    fn retention_of(&self, topic: &Topic) -> Retention {
        if topic.run {
            Retention {
                len: self.run_config.history,
                age: None,
            }
        } else {
            self.retention
        }
    }

    /// Appends what the stream holds after the topic's last entry (a few
    /// reads at most: the stream is trimmed to about the history's length).
    /// The read starts at that entry itself: a stream that no longer holds
    /// it, nor anything after it, ends before what this instance read (it
    /// vanished, or was made anew with lower ids), which is a loss, not
    /// "nothing new"; only then does a second command ask for the stream's
    /// last entry.
    async fn catch_up(
        &self,
        key: &str,
        topic: &Topic,
        deadline: tokio::time::Instant,
    ) -> Result<(), RedisError> {
        self.catch_up_once(key, topic, deadline).await?;
        self.record.worked(Call::Load);
        Ok(())
    }

    async fn catch_up_once(
        &self,
        key: &str,
        topic: &Topic,
        deadline: tokio::time::Instant,
    ) -> Result<(), RedisError> {
        for _ in 0..4 {
            let Some(last) = topic.last_stream_id() else {
                return Ok(());
            };
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(key)
                .arg(last.to_string())
                .arg("+")
                .arg("COUNT")
                .arg(self.retention_of(topic).len.saturating_add(1));
            let value = self.query(&cmd, deadline, Retry::Safe).await?;
            let entries = parse_entries(&value);
            if entries.is_empty() {
                let stream_last = self.stream_last(key, deadline).await?;
                if stream_last < last || stream_last == StreamId::ZERO {
                    self.stream_lost(key, topic, stream_last, deadline).await;
                    return Ok(());
                }
                // Appended to since: read again.
                continue;
            }
            let retention = self.retention_of(topic);
            topic.append(&entries, false, retention, Instant::now());
            if entries.len() <= retention.len {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The id of the last entry of the stream `key` (`0-0`: none).
    async fn stream_last(
        &self,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<StreamId, redis::RedisError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(key).arg("+").arg("-").arg("COUNT").arg(1);
        let value = self.query(&cmd, deadline, Retry::Safe).await?;
        Ok(parse_entries(&value)
            .first()
            .map_or(StreamId::ZERO, |entry| entry.id))
    }

    /// The stream `key` ends at `stream_last`, before what `topic` read:
    /// every subscriber of the topic here lags, and reconnects to a gap
    /// event. A stream that is gone starts its next life now, so that
    /// subscribers get ids of it (a failure here only means that the next
    /// publish starts it).
    async fn stream_lost(
        &self,
        key: &str,
        topic: &Topic,
        stream_last: StreamId,
        deadline: tokio::time::Instant,
    ) {
        topic.lost_entries(stream_last);
        // A run's stream is made by its start only: one that is gone has
        // ended (its follow answers `NoSuchRun`).
        if stream_last == StreamId::ZERO && !topic.run {
            let _ = self.load_latest(key, topic, false, deadline).await;
        }
    }

    /// Runs the priming script on the stream `key` (which starts a new
    /// life of it if Redis has none) and appends its latest entries to the
    /// topic: with `first`, as the topic's first entries (priming), else as
    /// what follows (the next life of a stream Redis lost).
    async fn load_latest(
        &self,
        key: &str,
        topic: &Topic,
        first: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(), redis::RedisError> {
        let count = self.history.to_string();
        let ttl = self.start_ttl.to_string();
        let value = self
            .script(
                (&self.prime_sha, PRIME),
                &[key],
                &[count.as_bytes(), ttl.as_bytes()],
                deadline,
                Retry::Safe,
            )
            .await?;
        let mut entries = parse_entries(&value);
        entries.reverse();
        topic.append(&entries, first, self.retention, Instant::now());
        Ok(())
    }

    /// The client for the reader's subscriptions: the Redis, or the next
    /// node of the cluster.
    fn pubsub_client(&self) -> &Client {
        let connects = self.pubsub_connects.fetch_add(1, Ordering::Relaxed);
        match &self.server {
            Server::Single(client) => {
                let _ = connects;
                client
            }
            #[cfg(feature = "redis-cluster")]
            Server::Cluster { nodes, .. } => &nodes[connects as usize % nodes.len()],
        }
    }

    /// Whether the hub's Redis is a cluster, where a script may only touch
    /// keys of one slot.
    fn is_cluster(&self) -> bool {
        match self.server {
            Server::Single(_) => false,
            #[cfg(feature = "redis-cluster")]
            Server::Cluster { .. } => true,
        }
    }

    /// Pings the command connection when nothing used it with success for
    /// `PING_EVERY` (see `PING_FIRST_AFTER_MS`), and says whether Redis
    /// answers on it.
    async fn keep_warm(&self) -> Result<(), RedisError> {
        let idle = self
            .millis()
            .saturating_sub(self.last_ok.load(Ordering::Relaxed));
        if idle >= PING_EVERY.as_millis() as u64 {
            self.query(&redis::cmd("PING"), self.deadline(), Retry::Safe)
                .await?;
        }
        Ok(())
    }

    /// Makes the reader look again at the topics it reads.
    fn wake_reader(self: &Arc<Self>) {
        self.wake.notify_one();
    }
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
/// reply), each with its id, so that the reader reads past every entry,
/// even one the hub did not write.
fn parse_entries(value: &Value) -> Vec<LogEntry> {
    items(value)
        .iter()
        .filter_map(|entry| {
            let [id, fields] = items(entry) else {
                return None;
            };
            let id = StreamId::parse(as_bytes(id)?)?;
            let (mut prev, mut data, mut start, mut end) = (None, None, false, false);
            let mut foreign = LogEntry {
                id,
                prev: StreamId::ZERO,
                fields: None,
                start: false,
                end: false,
            };
            let fields = match fields {
                Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect::<Vec<_>>(),
                other => items(other)
                    .chunks_exact(2)
                    .map(|pair| (&pair[0], &pair[1]))
                    .collect(),
            };
            for (name, value) in fields {
                match as_bytes(name) {
                    Some(b"p") => prev = as_bytes(value).and_then(StreamId::parse),
                    Some(b"d") => data = as_bytes(value).map(<[u8]>::to_vec),
                    Some(b"s") => start = true,
                    Some(b"e") => end = true,
                    _ => {}
                }
            }
            if let (Some(prev), Some(data)) = (prev, data) {
                foreign.prev = prev;
                foreign.fields = Some(data);
                foreign.end = end;
            } else if start {
                foreign.start = true;
            }
            Some(foreign)
        })
        .collect()
}

/// Starts the instance's reader on the current runtime; it ends when the
/// hub is dropped.
impl HubBackend for Backend {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<EventId, (HubError, Event)>> {
        Box::pin(self.publish_event(topic, event))
    }

    fn prepare<'a>(
        self: Arc<Self>,
        name: &'a str,
        found: &'a Topic,
        asked: Asked<'a>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move { self.prepare_topic(name, found, asked).await })
    }

    fn start_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(self.start_run_log(run))
    }

    fn run_append<'a>(
        &'a self,
        run: &'a str,
        event: Event,
        end: bool,
        here: Option<&'a Topic>,
    ) -> BoxFuture<'a, Result<(EventId, bool), (HubError, Event)>> {
        Box::pin(self.append_run(run, event, end, here))
    }

    fn stop_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(self.stop_run_log(run))
    }

    fn health(&self) -> super::Health {
        self.record.health()
    }

    fn start(self: Arc<Self>, shared: Weak<Shared>) {
        tokio::spawn(runs::tend(shared.clone(), Arc::downgrade(&self)));
        tokio::spawn(read(shared, self));
    }
}

/// Calls `f` on every topic the hub holds.
fn each_topic(shared: &Shared, mut f: impl FnMut(&Topic)) {
    let topics: Vec<Arc<Topic>> = shared.topics().map.values().cloned().collect();
    for topic in &topics {
        f(topic);
    }
}

/// The topics that have subscribers on this instance, with the id each
/// read up to: what the reader reads.
fn read_topics(shared: &Shared) -> Vec<(Box<str>, Arc<Topic>, StreamId)> {
    let topics: Vec<(Box<str>, Arc<Topic>)> = shared
        .topics()
        .map
        .iter()
        .map(|(name, topic)| (name.clone(), topic.clone()))
        .collect();
    topics
        .into_iter()
        .filter(|(_, topic)| topic.subscribers.load(Ordering::Acquire) > 0)
        .filter_map(|(name, topic)| {
            let last = topic.last_stream_id()?;
            Some((name, topic, last))
        })
        .collect()
}

/// The topics the reader is to read, each with what its announcements
/// carried.
#[derive(Default)]
struct ToRead {
    topics: HashMap<Box<str>, Announced>,
    /// Announcements noted so far (each entry's place among them).
    noted: usize,
}

/// A topic read in one round: the topic, its entries, and the places of
/// the announced ones among every announcement.
type ReadTopic<'a> = (
    &'a Topic,
    std::vec::IntoIter<LogEntry>,
    Vec<(StreamId, usize)>,
);

/// A topic's announcements since the reader last read it: each announced
/// entry's id and its place among every announcement, and the entries they
/// carried. Without a seal (see `PUBLISH`) an announcement is only a hint
/// of what to read and in which order, and what is appended is what the
/// topic's stream holds: pub/sub ignores Redis's database number, and
/// anyone allowed to publish on the channel can announce anything.
struct Announced {
    places: Vec<(StreamId, usize)>,
    /// The entries announced, each sealed with this hub's key; `None` when
    /// the topic is to be read from its stream (an announcement without a
    /// good seal, or a topic to read for another reason: new here, or after
    /// a reconnect).
    entries: Option<Vec<LogEntry>>,
    /// Read to the stream's end (a topic new here, after a reconnect), not
    /// only up to what was announced.
    whole: bool,
}

impl Default for Announced {
    /// A topic to read whole.
    fn default() -> Self {
        Self {
            places: Vec::new(),
            entries: None,
            whole: true,
        }
    }
}

/// The seal of an announcement `<id> <prev> <seal> <fields>` on `channel`
/// of database `db` with `key`, as `announce!` makes it, in hex.
fn seal(key: &[u8], channel: &[u8], db: &[u8], id: &[u8], prev: &[u8], fields: &[u8]) -> [u8; 40] {
    fn hex(digest: [u8; 20]) -> [u8; 40] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0; 40];
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 15)];
        }
        out
    }
    let mut inner = sha1_smol::Sha1::new();
    inner.update(key);
    let mut digits = [0; 20];
    let at = super::id::put_digits(&mut digits, 20, channel.len() as u64, 10);
    inner.update(&digits[at..]);
    inner.update(b":");
    for (part, text) in [channel, db, id, prev, fields].into_iter().enumerate() {
        if part > 0 {
            inner.update(b" ");
        }
        inner.update(text);
    }
    let mut outer = sha1_smol::Sha1::new();
    outer.update(key);
    outer.update(&hex(inner.digest().bytes()));
    hex(outer.digest().bytes())
}

/// What ended the reader's wait.
enum Woke {
    /// A message on the subscriptions' connection; `None`: it closed.
    Announced(Option<redis::Msg>),
    /// A topic has its first subscriber here.
    Wake,
    /// The time given.
    Due,
}

/// Waits for a message on `announced`, a notification of `wake`, or `at`.
async fn wait(
    announced: &mut redis::aio::PubSubStream,
    wake: &tokio::sync::Notify,
    at: tokio::time::Instant,
) -> Woke {
    use std::future::Future as _;
    let mut notified = std::pin::pin!(wake.notified());
    let mut due = std::pin::pin!(tokio::time::sleep_until(at));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(message) =
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut *announced), cx)
        {
            return std::task::Poll::Ready(Woke::Announced(message));
        }
        if notified.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Woke::Wake);
        }
        if due.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Woke::Due);
        }
        std::task::Poll::Pending
    })
    .await
}

/// The most announcements the reader gathers into one round.
const GATHER_MAX: usize = 4096;

/// The next announcement if it is there already (`Some(None)`: the
/// connection closed), `None` if none is: never waits.
async fn already_there(announced: &mut redis::aio::PubSubStream) -> Option<Option<redis::Msg>> {
    std::future::poll_fn(|cx| {
        match futures_core::Stream::poll_next(std::pin::Pin::new(&mut *announced), cx) {
            std::task::Poll::Ready(message) => std::task::Poll::Ready(Some(message)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        }
    })
    .await
}

/// The reader's own state across connections.
struct Reader {
    shared: Weak<Shared>,
    backend: Arc<Backend>,
    /// Since when reading has failed: the first failed read of this outage
    /// (for a read Redis did not answer, when its answer was due).
    down_since: Option<Instant>,
    /// The task that ends this outage's grace.
    grace: Option<tokio::task::JoinHandle<()>>,
    /// When the streams read here were last watched (see `WATCH`).
    watched: Option<Instant>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(grace) = self.grace.take() {
            grace.abort();
        }
    }
}

/// Reads until the hub is dropped, connecting again after a failure that
/// may have broken the connection, with a jittered backoff that doubles
/// from `RECONNECT_FIRST` to `RECONNECT_MAX` (back to the first after a
/// connection that read and lasted `RECONNECT_MAX`; not doubled by a
/// refused connect, which reached no Redis).
async fn read(shared: Weak<Shared>, backend: Arc<Backend>) {
    let mut reader = Reader {
        shared,
        backend,
        down_since: None,
        grace: None,
        watched: None,
    };
    let mut backoff = RECONNECT_FIRST;
    loop {
        if reader.shared.strong_count() == 0 {
            return;
        }
        match reader.connected().await {
            Ended::HubDropped => return,
            Ended::Failed { error, at, lasted } => {
                if lasted {
                    backoff = RECONNECT_FIRST;
                }
                reader.failed(&error, at);
                tokio::time::sleep(random_between(backoff / 2, backoff)).await;
                // A refused connect reached no Redis: the reader tries
                // again as soon, to find Redis back at once.
                if !error.is_connection_refusal() {
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

enum Ended {
    HubDropped,
    /// The connection failed (or could not be made) with `error`, which
    /// counts from `at`; `lasted`: it read, and lasted `RECONNECT_MAX`.
    Failed {
        error: RedisError,
        at: Instant,
        lasted: bool,
    },
}

impl Reader {
    /// Reading failed with `error`, counting from `at`. The first failure
    /// of an outage starts its grace: once it ends (however the reader is
    /// doing then: waiting for a connect, or between tries), caught-up
    /// subscribers end and new ones are refused, until a read works.
    /// The first failure of an outage, and the end of its grace, are
    /// logged at `warn` (feature `tracing`), with what Redis or its client
    /// said; a refusal is logged at `error`, once per cause (see
    /// `failures`).
    fn failed(&mut self, error: &RedisError, at: Instant) {
        let since = *self.down_since.get_or_insert(at);
        let Some(outage) = self.backend.record.read_failed(error, since) else {
            return;
        };
        #[cfg(feature = "tracing")]
        if !failures::is_refusal(error) {
            tracing::warn!(
                prefix = %self.backend.prefix,
                error = %failures::describe(error),
                "hub: reading from Redis failed; trying again"
            );
        }
        if let Some(grace) = self.grace.take() {
            grace.abort();
        }
        let Some(end) = since.checked_add(self.backend.grace) else {
            // A grace too long to ever end.
            return;
        };
        let (shared, backend) = (self.shared.clone(), Arc::downgrade(&self.backend));
        self.grace = Some(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
            if let (Some(shared), Some(backend)) = (shared.upgrade(), backend.upgrade()) {
                backend.give_up(&shared, outage);
            }
        }));
    }

    /// A read succeeded: an outage, if there was one, is over.
    fn succeeded(&mut self, shared: &Shared) {
        let backend = &self.backend;
        let recovered = backend.record.read(|| {
            if backend.unavailable.swap(false, Ordering::AcqRel) {
                each_topic(shared, |topic| topic.set_unavailable(false));
            }
        });
        if self.down_since.take().is_none() || !recovered {
            return;
        }
        if let Some(grace) = self.grace.take() {
            grace.abort();
        }
        #[cfg(feature = "tracing")]
        tracing::info!(prefix = %backend.prefix, "hub: reading from Redis again");
    }

    /// Subscribes and reads until the subscriptions' connection fails (or
    /// cannot be made). A read that fails (on the command connection, which
    /// `query` mends) leaves the topics to read again: the reader waits,
    /// longer each time up to `RECONNECT_MAX`, and tries again.
    async fn connected(&mut self) -> Ended {
        let backend = self.backend.clone();
        let attempt = Instant::now();
        let pubsub =
            tokio::time::timeout(backend.timeout, backend.pubsub_client().get_async_pubsub())
                .await
                .unwrap_or_else(|_| Err(timed_out()));
        let (mut sink, mut announced) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(error) => {
                return Ended::Failed {
                    error,
                    at: attempt,
                    lasted: false,
                }
            }
        };
        let failed = |error: RedisError, at: Instant, read: bool| Ended::Failed {
            error,
            at,
            lasted: read && attempt.elapsed() >= RECONNECT_MAX,
        };
        // A new connection listens to nothing yet.
        backend.follow_runs_anew();
        if let Some(hub) = self.shared.upgrade() {
            each_topic(&hub, |topic| {
                if let Some(feed) = &topic.feed {
                    feed.listening.store(false, Ordering::Release);
                }
            });
        }
        // Stops of the runs produced here.
        let sent = Instant::now();
        match tokio::time::timeout(backend.timeout, sink.subscribe(backend.stop_channel())).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return failed(error, sent, false),
            Err(_) => return failed(timed_out(), sent, false),
        }
        // Subscribed to on this connection; announcements may have been
        // missed before: every topic subscribed to is read once.
        let mut subscribed: HashSet<Box<str>> = HashSet::new();
        let mut to_read = ToRead::default();
        let mut read = false;
        let mut backoff = RECONNECT_FIRST;
        let mut ping_at = tokio::time::Instant::now();
        let mut resync = true;
        let mut synced_at = Instant::now();
        let mut sealed_at: Option<Instant> = None;
        loop {
            let Some(hub) = self.shared.upgrade() else {
                return Ended::HubDropped;
            };
            // The seal key: at first, then every `SEAL_EVERY` (it may have
            // vanished and been set anew by another hub).
            if sealed_at.map_or(true, |at| at.elapsed() >= SEAL_EVERY) {
                sealed_at = Some(Instant::now());
                backend.renew_seal().await;
            }
            // Subscribe to the topics read here, and no other: looked at
            // when a topic is new here (or back), and every `RESYNC_EVERY`
            // to leave the ones nobody reads here any more (a cost per
            // topic held, so not on every announcement: an announcement of
            // a topic without subscribers here is only a lookup).
            let synced = std::mem::take(&mut resync) || synced_at.elapsed() >= RESYNC_EVERY;
            if synced {
                synced_at = Instant::now();
            }
            let topics = if synced {
                read_topics(&hub)
            } else {
                Vec::new()
            };
            let wanted: HashSet<&str> = topics.iter().map(|(name, _, _)| &**name).collect();
            let new: Vec<Box<str>> = wanted
                .iter()
                .filter(|name| !subscribed.contains(**name))
                .map(|name| Box::from(*name))
                .collect();
            let gone: Vec<Box<str>> = subscribed
                .iter()
                .filter(|name| !wanted.contains(&***name))
                .cloned()
                .collect();
            drop(wanted);
            for (names, subscribe) in [(&new, true), (&gone, false)] {
                if names.is_empty() || !synced {
                    continue;
                }
                let channels: Vec<String> = names.iter().map(|name| backend.key(name)).collect();
                let sent = Instant::now();
                let change = async {
                    if subscribe {
                        sink.subscribe(&channels).await
                    } else {
                        sink.unsubscribe(&channels).await
                    }
                };
                match tokio::time::timeout(backend.timeout, change).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return failed(error, sent, read),
                    Err(_) => return failed(timed_out(), sent, read),
                }
                for (name, topic, _) in &topics {
                    if names.contains(name) {
                        if let Some(feed) = &topic.feed {
                            feed.listening.store(subscribe, Ordering::Release);
                        }
                    }
                }
                if subscribe {
                    subscribed.extend(names.iter().cloned());
                    backend.follow_runs(names, true);
                    // What came before the subscription took hold.
                    for name in names {
                        to_read.topics.entry(name.clone()).or_default().whole = true;
                    }
                    backend.subscribed.notify_waiters();
                } else {
                    for name in names {
                        subscribed.remove(name);
                    }
                    backend.follow_runs(names, false);
                }
            }
            drop(topics);
            // Read the topics announced (or new here).
            if !to_read.topics.is_empty() {
                match self.read_announced(&hub, &mut to_read).await {
                    Ok(()) => {
                        read = true;
                        backoff = RECONNECT_FIRST;
                        self.succeeded(&hub);
                    }
                    Err(error) => {
                        drop(hub);
                        self.failed(&error, Instant::now());
                        tokio::time::sleep(random_between(backoff / 2, backoff)).await;
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                        continue;
                    }
                }
            }
            // Errors are left to the next round.
            if self.watch_due() {
                let topics = read_topics(&hub);
                let _ = self.watch_streams(&topics, false).await;
            }
            drop(hub);
            // Wait for an announcement, a topic new here, the ping, or the
            // next watch.
            let watch_at = self.watched.map_or(ping_at, |watched| {
                tokio::time::Instant::from_std(watched + backend.watch_every())
            });
            match wait(&mut announced, &backend.wake, ping_at.min(watch_at)).await {
                Woke::Announced(None) => {
                    let closed =
                        RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
                    return failed(closed, Instant::now(), read);
                }
                Woke::Announced(Some(message)) => {
                    self.announced(&message, &mut to_read);
                    // Gather what else a burst announces, to read it in one
                    // round: those already there only, without a timer
                    // (waiting for more, even a timer due now, which
                    // tokio fires at its next millisecond tick, delayed
                    // every event by about a millisecond).
                    //
                    // Unconstrained: the stream is a channel, and each poll
                    // spends tokio's budget for the task's turn; a spent
                    // budget answers "nothing there" with hundreds still
                    // waiting, and a reader that fell behind (Redis paused,
                    // a burst) then drained them a small round at a time,
                    // seconds late. Bounded by `GATHER_MAX` instead.
                    for _ in 1..GATHER_MAX {
                        let Some(message) =
                            tokio::task::unconstrained(already_there(&mut announced)).await
                        else {
                            break;
                        };
                        let Some(message) = message else {
                            let closed = RedisError::from(std::io::Error::from(
                                std::io::ErrorKind::ConnectionReset,
                            ));
                            return failed(closed, Instant::now(), read);
                        };
                        self.announced(&message, &mut to_read);
                    }
                }
                Woke::Wake => {
                    resync = true;
                    // Runs that ended without their end read here.
                    for name in backend.take_runs_to_read() {
                        to_read.topics.entry(name).or_default().whole = true;
                    }
                }
                Woke::Due => {}
            }
            // The ping whenever due, whatever woke the reader (one kept busy
            // by announcements still pings).
            if tokio::time::Instant::now() >= ping_at {
                ping_at = tokio::time::Instant::now() + PING_EVERY;
                let sent = Instant::now();
                match tokio::time::timeout(backend.timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return failed(error, sent, read),
                    Err(_) => return failed(timed_out(), sent, read),
                }
                // Reads go through the command connection: that it answers
                // is what reading needs.
                match backend.keep_warm().await {
                    Ok(()) => {
                        if let Some(hub) = self.shared.upgrade() {
                            self.succeeded(&hub);
                        }
                    }
                    Err(error) => self.failed(&error, sent),
                }
            }
        }
    }

    /// Marks the topic a message announces to be read, and notes the
    /// entry's place among the announcements (Redis runs publishes one at
    /// a time and sends their announcements in that order).
    ///
    /// A run's channel (`run:{id}`) announces the topic of its followers
    /// here; this instance's stop channel, the id of a run produced here
    /// that someone asked to stop.
    fn announced(&self, message: &redis::Msg, to_read: &mut ToRead) {
        let Some(channel) = message
            .get_channel_name()
            .strip_prefix(&*self.backend.prefix)
        else {
            return;
        };
        let run_name;
        let mut is_run = false;
        let name = if let Some(name) = channel.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            name
        } else if let Some(run) = channel
            .strip_prefix("run:{")
            .and_then(|run| run.strip_suffix('}'))
        {
            run_name = format!("{}{run}", super::RUN_TOPIC);
            is_run = true;
            &run_name
        } else {
            if message.get_channel_name() == self.backend.stop_channel() {
                let run = String::from_utf8_lossy(message.get_payload_bytes());
                if let Some(hub) = self.shared.upgrade() {
                    hub.runs.stop(&run);
                }
            }
            return;
        };
        // `<id> <prev> <seal> <fields>` (a run's: `<id> <prev> <seal>
        // <end><fields>`, `<end>` 1 for its last event, else 0; a run's
        // lapse or stop: `<id>`); anything else is not an announcement
        // (anyone may publish on the channel).
        let mut parts = message.get_payload_bytes().splitn(4, |&b| b == b' ');
        let Some((id_text, id)) = parts
            .next()
            .and_then(|text| Some((text, StreamId::parse(text)?)))
        else {
            return;
        };
        let place = to_read.noted;
        to_read.noted += 1;
        let announced = match to_read.topics.get_mut(name) {
            Some(announced) => announced,
            None => to_read
                .topics
                .entry(name.into())
                .or_insert_with(|| Announced {
                    places: Vec::new(),
                    entries: Some(Vec::new()),
                    whole: false,
                }),
        };
        announced.places.push((id, place));
        let entry = match (
            parts.next(),
            parts.next(),
            parts.next(),
            self.backend.seal(),
        ) {
            (Some(prev_text), Some(tag), Some(fields), Some(key))
                if seal(
                    &key,
                    message.get_channel_name().as_bytes(),
                    self.backend.db.as_bytes(),
                    id_text,
                    prev_text,
                    fields,
                ) == tag =>
            {
                let (end, fields) = match (is_run, fields.split_first()) {
                    (false, _) => (Some(false), fields),
                    (true, Some((b'0', rest))) => (Some(false), rest),
                    (true, Some((b'1', rest))) => (Some(true), rest),
                    (true, _) => (None, fields),
                };
                StreamId::parse(prev_text)
                    .zip(end)
                    .map(|(prev, end)| LogEntry {
                        id,
                        prev,
                        fields: Some(fields.to_vec()),
                        start: false,
                        end,
                    })
            }
            _ => None,
        };
        match (entry, &mut announced.entries) {
            (Some(entry), Some(entries)) => entries.push(entry),
            _ => announced.entries = None,
        }
    }

    /// Reads every topic of `to_read` that is read here, from its last
    /// entry (see `catch_up_once`), and appends what the topics read in
    /// publish order across them, so that a set's subscription writes the
    /// topics' events in that order: entries not announced (written before
    /// the reader listened) first, by id, then the announced ones in the
    /// order of their announcements. The topics not read yet stay in
    /// `to_read` on failure.
    async fn read_announced(&self, hub: &Shared, to_read: &mut ToRead) -> Result<(), RedisError> {
        let backend = &self.backend;
        let deadline = backend.deadline();
        // Only the topics announced are looked up: no cost per topic held.
        let topics: Vec<(Box<str>, Arc<Topic>, StreamId)> = {
            let held = hub.topics();
            to_read
                .topics
                .keys()
                .filter_map(|name| {
                    let topic = held.map.get(name)?;
                    if topic.subscribers.load(Ordering::Acquire) == 0 {
                        return None;
                    }
                    Some((name.clone(), topic.clone()))
                })
                .collect::<Vec<_>>()
        }
        .into_iter()
        .filter_map(|(name, topic)| {
            let last = topic.last_stream_id()?;
            Some((name, topic, last))
        })
        .collect();
        // Per topic read: the topic, its entries, and their places among
        // the announcements.
        let mut read: Vec<ReadTopic<'_>> = Vec::new();
        let mut slow = Vec::new();
        for (name, topic, last) in &topics {
            let Some(mut announced) = to_read.topics.remove(name) else {
                continue;
            };
            // A run's topic already holds what was announced (appended by
            // its producer here): nothing to read. Only for runs: a topic's
            // stream made anew with lower ids is found by reading it.
            let held = |(id, _): &(StreamId, usize)| id <= last;
            if topic.run && !announced.places.is_empty() && announced.places.iter().all(held) {
                continue;
            }
            // Sealed entries that follow the last one read here, in a row:
            // appended as announced (the publish script read each entry's
            // previous id in the same atomic step), with no round trip.
            // Anything else (a gap, an entry announced twice, one without a
            // seal) reads the stream.
            if let Some(entries) = announced.entries.take() {
                let in_a_row = entries.first().is_some_and(|first| first.prev == *last)
                    && entries.windows(2).all(|pair| pair[1].prev == pair[0].id);
                if in_a_row {
                    read.push((&**topic, entries.into_iter(), announced.places));
                    continue;
                }
            }
            let key = backend.key(name);
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&key)
                .arg(last.to_string())
                .arg("+")
                .arg("COUNT")
                .arg(backend.retention_of(topic).len.saturating_add(1));
            let query = backend.query(&cmd, deadline, Retry::Safe).await;
            let entries = match query {
                Ok(reply) => parse_entries(&reply),
                Err(error) => {
                    // Every topic is read again next round, from its last
                    // entry (what was read here is not appended yet).
                    to_read.topics.insert(name.clone(), announced);
                    for (name, _, _) in &topics {
                        to_read.topics.entry(name.clone()).or_default();
                    }
                    return Err(error);
                }
            };
            if entries.is_empty() || entries.len() > backend.retention_of(topic).len {
                // Lost, or more than one read holds: the slow path, alone.
                slow.push((key, &**topic));
            } else {
                // Read on announcements: up to the newest entry announced
                // that the stream holds. Entries after it have their
                // announcements on the way, and are taken with them, in
                // their order among other topics' entries (appended now,
                // they would come before entries of other topics published
                // earlier); an announced id the stream does not hold is no
                // entry of this database's (forged, or another database's).
                let mut entries = entries;
                if !announced.whole {
                    let held =
                        |id: &StreamId| entries.binary_search_by(|entry| entry.id.cmp(id)).is_ok();
                    let newest = announced
                        .places
                        .iter()
                        .map(|(id, _)| *id)
                        .filter(held)
                        .max()
                        .unwrap_or(*last);
                    entries.retain(|entry| entry.id <= newest);
                }
                read.push((&**topic, entries.into_iter(), announced.places));
            }
        }
        // Announced topics no longer read here.
        to_read.topics.clear();
        to_read.noted = 0;
        // An entry's rank: not announced (written before the reader
        // listened) first, by id; then the announced ones, by place.
        let rank = |places: &[(StreamId, usize)], entry: &LogEntry| match places
            .iter()
            .find(|(id, _)| *id == entry.id)
        {
            Some(&(_, place)) => (1, place, entry.id),
            None => (0, 0, entry.id),
        };
        let now = Instant::now();
        let mut heads: Vec<Option<LogEntry>> = read
            .iter_mut()
            .map(|(_, entries, _)| entries.next())
            .collect();
        while let Some((_, i)) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.as_ref().map(|entry| (rank(&read[i].2, entry), i)))
            .min()
        {
            if let Some(entry) = heads[i].take() {
                let retention = backend.retention_of(read[i].0);
                read[i].0.append(&[entry], false, retention, now);
            }
            heads[i] = read[i].1.next();
        }
        for (key, topic) in slow {
            backend.catch_up_once(&key, topic, deadline).await?;
        }
        Ok(())
    }

    /// Whether the streams read here are due to be watched.
    fn watch_due(&self) -> bool {
        self.watched.map_or(true, |watched| {
            watched.elapsed() >= self.backend.watch_every()
        })
    }

    /// Watches the streams of the topics read here (see `WATCH`), at most
    /// every `watch_every`, or at once with `now`: a blocking read cannot
    /// tell a stream that vanished (or was made anew with lower ids) from
    /// a quiet one, so this is what makes every such loss a gap, within
    /// two rounds, whether or not anything is published since. One round
    /// trip for all the topics, as the read itself. Returns whether a
    /// topic lost entries (it reads from elsewhere now), or why the
    /// script failed.
    async fn watch_streams(
        &mut self,
        topics: &[(Box<str>, Arc<Topic>, StreamId)],
        now: bool,
    ) -> Result<bool, RedisError> {
        let started = Instant::now();
        let backend = &self.backend;
        let due = now
            || self.watched.map_or(true, |watched| {
                started.duration_since(watched) >= backend.watch_every()
            });
        if topics.is_empty() || !due {
            return Ok(false);
        }
        self.watched = Some(started);
        let keys: Vec<String> = topics
            .iter()
            .map(|(name, _, _)| backend.key(name))
            .collect();
        let ttl = backend.start_ttl.to_string();
        // A run's stream lives as long as its run says (an `r` before its
        // id: not renewed).
        let lasts: Vec<String> = topics
            .iter()
            .map(|(_, topic, last)| match topic.run {
                true => format!("r{last}"),
                false => last.to_string(),
            })
            .collect();
        // One call for all of them; on a cluster, one per stream (a script
        // touches keys of one slot only).
        let per_call = if backend.is_cluster() { 1 } else { keys.len() };
        let mut lost = Vec::new();
        for (start, chunk) in (0..keys.len())
            .step_by(per_call.max(1))
            .map(|start| (start, start..(start + per_call).min(keys.len())))
        {
            let call_keys: Vec<&str> = keys[chunk.clone()].iter().map(String::as_str).collect();
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes()];
            args.extend(lasts[chunk].iter().map(String::as_bytes));
            let reply = backend
                .script(
                    (&backend.watch_sha, WATCH),
                    &call_keys,
                    &args,
                    backend.deadline(),
                    Retry::Safe,
                )
                .await?;
            for pair in items(&reply).chunks_exact(2) {
                if let Value::Int(index) = &pair[0] {
                    lost.push((Value::Int(index + start as i64), pair[1].clone()));
                }
            }
        }
        for (index, last) in &lost {
            let index = match index {
                Value::Int(index) => usize::try_from(*index).ok(),
                _ => None,
            };
            let stream_last = as_bytes(last).and_then(StreamId::parse);
            let (Some((name, topic, _)), Some(stream_last)) =
                (index.and_then(|index| topics.get(index)), stream_last)
            else {
                continue;
            };
            let key = backend.key(name);
            backend
                .stream_lost(&key, topic, stream_last, backend.deadline())
                .await;
        }
        Ok(!lost.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::redacted;
    use crate::hub::Hub;

    #[test]
    fn a_redis_password_never_shows_in_debug_output() {
        assert_eq!(
            redacted("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis://app:s3cret@host/0"),
            "redis://app:***@host/0"
        );
        assert_eq!(redacted("rediss://s3cret@host"), "rediss://:***@host");
        assert_eq!(redacted("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redacted("redis://host/a@b"), "redis://host/a@b");
        // A builder, and the error that gives it back, are printed in logs.
        let builder = Hub::builder()
            .redis("redis://app:s3cret@127.0.0.1:6379/0")
            .redis_timeout(Duration::ZERO);
        assert!(!format!("{builder:?}").contains("s3cret"), "{builder:?}");
        let error = builder.build().unwrap_err();
        assert!(!format!("{error:?}").contains("s3cret"), "{error:?}");
    }
}

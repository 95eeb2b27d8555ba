//! Runs on Redis: each run is a stream of its own (`{prefix}run:{id}`),
//! so that every instance serves it, and the instance whose producer
//! writes it holds a lease on it.
//!
//! - Starting a run writes its stream's start entry and the lease
//!   (`…:lease`, the instance's id, expiring after `redis_run_lease`).
//!   Each append renews the lease; a task of its own (`tend`, beside the
//!   reader) renews the leases of the runs that appended nothing for a
//!   third of it.
//! - The run's last event is an entry with a field `e`: after it nothing
//!   is appended (a late append is refused, and its producer stops), the
//!   lease goes, and the stream expires after the run's retention.
//! - Followers on any instance read the run as a topic fed from its
//!   stream (the reader's announcements and reads), whose end entry ends
//!   their subscriptions. A follow loads the run (or what it lacks) and
//!   refuses a run whose stream is gone.
//! - A stop sets `…:stop` and is announced on the channel of the lease's
//!   holder (`{prefix}stop:{instance}`), to which each reader subscribes:
//!   the producer hears it at once; if that message is lost, its next
//!   append or lease renewal sees the key.
//! - A lease that lapsed (the producer's instance was killed, or lost
//!   Redis) leaves a run that nobody ends: an instance whose followers of
//!   a run have read nothing for a third of a lease (it looks every third
//!   of a lease), any follow of it, and a stop of it end it as failed, in
//!   one script that checks the lease first. A running run's stream
//!   expires a lease and the run's retention after its last send or
//!   renewal, so that a run nobody ended goes too.

use std::{
    sync::{atomic::Ordering, Arc, Weak},
    time::Instant,
};

use redis::{RedisError, Value};

use super::{as_bytes, items, parse_entries, timed_out, Backend, Retry};
use crate::{
    event::Event,
    hub::{
        id::StreamId,
        run::lapsed_end,
        topic::{Feed, LogEntry, Topic},
        EventId, HubError, HubErrorKind, Shared, RUN_TOPIC,
    },
};

/// Lua defining `last` (the last entry of the run's stream `KEYS[1]`, nil
/// when there is none) and `ended(entry)` (no entry, or the run's end:
/// the only entry with a field `e`).
macro_rules! run_last {
    () => {
        "
local function ended(entry)
  if not entry then return true end
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'e' then return true end
  end
  return false
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
"
    };
}

/// Starts the run whose stream is `KEYS[1]`: its start entry, its time to
/// live (`ARGV[3]` ms) and the lease `KEYS[2]` held by the instance
/// `ARGV[2]` for `ARGV[1]` ms. Returns 0 if the stream exists (an id drawn
/// twice), else 1.
const START: &str = concat!(
    "
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end",
    start_entry!(),
    "
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
return 1
"
);

/// Appends `ARGV[1]` (an event's encoded fields) to the run `KEYS[1]`
/// with the id of the entry before it, trimmed to about `ARGV[7]` entries,
/// and announces it. With `ARGV[2]` = 1 it is the run's end (field `e`):
/// the stream then expires after `ARGV[3]` ms, and the lease `KEYS[2]` and
/// the stop `KEYS[3]` go; otherwise the lease is the instance `ARGV[5]`'s
/// for `ARGV[4]` ms more, and the stream lives `ARGV[6]` ms more. The
/// announcement carries the entry, sealed as a topic's is (`announce!`:
/// `ARGV[8]` the seal key, `ARGV[9]` the database's number), its fields
/// after the end flag (`1` or `0`). Returns the entry's
/// id, whether a stop was asked (1 or 0) and the id of the entry before
/// it, or nil for a run that ended or is gone.
const APPEND: &str = concat!(
    run_last!(),
    super::announce!(),
    "
if ended(last) then return false end
local id
if ARGV[2] == '1' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*', 'p', last[1], 'd', ARGV[1], 'e', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[2], KEYS[3])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*', 'p', last[1], 'd', ARGV[1])
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
announce(ARGV[8], ARGV[9], id, last[1], ARGV[2] .. ARGV[1])
return {id, redis.call('EXISTS', KEYS[3]), last[1]}
"
);

/// Renews the lease `KEYS[2]` of the run `KEYS[1]` (the instance
/// `ARGV[2]`'s for `ARGV[1]` ms, and the stream's time to live, `ARGV[3]`
/// ms). Returns -1 for a run that ended or is gone (not renewed), else
/// whether a stop was asked (`KEYS[3]`).
const RENEW: &str = concat!(
    run_last!(),
    "
if ended(last) then return -1 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('EXISTS', KEYS[3])
"
);

/// Lua defining `lapse()`, after `run_last!`: ends the run as failed
/// (`ARGV[1]`, the end's encoded fields; the stream then expires after
/// `ARGV[2]` ms) if it has not ended and its lease `KEYS[2]` lapsed.
macro_rules! lapse {
    () => {
        "
local function lapse()
  if ended(last) or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
  local id = redis.call('XADD', KEYS[1], '*', 'p', last[1], 'd', ARGV[1], 'e', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PUBLISH', KEYS[1], id)
  return 1
end
"
    };
}

/// Ends the run `KEYS[1]` as failed if its lease lapsed (see `lapse!`).
/// Returns 1 if it did, 0 if the run runs, 2 if it had ended already, -1
/// if its stream is gone.
const LAPSE: &str = concat!(
    run_last!(),
    lapse!(),
    "
if not last then return -1 end
if ended(last) then return 2 end
return lapse()
"
);

/// Asks the run `KEYS[1]` to stop: sets `KEYS[3]` for `ARGV[3]` ms and
/// announces the run's id `ARGV[5]` on the channel `ARGV[4]` followed by
/// the lease's holder. A run whose lease lapsed has no producer to hear
/// it: it is ended as failed instead (see `lapse!`). Returns 1 if the run
/// runs, else 0.
const STOP: &str = concat!(
    run_last!(),
    lapse!(),
    "
if ended(last) or lapse() == 1 then return 0 end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
local holder = redis.call('GET', KEYS[2])
if holder then redis.call('PUBLISH', ARGV[4] .. holder, ARGV[5]) end
return 1
"
);

/// What a follow reads of the run `KEYS[1]`, after ending it as failed if
/// its lease lapsed (see `lapse!`): its first `ARGV[3]` entries from the
/// id `ARGV[4]` on (`-`: from its start). Nil when the run is gone (or
/// never was). One page: the rest is read with `XRANGE`, so that a long
/// run does not hold Redis for one long script.
const LOAD: &str = concat!(
    run_last!(),
    lapse!(),
    "
if not last then return false end
lapse()
return redis.call('XRANGE', KEYS[1], ARGV[4], '+', 'COUNT', ARGV[3])
"
);

/// The entries a follow reads in one command.
const PAGE: usize = 1_000;

/// The scripts of runs, by hash.
pub(super) struct RunScripts {
    start: String,
    append: String,
    renew: String,
    stop: String,
    lapse: String,
    load: String,
}

impl RunScripts {
    pub(super) fn new() -> Self {
        let hash = |text: &str| redis::Script::new(text).get_hash().to_owned();
        Self {
            start: hash(START),
            append: hash(APPEND),
            renew: hash(RENEW),
            stop: hash(STOP),
            lapse: hash(LAPSE),
            load: hash(LOAD),
        }
    }
}

/// How a stop is asked for: set, and kept this many leases (long enough
/// for a renewal to see it when its message was lost).
const STOP_KEPT_LEASES: u32 = 3;

impl Backend {
    /// The run `run`'s stream (and channel), or with `suffix` its lease
    /// (`:lease`) or stop (`:stop`): hash-tagged by the run's id, so that
    /// a script touches one slot of a cluster.
    pub(super) fn run_key(&self, run: &str, suffix: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + run.len() + 6 + suffix.len());
        key.push_str(&self.prefix);
        key.push_str("run:{");
        key.push_str(run);
        key.push('}');
        key.push_str(suffix);
        key
    }

    /// The three keys of a run: stream, lease, stop.
    fn run_keys(&self, run: &str) -> [String; 3] {
        [
            self.run_key(run, ""),
            self.run_key(run, ":lease"),
            self.run_key(run, ":stop"),
        ]
    }

    /// The channel on which stops of this instance's runs come.
    pub(super) fn stop_channel(&self) -> String {
        let mut channel = self.stop_channel_prefix();
        channel.push_str(&self.instance);
        channel
    }

    fn stop_channel_prefix(&self) -> String {
        format!("{}stop:", self.prefix)
    }

    fn lease_ms(&self) -> String {
        (self.run_lease.as_millis() as u64).max(1).to_string()
    }

    /// How long a running run's stream lives after its last send or
    /// renewal: a lease, then the run's retention (a run whose producer
    /// died, and that nobody followed to end it, is gone then; a follow
    /// before that ends it as failed).
    fn running_ttl_ms(&self) -> String {
        (self.run_lease + self.run_config.retention)
            .as_millis()
            .max(1)
            .to_string()
    }

    fn run_retention_ms(&self) -> String {
        (self.run_config.retention.as_millis() as u64)
            .max(1)
            .to_string()
    }

    /// Runs a script of runs on its run's keys.
    async fn run_script(
        &self,
        (sha, text): (&str, &str),
        run: &str,
        args: &[&[u8]],
        retry: Retry,
    ) -> Result<Value, RedisError> {
        let keys = self.run_keys(run);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.script((sha, text), &keys, args, self.deadline(), retry)
            .await
    }

    pub(super) async fn start_run_log(&self, run: &str) -> Result<(), HubError> {
        let ttl = self.running_ttl_ms();
        let reply = self
            .run_script(
                (&self.run_scripts.start, START),
                run,
                &[
                    self.lease_ms().as_bytes(),
                    self.instance.as_bytes(),
                    ttl.as_bytes(),
                ],
                Retry::Never,
            )
            .await;
        match reply {
            Ok(Value::Int(1)) => Ok(()),
            // An id drawn twice (one chance in 2^128), or not the script's
            // answer.
            Ok(other) => Err(self.unexpected(&other)),
            Err(error) => Err(self.record.failed(super::Call::Publish, &error)),
        }
    }

    /// Appends to the run's stream; with `here` (the run's topic on this
    /// instance, followed here), also to that topic at once, when it holds
    /// the entry before (the run's one producer appends in order): the
    /// follower here needs no read of it (the reader skips an announcement
    /// of what a run's topic holds), and gets it a round trip sooner. The
    /// entry comes from the script's answer, not from pub/sub.
    pub(super) async fn append_run(
        &self,
        run: &str,
        event: Event,
        end: bool,
        here: Option<&Topic>,
    ) -> Result<(EventId, bool), (HubError, Event)> {
        let reply = {
            let fields = event.stored_fields();
            let ttl = self.running_ttl_ms();
            let history = self.run_config.history.to_string();
            let seal = self.seal();
            self.run_script(
                (&self.run_scripts.append, APPEND),
                run,
                &[
                    &fields,
                    if end { b"1" } else { b"0" },
                    self.run_retention_ms().as_bytes(),
                    self.lease_ms().as_bytes(),
                    self.instance.as_bytes(),
                    ttl.as_bytes(),
                    history.as_bytes(),
                    seal.as_deref().unwrap_or_default(),
                    self.db.as_bytes(),
                ],
                Retry::Never,
            )
            .await
        };
        let value = match reply {
            Ok(value) => value,
            Err(error) => return Err((self.record.failed(super::Call::Publish, &error), event)),
        };
        if value == Value::Nil {
            return Err((HubError::new(HubErrorKind::NoSuchRun), event));
        }
        let parsed = match items(&value) {
            [id, Value::Int(stop), prev] => as_bytes(id)
                .and_then(StreamId::parse)
                .zip(as_bytes(prev).and_then(StreamId::parse))
                .map(|(id, prev)| (id, prev, *stop == 1)),
            _ => None,
        };
        let Some((id, prev, stop)) = parsed else {
            return Err((self.unexpected(&value), event));
        };
        self.record.worked(super::Call::Publish);
        if let Some(topic) = here.filter(|topic| topic.last_stream_id() == Some(prev)) {
            let entry = LogEntry {
                id,
                prev,
                fields: Some(event.stored_fields().into_owned()),
                start: false,
                end,
            };
            topic.append(&[entry], false, self.retention_of(topic), Instant::now());
        }
        Ok((id.event_id(), stop))
    }

    pub(super) async fn stop_run_log(&self, run: &str) -> Result<bool, HubError> {
        let kept = (self.run_lease * STOP_KEPT_LEASES).as_millis() as u64;
        let lapsed = lapsed_end();
        let reply = self
            .run_script(
                (&self.run_scripts.stop, STOP),
                run,
                &[
                    &lapsed.stored_fields(),
                    self.run_retention_ms().as_bytes(),
                    kept.max(1).to_string().as_bytes(),
                    self.stop_channel_prefix().as_bytes(),
                    run.as_bytes(),
                ],
                Retry::Safe,
            )
            .await;
        match reply {
            Ok(Value::Int(running)) => Ok(running == 1),
            Ok(other) => Err(self.unexpected(&other)),
            Err(error) => Err(self.record.failed(super::Call::Publish, &error)),
        }
    }

    /// Not an answer the hub's scripts give: not a Redis the hub can use.
    fn unexpected(&self, value: &Value) -> HubError {
        let error = HubError {
            kind: HubErrorKind::Misconfigured,
            detail: Some(format!("unexpected reply {value:?}").into()),
        };
        self.record.failed_with(super::Call::Publish, &error);
        error
    }

    /// Gets a run's topic ready for a follower: the run loaded (or what
    /// this instance lacks of it read), ended as failed first if its
    /// producer's lease lapsed; `NoSuchRun` if its stream is gone.
    pub(super) async fn prepare_run(
        self: &Arc<Self>,
        name: &str,
        topic: &Topic,
        feed: &Feed,
    ) -> Result<(), HubError> {
        let deadline = self.deadline();
        let run = name.strip_prefix(RUN_TOPIC).unwrap_or(name);
        let work = async {
            let _loading = feed.catching_up.lock().await;
            // A run's topic that broke loads the run again (what its
            // stream holds from the start), as a topic new here.
            let primed = feed.primed.initialized() && !topic.reload_run();
            let from = match topic.last_stream_id() {
                Some(last) if primed => last.to_string(),
                _ => "-".to_owned(),
            };
            let page = PAGE.to_string();
            let lapsed = lapsed_end();
            let reply = self
                .run_script(
                    (&self.run_scripts.load, LOAD),
                    run,
                    &[
                        &lapsed.stored_fields(),
                        self.run_retention_ms().as_bytes(),
                        page.as_bytes(),
                        from.as_bytes(),
                    ],
                    Retry::Safe,
                )
                .await
                .map_err(|error| self.record.failed(super::Call::Load, &error))?;
            if reply == Value::Nil {
                return Err(HubError::new(HubErrorKind::NoSuchRun));
            }
            let retention = self.retention_of(topic);
            let mut entries = parse_entries(&reply);
            topic.append(&entries, !primed, retention, Instant::now());
            let _ = feed.primed.set(());
            // The rest, a page at a time.
            while entries.len() >= PAGE {
                let Some(last) = topic.last_stream_id() else {
                    break;
                };
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(self.run_key(run, ""))
                    .arg(format!("({last}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE);
                let reply = self
                    .query(&cmd, deadline, Retry::Safe)
                    .await
                    .map_err(|error| self.record.failed(super::Call::Load, &error))?;
                entries = parse_entries(&reply);
                topic.append(&entries, false, retention, Instant::now());
            }
            let stale = feed.stale.swap(false, Ordering::AcqRel);
            self.record.worked(super::Call::Load);
            if !primed || stale {
                self.wake_reader();
            }
            drop(_loading);
            self.until_listening(feed, deadline).await;
            Ok(())
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(self.record.failed(super::Call::Load, &timed_out())))
    }

    /// The reader subscribed to (`on`) or left the topics `names`; those
    /// of runs are what `tend` looks at.
    pub(super) fn follow_runs(&self, names: &[Box<str>], on: bool) {
        let mut followed = self
            .followed_runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in names.iter().filter(|name| name.starts_with(RUN_TOPIC)) {
            if on {
                followed.entry(name.clone()).or_insert(None);
            } else {
                followed.remove(name);
            }
        }
    }

    /// The reader connected anew: it follows nothing yet.
    pub(super) fn follow_runs_anew(&self) {
        self.followed_runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The runs whose end the reader is to read (see `tend_runs`).
    pub(super) fn take_runs_to_read(&self) -> Vec<Box<str>> {
        std::mem::take(
            &mut *self
                .runs_to_read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// How often runs are tended (`tend_runs`): every third of a lease, at
    /// most every `PING_EVERY`.
    fn tend_every(&self) -> std::time::Duration {
        (self.run_lease / 3).min(super::PING_EVERY)
    }

    /// Renews the leases of the runs produced here that sent nothing for a
    /// third of a lease (raising the stop of those asked to stop, or ended
    /// without their producer), and looks at the runs followed here (not
    /// produced here) that read nothing for a third of a lease, every third
    /// of a lease: one whose lease lapsed is ended as failed (the end comes
    /// back announced), one whose stream is gone ends its followers here
    /// (their reconnect gets `404`), and one that ended without this
    /// instance reading its end (an announcement lost) is given to the
    /// reader to read. Errors are left to the next round.
    async fn tend_runs(&self, hub: &Shared) {
        let now = Instant::now();
        let ttl = self.running_ttl_ms();
        let third = self.run_lease / 3;
        // Sent together (the connection pipelines them): one round trip
        // for many runs, not one each in turn, which let leases lapse once
        // the quiet runs times the round trip passed a lease.
        let lease = self.lease_ms();
        let renewals = hub.runs.to_renew(third, now).into_iter().map(|run| async {
            let reply = self
                .run_script(
                    (&self.run_scripts.renew, RENEW),
                    &run,
                    &[lease.as_bytes(), self.instance.as_bytes(), ttl.as_bytes()],
                    Retry::Safe,
                )
                .await;
            (run, reply)
        });
        for (run, reply) in together(renewals).await {
            if let Ok(Value::Int(-1 | 1)) = reply {
                hub.runs.stop(&run);
            }
        }
        let quiet: Vec<(Box<str>, Arc<Topic>)> = {
            let topics = hub.topics();
            let mut followed = self
                .followed_runs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            followed
                .iter_mut()
                .filter_map(|(name, checked)| {
                    let topic = topics.map.get(&**name)?;
                    let run = name.strip_prefix(RUN_TOPIC).unwrap_or(name);
                    // Its producer renews the lease here.
                    let produced_here = hub.runs.runs_here(run);
                    let quiet = topic.subscribers.load(Ordering::Acquire) > 0
                        && topic.run_quiet_for(now).is_some_and(|quiet| quiet >= third);
                    let due = checked.map_or(true, |at| now.saturating_duration_since(at) >= third);
                    if produced_here || !quiet || !due {
                        return None;
                    }
                    *checked = Some(now);
                    Some((name.clone(), topic.clone()))
                })
                .collect()
        };
        if quiet.is_empty() {
            return;
        }
        let lapsed = lapsed_end();
        let fields = lapsed.stored_fields();
        let retention = self.run_retention_ms();
        let mut to_read = Vec::new();
        let looks = quiet.into_iter().map(|(name, topic)| {
            let (fields, retention) = (&fields, &retention);
            async move {
                let run = name.strip_prefix(RUN_TOPIC).unwrap_or(&name);
                let reply = self
                    .run_script(
                        (&self.run_scripts.lapse, LAPSE),
                        run,
                        &[fields, retention.as_bytes()],
                        Retry::Safe,
                    )
                    .await;
                (name, topic, reply)
            }
        });
        for (name, topic, reply) in together(looks).await {
            match reply {
                // Gone: its followers here end, and learn so when they
                // come back.
                Ok(Value::Int(-1)) => topic.lost_entries(StreamId::ZERO),
                // Ended, and this instance did not read the end.
                Ok(Value::Int(2)) => to_read.push(name),
                _ => {}
            }
        }
        if !to_read.is_empty() {
            self.runs_to_read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(to_read);
            self.wake.notify_one();
        }
    }
}

/// How many of `tend_runs`'s scripts are in flight at once.
const IN_FLIGHT: usize = 64;

/// Runs `futures`, `IN_FLIGHT` at a time, and gives their outputs.
async fn together<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futures = futures.peekable();
    let mut outputs = Vec::new();
    while futures.peek().is_some() {
        let mut batch: Vec<_> = futures
            .by_ref()
            .take(IN_FLIGHT)
            .map(|future| Some(Box::pin(future)))
            .collect();
        let mut done: Vec<Option<F::Output>> = batch.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (slot, output) in batch.iter_mut().zip(done.iter_mut()) {
                if let Some(future) = slot {
                    match future.as_mut().poll(cx) {
                        std::task::Poll::Ready(value) => {
                            *output = Some(value);
                            *slot = None;
                        }
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        outputs.extend(done.into_iter().flatten());
    }
    outputs
}

/// Tends the hub's runs (`Backend::tend_runs`) every `tend_every`, beside
/// the reader (a reader kept busy, or reconnecting, must not let the
/// leases of the runs produced here lapse), until the hub is dropped.
pub(super) async fn tend(shared: Weak<Shared>, backend: Weak<Backend>) {
    let Some(every) = backend.upgrade().map(|backend| backend.tend_every()) else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (Some(hub), Some(backend)) = (shared.upgrade(), backend.upgrade()) else {
            return;
        };
        backend.tend_runs(&hub).await;
    }
}

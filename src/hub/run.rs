//! Runs: a topic with an end, for a long job (a language model's answer,
//! an export, an agent) whose output is streamed, outlives the connection
//! that started it, resumes exactly after a reload, and stops on demand.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use super::{
    id::{self, EventId},
    topic::{Asked, Retention, Topic},
    Hub, HubError, HubErrorKind, PublishError, Subscription,
};
use crate::{event::EventType, jitter::random_u64, Event};

/// The type of the event that ends a run when [`RunEnd`] gives none of its
/// own: its data is JSON, `{"outcome":"completed"}`, `{"outcome":"stopped"}`
/// or `{"outcome":"failed","reason":"…"}`.
pub const RUN_END_EVENT: &str = "run-end";

/// The runs a hub holds, finished ones until their retention ends.
pub(super) struct Runs {
    map: Mutex<RunMap>,
    pub(super) config: RunConfig,
}

struct RunMap {
    runs: HashMap<Box<str>, Arc<RunEntry>>,
    /// When finished runs are next looked at: sweeping on every call would
    /// scan every run under the lock.
    next_sweep: Instant,
}

/// How runs are kept.
#[derive(Clone, Copy, Debug)]
pub(super) struct RunConfig {
    /// Events a run keeps (its whole output, up to this many).
    pub(super) history: usize,
    /// How long a finished run stays resumable.
    pub(super) retention: Duration,
    /// Runs held at once, running and finished.
    pub(super) max: usize,
}

struct RunEntry {
    /// The run's history on the memory hub; `None` with a backend, whose
    /// log holds it (followers on every instance read it as a topic fed
    /// from there).
    topic: Option<Arc<Topic>>,
    stop: StopFlag,
    /// When it finished; `None` while it runs.
    finished: Mutex<Option<Instant>>,
    /// With a backend: when this instance last renewed its lease on the
    /// run (see `Runs::to_renew`); `None` until the run started in the
    /// backend (a renewal before that would find no run, and stop it).
    renewed: Mutex<Option<Instant>>,
}

impl RunEntry {
    fn finished_at(&self) -> Option<Instant> {
        *self.finished.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Runs {
    pub(super) fn new(config: RunConfig) -> Self {
        Self {
            map: Mutex::new(RunMap {
                runs: HashMap::new(),
                next_sweep: Instant::now(),
            }),
            config,
        }
    }

    /// The runs, the finished ones past their retention dropped first
    /// when a sweep is due (at most every `retention / 4`, and at least
    /// every second).
    fn map(&self, now: Instant) -> MutexGuard<'_, RunMap> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= map.next_sweep {
            let retention = self.config.retention;
            map.runs.retain(|_, entry| {
                entry
                    .finished_at()
                    .map_or(true, |at| now.saturating_duration_since(at) < retention)
            });
            let every = (retention / 4).min(Duration::from_secs(1));
            map.next_sweep = now.checked_add(every).unwrap_or(now);
        }
        map
    }

    /// The run, unless it finished longer than its retention ago.
    fn get(&self, id: &str) -> Option<Arc<RunEntry>> {
        let now = Instant::now();
        let entry = self.map(now).runs.get(id).cloned()?;
        let retention = self.config.retention;
        let gone = entry
            .finished_at()
            .is_some_and(|at| now.saturating_duration_since(at) >= retention);
        (!gone).then_some(entry)
    }

    pub(super) fn retention(&self) -> Retention {
        Retention {
            len: self.config.history,
            age: None,
        }
    }

    /// With a backend: the runs produced here whose lease was last renewed
    /// `every` ago or more, marked renewed now.
    #[cfg_attr(not(hub_log), allow(dead_code))]
    pub(super) fn to_renew(&self, every: Duration, now: Instant) -> Vec<Box<str>> {
        let map = self.map(now);
        map.runs
            .iter()
            .filter(|(_, entry)| entry.finished_at().is_none())
            .filter_map(|(id, entry)| {
                let mut renewed = entry.renewed.lock().unwrap_or_else(PoisonError::into_inner);
                if now.saturating_duration_since((*renewed)?) < every {
                    return None;
                }
                *renewed = Some(now);
                Some(id.clone())
            })
            .collect()
    }

    /// Whether the run `id` is produced here and runs.
    #[cfg_attr(not(hub_log), allow(dead_code))]
    pub(super) fn runs_here(&self, id: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.runs
            .get(id)
            .is_some_and(|entry| entry.finished_at().is_none())
    }

    /// Raises the stop of the run `id` if it runs here; whether it does.
    pub(super) fn stop(&self, id: &str) -> bool {
        match self.get(id) {
            Some(entry) if entry.finished_at().is_none() => {
                entry.stop.raise();
                true
            }
            _ => false,
        }
    }
}

/// Whether `id` can be a run's id ([`Run::id`]: 32 lowercase hex digits);
/// anything else is no run, looked up nowhere.
fn is_run_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The last event of a run whose producer's instance stopped renewing its
/// lease (a backend writes it for the producer).
#[cfg_attr(not(hub_log), allow(dead_code))]
pub(super) fn lapsed_end() -> Event {
    RunEnd::failed("the run's producer stopped: its instance ended or lost Redis").into_event()
}

/// Takes a run out of the hub's map unless `started` (a start that failed,
/// or whose future was dropped while the backend answered).
struct Starting<'a> {
    runs: &'a Runs,
    id: &'a str,
    started: bool,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if !self.started {
            self.runs.map(Instant::now()).runs.remove(self.id);
        }
    }
}

impl Hub {
    /// Starts a run: a topic with an end, under a new random id
    /// ([`Run::id`]). The producer appends events with [`Run::send`] and
    /// ends the run with [`Run::finish`]; pages follow it with
    /// [`follow_run`](Hub::follow_run), from its first event or after
    /// their `Last-Event-ID`, and every subscription ends after the run's
    /// last event.
    ///
    /// The run goes on when its last follower leaves (the page may come
    /// back: a reload resumes it); it stops only when the producer finishes
    /// it or someone [stops](Hub::stop_run) it. A finished run stays
    /// resumable for [`run_retention`](super::HubBuilder::run_retention),
    /// then is gone.
    ///
    /// With the Redis backend the run lives in Redis (its own stream), and
    /// every instance serves it: a reload that lands on another instance
    /// resumes it there, and a stop sent to any instance reaches this one.
    /// This instance holds a lease on the run while the producer runs,
    /// renewed by each [`Run::send`] and, while the run sends nothing, every
    /// third of `HubBuilder::redis_run_lease` (feature `redis`); if
    /// the instance ends (killed, or cut from Redis), the lease lapses and
    /// the run ends as failed for every follower (see `docs/runs.md`).
    ///
    /// # Errors
    ///
    /// [`HubErrorKind::TooManyRuns`] when the hub holds
    /// [`max_runs`](super::HubBuilder::max_runs) running runs (with a
    /// backend: runs produced on this instance); with the Redis backend,
    /// also [`HubErrorKind::Unavailable`] and
    /// [`HubErrorKind::Misconfigured`] as for [`Hub::publish`].
    pub async fn start_run(&self) -> Result<Run, HubError> {
        let runs = &self.shared.runs;
        let now = Instant::now();
        let id = format!("{:016x}{:016x}", random_u64(), random_u64());
        let topic = match self.shared.backend {
            Some(_) => None,
            None => {
                let epoch = random_u64() & id::EPOCH_MASK;
                let label = self.shared.config.topic_labels.then_some(id.as_str());
                Some(Arc::new(Topic::new_run(epoch, now, label)))
            }
        };
        let entry = Arc::new(RunEntry {
            topic,
            stop: StopFlag::default(),
            finished: Mutex::new(None),
            renewed: Mutex::new(None),
        });
        {
            let mut map = runs.map(now);
            if map.runs.len() >= runs.config.max {
                // Full: the run that finished first makes room (it is only
                // kept for late reconnects); running runs are never dropped.
                let oldest = map
                    .runs
                    .iter()
                    .filter_map(|(id, entry)| Some((entry.finished_at()?, id.clone())))
                    .min();
                match oldest {
                    Some((_, id)) => {
                        map.runs.remove(&id);
                    }
                    None => return Err(HubError::new(HubErrorKind::TooManyRuns)),
                }
            }
            map.runs.insert(id.as_str().into(), entry.clone());
        }
        let mut starting = Starting {
            runs,
            id: &id,
            started: false,
        };
        if let Some(backend) = &self.shared.backend {
            backend.start_run(&id).await?;
            *entry.renewed.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        starting.started = true;
        drop(starting);
        Ok(Run {
            hub: self.clone(),
            id,
            entry,
            finished: false,
        })
    }

    /// Follows the run `run`, resuming after the client's last event id:
    /// the `Last-Event-ID` header, or, when there is none, the query
    /// parameter `last_event_id` of `uri` (for `fetch`-based clients that
    /// cannot set a header on every retry), read with the same rules (too
    /// long or not an id of this run: a gap event, never an error page).
    /// Without either, from the run's first event.
    ///
    /// The subscription ends after the run's last event. A client that has
    /// seen it gets [`Start::Finished`](super::Start::Finished), answered
    /// `204 No Content` so that `EventSource` stops.
    ///
    /// With the Redis backend, any instance follows any run (one round
    /// trip to load it when it is new here); a run whose producer's lease
    /// lapsed ends as failed when it is followed.
    ///
    /// # Errors
    ///
    /// [`HubErrorKind::NoSuchRun`] (answered `404`) when there is no such
    /// run: never started (on this instance, for the memory hub), or
    /// finished longer than its retention ago; with the Redis backend, as
    /// [`Hub::subscribe`] too.
    pub async fn follow_run(
        &self,
        run: &str,
        headers: &http::HeaderMap,
        uri: &http::Uri,
    ) -> Result<Subscription, HubError> {
        if !is_run_id(run) {
            return Err(HubError::new(HubErrorKind::NoSuchRun));
        }
        let from_query;
        // An empty header (or one of spaces) says nothing: the query may.
        let header = headers
            .get(&crate::LAST_EVENT_ID)
            .filter(|value| value.as_bytes().iter().any(|&byte| byte != b' '));
        let asked = match header {
            Some(value) => Asked::from_bytes(Some(value.as_bytes())),
            None => {
                from_query = query_value(uri.query().unwrap_or(""), "last_event_id");
                Asked::from_bytes(from_query.as_deref())
            }
        };
        if self.shared.backend.is_some() {
            let mut name = String::with_capacity(1 + run.len());
            name.push(super::RUN_TOPIC);
            name.push_str(run);
            let found = self
                .topic_of(&name, Instant::now(), true, true)
                .map_err(HubError::new)?;
            return self.subscribe_found(&name, found, asked).await;
        }
        let Some(topic) = self
            .shared
            .runs
            .get(run)
            .and_then(|entry| entry.topic.clone())
        else {
            return Err(HubError::new(HubErrorKind::NoSuchRun));
        };
        topic.subscribers.fetch_add(1, Ordering::AcqRel);
        self.subscribe_found(run, topic, asked).await
    }

    /// Asks the run `run` to stop: its producer's [`Run::stopped`]
    /// resolves at once, and the producer ends the run (its followers then
    /// see the end it writes, [`RunEnd::stopped`] by default). Returns
    /// whether such a run is running.
    ///
    /// With the Redis backend the stop reaches the producer on whichever
    /// instance it runs (at once over Redis pub/sub; if that message is
    /// lost, at the producer's next send, or within a third of a lease and
    /// a second when the run sends nothing). A run whose producer's lease
    /// lapsed has nobody to stop it: it is ended as failed, and the answer
    /// is `false`.
    ///
    /// # Errors
    ///
    /// With the Redis backend, [`HubErrorKind::Unavailable`] and
    /// [`HubErrorKind::Misconfigured`] as for [`Hub::publish`], for a run
    /// not produced on this instance. The memory hub never fails.
    pub async fn stop_run(&self, run: &str) -> Result<bool, HubError> {
        if !is_run_id(run) {
            return Ok(false);
        }
        if self.shared.runs.stop(run) {
            return Ok(true);
        }
        match &self.shared.backend {
            Some(backend) => backend.stop_run(run).await,
            None => Ok(false),
        }
    }

    /// How many runs the hub holds now, running and finished (with a
    /// backend: the runs produced on this instance that still run).
    pub fn run_count(&self) -> usize {
        self.shared.runs.map(Instant::now()).runs.len()
    }
}

/// The value of `name` in a query string, percent-decoded to bytes (read
/// then as the header's bytes are: not UTF-8 or too long is a gap); `None`
/// when it is missing. A `%` not followed by two hex digits is kept as it
/// is.
fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    let raw = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })?;
    let bytes = raw.as_bytes();
    let hex = |byte: u8| (byte as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte as u8);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The producer's side of a run, from [`Hub::start_run`].
///
/// Dropped without [`finish`](Run::finish) (the producer panicked, or
/// returned early), the run ends as failed, so that no follower waits for
/// an end that never comes.
#[must_use = "a run ends as failed when its producer drops it unfinished"]
pub struct Run {
    hub: Hub,
    id: String,
    entry: Arc<RunEntry>,
    finished: bool,
}

impl Run {
    /// The run's id: give it to the page (in a header of the response
    /// that streams it, say), which follows the run with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends `event` to the run; followers get it at once. The memory
    /// hub never waits; with Redis, this is one round trip.
    ///
    /// # Errors
    ///
    /// [`PublishError`], which gives the event back: [`HubErrorKind::IdSet`]
    /// when it already has an id (the hub gives ids);
    /// [`HubErrorKind::NoSuchRun`] when the run ended without this
    /// producer (with Redis: its lease lapsed, and another instance ended
    /// it as failed; stop the work); with Redis, as [`Hub::publish`].
    pub async fn send(&self, event: Event) -> Result<EventId, PublishError> {
        if event.has_id() {
            return Err(PublishError::new(HubErrorKind::IdSet, event));
        }
        let Some(topic) = &self.entry.topic else {
            return self.append(event, false).await;
        };
        let retention = self.hub.shared.runs.retention();
        topic
            .publish(event, retention, Instant::now())
            .map_err(|event| PublishError::new(HubErrorKind::NoSuchRun, event))
    }

    /// Appends to the run's log in the backend, raising the stop flag if
    /// someone asked for it (or if the run ended without this producer).
    async fn append(&self, event: Event, end: bool) -> Result<EventId, PublishError> {
        let Some(backend) = &self.hub.shared.backend else {
            unreachable!("a run without a topic has a backend");
        };
        let here = self.topic_here();
        match backend
            .run_append(&self.id, event, end, here.as_deref())
            .await
        {
            Ok((id, stop)) => {
                // The append renewed the lease.
                *self
                    .entry
                    .renewed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                if stop {
                    self.entry.stop.raise();
                }
                Ok(id)
            }
            Err((error, event)) => {
                if error.kind() == HubErrorKind::NoSuchRun {
                    self.entry.stop.raise();
                }
                Err(PublishError { error, event })
            }
        }
    }

    /// Whether someone asked the run to stop ([`Hub::stop_run`]).
    pub fn is_stop_requested(&self) -> bool {
        self.entry.stop.is_raised()
    }

    /// Resolves when someone asks the run to stop ([`Hub::stop_run`]):
    /// `select!` on it beside the work, as on `CloseHandle::closed`.
    pub fn stopped(&self) -> Stopped {
        Stopped {
            flag: self.entry.stop.clone(),
        }
    }

    /// How many clients follow the run now (with a backend: on this
    /// instance).
    pub fn followers(&self) -> usize {
        self.entry
            .topic
            .clone()
            .or_else(|| self.topic_here())
            .map_or(0, |topic| topic.subscribers.load(Ordering::Acquire))
    }

    /// With a backend: the run's topic on this instance, if it is followed
    /// here.
    fn topic_here(&self) -> Option<Arc<Topic>> {
        // The name on the stack (one lookup per send, no allocation): the
        // mark, then the id's 32 ASCII hex digits.
        let mut name = [0u8; 33];
        name[0] = super::RUN_TOPIC as u8;
        name[1..].copy_from_slice(self.id.as_bytes().get(..32)?);
        let name = std::str::from_utf8(&name).ok()?;
        self.hub.shared.topics().map.get(name).cloned()
    }

    /// Ends the run with `end`: its last event, after which every
    /// follower's stream ends cleanly. Returns the last event's id.
    ///
    /// # Errors
    ///
    /// [`PublishError`] ([`HubErrorKind::IdSet`]), with the event, when
    /// the end's [event](RunEnd::event) has an id (the hub gives ids); the
    /// run still ends, with the default [`RUN_END_EVENT`] for the same
    /// outcome, so that no follower waits for an end that never comes.
    /// With Redis, as [`Run::send`]: a run whose end could not be written
    /// (Redis unreachable) ends as failed once its lease lapses.
    pub async fn finish(mut self, end: RunEnd) -> Result<EventId, PublishError> {
        match end.event {
            Some(event) if event.has_id() => {
                // The error to give is the id's, whatever the end's fate.
                let _ = self.end(RunEnd::new(end.outcome)).await;
                Err(PublishError::new(HubErrorKind::IdSet, event))
            }
            _ => self.end(end).await,
        }
    }

    /// Marks the run finished here (with a backend: no more lease
    /// renewals), then writes its last event.
    async fn end(&mut self, end: RunEnd) -> Result<EventId, PublishError> {
        if self.entry.topic.is_some() {
            return Ok(self.end_in_memory(end));
        }
        // The lease is renewed until the end is written; dropped before
        // that, the run's drop ends it as failed.
        let written = self.append(end.into_event(), true).await;
        self.finished = true;
        *self
            .entry
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.forget();
        written
    }

    /// `end` on the memory hub, which never waits.
    fn end_in_memory(&mut self, end: RunEnd) -> EventId {
        self.finished = true;
        let Some(topic) = &self.entry.topic else {
            unreachable!("called for a run on the memory hub");
        };
        let retention = self.hub.shared.runs.retention();
        let now = Instant::now();
        *self
            .entry
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now);
        match topic.finish(end.into_event(), retention, now) {
            Ok(id) => id,
            // Only `finish` ends a run, and it takes the run.
            Err(_) => EventId::memory(topic.epoch, 0),
        }
    }

    /// With a backend, takes the run out of the hub's map (its log keeps
    /// it; the map only holds what this instance renews and stops).
    fn forget(&self) {
        let runs = &self.hub.shared.runs;
        runs.map(Instant::now()).runs.remove(self.id.as_str());
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let end = RunEnd::failed("the producer dropped the run unfinished");
        if self.entry.topic.is_some() {
            self.end_in_memory(end);
            return;
        }
        self.finished = true;
        self.forget();
        self.end_later(end);
    }
}

impl Run {
    /// With a backend: writes `end` from a task of its own, if there is a
    /// runtime to run it; else (or if that fails) the lease lapses, and the
    /// run ends as failed then.
    #[cfg(hub_log)]
    fn end_later(&mut self, end: RunEnd) {
        let (Some(backend), Ok(runtime)) = (
            self.hub.shared.backend.clone(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let id = std::mem::take(&mut self.id);
        runtime.spawn(async move {
            let _ = backend.run_append(&id, end.into_event(), true, None).await;
        });
    }

    #[cfg(not(hub_log))]
    fn end_later(&mut self, _end: RunEnd) {}
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("stop_requested", &self.is_stop_requested())
            .finish_non_exhaustive()
    }
}

/// How a run ended: its outcome, and the last event its followers get.
#[derive(Debug)]
#[must_use]
pub struct RunEnd {
    outcome: RunOutcome,
    event: Option<Event>,
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The job finished.
    Completed,
    /// The job failed; why.
    Failed(String),
    /// Someone stopped it.
    Stopped,
}

impl RunEnd {
    /// The job finished.
    pub fn completed() -> Self {
        Self::new(RunOutcome::Completed)
    }

    /// The job failed, for `reason` (sent to the followers: no secrets).
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(RunOutcome::Failed(reason.into()))
    }

    /// Someone stopped it.
    pub fn stopped() -> Self {
        Self::new(RunOutcome::Stopped)
    }

    fn new(outcome: RunOutcome) -> Self {
        Self {
            outcome,
            event: None,
        }
    }

    /// The last event, in the framing the clients expect (for an
    /// OpenAI-compatible stream, `Event::new().data("[DONE]")`), instead of
    /// the default [`RUN_END_EVENT`] with the outcome as JSON. It must have
    /// no id: the hub gives ids.
    pub fn event(mut self, event: Event) -> Self {
        self.event = Some(event);
        self
    }

    /// The outcome.
    pub fn outcome(&self) -> &RunOutcome {
        &self.outcome
    }

    fn into_event(self) -> Event {
        if let Some(event) = self.event {
            return event;
        }
        let mut data = String::from("{\"outcome\":\"");
        match &self.outcome {
            RunOutcome::Completed => data.push_str("completed\"}"),
            RunOutcome::Stopped => data.push_str("stopped\"}"),
            RunOutcome::Failed(reason) => {
                data.push_str("failed\",\"reason\":");
                super::json_string(&mut data, reason);
                data.push('}');
            }
        }
        Event::new()
            .event_type(EventType::from_static(RUN_END_EVENT))
            .data(data)
    }
}

/// Set by [`Hub::stop_run`], awaited by the producer.
#[derive(Clone, Default)]
struct StopFlag(Arc<StopShared>);

#[derive(Default)]
struct StopShared {
    raised: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl StopFlag {
    fn raise(&self) {
        self.0.raised.store(true, Ordering::Release);
        let wakers =
            std::mem::take(&mut *self.0.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in wakers {
            waker.wake();
        }
    }

    fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }
}

/// The future of [`Run::stopped`].
#[must_use = "futures do nothing unless polled"]
pub struct Stopped {
    flag: StopFlag,
}

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.is_raised() {
            return Poll::Ready(());
        }
        let mut wakers = self
            .flag
            .0
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: `raise` takes the wakers after
        // setting the flag.
        if self.flag.is_raised() {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl fmt::Debug for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopped")
            .field("raised", &self.flag.is_raised())
            .finish()
    }
}

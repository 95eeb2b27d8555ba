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
    topic: Arc<Topic>,
    stop: StopFlag,
    /// When it finished; `None` while it runs.
    finished: Mutex<Option<Instant>>,
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

    fn retention(&self) -> Retention {
        Retention {
            len: self.config.history,
            age: None,
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
    /// Runs live on the instance that started them, with the memory
    /// backend and with Redis alike: a reconnect must reach that instance
    /// (runs on Redis across instances are not built yet).
    ///
    /// # Errors
    ///
    /// [`HubErrorKind::TooManyRuns`] when the hub holds
    /// [`max_runs`](super::HubBuilder::max_runs) runs.
    pub fn start_run(&self) -> Result<Run, HubError> {
        let runs = &self.shared.runs;
        let now = Instant::now();
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
        let id = format!("{:016x}{:016x}", random_u64(), random_u64());
        let epoch = random_u64() & id::EPOCH_MASK;
        let label = self.shared.config.topic_labels.then_some(id.as_str());
        let entry = Arc::new(RunEntry {
            topic: Arc::new(Topic::new_run(epoch, now, label)),
            stop: StopFlag::default(),
            finished: Mutex::new(None),
        });
        map.runs.insert(id.as_str().into(), entry.clone());
        drop(map);
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
    /// # Errors
    ///
    /// [`HubErrorKind::NoSuchRun`] (answered `404`) when the hub holds no
    /// such run: never started here, or finished longer than its retention
    /// ago.
    pub fn follow_run(
        &self,
        run: &str,
        headers: &http::HeaderMap,
        uri: &http::Uri,
    ) -> Result<Subscription, HubError> {
        let Some(entry) = self.shared.runs.get(run) else {
            return Err(HubError::new(HubErrorKind::NoSuchRun));
        };
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
        let topic = entry.topic.clone();
        topic.subscribers.fetch_add(1, Ordering::AcqRel);
        let retention = self.shared.runs.retention();
        let (opening, slot) = topic.start(asked, retention, Instant::now());
        let first = self.first_event(&opening, asked);
        Ok(Subscription::new(
            self.shared.clone(),
            topic,
            opening.next,
            opening.how,
            first,
            slot,
        ))
    }

    /// Asks the run `run` to stop: its producer's [`Run::stopped`]
    /// resolves at once, and the producer ends the run (its followers then
    /// see the end it writes, [`RunEnd::stopped`] by default). Returns
    /// whether such a run is running here.
    pub fn stop_run(&self, run: &str) -> bool {
        match self.shared.runs.get(run) {
            Some(entry) if !entry.topic.is_finished() => {
                entry.stop.raise();
                true
            }
            _ => false,
        }
    }

    /// How many runs the hub holds now, running and finished.
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

    /// Appends `event` to the run; followers get it at once. Never waits.
    ///
    /// # Errors
    ///
    /// [`PublishError`] ([`HubErrorKind::IdSet`]), which gives the event
    /// back, when it already has an id: the hub gives ids.
    pub fn send(&self, event: Event) -> Result<EventId, PublishError> {
        if event.has_id() {
            return Err(PublishError::new(HubErrorKind::IdSet, event));
        }
        let retention = self.hub.shared.runs.retention();
        self.entry
            .topic
            .publish(event, retention, Instant::now())
            .map_err(|event| PublishError::new(HubErrorKind::NoSuchRun, event))
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

    /// How many clients follow the run now.
    pub fn followers(&self) -> usize {
        self.entry.topic.subscribers.load(Ordering::Acquire)
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
    pub fn finish(mut self, end: RunEnd) -> Result<EventId, PublishError> {
        match end.event {
            Some(event) if event.has_id() => {
                self.end(RunEnd::new(end.outcome));
                Err(PublishError::new(HubErrorKind::IdSet, event))
            }
            _ => Ok(self.end(end)),
        }
    }

    fn end(&mut self, end: RunEnd) -> EventId {
        self.finished = true;
        let retention = self.hub.shared.runs.retention();
        let event = end.into_event();
        let now = Instant::now();
        *self
            .entry
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now);
        match self.entry.topic.finish(event, retention, now) {
            Ok(id) => id,
            // Only `finish` ends a run, and it takes the run.
            Err(_) => EventId::memory(self.entry.topic.epoch, 0),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.finished {
            self.end(RunEnd::failed("the producer dropped the run unfinished"));
        }
    }
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

//! One topic: its history, which is also the live channel every subscriber
//! reads from, and its counters.
//!
//! A subscriber is only a position in the topic's sequence. Publishing
//! appends to the history and wakes the waiting subscribers; each reads
//! the entries after its position, shared, not copied. A subscriber that
//! fell behind reads what it missed from the history (there is nothing
//! else to read from), and one whose next entry has left the history has
//! lagged. Replay and live are the same read, so there is no seam between
//! them where an event could be lost or repeated.
//!
//! With a backend (`log`), the same history is fed by `append` with the
//! entries read from the topic's log, each with its id there and the id of
//! the entry before it; anything that does not follow what was read before
//! is a break, which every subscriber learns of (see `append`).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

#[cfg(hub_log)]
mod log;
use super::{
    id::{EventId, MAX_LAST_EVENT_ID_LEN},
    GapReason, Start, TopicStats,
};
use crate::{
    event::{recycle, Event},
    metrics::TopicMetrics,
};
#[cfg(hub_log)]
pub(super) use log::{Feed, LogEntry};

/// The first chunk a topic stores its events in; each new chunk doubles,
/// up to `MAX_CHUNK`. Events are copied into shared chunks so that a
/// retained event costs its bytes and one history entry, not an
/// allocation of its own (and a quiet topic holds at most one small chunk
/// of slack).
const FIRST_CHUNK: usize = 512;
const MAX_CHUNK: usize = 4 * 1024;
/// Events larger than this get an allocation of their own, so that no
/// chunk's tail is wasted on them.
const OWN_ALLOCATION: usize = MAX_CHUNK / 4;

/// How many of a topic's last events count as its newest: what a live
/// subscriber reads, not one replaying its history.
const NEWEST: usize = 4;

pub(super) struct Topic {
    pub(super) epoch: u64,
    /// Its metrics handles (feature `metrics`; nothing otherwise).
    metrics: TopicMetrics,
    pub(super) subscribers: AtomicUsize,
    state: Mutex<State>,
    /// What entry times count from.
    born: Instant,
    resumes: AtomicU64,
    replayed: AtomicU64,
    gaps: AtomicU64,
    lagged: AtomicU64,
    /// A run's topic (`Hub::start_run`): a subscriber without an id starts
    /// at the first event, not live, and the run's last event ends every
    /// subscription.
    pub(super) run: bool,
    /// Fed from a backend's log: entries come from the backend's reader,
    /// with their ids there, not from `publish`.
    #[cfg(hub_log)]
    pub(super) feed: Option<Box<Feed>>,
}

struct State {
    /// The sequence number of `history[0]`; when the history is empty, of
    /// the next event.
    first: u64,
    history: VecDeque<Entry>,
    /// The bytes of the events in `history`.
    bytes: usize,
    /// Where the next events are copied; split off event by event.
    chunk: BytesMut,
    chunk_size: usize,
    /// The last publish, or the last subscriber leaving.
    last_active: Instant,
    /// Dropped from the hub: a publish that raced the drop goes to the
    /// topic made in its place.
    evicted: bool,
    /// One slot per subscriber, holding its waker while it waits.
    waiters: Vec<Option<Waker>>,
    /// Slots of subscribers that left, to reuse.
    free: Vec<usize>,
    /// How many slots hold a waker.
    waiting: usize,
    /// Room for the wakers a publish takes out, kept between publishes.
    woken: Vec<Waker>,
    /// A run's topic: the sequence number of its last event, once it
    /// finished.
    end: Option<u64>,
    /// A finished run's history on the memory hub, in one buffer (then
    /// `history` is empty).
    sealed: Option<Sealed>,
    /// Where the history stands in a backend's log.
    #[cfg(hub_log)]
    log: log::LogState,
}

struct Entry {
    bytes: Bytes,
    /// Milliseconds from the topic's birth to its publish.
    at: u64,
    /// Its place among every event appended in this process, for a set's
    /// subscription to write its topics' events in that order.
    order: u64,
}

/// The order stamp of the next entry appended, whatever its topic. Taken
/// under the topic's lock, so a topic's entries are in stamp order, and an
/// entry appended after another one was (on any topic) has a later stamp.
static ORDER: AtomicU64 = AtomicU64::new(0);

fn next_order() -> u64 {
    ORDER.fetch_add(1, Ordering::Relaxed)
}

/// Set in an entry's stored order stamp (never reached by the count) when
/// the event is plain: no type line, and the hub's id line last, so that a
/// set writing it anew finds the lines to leave out without reading it.
const PLAIN: u64 = 1 << 63;

/// An event read from a topic.
pub(super) struct Stored {
    pub(super) bytes: Bytes,
    /// Its order stamp (see `next_order`).
    pub(super) order: u64,
    /// Among the topic's newest (see `NEWEST`).
    pub(super) newest: bool,
    /// Encoded by this hub with no type line: its last line is its id.
    pub(super) plain: bool,
}

/// What a subscriber at a position finds.
pub(super) enum Read {
    Event(Stored),
    /// A finished run that the subscriber has read to its end (its last
    /// event included).
    Finished,
    /// The entry it needs left the history.
    Lagged,
    /// Nothing more to read, and the backend is unreachable.
    #[cfg(hub_log)]
    Unavailable,
}

/// Where a new subscriber starts.
pub(super) struct Opening {
    pub(super) next: u64,
    pub(super) how: Start,
    /// The id of the first event to write (the gap event, or the position
    /// event of a fresh subscriber): the one right before `next`. None for
    /// an exact resume (the browser has its id).
    pub(super) first_id: Option<EventId>,
    /// Set when the gap is a truncated history: how many events were lost.
    pub(super) missed: Option<u64>,
}

/// The `Last-Event-ID` a subscriber came with.
#[derive(Clone, Copy, Debug)]
pub(super) enum Asked<'a> {
    /// None, or an empty one (browsers send none rather than an empty one).
    Nothing,
    Id(&'a str),
    /// Longer than `MAX_LAST_EVENT_ID_LEN`, or not UTF-8: never parsed.
    Unreadable,
}

impl<'a> Asked<'a> {
    pub(super) fn from_bytes(bytes: Option<&'a [u8]>) -> Self {
        match bytes {
            None | Some(b"") => Asked::Nothing,
            Some(bytes) if bytes.len() > MAX_LAST_EVENT_ID_LEN => Asked::Unreadable,
            Some(bytes) => std::str::from_utf8(bytes).map_or(Asked::Unreadable, Asked::Id),
        }
    }
}

/// How long history lasts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Retention {
    pub(super) len: usize,
    pub(super) age: Option<Duration>,
}

impl Topic {
    /// `label`: the topic's name, when the hub labels its metrics by topic.
    /// `backed`: fed from a backend's log (always false without one).
    pub(super) fn new(epoch: u64, now: Instant, label: Option<&str>, backed: bool) -> Self {
        let _ = backed;
        Self {
            epoch,
            metrics: TopicMetrics::new(label),
            subscribers: AtomicUsize::new(0),
            state: Mutex::new(State {
                first: 1,
                history: VecDeque::new(),
                bytes: 0,
                chunk: BytesMut::new(),
                chunk_size: FIRST_CHUNK / 2,
                last_active: now,
                evicted: false,
                waiters: Vec::new(),
                free: Vec::new(),
                waiting: 0,
                woken: Vec::new(),
                end: None,
                sealed: None,
                #[cfg(hub_log)]
                log: log::LogState::default(),
            }),
            born: now,
            resumes: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            run: false,
            #[cfg(hub_log)]
            feed: backed.then(Box::default),
        }
    }

    /// A run's topic: followed from its first event, ended by its last.
    pub(super) fn new_run(epoch: u64, now: Instant, label: Option<&str>) -> Self {
        Self {
            run: true,
            ..Self::new(epoch, now, label, false)
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still holds
        // a consistent history.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.born).as_millis() as u64
    }

    /// Appends `event` with the next id; gives it back if the topic was
    /// dropped from the hub meanwhile.
    pub(super) fn publish(
        &self,
        event: Event,
        retention: Retention,
        now: Instant,
    ) -> Result<EventId, Event> {
        self.push(event, retention, now, false)
    }

    /// Appends a run's last event, which ends every subscription after it;
    /// gives it back if the run already finished.
    pub(super) fn finish(
        &self,
        event: Event,
        retention: Retention,
        now: Instant,
    ) -> Result<EventId, Event> {
        self.push(event, retention, now, true)
    }

    fn push(
        &self,
        event: Event,
        retention: Retention,
        now: Instant,
        last: bool,
    ) -> Result<EventId, Event> {
        let mut state = self.state();
        if state.evicted || state.end.is_some() {
            return Err(event);
        }
        let seq = state.first + state.history.len() as u64;
        if last {
            state.end = Some(seq);
        }
        let id = EventId::memory(self.epoch, seq);
        let mut text = [0; 48];
        let encoding = event.trusted_id(id.write(&mut text)).finish();
        let plain = if encoding.has_type() { 0 } else { PLAIN };
        let bytes = state.store(&encoding.buf);
        recycle(encoding);
        state.bytes += bytes.len();
        let at = self.millis(now);
        state.history.push_back(Entry {
            bytes,
            at,
            order: next_order() | plain,
        });
        state.last_active = now;
        self.trim(&mut state, retention, now);
        if last {
            // Kept only for late followers now: its bytes and 4 B per
            // event, not an entry each.
            state.seal();
        }
        self.metrics.published();
        self.wake(state);
        Ok(id)
    }

    /// Wakes every waiting subscriber.
    fn wake(&self, mut state: MutexGuard<'_, State>) {
        if state.waiting == 0 {
            return;
        }
        // Wake the waiting subscribers outside the lock, so that the first
        // ones woken can read while the rest are being woken.
        let mut woken = std::mem::take(&mut state.woken);
        woken.extend(state.waiters.iter_mut().filter_map(Option::take));
        state.waiting = 0;
        drop(state);
        for waker in woken.drain(..) {
            waker.wake();
        }
        // Keep the room for the next publish, unless subscribers are busy
        // reading (then it is allocated again next time).
        if let Ok(mut state) = self.state.try_lock() {
            if !state.waiters.is_empty() && state.woken.capacity() < woken.capacity() {
                state.woken = woken;
            }
        }
    }

    /// Drops what the retention no longer keeps.
    fn trim(&self, state: &mut State, retention: Retention, now: Instant) {
        let oldest = retention.age.map(|age| {
            let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            self.millis(now).saturating_sub(age)
        });
        while let Some(entry) = state.history.front() {
            let too_many = state.history.len() > retention.len;
            let too_old = oldest.is_some_and(|oldest| entry.at < oldest);
            if !too_many && !too_old {
                break;
            }
            state.bytes -= entry.bytes.len();
            state.history.pop_front();
            state.first += 1;
            #[cfg(hub_log)]
            state.log.dropped_first();
        }
    }

    /// The event at `seq`, or `Lagged` if it left the history; if it is
    /// not published yet, the subscriber in `slot` waits for it (read and
    /// wait under one lock, so no publish falls in between).
    pub(super) fn poll_read(&self, seq: u64, slot: usize, cx: &mut Context<'_>) -> Poll<Read> {
        let mut guard = self.state();
        if seq < guard.first {
            return Poll::Ready(Read::Lagged);
        }
        let index = (seq - guard.first) as usize;
        if let Some((bytes, order)) = guard.entry(index) {
            let newest = index + NEWEST >= guard.retained();
            return Poll::Ready(Read::Event(Stored {
                bytes,
                order: order & !PLAIN,
                newest,
                plain: order & PLAIN != 0,
            }));
        }
        if guard.end.is_some() {
            return Poll::Ready(Read::Finished);
        }
        #[cfg(hub_log)]
        if guard.log.unavailable {
            return Poll::Ready(Read::Unavailable);
        }
        let state = &mut *guard;
        let old = match &mut state.waiters[slot] {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            Some(waker) => Some(std::mem::replace(waker, cx.waker().clone())),
            empty => {
                *empty = Some(cx.waker().clone());
                state.waiting += 1;
                None
            }
        };
        drop(guard);
        // A waker may own a task whose drop takes this topic's lock again.
        drop(old);
        Poll::Pending
    }

    /// Where a subscriber that last saw `asked` starts, counted in the
    /// topic's statistics, and its waiter slot.
    pub(super) fn start(
        &self,
        asked: Asked<'_>,
        retention: Retention,
        now: Instant,
    ) -> (Opening, usize) {
        self.metrics.subscribed();
        let mut state = self.state();
        let slot = match state.free.pop() {
            Some(slot) => slot,
            None => {
                state.waiters.push(None);
                state.waiters.len() - 1
            }
        };
        self.trim(&mut state, retention, now);
        (self.position(&state, asked), slot)
    }

    fn position(&self, state: &State, asked: Asked<'_>) -> Opening {
        #[cfg(hub_log)]
        if self.feed.is_some() {
            return self.log_position(state, asked);
        }
        let retained = state.retained() as u64;
        let next = state.first + retained;
        let before_first = EventId::memory(self.epoch, state.first - 1);
        let asked = match asked {
            // A run is followed from its first event.
            Asked::Nothing if self.run && state.first == 1 => return self.exact(1, retained),
            Asked::Nothing if self.run => {
                let missed = state.first - 1;
                return self.gap(
                    state,
                    GapReason::HistoryTruncated,
                    Some(missed),
                    before_first,
                );
            }
            Asked::Nothing => return fresh(next, EventId::memory(self.epoch, next - 1)),
            Asked::Unreadable => {
                return self.gap(state, GapReason::UnknownId, None, before_first);
            }
            Asked::Id(asked) => asked,
        };
        match EventId::parse(asked) {
            Some(id) if id.epoch != self.epoch => {
                self.gap(state, GapReason::Restarted, None, before_first)
            }
            // A finished run read to its end: nothing left.
            Some(id) if state.end == Some(id.seq) => Opening {
                next,
                how: Start::Finished,
                first_id: None,
                missed: None,
            },
            Some(id) if id.seq >= next => self.gap(state, GapReason::UnknownId, None, before_first),
            Some(id) if id.seq + 1 >= state.first => self.exact(id.seq + 1, next - 1 - id.seq),
            Some(id) => {
                let missed = state.first - 1 - id.seq;
                self.gap(
                    state,
                    GapReason::HistoryTruncated,
                    Some(missed),
                    before_first,
                )
            }
            None => self.gap(state, GapReason::UnknownId, None, before_first),
        }
    }

    /// A start after a gap: the gap event (with `id`, the one right before
    /// the history), then the whole history; counted.
    fn gap(&self, state: &State, reason: GapReason, missed: Option<u64>, id: EventId) -> Opening {
        let retained = state.retained() as u64;
        self.gaps.fetch_add(1, Ordering::Relaxed);
        self.replayed.fetch_add(retained, Ordering::Relaxed);
        self.metrics.gap(reason.index());
        self.metrics.replayed(retained);
        Opening {
            next: state.first,
            how: Start::Gap {
                reason,
                replayed: retained,
            },
            first_id: Some(id),
            missed,
        }
    }

    /// An exact resume at `next`, replaying `replayed` events; counted.
    fn exact(&self, next: u64, replayed: u64) -> Opening {
        self.resumes.fetch_add(1, Ordering::Relaxed);
        self.replayed.fetch_add(replayed, Ordering::Relaxed);
        self.metrics.replayed(replayed);
        Opening {
            next,
            how: Start::Exact { replayed },
            first_id: None,
            missed: None,
        }
    }

    /// A subscriber counted by the hub that will not subscribe after all.
    pub(super) fn abandon(&self, now: Instant) {
        if self.subscribers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state().last_active = now;
        }
    }

    /// Whether the topic is fed from a backend's log (its ids are the
    /// log's).
    pub(super) fn is_fed(&self) -> bool {
        #[cfg(hub_log)]
        return self.feed.is_some();
        #[cfg(not(hub_log))]
        false
    }

    /// One more subscriber after none: a topic fed from a log was not read
    /// meanwhile, and is caught up before the subscriber starts.
    pub(super) fn resubscribed(&self) {
        #[cfg(hub_log)]
        if let Some(feed) = &self.feed {
            feed.stale.store(true, Ordering::Release);
        }
    }

    pub(super) fn lagged(&self) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
        self.metrics.lagged();
    }

    /// A subscriber left: its slot is free, and if it was the last one,
    /// the idle clock starts now.
    pub(super) fn leave(&self, slot: usize, now: Instant) {
        let mut state = self.state();
        let waker = state.waiters[slot].take();
        if waker.is_some() {
            state.waiting -= 1;
        }
        state.free.push(slot);
        if state.free.len() == state.waiters.len() {
            // Nobody left: give the slots' memory back.
            state.waiters = Vec::new();
            state.free = Vec::new();
            state.woken = Vec::new();
        }
        if self.subscribers.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.last_active = now;
        }
        self.metrics.left();
        drop(state);
        // Dropped unlocked, as in `poll_read`.
        drop(waker);
    }

    /// Marks the topic dropped if nobody subscribes and nothing was
    /// published for `idle`, or, with `unpublished`, if nobody subscribes
    /// and nothing was ever published (a topic only a subscriber made).
    /// Called with the hub's topic map locked, so no subscriber can arrive
    /// meanwhile.
    pub(super) fn evict_if_idle(&self, idle: Duration, now: Instant, unpublished: bool) -> bool {
        if self.subscribers.load(Ordering::Acquire) > 0 {
            return false;
        }
        let mut state = self.state();
        let never_published = state.first == 1 && state.retained() == 0;
        let idle_long = now.saturating_duration_since(state.last_active) >= idle;
        let droppable = idle_long || (unpublished && never_published);
        if !droppable {
            return false;
        }
        state.evicted = true;
        true
    }

    /// Waiter slots held, and room kept for waking: memory per subscriber
    /// that must go when they do.
    #[cfg(test)]
    pub(super) fn slot_memory(&self) -> (usize, usize) {
        let state = self.state();
        (state.waiters.capacity(), state.woken.capacity())
    }

    pub(super) fn stats(&self) -> TopicStats {
        let state = self.state();
        TopicStats {
            subscribers: self.subscribers.load(Ordering::Relaxed),
            published: state.first - 1 + state.retained() as u64,
            history_len: state.retained(),
            history_bytes: state.bytes,
            resumes: self.resumes.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
        }
    }
}

/// A finished run's events in one buffer.
struct Sealed {
    bytes: Bytes,
    /// Where each event ends in `bytes`.
    ends: Box<[u32]>,
    /// The order stamp of the last event (a run is in no set, whose
    /// subscriptions are what reads stamps).
    order: u64,
}

impl State {
    /// How many events the history holds.
    fn retained(&self) -> usize {
        self.sealed
            .as_ref()
            .map_or(self.history.len(), |sealed| sealed.ends.len())
    }

    /// The `index`-th event of the history, and its order stamp.
    fn entry(&self, index: usize) -> Option<(Bytes, u64)> {
        let Some(sealed) = &self.sealed else {
            let entry = self.history.get(index)?;
            return Some((entry.bytes.clone(), entry.order));
        };
        let end = *sealed.ends.get(index)? as usize;
        let start = index
            .checked_sub(1)
            .map_or(0, |before| sealed.ends[before] as usize);
        Some((sealed.bytes.slice(start..end), sealed.order))
    }

    /// Moves the history into one buffer of its exact size (unless it is
    /// larger than 4 GiB), freeing the entries and the chunks.
    fn seal(&mut self) {
        if self.sealed.is_some() || u32::try_from(self.bytes).is_err() {
            return;
        }
        let mut bytes = BytesMut::with_capacity(self.bytes);
        let mut ends = Vec::with_capacity(self.history.len());
        let mut order = 0;
        for entry in self.history.drain(..) {
            bytes.extend_from_slice(&entry.bytes);
            ends.push(bytes.len() as u32);
            order = entry.order & !PLAIN;
        }
        self.history = VecDeque::new();
        self.chunk = BytesMut::new();
        self.sealed = Some(Sealed {
            bytes: bytes.freeze(),
            ends: ends.into_boxed_slice(),
            order,
        });
    }

    /// Copies an encoded event into the current chunk (a new one when it
    /// does not fit) and returns it, sharing the chunk.
    fn store(&mut self, encoded: &[u8]) -> Bytes {
        self.store_parts(&[encoded])
    }

    /// `store` for an event in parts, copied one after the other.
    fn store_parts(&mut self, parts: &[&[u8]]) -> Bytes {
        let len = parts.iter().map(|part| part.len()).sum();
        if len > OWN_ALLOCATION {
            let mut own = BytesMut::with_capacity(len);
            parts.iter().for_each(|part| own.extend_from_slice(part));
            return own.freeze();
        }
        if self.chunk.capacity() - self.chunk.len() < len {
            self.chunk_size = (self.chunk_size * 2).min(MAX_CHUNK);
            self.chunk = BytesMut::with_capacity(self.chunk_size);
        }
        parts
            .iter()
            .for_each(|part| self.chunk.extend_from_slice(part));
        self.chunk.split().freeze()
    }
}

/// The start of a subscriber without an id: live events only, after the
/// position event with `id`.
fn fresh(next: u64, id: EventId) -> Opening {
    Opening {
        next,
        how: Start::Fresh,
        first_id: Some(id),
        missed: None,
    }
}

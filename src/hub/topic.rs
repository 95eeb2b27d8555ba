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

use super::{
    id::{EventId, MAX_LAST_EVENT_ID_LEN},
    GapReason, Resume, TopicStats,
};
use crate::{
    event::{recycle, Event},
    metrics::TopicMetrics,
};

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
}

struct Entry {
    bytes: Bytes,
    /// Milliseconds from the topic's birth to its publish.
    at: u64,
}

/// What a subscriber at a position finds.
pub(super) enum Read {
    Event(Bytes),
    /// The entry it needs left the history.
    Lagged,
}

/// Where a new subscriber starts.
pub(super) struct Start {
    pub(super) next: u64,
    pub(super) resume: Resume,
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
    pub(super) fn new(epoch: u64, now: Instant, label: Option<&str>) -> Self {
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
            }),
            born: now,
            resumes: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
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
        let mut state = self.state();
        if state.evicted {
            return Err(event);
        }
        let id = EventId {
            epoch: self.epoch,
            seq: state.first + state.history.len() as u64,
        };
        let mut text = [0; 40];
        let encoding = event.trusted_id(id.write(&mut text)).finish();
        let bytes = state.store(&encoding.buf);
        recycle(encoding);
        state.bytes += bytes.len();
        let at = self.millis(now);
        state.history.push_back(Entry { bytes, at });
        state.last_active = now;
        self.trim(&mut state, retention, now);
        self.metrics.published();
        if state.waiting == 0 {
            return Ok(id);
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
        Ok(id)
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
        if let Some(entry) = guard.history.get((seq - guard.first) as usize) {
            return Poll::Ready(Read::Event(entry.bytes.clone()));
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
    ) -> (Start, usize) {
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

    fn position(&self, state: &State, asked: Asked<'_>) -> Start {
        let retained = state.history.len() as u64;
        let next = state.first + retained;
        let gap = |reason: GapReason, missed| {
            self.gaps.fetch_add(1, Ordering::Relaxed);
            self.replayed.fetch_add(retained, Ordering::Relaxed);
            self.metrics.gap(reason.index());
            self.metrics.replayed(retained);
            Start {
                next: state.first,
                resume: Resume::Gap {
                    reason,
                    replayed: retained,
                },
                first_id: Some(EventId {
                    epoch: self.epoch,
                    seq: state.first - 1,
                }),
                missed,
            }
        };
        let asked = match asked {
            Asked::Nothing => {
                return Start {
                    next,
                    resume: Resume::Fresh,
                    first_id: Some(EventId {
                        epoch: self.epoch,
                        seq: next - 1,
                    }),
                    missed: None,
                }
            }
            Asked::Unreadable => return gap(GapReason::UnknownId, None),
            Asked::Id(asked) => asked,
        };
        match EventId::parse(asked) {
            Some(id) if id.epoch != self.epoch => gap(GapReason::Restarted, None),
            Some(id) if id.seq >= next => gap(GapReason::UnknownId, None),
            Some(id) if id.seq + 1 >= state.first => {
                let replayed = next - 1 - id.seq;
                self.resumes.fetch_add(1, Ordering::Relaxed);
                self.replayed.fetch_add(replayed, Ordering::Relaxed);
                self.metrics.replayed(replayed);
                Start {
                    next: id.seq + 1,
                    resume: Resume::Exact { replayed },
                    first_id: None,
                    missed: None,
                }
            }
            Some(id) => {
                let missed = state.first - 1 - id.seq;
                gap(GapReason::HistoryTruncated, Some(missed))
            }
            None => gap(GapReason::UnknownId, None),
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
        let never_published = state.first == 1 && state.history.is_empty();
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
            published: state.first - 1 + state.history.len() as u64,
            history_len: state.history.len(),
            history_bytes: state.bytes,
            resumes: self.resumes.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
        }
    }
}

impl State {
    /// Copies an encoded event into the current chunk (a new one when it
    /// does not fit) and returns it, sharing the chunk.
    fn store(&mut self, encoded: &[u8]) -> Bytes {
        if encoded.len() > OWN_ALLOCATION {
            return Bytes::copy_from_slice(encoded);
        }
        if self.chunk.capacity() - self.chunk.len() < encoded.len() {
            self.chunk_size = (self.chunk_size * 2).min(MAX_CHUNK);
            self.chunk = BytesMut::with_capacity(self.chunk_size);
        }
        self.chunk.extend_from_slice(encoded);
        self.chunk.split().freeze()
    }
}

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
use crate::event::{recycle, Event};

/// The first chunk a topic stores its events in; each new chunk doubles,
/// up to `MAX_CHUNK`. Events are copied into shared chunks so that a
/// retained event costs its bytes and one history entry, not an
/// allocation of its own (and a quiet topic holds at most one small chunk
/// of slack).
const FIRST_CHUNK: usize = 1024;
const MAX_CHUNK: usize = 16 * 1024;

pub(super) struct Topic {
    pub(super) epoch: u64,
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
    /// The id the gap event carries: the one right before `next`.
    pub(super) gap_id: Option<EventId>,
    /// Set when the gap is a truncated history: how many events were lost.
    pub(super) missed: Option<u64>,
}

/// How long history lasts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Retention {
    pub(super) len: usize,
    pub(super) age: Option<Duration>,
}

impl Topic {
    pub(super) fn new(epoch: u64, now: Instant) -> Self {
        Self {
            epoch,
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
        let mut state = self.state();
        if state.woken.capacity() < woken.capacity() {
            state.woken = woken;
        }
        Ok(id)
    }

    /// Drops what the retention no longer keeps.
    fn trim(&self, state: &mut State, retention: Retention, now: Instant) {
        let oldest = retention
            .age
            .map(|age| self.millis(now).saturating_sub(age.as_millis() as u64));
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
        let mut state = self.state();
        if seq < state.first {
            return Poll::Ready(Read::Lagged);
        }
        if let Some(entry) = state.history.get((seq - state.first) as usize) {
            return Poll::Ready(Read::Event(entry.bytes.clone()));
        }
        let state = &mut *state;
        match &mut state.waiters[slot] {
            Some(waker) => waker.clone_from(cx.waker()),
            empty => {
                *empty = Some(cx.waker().clone());
                state.waiting += 1;
            }
        }
        Poll::Pending
    }

    /// Where a subscriber that last saw `asked` starts, counted in the
    /// topic's statistics, and its waiter slot.
    pub(super) fn start(
        &self,
        asked: Option<&str>,
        retention: Retention,
        now: Instant,
    ) -> (Start, usize) {
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

    fn position(&self, state: &State, asked: Option<&str>) -> Start {
        let retained = state.history.len() as u64;
        let next = state.first + retained;
        let gap = |reason, missed| {
            self.gaps.fetch_add(1, Ordering::Relaxed);
            self.replayed.fetch_add(retained, Ordering::Relaxed);
            Start {
                next: state.first,
                resume: Resume::Gap {
                    reason,
                    replayed: retained,
                },
                gap_id: Some(EventId {
                    epoch: self.epoch,
                    seq: state.first - 1,
                }),
                missed,
            }
        };
        let asked = match asked {
            // Browsers send no header rather than an empty one.
            None | Some("") => {
                return Start {
                    next,
                    resume: Resume::Fresh,
                    gap_id: None,
                    missed: None,
                }
            }
            Some(asked) if asked.len() > MAX_LAST_EVENT_ID_LEN => {
                return gap(GapReason::UnknownId, None)
            }
            Some(asked) => asked,
        };
        match EventId::parse(asked) {
            Some(id) if id.epoch != self.epoch => gap(GapReason::Restarted, None),
            Some(id) if id.seq >= next => gap(GapReason::UnknownId, None),
            Some(id) if id.seq + 1 >= state.first => {
                let replayed = next - 1 - id.seq;
                self.resumes.fetch_add(1, Ordering::Relaxed);
                self.replayed.fetch_add(replayed, Ordering::Relaxed);
                Start {
                    next: id.seq + 1,
                    resume: Resume::Exact { replayed },
                    gap_id: None,
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
    }

    /// A subscriber left: its slot is free, and if it was the last one,
    /// the idle clock starts now.
    pub(super) fn leave(&self, slot: usize, now: Instant) {
        let mut state = self.state();
        if state.waiters[slot].take().is_some() {
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
    }

    /// Marks the topic dropped if nobody subscribes and nothing was
    /// published for `idle`. Called with the hub's topic map locked, so no
    /// subscriber can arrive meanwhile.
    pub(super) fn evict_if_idle(&self, idle: Duration, now: Instant) -> bool {
        if self.subscribers.load(Ordering::Acquire) > 0 {
            return false;
        }
        let mut state = self.state();
        if now.saturating_duration_since(state.last_active) < idle {
            return false;
        }
        state.evicted = true;
        true
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
        if self.chunk.capacity() - self.chunk.len() < encoded.len() {
            self.chunk_size = (self.chunk_size * 2).min(MAX_CHUNK);
            self.chunk = BytesMut::with_capacity(self.chunk_size.max(encoded.len()));
        }
        self.chunk.extend_from_slice(encoded);
        self.chunk.split().freeze()
    }
}

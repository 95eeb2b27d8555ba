//! What a topic fed from a backend's log keeps beside its history: each
//! entry's id in the log, where the history starts in it, and whether the
//! backend can be read; and how a `Last-Event-ID` (an id of the log) is
//! found in it. Only a backend calls what is here (`append`, `lost_entries`,
//! `set_unavailable`); the memory hub never does.

use std::{collections::VecDeque, sync::atomic::AtomicBool, time::Instant};

use super::{fresh, Asked, Entry, Opening, Retention, State, Topic};
use crate::hub::{id::StreamId, GapReason};

/// One entry of a topic's log, as a backend read it.
pub(in crate::hub) struct LogEntry {
    pub(in crate::hub) id: StreamId,
    /// The id of the entry before it when it was added (`0-0`: none).
    pub(in crate::hub) prev: StreamId,
    /// The event's encoded fields, each line ending with LF, without the
    /// `id:` line and the blank line; `None` for an entry the hub did not
    /// write (it has no previous id or no event), which the topic takes as
    /// a break, and for a start entry.
    pub(in crate::hub) fields: Option<Vec<u8>>,
    /// The start entry of a life of the log (no event).
    pub(in crate::hub) start: bool,
    /// A run's last event: nothing follows it.
    pub(in crate::hub) end: bool,
}

/// How a backend loads a topic: once at first, and again after a time
/// without subscribers on this instance (when its reader stops reading it).
#[derive(Default)]
pub(in crate::hub) struct Feed {
    /// Set once the history was loaded from the log.
    pub(in crate::hub) primed: tokio::sync::OnceCell<()>,
    /// The reader stopped reading the topic (it had no subscriber here):
    /// set by the subscriber that makes the count 1 again, under the hub's
    /// topic map lock, before any other can be counted; that subscriber, or
    /// the first to take `catching_up`, catches the topic up, the others
    /// wait for it.
    pub(in crate::hub) stale: AtomicBool,
    pub(in crate::hub) catching_up: tokio::sync::Mutex<()>,
    /// The backend's reader is subscribed to the topic's announcements
    /// (new entries reach it as they are written).
    pub(in crate::hub) listening: AtomicBool,
}

/// Where a topic's history stands in its log.
#[derive(Default)]
pub(super) struct LogState {
    /// The log id of each entry of `history`.
    ids: VecDeque<StreamId>,
    /// The log id right before `history[0]` (the last entry dropped, or the
    /// previous id the first entry recorded).
    base: StreamId,
    /// The id of the last entry read from the log; `None` until the topic
    /// is primed.
    last: Option<StreamId>,
    /// The id of the start entry of the log's current life (written before
    /// its first event, or by its first subscriber), once read: an older id
    /// is from an earlier life of the log.
    stream_start: Option<StreamId>,
    /// The backend's reader has been failing for longer than its grace:
    /// caught-up subscribers end, new ones are refused.
    pub(super) unavailable: bool,
    /// A run's topic: the log id of the run's last event, once read.
    end: Option<StreamId>,
    /// The history started anew after a break in the log (see
    /// `restart_at`): a run's topic then loads the run again.
    broke: bool,
}

impl LogState {
    /// The history dropped its first entry.
    pub(super) fn dropped_first(&mut self) {
        if let Some(id) = self.ids.pop_front() {
            self.base = id;
        }
    }
}

impl Topic {
    /// `position` for a topic fed from a log: ids are the log's, looked up
    /// in the history; the entry before the history is `base`.
    pub(super) fn log_position(&self, state: &State, asked: Asked<'_>) -> Opening {
        let retained = state.history.len() as u64;
        let next = state.first + retained;
        let base = state.log.base;
        let last = state.log.ids.back().copied().unwrap_or(base);
        let before_first = base.event_id();
        let asked = match asked {
            // A run is followed from its first event: its history starts at
            // the log's start entry unless it was trimmed.
            Asked::Nothing if self.run && state.log.stream_start == Some(base) => {
                return self.exact(state.first, retained)
            }
            Asked::Nothing if self.run => {
                return self.gap(state, GapReason::HistoryTruncated, None, before_first)
            }
            Asked::Nothing => return fresh(next, last.event_id()),
            Asked::Unreadable => {
                return self.gap(state, GapReason::UnknownId, None, before_first);
            }
            Asked::Id(asked) => asked,
        };
        let Some(id) = StreamId::parse(asked.as_bytes()) else {
            return self.gap(state, GapReason::UnknownId, None, before_first);
        };
        if state.log.end == Some(id) {
            // A finished run read to its end: nothing left.
            return Opening {
                next,
                how: crate::hub::Start::Finished,
                first_id: None,
                missed: None,
            };
        }
        if id == base {
            return self.exact(state.first, retained);
        }
        // From before the stream's first entry, or the stream is empty (it
        // expired, or Redis lost it): an earlier life of the stream.
        let earlier =
            state.log.stream_start.is_some_and(|start| id < start) || last == StreamId::ZERO;
        if earlier {
            return self.gap(state, GapReason::Restarted, None, before_first);
        }
        if id > last {
            return self.gap(state, GapReason::UnknownId, None, before_first);
        }
        if id < base {
            return self.gap(state, GapReason::HistoryTruncated, None, before_first);
        }
        match state.log.ids.binary_search(&id) {
            Ok(index) => self.exact(state.first + index as u64 + 1, retained - index as u64 - 1),
            // Before the stream's very first entry: from an earlier life of
            // the stream.
            Err(0) if base == StreamId::ZERO => {
                self.gap(state, GapReason::Restarted, None, before_first)
            }
            // Between two entries: never an id of this stream.
            Err(_) => self.gap(state, GapReason::UnknownId, None, before_first),
        }
    }

    /// The id of the last entry read from Redis, once primed.
    pub(in crate::hub) fn last_stream_id(&self) -> Option<StreamId> {
        self.state().log.last
    }

    /// Appends entries read from Redis, in stream order, skipping those
    /// already held. With `prime`, they are the stream's latest entries and
    /// the topic had none (ignored if it was primed meanwhile).
    ///
    /// An entry whose previous id is not the last one held follows a break:
    /// Redis dropped entries this topic never read (trimmed before the
    /// reader got to them, or lost in a restart without persistence). The
    /// history then starts anew at that entry, one sequence number further,
    /// so that every subscriber, even one that had read everything, lags:
    /// its stream ends with a `retry:`, and the reconnect gets a gap event.
    pub(in crate::hub) fn append(
        &self,
        entries: &[LogEntry],
        prime: bool,
        retention: Retention,
        now: Instant,
    ) {
        let mut state = self.state();
        if state.evicted {
            return;
        }
        if prime {
            if state.log.last.is_some() {
                return;
            }
            let first = entries.first().map_or(StreamId::ZERO, |entry| entry.prev);
            state.log.base = first;
            state.log.last = Some(first);
        }
        let Some(mut last) = state.log.last else {
            return;
        };
        let mut added = 0u64;
        let mut broke = false;
        for entry in entries {
            if entry.id <= last {
                continue;
            }
            if entry.start {
                // The first entry of a new life of the stream: a break if
                // anything came before it.
                if last != StreamId::ZERO || !state.history.is_empty() {
                    state.restart_at(entry.id);
                    broke = true;
                }
                state.log.base = entry.id;
                state.log.stream_start = Some(entry.id);
                last = entry.id;
                continue;
            }
            let Some(fields) = &entry.fields else {
                // Not the hub's: read past it, as a break.
                state.restart_at(entry.id);
                state.log.stream_start = None;
                last = entry.id;
                broke = true;
                continue;
            };
            if entry.prev != last {
                state.restart_at(entry.prev);
                broke = true;
            }
            let mut text = [0; 48];
            let id = entry.id.event_id();
            let bytes = state.store_parts(&[fields, b"id: ", id.write(&mut text), b"\n\n"]);
            state.bytes += bytes.len();
            let at = self.millis(now);
            state.history.push_back(Entry {
                bytes,
                at,
                order: super::next_order(),
            });
            state.log.ids.push_back(entry.id);
            last = entry.id;
            added += 1;
            if entry.end && self.run {
                // Read past it as past any entry, but nothing follows it.
                state.end = Some(state.first + state.history.len() as u64 - 1);
                state.log.end = Some(entry.id);
            }
        }
        state.log.last = Some(last);
        if added == 0 && !broke {
            return;
        }
        state.last_active = now;
        self.trim(&mut state, retention, now);
        for _ in 0..added {
            self.metrics.published();
        }
        self.wake(state);
    }

    /// Redis holds less than this topic read (its stream's last entry is
    /// `stream_last`, older than the last one read; `0-0`: the stream is
    /// gone): entries were lost, in a restart without persistence, or with
    /// the key (`DEL`, its expiry, an eviction), maybe with entries this
    /// instance never read. The history starts anew, and every subscriber
    /// lags (see `append`).
    pub(in crate::hub) fn lost_entries(&self, stream_last: StreamId) {
        let mut state = self.state();
        if state.log.last.map_or(true, |last| stream_last >= last) {
            return;
        }
        state.restart_at(stream_last);
        state.log.last = Some(stream_last);
        state.log.stream_start = None;
        self.wake(state);
    }

    /// A run's topic whose history started anew after a break (entries
    /// Redis lost, or deleted by hand) holds only what came after it,
    /// while the run's stream may hold what came before (a restart from an
    /// older snapshot, a failover to a replica behind): forgets all it
    /// read, so that the follow loads the run again from its start.
    /// Returns whether it did; its subscribers lag (they reconnect).
    pub(in crate::hub) fn reload_run(&self) -> bool {
        if !self.run {
            return false;
        }
        let mut state = self.state();
        if !state.log.broke {
            return false;
        }
        let held = state.history.len() as u64;
        state.first += held + 1;
        state.history.clear();
        state.bytes = 0;
        state.end = None;
        state.log = LogState {
            unavailable: state.log.unavailable,
            ..LogState::default()
        };
        self.wake(state);
        true
    }

    /// A run's topic that has not ended: how long since anything was read
    /// into it (or since its last subscriber here left).
    pub(in crate::hub) fn run_quiet_for(&self, now: Instant) -> Option<std::time::Duration> {
        if !self.run {
            return None;
        }
        let state = self.state();
        if state.end.is_some() {
            return None;
        }
        Some(now.saturating_duration_since(state.last_active))
    }

    /// Marks the topic's backend reachable or not; when it is not,
    /// subscribers that read everything end.
    pub(in crate::hub) fn set_unavailable(&self, unavailable: bool) {
        let mut state = self.state();
        state.log.unavailable = unavailable;
        if unavailable {
            self.wake(state);
        }
    }
}

impl State {
    /// Starts the history anew after a break in the stream, at the entry
    /// after `base`, one sequence number further, so that every
    /// subscriber's next event has left the history: each lags, ending with
    /// a `retry:`, and its reconnect gets a gap event.
    fn restart_at(&mut self, base: StreamId) {
        let held = self.history.len() as u64;
        self.first += held + 1;
        self.history.clear();
        self.log.ids.clear();
        self.bytes = 0;
        self.log.base = base;
        self.log.broke = true;
    }
}

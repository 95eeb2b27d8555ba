use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_core::Stream;
use http::Response;

use super::{
    set::{Next, SetStream},
    topic::{Read, Topic},
    Shared,
};
use crate::{
    body::{EarlyEnd, EndSignal},
    event::{retry_event, EncodedEvent},
    jitter::random_between,
    EventStream,
};

/// How a subscription started: what the `Last-Event-ID` it was given let
/// the hub do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// No id (or an empty one): live events only, after a
    /// [`POSITION_EVENT`](super::POSITION_EVENT) whose id is the topic's
    /// current position (the browser sends it back if it reconnects before
    /// the first live event).
    Fresh,
    /// The id was in the history: the events after it are replayed, then
    /// live ones follow, none lost and none twice. A run followed without
    /// an id starts here too, from its first event.
    Exact {
        /// How many events the replay sends.
        replayed: u64,
    },
    /// Events after the id cannot all be sent: the stream starts with a
    /// gap event, then replays the whole history, then goes live.
    Gap {
        /// Why.
        reason: GapReason,
        /// How many events the replay sends after the gap event.
        replayed: u64,
    },
    /// A finished run (`Hub::follow_run`) whose every event the client
    /// has seen: nothing to send. The response is `204 No Content`, so
    /// `EventSource` stops reconnecting.
    Finished,
}

/// Why a subscription could not resume exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GapReason {
    /// The events after the id have left the topic's history (too many
    /// since, or too old).
    HistoryTruncated,
    /// The id means nothing here: not in the hub's form, longer than
    /// [`MAX_LAST_EVENT_ID_LEN`](super::MAX_LAST_EVENT_ID_LEN), not UTF-8
    /// (read with `Hub::subscribe_from_headers`), or beyond the last event
    /// this topic published.
    UnknownId,
    /// The id is in the hub's form but from another epoch: an earlier life
    /// of the topic (the process restarted, or the topic was dropped while
    /// idle and made again), or another topic; the hub cannot tell these
    /// apart.
    Restarted,
}

impl GapReason {
    /// Its place among the gap counters of a topic's metrics.
    pub(super) fn index(self) -> usize {
        match self {
            GapReason::HistoryTruncated => 0,
            GapReason::UnknownId => 1,
            GapReason::Restarted => 2,
        }
    }

    /// The name the gap event's data gives: `history-truncated`,
    /// `unknown-id` or `restarted`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::HistoryTruncated => "history-truncated",
            GapReason::UnknownId => "unknown-id",
            GapReason::Restarted => "restarted",
        }
    }
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subscriber's stream of a topic's events: a `Stream` of
/// [`EncodedEvent`]s that [`EventStream::new`] takes as it is.
///
/// It writes, in order: the gap event if there is a gap, the replayed
/// events, then live events as they are published. If the client reads
/// so slowly that its next event leaves the topic's history, it writes a
/// `retry:` (jittered) and ends, so the browser reconnects with its
/// `Last-Event-ID` and gets a gap event; behind `CloseLayer` the reason is
/// `CloseReason::Lagged` when the response came from
/// [`into_http_response`](Subscription::into_http_response). It holds no events of
/// its own: only its place in the topic.
#[must_use = "a subscription does nothing unless its stream is read"]
pub struct Subscription {
    shared: Arc<Shared>,
    feed: Feed,
    resume: Start,
    /// Set once the stream wrote its final `retry:`.
    ended: Option<EarlyEnd>,
    lag: Option<EndSignal>,
}

/// What a subscription reads.
enum Feed {
    /// One topic (`Hub::subscribe`).
    One {
        topic: Arc<Topic>,
        /// The sequence number of the next event to write.
        next: u64,
        /// The gap event or the position event, written first (boxed: the
        /// field stays for the subscription's life, the event only until
        /// it is written).
        first: Option<Box<EncodedEvent>>,
        /// Its waiter slot in the topic.
        slot: usize,
    },
    /// A set of topics (`Hub::subscribe_set`).
    Set(Box<SetStream>),
}

impl Subscription {
    pub(super) fn new(
        shared: Arc<Shared>,
        topic: Arc<Topic>,
        next: u64,
        resume: Start,
        first: Option<EncodedEvent>,
        slot: usize,
    ) -> Self {
        Self {
            shared,
            feed: Feed::One {
                topic,
                next,
                first: first.map(Box::new),
                slot,
            },
            resume,
            ended: None,
            lag: None,
        }
    }

    pub(super) fn set(shared: Arc<Shared>, set: SetStream) -> Self {
        let starts: Vec<Start> = set.members().iter().map(|m| m.start).collect();
        Self {
            shared,
            feed: Feed::Set(Box::new(set)),
            resume: overall(&starts),
            ended: None,
            lag: None,
        }
    }

    /// How the subscription started. For a set of topics
    /// ([`Hub::subscribe_set`](super::Hub::subscribe_set)), all of them
    /// together: [`Start::Gap`] (with the first gap's reason) if any topic
    /// has a gap, [`Start::Fresh`] if every topic starts fresh, otherwise
    /// [`Start::Exact`]; `replayed` counts every topic's replay. Each
    /// topic's own start is in [`how_each_started`](Subscription::how_each_started).
    pub fn how_it_started(&self) -> Start {
        self.resume
    }

    /// How each topic of a set started, in the set's order; empty for a
    /// subscription to one topic ([`Hub::subscribe`](super::Hub::subscribe)),
    /// whose start is [`how_it_started`](Subscription::how_it_started).
    pub fn how_each_started(&self) -> impl ExactSizeIterator<Item = (&str, Start)> + '_ {
        let members = match &self.feed {
            Feed::Set(set) => set.members(),
            Feed::One { .. } => &[],
        };
        members.iter().map(|member| (member.name(), member.start))
    }

    /// Why the stream ended early, if it did: [`EarlyEnd::Lagged`] when
    /// the client fell behind the history, [`EarlyEnd::Unavailable`] when
    /// (with the Redis backend) Redis stayed unreachable past its grace.
    /// The stream has then written its final `retry:` and ends. A
    /// subscription merged with other streams into one response cannot end
    /// that response by itself; check [`EndSignal::get`] there (from
    /// [`end_signal`](Subscription::end_signal)), or put the subscription
    /// last (chained after other events, as the demo does), so that its end
    /// ends the response.
    pub fn early_end(&self) -> Option<EarlyEnd> {
        self.ended
    }

    /// The event-stream response for this subscription, marked with its
    /// [`EndSignal`] so that `CloseLayer` reports `CloseReason::Lagged` or
    /// `CloseReason::Unavailable` when it ends early.
    ///
    /// With the `axum` feature, `Subscription` is also an `IntoResponse`
    /// that gives this response, as axum's type.
    ///
    /// A finished run with nothing left to send ([`Start::Finished`])
    /// answers `204 No Content` instead, so that `EventSource` stops.
    pub fn into_http_response(mut self) -> Response<EventStream<Subscription>> {
        let finished = self.resume == Start::Finished;
        let signal = self.end_signal();
        let mut response = EventStream::new(self).into_http_response();
        if finished {
            *response.status_mut() = http::StatusCode::NO_CONTENT;
            response.headers_mut().remove(http::header::CONTENT_TYPE);
        }
        signal.mark(&mut response);
        response
    }

    /// The subscription's [`EndSignal`], for a response built around it by
    /// other means (the subscription chained after a first event, say):
    /// [`mark`](EndSignal::mark) that response with it so that `CloseLayer`
    /// reports why the stream ended early.
    pub fn end_signal(&mut self) -> EndSignal {
        let signal = self.lag.get_or_insert_with(EndSignal::default);
        if let Some(why) = self.ended {
            signal.set(why);
        }
        signal.clone()
    }
}

impl Stream for Subscription {
    type Item = EncodedEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EncodedEvent>> {
        let this = self.get_mut();
        if this.ended.is_some() {
            return Poll::Ready(None);
        }
        let (topic, next, slot) = match &mut this.feed {
            Feed::One {
                topic,
                next,
                first,
                slot,
            } => {
                if let Some(first) = first.take() {
                    return Poll::Ready(Some(*first));
                }
                (topic, next, *slot)
            }
            Feed::Set(set) => {
                return match set.poll_next(cx) {
                    Poll::Ready(Next::Event(event)) => Poll::Ready(Some(event)),
                    Poll::Ready(Next::Lagged) => Poll::Ready(Some(this.end(EarlyEnd::Lagged))),
                    #[cfg(hub_log)]
                    Poll::Ready(Next::Unavailable) => {
                        Poll::Ready(Some(this.end(EarlyEnd::Unavailable)))
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        match topic.poll_read(*next, slot, cx) {
            Poll::Ready(Read::Event(stored)) => {
                *next += 1;
                Poll::Ready(Some(EncodedEvent::from_encoded(stored.bytes)))
            }
            Poll::Ready(Read::Finished) => Poll::Ready(None),
            Poll::Ready(Read::Lagged) => {
                topic.lagged();
                Poll::Ready(Some(this.end(EarlyEnd::Lagged)))
            }
            #[cfg(hub_log)]
            Poll::Ready(Read::Unavailable) => Poll::Ready(Some(this.end(EarlyEnd::Unavailable))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Subscription {
    /// Ends the stream for `why`: the final `retry:` to write.
    fn end(&mut self, why: EarlyEnd) -> EncodedEvent {
        self.ended = Some(why);
        if let Some(lag) = &self.lag {
            lag.set(why);
        }
        let (min, max) = self.shared.config.reconnect_delay;
        retry_event(random_between(min, max)).encode()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        match &mut self.feed {
            Feed::One { topic, slot, .. } => topic.leave(*slot, Instant::now()),
            Feed::Set(set) => set.leave(&self.shared, Instant::now()),
        }
    }
}

/// A set's start, all topics together (see `how_it_started`).
fn overall(starts: &[Start]) -> Start {
    let replayed = starts
        .iter()
        .map(|start| match start {
            Start::Exact { replayed } | Start::Gap { replayed, .. } => *replayed,
            Start::Fresh | Start::Finished => 0,
        })
        .sum();
    let gap = starts.iter().find_map(|start| match start {
        Start::Gap { reason, .. } => Some(*reason),
        _ => None,
    });
    match gap {
        Some(reason) => Start::Gap { reason, replayed },
        None if starts.iter().all(|start| *start == Start::Fresh) => Start::Fresh,
        None => Start::Exact { replayed },
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics = match &self.feed {
            Feed::One { .. } => 1,
            Feed::Set(set) => set.members().len(),
        };
        f.debug_struct("Subscription")
            .field("topics", &topics)
            .field("resume", &self.resume)
            .field("ended", &self.ended.is_some())
            .finish_non_exhaustive()
    }
}

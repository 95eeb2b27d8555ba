//! [`EventStream`]: a `Stream` of events as an [`http_body::Body`].
//!
//! # Example
//!
//! ```
//! use futures_util::stream;
//! use http_body_util::BodyExt;
//! use tower_sse::{Event, EventStream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let events = stream::iter(vec![
//!     Event::new().data("one"),
//!     Event::new().data("two"),
//! ]);
//! let response = EventStream::new(events).into_http_response();
//! assert_eq!(response.headers()["content-type"], "text/event-stream");
//!
//! // Both events were ready at once, so they were written as one frame.
//! let mut body = response.into_body();
//! let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
//! assert_eq!(&frame[..], b"data: one\n\ndata: two\n\n");
//! assert!(body.frame().await.is_none());
//! # }
//! ```

use std::{
    convert::Infallible,
    fmt,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use crate::event::{EncodedEvent, Encoding, Event};

/// The default [`EventStream::max_frame_size`]: 16 KiB.
///
/// Measured with the load harness (`BENCHMARKS.md`): against 64 KiB, a
/// client that stops reading holds 117 KB of server memory instead of 472 KB
/// (hyper queues several frames for it), one connection's burst arrives 2.6
/// times faster (the first bytes do not wait for 64 KiB of events), for
/// about 10 % more CPU per event. Smaller caps cost more CPU per event
/// (every frame passes through each layer and hyper's chunked encoding).
const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024;

/// The most room reserved for a joined frame up front; a larger
/// `max_frame_size` grows the buffer as events arrive.
const MAX_RESERVE: usize = 256 * 1024;

/// An [`http_body::Body`] that writes a [`Stream`] of events as an event
/// stream.
///
/// The stream's items are [`Event`]s, [`EncodedEvent`]s (encode once, send to
/// many), or `Result`s of either; an `Err` item ends the body with that error
/// after every event before it was written. A panic in the stream goes on
/// the same way, after the events before it. A server drops what it has
/// not yet written when a body fails (hyper's HTTP/1 buffer, the HTTP/2
/// frames a reset clears), so the body waits one turn of the connection
/// before an error or panic that comes right behind events, which is
/// enough for HTTP/1.1 when the socket takes what hyper holds. Behind
/// `CloseLayer` (or `SseLayer`, feature `layers`) nothing is lost on any
/// version: the layer ends a failed event stream cleanly after everything
/// it wrote, and reports `CloseReason::Error`.
///
/// When several events are ready at once they are written as one frame, up to
/// [`max_frame_size`](EventStream::max_frame_size) bytes, so a burst costs one
/// write instead of one per event. An event that is ready alone is written at
/// once, never held back waiting for more.
/// Right after the stream was waiting (`Pending`), the event it was woken
/// for is written alone and the stream is not asked for more at once; any
/// events that arrived with it are joined from the next poll on.
///
/// While a burst lasts (frames cut at the cap), the stream keeps the rest of
/// its frame buffer for the next frame, and each event's own buffer, once
/// copied into a frame, is reused by the next event built on the same
/// thread; a stream that has run out of ready events holds no buffer.
///
/// With [`max_unwritten`](EventStream::max_unwritten) set, the stream is
/// not asked for more events while the server holds that many bytes of its
/// frames unwritten (once it has written one), so a client that stops
/// reading holds a bounded amount of server memory however fast the stream
/// could produce.
///
/// The struct names `S: Stream` in its definition (unlike the layers'
/// types) because it holds back an error that arrives behind ready events
/// until those events are written, and that error's type comes from the
/// stream.
#[pin_project]
#[must_use]
pub struct EventStream<S>
where
    S: Stream,
    S::Item: StreamItem,
{
    #[pin]
    stream: S,
    max_frame_size: usize,
    state: State<<S::Item as StreamItem>::Error>,
    /// The rest of the last joined frame's buffer, kept while a burst lasts.
    spare: BytesMut,
    /// The last poll returned `Pending`: this one was woken for an event.
    woken: bool,
    /// A frame was returned since the last `Pending`: hyper may still hold
    /// it unwritten, so an error or panic waits one turn (see `yield_once`).
    unflushed: bool,
    max_unwritten: usize,
    /// The bytes of this stream's counted frames that the server still
    /// holds; made with the first counted frame, let go when none is held.
    unwritten: Option<Arc<Unwritten>>,
    /// The consumer has dropped a frame of this stream: kept here when
    /// `unwritten` is let go, so a live stream stays bounded across the
    /// idle turns between its events.
    writing: bool,
    /// The last poll, at the bound before the consumer was seen writing,
    /// waited one turn.
    yielded: bool,
}

/// What the server holds of a stream's frames: each counted frame adds its
/// length when it is made and takes it off when the server drops it, and
/// wakes the stream when that brings the count under the limit.
///
/// The bound holds only once the consumer has dropped a frame (`writing`):
/// a server does so once the operating system has taken a whole frame,
/// while a consumer that keeps what it reads (`collect()`) never drops
/// any, and waiting for it would wait for good. Before that, the stream at
/// the bound waits one turn (woken at once) before each frame, so that a
/// server writes what it holds (hyper's HTTP/1 connection takes up to 16
/// frames before it writes any) and is seen writing.
///
/// Orderings: a drop sets `writing` before it takes its bytes off `bytes`
/// (a read-modify-write with release), so whoever reads `bytes` as 0 with
/// acquire (the idle let-go) also sees `writing`. A plain store to `bytes`
/// would break that.
struct Unwritten {
    bytes: AtomicUsize,
    /// The bound, at least 1 (a bound of 0 waits while any byte is held).
    limit: AtomicUsize,
    /// A frame of this stream was dropped (here, or before this count).
    writing: AtomicBool,
    waiter: Mutex<Option<Waker>>,
}

impl Unwritten {
    /// `writing`: a count let go before this one saw a frame dropped.
    fn new(limit: usize, writing: bool) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            writing: AtomicBool::new(writing),
            waiter: Mutex::new(None),
        }
    }

    fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    fn writing(&self) -> bool {
        self.writing.load(Ordering::Relaxed)
    }

    /// Whether the stream must wait; if so, `cx` is woken once a frame is
    /// dropped and the count falls under the limit, or at once for one
    /// turn while the consumer was not seen writing (`yielded` tells
    /// whether the last call did that).
    fn must_wait(&self, cx: &Context<'_>, yielded: &mut bool) -> bool {
        if self.bytes.load(Ordering::Acquire) < self.limit() {
            *yielded = false;
            return false;
        }
        if !self.writing() {
            *yielded = !*yielded;
            if *yielded {
                cx.waker().wake_by_ref();
            }
            return *yielded;
        }
        *lock(&self.waiter) = Some(cx.waker().clone());
        // A frame dropped between the load and the store found no waiter:
        // look again now that the waker is in place.
        self.bytes.load(Ordering::Acquire) >= self.limit()
    }

    fn is_empty(&self) -> bool {
        self.bytes.load(Ordering::Acquire) == 0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A frame the server holds, counted in its stream's [`Unwritten`].
struct CountedFrame {
    data: Bytes,
    unwritten: Arc<Unwritten>,
}

impl CountedFrame {
    fn frame(data: Bytes, unwritten: &Arc<Unwritten>) -> Bytes {
        unwritten.bytes.fetch_add(data.len(), Ordering::AcqRel);
        Bytes::from_owner(Self {
            data,
            unwritten: unwritten.clone(),
        })
    }
}

impl AsRef<[u8]> for CountedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for CountedFrame {
    fn drop(&mut self) {
        let unwritten = &self.unwritten;
        let limit = unwritten.limit();
        if !unwritten.writing() {
            unwritten.writing.store(true, Ordering::Relaxed);
        }
        let before = unwritten.bytes.fetch_sub(self.data.len(), Ordering::AcqRel);
        if before >= limit && before - self.data.len() < limit {
            // Woken with the lock released: a waker may poll at once.
            let waiter = lock(&unwritten.waiter).take();
            if let Some(waker) = waiter {
                waker.wake();
            }
        }
    }
}

enum State<E> {
    Streaming,
    /// The stream returned this error behind events that were written first.
    Failed(E),
    /// The stream panicked behind events that were written first (in a
    /// `Mutex` only so that the body stays `Sync`; boxed, as it is rare,
    /// so that every body is 16 bytes smaller).
    Panicked(Box<std::sync::Mutex<Payload>>),
    Done,
}

impl<S> EventStream<S>
where
    S: Stream,
    S::Item: StreamItem,
{
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            state: State::Streaming,
            spare: BytesMut::new(),
            woken: false,
            unflushed: false,
            max_unwritten: usize::MAX,
            unwritten: None,
            writing: false,
            yielded: false,
        }
    }

    /// Caps how many bytes of ready events are joined into one frame. A
    /// single event larger than the cap is still written whole, in one
    /// frame; `0` writes every event in a frame of its own.
    ///
    /// Default: 16 KiB.
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max;
        self
    }

    /// Stops asking the stream for events while the server holds `max` bytes
    /// or more of this stream's frames unwritten, and goes on once it has
    /// written them: this bounds the memory a client that stops reading
    /// holds to about `max` plus one frame, besides the connection's own
    /// buffers, and the stream feels the back-pressure (a channel fills, a
    /// hub subscription falls behind its history and lags). `0` lets one
    /// frame be held at a time.
    ///
    /// Every frame counts until the server drops it (which costs a small
    /// allocation per frame, with the bound set). hyper's HTTP/1
    /// connection over a TCP stream and its HTTP/2 connections keep a
    /// frame until it is written; over an I/O type without vectored writes
    /// (many TLS streams), hyper's HTTP/1 connection copies frames into its
    /// own buffer at once, which its `max_buf_size` bounds instead.
    ///
    /// The bound holds once the consumer has dropped one of the stream's
    /// frames, which a server does once the operating system has taken a
    /// whole frame. Until then the stream, at the bound, waits one turn
    /// before each frame (it wakes itself at once), so a consumer that keeps
    /// the frames it reads (`BodyExt::collect`, `axum::body::to_bytes` in a
    /// test) reads the whole body. A consumer that drops a frame and then
    /// keeps the rest is taken for a client that stopped reading. A client
    /// that stops before the connection has taken a whole frame (its first
    /// frame larger than what the socket's buffers accept) is held only by
    /// the server's own buffers.
    ///
    /// Cost: a fast reader's burst is written in writes of about `max`
    /// bytes instead of hyper's batches of 16 frames, which costs CPU per
    /// event (16-21 % with 32 or 64 KiB in `BENCHMARKS.md`, "The setters
    /// inlined"). Where the server is hyper and its builder is in reach,
    /// hyper's `max_buf_size` bounds a stalled client as well at no
    /// measured cost.
    ///
    /// Default: no bound (what hyper holds for a stalled client: about
    /// 117 KB with 16 KiB frames, measured in `BENCHMARKS.md`).
    pub fn max_unwritten(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.max_unwritten = max;
        if let Some(unwritten) = &self.unwritten {
            unwritten.limit.store(max, Ordering::Relaxed);
        }
        self
    }

    /// A `200 OK` response with `Content-Type: text/event-stream` and this
    /// body.
    pub fn into_http_response(self) -> Response<Self> {
        let mut response = Response::new(self);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TEXT_EVENT_STREAM),
        );
        response
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Takes the wrapped stream back.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S> Body for EventStream<S>
where
    S: Stream,
    S::Item: StreamItem,
{
    type Data = Bytes;
    type Error = <S::Item as StreamItem>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match std::mem::replace(this.state, State::Streaming) {
            State::Streaming => {}
            failed @ (State::Failed(_) | State::Panicked(_)) if *this.unflushed => {
                *this.state = failed;
                return yield_once(this.unflushed, cx);
            }
            State::Failed(error) => {
                *this.state = State::Done;
                return Poll::Ready(Some(Err(error)));
            }
            State::Panicked(payload) => {
                *this.state = State::Done;
                resume_unwind(*payload);
            }
            State::Done => {
                *this.state = State::Done;
                return Poll::Ready(None);
            }
        }

        if let Some(unwritten) = this.unwritten.as_ref() {
            if unwritten.must_wait(cx, this.yielded) {
                // Not a wait for events: the next event is joined as usual.
                *this.unflushed = false;
                return Poll::Pending;
            }
        }

        let first = match poll_next(this.stream.as_mut(), cx) {
            Ok(Poll::Pending) => {
                *this.woken = true;
                *this.unflushed = false;
                // Nothing of this stream is held: let the count go, so an
                // idle stream holds no more than it did before its burst.
                if let Some(unwritten) = this.unwritten.as_ref().filter(|u| u.is_empty()) {
                    *this.writing |= unwritten.writing();
                    *this.unwritten = None;
                }
                // The burst is over: an idle stream holds no buffer.
                if this.spare.capacity() > 0 {
                    *this.spare = BytesMut::new();
                }
                return Poll::Pending;
            }
            Ok(Poll::Ready(None)) => {
                *this.state = State::Done;
                return Poll::Ready(None);
            }
            Ok(Poll::Ready(Some(item))) => match item.into_chunk() {
                Ok(chunk) => chunk.0,
                Err(error) => {
                    *this.state = State::Failed(error);
                    return fail_after_flush(this.state, this.unflushed, cx);
                }
            },
            Err(payload) => {
                *this.state = State::Panicked(Box::new(payload.into()));
                return fail_after_flush(this.state, this.unflushed, cx);
            }
        };

        // Join whatever else is ready. A first event that is alone is written
        // as it is: an encoded event shared by many streams stays shared.
        //
        // Right after a `Pending`, the first event goes out alone without
        // asking the stream for more: a live stream woken for one event
        // would only answer `Pending` again, and for a channel or a
        // broadcast receiver that answer takes a lock and queues a waiter,
        // once more per event. Events that did arrive together are joined
        // from the next poll on, and hyper writes both frames at once.
        let max = if std::mem::replace(this.woken, false) {
            0
        } else {
            *this.max_frame_size
        };
        // Each event is copied into the frame one event later, after the
        // next one was taken: copying an event right after it was written
        // makes the CPU wait for its bytes to reach the cache (wide loads
        // over fresh narrow stores; `perf` showed the copy's first load as
        // a tenth of a burst's time). The thread's spare still serves: the
        // next event takes the encoding handed back one step before.
        let mut joined: Option<BytesMut> = None;
        let mut held = first;
        let mut len = held.len();
        while len < max {
            let next = match poll_next(this.stream.as_mut(), cx) {
                Ok(Poll::Pending) => break,
                Ok(Poll::Ready(None)) => {
                    *this.state = State::Done;
                    break;
                }
                Ok(Poll::Ready(Some(item))) => match item.into_chunk() {
                    Ok(chunk) => chunk.0,
                    Err(error) => {
                        *this.state = State::Failed(error);
                        break;
                    }
                },
                Err(payload) => {
                    *this.state = State::Panicked(Box::new(payload.into()));
                    break;
                }
            };
            let buf = joined.get_or_insert_with(|| {
                // Room for the whole frame at once: growing a buffer event by
                // event copies it again at every doubling, and the last
                // doubling lands in fresh pages from the kernel.
                let mut buf = std::mem::take(this.spare);
                buf.reserve(max.min(MAX_RESERVE) + held.len() + next.len());
                buf
            });
            let before = std::mem::replace(&mut held, next);
            buf.extend_from_slice(before.as_slice());
            before.recycle();
            len = buf.len() + held.len();
        }
        let data = match joined {
            Some(mut buf) => {
                buf.extend_from_slice(held.as_slice());
                held.recycle();
                let frame = buf.split().freeze();
                // A frame cut at the cap means a burst: keep the rest of the
                // buffer, whose room comes back once the frame is written.
                // A stream that ran out of ready events keeps nothing, so an
                // idle stream holds no buffer.
                if len >= max && matches!(this.state, State::Streaming) {
                    *this.spare = buf;
                }
                frame
            }
            None => match held {
                Repr::Owned(encoding) => crate::event::into_bytes(encoding),
                Repr::Shared(bytes) => bytes,
            },
        };
        let data = if *this.max_unwritten != usize::MAX {
            let (limit, writing) = (*this.max_unwritten, *this.writing);
            let unwritten = this
                .unwritten
                .get_or_insert_with(|| Arc::new(Unwritten::new(limit, writing)));
            CountedFrame::frame(data, unwritten)
        } else {
            data
        };
        *this.unflushed = true;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

impl<S> fmt::Debug for EventStream<S>
where
    S: Stream + fmt::Debug,
    S::Item: StreamItem,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Streaming => "streaming",
            State::Failed(_) => "failed",
            State::Panicked(_) => "panicked",
            State::Done => "done",
        };
        f.debug_struct("EventStream")
            .field("stream", &self.stream)
            .field("max_frame_size", &self.max_frame_size)
            .field("max_unwritten", &self.max_unwritten)
            .field("state", &state)
            .finish()
    }
}

/// Polls the stream; a panic in it comes back as its payload, so that the
/// events written before it can reach the client before it goes on.
#[inline]
fn poll_next<S: Stream>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
) -> Result<Poll<Option<S::Item>>, Payload> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream.poll_next(cx)))
}

/// Returns `Pending` once and wakes the task at once, so that the server
/// writes out what it holds before the error or panic that comes next.
///
/// hyper's HTTP/1 connection asks a body for its next frame before it
/// writes the last one out, and drops the connection with everything still
/// unwritten (the status line included) when the body fails. Between a
/// `Pending` and the next poll it writes what it holds to the socket, so an
/// error or panic right behind events waits one such turn. The bytes then
/// reach the client as long as its socket takes them (a client that has
/// stopped reading may still lose them: no server can tell).
fn yield_once<T>(unflushed: &mut bool, cx: &mut Context<'_>) -> Poll<T> {
    *unflushed = false;
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// After the stream failed or panicked with nothing of its own in this
/// poll: at once if nothing is unwritten, else after one turn.
fn fail_after_flush<E, T>(
    state: &mut State<E>,
    unflushed: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<T, E>>> {
    if *unflushed {
        return yield_once(unflushed, cx);
    }
    match std::mem::replace(state, State::Done) {
        State::Failed(error) => Poll::Ready(Some(Err(error))),
        State::Panicked(payload) => resume_unwind(*payload),
        State::Streaming | State::Done => Poll::Ready(None),
    }
}

/// What a panic carries.
type Payload = Box<dyn std::any::Any + Send>;

/// Goes on with a panic caught in the stream.
fn resume_unwind(payload: std::sync::Mutex<Payload>) -> ! {
    let payload = payload
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::panic::resume_unwind(payload)
}

/// The media type of an event stream.
pub(crate) const TEXT_EVENT_STREAM: &str = "text/event-stream";

/// The size hint of a body that may add bytes to `inner`'s: its lower
/// bound, and no upper bound; exactly zero once it has ended.
#[cfg(feature = "layers")]
pub(crate) fn size_hint_adding_bytes(inner: SizeHint, ended: bool) -> SizeHint {
    if ended {
        return SizeHint::with_exact(0);
    }
    let mut hint = SizeHint::new();
    hint.set_lower(inner.lower());
    hint
}

/// Why a producer ended its event stream early, told to `CloseLayer`
/// through an [`EndSignal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EarlyEnd {
    /// The client read too slowly: the stream fell behind what its
    /// producer keeps (a hub subscription whose next event left the
    /// topic's history, or a broadcast receiver that lagged). `CloseLayer`
    /// reports `CloseReason::Lagged`.
    Lagged,
    /// The producer's source became unreachable (a hub on Redis that could
    /// not read from Redis for longer than its grace). `CloseLayer` reports
    /// `CloseReason::Unavailable`.
    Unavailable,
}

/// How a stream's producer tells `CloseLayer` why its stream ended, when
/// the reason is its own: put the signal in the response with
/// [`mark`](EndSignal::mark), keep a clone in the producer, and
/// [`set`](EndSignal::set) it before the stream ends. `CloseLayer` then
/// reports `CloseReason::Lagged` or `CloseReason::Unavailable` instead of
/// `Completed`. The layer and the producer need not know each other: both
/// know this signal, which lives in the response's extensions.
///
/// A hub subscription gives its own (`Subscription::end_signal`, feature
/// `hub`); a producer of your own (a broadcast channel whose receiver
/// lagged, say) makes one with [`EndSignal::new`].
///
/// # Example
///
/// ```
/// use futures_util::stream;
/// use tower_sse::{EarlyEnd, EndSignal, Event, EventStream};
///
/// let signal = EndSignal::new();
/// let mut response = EventStream::new(stream::iter([Event::new().data("last")])).into_http_response();
/// signal.mark(&mut response);
/// // In the producer, when its receiver reports that it lagged:
/// signal.set(EarlyEnd::Lagged);
/// assert_eq!(signal.get(), Some(EarlyEnd::Lagged));
/// ```
#[derive(Clone, Debug, Default)]
pub struct EndSignal(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl EndSignal {
    /// A signal that says nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the signal in `response`'s extensions, where `CloseLayer`
    /// finds it.
    pub fn mark<B>(&self, response: &mut http::Response<B>) {
        response.extensions_mut().insert(self.clone());
    }

    /// Says why the stream ends; the last call wins.
    pub fn set(&self, why: EarlyEnd) {
        let value = match why {
            EarlyEnd::Lagged => 1,
            EarlyEnd::Unavailable => 2,
        };
        self.0.store(value, std::sync::atomic::Ordering::Release);
    }

    /// What was said, if anything.
    pub fn get(&self) -> Option<EarlyEnd> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            1 => Some(EarlyEnd::Lagged),
            2 => Some(EarlyEnd::Unavailable),
            _ => None,
        }
    }
}

/// An item an [`EventStream`] can write: [`Event`], [`EncodedEvent`], or a
/// `Result` of either.
///
/// This trait is sealed; it only names the item types above.
pub trait StreamItem: sealed::Sealed {
    /// The error an item may carry instead of an event; [`Infallible`] for
    /// plain events.
    type Error;

    /// The encoded event, or the error.
    #[doc(hidden)]
    fn into_chunk(self) -> Result<sealed::Chunk, Self::Error>;
}

impl StreamItem for Event {
    type Error = Infallible;

    #[inline]
    fn into_chunk(self) -> Result<sealed::Chunk, Infallible> {
        Ok(sealed::Chunk(Repr::Owned(self.finish())))
    }
}

impl StreamItem for EncodedEvent {
    type Error = Infallible;

    #[inline]
    fn into_chunk(self) -> Result<sealed::Chunk, Infallible> {
        Ok(sealed::Chunk(Repr::Shared(self.into_bytes())))
    }
}

impl<T, E> StreamItem for Result<T, E>
where
    T: StreamItem<Error = Infallible>,
{
    type Error = E;

    #[inline]
    fn into_chunk(self) -> Result<sealed::Chunk, E> {
        match self {
            Ok(item) => match item.into_chunk() {
                Ok(chunk) => Ok(chunk),
                Err(never) => match never {},
            },
            Err(error) => Err(error),
        }
    }
}

/// One encoded event: built for this stream (its encoding goes back to the
/// thread's spare once written) or shared with other streams.
enum Repr {
    Owned(Box<Encoding>),
    Shared(Bytes),
}

impl fmt::Debug for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Repr::Owned(_) => "Owned",
            Repr::Shared(_) => "Shared",
        };
        f.debug_tuple(kind)
            .field(&String::from_utf8_lossy(self.as_slice()))
            .finish()
    }
}

impl Repr {
    /// Done with these bytes: an event's own buffer goes back to the
    /// thread's spare (see `event::recycle`).
    #[inline]
    fn recycle(self) {
        if let Repr::Owned(encoding) = self {
            crate::event::recycle(encoding);
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Repr::Owned(encoding) => &encoding.buf,
            Repr::Shared(bytes) => bytes,
        }
    }
}

mod sealed {
    /// An encoded event handed from a [`StreamItem`](super::StreamItem) to
    /// the body. Public only to the crate: this module is private.
    #[allow(unreachable_pub)]
    #[derive(Debug)]
    pub struct Chunk(pub(super) super::Repr);

    #[allow(unreachable_pub)]
    pub trait Sealed {}
    impl Sealed for crate::Event {}
    impl Sealed for crate::EncodedEvent {}
    impl<T: super::StreamItem, E> Sealed for Result<T, E> {}
}

/// `204 No Content`: tells a browser's `EventSource` that the stream is
/// finished and it must not reconnect.
///
/// The standard gives a server no other way to stop reconnects: when an
/// event stream simply ends, the browser reconnects after its retry delay.
/// Answer the reconnect (or the first request) with this response instead.
///
/// ```
/// let response: http::Response<String> = tower_sse::stop_reconnecting();
/// assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
/// ```
pub fn stop_reconnecting<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests;

use std::{
    convert::Infallible,
    future::poll_fn,
    io,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use futures_util::{stream, StreamExt};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::*;

/// A `Stream` fed by hand, so tests decide what is ready when.
struct Channel(mpsc::UnboundedReceiver<Result<Event, io::Error>>);

impl Stream for Channel {
    type Item = Result<Event, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn channel() -> (
    mpsc::UnboundedSender<Result<Event, io::Error>>,
    EventStream<Channel>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, EventStream::new(Channel(rx)))
}

type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

fn poll_once<B: Body + Unpin>(body: &mut B) -> Polled<B> {
    let waker = futures_util::task::noop_waker();
    Pin::new(body).poll_frame(&mut Context::from_waker(&waker))
}

/// Polls once and expects a data frame.
fn next_data<B>(body: &mut B) -> Bytes
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: fmt::Debug,
{
    match poll_once(body) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
        other => panic!("expected a data frame, got {other:?}"),
    }
}

fn event(text: &str) -> Event {
    Event::new().data(text)
}

#[test]
fn ready_events_are_joined_into_one_frame() {
    let (tx, mut body) = channel();
    for text in ["a", "b", "c"] {
        tx.send(Ok(event(text))).unwrap();
    }
    assert_eq!(
        &next_data(&mut body)[..],
        b"data: a\n\ndata: b\n\ndata: c\n\n"
    );
    assert!(poll_once(&mut body).is_pending());
}

#[test]
fn a_single_ready_event_is_written_at_once() {
    let (tx, mut body) = channel();
    assert!(poll_once(&mut body).is_pending());
    tx.send(Ok(event("a"))).unwrap();
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    tx.send(Ok(event("b"))).unwrap();
    assert_eq!(&next_data(&mut body)[..], b"data: b\n\n");
}

#[test]
fn frames_stop_growing_at_the_cap() {
    let (tx, body) = channel();
    let mut body = body.max_frame_size(20);
    // Each event is 9 bytes: the frame takes events until it holds 20 or
    // more, so three (27 bytes), then the next three, then the last one.
    for text in ["a", "b", "c", "d", "e", "f", "g"] {
        tx.send(Ok(event(text))).unwrap();
    }
    assert_eq!(next_data(&mut body).len(), 27);
    assert_eq!(next_data(&mut body).len(), 27);
    assert_eq!(&next_data(&mut body)[..], b"data: g\n\n");
}

#[test]
fn zero_cap_writes_one_event_per_frame_and_a_big_event_is_never_split() {
    let (tx, body) = channel();
    let mut body = body.max_frame_size(0);
    tx.send(Ok(event("a"))).unwrap();
    tx.send(Ok(event("b"))).unwrap();
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    assert_eq!(&next_data(&mut body)[..], b"data: b\n\n");

    let (tx, body) = channel();
    let mut body = body.max_frame_size(4);
    let big = "x".repeat(100);
    tx.send(Ok(event(&big))).unwrap();
    assert_eq!(next_data(&mut body).len(), 100 + 8);
}

#[test]
fn an_error_behind_ready_events_comes_after_them_and_ends_the_body() {
    let (tx, mut body) = channel();
    tx.send(Ok(event("a"))).unwrap();
    tx.send(Ok(event("b"))).unwrap();
    tx.send(Err(io::Error::other("boom"))).unwrap();
    tx.send(Ok(event("never"))).unwrap();
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\ndata: b\n\n");
    assert!(!body.is_end_stream());
    // One turn for the server to write the events out, with a wake-up.
    let (waker, wakes) = counting_waker();
    let polled = Pin::new(&mut body).poll_frame(&mut Context::from_waker(&waker));
    assert!(polled.is_pending());
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    match poll_once(&mut body) {
        Poll::Ready(Some(Err(error))) => assert_eq!(error.to_string(), "boom"),
        other => panic!("expected the error, got {other:?}"),
    }
    assert!(body.is_end_stream());
    assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
}

use crate::test_util::counting_waker;

#[test]
fn an_error_after_a_written_frame_waits_one_turn_and_an_error_alone_does_not() {
    let (tx, mut body) = channel();
    tx.send(Ok(event("a"))).unwrap();
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    // The error arrives in a later poll, with no `Pending` in between.
    tx.send(Err(io::Error::other("late"))).unwrap();
    assert!(poll_once(&mut body).is_pending());
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Err(_)))));

    // After a `Pending` everything written has gone out: no wait.
    let (tx, mut body) = channel();
    tx.send(Ok(event("a"))).unwrap();
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    assert!(poll_once(&mut body).is_pending());
    tx.send(Err(io::Error::other("later"))).unwrap();
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Err(_)))));
}

/// Yields `a`, then panics.
struct PanicsAfterOne(bool);

impl Stream for PanicsAfterOne {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if std::mem::replace(&mut self.0, true) {
            panic!("the stream broke");
        }
        Poll::Ready(Some(event("a")))
    }
}

#[test]
fn a_panic_behind_an_event_comes_after_it_and_goes_on_as_a_panic() {
    let mut body = EventStream::new(PanicsAfterOne(false));
    // The panic in the same poll as the event: the event comes first.
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    assert!(poll_once(&mut body).is_pending());
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = poll_once(&mut body);
    }))
    .unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the stream broke"));
    assert!(body.is_end_stream());
    assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
}

#[test]
fn the_body_stays_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&EventStream::new(PanicsAfterOne(false)));
}

#[test]
fn end_of_stream_is_reported_honestly() {
    let (tx, mut body) = channel();
    assert!(!body.is_end_stream());
    assert_eq!(body.size_hint().upper(), None);
    tx.send(Ok(event("a"))).unwrap();
    drop(tx);
    // The end was seen while joining: the last frame says so.
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
    assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
}

#[test]
fn an_empty_stream_ends_at_once() {
    let mut body = EventStream::new(stream::empty::<Event>());
    assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
    assert!(body.is_end_stream());
}

#[test]
fn a_single_encoded_event_is_written_without_a_copy() {
    let shared = Event::new().data("fan-out").encode();
    let mut body = EventStream::new(stream::iter([shared.clone()]));
    let frame = next_data(&mut body);
    assert_eq!(frame.as_ptr(), shared.as_bytes().as_ptr());
}

#[tokio::test]
async fn encoded_events_and_results_of_them_are_accepted() {
    let shared = Event::new().data("x").encode();
    let items: Vec<Result<EncodedEvent, Infallible>> = vec![Ok(shared.clone()), Ok(shared)];
    let body = EventStream::new(stream::iter(items));
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"data: x\n\ndata: x\n\n");
}

#[tokio::test]
async fn into_response_is_200_with_the_event_stream_type() {
    let response = EventStream::new(stream::iter([event("a")])).into_http_response();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_eq!(response.headers().len(), 1);
}

#[test]
fn stop_reconnecting_is_204_with_an_empty_body() {
    let response: Response<String> = stop_reconnecting();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.body().is_empty());
}

#[tokio::test]
async fn body_keeps_working_when_polled_through_poll_fn() {
    let (tx, mut body) = channel();
    let reader = tokio::spawn(async move {
        let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        frame.unwrap().unwrap().into_data().unwrap()
    });
    tokio::task::yield_now().await;
    tx.send(Ok(event("late"))).unwrap();
    assert_eq!(&reader.await.unwrap()[..], b"data: late\n\n");
}

/// The expected bytes of a burst, built without any `EventStream`.
fn encoded(texts: &[String]) -> Vec<u8> {
    texts
        .iter()
        .flat_map(|text| event(text).encode().as_bytes().to_vec())
        .collect()
}

#[test]
fn a_long_burst_of_mixed_sizes_comes_out_byte_for_byte() {
    // Sizes around the spare limit (4 KiB) and the frame cap, so buffers are
    // reused, refused as spares, and frames are cut mid-burst.
    let texts: Vec<String> = (0..3_000)
        .map(|i| "x".repeat([0, 1, 63, 700, 4_090, 9_000][i % 6] + i % 7))
        .collect();
    let (tx, body) = channel();
    let mut body = body.max_frame_size(16 * 1024);
    for text in &texts {
        tx.send(Ok(event(text))).unwrap();
    }
    let expected = encoded(&texts);
    let mut out = Vec::new();
    let mut frames = 0;
    while out.len() < expected.len() {
        let frame = next_data(&mut body);
        assert!(frame.len() < 16 * 1024 + 10_000, "frame of {}", frame.len());
        out.extend_from_slice(&frame);
        frames += 1;
    }
    assert_eq!(out, expected);
    assert!(frames > 100, "{frames} frames");
    assert!(poll_once(&mut body).is_pending());
}

#[test]
fn a_buffer_is_kept_only_while_a_burst_lasts() {
    let (tx, body) = channel();
    let mut body = body.max_frame_size(20);
    for text in ["a", "b", "c", "d", "e"] {
        tx.send(Ok(event(text))).unwrap();
    }
    // Cut at the cap: more may be ready, the rest of the buffer is kept.
    assert_eq!(next_data(&mut body).len(), 27);
    assert!(body.spare.capacity() > 0);
    // Cut because nothing more was ready: the stream keeps nothing.
    assert_eq!(&next_data(&mut body)[..], b"data: d\n\ndata: e\n\n");
    assert_eq!(body.spare.capacity(), 0);
    assert!(poll_once(&mut body).is_pending());
    assert_eq!(body.spare.capacity(), 0);

    // A burst that ends exactly at the cap: the buffer is kept after the
    // last full frame, and let go when the stream turns out to be idle.
    for text in ["a", "b", "c", "d"] {
        tx.send(Ok(event(text))).unwrap();
    }
    // Woken: the first event goes out alone, the next three are joined.
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    assert_eq!(next_data(&mut body).len(), 27);
    assert!(body.spare.capacity() > 0);
    assert!(poll_once(&mut body).is_pending());
    assert_eq!(body.spare.capacity(), 0);
}

#[test]
fn events_built_after_a_reused_buffer_carry_only_their_own_bytes() {
    // Join two events, so the first one's buffer becomes this thread's
    // spare; the next event must not see its old bytes.
    let (tx, mut body) = channel();
    tx.send(Ok(Event::new().id("old").unwrap().data("old data")))
        .unwrap();
    tx.send(Ok(event("b"))).unwrap();
    next_data(&mut body);
    let fresh = Event::new().data("new");
    assert_eq!(fresh.encode().as_bytes(), b"data: new\n\n");
    let typed = Event::new().event("t").unwrap();
    assert_eq!(typed.encode().as_bytes(), b"event: t\ndata:\n\n");
}

#[test]
fn after_waiting_the_event_woken_for_goes_alone_and_the_rest_are_joined() {
    let (tx, mut body) = channel();
    assert!(poll_once(&mut body).is_pending());
    for text in ["a", "b", "c"] {
        tx.send(Ok(event(text))).unwrap();
    }
    assert_eq!(&next_data(&mut body)[..], b"data: a\n\n");
    assert_eq!(&next_data(&mut body)[..], b"data: b\n\ndata: c\n\n");
    assert!(poll_once(&mut body).is_pending());
}

/// An endless stream of ready 100-byte events that counts how many it made.
fn endless(made: Arc<AtomicUsize>) -> impl Stream<Item = Event> + Send + Unpin + 'static {
    stream::repeat_with(move || {
        made.fetch_add(1, Ordering::Relaxed);
        Event::new().data("x".repeat(92))
    })
}

/// Takes frames from `body` and drops them (as a server that writes them
/// does) until `bytes` were dropped; returns how many.
fn write_frames<B>(body: &mut B, bytes: usize) -> usize
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: fmt::Debug,
{
    let mut written = 0;
    while written < bytes {
        written += next_data(body).len();
    }
    written
}

/// A live stream of 100-byte events: `push(n)` queues `n` more; the stream
/// is `Pending` while none is queued (the tests poll by hand).
fn queued_events() -> (impl Fn(usize), impl Stream<Item = Event> + Unpin) {
    let queue = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let push = {
        let queue = queue.clone();
        move |n: usize| {
            let mut queue = queue.lock().unwrap();
            queue.extend((0..n).map(|_| Event::new().data("x".repeat(92))));
        }
    };
    let events = stream::poll_fn(move |_| match queue.lock().unwrap().pop_front() {
        Some(event) => Poll::Ready(Some(event)),
        None => Poll::Pending,
    });
    (push, events)
}

/// Polls `body`, keeping every frame, until it waits for the server (a
/// wait that does not wake the task at once, unlike the turns it takes
/// before it has seen the server write); asserts how many bytes it held.
fn assert_held_until_a_wait<B>(body: &mut B, bytes: std::ops::Range<usize>)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: fmt::Debug,
{
    let (waker, wakes) = counting_waker();
    let held = crate::test_util::frames_until_pending(body, &mut Context::from_waker(&waker));
    let held: usize = held.iter().map(Bytes::len).sum();
    assert!(bytes.contains(&held), "{held} bytes held");
    assert_eq!(wakes.load(Ordering::SeqCst), 0, "a turn, not a wait");
}

#[test]
fn with_max_unwritten_the_stream_waits_until_the_server_drops_frames() {
    let made = Arc::new(AtomicUsize::new(0));
    let mut body = EventStream::new(endless(made.clone()))
        .max_frame_size(4096)
        .max_unwritten(8192);
    // The server writes a bound's worth, then its client stops reading.
    let written = write_frames(&mut body, 8192);
    let (waker, wakes) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut held = crate::test_util::frames_until_pending(&mut body, &mut cx);
    let bytes: usize = held.iter().map(Bytes::len).sum();
    assert!(
        (8192..8192 + 4096 + 100).contains(&bytes),
        "{bytes} bytes held"
    );
    assert_eq!(made.load(Ordering::Relaxed) * 100, written + bytes);
    // Asked again while nothing was written: still waiting, nothing made.
    assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
    assert_eq!(made.load(Ordering::Relaxed) * 100, written + bytes);
    assert_eq!(wakes.load(Ordering::SeqCst), 0);

    // The server writes the first frame: under the bound, the stream is
    // woken once and goes on.
    drop(held.remove(0));
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert!(matches!(
        Pin::new(&mut body).poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    // Dropping frames while nobody waits wakes nobody.
    held.clear();
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
}

/// The next data frame, polled through the turns a bounded stream waits
/// before it has seen its consumer write: each such wait must wake the
/// task at once, and come at most once per frame.
fn next_data_through_turns<B>(body: &mut B) -> Bytes
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: fmt::Debug,
{
    let (waker, wakes) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    for turn in 0..2 {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => return frame.into_data().unwrap(),
            Poll::Pending => assert_eq!(
                wakes.load(Ordering::SeqCst),
                turn + 1,
                "a wait without a wake"
            ),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    panic!("waited twice in a row for a frame")
}

#[test]
fn a_consumer_that_keeps_every_frame_is_never_held_back() {
    // `collect()`, `axum::body::to_bytes`: nothing is ever dropped, so the
    // bound does not apply (the stream stopped at it for good, and the
    // collecting future never finished).
    let events = stream::iter(0..1_000).map(|_| Event::new().data("x".repeat(92)));
    let mut body = EventStream::new(events)
        .max_frame_size(4096)
        .max_unwritten(8192);
    let mut kept = Vec::new();
    while kept.iter().map(Bytes::len).sum::<usize>() < 100_000 {
        kept.push(next_data_through_turns(&mut body));
    }
    assert_eq!(kept.iter().map(Bytes::len).sum::<usize>(), 100_000);
    assert!(poll_once(&mut body).is_ready());
}

#[tokio::test]
async fn a_bounded_body_can_be_collected_whole() {
    let events = stream::iter(0..1_000).map(|_| Event::new().data("x".repeat(92)));
    let body = EventStream::new(events).max_unwritten(16 * 1024);
    let collected = tokio::time::timeout(std::time::Duration::from_secs(10), body.collect())
        .await
        .expect("collect() finished")
        .unwrap();
    assert_eq!(collected.to_bytes().len(), 100_000);
}

#[test]
fn the_bound_applies_once_a_frame_was_dropped() {
    let mut body = EventStream::new(endless(Arc::default()))
        .max_frame_size(1000)
        .max_unwritten(4000);
    // Frames kept, none dropped: not yet taken for a server.
    let mut held: Vec<Bytes> = (0..20)
        .map(|_| next_data_through_turns(&mut body))
        .collect();
    // One frame dropped (written): it waits to be woken.
    drop(held.remove(0));
    let (waker, wakes) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    drop(held);
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    // And it stays a server after an idle turn lets the count go.
    let (push, events) = queued_events();
    let mut body = EventStream::new(events)
        .max_frame_size(1000)
        .max_unwritten(4000);
    push(100);
    write_frames(&mut body, 1);
    while let Poll::Ready(Some(Ok(_))) = poll_once(&mut body) {}
    push(200);
    assert_held_until_a_wait(&mut body, 4000..5000);
}

#[test]
fn a_live_stream_stays_bounded_across_idle_turns() {
    // One event at a time, idle in between: each idle turn lets the count
    // go, and what was dropped before was forgotten with it, so the bound
    // never held for a live stream (a hub subscription) whose client then
    // stalled.
    let (push, events) = queued_events();
    let mut body = EventStream::new(events)
        .max_frame_size(1000)
        .max_unwritten(4000);
    for _ in 0..100 {
        push(1);
        drop(next_data(&mut body));
        assert!(poll_once(&mut body).is_pending());
    }
    push(200);
    assert_held_until_a_wait(&mut body, 4000..5000);
}

#[test]
fn a_bound_raised_after_writing_still_holds() {
    // What was dropped counted only up to the old bound, so a higher one
    // found the consumer not yet writing (when a bound's worth was the
    // test).
    let mut body = EventStream::new(endless(Arc::default()))
        .max_frame_size(1000)
        .max_unwritten(4000);
    write_frames(&mut body, 100_000);
    let mut body = body.max_unwritten(8000);
    assert_held_until_a_wait(&mut body, 8000..9000);
}

#[test]
fn without_max_unwritten_nothing_is_held_back() {
    let mut body = EventStream::new(endless(Arc::default())).max_frame_size(4096);
    let held: Vec<Bytes> = (0..200).map(|_| next_data(&mut body)).collect();
    assert!(held.iter().map(Bytes::len).sum::<usize>() > 800_000);
}

#[test]
fn a_bound_of_zero_holds_one_frame_at_a_time_however_small() {
    // One 100-byte event per frame: small frames count too (a live stream
    // of small events to a stalled HTTP/2 client was not bounded when they
    // did not), and a bound of 0 goes on once the frame is dropped (it
    // waited for good).
    let made = Arc::new(AtomicUsize::new(0));
    let mut body = EventStream::new(endless(made.clone()))
        .max_frame_size(0)
        .max_unwritten(0);
    // The first frame written shows a server.
    write_frames(&mut body, 1);
    let (waker, wakes) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    for round in 1..=100 {
        let frame = match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
            other => panic!("round {round}: expected a frame, got {other:?}"),
        };
        assert_eq!(frame.len(), 100);
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert_eq!(made.load(Ordering::Relaxed), round + 1);
        drop(frame);
        assert_eq!(wakes.load(Ordering::SeqCst), round);
    }
}

/// An I/O stream that reads nothing more once it has read `left` bytes.
struct Stalling {
    io: tokio::io::DuplexStream,
    left: usize,
}

impl tokio::io::AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Pending;
        }
        let mut chunk = vec![0; self.left.min(buf.remaining())];
        let mut limited = tokio::io::ReadBuf::new(&mut chunk);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut limited);
        let read = limited.filled().len();
        buf.put_slice(&chunk[..read]);
        self.left -= read;
        polled
    }
}

impl tokio::io::AsyncWrite for Stalling {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves an endless stream of events on one connection (a real hyper
/// server over an in-memory pipe of 4 KiB) to a client that reads
/// [`READ_FIRST`] bytes, then stops reading; returns how many bytes of
/// events the stream had made once it stopped making more.
async fn bytes_made_for_a_stalled_client(
    http2: bool,
    max_unwritten: Option<usize>,
    live: bool,
) -> usize {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let made = Arc::new(AtomicUsize::new(0));
    let (mut client, server) = tokio::io::duplex(PIPE);
    let events = if live {
        // One event at a time, each after a turn with nothing ready (as
        // events published one by one): every frame holds one event.
        endless(made.clone())
            .then(|event| async {
                tokio::task::yield_now().await;
                event
            })
            .boxed()
    } else {
        endless(made.clone()).boxed()
    };
    let events = std::sync::Mutex::new(Some(events));
    let service = hyper::service::service_fn(move |_request| {
        let events = events.lock().unwrap().take().expect("one request");
        let mut body = EventStream::new(events);
        if let Some(max) = max_unwritten {
            body = body.max_unwritten(max);
        }
        std::future::ready(Ok::<_, Infallible>(body.into_http_response()))
    });
    let mut tasks = tokio::task::JoinSet::new();
    if http2 {
        tasks.spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        // hyper's client grants windows of megabytes (browsers grant
        // several too), so the server may send; the client stops reading
        // the socket when the request arrives, so it has nowhere to.
        let stalling = Stalling {
            io: client,
            left: READ_FIRST,
        };
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stalling))
                .await
                .unwrap();
        tasks.spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::get("http://test/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        tasks.spawn(async move {
            // The response is kept (dropping it would reset the stream) and
            // its body never read.
            let response = sender.send_request(request).await;
            std::future::pending::<()>().await;
            drop(response);
        });
    } else {
        tasks.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let mut first = vec![0; READ_FIRST];
        client.read_exact(&mut first).await.unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200 OK"));
        tasks.spawn(async move {
            // Keeps the pipe open, never reading.
            std::future::pending::<()>().await;
            drop(client);
        });
    }
    // Wait until the stream stops making events: the pipe and the server's
    // buffers are full.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = made.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    tasks.abort_all();
    last * 100
}

/// The capacity of the pipe between client and server.
const PIPE: usize = 4096;

/// What the client reads before it stops: more than hyper's first batch
/// of 16 frames. Until the server has written a frame the bound does not
/// hold (a consumer that keeps every frame must not wait for good), and
/// through a 4 KiB pipe hyper takes its whole first batch before the first
/// frame is through.
const READ_FIRST: usize = 512 * 1024;

/// Without a bound the stream makes more than `unbounded` bytes for a
/// stalled client beyond what it read and the pipe holds; with 32 KiB, no
/// more than the pipe plus the bound plus one frame.
async fn assert_the_bound_holds(http2: bool, unbounded: usize, live: bool) {
    let made = bytes_made_for_a_stalled_client(http2, None, live).await - READ_FIRST;
    assert!(made > PIPE + unbounded, "{made} bytes made without a bound");
    let made = bytes_made_for_a_stalled_client(http2, Some(32 * 1024), live).await - READ_FIRST;
    assert!(
        made <= PIPE + 32 * 1024 + 16 * 1024 + 100,
        "{made} bytes made with the bound"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_at_most_the_bound_over_http1() {
    // Without a bound, hyper queues 16 frames of 16 KiB for the stalled
    // client (minus what the pipe took).
    assert_the_bound_holds(false, 200_000, false).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_at_most_the_bound_over_http2() {
    // Without a bound, hyper's send buffer for the stream takes about
    // 400 KiB.
    assert_the_bound_holds(true, 400_000, false).await;
}

#[tokio::test]
async fn a_live_stream_of_small_events_to_a_stalled_http2_client_is_bounded_too() {
    // One 100-byte event per frame: hyper's send buffer takes hundreds of
    // KB of them without a bound. With it, small frames count too (they
    // did not, and as much was made with the bound as without).
    assert_the_bound_holds(true, 200_000, true).await;
}

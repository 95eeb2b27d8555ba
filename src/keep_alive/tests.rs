use std::{
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{stream, FutureExt, StreamExt};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use tower::{service_fn, ServiceExt};
use tower_layer::Layer;

use super::*;

const INTERVAL: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

/// A body fed by the test, frame by frame.
struct TestBody {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, io::Error>>,
    ended: bool,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

type Tx = mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>;

fn builder() -> KeepAliveBuilder {
    KeepAliveLayer::builder().interval(INTERVAL)
}

fn layer() -> KeepAliveLayer {
    builder().build().unwrap()
}

/// An event-stream keep-alive body over a body the test feeds.
type Tested = Pin<Box<KeepAliveBody<TestBody>>>;

async fn stream_body(layer: KeepAliveLayer) -> (Tx, Tested) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rx = Some(rx);
    let service = layer.layer(service_fn(move |_request: Request<()>| {
        let body = TestBody {
            rx: rx.take().unwrap(),
            ended: false,
        };
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap();
        async move { Ok::<_, io::Error>(response) }
    }));
    let body = service.oneshot(Request::new(())).await.unwrap().into_body();
    (tx, Box::pin(body))
}

fn send(tx: &Tx, bytes: &'static [u8]) {
    tx.send(Ok(Frame::data(Bytes::from_static(bytes)))).unwrap();
}

/// Polls once (time does not move).
fn poll(body: &mut Tested) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
    let waker = futures_util::task::noop_waker();
    body.as_mut().poll_frame(&mut Context::from_waker(&waker))
}

/// The data of the next frame, which must be ready now.
fn ready_data(body: &mut Tested) -> Bytes {
    match poll(body) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
        other => panic!("expected a data frame now, got {other:?}"),
    }
}

/// The data of the next frame, then a poll that finds nothing more, as a
/// server polls after each write: the keep-alive wait starts there.
fn data_then_idle(body: &mut Tested) -> Bytes {
    let data = ready_data(body);
    assert!(poll(body).is_pending(), "nothing more is ready");
    data
}

async fn advance(by: Duration) {
    tokio::time::advance(by).await;
}

#[tokio::test(start_paused = true)]
async fn first_comment_comes_exactly_at_the_interval() {
    let (_tx, mut body) = stream_body(layer()).await;
    assert!(poll(&mut body).is_pending());
    advance(INTERVAL - MS).await;
    assert!(poll(&mut body).is_pending());
    advance(MS).await;
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
    // And the next one a whole interval later.
    advance(INTERVAL - MS).await;
    assert!(poll(&mut body).is_pending());
    advance(MS).await;
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
}

#[tokio::test(start_paused = true)]
async fn no_comment_while_events_keep_coming() {
    let (tx, mut body) = stream_body(layer()).await;
    for _ in 0..10 {
        advance(INTERVAL / 2).await;
        assert!(poll(&mut body).is_pending());
        send(&tx, b"data: x\n\n");
        assert_eq!(&data_then_idle(&mut body)[..], b"data: x\n\n");
    }
}

#[tokio::test(start_paused = true)]
async fn comment_comes_one_interval_after_the_last_event() {
    let (tx, mut body) = stream_body(layer()).await;
    advance(INTERVAL * 3 / 4).await;
    send(&tx, b"data: last\n\n");
    assert_eq!(&data_then_idle(&mut body)[..], b"data: last\n\n");
    // The original deadline passes without a comment ...
    advance(INTERVAL / 2).await;
    assert!(poll(&mut body).is_pending());
    // ... which comes a whole interval after the event.
    advance(INTERVAL / 2 - MS).await;
    assert!(poll(&mut body).is_pending());
    advance(MS).await;
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
}

#[tokio::test(start_paused = true)]
async fn comment_is_held_back_inside_an_event_until_its_end() {
    let (tx, mut body) = stream_body(layer()).await;
    send(&tx, b"data: half");
    assert_eq!(&ready_data(&mut body)[..], b"data: half");
    send(&tx, b" an event\n");
    assert_eq!(&data_then_idle(&mut body)[..], b" an event\n");
    // Three intervals inside the event: nothing is written.
    for _ in 0..3 {
        advance(INTERVAL).await;
        assert!(poll(&mut body).is_pending());
    }
    send(&tx, b"\n");
    assert_eq!(&data_then_idle(&mut body)[..], b"\n");
    advance(INTERVAL).await;
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
}

#[tokio::test(start_paused = true)]
async fn custom_comment_text_is_written() {
    let (_tx, mut body) = stream_body(builder().comment("keep-alive").build().unwrap()).await;
    advance(INTERVAL).await;
    assert_eq!(&ready_data(&mut body)[..], b": keep-alive\n\n");
}

#[tokio::test(start_paused = true)]
async fn immediate_writes_a_first_comment_at_once_and_restarts_the_wait() {
    let (_tx, mut body) = stream_body(builder().immediate(true).build().unwrap()).await;
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
    assert!(poll(&mut body).is_pending());
    advance(INTERVAL - MS).await;
    assert!(poll(&mut body).is_pending());
    advance(MS).await;
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
}

#[tokio::test(start_paused = true)]
async fn no_comment_after_the_end_and_end_is_forwarded() {
    let (tx, mut body) = stream_body(builder().immediate(true).build().unwrap()).await;
    assert_eq!(body.size_hint().upper(), None);
    drop(tx);
    // The inner body has not said it ended yet: the first comment goes out.
    assert_eq!(&ready_data(&mut body)[..], b":\n\n");
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
    assert!(body.is_end_stream());
    advance(INTERVAL * 2).await;
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
}

#[tokio::test(start_paused = true)]
async fn trailers_and_errors_pass_through() {
    let (tx, mut body) = stream_body(layer()).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-done", "yes".parse().unwrap());
    tx.send(Ok(Frame::trailers(trailers.clone()))).unwrap();
    tx.send(Err(io::Error::other("broken"))).unwrap();
    match poll(&mut body) {
        Poll::Ready(Some(Ok(frame))) => assert_eq!(frame.into_trailers().unwrap(), trailers),
        other => panic!("expected trailers, got {other:?}"),
    }
    match poll(&mut body) {
        Poll::Ready(Some(Err(error))) => assert_eq!(error.to_string(), "broken"),
        other => panic!("expected the error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn other_responses_get_no_comments_and_keep_their_size() {
    let service = layer().layer(service_fn(|_request: Request<()>| async {
        Ok::<_, io::Error>(Response::new("{}".to_owned()))
    }));
    let mut body = Box::pin(service.oneshot(Request::new(())).await.unwrap().into_body());
    assert_eq!(body.size_hint().exact(), Some(2));
    advance(INTERVAL * 3).await;
    let frame = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
    assert_eq!(&frame.unwrap().unwrap().into_data().unwrap()[..], b"{}");
    assert!(body.is_end_stream());
}

#[test]
fn intervals_out_of_range_and_multi_line_comments_are_refused() {
    use super::layer::MAX_INTERVAL;
    for (interval, kind) in [
        (Duration::ZERO, KeepAliveErrorKind::ZeroInterval),
        (
            Duration::from_nanos(999_999),
            KeepAliveErrorKind::ZeroInterval,
        ),
        (
            MAX_INTERVAL + Duration::from_nanos(1),
            KeepAliveErrorKind::IntervalTooLong,
        ),
        (
            Duration::from_secs(u64::MAX / 2),
            KeepAliveErrorKind::IntervalTooLong,
        ),
        (Duration::MAX, KeepAliveErrorKind::IntervalTooLong),
    ] {
        let refused = KeepAliveLayer::builder()
            .comment("kept")
            .interval(interval)
            .build()
            .unwrap_err();
        assert_eq!(refused.kind(), kind, "{interval:?}");
        // The builder comes back with every setting, to fix the one at fault.
        let fixed = refused
            .into_builder()
            .interval(Duration::from_secs(1))
            .build()
            .unwrap();
        assert!(format!("{fixed:?}").contains("kept"), "{fixed:?}");
    }
    for text in ["a\nb", "a\r", "\r\n"] {
        assert_eq!(
            KeepAliveLayer::builder()
                .comment(text)
                .build()
                .unwrap_err()
                .kind(),
            KeepAliveErrorKind::CommentHasLineBreak
        );
    }
    let error = |interval| {
        KeepAliveLayer::builder()
            .interval(interval)
            .build()
            .unwrap_err()
    };
    assert!(error(Duration::ZERO).to_string().contains("under 1 ms"));
    assert!(error(Duration::MAX).to_string().contains("24 hours"));
}

/// The extremes a setter accepts work at request time: no panic, comments
/// when due.
#[tokio::test(start_paused = true)]
async fn extreme_intervals_that_are_accepted_never_panic_later() {
    for interval in [Duration::from_millis(1), super::layer::MAX_INTERVAL] {
        let layer = KeepAliveLayer::builder()
            .interval(interval)
            .immediate(true)
            .comment("")
            .build()
            .unwrap();
        let (_tx, mut body) = stream_body(layer).await;
        assert_eq!(&ready_data(&mut body)[..], b":\n\n");
        assert!(poll(&mut body).is_pending());
        advance(interval).await;
        assert_eq!(&ready_data(&mut body)[..], b":\n\n");
    }
}

/// Whether `prefix` ends between events, by a definition independent of the
/// body's: line ends normalized to LF, it is empty or its last line is empty.
fn ends_between_events(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let text = text.as_bytes();
    text.is_empty() || (text.ends_with(b"\n") && (text.len() == 1 || text[text.len() - 2] == b'\n'))
}

/// The events an independent parser reads. A final LF is added because the
/// parser drops a last event that ends in a lone CR (it waits for a possible
/// LF); after a complete stream an LF is an empty line and changes nothing.
fn parse(bytes: &[u8]) -> Vec<(String, String, String)> {
    let mut bytes = bytes.to_vec();
    bytes.push(b'\n');
    stream::iter([Ok::<_, io::Error>(Bytes::from(bytes))])
        .eventsource()
        .map(|event| {
            let event = event.unwrap();
            (event.event, event.data, event.id)
        })
        .collect::<Vec<_>>()
        .now_or_never()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn keep_alive_never_splits_an_event_at_any_byte_position() {
    let streams: [&[u8]; 4] = [
        b"data: a\n\ndata: b\nid: 2\n\n",
        b"data: a\r\n\r\nevent: x\r\ndata: b\r\n\r\n",
        b"data: a\r\rdata: b\r: c\r\r",
        b"\n: hi\n\ndata: a\r\n\ndata:\n\r\n",
    ];
    for whole in streams {
        let expected = parse(whole);
        for split in 0..=whole.len() {
            let (head, tail) = whole.split_at(split);
            let (tx, mut body) = stream_body(layer()).await;
            let mut out = Vec::new();
            if !head.is_empty() {
                tx.send(Ok(Frame::data(Bytes::copy_from_slice(head))))
                    .unwrap();
                out.extend_from_slice(&data_then_idle(&mut body));
            }
            advance(INTERVAL).await;
            let commented = match poll(&mut body) {
                Poll::Ready(Some(Ok(frame))) => {
                    let data = frame.into_data().unwrap();
                    assert_eq!(&data[..], b":\n\n");
                    out.extend_from_slice(&data);
                    true
                }
                Poll::Pending => false,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(
                commented,
                ends_between_events(head),
                "comment after {:?}",
                String::from_utf8_lossy(head)
            );
            if !tail.is_empty() {
                tx.send(Ok(Frame::data(Bytes::copy_from_slice(tail))))
                    .unwrap();
                out.extend_from_slice(&ready_data(&mut body));
            }
            assert_eq!(
                parse(&out),
                expected,
                "split at {split} of {:?}",
                String::from_utf8_lossy(whole)
            );
        }
    }
}

#[tokio::test]
async fn readiness_is_forwarded_and_the_inner_service_called_once() {
    crate::test_util::assert_forwards_readiness(KeepAliveLayer::new()).await;
}

#[test]
fn boundary_tracks_crlf_split_across_frames() {
    use crate::event::Boundary;
    let state = Boundary::Between.after(b"data: a\r\n\r");
    assert!(state.is_between());
    // The LF that completes the CRLF keeps the stream between events.
    assert!(state.after(b"\n").is_between());
    assert!(!state.after(b"\ndata: b").is_between());
    assert!(!Boundary::Between.after(b"data: a\r").is_between());
    assert!(!Boundary::Between.after(b"data: a\r\n").is_between());
    assert!(Boundary::Between
        .after(b"data: a\r\n")
        .after(b"\r\n")
        .is_between());
}

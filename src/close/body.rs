use std::{
    fmt,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::Instant,
};

use bytes::{Bytes, BytesMut};
use http::{Method, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};
use tokio::{sync::futures::OwnedNotified, time::Sleep};

use super::{
    layer::{CloseInfo, Config, Failure},
    random_between, CloseHandle, CloseReason,
};
use crate::{
    body::{size_hint_adding_bytes, EarlyEnd, EndSignal},
    event::{retry_event, Boundary},
};

/// The response body of [`Close`](super::Close): the inner body, watched to
/// learn why it ends, and ended cleanly on shutdown or expiry.
#[pin_project(PinnedDrop)]
pub struct CloseBody<B> {
    #[pin]
    inner: B,
    tracker: Tracker,
    /// For event streams, when the layer has any: the triggers that end
    /// them early. Boxed, and only then: an idle stream's size is its
    /// cost, and most layers set no maximum lifetime.
    watch: Option<Pin<Box<Watch>>>,
}

#[pin_project(project = WatchProj)]
struct Watch {
    #[pin]
    shutdown: Option<OwnedNotified>,
    /// The shutdown notification was enabled (registered before the flag
    /// was checked, so that no trigger is missed).
    enabled: bool,
    /// The waker the notification was last polled with. Polling it again
    /// takes the `Notify`'s lock, shared by every stream; with the same
    /// waker there is no need, so a busy stream never touches the lock.
    registered: Option<Waker>,
    /// Boxed: a maximum lifetime is rarer than a shutdown trigger.
    expiry: Option<Pin<Box<Sleep>>>,
    boundary: Boundary,
    /// Shutdown or expiry is under way: the final frame goes out at the next
    /// event boundary.
    ending: Option<CloseReason>,
}

/// Records why a response's body ended, once.
pub(super) struct Tracker {
    handle: CloseHandle,
    config: Arc<Config>,
    /// Boxed: most layers have no `on_close`, and an inline `Uri` would
    /// cost every idle stream about a hundred bytes.
    origin: Option<Box<(Method, Uri)>>,
    /// An event stream: counted as open until it ends, and reported to
    /// `on_close`.
    stream: bool,
    start: Instant,
    frames: u64,
    bytes: u64,
    closed: bool,
    /// The inner body said it has ended (`is_end_stream`), so a drop
    /// without a last poll completes the stream. Atomic because
    /// `is_end_stream` takes `&self`.
    inner_ended: AtomicBool,
    /// Set by a stream that ends because its client fell behind.
    lag: Option<EndSignal>,
    /// What failed, for a stream closed with `Error` by its body (boxed:
    /// every idle stream carries the field, few ever fill it).
    failure: Option<Box<Failure>>,
}

impl Tracker {
    pub(super) fn new(
        handle: CloseHandle,
        config: Arc<Config>,
        origin: Option<Box<(Method, Uri)>>,
        stream: bool,
        lag: Option<EndSignal>,
    ) -> Self {
        if stream {
            config.stats.open_streams.fetch_add(1, Ordering::Relaxed);
            crate::metrics::stream_opened();
            #[cfg(feature = "tracing")]
            if let Some(origin) = &origin {
                let (method, uri) = &**origin;
                tracing::debug!(%method, path = uri.path(), "event stream opened");
            }
        }
        Self {
            handle,
            config,
            origin,
            stream,
            start: Instant::now(),
            frames: 0,
            bytes: 0,
            closed: false,
            inner_ended: AtomicBool::new(false),
            lag,
            failure: None,
        }
    }

    /// The body has ended as far as the client is concerned: a drop
    /// without a last poll completes the stream.
    pub(super) fn ended(&self) {
        self.inner_ended.store(true, Ordering::Relaxed);
    }

    /// Why a stream whose inner body ended, ended.
    fn ended_reason(&self) -> CloseReason {
        match self.lag.as_ref().and_then(EndSignal::get) {
            Some(EarlyEnd::Lagged) => CloseReason::Lagged,
            Some(EarlyEnd::Unavailable) => CloseReason::Unavailable,
            None => CloseReason::Completed,
        }
    }

    fn wrote(&mut self, len: usize) {
        if len > 0 {
            self.frames += 1;
            self.bytes += len as u64;
        }
    }

    /// Closes with `Error`, recording what failed (for an event stream:
    /// nothing else keeps it).
    fn fail(&mut self, failure: impl FnOnce() -> Failure) {
        if self.stream && !self.closed {
            self.failure = Some(Box::new(failure()));
        }
        self.close(CloseReason::Error);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.handle.close(reason) || !self.stream {
            return;
        }
        self.config
            .stats
            .open_streams
            .fetch_sub(1, Ordering::Relaxed);
        crate::metrics::stream_closed(reason.as_str(), self.frames, self.bytes);
        let (method, uri) = self.origin.take().map(|origin| *origin).unwrap_or_default();
        let info = CloseInfo {
            reason,
            method,
            uri,
            duration: self.start.elapsed(),
            frames: self.frames,
            bytes: self.bytes,
            failure: self.failure.take().map(|failure| *failure),
        };
        if let Some(failure) = &info.failure {
            crate::metrics::stream_failed(failure.kind());
            #[cfg(feature = "tracing")]
            tracing::warn!(
                method = %info.method,
                path = info.uri.path(),
                kind = failure.kind(),
                message = failure.message(),
                "event stream failed; it ended cleanly after what it wrote"
            );
        }
        #[cfg(feature = "tracing")]
        tracing::debug!(
            reason = %info.reason,
            method = %info.method,
            path = info.uri.path(),
            duration_ms = info.duration.as_millis() as u64,
            frames = info.frames,
            bytes = info.bytes,
            "event stream closed"
        );
        if let Some(on_close) = &self.config.on_close {
            // Never let the callback unwind out of here: this may run in
            // `Drop`, where a second panic aborts the process.
            let _ = catch_unwind(AssertUnwindSafe(|| on_close(&info)));
        }
    }
}

impl<B> CloseBody<B> {
    pub(super) fn new(inner: B, tracker: Tracker) -> Self {
        let config = &tracker.config;
        let watched = config.shutdown.is_some() || config.max_lifetime.is_some();
        let watch = (tracker.stream && watched).then(|| {
            Box::pin(Watch {
                shutdown: config
                    .shutdown
                    .as_ref()
                    .map(|shutdown| shutdown.notify.clone().notified_owned()),
                enabled: false,
                registered: None,
                expiry: config
                    .max_lifetime
                    .map(|max| Box::pin(tokio::time::sleep(random_between(max.mul_f64(0.8), max)))),
                boundary: Boundary::Between,
                ending: None,
            })
        });
        Self {
            inner,
            tracker,
            watch,
        }
    }

    /// The handle this body reports to.
    pub fn handle(&self) -> &CloseHandle {
        &self.tracker.handle
    }
}

/// The final frame of a stream ended by shutdown or expiry: the optional
/// final event, then a `retry:` event ([`RETRY_EVENT`]) with a delay drawn
/// from the range.
///
/// [`RETRY_EVENT`]: crate::event::RETRY_EVENT
fn final_frame(config: &Config) -> Bytes {
    let (min, max) = config.reconnect_delay;
    let retry = retry_event(random_between(min, max)).encode();
    match &config.final_event {
        None => retry.into_bytes(),
        Some(event) => {
            let mut frame = BytesMut::with_capacity(event.len() + retry.as_bytes().len());
            frame.extend_from_slice(event);
            frame.extend_from_slice(retry.as_bytes());
            frame.freeze()
        }
    }
}

impl<B> Body for CloseBody<B>
where
    B: Body,
    B::Data: From<Bytes> + AsRef<[u8]>,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let tracker = this.tracker;
        if tracker.closed {
            return Poll::Ready(None);
        }

        let mut watch = this.watch.as_mut().map(|watch| watch.as_mut().project());
        if let Some(watch) = &mut watch {
            if watch.ending.is_none() && (watch.shutdown.is_some() || watch.expiry.is_some()) {
                *watch.ending = triggered(watch, &tracker.config, cx);
            }
            if let Some(reason) = *watch.ending {
                if watch.boundary.is_between() {
                    let frame = final_frame(&tracker.config);
                    tracker.wrote(frame.len());
                    tracker.close(reason);
                    return Poll::Ready(Some(Ok(Frame::data(frame.into()))));
                }
                // Inside an event: let the inner body finish it first.
            }
        }

        let mut inner = this.inner;
        // A panic in the handler's body is its error, not a client that
        // left: record it before it goes on (the body is dropped only after
        // the task has caught the panic, when nothing says it panicked).
        let polled = catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll_frame(cx)));
        let polled = match polled {
            Ok(polled) => polled,
            Err(payload) => {
                tracker.fail(|| Failure::from_panic(&*payload));
                if tracker.stream {
                    // An event stream ends cleanly instead (see below); the
                    // panic hook has already reported the panic.
                    drop(payload);
                    return Poll::Ready(None);
                }
                std::panic::resume_unwind(payload);
            }
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = data.as_ref();
                    tracker.wrote(bytes.len());
                    if let Some(watch) = &mut watch {
                        *watch.boundary = watch.boundary.after(bytes);
                    }
                }
                if inner.is_end_stream() {
                    tracker.inner_ended.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                tracker.fail(|| Failure::Error(error.to_string()));
                if tracker.stream {
                    // An event stream ends cleanly after everything it
                    // wrote: a server that fails a body drops what it has
                    // not yet written (hyper's HTTP/1 buffer, HTTP/2's
                    // queued frames, cleared by the reset), while a clean
                    // end writes it all. `EventSource` reconnects after
                    // either, with its `Last-Event-ID`; the reason says
                    // `Error`.
                    drop(error);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                let reason = tracker.ended_reason();
                tracker.close(reason);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.tracker.closed {
            return true;
        }
        let ended = self.inner.is_end_stream();
        if ended {
            self.tracker.inner_ended.store(true, Ordering::Relaxed);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        // Not an event stream: passed through as it is. An event stream
        // never states a length, trigger or not: it may end early (after an
        // error or a panic, at shutdown or expiry), and a final frame may be
        // added.
        if !self.tracker.stream && !self.tracker.closed {
            return self.inner.size_hint();
        }
        size_hint_adding_bytes(self.inner.size_hint(), self.tracker.closed)
    }
}

/// Whether shutdown or expiry now asks the stream to end.
fn triggered(
    watch: &mut WatchProj<'_>,
    config: &Config,
    cx: &mut Context<'_>,
) -> Option<CloseReason> {
    if let Some(mut notified) = watch.shutdown.as_mut().as_pin_mut() {
        if !*watch.enabled {
            notified.as_mut().enable();
            *watch.enabled = true;
        }
        let flag = config
            .shutdown
            .as_ref()
            .is_some_and(|shutdown| shutdown.is_triggered());
        if flag {
            return Some(CloseReason::Shutdown);
        }
        let registered = watch
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if !registered {
            if notified.poll(cx).is_ready() {
                return Some(CloseReason::Shutdown);
            }
            *watch.registered = Some(cx.waker().clone());
        }
    }
    if let Some(expiry) = watch.expiry.as_mut() {
        if expiry.as_mut().poll(cx).is_ready() {
            return Some(CloseReason::Expired);
        }
    }
    None
}

#[pinned_drop]
impl<B> PinnedDrop for CloseBody<B> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        // A body whose inner body says it has ended may be dropped without a
        // last poll: that is a completed stream, not a vanished client.
        let reason = if this.tracker.inner_ended.load(Ordering::Relaxed) {
            this.tracker.ended_reason()
        } else if std::thread::panicking() {
            // Dropped while its task unwinds: the server failed.
            CloseReason::Error
        } else {
            CloseReason::ClientGone
        };
        this.tracker.close(reason);
    }
}

impl<B> fmt::Debug for CloseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseBody")
            .field("handle", &self.tracker.handle)
            .field("event_stream", &self.tracker.stream)
            .finish_non_exhaustive()
    }
}

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use super::layer::Config;
use crate::{body::size_hint_adding_bytes, event::Boundary};

/// The response body of [`KeepAlive`](super::KeepAlive): the inner body,
/// with comment frames when an event stream stays idle.
#[pin_project]
pub struct KeepAliveBody<B> {
    #[pin]
    kind: Kind<B>,
}

// The active variant holds the timer in place (pinned, no allocation per
// stream); a pass-through body carries its unused room, as it did before
// the timer's waker was kept too.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = KindProj)]
enum Kind<B> {
    /// Not an event stream: the inner body as it is.
    Passthrough {
        #[pin]
        inner: B,
    },
    Active {
        #[pin]
        inner: B,
        /// Fires at or before `deadline`; moved on to `deadline` only when
        /// it fires early, so that a busy stream never touches the timer.
        #[pin]
        sleep: Sleep,
        /// When a comment is due: the last write plus the interval.
        deadline: Instant,
        /// Data was written since `deadline` was set. The clock is read when
        /// the inner body next has nothing, not on every frame: a burst of
        /// frames costs one clock read.
        written: bool,
        config: Arc<Config>,
        boundary: Boundary,
        /// A first comment is still to be written (`immediate`).
        first: bool,
        /// The waker the timer was last polled with.
        registered: Option<Waker>,
    },
}

impl<B> KeepAliveBody<B> {
    pub(super) fn passthrough(inner: B) -> Self {
        Self {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(super) fn active(inner: B, config: Arc<Config>) -> Self {
        let deadline = Instant::now() + config.interval;
        Self {
            kind: Kind::Active {
                inner,
                sleep: tokio::time::sleep_until(deadline),
                deadline,
                written: false,
                boundary: Boundary::Between,
                first: config.immediate,
                config,
                registered: None,
            },
        }
    }
}

impl<B> Body for KeepAliveBody<B>
where
    B: Body,
    B::Data: From<Bytes> + AsRef<[u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let (inner, mut sleep, deadline, written, config, boundary, first, registered) =
            match self.project().kind.project() {
                KindProj::Passthrough { inner } => return inner.poll_frame(cx),
                KindProj::Active {
                    inner,
                    sleep,
                    deadline,
                    written,
                    config,
                    boundary,
                    first,
                    registered,
                } => (
                    inner, sleep, deadline, written, config, boundary, first, registered,
                ),
            };

        if *first {
            *first = false;
            if !inner.is_end_stream() {
                *deadline = Instant::now() + config.interval;
                crate::metrics::keep_alive_comment();
                return Poll::Ready(Some(Ok(Frame::data(config.comment.clone().into()))));
            }
        }

        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = data.as_ref();
                    if !bytes.is_empty() {
                        *boundary = boundary.after(bytes);
                        *written = true;
                    }
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        if *written {
            *written = false;
            *deadline = Instant::now() + config.interval;
        }

        // The inner body has nothing now: is a comment due?
        loop {
            // The timer holds this task's waker already and has not fired:
            // polling it again would only register the same waker.
            if !sleep.is_elapsed() && registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *registered = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // Fired: the driver has taken the waker; the reset timer must be
            // polled again to hold one.
            *registered = None;
            let now = Instant::now();
            if now < *deadline {
                // Written since the timer was set: wait for the rest.
                sleep.as_mut().reset(*deadline);
                continue;
            }
            *deadline = now + config.interval;
            sleep.as_mut().reset(*deadline);
            if boundary.is_between() {
                crate::metrics::keep_alive_comment();
                return Poll::Ready(Some(Ok(Frame::data(config.comment.clone().into()))));
            }
            // Inside an event: no comment; wait another interval.
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { inner } | Kind::Active { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { inner } => inner.size_hint(),
            // Comments may add bytes.
            Kind::Active { inner, .. } => {
                size_hint_adding_bytes(inner.size_hint(), inner.is_end_stream())
            }
        }
    }
}

impl<B> fmt::Debug for KeepAliveBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("KeepAliveBody");
        match &self.kind {
            Kind::Passthrough { .. } => f.field("active", &false),
            Kind::Active {
                deadline, boundary, ..
            } => f
                .field("active", &true)
                .field("deadline", deadline)
                .field("boundary", boundary),
        }
        .finish_non_exhaustive()
    }
}

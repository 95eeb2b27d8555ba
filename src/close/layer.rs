use std::{
    error::Error as StdError,
    fmt,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Uri};
use tower_layer::Layer;

use super::{handle::Stats, Close, CloseReason, Shutdown};
use crate::event::{EncodedEvent, MAX_RETRY};

/// The default range of the `retry:` delay written when a stream is ended
/// by shutdown or expiry: 1 to 5 seconds.
const DEFAULT_RECONNECT_DELAY: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(5));

/// What `on_close` is told about a stream that ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CloseInfo {
    /// Why it ended.
    pub reason: CloseReason,
    /// The request's method.
    pub method: Method,
    /// The request's URI.
    pub uri: Uri,
    /// From the response to the end of the stream.
    pub duration: Duration,
    /// Data frames written (the final frame included).
    pub frames: u64,
    /// Bytes written (the final frame included).
    pub bytes: u64,
    /// What failed, when `reason` is [`CloseReason::Error`] because the
    /// stream's body returned an error or panicked: the error's text or the
    /// panic's message. `None` for every other reason, and for a body
    /// dropped while its task unwound (the panic was caught elsewhere).
    pub failure: Option<Failure>,
}

/// Why a stream's body failed: its error or its panic, as text.
///
/// An event stream whose body fails still ends cleanly after everything it
/// wrote (so the client reconnects with its `Last-Event-ID`); this is how
/// the failure itself reaches [`CloseBuilder::on_close`], the `tracing`
/// log (at `warn`) and the metrics (`tower_sse_stream_failures_total`, by
/// `kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The body returned an error; its `Display` text.
    Error(String),
    /// The body panicked; the panic's message (`"Box<dyn Any>"` when the
    /// payload was not text).
    Panic(String),
}

impl Failure {
    /// The error's text or the panic's message.
    pub fn message(&self) -> &str {
        match self {
            Failure::Error(message) | Failure::Panic(message) => message,
        }
    }

    /// `"error"` or `"panic"`: the `kind` label of the metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Error(_) => "error",
            Failure::Panic(_) => "panic",
        }
    }

    /// The message of a caught panic's payload.
    pub(super) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(text) = payload.downcast_ref::<&'static str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        Failure::Panic(message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(message) => write!(f, "the body failed: {message}"),
            Failure::Panic(message) => write!(f, "the body panicked: {message}"),
        }
    }
}

type OnClose = Arc<dyn Fn(&CloseInfo) + Send + Sync>;

/// Everything the services, futures and bodies of one layer share.
#[derive(Clone)]
pub(super) struct Config {
    pub(super) shutdown: Option<Shutdown>,
    pub(super) max_lifetime: Option<Duration>,
    pub(super) reconnect_delay: (Duration, Duration),
    pub(super) final_event: Option<Bytes>,
    pub(super) on_close: Option<OnClose>,
    pub(super) stats: Arc<Stats>,
}

/// Puts a [`CloseHandle`](super::CloseHandle) in each request and ends
/// event streams on shutdown or expiry; see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct CloseLayer {
    pub(super) config: Arc<Config>,
}

impl CloseLayer {
    /// A layer that reports why streams end, with no shutdown trigger and
    /// no maximum lifetime.
    pub fn new() -> Self {
        Self::builder().into_layer()
    }

    /// Starts a layer with the defaults of [`new`](CloseLayer::new); change
    /// what you need, then [`build`](CloseBuilder::build).
    pub fn builder() -> CloseBuilder {
        CloseBuilder {
            shutdown: None,
            max_lifetime: None,
            reconnect_delay: DEFAULT_RECONNECT_DELAY,
            final_event: None,
            on_close: None,
        }
    }

    /// This layer, also ended by `shutdown` (for the bundle's setter).
    pub(crate) fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        Arc::make_mut(&mut self.config).shutdown = Some(shutdown.clone());
        self
    }

    /// How many event streams built by this layer (and its clones) are open,
    /// and how many [`CloseHandle`](super::CloseHandle)s are alive.
    ///
    /// A stream is open until its body has ended or been dropped. The
    /// connection may outlive it: after its last frame, a client that has
    /// stopped reading holds the connection until the server gives up on it
    /// (see the [module docs](super#graceful-shutdown)).
    pub fn stats(&self) -> CloseStats {
        CloseStats {
            open_streams: self.config.stats.open_streams.load(Ordering::Relaxed),
            live_handles: self.config.stats.live_handles.load(Ordering::Relaxed),
        }
    }
}

/// Builds a [`CloseLayer`]. Setters only record; mistakes are reported by
/// [`build`](CloseBuilder::build), never by a panic.
#[derive(Clone)]
#[must_use]
pub struct CloseBuilder {
    shutdown: Option<Shutdown>,
    max_lifetime: Option<Duration>,
    reconnect_delay: (Duration, Duration),
    final_event: Option<Bytes>,
    on_close: Option<OnClose>,
}

impl CloseBuilder {
    /// Ends every open event stream when `shutdown` is triggered.
    ///
    /// Default: none.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Ends each event stream after a lifetime drawn at random between 80 %
    /// and 100 % of `max`, with the same final frame as shutdown and reason
    /// [`CloseReason::Expired`]. This bounds half-open connections and
    /// spreads reconnects. Any positive duration; a lifetime longer than
    /// the process's is the same as none.
    ///
    /// Default: none (streams live until they end).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// The range of the `retry:` delay in the final frame of a stream ended
    /// by shutdown or expiry, drawn at random per stream so that clients do
    /// not all reconnect in the same millisecond. Both ends at most
    /// [`MAX_RETRY`] (about 24.8 days), `min` at most `max`.
    ///
    /// Default: 1 to 5 seconds.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_delay = (min, max);
        self
    }

    /// An event written before the `retry:` block in the final frame (to
    /// tell clients why the stream ends, say). It must have a field: an
    /// event with nothing set is a lone line end that no client sees, and
    /// is refused by [`build`](CloseBuilder::build).
    ///
    /// Default: none.
    pub fn final_event(mut self, event: impl Into<EncodedEvent>) -> Self {
        self.final_event = Some(event.into().into_bytes());
        self
    }

    /// Called exactly once when an event stream ends, with why, the
    /// request's method and URI, how long the stream lasted and what it
    /// wrote.
    ///
    /// The callback may run inside `Drop` (when the client left) on the
    /// server's threads: keep it short and do not block. A panic in it is
    /// caught and ignored, so that it can never abort the process.
    ///
    /// Default: none.
    pub fn on_close<F>(mut self, callback: F) -> Self
    where
        F: Fn(&CloseInfo) + Send + Sync + 'static,
    {
        self.on_close = Some(Arc::new(callback));
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`CloseError`] for a zero maximum lifetime, a reconnect delay
    /// whose minimum is over its maximum or whose maximum is over
    /// [`MAX_RETRY`], or a final event with nothing in it.
    pub fn build(self) -> Result<CloseLayer, CloseError> {
        let (min, max) = self.reconnect_delay;
        let kind = if self.max_lifetime.is_some_and(|max| max.is_zero()) {
            CloseErrorKind::ZeroLifetime
        } else if min > max {
            CloseErrorKind::DelayRange
        } else if max > MAX_RETRY {
            CloseErrorKind::DelayTooLong
        } else if self
            .final_event
            .as_ref()
            .is_some_and(|event| event.iter().all(|&byte| byte == b'\n'))
        {
            CloseErrorKind::EmptyFinalEvent
        } else {
            return Ok(self.into_layer());
        };
        Err(CloseError {
            kind,
            builder: Box::new(self),
        })
    }

    /// The layer, settings already checked.
    fn into_layer(self) -> CloseLayer {
        CloseLayer {
            config: Arc::new(Config {
                shutdown: self.shutdown,
                max_lifetime: self.max_lifetime,
                reconnect_delay: self.reconnect_delay,
                final_event: self.final_event,
                on_close: self.on_close,
                stats: Arc::default(),
            }),
        }
    }
}

impl fmt::Debug for CloseBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseBuilder")
            .field("shutdown", &self.shutdown)
            .field("max_lifetime", &self.max_lifetime)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("final_event", &self.final_event.is_some())
            .field("on_close", &self.on_close.is_some())
            .finish()
    }
}

impl Default for CloseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CloseLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseLayer")
            .field("shutdown", &self.config.shutdown)
            .field("max_lifetime", &self.config.max_lifetime)
            .field("reconnect_delay", &self.config.reconnect_delay)
            .field("final_event", &self.config.final_event.is_some())
            .field("on_close", &self.config.on_close.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<S> Layer<S> for CloseLayer {
    type Service = Close<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Close {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Counts from [`CloseLayer::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseStats {
    /// Event streams that have started and not ended.
    pub open_streams: usize,
    /// [`CloseHandle`](super::CloseHandle)s not yet dropped (held by
    /// requests, bodies or handlers).
    pub live_handles: usize,
}

/// A close-layer setting that cannot work, with the builder it came from.
#[derive(Debug, Clone)]
pub struct CloseError {
    kind: CloseErrorKind,
    builder: Box<CloseBuilder>,
}

/// Which close-layer setting cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseErrorKind {
    /// The maximum lifetime is zero.
    ZeroLifetime,
    /// The reconnect delay's minimum is greater than its maximum.
    DelayRange,
    /// The reconnect delay's maximum is over [`MAX_RETRY`].
    DelayTooLong,
    /// The final event has no field (`Event::new()` alone).
    EmptyFinalEvent,
}

impl CloseError {
    /// Which setting cannot work.
    pub fn kind(&self) -> CloseErrorKind {
        self.kind
    }

    /// The builder as it was, every setting kept (the `on_close`
    /// callback and the shutdown trigger included), to change the one at
    /// fault and build again.
    pub fn into_builder(self) -> CloseBuilder {
        *self.builder
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            CloseErrorKind::ZeroLifetime => {
                "the maximum stream lifetime is zero: give a positive duration, or leave it unset"
            }
            CloseErrorKind::DelayRange => {
                "the reconnect delay's minimum is greater than its maximum"
            }
            CloseErrorKind::DelayTooLong => {
                "the reconnect delay is over 2^31 - 1 ms (about 24.8 days), more than browsers' \
                 timers hold"
            }
            CloseErrorKind::EmptyFinalEvent => {
                "the final event has nothing in it: give it data, a type, an id or a comment, \
                 or leave it unset"
            }
        })
    }
}

impl StdError for CloseError {}

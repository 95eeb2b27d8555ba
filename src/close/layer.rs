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
use crate::event::EncodedEvent;

/// The default range of the `retry:` delay written when a stream is ended
/// by shutdown or expiry: 1 to 5 seconds.
pub const DEFAULT_RECONNECT_DELAY: (Duration, Duration) =
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
        Self {
            config: Arc::new(Config {
                shutdown: None,
                max_lifetime: None,
                reconnect_delay: DEFAULT_RECONNECT_DELAY,
                final_event: None,
                on_close: None,
                stats: Arc::default(),
            }),
        }
    }

    /// Ends every open event stream when `shutdown` is triggered.
    ///
    /// Default: none.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        Arc::make_mut(&mut self.config).shutdown = Some(shutdown.clone());
        self
    }

    /// Ends each event stream after a lifetime drawn at random between 80 %
    /// and 100 % of `max`, with the same final frame as shutdown and reason
    /// [`CloseReason::Expired`]. This bounds half-open connections and
    /// spreads reconnects.
    ///
    /// Default: none (streams live until they end).
    ///
    /// # Errors
    ///
    /// [`CloseError::ZeroLifetime`] for a zero duration.
    pub fn max_lifetime(mut self, max: Duration) -> Result<Self, CloseError> {
        if max.is_zero() {
            return Err(CloseError::ZeroLifetime);
        }
        Arc::make_mut(&mut self.config).max_lifetime = Some(max);
        Ok(self)
    }

    /// The range of the `retry:` delay in the final frame of a stream ended
    /// by shutdown or expiry, drawn at random per stream so that clients do
    /// not all reconnect in the same millisecond.
    ///
    /// Default: 1 to 5 seconds ([`DEFAULT_RECONNECT_DELAY`]).
    ///
    /// # Errors
    ///
    /// [`CloseError::DelayRange`] when `min` is greater than `max`.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Result<Self, CloseError> {
        if min > max {
            return Err(CloseError::DelayRange);
        }
        Arc::make_mut(&mut self.config).reconnect_delay = (min, max);
        Ok(self)
    }

    /// An event written before the `retry:` block in the final frame (to
    /// tell clients why the stream ends, say).
    ///
    /// Default: none.
    pub fn final_event(mut self, event: impl Into<EncodedEvent>) -> Self {
        Arc::make_mut(&mut self.config).final_event = Some(event.into().into_bytes());
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
        Arc::make_mut(&mut self.config).on_close = Some(Arc::new(callback));
        self
    }

    /// How many event streams built by this layer (and its clones) are open,
    /// and how many [`CloseHandle`](super::CloseHandle)s are alive.
    pub fn stats(&self) -> CloseStats {
        CloseStats {
            open_streams: self.config.stats.open_streams.load(Ordering::Relaxed),
            live_handles: self.config.stats.live_handles.load(Ordering::Relaxed),
        }
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

/// A close-layer setting that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseError {
    /// The maximum lifetime is zero.
    ZeroLifetime,
    /// The reconnect delay's minimum is greater than its maximum.
    DelayRange,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroLifetime => {
                "the maximum stream lifetime is zero: give a positive duration, or leave it unset"
            }
            Self::DelayRange => "the reconnect delay's minimum is greater than its maximum",
        })
    }
}

impl StdError for CloseError {}

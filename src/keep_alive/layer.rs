use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use tower_layer::Layer;

use super::KeepAlive;
use crate::event::{find_line_break, Event};

/// The default [`KeepAliveBuilder::interval`]: 15 seconds.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// The longest [`KeepAliveBuilder::interval`]: 24 hours. No proxy keeps an
/// idle connection that long; a longer interval is a mistake.
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Writes a comment on event streams that stay idle; see the
/// [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct KeepAliveLayer {
    /// Shared by every service and body of the layer (each body holds a
    /// pointer, not a copy: idle streams are counted in bytes).
    pub(super) config: Arc<Config>,
}

/// What every keep-alive body of one layer shares.
#[derive(Clone)]
pub(super) struct Config {
    pub(super) interval: Duration,
    /// The encoded comment frame.
    pub(super) comment: Bytes,
    pub(super) immediate: bool,
    /// Off: every body passes through (used by the bundle's switch).
    pub(super) enabled: bool,
}

impl KeepAliveLayer {
    /// A layer with the defaults: a `:\n\n` comment after 15 seconds of
    /// silence, none at the start.
    pub fn new() -> Self {
        Self::builder().into_layer()
    }

    /// Starts a layer with the defaults; change what you need, then
    /// [`build`](KeepAliveBuilder::build).
    pub fn builder() -> KeepAliveBuilder {
        KeepAliveBuilder {
            interval: DEFAULT_INTERVAL,
            comment: String::new(),
            immediate: false,
        }
    }
}

/// Builds a [`KeepAliveLayer`]. Setters only record; mistakes are reported
/// by [`build`](KeepAliveBuilder::build), never by a panic.
#[derive(Debug, Clone)]
#[must_use]
pub struct KeepAliveBuilder {
    interval: Duration,
    comment: String,
    immediate: bool,
}

impl KeepAliveBuilder {
    /// How long a stream may stay silent before a comment is written. Keep
    /// it below the shortest idle timeout between the server and the
    /// browser. From 1 millisecond to 24 hours.
    ///
    /// Default: 15 seconds.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The text of the comment (written `: text`); one line of at most
    /// 2 KiB (it is written on every idle interval; 2 KiB is room for the
    /// padding some old proxies need before they pass a stream on).
    ///
    /// Default: empty (the comment frame is `:\n\n`).
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = text.into();
        self
    }

    /// Writes one comment as soon as the stream starts.
    ///
    /// Turn it on when a proxy or load balancer in front holds the response
    /// headers until the first body bytes arrive, or when the client should
    /// see the stream open (`EventSource`'s `open` event fires on the
    /// headers, but some proxies only forward them with the first bytes) and
    /// the first event may be long in coming.
    ///
    /// Default: off.
    pub fn immediate(mut self, on: bool) -> Self {
        self.immediate = on;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`KeepAliveError`] for an interval under 1 millisecond (comments
    /// without end) or over 24 hours, or a comment with a line
    /// break (a comment frame is one line).
    pub fn build(self) -> Result<KeepAliveLayer, KeepAliveError> {
        let kind = if self.interval < Duration::from_millis(1) {
            KeepAliveErrorKind::ZeroInterval
        } else if self.interval > MAX_INTERVAL {
            KeepAliveErrorKind::IntervalTooLong
        } else if find_line_break(self.comment.as_bytes()).is_some() {
            KeepAliveErrorKind::CommentHasLineBreak
        } else if self.comment.len() > MAX_COMMENT_LEN {
            KeepAliveErrorKind::CommentTooLong
        } else {
            return Ok(self.into_layer());
        };
        Err(KeepAliveError {
            kind,
            builder: Box::new(self),
        })
    }

    /// The layer, settings already checked.
    fn into_layer(self) -> KeepAliveLayer {
        KeepAliveLayer {
            config: Arc::new(Config {
                interval: self.interval,
                comment: Event::new().comment(&self.comment).encode().into_bytes(),
                immediate: self.immediate,
                enabled: true,
            }),
        }
    }
}

impl KeepAliveLayer {
    /// A layer that passes every body through (the bundle's off switch).
    pub(crate) fn off() -> Self {
        let mut layer = Self::new();
        Arc::make_mut(&mut layer.config).enabled = false;
        layer
    }
}

impl Default for KeepAliveLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeepAliveLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepAliveLayer")
            .field("interval", &self.config.interval)
            .field("comment", &String::from_utf8_lossy(&self.config.comment))
            .field("immediate", &self.config.immediate)
            .finish()
    }
}

impl<S> Layer<S> for KeepAliveLayer {
    type Service = KeepAlive<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeepAlive {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The longest keep-alive comment text, in bytes.
const MAX_COMMENT_LEN: usize = 2048;

/// A keep-alive setting that cannot work, with the builder it came from.
#[derive(Debug, Clone)]
pub struct KeepAliveError {
    kind: KeepAliveErrorKind,
    builder: Box<KeepAliveBuilder>,
}

/// Which keep-alive setting cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeepAliveErrorKind {
    /// The interval is under 1 millisecond.
    ZeroInterval,
    /// The interval is over 24 hours.
    IntervalTooLong,
    /// The comment text has a CR or LF.
    CommentHasLineBreak,
    /// The comment text is over 2 KiB.
    CommentTooLong,
}

impl KeepAliveError {
    /// Which setting cannot work.
    pub fn kind(&self) -> KeepAliveErrorKind {
        self.kind
    }

    /// The builder as it was, every setting kept, to change the one at
    /// fault and build again.
    pub fn into_builder(self) -> KeepAliveBuilder {
        *self.builder
    }
}

impl fmt::Display for KeepAliveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            KeepAliveErrorKind::ZeroInterval => {
                "the keep-alive interval is under 1 ms: give a positive duration, such as 15 seconds"
            }
            KeepAliveErrorKind::IntervalTooLong => {
                "the keep-alive interval is over 24 hours: give a duration below the shortest \
                 idle timeout between server and browser, such as 15 seconds"
            }
            KeepAliveErrorKind::CommentHasLineBreak => {
                "the keep-alive comment has a line break (CR or LF): a comment frame must be one line"
            }
            KeepAliveErrorKind::CommentTooLong => {
                "the keep-alive comment is over 2 KiB: it is written on every idle interval, \
                 keep it short"
            }
        })
    }
}

impl StdError for KeepAliveError {}

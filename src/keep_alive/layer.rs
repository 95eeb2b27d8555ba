use std::{error::Error as StdError, fmt, time::Duration};

use bytes::Bytes;
use tower_layer::Layer;

use super::KeepAlive;
use crate::event::{find_line_break, Event};

/// The default [`KeepAliveLayer::interval`]: 15 seconds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// Writes a comment on event streams that stay idle; see the
/// [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct KeepAliveLayer {
    pub(super) config: Config,
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
        Self {
            config: Config {
                interval: DEFAULT_INTERVAL,
                comment: Bytes::from_static(b":\n\n"),
                immediate: false,
                enabled: true,
            },
        }
    }

    /// How long a stream may stay silent before a comment is written. Keep
    /// it below the shortest idle timeout between the server and the
    /// browser.
    ///
    /// Default: 15 seconds ([`DEFAULT_INTERVAL`]).
    ///
    /// # Errors
    ///
    /// [`KeepAliveError`] for a zero interval, which would write comments
    /// without end.
    pub fn interval(mut self, interval: Duration) -> Result<Self, KeepAliveError> {
        if interval.is_zero() {
            return Err(KeepAliveError::ZeroInterval);
        }
        self.config.interval = interval;
        Ok(self)
    }

    /// The text of the comment (written `: text`).
    ///
    /// Default: empty (the comment frame is `:\n\n`).
    ///
    /// # Errors
    ///
    /// [`KeepAliveError`] when `text` has a line break: a comment frame must
    /// be one line.
    pub fn comment(mut self, text: &str) -> Result<Self, KeepAliveError> {
        if find_line_break(text.as_bytes()).is_some() {
            return Err(KeepAliveError::CommentHasLineBreak);
        }
        self.config.comment = Event::new().comment(text).encode().into_bytes();
        Ok(self)
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
        self.config.immediate = on;
        self
    }
}

impl KeepAliveLayer {
    /// A layer that passes every body through (the bundle's off switch).
    #[allow(dead_code)] // used by the bundle, behind its own features
    pub(crate) fn off() -> Self {
        let mut layer = Self::new();
        layer.config.enabled = false;
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

/// A keep-alive setting that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepAliveError {
    /// The interval is zero.
    ZeroInterval,
    /// The comment text has a CR or LF.
    CommentHasLineBreak,
}

impl fmt::Display for KeepAliveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroInterval => {
                "the keep-alive interval is zero: give a positive duration, such as 15 seconds"
            }
            Self::CommentHasLineBreak => {
                "the keep-alive comment has a line break (CR or LF): a comment frame must be one line"
            }
        })
    }
}

impl StdError for KeepAliveError {}

//! [`Health`]: what a readiness probe asks of a hub.

use std::{
    fmt,
    time::{Duration, Instant},
};

use super::HubError;

/// The state of a hub's backend, from [`Hub::health`](super::Hub::health):
/// what a readiness probe asks. A snapshot, cheap to take (one lock, no
/// call to Redis): take another for news.
///
/// A memory hub is always healthy. A hub on Redis (feature `redis`) is
/// healthy while its reader reads from Redis and Redis refuses none of the
/// hub's calls. It is not:
///
/// - before the reader's first read (a few milliseconds after the hub is
///   built, when Redis answers), and from its first failed read until it
///   reads again ([`is_connected`](Health::is_connected) is false, and
///   [`since`](Health::since) says since when). Subscribers are ended once
///   this lasts longer than `redis_outage_grace`;
/// - while Redis refuses a call of the hub
///   ([`HubErrorKind::Misconfigured`](super::HubErrorKind::Misconfigured):
///   a wrong password or database, a missing permission, a renamed command,
///   `maxmemory` reached), until a call of the same sort (a publish, a
///   subscribe that loads a topic, a read) works again.
///
/// Its `Display` says which, with what Redis said: answer a probe with it.
///
/// ```
/// # async fn probe(hub: tower_sse::hub::Hub) -> (http::StatusCode, String) {
/// let health = hub.health();
/// if health.is_healthy() {
///     (http::StatusCode::OK, format!("{health}\n"))
/// } else {
///     (http::StatusCode::SERVICE_UNAVAILABLE, format!("{health}\n"))
/// }
/// # }
/// ```
///
/// Every instance of an app shares its Redis, so an outage makes all of
/// them unready at once: a load balancer that then has no instance left
/// may answer `503` itself, on which `EventSource` stops for good. Give the
/// probe a failure threshold longer than the outages to ride out, or serve
/// event streams through a route that is not gated on readiness.
#[derive(Clone, Debug)]
pub struct Health {
    connected: bool,
    since: Instant,
    last_read: Option<Instant>,
    last_error: Option<(HubError, Instant)>,
    /// The refusal that makes it unhealthy, if one does.
    refused: Option<HubError>,
    memory: bool,
}

impl Health {
    pub(super) fn memory(born: Instant) -> Self {
        Self {
            connected: true,
            since: born,
            last_read: None,
            last_error: None,
            refused: None,
            memory: true,
        }
    }

    #[cfg(hub_log)]
    pub(super) fn new(
        connected: bool,
        since: Instant,
        last_read: Option<Instant>,
        last_error: Option<(HubError, Instant)>,
        refused: Option<HubError>,
    ) -> Self {
        Self {
            connected,
            since,
            last_read,
            last_error,
            refused,
            memory: false,
        }
    }

    /// Whether the hub can serve: connected, and refused nothing. What a
    /// readiness probe answers with.
    pub fn is_healthy(&self) -> bool {
        self.connected && self.refused.is_none()
    }

    /// Whether the hub's reader reads from Redis: its last read
    /// succeeded. Always true for a memory hub (there is nothing to connect
    /// to).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Since when [`is_connected`](Health::is_connected) has held its
    /// value: the read that ended the last outage (or the first read), or
    /// the first failed read of this outage (for a read Redis did not
    /// answer: when its answer was due). Before the first read, when the
    /// hub was built; for a memory hub, when it was built.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// When the reader last read from Redis (`None`: never; always for a
    /// memory hub). While connected, a read ends at least every 2 seconds
    /// (a blocking read's longest wait), so an older one means the reader
    /// is stuck or far behind.
    pub fn last_read(&self) -> Option<Instant> {
        self.last_read
    }

    /// The hub's last failed call to its backend, whatever it was (a
    /// publish, a subscribe that loaded a topic, a read), with when it
    /// failed: its [`kind`](HubError::kind) is the class
    /// ([`Unavailable`](super::HubErrorKind::Unavailable) or
    /// [`Misconfigured`](super::HubErrorKind::Misconfigured)), its
    /// `Display` what Redis said. Kept after a recovery; `None` if no call
    /// ever failed.
    pub fn last_error(&self) -> Option<(&HubError, Instant)> {
        self.last_error.as_ref().map(|(error, at)| (error, *at))
    }
}

/// `{:.1?}` of the time since `at`.
struct Ago(Instant);

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ago = self.0.elapsed();
        let ago = Duration::from_millis(ago.as_millis() as u64);
        write!(f, "{ago:?} ago")
    }
}

impl fmt::Display for Health {
    /// One line: `healthy: …` or `unhealthy: …` and why, with what Redis
    /// said.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.memory {
            return f.write_str("healthy: memory hub");
        }
        if let Some(refused) = &self.refused {
            write!(f, "unhealthy: {refused}")?;
        } else if self.connected {
            write!(f, "healthy: reading from Redis since {}", Ago(self.since))?;
        } else if self.last_read.is_none() && self.last_error.is_none() {
            return write!(f, "unhealthy: not connected to Redis yet");
        } else {
            write!(
                f,
                "unhealthy: not reading from Redis since {}",
                Ago(self.since)
            )?;
            if let Some((error, _)) = &self.last_error {
                write!(f, ": {error}")?;
            }
        }
        match self.last_read {
            Some(at) => write!(f, "; last read {}", Ago(at)),
            None => f.write_str("; never read"),
        }
    }
}

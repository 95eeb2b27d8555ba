use std::{
    fmt,
    sync::{
        atomic::{AtomicU8, AtomicUsize, Ordering},
        Arc,
    },
};

use tokio::sync::Notify;

/// Why an event stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The body was dropped before its end: the client closed the
    /// connection, the connection broke, a write failed, or the response
    /// was dropped before it was sent.
    ClientGone,
    /// The handler's stream ended: the server closed it.
    Completed,
    /// The handler's body returned an error or panicked (or the service
    /// failed before a response). An event stream then ends cleanly after
    /// what it wrote.
    Error,
    /// A [`Shutdown`](super::Shutdown) ended it.
    Shutdown,
    /// Its maximum lifetime ended it.
    Expired,
    /// The client read too slowly: the stream fell behind what its producer
    /// keeps (a hub subscription, feature `hub`, whose next event left the
    /// topic's history), wrote a final `retry:` and ended, so the
    /// browser reconnects and resumes or learns of the gap.
    Lagged,
    /// Its producer's backend became unreachable: a hub on Redis (feature
    /// `redis`) that could not read from Redis for longer than its outage
    /// grace wrote a final `retry:` (jittered) and ended the stream, so the
    /// browser reconnects, perhaps to an instance that reaches Redis, and
    /// resumes.
    Unavailable,
}

impl CloseReason {
    fn to_u8(self) -> u8 {
        match self {
            CloseReason::ClientGone => 1,
            CloseReason::Completed => 2,
            CloseReason::Error => 3,
            CloseReason::Shutdown => 4,
            CloseReason::Expired => 5,
            CloseReason::Lagged => 6,
            CloseReason::Unavailable => 7,
        }
    }

    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => CloseReason::ClientGone,
            2 => CloseReason::Completed,
            3 => CloseReason::Error,
            4 => CloseReason::Shutdown,
            5 => CloseReason::Expired,
            6 => CloseReason::Lagged,
            7 => CloseReason::Unavailable,
            _ => return None,
        })
    }

    /// A short lowercase name: `client_gone`, `completed`, `error`,
    /// `shutdown`, `expired`, `lagged` or `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientGone => "client_gone",
            CloseReason::Completed => "completed",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Expired => "expired",
            CloseReason::Lagged => "lagged",
            CloseReason::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters shared by everything one [`CloseLayer`](super::CloseLayer)
/// builds.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) open_streams: AtomicUsize,
    pub(super) live_handles: AtomicUsize,
}

/// Tells the handler when and why its response's stream ended.
///
/// [`CloseLayer`](super::CloseLayer) puts one into the request extensions
/// before calling the inner service. Clone it into the task that feeds the
/// stream and stop producing when [`closed`](CloseHandle::closed) resolves.
/// Cloning is cheap (a reference count); the handle is `Send + Sync`.
#[derive(Clone)]
pub struct CloseHandle {
    shared: Arc<Shared>,
}

struct Shared {
    reason: AtomicU8,
    notify: Notify,
    stats: Arc<Stats>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stats.live_handles.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CloseHandle {
    pub(super) fn new(stats: Arc<Stats>) -> Self {
        stats.live_handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::new(Shared {
                reason: AtomicU8::new(0),
                notify: Notify::new(),
                stats,
            }),
        }
    }

    /// Waits until the stream has ended, and says why.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// Whether the stream has ended, without waiting.
    pub fn is_closed(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the stream ended, or `None` while it is open.
    pub fn reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.shared.reason.load(Ordering::Acquire))
    }

    /// Records `reason` if no reason was recorded yet; returns whether it
    /// was this call that closed the handle.
    pub(super) fn close(&self, reason: CloseReason) -> bool {
        let won = self
            .shared
            .reason
            .compare_exchange(0, reason.to_u8(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.shared.notify.notify_waiters();
        }
        won
    }
}

impl fmt::Debug for CloseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseHandle")
            .field("reason", &self.reason())
            .finish()
    }
}

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use tokio::time::Instant;

use tokio::sync::Notify;

/// A trigger that ends every open event stream of the
/// [`CloseLayer`](super::CloseLayer)s it was given to.
///
/// Trigger it from the server's own shutdown signal, before or as graceful
/// shutdown starts: each open event stream writes its final frame at its
/// next event boundary and ends with [`CloseReason::Shutdown`], so that the
/// connections can close and graceful shutdown completes instead of waiting
/// forever. Streams that start after the trigger end at once the same way.
///
/// Clones share one trigger.
///
/// [`CloseReason::Shutdown`]: super::CloseReason::Shutdown
#[derive(Clone, Default)]
pub struct Shutdown {
    pub(super) triggered: Arc<AtomicBool>,
    pub(super) notify: Arc<Notify>,
    /// When the first trigger came, for [`Shutdown::deadline`].
    triggered_at: Arc<OnceLock<Instant>>,
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends every open event stream, and every one that starts from now on.
    pub fn trigger(&self) {
        self.triggered_at.get_or_init(Instant::now);
        self.triggered.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether [`trigger`](Shutdown::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// Waits until [`trigger`](Shutdown::trigger) is called (at once if it
    /// was).
    pub async fn triggered(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `grace` after the (first) trigger, at once if that moment
    /// has passed: the moment a server stops waiting for connections whose
    /// clients stopped reading.
    ///
    /// Every stream writes its final frame and ends at the trigger, but a
    /// layer cannot close a connection: one whose client has stopped
    /// reading stays open while its last bytes wait in the socket. Race the
    /// server's graceful shutdown against this, then let the remaining
    /// connections go (drop their tasks, or return from `main`), so that
    /// shutdown ends in bounded time whatever the clients do. See the
    /// [module docs](super#graceful-shutdown) for the loops.
    pub async fn deadline(&self, grace: Duration) {
        self.triggered().await;
        let triggered_at = self
            .triggered_at
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        match triggered_at.checked_add(grace) {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            // A grace beyond any clock: never.
            None => std::future::pending().await,
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

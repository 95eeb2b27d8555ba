//! The bound on what one client holds: open set subscriptions, and the
//! topics they hold together, per key the app gives (the user, else the
//! address).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};

use super::{HubError, HubErrorKind};

/// Every client's counts, and the bound.
#[derive(Debug)]
pub(super) struct Clients {
    held: Mutex<HashMap<Box<str>, Count>>,
    max_streams: usize,
    max_topics: usize,
    refused: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    streams: usize,
    topics: usize,
}

/// One subscription's share of its client's bound, given back on drop.
pub(super) struct Held {
    clients: Arc<Clients>,
    key: Box<str>,
    topics: usize,
}

impl Clients {
    pub(super) fn new(max_streams: usize, max_topics: usize) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            max_streams,
            max_topics,
            refused: AtomicU64::new(0),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<Box<str>, Count>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more stream of `topics` topics for `key`, or refuses it
    /// ([`HubErrorKind::ClientLimit`]) if that would pass the bound.
    pub(super) fn hold(self: &Arc<Self>, key: &str, topics: usize) -> Result<Held, HubError> {
        let mut held = self.held();
        let count = held.get(key).copied().unwrap_or_default();
        if count.streams + 1 > self.max_streams || count.topics + topics > self.max_topics {
            drop(held);
            self.refused.fetch_add(1, Ordering::Relaxed);
            crate::metrics::client_refused();
            return Err(HubError::new(HubErrorKind::ClientLimit));
        }
        let entry = held.entry(key.into()).or_default();
        entry.streams += 1;
        entry.topics += topics;
        Ok(Held {
            clients: self.clone(),
            key: key.into(),
            topics,
        })
    }

    /// The most topics one client may hold.
    pub(super) fn max_topics(&self) -> usize {
        self.max_topics
    }

    /// How many streams and topics `key` holds now.
    pub(super) fn count(&self, key: &str) -> (usize, usize) {
        let count = self.held().get(key).copied().unwrap_or_default();
        (count.streams, count.topics)
    }

    /// Streams refused since the hub was built.
    pub(super) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.clients.held();
        if let Some(count) = held.get_mut(&*self.key) {
            count.streams -= 1;
            count.topics -= self.topics;
            if count.streams == 0 {
                held.remove(&*self.key);
            }
        }
    }
}

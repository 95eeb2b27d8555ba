//! The seam between the hub and a backend that keeps topics outside the
//! process (Redis Streams), so that every instance of an app serves the
//! same events.
//!
//! The hub core keeps each topic's history and hands it to subscribers,
//! whatever the backend; the memory hub is that history alone. A backend
//! owns three things: appending a published event to the topic's log (the
//! log's id is the event's id), getting a topic ready before a subscriber
//! starts (loading it, catching it up), and a reader of its own that feeds
//! the histories with what the log holds (`Topic::append`), tells them
//! where the log broke (`Topic::lost_entries`) and when it cannot be read
//! (`Topic::set_unavailable`). The core names no backend: it holds one as a
//! `dyn Backend`, chosen where the hub is built. A backend lives in a
//! folder of its own (`redis/`), with its builder settings.

use std::{
    fmt,
    sync::{Arc, Weak},
};

use futures_core::future::BoxFuture;

use super::{topic::Asked, topic::Topic, EventId, Health, HubError, Shared};
use crate::event::Event;

/// What a backend does for the hub. Its futures are boxed: they wait on the
/// network, are a few KiB each, and would otherwise be inline in every
/// future that awaits a publish or a subscribe, memory hub or not.
pub(super) trait Backend: Send + Sync + fmt::Debug {
    /// Appends `event` to `topic`'s log and gives its id there; gives the
    /// event back with the error when it cannot.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<EventId, (HubError, Event)>>;

    /// Gets `found` (the hub's topic `name`, counted as one more
    /// subscriber) ready for a subscriber that asked for `asked`: loaded
    /// from the log if new here, caught up if it was not read meanwhile or
    /// if `asked` is newer than what it read.
    fn prepare<'a>(
        self: Arc<Self>,
        name: &'a str,
        found: &'a Topic,
        asked: Asked<'a>,
    ) -> BoxFuture<'a, Result<(), HubError>>;

    /// Starts the run `run` in the log, held by this instance (its lease,
    /// renewed by the reader while the run is in `Shared::runs`): a
    /// follower on any instance finds it there.
    fn start_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<(), HubError>>;

    /// Appends `event` to the run `run`'s log, as its last event with
    /// `end`, and to `here` (the run's topic on this instance, if followed
    /// here) when it can; gives its id, and whether someone asked the run
    /// to stop. Refused (`NoSuchRun`) once the run ended (its producer's
    /// lease lapsed, say) or is gone.
    fn run_append<'a>(
        &'a self,
        run: &'a str,
        event: Event,
        end: bool,
        here: Option<&'a Topic>,
    ) -> BoxFuture<'a, Result<(EventId, bool), (HubError, Event)>>;

    /// Asks the producer of `run`, on whichever instance holds it, to
    /// stop; gives whether the run still runs.
    fn stop_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<bool, HubError>>;

    /// The backend's state, for `Hub::health`. Cheap: no call out.
    fn health(&self) -> Health;

    /// Starts the backend's reader, which feeds the topics of `shared`
    /// until the hub is dropped.
    fn start(self: Arc<Self>, shared: Weak<Shared>);
}

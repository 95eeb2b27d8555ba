//! What a failed call to Redis means, and what the backend remembers of it
//! for [`Health`].
//!
//! - An **outage** passes by itself: Redis cannot be reached, a connection
//!   broke or timed out, or Redis says it cannot serve yet (`LOADING`, a
//!   failover: `READONLY`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, a
//!   script keeping it `BUSY`, too many clients):
//!   [`HubErrorKind::Unavailable`].
//! - A **refusal** does not: Redis answered and said no, and will say it
//!   again until someone changes something (the URL's password, user or
//!   database, an ACL, a renamed command, `maxmemory`, a cluster node
//!   where a plain Redis was meant, a key of another type under the
//!   hub's prefix). Every error reply not listed as an outage is one:
//!   [`HubErrorKind::Misconfigured`], logged at `error` (feature
//!   `tracing`) once per cause until the call it refused works again.
//!   (A TLS handshake that fails on the server's certificate is an I/O
//!   error to the client, so an outage here, though no wait mends it.)
//!
//! A connection is dropped only when it may be broken (an I/O error, a
//! timeout, a reply that does not parse) or leads to the wrong server (a
//! failover's `READONLY` or `MASTERDOWN`: the URL's name may lead to the new
//! primary now); an error reply leaves it in use, so a refused command costs
//! no new connection.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::hub::{health::Health, HubError, HubErrorKind};

/// The first wait before connecting again; it doubles on every connect
/// (jittered: half of it to all of it), up to [`RECONNECT_MAX`], and starts
/// again from here once a connection has worked for `RECONNECT_MAX`.
pub(super) const RECONNECT_FIRST: Duration = Duration::from_millis(50);

/// The longest wait between two connects.
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Whether `error` is a refusal (see the module documentation), rather than
/// an outage.
pub(super) fn is_refusal(error: &RedisError) -> bool {
    let outage = matches!(
        error.kind(),
        ErrorKind::Io
            | ErrorKind::Parse
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
    ) || matches!(
        error.code(),
        Some("LOADING" | "BUSY" | "NOREPLICAS" | "UNBLOCKED" | "MASTERDOWN" | "READONLY")
    ) || too_many_clients(error);
    !outage
}

/// Whether the connection `error` happened on must be dropped (see the
/// module documentation).
pub(super) fn drops_connection(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Io
            | ErrorKind::Parse
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
    ) || too_many_clients(error)
}

/// `ERR max number of clients reached`: Redis closes the connection after
/// it, and another may be accepted later.
fn too_many_clients(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.starts_with("max number of clients reached"))
}

/// What Redis said, in its own words where the client kept them (`OOM
/// command not allowed when used memory > 'maxmemory'`, `ERR unknown
/// command`), else what the client said.
pub(super) fn describe(error: &RedisError) -> String {
    if error.kind() == ErrorKind::AuthenticationFailed {
        // The client keeps only that AUTH failed, not Redis's words
        // (`WRONGPASS invalid username-password pair or user is disabled`).
        return "Redis refused the URL's credentials: authentication failed (a wrong password, \
                an unknown or disabled user, or a password where Redis expects none)"
            .into();
    }
    if error.is_timeout() {
        return "no answer within redis_timeout".into();
    }
    let text = error.to_string();
    let said = match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => return text,
    };
    if text.starts_with("Redis server refused to switch database") {
        return format!("Redis refused the URL's database (SELECT): {said}");
    }
    match error.kind() {
        ErrorKind::Server(
            ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::CrossSlot,
        ) => format!("{said} (a Redis Cluster node: this hub does not follow cluster redirects)"),
        _ => said,
    }
}

/// The hub's error for `error`: its class as the kind, what Redis said as
/// the detail.
pub(super) fn hub_error(error: &RedisError) -> HubError {
    HubError {
        kind: if is_refusal(error) {
            HubErrorKind::Misconfigured
        } else {
            HubErrorKind::Unavailable
        },
        detail: Some(describe(error).into()),
    }
}

/// What makes two refusals one cause, to log it once: what Redis said,
/// without where in which script (the publish and the loading of a topic
/// run different scripts, refused for one reason).
fn cause(error: &HubError) -> &str {
    let said = error.detail.as_deref().unwrap_or("");
    said.split_once(" script: ")
        .map_or(said, |(cause, _)| cause)
}

/// The calls whose refusals make the hub unhealthy until one of the same
/// works again.
#[derive(Clone, Copy)]
pub(super) enum Call {
    Publish,
    /// Loading or catching up a topic for a subscriber.
    Load,
    /// The reader's reads (and its watch of the streams).
    Read,
}

/// What the backend remembers for [`Health`]; one lock, taken on failures,
/// on the reader's reads (at most one per blocking read or batch of
/// entries) and by [`Health`] itself.
pub(super) struct Record {
    state: Mutex<State>,
    prefix: Box<str>,
}

struct State {
    /// The reader's last read succeeded.
    reading: bool,
    /// The reader is in an outage: its reads have failed since `since`.
    failing: bool,
    /// Since when the reader reads, or fails (from its first failed read);
    /// before either, since the hub was built.
    since: Instant,
    last_read: Option<Instant>,
    last_error: Option<(HubError, Instant)>,
    /// The reader's last failure, while it is failing.
    read_error: Option<HubError>,
    /// Refusals whose call has not worked since, by [`Call`].
    refused: [Option<HubError>; 3],
    /// Counts the reader's outages, so that the end of a grace applies only
    /// to the outage it was started for.
    outage: u64,
}

impl Record {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            state: Mutex::new(State {
                reading: false,
                failing: false,
                since: Instant::now(),
                last_read: None,
                last_error: None,
                read_error: None,
                refused: [None, None, None],
                outage: 0,
            }),
            prefix: prefix.into(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `call` failed with `error`: remembered, a new refusal logged, and the
    /// hub's error for it returned.
    pub(super) fn failed(&self, call: Call, error: &RedisError) -> HubError {
        let hub_error = hub_error(error);
        self.failed_with(call, &hub_error);
        hub_error
    }

    /// As [`failed`](Record::failed), with the hub's error already made.
    pub(super) fn failed_with(&self, call: Call, error: &HubError) {
        let mut state = self.state();
        state.last_error = Some((error.clone(), Instant::now()));
        if error.kind != HubErrorKind::Misconfigured {
            return;
        }
        let new = !state
            .refused
            .iter()
            .flatten()
            .any(|known| cause(known) == cause(error));
        state.refused[call as usize] = Some(error.clone());
        drop(state);
        #[cfg(feature = "tracing")]
        if new {
            tracing::error!(
                prefix = %self.prefix,
                error = %error,
                "hub: Redis refuses the hub's commands; this lasts until a setting changes"
            );
        }
        let _ = (new, &self.prefix);
    }

    /// `call` worked: a refusal of it is over.
    pub(super) fn worked(&self, call: Call) {
        let mut state = self.state();
        if state.refused[call as usize].is_some() {
            state.refused[call as usize] = None;
        }
    }

    /// A read succeeded; when it ends an outage, `recovered` runs (under
    /// the record's lock, so that the end of a grace cannot come in
    /// between) and this returns true.
    pub(super) fn read(&self, recovered: impl FnOnce()) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        state.last_read = Some(now);
        state.refused[Call::Read as usize] = None;
        if state.reading {
            return false;
        }
        let was_failing = state.failing;
        state.reading = true;
        state.failing = false;
        state.read_error = None;
        state.since = now;
        state.outage += 1;
        if was_failing {
            recovered();
        }
        was_failing
    }

    /// A read (or a connect of the reader) failed with `error`, an outage
    /// counting from `since` if this is its first failure; then returns the
    /// outage's number.
    pub(super) fn read_failed(&self, error: &RedisError, since: Instant) -> Option<u64> {
        let hub_error = self.failed(Call::Read, error);
        let mut state = self.state();
        state.read_error = Some(hub_error);
        if state.failing {
            return None;
        }
        state.reading = false;
        state.failing = true;
        state.since = since;
        state.outage += 1;
        Some(state.outage)
    }

    /// Runs `f` if outage `outage` still goes on, under the record's lock
    /// (so that a recovery does not come in between).
    pub(super) fn in_outage(&self, outage: u64, f: impl FnOnce()) {
        let state = self.state();
        if state.outage == outage && state.failing {
            f();
        }
    }

    /// The error new subscribers get once the reader has failed for longer
    /// than its grace: the reader's own, in its class.
    pub(super) fn outage_error(&self) -> HubError {
        let state = self.state();
        let (kind, said) = match &state.read_error {
            Some(error) => (error.kind, error.detail.as_deref().unwrap_or("")),
            None => (HubErrorKind::Unavailable, ""),
        };
        HubError {
            kind,
            detail: Some(
                format!(
                    "this instance has not read from Redis for longer than \
                     redis_outage_grace; its reads fail with: {said}"
                )
                .into(),
            ),
        }
    }

    pub(super) fn health(&self) -> Health {
        let state = self.state();
        let refused = state.refused.iter().flatten().last().cloned();
        Health::new(
            state.reading,
            state.since,
            state.last_read,
            state.last_error.clone(),
            refused,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error the client makes of an error reply `line`.
    fn reply(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(redis::Value::ServerError(error)) => error.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn outages_and_refusals_are_told_apart_and_only_broken_connections_dropped() {
        for (line, refusal, drops) in [
            (
                "LOADING Redis is loading the dataset in memory",
                false,
                false,
            ),
            (
                "READONLY You can't write against a read only replica.",
                false,
                true,
            ),
            ("MASTERDOWN Link with MASTER is down", false, true),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                false,
                false,
            ),
            ("CLUSTERDOWN The cluster is down", false, false),
            ("BUSY Redis is busy running a script.", false, false),
            ("ERR max number of clients reached", false, true),
            ("NOAUTH Authentication required.", true, false),
            ("WRONGPASS invalid username-password pair", true, false),
            (
                "NOPERM this user has no permissions to run the 'xadd' command",
                true,
                false,
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                true,
                false,
            ),
            ("ERR unknown command 'XADD'", true, false),
            ("MOVED 3999 127.0.0.1:6381", true, false),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                true,
                false,
            ),
            (
                "MISCONF Redis is configured to save RDB snapshots",
                true,
                false,
            ),
        ] {
            let error = reply(line);
            assert_eq!(is_refusal(&error), refusal, "{line}");
            assert_eq!(drops_connection(&error), drops, "{line}");
            let said = describe(&error);
            assert!(said.starts_with(line), "{line}: {said}");
        }
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!is_refusal(&io) && drops_connection(&io));
        let late = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(!is_refusal(&late) && drops_connection(&late));
        assert_eq!(describe(&late), "no answer within redis_timeout");
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert!(is_refusal(&auth) && !drops_connection(&auth));
        assert!(describe(&auth).contains("credentials"));
    }

    #[test]
    fn a_refusal_is_remembered_until_its_call_works_and_the_reader_counts_outages() {
        let record = Record::new("p:");
        assert!(!record.health().is_healthy(), "not read yet");
        assert!(!record.read(|| unreachable!("no outage to end")));
        assert!(record.health().is_healthy());
        let error = record.failed(Call::Publish, &reply("OOM command not allowed"));
        assert_eq!(error.kind(), HubErrorKind::Misconfigured);
        let health = record.health();
        assert!(health.is_connected() && !health.is_healthy(), "{health}");
        record.worked(Call::Load);
        assert!(
            !record.health().is_healthy(),
            "another call working is not news"
        );
        record.worked(Call::Publish);
        assert!(record.health().is_healthy());
        assert!(
            record.health().last_error().is_some(),
            "kept after recovery"
        );

        let since = Instant::now();
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let outage = record.read_failed(&refused, since).expect("a new outage");
        assert_eq!(
            record.read_failed(&refused, Instant::now()),
            None,
            "the same outage"
        );
        let health = record.health();
        assert!(
            !health.is_connected() && health.since() == since,
            "{health}"
        );
        assert_eq!(record.outage_error().kind(), HubErrorKind::Unavailable);
        let mut ran = false;
        record.in_outage(outage, || ran = true);
        assert!(ran);
        let mut ended = false;
        assert!(record.read(|| ended = true));
        assert!(ended);
        record.in_outage(outage, || panic!("that outage is over"));
    }
}

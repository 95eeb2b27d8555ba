//! What the three Rust load-test servers share, so that they differ only in
//! how they produce event streams: the endpoints, the broadcast hub behind
//! `/sse/live` and `/publish`, the payload and the clock.
//!
//! Start-up protocol (the Node server follows it too): the server binds
//! `127.0.0.1:0`, prints its port on one line of stdout, and exits when its
//! stdin closes, so the harness stops it by closing the pipe or by its PID.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use futures_util::{stream, Stream};
use tokio::sync::broadcast::{self, error::RecvError};

/// The data of every burst event: 64 bytes.
pub const PAYLOAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Where every server listens: an ephemeral port on loopback.
pub const ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The value of `key` in a query string, as a count; `None` when it is
/// missing or not a number.
pub fn query_u64(query: Option<&str>, key: &str) -> Option<u64> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
}

/// The raw value of `key` in a query string (not percent-decoded); `None`
/// when it is missing or empty.
pub fn query_str<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == key)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /sse/burst?n=N`
    Burst { n: u64 },
    /// `GET /sse/live`
    Live,
    /// `POST /publish?count=K`
    Publish { count: u64 },
    /// A known endpoint with a bad or missing count: a 400 with this text.
    BadRequest(&'static str),
    /// Anything else: a 404.
    NotFound,
}

/// The route of a request, from its method, path and query.
pub fn route(method: &str, path: &str, query: Option<&str>) -> Route {
    match (method, path) {
        ("GET", "/sse/burst") => match query_u64(query, "n") {
            Some(n) => Route::Burst { n },
            None => Route::BadRequest("n must be a count\n"),
        },
        ("GET", "/sse/live") => Route::Live,
        ("POST", "/publish") => match query_u64(query, "count") {
            Some(count) => Route::Publish { count },
            None => Route::BadRequest("count must be a count\n"),
        },
        _ => Route::NotFound,
    }
}

/// `POST /runs?tokens=N&rate=R&bytes=B`: a run whose producer sends N
/// token events of B bytes of data, R a second (the first at once), then
/// its end.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RunRequest {
    pub tokens: u64,
    /// Token events per second, 1 to 10,000.
    pub rate: u64,
    /// The data of each token event, 1 byte to 64 KiB.
    pub bytes: usize,
}

impl RunRequest {
    /// The run asked for by a query; a 400's text when a count is missing
    /// or out of range.
    pub fn from_query(query: Option<&str>) -> Result<RunRequest, &'static str> {
        let tokens = query_u64(query, "tokens").ok_or("tokens must be a count\n")?;
        let rate = query_u64(query, "rate")
            .filter(|rate| (1..=10_000).contains(rate))
            .ok_or("rate must be 1 to 10000 tokens a second\n")?;
        let bytes = query_u64(query, "bytes")
            .filter(|bytes| (1..=64 * 1024).contains(bytes))
            .ok_or("bytes must be 1 to 65536\n")?;
        Ok(RunRequest {
            tokens,
            rate,
            bytes: bytes as usize,
        })
    }

    /// The time between two tokens.
    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1) / self.rate as u32
    }
}

/// The data of a run's `n`-th token event (from 1): `n` in decimal, padded
/// with dots to `bytes` bytes (longer only when `n` has more digits).
pub fn token_data(n: u64, bytes: usize) -> String {
    let mut data = n.to_string();
    let pad = bytes.saturating_sub(data.len());
    data.extend(std::iter::repeat_n('.', pad));
    data
}

/// The type and data of the event that ends a run (tower-sse's default
/// end of a completed run, which the floor writes by hand).
pub const RUN_END_EVENT: &str = "run-end";
pub const RUN_END_DATA: &str = "{\"outcome\":\"completed\"}";

/// The broadcast behind `/sse/live`: each server stores what it sends to
/// every subscriber (encoded bytes, or what it encodes per subscriber).
pub struct Hub<T> {
    sender: broadcast::Sender<T>,
    sequence: AtomicU64,
}

impl<T: Clone + Send + 'static> Hub<T> {
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            sequence: AtomicU64::new(0),
        }
    }

    /// Publishes `count` events, each built by `make` from its id (from 1)
    /// and its send time ([`now_ns`]); returns the number of subscribers.
    pub fn publish(&self, count: u64, mut make: impl FnMut(u64, u64) -> T) -> usize {
        for _ in 0..count {
            let id = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = self.sender.send(make(id, now_ns()));
        }
        self.sender.receiver_count()
    }

    /// Everything published from now on. A subscriber that falls more than
    /// 1,024 events behind skips the ones it lost (the client counts them
    /// as not delivered).
    pub fn subscribe(&self) -> impl Stream<Item = T> + Send + 'static {
        stream::unfold(self.sender.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(item) => return Some((item, receiver)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }
}

impl<T: Clone + Send + 'static> Default for Hub<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch: what live events
/// carry, so that the client (another process) can compute latency.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// Whether the harness asked for `TCP_NODELAY` on every accepted socket
/// (`LOAD_NODELAY=1`, the `runs` mode): without it, the write of a
/// stream's first event waits for the client's delayed acknowledgement of
/// the response head (40 ms on Linux), and that is what a time to the
/// first byte would measure.
pub fn nodelay_asked() -> bool {
    std::env::var("LOAD_NODELAY").is_ok_and(|value| value == "1")
}

/// Prints the port and arranges for the process to exit when stdin closes.
pub fn announce(port: u16) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{port}");
    let _ = stdout.flush();
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_64_bytes() {
        assert_eq!(PAYLOAD.len(), 64);
    }

    #[test]
    fn routes_are_the_three_endpoints_with_their_counts() {
        assert_eq!(
            route("GET", "/sse/burst", Some("n=5")),
            Route::Burst { n: 5 }
        );
        assert_eq!(route("GET", "/sse/live", None), Route::Live);
        assert_eq!(
            route("POST", "/publish", Some("count=0")),
            Route::Publish { count: 0 }
        );
        assert!(matches!(
            route("GET", "/sse/burst", None),
            Route::BadRequest(_)
        ));
        assert!(matches!(
            route("POST", "/publish", Some("count=-1")),
            Route::BadRequest(_)
        ));
        assert_eq!(route("POST", "/sse/live", None), Route::NotFound);
        assert_eq!(route("GET", "/publish", Some("count=1")), Route::NotFound);
    }

    #[tokio::test]
    async fn a_subscriber_gets_what_is_published_after_it_subscribed() {
        use futures_util::StreamExt;
        let hub = Hub::new();
        assert_eq!(hub.publish(1, |id, _| id), 0);
        let mut events = Box::pin(hub.subscribe());
        assert_eq!(hub.publish(2, |id, _| id), 1);
        assert_eq!(events.next().await, Some(2));
        assert_eq!(events.next().await, Some(3));
    }

    #[test]
    fn a_run_request_reads_its_three_counts() {
        assert_eq!(
            RunRequest::from_query(Some("tokens=100&rate=50&bytes=64")),
            Ok(RunRequest {
                tokens: 100,
                rate: 50,
                bytes: 64
            })
        );
        assert!(RunRequest::from_query(Some("tokens=100&rate=0&bytes=64")).is_err());
        assert!(RunRequest::from_query(Some("tokens=100&rate=50")).is_err());
        assert!(RunRequest::from_query(None).is_err());
        let period = RunRequest::from_query(Some("tokens=1&rate=50&bytes=1"))
            .unwrap()
            .period();
        assert_eq!(period, std::time::Duration::from_millis(20));
    }

    #[test]
    fn token_data_is_the_number_padded_to_its_size() {
        assert_eq!(token_data(42, 6), "42....");
        assert_eq!(token_data(12345, 3), "12345");
        assert_eq!(token_data(7, 64).len(), 64);
    }

    #[test]
    fn query_finds_the_named_count() {
        assert_eq!(query_u64(Some("n=10"), "n"), Some(10));
        assert_eq!(query_u64(Some("a=1&count=7"), "count"), Some(7));
        assert_eq!(query_u64(Some("count=7"), "n"), None);
        assert_eq!(query_u64(Some("n=ten"), "n"), None);
        assert_eq!(query_u64(Some("n"), "n"), None);
        assert_eq!(query_u64(None, "n"), None);
    }

    #[test]
    fn query_finds_the_named_text() {
        assert_eq!(query_str(Some("count=1&topic=t12"), "topic"), Some("t12"));
        assert_eq!(query_str(Some("topic="), "topic"), None);
        assert_eq!(query_str(Some("topics=5"), "topic"), None);
        assert_eq!(query_str(None, "topic"), None);
    }
}

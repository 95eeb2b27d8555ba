//! What the three Rust load-test servers share, so that they differ only in
//! how they produce event streams.
//!
//! Start-up protocol (the Node server follows it too): the server binds
//! `127.0.0.1:0`, prints its port on one line of stdout, and exits when its
//! stdin closes, so the harness stops it by closing the pipe or by its PID.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr},
    time::{SystemTime, UNIX_EPOCH},
};

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

/// Wall-clock time in nanoseconds since the Unix epoch: what live events
/// carry, so that the client (another process) can compute latency.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
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
    fn query_finds_the_named_count() {
        assert_eq!(query_u64(Some("n=10"), "n"), Some(10));
        assert_eq!(query_u64(Some("a=1&count=7"), "count"), Some(7));
        assert_eq!(query_u64(Some("count=7"), "n"), None);
        assert_eq!(query_u64(Some("n=ten"), "n"), None);
        assert_eq!(query_u64(Some("n"), "n"), None);
        assert_eq!(query_u64(None, "n"), None);
    }
}

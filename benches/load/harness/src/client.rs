//! The load client: HTTP/1.1 connections from hyper's client, events parsed
//! by the `eventsource-stream` crate (a parser this project did not write),
//! on loopback only, every wait bounded.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{stream, StreamExt, TryStreamExt};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::{
    body::Incoming,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use load_common::{now_ns, PAYLOAD};
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};

use crate::{
    measure,
    servers::{Kind, Server, HUB10_SET},
    Error,
};

/// At most this many connections are being opened at once (the listen
/// backlog drops connections beyond a few hundred).
pub(crate) const OPENING_AT_ONCE: usize = 64;
/// How long opening one connection, or one request, may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, Error> {
    let socket = TcpStream::connect(addr).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(socket)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

pub(crate) async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    method: Method,
    path: &str,
) -> Result<Response<Incoming>, Error> {
    send_after(sender, method, path, None).await
}

/// Sends a request, with a `Last-Event-ID` header when `last_event_id` is
/// given.
async fn send_after(
    sender: &mut SendRequest<Empty<Bytes>>,
    method: Method,
    path: &str,
    last_event_id: Option<&str>,
) -> Result<Response<Incoming>, Error> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let request = request.body(Empty::new())?;
    sender.ready().await?;
    Ok(sender.send_request(request).await?)
}

/// Opens a connection and a GET of an event stream; returns the body once
/// the response head has arrived.
async fn open_stream(addr: SocketAddr, path: &str) -> Result<Incoming, Error> {
    open_stream_after(addr, path, None).await
}

/// [`open_stream`], resuming after `last_event_id`.
async fn open_stream_after(
    addr: SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
) -> Result<Incoming, Error> {
    let opening = async {
        let mut sender = connect(addr).await?;
        let response = send_after(&mut sender, Method::GET, path, last_event_id).await?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if response.status() != StatusCode::OK || !content_type.starts_with("text/event-stream") {
            return Err(format!(
                "GET {path}: {} with content type {content_type:?}",
                response.status()
            )
            .into());
        }
        Ok(response.into_body())
    };
    timeout(REQUEST_TIMEOUT, opening)
        .await
        .map_err(|_| format!("GET {path}: no response in {REQUEST_TIMEOUT:?}"))?
}

/// Opens `count` event streams, [`OPENING_AT_ONCE`] at a time.
pub(crate) async fn open_streams(
    addr: SocketAddr,
    path: &str,
    count: usize,
) -> Result<Vec<Incoming>, Error> {
    stream::iter(0..count)
        .map(|_| open_stream(addr, path))
        .buffer_unordered(OPENING_AT_ONCE)
        .try_collect()
        .await
}

/// Opens one event stream per path, [`OPENING_AT_ONCE`] at a time; the
/// bodies in the order of `paths`.
pub(crate) async fn open_paths(addr: SocketAddr, paths: &[String]) -> Result<Vec<Incoming>, Error> {
    stream::iter(paths)
        .map(|path| open_stream(addr, path))
        .buffered(OPENING_AT_ONCE)
        .try_collect()
        .await
}

/// Reads one burst of `n` events and checks that every id arrived, in
/// order, with its data.
async fn read_burst(addr: SocketAddr, n: u64) -> Result<(), Error> {
    let body = open_stream(addr, &format!("/sse/burst?n={n}")).await?;
    let mut events = body.into_data_stream().eventsource();
    for expected in 1..=n {
        let event = match timeout(REQUEST_TIMEOUT, events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(error))) => {
                return Err(format!("burst: after {} events: {error}", expected - 1).into())
            }
            Ok(None) => {
                return Err(format!(
                    "burst: the stream ended after {} of {n} events",
                    expected - 1
                )
                .into())
            }
            Err(_) => {
                return Err(format!("burst: stalled after {} of {n} events", expected - 1).into())
            }
        };
        if event.id.parse::<u64>().ok() != Some(expected) {
            return Err(format!("burst: event {expected} arrived with id {:?}", event.id).into());
        }
        if event.data != PAYLOAD {
            return Err(
                format!("burst: event {expected} arrived with data {:?}", event.data).into(),
            );
        }
    }
    // The stream may stay open (the Node recipe never ends its streams): the
    // burst is complete with its last id, and the connection is dropped.
    Ok(())
}

pub struct Burst {
    pub cpu_ns_per_event: f64,
    pub events_per_second: f64,
}

/// `connections` clients, each reading a burst of `n` events at once.
pub async fn burst(server: &Server, connections: usize, n: u64) -> Result<Burst, Error> {
    let cpu_before = measure::cpu_ns(server.pid())?;
    let started = Instant::now();
    let readers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(read_burst(server.addr, n)))
        .collect();
    for reader in readers {
        reader.await??;
    }
    let wall = started.elapsed();
    let cpu = measure::cpu_ns(server.pid())? - cpu_before;
    let events = (connections as u64 * n) as f64;
    Ok(Burst {
        cpu_ns_per_event: cpu as f64 / events,
        events_per_second: events / wall.as_secs_f64(),
    })
}

pub struct FanOut {
    pub expected: u64,
    pub delivered: u64,
    pub latencies_ns: Vec<u64>,
    pub cpu_ns_per_delivery: f64,
}

/// Asks the server to publish `count` events; returns its subscriber count.
pub(crate) async fn publish(
    sender: &mut SendRequest<Empty<Bytes>>,
    count: u64,
) -> Result<u64, Error> {
    post_count(sender, &format!("/publish?count={count}")).await
}

/// POSTs `path` (a `/publish` with its query, or a runs endpoint); returns the
/// count the server answers.
pub(crate) async fn post_count(
    sender: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<u64, Error> {
    let response = timeout(REQUEST_TIMEOUT, send(sender, Method::POST, path))
        .await
        .map_err(|_| format!("POST {path}: no response in {REQUEST_TIMEOUT:?}"))??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    if status != StatusCode::OK {
        return Err(format!("POST {path}: {status}: {text}").into());
    }
    text.trim()
        .parse()
        .map_err(|_| format!("POST {path}: {text:?} is not a count").into())
}

/// An event's place in its stream: the id itself (`42`), or the part after
/// the last dash for the hub's ids (`3fa9c0d2e1b7-42`).
fn sequence(id: &str) -> Option<u64> {
    id.rsplit('-').next()?.parse().ok()
}

/// Reads live events with ids 1..=k until the last or the deadline; returns
/// the latency of each (receive time minus the send time it carries).
async fn read_live(body: Incoming, k: u64, deadline: tokio::time::Instant) -> Vec<u64> {
    let mut events = body.into_data_stream().eventsource();
    let mut latencies = Vec::with_capacity(k as usize);
    let mut counted = 0;
    while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, events.next()).await {
        let received = now_ns();
        let Ok(sent) = event.data.parse::<u64>() else {
            continue;
        };
        // A set's id holds every topic's position, not the event's place:
        // its `live` events are counted instead (the set's other topics
        // stay quiet during a fan-out).
        let id = if is_set_id(&event.id) {
            if event.event != "live" {
                continue;
            }
            counted += 1;
            counted
        } else {
            let Some(id) = sequence(&event.id) else {
                continue;
            };
            id
        };
        if (1..=k).contains(&id) {
            latencies.push(received.saturating_sub(sent));
        }
        if id >= k {
            break;
        }
    }
    latencies
}

/// The id of a set's event (`t` and base64url): the hub's others are
/// `<hex epoch>-<seq>`, Redis's `<ms>-<seq>`, the other servers' numbers.
fn is_set_id(id: &str) -> bool {
    id.starts_with('t')
}

/// `connections` idle subscribers, then `k` events published at `rate`
/// per second.
pub async fn fan_out(
    server: &Server,
    connections: usize,
    k: u64,
    rate: f64,
) -> Result<FanOut, Error> {
    let bodies = open_streams(server.addr, "/sse/live", connections).await?;
    let mut publisher = connect(server.addr).await?;
    let subscribers = publish(&mut publisher, 0).await?;
    if subscribers != connections as u64 {
        return Err(format!(
            "the {} server counts {subscribers} subscribers of {connections}",
            server.kind
        )
        .into());
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let deadline = tokio::time::Instant::now() + period * k as u32 + Duration::from_secs(10);
    let readers: Vec<_> = bodies
        .into_iter()
        .map(|body| tokio::spawn(read_live(body, k, deadline)))
        .collect();
    let cpu_before = measure::cpu_ns(server.pid())?;
    let mut ticks = tokio::time::interval(period);
    for _ in 0..k {
        ticks.tick().await;
        publish(&mut publisher, 1).await?;
    }
    let mut latencies_ns = Vec::with_capacity(connections * k as usize);
    for reader in readers {
        latencies_ns.extend(reader.await?);
    }
    let cpu = measure::cpu_ns(server.pid())? - cpu_before;
    let delivered = latencies_ns.len() as u64;
    Ok(FanOut {
        expected: connections as u64 * k,
        delivered,
        cpu_ns_per_delivery: cpu as f64 / delivered.max(1) as f64,
        latencies_ns,
    })
}

/// Reads one event within the request timeout.
async fn next_event(
    events: &mut (impl futures_util::Stream<Item = Result<eventsource_stream::Event, impl std::fmt::Display>>
              + Unpin),
) -> Result<eventsource_stream::Event, Error> {
    match timeout(REQUEST_TIMEOUT, events.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(error))) => Err(format!("the stream broke: {error}").into()),
        Ok(None) => Err("the stream ended".into()),
        Err(_) => Err(format!("no event in {REQUEST_TIMEOUT:?}").into()),
    }
}

/// Publishes one event to a live subscriber and returns its id.
async fn first_id(
    server: &Server,
    publisher: &mut SendRequest<Empty<Bytes>>,
) -> Result<String, Error> {
    let body = open_stream(server.addr, "/sse/live").await?;
    publish(publisher, 1).await?;
    let mut events = body.into_data_stream().eventsource();
    Ok(next_event(&mut events).await?.id)
}

/// Server CPU per replayed event: `behind` events published after one whose
/// id the clients know, then `clients` reconnects at once (as a burst opens
/// its connections) that each read the `behind` events they missed,
/// checked in order.
pub async fn replay(server: &Server, clients: usize, behind: u64) -> Result<f64, Error> {
    if server.kind == Kind::Hub10 {
        return replay_set(server, clients, behind).await;
    }
    let mut publisher = connect(server.addr).await?;
    let first = first_id(server, &mut publisher).await?;
    let first_seq = sequence(&first).ok_or("the first event has no sequence")?;
    publish(&mut publisher, behind).await?;
    let cpu_before = measure::cpu_ns(server.pid())?;
    let addr = server.addr;
    let first = &first;
    stream::iter(0..clients)
        .map(|_| async move {
            let body = open_stream_after(addr, "/sse/live", Some(first)).await?;
            let mut events = body.into_data_stream().eventsource();
            for k in 1..=behind {
                let event = next_event(&mut events).await?;
                if sequence(&event.id) != Some(first_seq + k) {
                    return Err::<(), Error>(
                        format!("replay: event {k} arrived with id {:?}", event.id).into(),
                    );
                }
            }
            Ok(())
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<()>>()
        .await?;
    let cpu = measure::cpu_ns(server.pid())? - cpu_before;
    Ok(cpu as f64 / (clients as u64 * behind) as f64)
}

/// [`replay`] for a set of [`HUB10_SET`] topics: `behind` events missed in
/// all, `behind / 10` per topic (published one to each topic in turn).
/// The resume point is the id of the last of one event published to each
/// topic; each reconnect reads the events it missed, checked per topic
/// (each topic's events in order of their send times, as many as
/// published, and no other type, so no gap).
async fn replay_set(server: &Server, clients: usize, behind: u64) -> Result<f64, Error> {
    let per_topic = (behind / HUB10_SET).max(1);
    let behind = per_topic * HUB10_SET;
    let mut publisher = connect(server.addr).await?;
    let body = open_stream(server.addr, "/sse/live").await?;
    post_count(&mut publisher, "/publish?count=1&spread=1").await?;
    let mut events = body.into_data_stream().eventsource();
    let mut first = String::new();
    let mut seen = 0;
    while seen < HUB10_SET {
        let event = next_event(&mut events).await?;
        if event.data.parse::<u64>().is_ok() {
            seen += 1;
            first = event.id;
        }
    }
    drop(events);
    post_count(
        &mut publisher,
        &format!("/publish?count={per_topic}&spread=1"),
    )
    .await?;
    let cpu_before = measure::cpu_ns(server.pid())?;
    let addr = server.addr;
    let first = &first;
    stream::iter(0..clients)
        .map(|_| async move {
            let body = open_stream_after(addr, "/sse/live", Some(first)).await?;
            let mut events = body.into_data_stream().eventsource();
            // Per topic (`live`, `live-1`, ..): events read, last send time.
            let mut topics = vec![(0u64, 0u64); HUB10_SET as usize];
            for k in 1..=behind {
                let event = next_event(&mut events).await?;
                let topic = match event.event.as_str() {
                    "live" => Some(0),
                    other => other
                        .strip_prefix("live-")
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n < HUB10_SET as usize),
                };
                let (Some(topic), Ok(sent)) = (topic, event.data.parse::<u64>()) else {
                    return Err::<(), Error>(
                        format!(
                            "replay: event {k} arrived as {:?} with data {:?}",
                            event.event, event.data
                        )
                        .into(),
                    );
                };
                let (read, last) = &mut topics[topic];
                if sent < *last {
                    return Err(format!("replay: {} out of order at event {k}", event.event).into());
                }
                *read += 1;
                *last = sent;
            }
            if let Some(topic) = topics.iter().position(|(read, _)| *read != per_topic) {
                return Err(format!(
                    "replay: topic {topic} of the set replayed {} events of {per_topic}",
                    topics[topic].0
                )
                .into());
            }
            Ok(())
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<()>>()
        .await?;
    let cpu = measure::cpu_ns(server.pid())? - cpu_before;
    Ok(cpu as f64 / (clients as u64 * behind) as f64)
}

/// Server memory per retained event beyond its encoded size: resident
/// memory before and after publishing `count` events that nobody reads
/// (the hub keeps them all), per event, minus the event's encoded size.
pub async fn retained(server: &Server, count: u64) -> Result<f64, Error> {
    let mut publisher = connect(server.addr).await?;
    let first = first_id(server, &mut publisher).await?;
    publish(&mut publisher, 1_000).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = measure::rss_bytes(server.pid())?;
    let mut left = count;
    while left > 0 {
        let now = left.min(10_000);
        publish(&mut publisher, now).await?;
        left -= now;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = measure::rss_bytes(server.pid())?;
    // `id: <epoch>-<seq>`, `data: <send time in ns>` and the blank line, the
    // sequence as long as the middle one's.
    let epoch = first.rsplit_once('-').map_or("", |(epoch, _)| epoch);
    let digits = (count / 2 + 1_000).to_string().len();
    let data = now_ns().to_string().len();
    let encoded = "id: ".len() + epoch.len() + 1 + digits + 1 + "data: ".len() + data + 1 + 1;
    Ok(after.saturating_sub(before) as f64 / count as f64 - encoded as f64)
}

/// Server memory per idle subscriber, in bytes: resident memory before and
/// after opening `connections` streams (after `warm_up` streams, so that
/// the runtime's first allocations are not counted).
/// Opens `count` connections that ask for an endless burst and never read,
/// with a small receive buffer, so that the server's side fills up.
async fn open_stalled(addr: SocketAddr, count: usize) -> Result<Vec<TcpStream>, Error> {
    // Endless in practice, and within every server's idea of a count
    // (JavaScript's safe integers included).
    let request = "GET /sse/burst?n=1000000000000000 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut socket = timeout(REQUEST_TIMEOUT, socket.connect(addr)).await??;
        socket.write_all(request.as_bytes()).await?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Waits until the server's CPU time stops growing (the floods of stalled
/// streams have filled every buffer): less than 1 ms of CPU in 300 ms.
async fn wait_until_quiet(pid: u32) -> Result<(), Error> {
    let started = Instant::now();
    let mut last = measure::cpu_ns(pid)?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = measure::cpu_ns(pid)?;
        if now - last < 1_000_000 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the server never went quiet with stalled clients".into());
        }
        last = now;
    }
}

/// Server memory per stalled stream: a client that asked for an endless
/// burst and stopped reading. `warm_up` such streams first, then
/// `connections` more; the resident memory they add, per stream.
pub async fn stalled(server: &Server, warm_up: usize, connections: usize) -> Result<f64, Error> {
    let _warm = open_stalled(server.addr, warm_up).await?;
    wait_until_quiet(server.pid()).await?;
    let before = measure::rss_bytes(server.pid())?;
    let _stalled = open_stalled(server.addr, connections).await?;
    wait_until_quiet(server.pid()).await?;
    let after = measure::rss_bytes(server.pid())?;
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}

/// `settle`: how long the streams stay open before the second reading (the
/// keep-alive comment of `ours` comes after 15 s).
pub async fn idle(
    server: &Server,
    warm_up: usize,
    connections: usize,
    settle: Duration,
) -> Result<f64, Error> {
    let _warm = open_streams(server.addr, "/sse/live", warm_up).await?;
    tokio::time::sleep(settle).await;
    let before = measure::rss_bytes(server.pid())?;
    let _idle = open_streams(server.addr, "/sse/live", connections).await?;
    tokio::time::sleep(settle).await;
    let after = measure::rss_bytes(server.pid())?;
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A one-shot server that answers any request with `head` and `body`,
    /// then closes the connection if the head says so, or else keeps it
    /// open (as the Node recipe does) until the returned sender is dropped.
    async fn serve_once(
        head: &'static str,
        body: String,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold, released) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(body.as_bytes()).await.unwrap();
            if head.contains("connection: close") {
                // The end of a close-delimited body.
                return;
            }
            let _ = released.await;
        });
        (addr, hold)
    }

    const CLOSE_DELIMITED: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    /// What express with ssestream sends: no chunked coding, no length.
    const NODE_RECIPE: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: identity\r\nconnection: keep-alive\r\n\r\n";

    fn events(ids: &[u64], data: &str) -> String {
        let mut body = String::from(":ok\n\n");
        for id in ids {
            body += &format!("id: {id}\ndata: {data}\n\n");
        }
        body
    }

    #[tokio::test]
    async fn a_complete_burst_passes_even_on_a_stream_that_stays_open() {
        let (addr, hold) = serve_once(NODE_RECIPE, events(&[1, 2, 3], PAYLOAD)).await;
        // The server holds the connection open until `hold` is dropped: a
        // client that waited for the end of the body would never return.
        let read = timeout(Duration::from_secs(30), read_burst(addr, 3)).await;
        assert!(read
            .expect("the client waited for the stream to end")
            .is_ok());
        drop(hold);
    }

    #[tokio::test]
    async fn a_missing_id_fails_the_burst() {
        let (addr, _hold) = serve_once(CLOSE_DELIMITED, events(&[1, 3, 4], PAYLOAD)).await;
        let error = read_burst(addr, 3).await.unwrap_err().to_string();
        assert!(error.contains("event 2 arrived with id \"3\""), "{error}");
    }

    #[tokio::test]
    async fn wrong_data_fails_the_burst() {
        let (addr, _hold) = serve_once(CLOSE_DELIMITED, events(&[1, 2], "short")).await;
        let error = read_burst(addr, 2).await.unwrap_err().to_string();
        assert!(error.contains("event 1 arrived with data"), "{error}");
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_fails_the_burst() {
        let (addr, _hold) = serve_once(CLOSE_DELIMITED, events(&[1, 2], PAYLOAD)).await;
        let error = read_burst(addr, 3).await.unwrap_err().to_string();
        assert!(error.contains("ended after 2 of 3"), "{error}");
    }

    #[tokio::test]
    async fn a_response_that_is_not_an_event_stream_is_refused() {
        let (addr, _hold) = serve_once(
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            String::new(),
        )
        .await;
        let error = read_burst(addr, 1).await.unwrap_err().to_string();
        assert!(error.contains("404"), "{error}");
    }
}

//! Graceful shutdown in bounded time whatever the clients do: the server
//! loops of the hyper and axum examples, 1,000 open streams of which 100
//! belong to clients that stopped reading (their socket buffers are full),
//! a grace period of 2 s. The server is done within the grace period plus
//! one second, every reading client gets its final frame and a clean end,
//! and the connections of the clients that stopped reading are closed.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod axum_example;

#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod hyper_example;

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::{stream, StreamExt as _};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::oneshot,
};
use tower_sse::{Event, EventStream, Shutdown, SseLayer};

const GRACE: Duration = Duration::from_secs(2);
const READERS: usize = 900;
const STALLED: usize = 100;

/// `/flood`: events as fast as the connection takes them (counted in
/// `produced`); any other path: one event, then silence.
fn respond(path: &str, produced: &Arc<AtomicU64>) -> http::Response<axum::body::Body> {
    if path == "/flood" {
        let produced = produced.clone();
        let flood = stream::repeat_with(move || {
            produced.fetch_add(1, Ordering::Relaxed);
            Event::new().data("x".repeat(1000))
        });
        let response = EventStream::new(flood).into_http_response();
        return response.map(axum::body::Body::new);
    }
    let hello = stream::iter([Event::new().data("hello")]).chain(stream::pending());
    EventStream::new(hello)
        .into_http_response()
        .map(axum::body::Body::new)
}

/// The server, on a runtime of its own in a thread of its own, as a
/// process would run it: the thread ends when the loop has returned and the
/// runtime has dropped what was left (as when `main` returns).
struct ServerThread {
    addr: SocketAddr,
    signal: oneshot::Sender<()>,
    done: std::sync::mpsc::Receiver<Instant>,
    produced: Arc<AtomicU64>,
}

fn start(framework: &'static str) -> ServerThread {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, stopped) = oneshot::channel::<()>();
    let (done_tx, done) = std::sync::mpsc::channel();
    let produced = Arc::new(AtomicU64::new(0));
    let counted = produced.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let shutdown = Shutdown::new();
            let signal = async move {
                let _ = stopped.await;
            };
            let result = match framework {
                "hyper" => {
                    let service = tower::ServiceBuilder::new()
                        .layer(SseLayer::new().shutdown(&shutdown))
                        .service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let response = respond(request.uri().path(), &counted);
                            async move { Ok::<_, Infallible>(response) }
                        });
                    hyper_example::serve_with_grace(listener, service, &shutdown, GRACE, signal)
                        .await
                }
                _ => {
                    let app = axum::Router::new()
                        .fallback(move |uri: http::Uri| {
                            let response = respond(uri.path(), &counted);
                            async move { response }
                        })
                        .layer(SseLayer::new().shutdown(&shutdown));
                    axum_example::serve_with_grace(listener, app, &shutdown, GRACE, signal).await
                }
            };
            result.unwrap();
        });
        drop(runtime);
        let _ = done_tx.send(Instant::now());
    });
    ServerThread {
        addr,
        signal,
        done,
        produced,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A client that reads the stream until the server closes it.
async fn reader(addr: SocketAddr) -> tokio::task::JoinHandle<Vec<u8>> {
    let request = b"GET /events HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n";
    let (mut socket, mut seen) = common::open_raw(addr, request, b"data: hello").await;
    tokio::spawn(async move {
        let _ = socket.read_to_end(&mut seen).await;
        seen
    })
}

/// A client that asks for a fast stream and never reads, with a small
/// receive buffer so that the server's side fills up.
async fn stalled(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut socket = socket.connect(addr).await.unwrap();
    socket
        .write_all(b"GET /flood HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    socket
}

async fn shutdown_is_bounded(framework: &'static str) {
    common::assert_open_files_allow(4 * (READERS + STALLED) as u64 + 200);
    let server = start(framework);
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(reader(server.addr).await);
    }
    let mut stalled_clients = Vec::new();
    for _ in 0..STALLED {
        stalled_clients.push(stalled(server.addr).await);
    }
    // Wait until the floods have filled every buffer and stopped.
    let mut last = 0;
    let waiting = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = server.produced.load(Ordering::Relaxed);
        if now > 0 && now == last {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the floods never stopped: are the clients reading?"
        );
        last = now;
    }
    eprintln!("{framework}: {last} events of 1 KB sit unread in {STALLED} stalled connections");

    let signalled = Instant::now();
    server.signal.send(()).unwrap();
    let done = tokio::task::spawn_blocking(move || {
        server
            .done
            .recv_timeout(GRACE + Duration::from_secs(10))
            .expect("the server thread ended")
    })
    .await
    .unwrap();
    let took = done - signalled;
    eprintln!("{framework}: the server was done {took:?} after the signal (grace {GRACE:?})");
    assert!(
        took <= GRACE + Duration::from_secs(1),
        "{framework}: done {took:?} after the signal, more than the grace period plus 1 s"
    );

    for reader in readers {
        let bytes = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("every reading client's connection closed")
            .unwrap();
        assert!(contains(&bytes, b"\nretry: "), "a final retry frame");
        assert!(bytes.ends_with(b"0\r\n\r\n"), "the stream ended cleanly");
    }
    for mut socket in stalled_clients {
        // What was sent is still there to read, then the connection ends.
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut sink))
            .await
            .expect("the stalled connection was closed by the server");
        assert!(read.is_err() || sink.starts_with(b"HTTP/1.1 200"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hyper_loop_ends_within_the_grace_period_with_stalled_clients() {
    shutdown_is_bounded("hyper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_loop_ends_within_the_grace_period_with_stalled_clients() {
    shutdown_is_bounded("axum").await;
}

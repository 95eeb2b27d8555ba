//! CloseLayer on real servers with real TCP clients: close reasons when the
//! client leaves, graceful shutdown with open streams, and no leaks.

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::Stream;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, Semaphore},
    task::JoinHandle,
};
use tower::ServiceBuilder;
use tower_sse::{
    CloseHandle, CloseLayer, CloseReason, Event, EventStream, KeepAliveLayer, Shutdown,
};

const KEEP_ALIVE: Duration = Duration::from_millis(200);

/// Events from a producer task.
struct Channel(mpsc::Receiver<Event>);

impl Stream for Channel {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }
}

/// A handler whose producer sends one event, then waits for the stream to
/// close and reports why on `reasons`.
fn handler(
    reasons: mpsc::UnboundedSender<(CloseReason, Instant)>,
) -> impl Fn(
    Request<Incoming>,
) -> std::future::Ready<Result<Response<EventStream<Channel>>, Infallible>>
       + Clone {
    move |request: Request<Incoming>| {
        let handle = request
            .extensions()
            .get::<CloseHandle>()
            .expect("CloseLayer put a handle in the request")
            .clone();
        let (tx, rx) = mpsc::channel(8);
        let reasons = reasons.clone();
        tokio::spawn(async move {
            let _ = tx.send(Event::new().data("hello")).await;
            let reason = handle.closed().await;
            let _ = reasons.send((reason, Instant::now()));
        });
        std::future::ready(Ok(EventStream::new(Channel(rx)).into_http_response()))
    }
}

struct Server {
    addr: SocketAddr,
    layer: CloseLayer,
    shutdown: Shutdown,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A hyper-util server with graceful shutdown: close layer, keep-alive
/// (200 ms) inside it, and `handler`. On `stop` it triggers the layer's
/// `Shutdown` and waits for every connection to close.
async fn start(reasons: mpsc::UnboundedSender<(CloseReason, Instant)>) -> Server {
    let shutdown = Shutdown::new();
    let layer = CloseLayer::builder().shutdown(&shutdown).build().unwrap();
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(
            KeepAliveLayer::builder()
                .interval(KEEP_ALIVE)
                .build()
                .unwrap(),
        )
        .service_fn(handler(reasons));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let trigger = shutdown.clone();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let service = hyper_util::service::TowerToHyperService::new(service.clone());
                    let connection = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        trigger.trigger();
        graceful.shutdown().await;
    });
    Server {
        addr,
        layer,
        shutdown,
        stop,
        task,
    }
}

/// A raw HTTP/1.1 client that has read the response head and the first
/// event.
async fn open_stream(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let request = b"GET /events HTTP/1.1\r\nhost: test\r\n\r\n";
    let (socket, seen) = common::open_raw(addr, request, b"data: hello").await;
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    (socket, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn client_leaves(reset: bool) -> (CloseReason, Duration) {
    let (reasons, mut seen) = mpsc::unbounded_channel();
    let server = start(reasons).await;
    let (socket, _) = open_stream(server.addr).await;
    if reset {
        socket.set_zero_linger().unwrap();
    }
    let left = Instant::now();
    drop(socket);
    let (reason, at) = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the producer learned within 5 s")
        .unwrap();
    drop(server);
    (reason, at - left)
}

#[tokio::test]
async fn a_client_that_closes_its_socket_is_client_gone_within_a_keep_alive_interval() {
    let (reason, after) = client_leaves(false).await;
    eprintln!("FIN: {reason:?} after {after:?}");
    assert_eq!(reason, CloseReason::ClientGone);
    // The first comment after the FIN is accepted by the kernel (which
    // answers with a reset); the next write fails. So: within two
    // intervals, plus scheduling slack.
    assert!(
        after < KEEP_ALIVE * 2 + Duration::from_millis(300),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_client_that_resets_its_socket_is_client_gone_within_a_keep_alive_interval() {
    let (reason, after) = client_leaves(true).await;
    eprintln!("RST: {reason:?} after {after:?}");
    assert_eq!(reason, CloseReason::ClientGone);
    assert!(after < KEEP_ALIVE + Duration::from_millis(300), "{after:?}");
}

#[tokio::test]
async fn ten_thousand_streams_opened_and_dropped_leave_nothing_open() {
    let (reasons, mut seen) = mpsc::unbounded_channel();
    let server = start(reasons).await;
    let addr = server.addr;
    // At most 64 connections at a time: the listen backlog is 128.
    let limit = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10_000 {
        let permit = limit.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let (socket, _) = open_stream(addr).await;
            socket.set_zero_linger().unwrap();
            drop((socket, permit));
        }));
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "bounded in time"
        );
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut client_gone = 0;
    while client_gone < 10_000 {
        let (reason, _) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("every producer learned")
            .unwrap();
        assert_eq!(reason, CloseReason::ClientGone);
        client_gone += 1;
    }
    // Handles are dropped by the producers after they report: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = server.layer.stats();
        if stats.open_streams == 0 && stats.live_handles == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still open: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("10,000 streams in {:?}", started.elapsed());
}

#[tokio::test]
async fn shutdown_with_a_thousand_open_streams_sends_each_a_final_frame_and_completes() {
    common::assert_open_files_allow(2_500);
    let (reasons, mut seen) = mpsc::unbounded_channel();
    let server = start(reasons).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(open_stream(server.addr).await);
    }
    assert_eq!(server.layer.stats().open_streams, 1000);

    let signalled = Instant::now();
    server.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("graceful shutdown completed within 5 s")
        .unwrap();
    eprintln!(
        "graceful shutdown of 1,000 streams took {:?}",
        signalled.elapsed()
    );
    assert!(server.shutdown.is_triggered());

    let mut readers = Vec::new();
    for (mut socket, mut seen_bytes) in clients {
        readers.push(tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut seen_bytes))
                    .await
                    .expect("the connection closed");
            seen_bytes
        }));
    }
    for reader in readers {
        let bytes = reader.await.unwrap();
        assert!(
            contains(&bytes, b"\nretry: ") || contains(&bytes, b"\r\nretry: "),
            "a final retry frame"
        );
        // The chunked body ended properly: the last chunk is there.
        assert!(bytes.ends_with(b"0\r\n\r\n"), "the stream ended cleanly");
    }
    for _ in 0..1000 {
        let (reason, _) = seen.recv().await.unwrap();
        assert_eq!(reason, CloseReason::Shutdown);
    }
}

#[tokio::test]
async fn axum_with_graceful_shutdown_completes_while_clients_are_connected() {
    use axum::{routing::get, Extension, Router};

    let shutdown = Shutdown::new();
    let app = Router::new()
        .route(
            "/events",
            get(|Extension(handle): Extension<CloseHandle>| async move {
                let (tx, rx) = mpsc::channel(8);
                tokio::spawn(async move {
                    let _ = tx.send(Event::new().data("hello")).await;
                    handle.closed().await;
                });
                EventStream::new(Channel(rx)).into_http_response()
            }),
        )
        .layer(CloseLayer::builder().shutdown(&shutdown).build().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let trigger = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                trigger.trigger();
            })
            .await
            .unwrap();
    });
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(open_stream(addr).await);
    }
    let signalled = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("axum's graceful shutdown completed within 1 s of the signal")
        .unwrap();
    eprintln!("axum stopped {:?} after the signal", signalled.elapsed());
    for (mut socket, mut bytes) in clients {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.read_to_end(&mut bytes)).await;
        assert!(contains(&bytes, b"retry: "));
    }
}

/// hyper sends no body for `HEAD` and drops it unread: that stream is
/// complete, not a client that left.
#[tokio::test]
async fn a_head_request_is_completed_not_client_gone() {
    let (reasons, mut seen) = mpsc::unbounded_channel();
    let server = start(reasons).await;
    let request = b"HEAD /events HTTP/1.1\r\nhost: test\r\n\r\n";
    let (_socket, head) = common::open_raw(server.addr, request, b"\r\n\r\n").await;
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let (reason, _) = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("a reason within 5 s")
        .unwrap();
    assert_eq!(reason, CloseReason::Completed);
}

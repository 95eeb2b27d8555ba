//! A real hyper server on 127.0.0.1:0 and a real client that parses event
//! streams with an independent parser (the `eventsource-stream` crate).
#![allow(dead_code)] // each test file uses part of this module

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyDataStream, Empty};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, task::JoinHandle};

/// A server running on a loopback port; aborted when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on 127.0.0.1:0 over HTTP/1.1 and HTTP/2 (prior
/// knowledge), each connection on its own task.
pub async fn serve<F, Fut, B>(handler: F) -> TestServer
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_service(tower::service_fn(move |request| {
        let response = handler(request);
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn get(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("the server answered within 10 s")
        .expect("the request succeeded")
}

/// The events a real parser reads from a response body.
pub fn parse_events(
    response: Response<Incoming>,
) -> impl Stream<Item = eventsource_stream::Event> + Unpin {
    BodyDataStream::new(response.into_body())
        .eventsource()
        .map(|event| event.expect("the stream parses as an event stream"))
}

/// Serves a tower `service` on 127.0.0.1:0 over HTTP/1.1 and HTTP/2 (prior
/// knowledge), each connection on its own task.
pub async fn serve_service<S, B>(service: S) -> TestServer
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    TestServer { addr, task }
}

/// A client that speaks HTTP/2 with prior knowledge (h2c).
pub fn h2c_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Fails when an environment variable demands a tool that is missing, and
/// otherwise says loudly that the test is skipped. Returns whether to run.
pub fn tool_available(tool: &str, path: Option<&std::path::Path>, require_var: &str) -> bool {
    if path.is_some() {
        return true;
    }
    if std::env::var_os(require_var).is_some_and(|value| value == "1") {
        panic!("{tool} is required ({require_var}=1) but was not found");
    }
    eprintln!("SKIPPED: {tool} is not installed; set {require_var}=1 to make this a failure");
    false
}

/// The events a real parser reads until the body ends or breaks, and whether
/// it broke (the connection was cut before the body's end).
pub async fn events_until_end(
    response: Response<Incoming>,
) -> (Vec<eventsource_stream::Event>, bool) {
    let mut stream = BodyDataStream::new(response.into_body()).eventsource();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => events.push(event),
            Err(_) => return (events, true),
        }
    }
    (events, false)
}

/// The events a real parser reads from bytes.
pub async fn parse_bytes(bytes: Vec<u8>) -> Vec<eventsource_stream::Event> {
    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(bytes))])
        .eventsource()
        .map(|event| event.expect("the bytes parse as an event stream"))
        .collect()
        .await
}

/// Sends `request` as raw bytes and reads until `until` has arrived (the
/// first event, say); returns the socket and what was read.
pub async fn open_raw(
    addr: SocketAddr,
    request: &[u8],
    until: &[u8],
) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(until.len()).any(|window| window == until) {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .expect("the awaited bytes within 10 s")
            .unwrap();
        assert!(n > 0, "the server closed before the awaited bytes");
        seen.extend_from_slice(&buf[..n]);
    }
    (socket, seen)
}

/// Raises the soft open-file limit to `needed` when the hard limit allows
/// (a test that holds many sockets has both ends here), and fails with a
/// clear message when it does not.
pub fn assert_open_files_allow(needed: u64) {
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) => assert!(
            limit >= needed,
            "this test needs {needed} open files and the hard limit allows {limit}: \
             raise it (ulimit -Hn) to run it"
        ),
        Err(error) => panic!("cannot read the open-file limit: {error}"),
    }
}

/// Headless Chromium, found on `PATH` or at `/usr/bin/chromium`.
pub fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|candidate| candidate.is_file())
}

/// Headless Chromium; killed by its PID and its profile removed on drop.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

pub fn launch_chromium(binary: &PathBuf, url: &str, tag: u16) -> Chromium {
    let profile =
        std::env::temp_dir().join(format!("tower-sse-chromium-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    Chromium { child, profile }
}

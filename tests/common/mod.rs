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

/// A browser engine the tests drive headless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

impl Browser {
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
        }
    }

    /// The variable that makes a missing browser a failure (`.ci/run` sets
    /// both).
    pub fn require_var(self) -> &'static str {
        match self {
            Browser::Chromium => "TOWER_SSE_REQUIRE_CHROMIUM",
            Browser::Firefox => "TOWER_SSE_REQUIRE_FIREFOX",
        }
    }

    fn find(self) -> Option<PathBuf> {
        let names: &[&str] = match self {
            Browser::Chromium => &["chromium", "chromium-browser"],
            Browser::Firefox => &["firefox-esr", "firefox"],
        };
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .chain(
                names
                    .iter()
                    .map(|name| PathBuf::from("/usr/bin").join(name)),
            )
            .find(|candidate| candidate.is_file())
    }

    /// The browser's program, or `None` after saying loudly that the test
    /// is skipped (a failure when its variable demands it).
    pub fn available(self) -> Option<PathBuf> {
        let binary = self.find();
        if tool_available(self.name(), binary.as_deref(), self.require_var()) {
            binary
        } else {
            None
        }
    }

    /// Starts the browser headless at `url`, with a fresh profile.
    pub fn launch(self, binary: &std::path::Path, url: &str, tag: u16) -> BrowserProcess {
        self.launch_with(binary, url, tag, &[])
    }

    /// [`Browser::launch`] with more command-line arguments (before the
    /// URL), such as Chromium's `--remote-debugging-port=0`.
    pub fn launch_with(
        self,
        binary: &std::path::Path,
        url: &str,
        tag: u16,
        args: &[&str],
    ) -> BrowserProcess {
        use std::os::unix::process::CommandExt as _;
        let profile = std::env::temp_dir().join(format!(
            "tower-sse-{}-{}-{tag}",
            self.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut command = Command::new(binary);
        match self {
            Browser::Chromium => {
                command
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
                    .arg(format!("--user-data-dir={}", profile.display()));
            }
            Browser::Firefox => {
                // No first-run pages, no update or telemetry traffic.
                std::fs::write(profile.join("user.js"), FIREFOX_PREFS).unwrap();
                command
                    .args(["--headless", "--no-remote", "--profile"])
                    .arg(&profile)
                    .env("MOZ_HEADLESS", "1");
            }
        }
        let child = command
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that its helper processes go with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("{} starts: {error}", self.name()));
        BrowserProcess { child, profile }
    }
}

const FIREFOX_PREFS: &str = r#"user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.auto", false);
user_pref("extensions.update.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
"#;

/// A headless browser; its process group is killed and its profile removed
/// on drop.
pub struct BrowserProcess {
    child: Child,
    profile: PathBuf,
}

impl BrowserProcess {
    /// The browser's profile directory (Chromium's `--user-data-dir`).
    pub fn profile(&self) -> &std::path::Path {
        &self.profile
    }
}

impl Drop for BrowserProcess {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One test per engine for each check given, `mod chromium` and `mod
/// firefox`, each calling the file's `async fn check(Browser)`.
#[allow(unused_macros)] // each test file uses part of this module
macro_rules! in_every_browser {
    ($($check:ident),* $(,)?) => {
        mod chromium {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check($crate::common::Browser::Chromium).await;
                }
            )*
        }
        mod firefox {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check($crate::common::Browser::Firefox).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use in_every_browser;

/// A number no other call in this process returns, for names of temporary
/// directories.
pub fn random_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos() as u64);
    (NEXT.fetch_add(1, Ordering::Relaxed) << 32) | nanos
}

pub mod devtools;
pub mod nginx;
pub mod redis_server;

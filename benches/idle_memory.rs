//! Server memory per idle event-stream connection: a bare hyper server with
//! an `EventStream` body against the same server behind the whole tower-sse
//! stack (close with a shutdown trigger, headers, no-buffering, keep-alive).
//!
//! A third server, the bare handler as a tower service served through
//! hyper-util's adapter, splits what tower's adapter costs from what the
//! layers cost. `cargo bench --bench idle_memory` runs each server in a
//! child process of its own, alternating, three rounds. Each round opens 200 connections to
//! warm up, reads the server's resident memory (`VmRSS`), opens 2,000 more
//! idle streams (each has received one event), and reads it again: the
//! difference over 2,000 is the memory per idle stream.

use std::{
    convert::Infallible,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

const WARM_UP: usize = 200;
const MEASURED: usize = 2_000;
const ROUNDS: usize = 3;
const MODE: &str = "TOWER_SSE_IDLE_SERVER";

fn main() {
    match std::env::var(MODE).as_deref() {
        Ok("bare") => serve(Mode::Bare),
        Ok("tower") => serve(Mode::Tower),
        Ok("stack") => serve(Mode::Stack),
        _ => measure(),
    }
}

#[derive(Clone, Copy)]
enum Mode {
    /// hyper's own `service_fn`.
    Bare,
    /// A tower `service_fn` through hyper-util's `TowerToHyperService`, as
    /// every tower app is served (axum's `serve` included): the adapter
    /// keeps room for the request in each connection's response future.
    Tower,
    /// The same tower service behind the whole stack.
    Stack,
}

/// The server side: prints its port, serves until stdin closes.
fn serve(mode: Mode) {
    use futures_util::{stream, StreamExt};
    use hyper::{body::Incoming, server::conn::http1};
    use hyper_util::{rt::TokioIo, service::TowerToHyperService};
    use tower::ServiceBuilder;
    use tower_sse::{
        CloseLayer, Event, EventStream, KeepAliveLayer, NoBufferingLayer, Shutdown, SseHeadersLayer,
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        // Stop when the parent closes our stdin.
        std::thread::spawn(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            std::process::exit(0);
        });
        let handler = |_request: http::Request<Incoming>| async {
            let events =
                stream::once(async { Event::new().data("hello") }).chain(stream::pending());
            Ok::<_, Infallible>(EventStream::new(events).into_http_response())
        };
        // Built once and cloned per connection, as an app (and axum's
        // `serve`) does: a layer made per connection would count its
        // configuration (about 250 B) in every stream.
        let shutdown = Shutdown::new();
        let stack = ServiceBuilder::new()
            .layer(CloseLayer::builder().shutdown(&shutdown).build().unwrap())
            .layer(SseHeadersLayer::new())
            .layer(NoBufferingLayer::new())
            .layer(KeepAliveLayer::new())
            .service_fn(handler);
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let io = TokioIo::new(socket);
            match mode {
                Mode::Stack => {
                    let service = TowerToHyperService::new(stack.clone());
                    tokio::spawn(http1::Builder::new().serve_connection(io, service));
                }
                Mode::Tower => {
                    let service = TowerToHyperService::new(tower::service_fn(handler));
                    tokio::spawn(http1::Builder::new().serve_connection(io, service));
                }
                Mode::Bare => {
                    let service = hyper::service::service_fn(handler);
                    tokio::spawn(http1::Builder::new().serve_connection(io, service));
                }
            }
        }
    });
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mode: &str) -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(MODE, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server printed its port");
    Server { child, port }
}

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Opens `n` streams, each read up to its first event, and keeps them.
fn open(port: u16, n: usize, into: &mut Vec<TcpStream>) {
    for _ in 0..n {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
            .write_all(b"GET /events HTTP/1.1\r\nhost: bench\r\n\r\n")
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        while !seen.windows(11).any(|w| w == b"data: hello") {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed a stream");
            seen.extend_from_slice(&buf[..n]);
        }
        into.push(socket);
    }
}

/// Bytes of server memory per idle stream, for one round.
fn per_stream(mode: &str) -> f64 {
    let server = start(mode);
    let mut sockets = Vec::new();
    open(server.port, WARM_UP, &mut sockets);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss(server.child.id());
    open(server.port, MEASURED, &mut sockets);
    std::thread::sleep(Duration::from_millis(200));
    let after = rss(server.child.id());
    (after.saturating_sub(before)) as f64 / MEASURED as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn measure() {
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        // Criterion's test mode: one short round, to prove the harness runs.
        let server = start("stack");
        let mut sockets = Vec::new();
        open(server.port, 10, &mut sockets);
        println!("idle_memory: harness ran (10 streams)");
        return;
    }
    let (mut bare, mut tower, mut stack) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let b = per_stream("bare");
        let t = per_stream("tower");
        let s = per_stream("stack");
        println!("round {round}: bare {b:.0}, tower {t:.0}, stack {s:.0} B/stream");
        bare.push(b);
        tower.push(t);
        stack.push(s);
    }
    let (bare, tower, stack) = (median(bare), median(tower), median(stack));
    println!(
        "\nmedian of {ROUNDS}, B per idle stream: bare {bare:.0}, tower service {tower:.0}, \
         whole stack {stack:.0}: whole stack / bare {:.2}x, / tower service {:.2}x",
        stack / bare,
        stack / tower
    );
}

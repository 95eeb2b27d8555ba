//! The hyper example's server loop survives running out of file descriptors
//! (a client can cause it by opening connections): it keeps serving and
//! answers again once descriptors are free. Its own test binary, since it
//! lowers the process's open-file limit.

#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod hyper_example;

mod common;

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_does_not_stop_the_hyper_example() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(hyper_example::serve(
        listener,
        Duration::from_millis(10),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 64, hard).unwrap();
    let mut clients = Vec::new();
    for _ in 0..200 {
        match std::net::TcpStream::connect(addr) {
            Ok(socket) => clients.push(socket),
            Err(_) => break,
        }
    }
    // Keep knocking while no descriptor is free.
    for _ in 0..5 {
        clients.pop();
        if let Ok(socket) = std::net::TcpStream::connect(addr) {
            clients.push(socket);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(clients);
    rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(!server.is_finished(), "the server loop returned");
    let response = common::get(addr, "/events").await;
    assert_eq!(response.status(), 200);
    let first = common::parse_events(response).next().await.unwrap();
    assert_eq!(first.data, "1");
    server.abort();
}

//! The cost of the keep-alive body, and of the whole `SseLayer`, on a busy
//! stream, against the bare `EventStream`, in the same run; and the
//! keep-alive body's size per idle stream.
//!
//! `cargo bench --bench keep_alive` runs the criterion groups, then prints
//! the ratios (keep-alive time / bare time) from interleaved rounds, the
//! median of 15, and the bytes each stream's body takes.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    task::{Context, Poll},
    time::Instant,
};

use criterion::{Criterion, Throughput};
use futures_util::stream;
use http::{Request, Response};
use http_body::Body;
use tower::{Service, ServiceBuilder};
use tower_sse::{Event, EventStream, KeepAliveLayer, Shutdown, SseLayer};

mod common;
use common::drain;

const BURST: usize = 10_000;
const DATA: &str = "0123456789012345678901234567890123456789012345678901234567890123";

type Burst = EventStream<stream::Iter<std::vec::IntoIter<Event>>>;

fn burst(max_frame_size: usize) -> Burst {
    let events: Vec<Event> = (0..BURST).map(|_| Event::new().data(DATA)).collect();
    EventStream::new(stream::iter(events)).max_frame_size(max_frame_size)
}

/// `body` behind `layer`, as a server would get it from the layered service.
fn through<L>(layer: L, body: Burst) -> <L::Service as Service<Request<()>>>::Response
where
    L: tower::Layer<tower::util::ServiceFn<Box<dyn FnMut(Request<()>) -> Handled>>>,
    L::Service: Service<Request<()>>,
    <L::Service as Service<Request<()>>>::Error: std::fmt::Debug,
{
    let mut body = Some(body);
    let handler: Box<dyn FnMut(Request<()>) -> Handled> = Box::new(move |_request| {
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(body.take().expect("one call"))
            .unwrap();
        std::future::ready(Ok(response))
    });
    let mut service = ServiceBuilder::new().layer(layer).service_fn(handler);
    let mut future = std::pin::pin!(service.call(Request::new(())));
    let waker = futures_util::task::noop_waker();
    match future.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Ok(response)) => response,
        _ => unreachable!("the handler is ready at once"),
    }
}

type Handled = std::future::Ready<Result<Response<Burst>, Infallible>>;

/// `body` wrapped by the keep-alive layer.
fn with_keep_alive(body: Burst) -> impl Body<Data = bytes::Bytes, Error = Infallible> {
    through(KeepAliveLayer::new(), body).into_body()
}

/// `body` behind the whole `SseLayer` (with a shutdown trigger).
fn with_stack(
    body: Burst,
    shutdown: &Shutdown,
) -> impl Body<Data = bytes::Bytes, Error = Infallible> {
    through(SseLayer::new().shutdown(shutdown), body).into_body()
}

fn groups(c: &mut Criterion) {
    for (name, max) in [
        (
            "joined",
            16 * 1024, /* EventStream's default frame cap */
        ),
        ("frame-per-event", 0),
    ] {
        let mut group = c.benchmark_group(format!("keep-alive-10k-{name}"));
        group.throughput(Throughput::Elements(BURST as u64));
        group.bench_function("bare", |b| {
            b.iter_batched(
                || burst(max),
                |body| drain(black_box(body)),
                criterion::BatchSize::LargeInput,
            )
        });
        group.bench_function("keep-alive", |b| {
            b.iter_batched(
                || with_keep_alive(burst(max)),
                |body| drain(black_box(body)),
                criterion::BatchSize::LargeInput,
            )
        });
        let shutdown = Shutdown::new();
        group.bench_function("whole-stack", |b| {
            b.iter_batched(
                || with_stack(burst(max), &shutdown),
                |body| drain(black_box(body)),
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

/// Median over 15 interleaved rounds (after 3 to warm up) of the time of
/// `wrapped` over the time of the bare burst.
fn ratio<B>(max: usize, mut wrapped: impl FnMut(Burst) -> B) -> f64
where
    B: Body,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Debug,
{
    let mut ratios: Vec<f64> = (0..18)
        .map(|_| {
            let body = burst(max);
            let start = Instant::now();
            black_box(drain(body));
            let bare = start.elapsed();
            let body = wrapped(burst(max));
            let start = Instant::now();
            black_box(drain(body));
            start.elapsed().as_secs_f64() / bare.as_secs_f64()
        })
        .skip(3)
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    ratios[ratios.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    assert_eq!(drain(burst(0)), drain(with_keep_alive(burst(0))));
    assert_eq!(
        drain(burst(0)),
        drain(with_stack(burst(0), &Shutdown::new()))
    );

    let mut criterion = Criterion::default().configure_from_args();
    groups(&mut criterion);
    criterion.final_summary();
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    let joined = 16 * 1024 /* EventStream's default frame cap */;
    let shutdown = Shutdown::new();
    let stack = |body| with_stack(body, &shutdown);
    println!("\nratio = wrapped time / bare time, median of 15 interleaved rounds");
    for (name, ratio) in [
        ("keep-alive-10k-joined", ratio(joined, with_keep_alive)),
        ("keep-alive-10k-frame-per-event", ratio(0, with_keep_alive)),
        ("stack-10k-joined", ratio(joined, stack)),
        ("stack-10k-frame-per-event", ratio(0, stack)),
    ] {
        println!("{name:<32} {ratio:.3}x");
    }
    let bare = std::mem::size_of::<Burst>();
    let wrapped = std::mem::size_of_val(&with_keep_alive(burst(0)));
    println!(
        "\nbody size per stream: bare {bare} B, with keep-alive {wrapped} B (+{} B: one tokio Sleep, no task)",
        wrapped - bare
    );
}

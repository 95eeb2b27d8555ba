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
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use criterion::{Criterion, Throughput};
use futures_util::stream;
use http::{Request, Response};
use http_body::Body;
use tower::{Service, ServiceBuilder};
use tower_sse::{Event, EventStream, KeepAliveLayer, Shutdown, SseLayer};

const BURST: usize = 10_000;
const DATA: &str = "0123456789012345678901234567890123456789012345678901234567890123";

type Burst = EventStream<stream::Iter<std::vec::IntoIter<Event>>>;

fn burst(max_frame_size: usize) -> Burst {
    let events: Vec<Event> = (0..BURST).map(|_| Event::new().data(DATA)).collect();
    EventStream::new(stream::iter(events)).max_frame_size(max_frame_size)
}

/// Polls `body` to its end; returns the bytes written.
fn drain<B>(body: B) -> usize
where
    B: Body,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut written = 0;
    loop {
        match Pin::as_mut(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    written += bytes::Buf::remaining(&data);
                }
            }
            Poll::Ready(None) => return written,
            Poll::Pending => unreachable!("an in-memory burst is always ready"),
        }
    }
}

/// `body` wrapped by the keep-alive layer, as a server would get it.
fn with_keep_alive(body: Burst) -> impl Body<Data = bytes::Bytes, Error = Infallible> {
    let mut body = Some(body);
    let mut service = ServiceBuilder::new()
        .layer(KeepAliveLayer::new())
        .service_fn(move |_request: Request<()>| {
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(body.take().expect("one call"))
                .unwrap();
            std::future::ready(Ok::<_, Infallible>(response))
        });
    let mut future = std::pin::pin!(service.call(Request::new(())));
    let waker = futures_util::task::noop_waker();
    match future.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Ok(response)) => response.into_body(),
        _ => unreachable!("the handler is ready at once"),
    }
}

/// `body` behind the whole `SseLayer` (with a shutdown trigger), as a
/// server would get it.
fn with_stack(
    body: Burst,
    shutdown: &Shutdown,
) -> impl Body<Data = bytes::Bytes, Error = Infallible> {
    let mut body = Some(body);
    let mut service = ServiceBuilder::new()
        .layer(SseLayer::new().shutdown(shutdown))
        .service_fn(move |_request: Request<()>| {
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(body.take().expect("one call"))
                .unwrap();
            std::future::ready(Ok::<_, Infallible>(response))
        });
    let mut future = std::pin::pin!(service.call(Request::new(())));
    let waker = futures_util::task::noop_waker();
    match future.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Ok(response)) => response.into_body(),
        _ => unreachable!("the handler is ready at once"),
    }
}

fn groups(c: &mut Criterion) {
    for (name, max) in [
        ("joined", tower_sse::DEFAULT_MAX_FRAME_SIZE),
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

/// Median over 15 interleaved rounds of whole-stack time / bare time.
fn stack_ratio(max: usize) -> f64 {
    let shutdown = Shutdown::new();
    let mut ratios: Vec<f64> = (0..18)
        .map(|_| {
            let body = burst(max);
            let start = Instant::now();
            black_box(drain(body));
            let bare = start.elapsed();
            let body = with_stack(burst(max), &shutdown);
            let start = Instant::now();
            black_box(drain(body));
            start.elapsed().as_secs_f64() / bare.as_secs_f64()
        })
        .skip(3)
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    ratios[ratios.len() / 2]
}

/// Median over 15 interleaved rounds of keep-alive time / bare time.
fn ratio(max: usize) -> f64 {
    let mut ratios: Vec<f64> = (0..18)
        .map(|_| {
            let body = burst(max);
            let start = Instant::now();
            black_box(drain(body));
            let bare = start.elapsed();
            let body = with_keep_alive(burst(max));
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
    println!("\nratio = keep-alive time / bare time, median of 15 interleaved rounds");
    println!(
        "keep-alive-10k-joined            {:.3}x",
        ratio(tower_sse::DEFAULT_MAX_FRAME_SIZE)
    );
    println!("keep-alive-10k-frame-per-event   {:.3}x", ratio(0));
    println!("\nratio = whole SseLayer time / bare time, median of 15 interleaved rounds");
    println!(
        "stack-10k-joined                 {:.3}x",
        stack_ratio(tower_sse::DEFAULT_MAX_FRAME_SIZE)
    );
    println!("stack-10k-frame-per-event        {:.3}x", stack_ratio(0));
    let bare = std::mem::size_of::<Burst>();
    let wrapped = std::mem::size_of_val(&with_keep_alive(burst(0)));
    println!(
        "\nbody size per stream: bare {bare} B, with keep-alive {wrapped} B (+{} B: one tokio Sleep, no task)",
        wrapped - bare
    );
}

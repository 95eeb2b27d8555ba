//! Encoding throughput, and the event-stream body on a burst, against axum
//! 0.8's `Sse` on the same inputs in the same run.
//!
//! `cargo bench --bench encode` runs the criterion groups, then prints the
//! ratios (axum time / tower-sse time) from interleaved rounds, the median of
//! 15.

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use axum::response::{sse::Event as AxumEvent, IntoResponse, Sse};
use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::stream;
use tower_sse::{Event, EventStream};

mod common;
use common::{drain, drain_into};

/// Events per iteration of an encoding benchmark.
const EVENTS: usize = 1_000;
/// Events in the burst benchmark.
const BURST: usize = 10_000;

struct Input {
    name: &'static str,
    /// `'static` because axum's `Sse` takes only `'static` streams.
    data: &'static str,
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn inputs() -> Vec<Input> {
    let line = |len: usize| "x".repeat(len);
    vec![
        Input {
            name: "64B",
            data: leak(line(64)),
        },
        Input {
            name: "4KiB",
            data: leak(line(4096)),
        },
        Input {
            name: "1KiB-16-lines",
            data: leak(vec![line(63); 16].join("\n")),
        },
    ]
}

/// `n` events carrying `data`, each built and encoded by tower-sse, written
/// one event per frame (joining is measured by the burst benchmark).
fn ours_encode(data: &'static str, n: usize) -> usize {
    let events =
        stream::iter((0..n).map(move |_| Event::new().event("update").unwrap().data(data)));
    drain(EventStream::new(events).max_frame_size(0))
}

/// The same events built and encoded by axum.
fn axum_encode(data: &'static str, n: usize) -> usize {
    let events = stream::iter(
        (0..n).map(move |_| Ok::<_, Infallible>(AxumEvent::default().event("update").data(data))),
    );
    drain(Sse::new(events).into_response().into_body())
}

/// A burst of ready events through tower-sse's body, frames joined.
fn ours_burst(data: &'static str, n: usize) -> usize {
    drain(EventStream::new(stream::iter(
        (0..n).map(move |_| Event::new().data(data)),
    )))
}

/// The same burst through axum's `Sse` body.
fn axum_burst(data: &'static str, n: usize) -> usize {
    let events =
        stream::iter((0..n).map(move |_| Ok::<_, Infallible>(AxumEvent::default().data(data))));
    drain(Sse::new(events).into_response().into_body())
}

/// Each frame written with one `write(2)` to `/dev/null`, as a server
/// writes each frame it is given: the per-frame cost the joining saves.
fn dev_null() -> impl FnMut(&[u8]) {
    use std::io::Write as _;
    let mut file = std::fs::File::create("/dev/null").expect("/dev/null opens");
    move |frame| file.write_all(frame).expect("/dev/null takes writes")
}

/// The burst through tower-sse's body, each frame written to `/dev/null`.
fn ours_burst_written(data: &'static str, n: usize) -> usize {
    let body = EventStream::new(stream::iter((0..n).map(move |_| Event::new().data(data))));
    drain_into(body, dev_null())
}

/// The burst through axum's `Sse` body, each frame written to `/dev/null`.
fn axum_burst_written(data: &'static str, n: usize) -> usize {
    let events =
        stream::iter((0..n).map(move |_| Ok::<_, Infallible>(AxumEvent::default().data(data))));
    drain_into(Sse::new(events).into_response().into_body(), dev_null())
}

fn criterion_groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for input in inputs() {
        group.throughput(Throughput::Elements(EVENTS as u64));
        group.bench_with_input(
            BenchmarkId::new("tower-sse", input.name),
            &input.data,
            |b, &data| b.iter(|| ours_encode(black_box(data), EVENTS)),
        );
        group.bench_with_input(
            BenchmarkId::new("axum", input.name),
            &input.data,
            |b, &data| b.iter(|| axum_encode(black_box(data), EVENTS)),
        );
    }
    group.finish();

    let data = leak("x".repeat(64));
    let mut group = c.benchmark_group("burst-10k");
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function("tower-sse", |b| {
        b.iter(|| ours_burst(black_box(data), BURST))
    });
    group.bench_function("axum", |b| b.iter(|| axum_burst(black_box(data), BURST)));
    group.finish();

    let mut group = c.benchmark_group("burst-10k-written");
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function("tower-sse", |b| {
        b.iter(|| ours_burst_written(black_box(data), BURST))
    });
    group.bench_function("axum", |b| {
        b.iter(|| axum_burst_written(black_box(data), BURST))
    });
    group.finish();
}

/// The median over `rounds` of (time of `theirs` / time of `ours`), the two
/// run alternately so that both see the same machine.
fn ratio(rounds: usize, mut ours: impl FnMut() -> usize, mut theirs: impl FnMut() -> usize) -> f64 {
    let time = |f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        black_box(f());
        start.elapsed()
    };
    // Warm up both.
    for _ in 0..3 {
        time(&mut ours);
        time(&mut theirs);
    }
    let mut ratios: Vec<f64> = (0..rounds)
        .map(move |_| {
            let a: Duration = time(&mut ours);
            let b: Duration = time(&mut theirs);
            b.as_secs_f64() / a.as_secs_f64()
        })
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    ratios[rounds / 2]
}

fn print_ratios() {
    println!("\nratio = axum time / tower-sse time, median of 15 interleaved rounds");
    for input in inputs() {
        let data = input.data;
        let r = ratio(
            15,
            || ours_encode(data, 10 * EVENTS),
            || axum_encode(data, 10 * EVENTS),
        );
        println!("encode/{:<14} {r:>6.2}x", input.name);
    }
    let data = leak("x".repeat(64));
    let r = ratio(15, || ours_burst(data, BURST), || axum_burst(data, BURST));
    println!("burst-10k/64B          {r:>6.2}x");
    let r = ratio(
        15,
        || ours_burst_written(data, BURST),
        || axum_burst_written(data, BURST),
    );
    println!("burst-10k-written/64B  {r:>6.2}x");
}

fn main() {
    // Both bodies must write the same bytes for the comparison to mean
    // anything (axum writes `event:` after `data:`, so compare lengths).
    for input in inputs() {
        assert_eq!(ours_encode(input.data, 3), axum_encode(input.data, 3));
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion);
    criterion.final_summary();
    if !std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        print_ratios();
    }
}

//! The `runs` mode's client (issue 26): resumable runs of tower-sse's hub
//! (`POST /runs`, a producer task sending token events at a rate) beside
//! the floor's run without tower-sse (bare hyper, a task and a channel, the
//! same bytes on the wire but for the ids' epoch), and the memory a
//! finished run keeps.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{stream, StreamExt, TryStreamExt};
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use load_common::{token_data, RUN_END_DATA, RUN_END_EVENT};
use tokio::time::{timeout, timeout_at};

use crate::{
    client::{self, connect, OPENING_AT_ONCE, REQUEST_TIMEOUT},
    measure,
    servers::Server,
    Error,
};

/// The shape of every run: token events per second and bytes of data in
/// each (a language model's token is a few bytes; its chunk in an
/// OpenAI-compatible stream, about 200).
pub const RATE: u64 = 50;
pub const BYTES: usize = 64;

fn run_path(tokens: u64) -> String {
    format!("/runs?tokens={tokens}&rate={RATE}&bytes={BYTES}")
}

/// What one client read of its run.
#[derive(Default)]
struct RunRead {
    tokens: u64,
    end: bool,
    /// Body bytes received (after the chunked coding).
    bytes: u64,
    /// What went wrong, if anything did.
    problem: Option<String>,
}

impl RunRead {
    fn complete(&self, tokens: u64) -> bool {
        self.tokens == tokens && self.end && self.problem.is_none()
    }

    fn describe(&self, tokens: u64) -> String {
        format!(
            "{} of {tokens} tokens, {}{}",
            self.tokens,
            if self.end { "the end" } else { "no end" },
            self.problem
                .as_ref()
                .map_or_else(String::new, |problem| format!(", {problem}"))
        )
    }
}

/// POSTs a run on `sender` and reads its stream to the end (or the
/// deadline): every token in order with its data, then the end event,
/// then nothing.
async fn follow(
    sender: &mut SendRequest<Empty<Bytes>>,
    tokens: u64,
    deadline: tokio::time::Instant,
) -> RunRead {
    let mut read = RunRead::default();
    let path = run_path(tokens);
    let request = match Request::post(&path)
        .header(header::HOST, "127.0.0.1")
        .body(Empty::new())
    {
        Ok(request) => request,
        Err(error) => {
            read.problem = Some(error.to_string());
            return read;
        }
    };
    let sent = async {
        sender.ready().await?;
        sender.send_request(request).await
    };
    let response = match timeout_at(deadline, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            read.problem = Some(format!("POST {path}: {error}"));
            return read;
        }
        Err(_) => {
            read.problem = Some(format!("POST {path}: no response before the deadline"));
            return read;
        }
    };
    if response.status() != StatusCode::OK {
        read.problem = Some(format!("POST {path}: {}", response.status()));
        return read;
    }
    let received = AtomicU64::new(0);
    let mut events = response
        .into_body()
        .into_data_stream()
        .inspect(|chunk| {
            if let Ok(chunk) = chunk {
                received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        })
        .eventsource();
    loop {
        let event = match timeout_at(deadline, events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(error))) => {
                read.problem = Some(format!("the stream broke: {error}"));
                break;
            }
            Ok(None) => break,
            Err(_) => {
                read.problem = Some("the deadline passed".into());
                break;
            }
        };
        if read.end {
            read.problem = Some(format!("an event after the end: {:?}", event.event));
            break;
        }
        if event.event == RUN_END_EVENT && event.data == RUN_END_DATA {
            read.end = true;
        } else if event.event == "message" && event.data == token_data(read.tokens + 1, BYTES) {
            read.tokens += 1;
        } else {
            read.problem = Some(format!(
                "after {} tokens, an event {:?} with data {:?}",
                read.tokens, event.event, event.data
            ));
            break;
        }
    }
    drop(events);
    read.bytes = received.load(Ordering::Relaxed);
    read
}

pub struct Concurrent {
    pub cpu_ns_per_token: f64,
    /// Body bytes per run, the mean over the runs.
    pub bytes_per_run: f64,
    /// From the first POST to the last run's end.
    pub wall_seconds: f64,
}

/// `runs` clients, each on a connection of its own opened beforehand, POST
/// a run of `tokens` tokens at [`RATE`] a second at once (their starts
/// spread over one token period, so that their tokens do not all fall on
/// the same tick) and read it to its end. Server CPU from before the first
/// POST to after the last end, per token delivered. A run that missed a
/// token or its end fails the measurement.
pub async fn concurrent(server: &Server, runs: usize, tokens: u64) -> Result<Concurrent, Error> {
    let addr = server.addr;
    // Warm up: tower-sse's server makes its runs' hub on the first run.
    let mut warm = connect(addr).await?;
    let read = follow_on(&mut warm, 1).await?;
    if !read.complete(1) {
        return Err(format!("the warm-up run: {}", read.describe(1)).into());
    }
    let senders: Vec<SendRequest<Empty<Bytes>>> = stream::iter(0..runs)
        .map(|_| async move { timeout(REQUEST_TIMEOUT, connect(addr)).await? })
        .buffer_unordered(OPENING_AT_ONCE)
        .try_collect()
        .await?;
    let period = Duration::from_secs(1) / RATE as u32;
    let last_token = period * tokens.saturating_sub(1) as u32;
    let deadline = tokio::time::Instant::now() + period + last_token + REQUEST_TIMEOUT;
    let cpu_before = measure::cpu_ns(server.pid())?;
    let ticks_before = measure::cpu_ticks_ns(server.pid())?;
    let started = Instant::now();
    let readers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, sender)| {
            let delay = period * i as u32 / runs as u32;
            tokio::spawn(async move {
                let mut sender = sender;
                tokio::time::sleep(delay).await;
                follow(&mut sender, tokens, deadline).await
            })
        })
        .collect();
    let mut reads = Vec::with_capacity(runs);
    for reader in readers {
        reads.push(reader.await?);
    }
    let wall = started.elapsed();
    let cpu = measure::cpu_ns(server.pid())? - cpu_before;
    let ticks = measure::cpu_ticks_ns(server.pid())? - ticks_before;
    let delivered: u64 = reads.iter().map(|read| read.tokens).sum();
    let bytes: u64 = reads.iter().map(|read| read.bytes).sum();
    let (fewest, most) = reads.iter().fold((u64::MAX, 0), |(low, high), read| {
        (low.min(read.bytes), high.max(read.bytes))
    });
    eprintln!(
        "load: runs on {}: {delivered} tokens of {} delivered, {fewest}-{most} body bytes per run; \
         server CPU {:.1} ms (schedstat), {:.0} ms (utime+stime)",
        server.kind,
        runs as u64 * tokens,
        cpu as f64 / 1e6,
        ticks as f64 / 1e6,
    );
    let incomplete: Vec<(usize, &RunRead)> = reads
        .iter()
        .enumerate()
        .filter(|(_, read)| !read.complete(tokens))
        .collect();
    if let Some((first, read)) = incomplete.first() {
        let message = format!(
            "{} of {runs} runs INCOMPLETE ({} tokens missing of {}); the first, run {first}: {}",
            incomplete.len(),
            runs as u64 * tokens - delivered,
            runs as u64 * tokens,
            read.describe(tokens)
        );
        eprintln!("load: runs on {}: {message}", server.kind);
        return Err(message.into());
    }
    Ok(Concurrent {
        cpu_ns_per_token: cpu as f64 / delivered.max(1) as f64,
        bytes_per_run: bytes as f64 / runs as f64,
        wall_seconds: wall.as_secs_f64(),
    })
}

/// [`follow`] with a deadline of its own.
async fn follow_on(sender: &mut SendRequest<Empty<Bytes>>, tokens: u64) -> Result<RunRead, Error> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    Ok(follow(sender, tokens, deadline).await)
}

/// Time to the first body byte of a run's stream, in nanoseconds, for each
/// of `requests` POSTs one after another on one keep-alive connection
/// (after `warm_up` more): from handing the request to hyper to the first
/// frame of data. Each run has one token, sent at once, then its end; the
/// rest of the stream is read to its end and checked before the next POST.
pub async fn first_byte(
    server: &Server,
    warm_up: usize,
    requests: usize,
) -> Result<Vec<u64>, Error> {
    let mut sender = connect(server.addr).await?;
    let path = run_path(1);
    let mut times = Vec::with_capacity(requests);
    for i in 0..warm_up + requests {
        timeout(REQUEST_TIMEOUT, sender.ready())
            .await
            .map_err(|_| "the connection was not ready in time")??;
        let request = Request::post(&path)
            .header(header::HOST, "127.0.0.1")
            .body(Empty::new())?;
        let started = Instant::now();
        let first = async {
            let response = sender.send_request(request).await?;
            if response.status() != StatusCode::OK {
                return Err::<_, Error>(format!("POST {path}: {}", response.status()).into());
            }
            let mut body = response.into_body();
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Ok((started.elapsed(), data, body)),
                        _ => continue,
                    },
                    Some(Err(error)) => return Err(error.into()),
                    None => return Err("the stream ended before its first byte".into()),
                }
            }
        };
        let (elapsed, data, body) = timeout(REQUEST_TIMEOUT, first)
            .await
            .map_err(|_| format!("POST {path}: no first byte in {REQUEST_TIMEOUT:?}"))??;
        let rest = timeout(REQUEST_TIMEOUT, body.collect())
            .await
            .map_err(|_| format!("POST {path}: no end in {REQUEST_TIMEOUT:?}"))??
            .to_bytes();
        let text = [&data[..], &rest[..]].concat();
        let text = String::from_utf8_lossy(&text);
        let token = format!("data: {}\n", token_data(1, BYTES));
        let end = format!("event: {RUN_END_EVENT}\ndata: {RUN_END_DATA}\n");
        if !text.contains(&token) || !text.contains(&end) {
            return Err(
                format!("POST {path}: request {i} read {text:?}, not its token and end").into(),
            );
        }
        if i >= warm_up {
            times.push(elapsed.as_nanos() as u64);
        }
    }
    Ok(times)
}

pub struct Retained {
    /// Resident memory the finished runs added, per run.
    pub per_run: f64,
    /// A run's encoded size: its events as they go on the wire.
    pub encoded_per_run: f64,
    /// What a run keeps beyond its encoded size, per event (its end
    /// included).
    pub beyond_per_event: f64,
}

/// Resident memory before and after `runs` runs of `events` events (and
/// their end) are made and finished in the server (nobody following; the
/// hub keeps finished runs for late reconnects), after a tenth as many
/// made first so that the allocator's first growth is not counted.
pub async fn retained(server: &Server, runs: u64, events: u64) -> Result<Retained, Error> {
    let mut sender = connect(server.addr).await?;
    let path = |runs: u64| format!("/runs/retained?runs={runs}&events={events}&bytes={BYTES}");
    client::post_count(&mut sender, &path((runs / 10).max(1))).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = measure::rss_bytes(server.pid())?;
    let encoded = client::post_count(&mut sender, &path(runs)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = measure::rss_bytes(server.pid())?;
    let per_run = after.saturating_sub(before) as f64 / runs as f64;
    let encoded_per_run = encoded as f64 / runs as f64;
    Ok(Retained {
        per_run,
        encoded_per_run,
        beyond_per_event: (per_run - encoded_per_run) / (events + 1) as f64,
    })
}

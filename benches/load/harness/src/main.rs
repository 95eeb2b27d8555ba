//! The load harness: starts each server on 127.0.0.1, drives it with a
//! Rust client, reads the server's CPU time and memory from `/proc`, and
//! prints one table. See `benches/load/README.md`.
//!
//! ```text
//! cargo run --release --manifest-path benches/load/harness/Cargo.toml -- all
//! ```

mod client;
mod measure;
mod report;
mod runs;
mod scale;
mod servers;

use std::{process::ExitCode, time::Instant};

use report::{quantile, Report};
use servers::{Kind, Servers};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one invocation measures.
struct Plan {
    reps: usize,
    /// (connections, events per connection)
    bursts: Vec<(usize, u64)>,
    /// Subscriber counts.
    fan_outs: Vec<usize>,
    /// Events published per fan-out, and how many per second.
    published: u64,
    rate: f64,
    /// (warm-up streams, measured streams)
    idle: Option<(usize, usize)>,
    /// How long idle streams stay open before their memory is read.
    idle_settle: std::time::Duration,
    /// (warm-up streams, measured streams) of clients that stopped reading.
    stalled: Option<(usize, usize)>,
    /// (reconnecting clients, events each missed) for the hub's replay.
    replay: Option<(usize, u64)>,
    /// Events published for the hub's memory per retained event.
    retained: Option<u64>,
    /// Resumable runs (issue 26), at `runs::RATE` tokens a second of
    /// `runs::BYTES` bytes: (runs at once, tokens each).
    runs: Option<(usize, u64)>,
    /// (warm-up, measured) POSTs of a run, for the time to its first byte.
    first_byte: Option<(usize, usize)>,
    /// (runs, events each) made, finished and kept, for their memory.
    runs_retained: Option<(u64, u64)>,
    /// Frame caps to start `ours` with, one measurement of the bursts and
    /// stalled streams each; empty: the library's default only.
    caps: Vec<usize>,
    goals: bool,
}

/// Events in the one-connection burst whose CPU per event is held against
/// the floor's. Two million take the floor about 70 ms of CPU: with 200,000
/// (8 ms) a run's ratio spread from 0.97 to 1.96 and the median of an
/// invocation from 1.21 to 1.52; with two million one invocation's runs
/// spread by about a fifth (BENCHMARKS.md, "A longer burst").
const LONG_BURST: u64 = 2_000_000;

impl Plan {
    fn all() -> Plan {
        Plan {
            reps: 3,
            bursts: vec![(1, LONG_BURST), (32, 10_000), (20, 1_000)],
            fan_outs: vec![1_000, 10_000],
            published: 20,
            rate: 10.0,
            idle: Some((200, 5_000)),
            idle_settle: std::time::Duration::from_millis(300),
            stalled: Some((20, 200)),
            replay: Some((20, 1_000)),
            retained: Some(100_000),
            runs: None,
            first_byte: None,
            runs_retained: None,
            caps: Vec::new(),
            goals: true,
        }
    }

    fn for_mode(mode: &str) -> Option<Plan> {
        let all = Plan::all();
        Some(match mode {
            "all" => all,
            "burst" => Plan {
                fan_outs: vec![],
                idle: None,
                stalled: None,
                replay: None,
                retained: None,
                ..all
            },
            "fanout" => Plan {
                bursts: vec![],
                idle: None,
                stalled: None,
                replay: None,
                retained: None,
                ..all
            },
            "idle" => Plan {
                bursts: vec![],
                fan_outs: vec![],
                stalled: None,
                replay: None,
                retained: None,
                ..all
            },
            "stalled" => Plan {
                bursts: vec![],
                fan_outs: vec![],
                idle: None,
                replay: None,
                retained: None,
                ..all
            },
            // The hub beside the floor and ours: fan-out, idle memory,
            // replay (against ours' burst), memory per retained event.
            "hub" => Plan {
                bursts: vec![(1, LONG_BURST), (20, 1_000)],
                stalled: None,
                ..all
            },
            // The bursts and stalled streams with `ours` at several frame
            // caps, beside the floor.
            "caps" => Plan {
                fan_outs: vec![],
                idle: None,
                replay: None,
                retained: None,
                caps: vec![8 * 1024, 16 * 1024, 32 * 1024, 64 * 1024],
                ..all
            },
            // Resumable runs (issue 26), ours beside the floor: 1,000 runs
            // at once, time to a run's first byte, memory of finished runs.
            "runs" => Plan {
                bursts: vec![],
                fan_outs: vec![],
                idle: None,
                stalled: None,
                replay: None,
                retained: None,
                runs: Some((1_000, 100)),
                first_byte: Some((50, 1_000)),
                runs_retained: Some((1_000, 100)),
                ..all
            },
            // Every endpoint of every server once, with small counts: proves
            // the harness and the servers work (CI runs this), measures
            // nothing worth quoting.
            "smoke" => Plan {
                reps: 1,
                bursts: vec![(1, 2_000), (4, 500)],
                fan_outs: vec![50],
                published: 3,
                rate: 20.0,
                idle: Some((10, 50)),
                idle_settle: std::time::Duration::from_millis(300),
                stalled: Some((2, 5)),
                replay: Some((4, 500)),
                retained: Some(1_000),
                runs: None,
                first_byte: None,
                runs_retained: None,
                caps: Vec::new(),
                goals: false,
            },
            _ => return None,
        })
    }

    /// The same measurements with the smoke run's counts (`--small`): a
    /// quick check that a mode runs, its figures not worth quoting.
    fn small(self) -> Plan {
        let smoke = Plan::for_mode("smoke").expect("smoke is a mode");
        Plan {
            bursts: self
                .bursts
                .iter()
                .zip(&smoke.bursts)
                .map(|(_, small)| *small)
                .collect(),
            fan_outs: if self.fan_outs.is_empty() {
                vec![]
            } else {
                smoke.fan_outs
            },
            published: smoke.published,
            rate: smoke.rate,
            idle: self.idle.and(smoke.idle),
            stalled: self.stalled.and(smoke.stalled),
            replay: self.replay.and(smoke.replay),
            retained: self.retained.and(smoke.retained),
            // The smoke run has no runs (the other servers have none).
            runs: self.runs.map(|_| (20, 10)),
            first_byte: self.first_byte.map(|_| (5, 50)),
            runs_retained: self.runs_retained.map(|_| (20, 10)),
            ..self
        }
    }
}

const USAGE: &str = "usage: load [all|burst|fanout|idle|stalled|caps|hub|runs|smoke|redis] [--reps N] \
                     [--rate EVENTS_PER_S] [--caps KIB,KIB,..] [--only ours,floor,axum,node,hub,hub10] \
                     [--charts DIR] [--idle-wait SECONDS] [--small]";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Error> {
    if std::env::args().nth(1).as_deref() == Some("redis") {
        return run_redis();
    }
    let mut args = std::env::args().skip(1);
    let mut plan = None;
    let mut kinds = Kind::ALL.to_vec();
    let mut only = false;
    let mut caps = None;
    let mut reps = None;
    let mut rate = None;
    let mut charts = None;
    let mut idle_wait = None;
    let mut small = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--small" => small = true,
            "--charts" => charts = Some(std::path::PathBuf::from(args.next().ok_or(USAGE)?)),
            "--idle-wait" => {
                let value = args.next().ok_or(USAGE)?;
                idle_wait = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| *s <= 120)
                        .ok_or(USAGE)?,
                );
            }
            "--rate" => {
                let value = args.next().ok_or(USAGE)?;
                rate = Some(
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0 && *r <= 1_000.0)
                        .ok_or(USAGE)?,
                );
            }
            "--caps" => {
                let value = args.next().ok_or(USAGE)?;
                caps = Some(
                    value
                        .split(',')
                        .map(|kib| {
                            kib.parse::<usize>()
                                .ok()
                                .filter(|k| *k > 0)
                                .map(|k| k * 1024)
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or(USAGE)?,
                );
            }
            "--reps" => {
                let value = args.next().ok_or(USAGE)?;
                reps = Some(value.parse().ok().filter(|n| *n > 0).ok_or(USAGE)?);
            }
            "--only" => {
                only = true;
                let value = args.next().ok_or(USAGE)?;
                kinds = value
                    .split(',')
                    .map(|name| {
                        Kind::parse(name)
                            .ok_or_else(|| format!("no server named {name:?}; {USAGE}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            mode if plan.is_none() => {
                if mode == "hub" && !only {
                    kinds = vec![Kind::Ours, Kind::Floor, Kind::Hub, Kind::Hub10];
                }
                if mode == "runs" && !only {
                    kinds = vec![Kind::Ours, Kind::Floor];
                }
                plan = Some(Plan::for_mode(mode).ok_or(USAGE)?);
            }
            _ => return Err(USAGE.into()),
        }
    }
    let mut plan = plan.ok_or(USAGE)?;
    if small {
        // The rate stays the smoke's unless --rate says otherwise.
        plan = plan.small();
    }
    if let Some(caps) = caps {
        plan.caps = caps;
    }
    if !plan.caps.is_empty() && !only {
        kinds = vec![Kind::Ours, Kind::Floor];
    }
    if let Some(reps) = reps {
        plan.reps = reps;
    }
    if let Some(rate) = rate {
        plan.rate = rate;
    }
    if let Some(seconds) = idle_wait {
        plan.idle_settle = std::time::Duration::from_secs(seconds);
    }

    // 10,000 subscribers take 10,000 descriptors here and as many in the
    // server, which inherits the limit: raise the soft limit to the hard one.
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    let widest = plan.fan_outs.iter().max().copied().unwrap_or(0);
    let needed = widest.max(plan.runs.map_or(0, |(runs, _)| runs)) as u64 + 1_000;
    if limit < needed {
        return Err(format!("the open-file limit is {limit}; this plan needs {needed}").into());
    }

    let started = Instant::now();
    let servers = Servers::prepare(&kinds)?;
    let built = started.elapsed();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(measure_all(&servers, &kinds, &plan));
    drop(servers);

    println!();
    report.print(&kinds, plan.reps);
    if let Some(dir) = &charts {
        let written = report.write_charts(dir, &kinds)?;
        eprintln!("load: {written} charts written to {}", dir.display());
    }
    eprintln!(
        "\nload: built in {:.0} s, measured in {:.0} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    for failure in &report.failures {
        eprintln!("load: FAILED: {failure}");
    }
    Ok(report.failures.is_empty())
}

/// The positive count that follows the option `name`.
fn count(args: &mut impl Iterator<Item = String>, name: &str) -> Result<usize, Error> {
    let value = args.next().ok_or(format!("{name} needs a count"))?;
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{name}: a count").into())
}

/// Positive counts separated by commas, after the option `name`.
fn counts(args: &mut impl Iterator<Item = String>, name: &str) -> Result<Vec<usize>, Error> {
    let value = args.next().ok_or(format!("{name} needs counts"))?;
    value
        .split(',')
        .map(|n| n.parse().ok().filter(|n| *n > 0))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| format!("{name}: counts separated by commas").into())
}

const REDIS_USAGE: &str = "usage: load redis [--smoke] [--reps N] [--each SUBSCRIBERS] \
                           [--instance-workers N] [--topics N,N,..] [--instances N,N,..] \
                           [--topic-seconds S] [--topics-only]";

/// `load redis [--smoke] [--reps N] [--each SUBSCRIBERS] ..`: the hub on Redis Streams beside the
/// memory hub, and many topics on Redis (see `scale.rs`).
fn run_redis() -> Result<bool, Error> {
    let mut plan = scale::Plan::full();
    let mut smoke = false;
    let mut args = std::env::args().skip(2);
    // Options apply after --smoke, wherever it is.
    let mut options = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => {
                plan = scale::Plan::smoke();
                smoke = true;
            }
            "--topics-only" => options.push((arg, None)),
            "--reps" | "--instance-workers" | "--each" | "--topics" | "--instances"
            | "--topic-seconds" => {
                let value = args.next().ok_or(REDIS_USAGE)?;
                options.push((arg, Some(value)));
            }
            _ => return Err(REDIS_USAGE.into()),
        }
    }
    for (option, value) in options {
        let name = option.as_str();
        let mut value = value.into_iter();
        match name {
            "--topics-only" => plan.topics_only = true,
            "--reps" => plan.reps = count(&mut value, name)?,
            "--instance-workers" => plan.instance_workers = count(&mut value, name)?,
            "--each" => plan.each = count(&mut value, name)?,
            "--topics" => plan.topics = counts(&mut value, name)?,
            "--instances" => {
                plan.instances = counts(&mut value, name)?;
                plan.instances.sort_unstable();
                plan.instances.dedup();
            }
            "--topic-seconds" => {
                plan.topic_seconds = value
                    .next()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| *s > 0.0 && *s <= 600.0)
                    .ok_or("--topic-seconds: seconds, at most 600")?;
            }
            _ => unreachable!("parsed above"),
        }
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    // A stream per topic, and a set of 64 per extra instance.
    let widest = plan.topics.iter().max().copied().unwrap_or(0);
    let extra = plan
        .instances
        .iter()
        .max()
        .map_or(0, |n| n.saturating_sub(1));
    let needed = (widest + extra * widest.div_ceil(64)).max(4 * plan.each) as u64 + 1_000;
    if limit < needed {
        return Err(format!("the open-file limit is {limit}; this plan needs {needed}").into());
    }
    let started = Instant::now();
    let servers = Servers::prepare(&[Kind::Hub])?;
    let built = started.elapsed();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let met = runtime.block_on(scale::run(&servers, &plan))?;
    eprintln!(
        "\nload: built in {:.0} s, measured in {:.0} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    // The smoke run proves the harness works; its figures are not goals.
    Ok(met || smoke)
}

/// Runs every measurement `plan.reps` times, the servers one after another
/// within a repetition, each repetition starting with the next server.
async fn measure_all(servers: &Servers, kinds: &[Kind], plan: &Plan) -> Report {
    let mut report = Report::default();
    let mut runs = Runs {
        servers,
        kinds,
        reps: plan.reps,
        report: &mut report,
        started: 0,
    };
    let mut burst_one_cpu = Vec::new();
    let caps: Vec<Option<usize>> = if plan.caps.is_empty() {
        vec![None]
    } else {
        plan.caps.iter().copied().map(Some).collect()
    };
    for cap in caps {
        servers.ours_frame_cap.set(cap);
        let suffix = cap.map_or_else(String::new, |cap| {
            format!(", ours with frames of {} KiB", cap / 1024)
        });
        for &(connections, n) in &plan.bursts {
            let name = format!("burst, {connections} conn x {n} events{suffix}");
            let cpu = format!("{name}: server CPU per event (ns)");
            let rate = format!("{name}: events/s (wall)");
            runs.measure(&name, &[&cpu, &rate], not_hub, async |server| {
                let burst = client::burst(server, connections, n).await?;
                Ok(vec![burst.cpu_ns_per_event, burst.events_per_second])
            })
            .await;
            if connections == 1 {
                burst_one_cpu.push((suffix.clone(), cpu));
            }
        }
        if let Some((warm_up, connections)) = plan.stalled {
            let name = format!("stalled, {connections} conn{suffix}");
            let row = format!("{name}: server memory per stalled stream (bytes)");
            runs.measure(&name, &[&row], not_hub, async |server| {
                Ok(vec![client::stalled(server, warm_up, connections).await?])
            })
            .await;
        }
    }
    servers.ours_frame_cap.set(None);
    let mut widest_fan_out = None;
    for &connections in &plan.fan_outs {
        let name = format!(
            "fan-out, {connections} conn x {} events at {}/s",
            plan.published, plan.rate
        );
        let rows = [
            format!("{name}: delivered (%)"),
            format!("{name}: latency p50 (ms)"),
            format!("{name}: latency p99 (ms)"),
            format!("{name}: latency max (ms)"),
            format!("{name}: server CPU per delivery (ns)"),
        ];
        let labels: Vec<&str> = rows.iter().map(String::as_str).collect();
        runs.measure(&name, &labels, any, async |server| {
            let mut fan_out =
                client::fan_out(server, connections, plan.published, plan.rate).await?;
            fan_out.latencies_ns.sort_unstable();
            let ms = |q| quantile(&fan_out.latencies_ns, q).map_or(f64::NAN, |ns| ns as f64 / 1e6);
            Ok(vec![
                100.0 * fan_out.delivered as f64 / fan_out.expected as f64,
                ms(0.5),
                ms(0.99),
                ms(1.0),
                fan_out.cpu_ns_per_delivery,
            ])
        })
        .await;
        widest_fan_out = Some(rows);
    }
    let mut idle_row = None;
    if let Some((warm_up, connections)) = plan.idle {
        let name = if plan.idle_settle > std::time::Duration::from_secs(1) {
            format!(
                "idle, {connections} conn, after {} s",
                plan.idle_settle.as_secs()
            )
        } else {
            format!("idle, {connections} conn")
        };
        let row = format!("{name}: server memory per connection (bytes)");
        runs.measure(&name, &[&row], any, async |server| {
            Ok(vec![
                client::idle(server, warm_up, connections, plan.idle_settle).await?,
            ])
        })
        .await;
        idle_row = Some(row);
    }
    let mut replay_row = None;
    if let Some((clients, behind)) = plan.replay {
        let name = format!("replay, {clients} reconnects x {behind} events missed");
        let row = format!("{name}: server CPU per replayed event (ns)");
        runs.measure(&name, &[&row], Kind::is_hub, async |server| {
            Ok(vec![client::replay(server, clients, behind).await?])
        })
        .await;
        replay_row = Some(row);
    }
    let mut retained_row = None;
    if let Some(count) = plan.retained {
        let name = format!("retained, {count} events");
        let row =
            format!("{name}: server memory per retained event beyond its encoded size (bytes)");
        servers.hub_history.set(Some(count as usize + 2_000));
        runs.measure(&name, &[&row], only_hub, async |server| {
            Ok(vec![client::retained(server, count).await?])
        })
        .await;
        servers.hub_history.set(None);
        retained_row = Some(row);
    }

    // A run's first event must not wait for the client's delayed
    // acknowledgement of the response head (40 ms): for both servers.
    servers.nodelay.set(true);
    let mut runs_row = None;
    if let Some((count, tokens)) = plan.runs {
        let name = format!(
            "runs, {count} at once x {tokens} tokens of {} B at {}/s",
            crate::runs::BYTES,
            crate::runs::RATE
        );
        let rows = [
            format!("{name}: server CPU per token (ns)"),
            format!("{name}: body bytes per run"),
            format!("{name}: wall time (s)"),
        ];
        let labels: Vec<&str> = rows.iter().map(String::as_str).collect();
        runs.measure(&name, &labels, has_runs, async |server| {
            let measured = crate::runs::concurrent(server, count, tokens).await?;
            Ok(vec![
                measured.cpu_ns_per_token,
                measured.bytes_per_run,
                measured.wall_seconds,
            ])
        })
        .await;
        runs_row = Some(rows[0].clone());
    }
    let mut first_byte_row = None;
    if let Some((warm_up, requests)) = plan.first_byte {
        let name = format!(
            "first byte of a run, {requests} POSTs one at a time on a keep-alive connection"
        );
        let rows = [format!("{name}: median (µs)"), format!("{name}: p99 (µs)")];
        let labels: Vec<&str> = rows.iter().map(String::as_str).collect();
        runs.measure(&name, &labels, has_runs, async |server| {
            let mut times = crate::runs::first_byte(server, warm_up, requests).await?;
            times.sort_unstable();
            let us = |q| quantile(&times, q).map_or(f64::NAN, |ns| ns as f64 / 1e3);
            Ok(vec![us(0.5), us(0.99)])
        })
        .await;
        first_byte_row = Some(rows[0].clone());
    }
    let mut runs_retained_row = None;
    if let Some((count, events)) = plan.runs_retained {
        let name = format!(
            "runs retained, {count} finished x {events} events of {} B",
            crate::runs::BYTES
        );
        let rows = [
            format!("{name}: server memory per run (bytes)"),
            format!("{name}: encoded size per run (bytes)"),
            format!("{name}: memory beyond the encoded size, per event and the end (bytes)"),
        ];
        let labels: Vec<&str> = rows.iter().map(String::as_str).collect();
        runs.measure(&name, &labels, only_ours, async |server| {
            let measured = crate::runs::retained(server, count, events).await?;
            Ok(vec![
                measured.per_run,
                measured.encoded_per_run,
                measured.beyond_per_event,
            ])
        })
        .await;
        runs_retained_row = Some(rows[2].clone());
    }
    servers.nodelay.set(false);

    if plan.goals {
        // Issue 26: resumable runs against a run without tower-sse.
        if let Some(row) = &runs_row {
            report.goal(
                "runs: ours <= 1.2x floor (CPU/token)",
                row,
                Kind::Ours,
                Kind::Floor,
                1.2,
                false,
            );
        }
        if let Some(row) = &first_byte_row {
            report.goal(
                "first byte of a run: ours <= 1.2x floor (median)",
                row,
                Kind::Ours,
                Kind::Floor,
                1.2,
                false,
            );
        }
        if let Some(row) = &runs_retained_row {
            report.goal_at_most(
                "runs retained: ours' memory per event <= its encoded size + 64 B",
                row,
                Kind::Ours,
                64.0,
            );
        }
        for (suffix, cpu) in &burst_one_cpu {
            report.goal(
                &format!("burst, 1 conn{suffix}: ours <= 1.5x floor (CPU/event)"),
                cpu,
                Kind::Ours,
                Kind::Floor,
                1.5,
                false,
            );
            if kinds.contains(&Kind::Axum) {
                report.goal(
                    &format!("burst, 1 conn{suffix}: axum >= 10x ours (CPU/event)"),
                    cpu,
                    Kind::Axum,
                    Kind::Ours,
                    10.0,
                    true,
                );
            }
        }
        if let Some(rows) = &widest_fan_out {
            report.goal(
                "widest fan-out: ours <= 1.05x floor (CPU/delivery)",
                &rows[4],
                Kind::Ours,
                Kind::Floor,
                1.05,
                false,
            );
            report.goal(
                "widest fan-out: ours <= 1.1x floor (p99 latency)",
                &rows[2],
                Kind::Ours,
                Kind::Floor,
                1.1,
                false,
            );
        }
        if kinds.contains(&Kind::Hub) {
            if let Some(rows) = &widest_fan_out {
                report.goal(
                    "widest fan-out: hub <= 1.1x floor (CPU/delivery)",
                    &rows[4],
                    Kind::Hub,
                    Kind::Floor,
                    1.1,
                    false,
                );
                report.goal(
                    "widest fan-out: hub <= 1.1x floor (p99 latency)",
                    &rows[2],
                    Kind::Hub,
                    Kind::Floor,
                    1.1,
                    false,
                );
            }
            // Replay against a burst of as many events on as many
            // connections, so that both pay the same per-connection cost.
            if let (Some(replay), Some((clients, behind))) = (&replay_row, plan.replay) {
                let burst =
                    format!("burst, {clients} conn x {behind} events: server CPU per event (ns)");
                report.goal_across(
                    &format!("replay: hub CPU per replayed event <= 2x ours' burst of {clients} x {behind} (CPU/event)"),
                    (replay, Kind::Hub),
                    (&burst, Kind::Ours),
                    2.0,
                );
            }
            if let Some(row) = &retained_row {
                report.goal_at_most(
                    "retained: hub memory per event <= its encoded size + 64 B",
                    row,
                    Kind::Hub,
                    64.0,
                );
            }
            if let Some(row) = &idle_row {
                report.goal(
                    "idle: hub <= 1.1x floor (memory/conn)",
                    row,
                    Kind::Hub,
                    Kind::Floor,
                    1.1,
                    false,
                );
            }
        }
        // Issue 25: a stream of ten topics against a stream of one.
        if kinds.contains(&Kind::Hub) && kinds.contains(&Kind::Hub10) {
            if let Some(rows) = &widest_fan_out {
                report.goal(
                    "widest fan-out: hub10 <= 1.2x hub (CPU/delivery)",
                    &rows[4],
                    Kind::Hub10,
                    Kind::Hub,
                    1.2,
                    false,
                );
                report.goal(
                    "widest fan-out: hub10 <= 1.2x hub (p99 latency)",
                    &rows[2],
                    Kind::Hub10,
                    Kind::Hub,
                    1.2,
                    false,
                );
            }
            if let Some(row) = &idle_row {
                report.goal(
                    "idle: hub10 <= 1.5x hub (memory/conn)",
                    row,
                    Kind::Hub10,
                    Kind::Hub,
                    1.5,
                    false,
                );
            }
            if let Some(row) = &replay_row {
                report.goal(
                    "replay: hub10 (10 topics, a tenth missed in each) <= 2x hub (CPU/replayed event)",
                    row,
                    Kind::Hub10,
                    Kind::Hub,
                    2.0,
                    false,
                );
            }
        }
        if let Some(row) = &idle_row {
            report.goal(
                "idle: ours <= 1.1x floor (memory/conn)",
                row,
                Kind::Ours,
                Kind::Floor,
                1.1,
                false,
            );
            report.goal(
                "idle: ours < axum (memory/conn)",
                row,
                Kind::Ours,
                Kind::Axum,
                1.0,
                false,
            );
        }
    }
    report
}

/// Runs measurements and records their figures.
struct Runs<'a> {
    servers: &'a Servers,
    kinds: &'a [Kind],
    reps: usize,
    report: &'a mut Report,
    /// Measurements so far, to rotate which server goes first.
    started: usize,
}

impl Runs<'_> {
    /// `reps` repetitions of `run` against a fresh server of each kind; the
    /// figures it returns are recorded in `rows`, in order.
    async fn measure(
        &mut self,
        name: &str,
        rows: &[&str],
        which: fn(Kind) -> bool,
        mut run: impl AsyncFnMut(&servers::Server) -> Result<Vec<f64>, Error>,
    ) {
        let kinds: Vec<Kind> = self.kinds.iter().copied().filter(|k| which(*k)).collect();
        if kinds.is_empty() {
            return;
        }
        for rep in 0..self.reps {
            for kind in rotated(&kinds, self.started + rep) {
                let label = format!("{name}, run {}, {kind}", rep + 1);
                let result = match self.servers.start(kind) {
                    Ok(server) => run(&server).await,
                    Err(error) => Err(error),
                };
                match result {
                    Ok(figures) => {
                        eprintln!(
                            "load: {label}: {}",
                            figures
                                .iter()
                                .map(|f| format!("{f:.1}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                        for (row, figure) in rows.iter().zip(figures) {
                            self.report.record(row, kind, Some(figure));
                        }
                    }
                    Err(error) => {
                        eprintln!("load: {label}: FAILED: {error}");
                        self.report.failures.push(format!("{label}: {error}"));
                        for row in rows {
                            self.report.record(row, kind, None);
                        }
                    }
                }
            }
        }
        self.started += 1;
    }
}

/// Every server but the hubs (the `ours` program again).
fn not_hub(kind: Kind) -> bool {
    !kind.is_hub()
}

fn any(_: Kind) -> bool {
    true
}

fn only_hub(kind: Kind) -> bool {
    kind == Kind::Hub
}

/// The servers with `POST /runs`: tower-sse's and the floor.
fn has_runs(kind: Kind) -> bool {
    matches!(kind, Kind::Ours | Kind::Floor)
}

fn only_ours(kind: Kind) -> bool {
    kind == Kind::Ours
}

/// `kinds`, starting at `start` (modulo), so that no server always runs
/// first.
fn rotated(kinds: &[Kind], start: usize) -> Vec<Kind> {
    let start = start % kinds.len();
    kinds[start..]
        .iter()
        .chain(&kinds[..start])
        .copied()
        .collect()
}

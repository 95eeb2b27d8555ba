//! Resumable runs read by clients nobody here wrote: the official OpenAI
//! Python library (from PyPI, in a venv this test makes) and the official
//! Node library (from npm, in a folder this test makes), pointed at
//! `examples/openai_compatible.rs` on 127.0.0.1.
//!
//! Each iterates every chunk of a streamed chat completion: the joined text
//! equals the fake model's text exactly and `[DONE]` ends the iteration.
//! A client that aborts mid-stream is seen by the server within 100 ms
//! (close detection), and the run goes on (the default policy), so that a
//! reconnect gets the whole answer.
//!
//! Two instances of the example on one Redis (`--redis`) serve one run:
//! started on A, resumed and stopped on B; and when A is killed mid-run,
//! B's followers see it end as failed.
//!
//! The clients are installed once under `target/openai-clients/`. Without
//! Python's venv or npm, or without the registries, the test says SKIPPED,
//! or fails with `TOWER_SSE_REQUIRE_OPENAI=1` (which `.ci/run` sets).

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const REQUIRE: &str = "TOWER_SSE_REQUIRE_OPENAI";

/// The fake model's answer: the test's own text, given to the example.
const TEXT: &str = "Runs outlive the tab: every token arrives once, in order, \
                    whichever client reads them, and [DONE] ends the answer.";

/// Where the clients are installed, once.
fn clients_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/openai-… -> target/openai-clients
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("openai-clients")
}

fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The venv's Python with the `openai` package, installed if needed.
fn python_client() -> Result<PathBuf, String> {
    let venv = clients_dir().join("venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    if run(Command::new(&python).args(["-c", "import openai"])).is_err() {
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "openai"]))?;
    }
    let version =
        run(Command::new(&python).args(["-c", "import openai; print(openai.__version__)"]))?;
    eprintln!("openai (Python) {}", version.trim());
    Ok(python)
}

/// A folder with the `openai` npm package, installed if needed.
fn node_client() -> Result<PathBuf, String> {
    let folder = clients_dir().join("node");
    std::fs::create_dir_all(&folder).map_err(|error| error.to_string())?;
    if !folder.join("node_modules").join("openai").is_dir() {
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "openai"])
            .current_dir(&folder))?;
    }
    let version = run(Command::new("node")
        .args([
            "-e",
            "console.log(JSON.parse(require('fs').readFileSync('node_modules/openai/package.json')).version)",
        ])
        .current_dir(&folder))?;
    eprintln!("openai (Node) {}", version.trim());
    Ok(folder)
}

/// The example, on a port of its own; its stdout lines are collected.
struct Server {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Self {
        Self::start_with(&["--token-ms", "10", "--text", TEXT])
    }

    /// The example with `args`.
    fn start_with(args: &[&str]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let binary = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join("openai_compatible");
        assert!(
            binary.is_file(),
            "{} is missing: `cargo test --all-features` builds it",
            binary.display()
        );
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let base = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the example said {first:?}"))
            .to_owned();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        Self { child, base, lines }
    }

    /// How many lines the example has written so far.
    fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The `at_ms` of the first line from `from` on that contains `what`,
    /// waiting for it.
    fn wait_for(&self, from: usize, what: &str, timeout: Duration) -> Option<u128> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .skip(from)
                .find_map(|line| {
                    if !line.contains(what) {
                        return None;
                    }
                    line.rsplit_once("at_ms=")?.1.parse().ok()
                });
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PYTHON: &str = r#"
import json, sys, time
import openai

base, mode = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0)
stream = client.chat.completions.create(
    model="fake", messages=[{"role": "user", "content": "hi"}], stream=True
)
text, chunks, run = "", 0, None
for chunk in stream:
    chunks += 1
    run = chunk.id
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if mode == "abort" and chunks == 5:
        aborted = int(time.time() * 1000)
        stream.close()
        print(json.dumps({"text": text, "chunks": chunks, "run": run, "aborted_ms": aborted}))
        sys.exit(0)
print(json.dumps({"text": text, "chunks": chunks, "run": run}))
"#;

const NODE: &str = r#"
const OpenAI = require('openai');
const [base, mode] = process.argv.slice(1); // node -e: no script path
(async () => {
  const client = new OpenAI({ baseURL: base, apiKey: 'not-needed', maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: 'fake', messages: [{ role: 'user', content: 'hi' }], stream: true,
  });
  let text = '', chunks = 0, run = null;
  for await (const chunk of stream) {
    chunks += 1;
    run = chunk.id;
    const content = chunk.choices?.[0]?.delta?.content;
    if (content) text += content;
    if (mode === 'abort' && chunks === 5) {
      const abortedMs = Date.now();
      stream.controller.abort();
      console.log(JSON.stringify({ text, chunks, run, aborted_ms: abortedMs }));
      return;
    }
  }
  console.log(JSON.stringify({ text, chunks, run }));
})().catch((error) => { console.error(error); process.exit(1); });
"#;

/// Runs a client script; its one line of JSON.
fn client(
    program: &Path,
    script_arg: &[&str],
    dir: Option<&Path>,
    base: &str,
    mode: &str,
) -> serde_json::Value {
    let mut command = Command::new(program);
    command.args(script_arg).args([base, mode]);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = run(&mut command).unwrap_or_else(|error| panic!("{error}"));
    serde_json::from_str(output.trim()).unwrap_or_else(|_| panic!("client said {output:?}"))
}

/// The run's text as a follower that reconnects without an id sees it:
/// every event from the first, `[DONE]` last.
async fn follow_from_start(base: &str, run: &str) -> String {
    let url = format!("{base}/runs/{run}");
    let response = common::client()
        .request(
            http::Request::get(url)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (events, broke) = common::events_until_end(response).await;
    assert!(!broke);
    let mut text = String::new();
    let last = events.last().map(|event| event.data.clone());
    assert_eq!(last.as_deref(), Some("[DONE]"), "{events:?}");
    for event in &events[..events.len() - 1] {
        let chunk: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        if let Some(content) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(content);
        }
    }
    text
}

fn check_client(name: &str, program: &Path, script: &[&str], dir: Option<&Path>) {
    let server = Server::start();
    // Every chunk, the exact text, and a clean end at [DONE].
    let whole = client(program, script, dir, &server.base, "whole");
    assert_eq!(whole["text"], TEXT, "{name}: {whole}");
    let words = TEXT.split_inclusive(' ').count() as u64;
    // The role chunk, one per word, the finish chunk.
    assert_eq!(whole["chunks"], words + 2, "{name}: {whole}");

    // An abort mid-stream: seen by the server within 100 ms, and the run
    // goes on to its end.
    let from = server.mark();
    let aborted = client(program, script, dir, &server.base, "abort");
    let aborted_ms = aborted["aborted_ms"].as_u64().unwrap() as u128;
    let run = aborted["run"]
        .as_str()
        .unwrap()
        .strip_prefix("chatcmpl-")
        .unwrap()
        .to_owned();
    let seen = server
        .wait_for(
            from,
            "closed POST /v1/chat/completions reason=client_gone",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{name}: the server never saw the client leave"));
    let noticed = seen.saturating_sub(aborted_ms);
    eprintln!("{name}: the abort was seen {noticed} ms after the client aborted");
    assert!(noticed <= 100, "{name}: seen {noticed} ms after the abort");
    assert!(
        server
            .wait_for(
                from,
                &format!("run {run} completed"),
                Duration::from_secs(10)
            )
            .is_some(),
        "{name}: the run did not go on after its client left"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let text = runtime.block_on(follow_from_start(&server.base, &run));
    assert_eq!(text, TEXT, "{name}: a reconnect got another text");
}

#[test]
fn the_official_python_client_reads_every_chunk_and_an_abort_is_seen_at_once() {
    let python = match python_client() {
        Ok(python) => python,
        Err(error) => {
            eprintln!("{error}");
            if !common::tool_available("the openai Python package", None, REQUIRE) {
                return;
            }
            unreachable!()
        }
    };
    check_client("python", &python, &["-c", PYTHON], None);
}

#[test]
fn the_official_node_client_reads_every_chunk_and_an_abort_is_seen_at_once() {
    let folder = match node_client() {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!("{error}");
            if !common::tool_available("the openai npm package", None, REQUIRE) {
                return;
            }
            unreachable!()
        }
    };
    check_client("node", Path::new("node"), &["-e", NODE], Some(&folder));
}

/// A `POST` of a streamed chat completion to `base`: the response, its
/// run's id, and the first `events` events read from it.
async fn start_streaming(
    base: &str,
    events: usize,
) -> (
    String,
    Vec<eventsource_stream::Event>,
    impl futures_util::Stream<
        Item = Result<
            eventsource_stream::Event,
            eventsource_stream::EventStreamError<hyper::Error>,
        >,
    >,
) {
    use eventsource_stream::Eventsource as _;
    use futures_util::StreamExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let body = r#"{"model":"fake","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let request = http::Request::post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let run = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let mut stream = http_body_util::BodyDataStream::new(response.into_body()).eventsource();
    let mut read = Vec::new();
    while read.len() < events {
        read.push(stream.next().await.unwrap().unwrap());
    }
    (run, read, stream)
}

/// The text of a run's OpenAI chunks.
fn chunk_text(events: &[eventsource_stream::Event]) -> String {
    events
        .iter()
        .filter_map(|event| serde_json::from_str::<serde_json::Value>(&event.data).ok())
        .filter_map(|chunk| Some(chunk["choices"][0]["delta"]["content"].as_str()?.to_owned()))
        .collect()
}

/// A follow of the run on `base`, after `last` (or from its first event).
async fn follow(
    base: &str,
    run: &str,
    last: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut request = http::Request::get(format!("{base}/runs/{run}"));
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    common::client()
        .request(request.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap()
}

#[test]
fn two_instances_on_redis_serve_one_run_and_a_killed_producer_ends_it_as_failed() {
    use common::redis_server::{Persistence, RedisServer};
    let Some(redis) = RedisServer::start(Persistence::None) else {
        return;
    };
    let url = redis.url();
    let long: String = TEXT.repeat(4);
    let args = ["--redis", &url, "--token-ms", "40", "--text", &long];
    let a = Server::start_with(&args);
    let b = Server::start_with(&args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Started on A; the page reads three events and reloads onto B.
        let (run, first, stream) = start_streaming(&a.base, 3).await;
        drop(stream);
        let last = first[2].id.clone();
        let resumed = follow(&b.base, &run, Some(&last)).await;
        assert_eq!(resumed.status(), 200);
        let rest = tokio::spawn(common::events_until_end(resumed));
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Stopped from B: the producer on A stops, B's stream ends.
        let from = a.mark();
        let stop = common::client()
            .request(
                http::Request::post(format!("{}/runs/{run}/stop", b.base))
                    .body(http_body_util::Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(stop.status(), 202, "B stops a run that A produces");
        assert!(
            a.wait_for(from, &format!("run {run} stopped"), Duration::from_secs(5))
                .is_some(),
            "the producer on A stopped"
        );
        let (rest, broke) = tokio::time::timeout(Duration::from_secs(10), rest)
            .await
            .expect("B's stream ends")
            .unwrap();
        assert!(!broke);
        assert_eq!(rest.last().unwrap().data, "[DONE]");
        let text = chunk_text(&first) + &chunk_text(&rest);
        assert!(
            !text.is_empty() && text.len() < long.len() && long.starts_with(&text),
            "every token once, in order, up to the stop: {text:?}"
        );

        // Killed mid-run: B's follower sees the run end as failed once A's
        // lease (10 s, the default) lapses.
        let (run, _, stream) = start_streaming(&a.base, 2).await;
        let followed = follow(&b.base, &run, None).await;
        let rest = tokio::spawn(common::events_until_end(followed));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut a = a;
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        drop(stream);
        let killed = Instant::now();
        let (events, broke) = tokio::time::timeout(Duration::from_secs(20), rest)
            .await
            .expect("B's stream ends within 20 s of the kill")
            .unwrap();
        eprintln!("the run ended {:?} after A was killed", killed.elapsed());
        assert!(!broke);
        let end = events.last().unwrap();
        assert_eq!(end.event, "run-end");
        let outcome: serde_json::Value = serde_json::from_str(&end.data).unwrap();
        assert_eq!(outcome["outcome"], "failed", "{outcome}");
        assert!(long.starts_with(&chunk_text(&events)));
    });
}

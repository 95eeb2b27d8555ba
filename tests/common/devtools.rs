//! What a headless Chromium's DevTools console shows, read through the
//! DevTools protocol: a client with just enough WebSocket (RFC 6455) to send
//! a command and read the answers and events. Start Chromium with
//! `--remote-debugging-port=0`; it writes the port into its profile.

use std::{collections::VecDeque, path::Path, time::Duration};

use http::Request;
use http_body_util::{BodyExt, Empty};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A connection to one page of a running Chromium.
pub struct DevTools {
    socket: TcpStream,
    /// Bytes read and not yet a whole frame.
    unread: Vec<u8>,
    /// The frames of a message so far (a message may be fragmented).
    message: Vec<u8>,
    /// Events that arrived while a command waited for its answer.
    events: VecDeque<Value>,
    next_id: u64,
}

impl DevTools {
    /// Connects to the first page of the Chromium whose profile is
    /// `profile`, waiting up to 30 s for it to listen.
    pub async fn connect(profile: &Path) -> DevTools {
        let started = tokio::time::Instant::now();
        let waited = || {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Chromium's DevTools answered within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50))
        };
        // Its first line is the port.
        let port = loop {
            let port = std::fs::read_to_string(profile.join("DevToolsActivePort"))
                .ok()
                .and_then(|text| text.lines().next()?.parse::<u16>().ok());
            match port {
                Some(port) => break port,
                None => waited().await,
            }
        };
        let path = loop {
            let request = Request::get(format!("http://127.0.0.1:{port}/json/list"))
                .body(Empty::new())
                .unwrap();
            if let Ok(response) = super::client().request(request).await {
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let targets: Value = serde_json::from_slice(&body).unwrap_or_default();
                let page = targets.as_array().into_iter().flatten().find_map(|target| {
                    (target["type"] == "page").then(|| target["webSocketDebuggerUrl"].as_str())?
                });
                // ws://127.0.0.1:PORT/devtools/page/ID
                if let Some((_, path)) =
                    page.and_then(|url| url.split_once("://")?.1.split_once('/'))
                {
                    break format!("/{path}");
                }
            }
            waited().await;
        };
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // Any key will do: this client does not check the server's answer
        // to it beyond its status.
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.write_all(handshake.as_bytes()).await.unwrap();
        let mut unread = Vec::new();
        let end = loop {
            if let Some(at) = unread.windows(4).position(|window| window == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "Chromium closed the DevTools connection");
            unread.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&unread[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        unread.drain(..end);
        DevTools {
            socket,
            unread,
            message: Vec::new(),
            events: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Sends a command and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let text = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send(text.as_bytes()).await;
        loop {
            let message = self
                .read_message()
                .await
                .unwrap_or_else(|| panic!("Chromium answered {method}"));
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push_back(message);
        }
    }

    /// The next event, or `None` once the connection is closed. Cancel
    /// safe: what was read stays here for the next call.
    pub async fn next_event(&mut self) -> Option<Value> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        loop {
            let message = self.read_message().await?;
            if message.get("method").is_some() {
                return Some(message);
            }
        }
    }

    /// Sends a text frame: unfragmented and, as from every client, masked.
    async fn send(&mut self, text: &[u8]) {
        let mut frame = vec![0x81]; // FIN, text
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x5a, 0x17, 0xc3, 0x2e];
        frame.extend_from_slice(&key);
        frame.extend(
            text.iter()
                .zip(key.iter().cycle())
                .map(|(byte, k)| byte ^ k),
        );
        self.socket.write_all(&frame).await.unwrap();
    }

    /// The next whole message (JSON), or `None` once the connection is
    /// closed. Its only `await` is a read, so it is cancel safe.
    async fn read_message(&mut self) -> Option<Value> {
        loop {
            while let Some((fin, opcode, payload)) = take_frame(&mut self.unread) {
                match opcode {
                    // Text, or its continuation.
                    0x0 | 0x1 => {
                        self.message.extend_from_slice(&payload);
                        if fin {
                            let text = std::mem::take(&mut self.message);
                            return Some(serde_json::from_slice(&text).unwrap());
                        }
                    }
                    0x8 => return None,
                    // Ping and pong: Chromium sends none it waits for.
                    _ => {}
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Takes one whole frame off the front of `buffer`: (FIN, opcode, payload).
fn take_frame(buffer: &mut Vec<u8>) -> Option<(bool, u8, Vec<u8>)> {
    let [first, second, ..] = buffer[..] else {
        return None;
    };
    let (len, mut at) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(buffer.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buffer.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if second & 0x80 != 0 {
        at += 4;
        Some(buffer.get(at - 4..at)?.try_into().ok()?)
    } else {
        None
    };
    let mut payload = buffer.get(at..at + len)?.to_vec();
    if let Some(mask) = mask {
        for (byte, k) in payload.iter_mut().zip(mask.iter().cycle()) {
            *byte ^= k;
        }
    }
    buffer.drain(..at + len);
    Some((first & 0x80 != 0, first & 0x0f, payload))
}

/// An error or a warning as the DevTools console shows it, from an event of
/// the `Runtime` or `Log` domain (enable both): a `console.error` or
/// `console.warn` call, an uncaught exception, or the browser's own report
/// (a CORS refusal, a failed load, a 404).
pub fn console_problem(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let level = params["type"].as_str()?;
            if !matches!(level, "error" | "warning" | "assert") {
                return None;
            }
            let args: Vec<String> = params["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|arg| match &arg["value"] {
                    Value::String(text) => text.clone(),
                    Value::Null => arg["description"].as_str().unwrap_or("?").to_owned(),
                    value => value.to_string(),
                })
                .collect();
            Some(format!("console.{level}: {}", args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("?");
            Some(format!("uncaught: {text}"))
        }
        "Log.entryAdded" => {
            let entry = &params["entry"];
            let level = entry["level"].as_str()?;
            if !matches!(level, "error" | "warning") {
                return None;
            }
            Some(format!(
                "{level} ({}): {} {}",
                entry["source"].as_str().unwrap_or("?"),
                entry["text"].as_str().unwrap_or("?"),
                entry["url"].as_str().unwrap_or("")
            ))
        }
        _ => None,
    }
}

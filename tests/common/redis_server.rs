//! A real `redis-server` (Debian's package) on a free loopback port, started
//! by the test, without persistence unless the test asks for it, and killed
//! by its PID when dropped.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Set by `.ci/run`: a missing `redis-server` fails the tests.
pub const REQUIRE: &str = "TOWER_SSE_REQUIRE_REDIS";

/// How the server keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart loses every stream.
    None,
    /// Append-only file, fsync after every write: a restart loses nothing
    /// acknowledged.
    AppendFsyncAlways,
}

pub struct RedisServer {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    persistence: Persistence,
}

fn find() -> Option<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

impl RedisServer {
    /// A running server, or `None` (said loudly, or a failure when
    /// [`REQUIRE`] is set) when `redis-server` is not installed.
    pub fn start(persistence: Persistence) -> Option<Self> {
        let binary = find();
        if !super::tool_available("redis-server", binary.as_deref(), REQUIRE) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-redis-{}-{}",
            std::process::id(),
            super::random_tag()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = Self {
                binary: binary.clone().unwrap(),
                child: None,
                port,
                dir: dir.clone(),
                persistence,
            };
            if server.launch() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> bool {
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        match self.persistence {
            Persistence::None => {
                command.args(["--appendonly", "no"]);
            }
            Persistence::AppendFsyncAlways => {
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                // Exited (and reaped): most likely the port was taken
                // meanwhile.
                return false;
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        panic!("redis-server did not answer within 10 s:\n{log}");
    }

    /// Kills the server with SIGKILL (nothing is flushed that was not).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same directory.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.launch() {
            assert!(Instant::now() < deadline, "redis-server did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one command (inline form) and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = vec![0; 64 * 1024];
        let n = stream.read(&mut reply).unwrap();
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

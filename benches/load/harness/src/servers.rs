//! The four servers: built (or installed) once, then started fresh for
//! every measurement and stopped by closing their stdin, then by PID.

use std::{
    fmt,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// hyper 1 with tower-sse's `EventStream` behind the whole `SseLayer`.
    Ours,
    /// Bare hyper 1, hand-encoded events in frames of up to 16 KiB.
    Floor,
    /// axum 0.8's `Sse` with `KeepAlive::default()`.
    Axum,
    /// express 4 with the `ssestream` package (the original recipe).
    Node,
    /// The `ours` server with `LOAD_HUB=1`: live events through tower-sse's
    /// hub (one topic, resume from `Last-Event-ID`).
    Hub,
    /// The `ours` server with `LOAD_HUB=1` and `LOAD_HUB_SET=10`: each
    /// stream a set of ten topics (`Hub::subscribe_set`), `live` and nine
    /// more that stay quiet unless a publish spreads over the set.
    Hub10,
}

/// The topics of the `hub10` server's set.
pub const HUB10_SET: u64 = 10;

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Ours,
        Kind::Floor,
        Kind::Axum,
        Kind::Node,
        Kind::Hub,
        Kind::Hub10,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Floor => "floor",
            Kind::Axum => "axum",
            Kind::Node => "node",
            Kind::Hub => "hub",
            Kind::Hub10 => "hub10",
        }
    }

    /// The `ours` program with tower-sse's hub.
    pub fn is_hub(self) -> bool {
        matches!(self, Kind::Hub | Kind::Hub10)
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the servers' programs are, once built.
pub struct Servers {
    load_dir: PathBuf,
    target_dir: PathBuf,
    node_dir: Option<PathBuf>,
    /// The frame cap `ours` is started with (`LOAD_FRAME_CAP`); `None`: the
    /// library's default.
    pub ours_frame_cap: std::cell::Cell<Option<usize>>,
    /// The history the hub server keeps (`LOAD_HUB_HISTORY`); `None`: the
    /// library's default.
    pub hub_history: std::cell::Cell<Option<usize>>,
    /// The Redis the hub server keeps its topic in (`LOAD_HUB_REDIS`);
    /// `None`: the memory hub.
    pub hub_redis: std::cell::RefCell<Option<String>>,
    /// The hub server's tokio worker threads (`TOKIO_WORKER_THREADS`);
    /// `None`: one per core.
    pub hub_workers: std::cell::Cell<Option<usize>>,
    /// The hub server's `max_topics` (`LOAD_HUB_MAX_TOPICS`); `None`: the
    /// library's default.
    pub hub_max_topics: std::cell::Cell<Option<usize>>,
    /// `TCP_NODELAY` on the sockets the Rust servers accept
    /// (`LOAD_NODELAY=1`; the `runs` mode's measurements).
    pub nodelay: std::cell::Cell<bool>,
}

impl Servers {
    /// Builds the Rust servers (release, each in its own Cargo project so no
    /// build unifies features with another, one shared target folder) and
    /// installs the Node server's packages with npm into a temporary folder.
    pub fn prepare(kinds: &[Kind]) -> Result<Servers, Error> {
        let load_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("the harness is not in benches/load")?
            .to_path_buf();
        let target_dir = load_dir.join("target");
        let mut servers = Servers {
            load_dir,
            target_dir,
            node_dir: None,
            ours_frame_cap: std::cell::Cell::new(None),
            hub_history: std::cell::Cell::new(None),
            hub_redis: std::cell::RefCell::new(None),
            hub_workers: std::cell::Cell::new(None),
            hub_max_topics: std::cell::Cell::new(None),
            nodelay: std::cell::Cell::new(false),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        // The hub server is the `ours` program.
        let mut builds: Vec<Kind> = Vec::new();
        for kind in kinds {
            let kind = if kind.is_hub() { Kind::Ours } else { *kind };
            if kind != Kind::Node && !builds.contains(&kind) {
                builds.push(kind);
            }
        }
        for kind in &builds {
            eprintln!("load: building the {kind} server");
            let manifest = servers.project(*kind).join("Cargo.toml");
            let status = Command::new(&cargo)
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&servers.target_dir)
                .status()
                .map_err(|error| format!("cannot run {cargo}: {error}"))?;
            if !status.success() {
                return Err(format!("building {} failed ({status})", manifest.display()).into());
            }
        }
        if kinds.contains(&Kind::Node) {
            servers.node_dir = Some(servers.install_node()?);
        }
        Ok(servers)
    }

    fn project(&self, kind: Kind) -> PathBuf {
        self.load_dir.join("servers").join(kind.name())
    }

    fn install_node(&self) -> Result<PathBuf, Error> {
        let dir = std::env::temp_dir().join(format!("tower-sse-load-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        for file in ["package.json", "server.js"] {
            std::fs::copy(self.project(Kind::Node).join(file), dir.join(file))?;
        }
        eprintln!("load: installing the node server's packages with npm");
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--omit=dev",
                "--loglevel=error",
            ])
            .current_dir(&dir)
            // npm's report would land in the table on stdout.
            .stdout(Stdio::null())
            .status()
            .map_err(|error| {
                format!(
                    "cannot run npm ({error}): the node server needs Node.js and npm; \
                     install them, or leave node out with --only ours,floor,axum"
                )
            })?;
        if !status.success() {
            return Err(format!("npm install in {} failed ({status})", dir.display()).into());
        }
        Ok(dir)
    }

    /// The `ours` program: the one built here, or `LOAD_OURS_BIN` when set
    /// (another build of it, for comparing two versions of the library in
    /// one invocation's conditions).
    fn ours_program(&self) -> PathBuf {
        std::env::var_os("LOAD_OURS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.target_dir.join("release/load-server-ours"))
    }

    /// Starts a fresh server and waits for it to print its port.
    pub fn start(&self, kind: Kind) -> Result<Server, Error> {
        let mut command = match kind {
            Kind::Node => {
                let dir = self
                    .node_dir
                    .as_ref()
                    .ok_or("the node server is not installed")?;
                let mut command = Command::new("node");
                command.arg("server.js").current_dir(dir);
                command
            }
            Kind::Hub | Kind::Hub10 => {
                let mut command = Command::new(self.ours_program());
                command.env("LOAD_HUB", "1");
                if kind == Kind::Hub10 {
                    command.env("LOAD_HUB_SET", HUB10_SET.to_string());
                }
                if let Some(max) = self.hub_max_topics.get() {
                    command.env("LOAD_HUB_MAX_TOPICS", max.to_string());
                }
                if let Some(history) = self.hub_history.get() {
                    command.env("LOAD_HUB_HISTORY", history.to_string());
                }
                if let Some(url) = &*self.hub_redis.borrow() {
                    command.env("LOAD_HUB_REDIS", url);
                }
                if let Some(workers) = self.hub_workers.get() {
                    command.env("TOKIO_WORKER_THREADS", workers.to_string());
                }
                command
            }
            Kind::Ours => Command::new(self.ours_program()),
            _ => Command::new(
                self.target_dir
                    .join("release")
                    .join(format!("load-server-{}", kind.name())),
            ),
        };
        if self.nodelay.get() {
            command.env("LOAD_NODELAY", "1");
        }
        if let (Kind::Ours, Some(cap)) = (kind, self.ours_frame_cap.get()) {
            command.env("LOAD_FRAME_CAP", cap.to_string());
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start the {kind} server: {error}"))?;
        // From here on, dropping `server` stops the child.
        let mut server = Server {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
        };
        let stdout = server.child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("the {kind} server printed {line:?}, not its port"))?;
        server.addr.set_port(port);
        Ok(server)
    }
}

/// A running server process.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin asks the server to exit; the kill makes sure.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(dir) = &self.node_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

//! A real `redis-server` (Debian's package) on a free loopback port, started
//! by the test, without persistence unless the test asks for it, and killed
//! by its PID when dropped. [`RedisServer::start_tls`] starts one that
//! speaks TLS only, with a certificate signed by a CA made for the test.

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
    /// TLS only (`--port 0 --tls-port`), with these certificates.
    tls: Option<Certificates>,
    /// More arguments (a cluster node's).
    args: Vec<String>,
}

/// A CA made at test time, and a certificate it signed for a server at
/// `127.0.0.1` and `localhost`: PEM text.
pub struct Certificates {
    /// The CA's certificate: what a client trusts.
    pub ca: String,
    /// The server's certificate and its key.
    pub cert: String,
    pub key: String,
}

impl Certificates {
    /// A new CA (named `name`) and a server certificate signed by it, for
    /// `127.0.0.1` and `localhost`.
    pub fn generate(name: &str) -> Self {
        Self::generate_for(name, &["127.0.0.1", "localhost"])
    }

    /// A new CA (named `name`) and a server certificate signed by it, for
    /// `hosts` (IP addresses or DNS names).
    pub fn generate_for(name: &str, hosts: &[&str]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
        let mut server = CertificateParams::new(hosts).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "redis-server");
        server.use_authority_key_identifier_extension = true;
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        Self {
            ca: ca_cert.pem(),
            cert: server_cert.pem(),
            key: server_key.serialize_pem(),
        }
    }
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
        Self::start_with(persistence, None)
    }

    /// A running server that speaks TLS only, with a certificate for
    /// `127.0.0.1` and `localhost` signed by a CA made here
    /// ([`ca`](RedisServer::ca)); `None` as [`start`](RedisServer::start).
    pub fn start_tls(persistence: Persistence) -> Option<Self> {
        Self::start_tls_with(persistence, Certificates::generate("tower-sse test CA"))
    }

    /// A running server that speaks TLS only, with `certificates`.
    pub fn start_tls_with(persistence: Persistence, certificates: Certificates) -> Option<Self> {
        Self::start_with(persistence, Some(certificates))
    }

    fn start_with(persistence: Persistence, tls: Option<Certificates>) -> Option<Self> {
        Self::start_with_args(persistence, tls, Vec::new())
    }

    fn start_with_args(
        persistence: Persistence,
        tls: Option<Certificates>,
        args: Vec<String>,
    ) -> Option<Self> {
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
        if let Some(tls) = &tls {
            std::fs::write(dir.join("ca.pem"), &tls.ca).unwrap();
            std::fs::write(dir.join("server.pem"), &tls.cert).unwrap();
            std::fs::write(dir.join("server.key"), &tls.key).unwrap();
        }
        let mut tls = tls;
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
                tls: tls.take(),
                args: args.clone(),
            };
            if server.launch() {
                return Some(server);
            }
            tls = server.tls.take();
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM of the CA that signed a TLS server's certificate.
    pub fn ca(&self) -> &str {
        &self.tls.as_ref().expect("a TLS server").ca
    }

    fn launch(&mut self) -> bool {
        if self.tls.is_some() {
            // Its readiness is read from the log: not an earlier run's.
            let _ = std::fs::remove_file(self.dir.join("redis.log"));
        }
        let mut command = Command::new(&self.binary);
        match &self.tls {
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
            Some(_) => {
                // Clients need no certificate of their own.
                command
                    .args(["--port", "0"])
                    .args(["--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(self.dir.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(self.dir.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(self.dir.join("ca.pem"))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.args);
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
            if self.answers() {
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

    /// Whether the server is up: a `PING` answered, or for a TLS server
    /// (no plain port), its log saying that it is ready and its port
    /// taking connections.
    fn answers(&self) -> bool {
        if self.tls.is_none() {
            return ping(self.port);
        }
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        log.contains("Ready to accept connections")
            && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Runs one command (inline form) and returns the raw reply (a plain
    /// server only).
    pub fn command(&self, line: &str) -> String {
        assert!(self.tls.is_none(), "command() speaks plain text");
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

/// A Redis Cluster of three primaries with a replica each, made with
/// `redis-cli --cluster create` (nodes time out after 1 s, so a failover
/// takes a few seconds), every node stopped when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the six nodes and makes them a cluster; `None` (the test
    /// skips) without `redis-server` or `redis-cli`, which `.ci/run`
    /// refuses.
    pub fn start() -> Option<Self> {
        let cli = which("redis-cli");
        if !super::tool_available("redis-cli", cli.as_deref(), REQUIRE) {
            return None;
        }
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                // A replica takes over however long its primary was quiet
                // (by default one idle for long enough would not).
                "--cluster-replica-validity-factor",
                "0",
            ];
            nodes.push(RedisServer::start_with_args(
                Persistence::None,
                None,
                args.iter().map(|arg| (*arg).to_owned()).collect(),
            )?);
        }
        let mut create = Command::new(cli.unwrap());
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits (at most 30 s) until every live node says the cluster is ok
    /// and knows three primaries.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|node| node.child.is_some())
                .all(|node| {
                    node.command("CLUSTER INFO").contains("cluster_state:ok")
                        && self.primaries_seen_by(node) == 3
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn primaries_seen_by(&self, node: &RedisServer) -> usize {
        node.command("CLUSTER NODES")
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .filter(|line| line.split(' ').nth(8).is_some())
            .count()
    }

    /// The live nodes that are primaries now.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .filter(|&i| self.nodes[i].command("ROLE").contains("master"))
            .collect()
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(tool))
        .find(|path| path.is_file())
}

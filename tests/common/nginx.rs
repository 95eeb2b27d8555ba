//! A real nginx from the distribution's packages, started by a test with
//! its own configuration in a temporary directory, listening on 127.0.0.1
//! only, and stopped by its PID when the test ends, failed or not.

use std::{
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Set by `.ci/run`: a missing nginx fails the tests.
pub const REQUIRE: &str = "TOWER_SSE_REQUIRE_NGINX";

/// A running nginx; killed by its PID and its directory removed on drop.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// What nginx logged so far (level `info`).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// A port that was free a moment ago.
///
/// The tests of this file run in parallel: a port handed to one nginx is
/// never handed to another, or the second would fail to bind while the
/// readiness check reached the first.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Starts nginx proxying to the `upstreams` (one `upstream` block, each a
/// `server` line followed by `server_extra`) with `location_extra` added to
/// its one `location /` block. It has room for 512 connections (each
/// proxied stream holds two, the client's and the upstream's).
pub fn start_nginx(
    binary: &Path,
    upstreams: &[SocketAddr],
    server_extra: &str,
    location_extra: &str,
) -> Nginx {
    let dir = std::env::temp_dir().join(format!(
        "tower-sse-nginx-{}-{}",
        std::process::id(),
        super::random_tag()
    ));
    let servers: String = upstreams
        .iter()
        .map(|addr| format!("server {addr} {server_extra};\n        "))
        .collect();
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let d = dir.display();
    let config = format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    upstream app {{
        {servers}
    }}
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            {location_extra}
        }}
    }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let mut nginx = Nginx {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Listening, and still ours: a bind failure (another process took
        // the port in between) makes nginx exit.
        let exited = nginx.child.try_wait().ok().flatten();
        if exited.is_none() && TcpStream::connect(nginx.addr).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
            if nginx.child.try_wait().ok().flatten().is_none() {
                return nginx;
            }
        }
        if let Some(status) = nginx.child.try_wait().ok().flatten() {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

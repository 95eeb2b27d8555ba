//! Fan-out driver: N idle /sse/live streams, then K single-event publishes,
//! either lockstep (next publish once every stream has the last event) or at
//! a rate. Prints the server's CPU (utime/stime ticks from /proc/PID/stat,
//! ns from schedstat) over the event phase.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};

fn stat(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // fields after ')' start at field 3 (state); utime is field 14, stime 15
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}
fn sched_ns(pid: u32) -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let p = e.unwrap().path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            t += s.split(' ').next().unwrap().parse::<u64>().unwrap();
        }
    }
    t
}

async fn open(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /sse/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    s
}

async fn reader(mut s: TcpStream, count: Arc<AtomicU64>, notify: Arc<Notify>) {
    let pat = b"\nid: ";
    let mut buf = vec![0u8; 16384 + 8];
    let mut tail = 0usize; // bytes kept at the front from the last read
    loop {
        let n = match s.read(&mut buf[tail..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let end = tail + n;
        let mut c = 0;
        let mut i = 0;
        while i + pat.len() <= end {
            if &buf[i..i + pat.len()] == pat {
                c += 1;
                i += pat.len();
            } else {
                i += 1;
            }
        }
        let keep = (pat.len() - 1).min(end);
        buf.copy_within(end - keep..end, 0);
        tail = keep;
        if c > 0 {
            count.fetch_add(c, Ordering::Relaxed);
            notify.notify_one();
        }
    }
}

async fn publish(p: &mut TcpStream, count: u64) -> u64 {
    let req = format!(
        "POST /publish?count={count} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
    );
    p.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    loop {
        let n = p.read(&mut tmp).await.unwrap();
        assert!(n > 0, "publisher closed");
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(h) = text.find("\r\n\r\n") {
            let head = &text[..h].to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if text.len() >= h + 4 + len {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                return text[h + 4..h + 4 + len].trim().parse().unwrap();
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let addr = format!("127.0.0.1:{}", a[1]);
    let n: usize = a[2].parse().unwrap();
    let k: u64 = a[3].parse().unwrap();
    let pid: u32 = a[4].parse().unwrap();
    let rate: f64 = a.get(5).map(|r| r.parse().unwrap()).unwrap_or(0.0); // 0 = lockstep
                                                                         // Events each stream gets before any publish: 1 for the hub (its
                                                                         // position event), none for the others.
    let first: u64 = std::env::var("FANCLIENT_FIRST")
        .ok()
        .map_or(0, |v| v.parse().unwrap());
    let early = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    // open, 64 at a time; wait for each response head
    let mut streams = Vec::with_capacity(n);
    let mut opened = 0;
    while opened < n {
        let batch = (n - opened).min(64);
        let mut hs = Vec::new();
        for _ in 0..batch {
            let addr = addr.clone();
            let early = early.clone();
            hs.push(tokio::spawn(async move {
                let mut s = open(&addr).await;
                // read the head (and whatever follows it in the same read)
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let r = tokio::time::timeout(Duration::from_secs(120), s.read(&mut tmp))
                        .await
                        .expect("head timeout")
                        .unwrap();
                    assert!(r > 0);
                    buf.extend_from_slice(&tmp[..r]);
                    if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        assert!(buf.starts_with(b"HTTP/1.1 200"));
                        // What came with the head: the hub's position
                        // event (FANCLIENT_FIRST), nothing for the others.
                        let ids = buf[h..].windows(5).filter(|w| *w == b"\nid: ").count();
                        assert!(ids as u64 <= first, "an event before any publish");
                        early.fetch_add(ids as u64, Ordering::Relaxed);
                        break;
                    }
                }
                s
            }));
        }
        for h in hs {
            streams.push(h.await.unwrap());
        }
        opened += batch;
    }
    let mut p = TcpStream::connect(&addr).await.unwrap();
    p.set_nodelay(true).unwrap();
    let subs = publish(&mut p, 0).await;
    assert_eq!(subs as usize, n, "subscribers");
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(reader(s, count.clone(), notify.clone())))
        .collect();
    // The events before any publish, then counting starts from nothing.
    let before = n as u64 * first;
    while early.load(Ordering::Relaxed) + count.load(Ordering::Relaxed) < before {
        let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
    }
    assert_eq!(
        early.load(Ordering::Relaxed) + count.load(Ordering::Relaxed),
        before
    );
    count.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (u0, s0) = stat(pid);
    let ns0 = sched_ns(pid);
    let t0 = Instant::now();
    let period = if rate > 0.0 {
        Some(Duration::from_secs_f64(1.0 / rate))
    } else {
        None
    };
    let mut ticks = period.map(tokio::time::interval);
    for i in 0..k {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        publish(&mut p, 1).await;
        if period.is_none() {
            let want = n as u64 * (i + 1);
            while count.load(Ordering::Relaxed) < want {
                let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
            }
        }
    }
    let want = n as u64 * k;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
    }
    let wall = t0.elapsed();
    let (u1, s1) = stat(pid);
    let ns1 = sched_ns(pid);
    let got = count.load(Ordering::Relaxed);
    let d = (n as u64 * k).max(1) as f64;
    println!(
        "n={n} k={k} delivered={got} wall={:.3}s utime_ticks={} stime_ticks={} sched_ns={} ns_per_delivery={:.0} user_share={:.3}",
        wall.as_secs_f64(),
        u1 - u0,
        s1 - s0,
        ns1 - ns0,
        (ns1 - ns0) as f64 / d,
        (u1 - u0) as f64 / ((u1 - u0 + s1 - s0).max(1)) as f64
    );
    for r in &readers {
        r.abort();
    }
    drop(p);
}

//! Criterion bench of the service: single-object change sets per second through the HTTP
//! API (`POST /v1/changes` on loopback), each committed by the SQLite log (group commit,
//! fsync included) before it is answered, from [`CONNECTIONS`] keep-alive connections at
//! once.
//!
//! - `apply/passive`: objects of a passive model (the log and API path only);
//! - `apply/actuated_noop`: objects of an actuated model with the `noop` actuator, so each
//!   change set also makes the scheduler dispatch, and logs a delivery.
//!
//! The client is a minimal HTTP/1.1 keep-alive client on one tokio thread (one task per
//! connection, each sending its next request once the answer to the previous one came),
//! so that the client takes as little of the two cores as it can. Every answer is checked
//! (status 200 and a `seq`). Besides criterion's time per change set, each bench prints
//! the p50 / p99 / max latency (request written to answer read) of every request of its
//! timed runs (warm-up included).
//!
//! `cargo bench -p syncore-service --bench serve -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parking_lot::Mutex;
use serde_json::json;
use syncore_service::{Deployment, Service};
use tokio::net::TcpStream;

/// Concurrent keep-alive connections.
const CONNECTIONS: usize = 256;

fn deployment(dir: &std::path::Path, actuated: bool) -> Deployment {
    let kind = if actuated { "actuated" } else { "passive" };
    let mut d = json!({
        "schema": {"models": [{"name": "Item", "kind": kind, "fields": [{"name": "n", "type": "int"}]}]},
        "listen": "127.0.0.1:0",
        "data_dir": dir.join("data"),
        "service": {"snapshot_every": 1_000_000}
    });
    if actuated {
        d["models"] = json!({"Item": {"actuator": "noop"}});
    }
    Deployment::from_str(&d.to_string(), dir, "bench").unwrap()
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one `POST /v1/changes` and reads its answer: (status, body).
    async fn apply(&mut self, body: &str) -> (u16, String) {
        let req = format!(
            "POST /v1/changes HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut sent = 0;
        while sent < req.len() {
            self.stream.writable().await.unwrap();
            match self.stream.try_write(&req.as_bytes()[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        // Read the head, then as many body bytes as its content-length says.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .unwrap()
            .to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no content-length in {head:?}"));
        while self.buf.len() < head_end + len {
            self.fill().await;
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).into_owned();
        self.buf.drain(..head_end + len);
        (status, body)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            self.stream.readable().await.unwrap();
            match self.stream.try_read(&mut chunk) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// CPU time (user + system, in clock ticks of 10 ms) of the whole process and of each of
/// its live threads by name, from /proc: where the cores went, client included.
fn cpu_ticks() -> (u64, BTreeMap<String, u64>) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based, name is 2).
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((name, t))
    }
    let total = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .map_or(0, |(_, t)| t);
    let mut by_name = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Some((name, n)) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
            {
                *by_name.entry(name).or_default() += n;
            }
        }
    }
    (total, by_name)
}

/// CPU used between two [`cpu_ticks`] readings.
#[derive(Default)]
struct Cpu {
    total: u64,
    by_name: BTreeMap<String, u64>,
}

impl Cpu {
    fn add(&mut self, before: &(u64, BTreeMap<String, u64>), after: &(u64, BTreeMap<String, u64>)) {
        self.total += after.0.saturating_sub(before.0);
        for (name, t) in &after.1 {
            let was = before.1.get(name).copied().unwrap_or(0);
            *self.by_name.entry(name.clone()).or_default() += t.saturating_sub(was);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for (name, actuated) in [("passive", false), ("actuated_noop", true)] {
        let dir = tempfile::tempdir().unwrap();
        let server = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let service = server
            .block_on(Service::start(deployment(dir.path(), actuated)))
            .unwrap();
        let addr = service.addr;
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conns: Vec<Arc<tokio::sync::Mutex<Conn>>> = client.block_on(async {
            let mut v = Vec::new();
            for _ in 0..CONNECTIONS {
                v.push(Arc::new(tokio::sync::Mutex::new(Conn::open(addr).await)));
            }
            v
        });
        let next = Arc::new(AtomicU64::new(0));
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let mut cpu = Cpu::default();
        let commits_before = service.log_stats().commits;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let left = Arc::new(AtomicU64::new(iters));
                let cpu_before = cpu_ticks();
                let start = Instant::now();
                client.block_on(async {
                    let tasks: Vec<_> = conns
                        .iter()
                        .map(|conn| {
                            let (conn, left, next, lat) =
                                (conn.clone(), left.clone(), next.clone(), latencies.clone());
                            tokio::spawn(async move {
                                let mut conn = conn.lock().await;
                                let mut mine = Vec::new();
                                while left
                                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok()
                                {
                                    let i = next.fetch_add(1, Ordering::Relaxed);
                                    let body = format!(
                                        r#"[{{"upsert": {{"key": "k{}", "model": "Item", "fields": {{"n": {i}}}}}}}]"#,
                                        i % 10_000
                                    );
                                    let sent = Instant::now();
                                    let (status, answer) = conn.apply(&body).await;
                                    mine.push(sent.elapsed());
                                    assert!(
                                        status == 200 && answer.contains("\"seq\""),
                                        "{status} {answer}"
                                    );
                                }
                                lat.lock().extend(mine);
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                let took = start.elapsed();
                cpu.add(&cpu_before, &cpu_ticks());
                took
            })
        });
        let mut lat = std::mem::take(&mut *latencies.lock());
        lat.sort_unstable();
        let n = lat.len().max(1) as f64;
        let stats = service.log_stats();
        println!(
            "apply/{name}: {} requests over {CONNECTIONS} connections: latency p50 {:?}, p99 {:?}, max {:?}; \
             {} log commits ({:.1} entries per commit, mean commit {:?})",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default(),
            stats.commits - commits_before,
            stats.appended as f64 / stats.commits.max(1) as f64,
            stats.fsync_total / stats.commits.max(1) as u32,
        );
        // 1 tick = 10 ms = 10,000 us.
        let per = |t: u64| t as f64 * 10_000.0 / n;
        let threads: Vec<String> = cpu
            .by_name
            .iter()
            .filter(|(_, &t)| t > 0)
            .map(|(name, &t)| format!("{name} {:.1}", per(t)))
            .collect();
        println!(
            "apply/{name}: CPU per change set {:.1} us (process, client included; by thread: {})",
            per(cpu.total),
            threads.join(", ")
        );
        drop(conns);
        drop(client);
        server.block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), service.stop())
                .await
                .ok()
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

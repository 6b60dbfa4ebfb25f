//! Starting the real `syncore-serve` binary on loopback, and talking to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use syncore_service::Client;

/// A running service process.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub first_line: String,
}

impl Server {
    /// Starts `syncore-serve deployment` and waits for its "listening on" line.
    pub fn start(deployment: &Path) -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_syncore-serve"))
            .arg(deployment)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let _ = child.wait();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("the service did not start: {err}"));
            }
        };
        // Keep reading stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| format!("no address in {line:?}"))?
            .to_string();
        Ok(Server {
            child,
            url,
            first_line: line,
        })
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, None)
    }

    /// SIGKILL, reap, and return what the process wrote to stderr (for failure messages).
    pub fn kill_for_stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET a path as JSON.
pub fn get(c: &Client, path: &str) -> Value {
    let a = c.get(path).expect("request");
    assert!(a.ok(), "GET {path}: {} {}", a.status, a.body);
    serde_json::from_str(&a.body).expect("JSON")
}

/// Waits until `f` holds, or panics after `timeout` with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SplitMix64: a seeded stream of numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

//! What a plugin instance sees: the store data, the resource limiter (P2), a WASI context
//! holding only what its grant allows (P3), `wasi:http` behind the grant's gate, and the
//! `host` (log lines) and `config` (configuration, secrets) interfaces.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::{ClosedInputStream, MemoryOutputPipe, SinkOutputStream};
use wasmtime_wasi::{
    FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{actuator::syncore::plugin as wit_pkg, wit, Level};
use super::config::Limits;
use super::conn::HttpPool;
use super::grant::Granted;
use super::http::{record, Gate, HttpHandler, Incident, IncidentSlot, TransportSlot};

/// How important a log line is (the WIT `host.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Detail for debugging a plugin.
    Debug,
    /// Normal operation.
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something went wrong.
    Error,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// One line a plugin logged through `host.log`, tagged by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The plugin's name (as given to `load_*`).
    pub plugin: String,
    /// The key of the object the call was about (for a policy: the changed object; for a
    /// watcher: the watched object).
    pub key: String,
    /// The level.
    pub level: LogLevel,
    /// The text, cut to `Limits::message_bytes_max`.
    pub message: String,
}

/// Where plugin log lines go: the embedder's trace. Called from executor worker threads.
pub trait LogSink: Send + Sync {
    /// Records one line.
    fn log(&self, line: LogLine);
}

/// The default [`LogSink`]: keeps the most recent lines in memory, for
/// [`WasmHost::take_logs`](super::WasmHost::take_logs).
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    dropped: std::sync::atomic::AtomicU64,
}

/// Most lines a [`LogBuffer`] keeps; older ones are dropped and counted.
pub const LOG_BUFFER_LINES_MAX: usize = 10_000;

impl LogBuffer {
    /// Takes every buffered line, oldest first.
    pub fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock()).into()
    }

    /// Lines dropped because the buffer was full, or a call logged more than its limit.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl LogSink for LogBuffer {
    fn log(&self, line: LogLine) {
        let mut lines = self.lines.lock();
        if lines.len() >= LOG_BUFFER_LINES_MAX {
            lines.pop_front();
            self.count_dropped(1);
        }
        lines.push_back(line);
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Refuses growth past the configured limits and remembers what it refused, so a failed call
/// can name the limit instead of the guest's generic abort.
pub(crate) struct Limiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    instances_max: usize,
    /// The refused growth of the current call, if any (reset per call).
    pub(crate) denied: Option<Denied>,
}

/// A growth the limiter refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// A memory wanted to grow to `desired` bytes.
    Memory { desired: usize },
    /// A table wanted to grow to `desired` elements.
    Table { desired: usize },
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.denied = Some(Denied::Memory { desired });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements_max {
            self.denied = Some(Denied::Table { desired });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances_max
    }

    fn tables(&self) -> usize {
        self.instances_max
    }

    fn memories(&self) -> usize {
        self.instances_max
    }
}

/// A clock stopped at zero: plugins get no real time (P3); WASI p2 requires some clock.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The store data of one plugin instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// The `wasi:http` hooks: the plugin's grant, its caps, the in-process handler.
    gate: Gate,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// Everything the instance wrote to stderr, up to `Limits::stderr_bytes_max`.
    pub(crate) stderr: MemoryOutputPipe,
    /// The plugin's name, for log lines.
    plugin: Arc<str>,
    /// What the plugin was granted (configuration, secrets).
    pub(crate) granted: Arc<Granted>,
    /// The host-side failure of the current call, if any (a refused request, a secret not
    /// granted...): the call fails with it.
    pub(crate) incident: IncidentSlot,
    /// The first transport failure of the current call's outbound requests, if any.
    transport: TransportSlot,
    /// The object of the current call, for log lines.
    pub(crate) key: String,
    /// Log lines written in the current call.
    pub(crate) logs_count: u32,
    /// Epoch ticks the current asynchronous call may still run (counted only while the
    /// guest runs: see `pool.rs`); unused by synchronous calls.
    pub(crate) ticks_left: u64,
    /// The previous call's input, kept so the next call refills its strings and lists
    /// instead of allocating new ones (`convert::view_into_wit`).
    pub(crate) input: Option<wit::ObjectView>,
    /// Bytes on stderr when the instance was made or ended its last call: where the next
    /// call's own stderr starts (read once per call, when the instance is kept).
    pub(crate) stderr_mark: usize,
    log_lines_max: u32,
    message_bytes_max: usize,
    sink: Arc<dyn LogSink>,
    buffer: Arc<LogBuffer>,
}

/// What a new instance's state is made from.
pub(crate) struct StateParts<'a> {
    pub(crate) plugin: Arc<str>,
    pub(crate) limits: &'a Limits,
    pub(crate) granted: Arc<Granted>,
    pub(crate) handler: Option<Arc<dyn HttpHandler>>,
    pub(crate) pool: Option<HttpPool>,
    pub(crate) sink: Arc<dyn LogSink>,
    pub(crate) buffer: Arc<LogBuffer>,
}

impl HostState {
    /// Fresh state: a WASI context with what the grant allows and nothing else (no env,
    /// args or sockets; clocks stopped and randomness fixed unless granted; only granted
    /// directories; stdin closed, stdout discarded, stderr captured).
    ///
    /// # Errors
    /// A granted directory that cannot be opened.
    pub(crate) fn new(parts: StateParts<'_>) -> Result<HostState, String> {
        let StateParts {
            plugin,
            limits,
            granted,
            handler,
            pool,
            sink,
            buffer,
        } = parts;
        let grant = &granted.grant;
        let stderr = MemoryOutputPipe::new(limits.stderr_bytes_max);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(ClosedInputStream)
            .stdout(SinkOutputStream)
            .stderr(stderr.clone())
            .max_random_size(4096)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !grant.wall_clock {
            wasi.wall_clock(StoppedClock);
        }
        if !grant.monotonic_clock {
            wasi.monotonic_clock(StoppedClock);
        }
        if !grant.random {
            wasi.secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a]))
                .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5]))
                .insecure_random_seed(0);
        }
        for dir in &grant.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| {
                    format!(
                        "cannot open the granted directory {}: {e:#}",
                        dir.host.display()
                    )
                })?;
        }
        let incident = IncidentSlot::default();
        let transport = TransportSlot::default();
        Ok(HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            gate: Gate {
                plugin: plugin.clone(),
                granted: granted.clone(),
                incident: incident.clone(),
                transport: transport.clone(),
                handler,
                pool,
            },
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes_max: limits.memory_bytes_max,
                table_elements_max: limits.table_elements_max,
                instances_max: limits.instances_max,
                denied: None,
            },
            stderr,
            plugin,
            granted,
            incident,
            transport,
            key: String::new(),
            logs_count: 0,
            ticks_left: 0,
            input: None,
            stderr_mark: 0,
            log_lines_max: limits.log_lines_max,
            message_bytes_max: limits.message_bytes_max,
            sink,
            buffer,
        })
    }

    /// Prepares for a call about `key`.
    pub(crate) fn begin(&mut self, key: &str) {
        self.key.clear();
        self.key.push_str(key);
        self.logs_count = 0;
        self.limiter.denied = None;
        *self.incident.lock() = None;
        *self.transport.lock() = None;
    }

    /// The current call's first transport failure (`origin: error`), if any.
    pub(crate) fn transport_error(&self) -> Option<String> {
        self.transport.lock().clone()
    }

    /// The current call's incident message, if any.
    pub(crate) fn incident(&self) -> Option<String> {
        self.incident
            .lock()
            .as_ref()
            .map(|i| i.message(&self.plugin))
    }

    /// Bytes written to stderr so far.
    pub(crate) fn stderr_len(&self) -> usize {
        self.stderr.contents().len()
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_pkg::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        self.logs_count = self.logs_count.saturating_add(1);
        if self.logs_count > self.log_lines_max {
            self.buffer.count_dropped(1);
            return;
        }
        self.sink.log(LogLine {
            plugin: self.plugin.to_string(),
            key: self.key.clone(),
            level: level.into(),
            message: truncate(self.granted.redact(message), self.message_bytes_max),
        });
    }
}

impl wit_pkg::config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.granted.grant.config.get(&key).cloned()
    }

    fn secret(&mut self, name: String) -> Result<String, String> {
        match self.granted.grant.secrets.get(&name) {
            Some(secret) => Ok(secret.expose().to_string()),
            None => {
                let incident = Incident::SecretNotGranted { name };
                let message = incident.message(&self.plugin);
                record(&self.incident, incident);
                Err(message)
            }
        }
    }
}

impl wit_pkg::types::Host for HostState {}

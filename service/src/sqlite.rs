//! [`SqliteLog`]: the embedded [`InputLog`], one SQLite database file in WAL mode.
//!
//! Why SQLite (through rusqlite's bundled build) rather than redb: it is the most widely
//! deployed and tested embedded store there is, its file format is stable and documented,
//! an operator can open the log with the stock `sqlite3` shell to look inside, and WAL mode
//! with `synchronous=FULL` gives exactly the durability we need (a commit is on disk when
//! it returns) at one fsync per commit, which group commit then shares between many
//! entries. redb would avoid a C build, but it is younger and its on-disk format has
//! changed between major versions.
//!
//! A single writer thread owns the connection. Appends are queued on a channel; the writer
//! takes every queued operation (up to [`BATCH_MAX`]) into one transaction and commits it
//! once, then acknowledges them all: concurrent appends share one fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::log::{
    frame, unframe, Ack, InputLog, LogError, LogStats, Recovery, Seq, FSYNC_BUCKETS_S,
};

/// Most operations committed in one transaction.
pub const BATCH_MAX: usize = 8192;

enum Op {
    Append(Seq, Vec<u8>, Ack),
    Snapshot(Seq, Vec<u8>, Ack),
}

#[derive(Default)]
struct Counters {
    appended: AtomicU64,
    commits: AtomicU64,
    bytes: AtomicU64,
    entries: AtomicU64,
    snapshots: AtomicU64,
    durable: AtomicU64,
    fsync_ns: AtomicU64,
    buckets: [AtomicU64; FSYNC_BUCKETS_S.len() + 1],
}

/// The embedded input log: a SQLite database with a `log` and a `snapshots` table.
pub struct SqliteLog {
    path: PathBuf,
    /// Next position and the queue, locked together so positions follow queue order.
    next: Mutex<(Seq, Option<Sender<Op>>)>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog")
            .field("path", &self.path)
            .finish()
    }
}

fn store_err(path: &Path) -> impl Fn(rusqlite::Error) -> LogError + '_ {
    move |e| LogError::Store {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl SqliteLog {
    /// Opens (or creates) the log at `path` and reads back what it holds.
    ///
    /// A last entry that fails its checksum (torn by a crash while it was written) is
    /// deleted and reported in [`Recovery::dropped_torn`]; a corrupt entry anywhere else is
    /// an error naming its position.
    ///
    /// # Errors
    /// [`LogError::Corrupt`], [`LogError::Gap`], [`LogError::SnapshotCorrupt`] or
    /// [`LogError::Store`].
    pub fn open(path: &Path) -> Result<(SqliteLog, Recovery), LogError> {
        let err = store_err(path);
        let conn = Connection::open(path).map_err(&err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, bytes BLOB NOT NULL);",
        )
        .map_err(&err)?;
        let recovery = recover(&conn, path)?;
        let counters = Arc::new(Counters::default());
        let (entries, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(entry)), 0) FROM log",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&err)?;
        let snap_bytes: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(length(bytes)), 0) FROM snapshots",
                [],
                |r| r.get(0),
            )
            .map_err(&err)?;
        counters.entries.store(entries as u64, Ordering::Relaxed);
        counters
            .bytes
            .store((bytes + snap_bytes) as u64, Ordering::Relaxed);
        let last = recovery.last_seq();
        counters.durable.store(last, Ordering::Relaxed);
        let (tx, rx) = crossbeam::channel::unbounded();
        let c = counters.clone();
        let p = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("syncore-log".into())
            .spawn(move || write_loop(conn, &p, rx, &c))
            .map_err(|e| LogError::Store {
                path: path.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((
            SqliteLog {
                path: path.to_path_buf(),
                next: Mutex::new((last + 1, Some(tx))),
                counters,
                writer: Mutex::new(Some(writer)),
            },
            recovery,
        ))
    }

    /// Stops accepting appends, commits what is queued and waits for the writer.
    pub fn close(&self) {
        self.next.lock().1 = None;
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
    }
}

impl Drop for SqliteLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl InputLog for SqliteLog {
    fn append(&self, entry: Vec<u8>, ack: Ack) -> Seq {
        let mut next = self.next.lock();
        let seq = next.0;
        match &next.1 {
            Some(tx) => match tx.send(Op::Append(seq, entry, ack)) {
                Ok(()) => next.0 += 1,
                Err(e) => {
                    if let Op::Append(_, _, ack) = e.0 {
                        ack(Err(LogError::Closed));
                    }
                }
            },
            None => ack(Err(LogError::Closed)),
        }
        seq
    }

    fn snapshot(&self, seq: Seq, bytes: Vec<u8>, ack: Ack) {
        let next = self.next.lock();
        match &next.1 {
            Some(tx) => {
                if let Err(e) = tx.send(Op::Snapshot(seq, bytes, ack)) {
                    if let Op::Snapshot(_, _, ack) = e.0 {
                        ack(Err(LogError::Closed));
                    }
                }
            }
            None => ack(Err(LogError::Closed)),
        }
    }

    fn durable(&self) -> Seq {
        self.counters.durable.load(Ordering::Acquire)
    }

    fn stats(&self) -> LogStats {
        let c = &self.counters;
        LogStats {
            appended: c.appended.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
            fsync_buckets: c
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            fsync_total: Duration::from_nanos(c.fsync_ns.load(Ordering::Relaxed)),
        }
    }
}

/// Reads the latest intact snapshot and the entries after it.
fn recover(conn: &Connection, path: &Path) -> Result<Recovery, LogError> {
    let err = store_err(path);
    let mut out = Recovery::default();
    // Snapshots, newest first; the first intact one wins, as long as the log still holds
    // every entry after the ones it replaces.
    let mut snaps: Vec<(Seq, Vec<u8>)> = {
        let mut st = conn
            .prepare("SELECT seq, bytes FROM snapshots ORDER BY seq DESC")
            .map_err(&err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as Seq, r.get(1)?)))
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)?
    };
    let first_entry: Option<i64> = conn
        .query_row("SELECT MIN(seq) FROM log", [], |r| r.get(0))
        .optional()
        .map_err(&err)?
        .flatten();
    let mut bad: Option<(Seq, String)> = None;
    for (seq, bytes) in snaps.drain(..) {
        match unframe(seq, bytes) {
            Ok(b) => {
                out.snapshot = Some((seq, b));
                break;
            }
            Err(what) => {
                bad.get_or_insert((seq, what));
            }
        }
    }
    let from = out.snapshot.as_ref().map_or(0, |(s, _)| *s);
    if let Some((seq, what)) = bad {
        // A corrupt newer snapshot is survivable only if the entries it covered are here.
        if first_entry.is_some_and(|f| f as Seq > from + 1) {
            return Err(LogError::SnapshotCorrupt { seq, what });
        }
    }
    if out.snapshot.is_none() && first_entry.is_some_and(|f| f > 1) {
        return Err(LogError::Gap {
            expected: 1,
            found: first_entry.unwrap_or(0) as Seq,
        });
    }
    let last: Seq = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM log", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(&err)? as Seq;
    let mut st = conn
        .prepare("SELECT seq, entry FROM log WHERE seq > ?1 ORDER BY seq")
        .map_err(&err)?;
    let rows = st
        .query_map([from as i64], |r| {
            Ok((r.get::<_, i64>(0)? as Seq, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(&err)?;
    for (expected, row) in (from + 1..).zip(rows) {
        let (seq, framed) = row.map_err(&err)?;
        if seq != expected {
            return Err(LogError::Gap {
                expected,
                found: seq,
            });
        }
        match unframe(seq, framed) {
            Ok(payload) => out.tail.push((seq, payload)),
            Err(what) if seq == last => {
                // Torn by a crash while it was written: it was never acknowledged.
                out.dropped_torn = Some(seq);
                let _ = what;
            }
            Err(what) => return Err(LogError::Corrupt { seq, last, what }),
        }
    }
    drop(st);
    if let Some(seq) = out.dropped_torn {
        conn.execute("DELETE FROM log WHERE seq = ?1", [seq as i64])
            .map_err(&err)?;
    }
    Ok(out)
}

fn write_loop(mut conn: Connection, path: &Path, rx: Receiver<Op>, c: &Counters) {
    let err = store_err(path);
    let mut batch: Vec<Op> = Vec::with_capacity(BATCH_MAX);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = commit(&mut conn, &mut batch, c).map_err(&err);
        let mut last = 0;
        for op in batch.drain(..) {
            let (seq, ack) = match op {
                Op::Append(seq, _, ack) => {
                    last = last.max(seq);
                    (seq, ack)
                }
                Op::Snapshot(seq, _, ack) => (seq, ack),
            };
            if result.is_ok() {
                c.durable.fetch_max(last, Ordering::AcqRel);
            }
            ack(result.clone().map(|()| seq));
        }
    }
}

/// Writes one batch in one transaction; the commit is the batch's one fsync.
fn commit(conn: &mut Connection, batch: &mut [Op], c: &Counters) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut added_bytes = 0u64;
    let mut appended = 0u64;
    let mut removed_entries = 0u64;
    let mut snapshots = 0u64;
    {
        let mut insert = tx.prepare_cached("INSERT INTO log (seq, entry) VALUES (?1, ?2)")?;
        for op in batch.iter_mut() {
            match op {
                Op::Append(seq, entry, _) => {
                    // The entry is not needed after its batch: framed in place.
                    let framed = frame(*seq, std::mem::take(entry));
                    // Wrapping: a batch that frees more than it adds is a negative delta.
                    added_bytes = added_bytes.wrapping_add(framed.len() as u64);
                    insert.execute(params![*seq as i64, framed])?;
                    appended += 1;
                }
                Op::Snapshot(seq, bytes, _) => {
                    let framed = frame(*seq, std::mem::take(bytes));
                    // Wrapping: a batch that frees more than it adds is a negative delta.
                    added_bytes = added_bytes.wrapping_add(framed.len() as u64);
                    tx.execute(
                        "INSERT OR REPLACE INTO snapshots (seq, bytes) VALUES (?1, ?2)",
                        params![*seq as i64, framed],
                    )?;
                    snapshots += 1;
                    // Keep this snapshot and the one before it; entries the older one
                    // covers are no longer needed.
                    let keep: Option<i64> = tx
                        .query_row(
                            "SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 1 OFFSET 1",
                            [],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(older) = keep {
                        let freed: i64 = tx.query_row(
                            "SELECT COALESCE(SUM(length(bytes)), 0) FROM snapshots WHERE seq < ?1",
                            [older],
                            |r| r.get(0),
                        )?;
                        tx.execute("DELETE FROM snapshots WHERE seq < ?1", [older])?;
                        let (n, b): (i64, i64) = tx.query_row(
                            "SELECT COUNT(*), COALESCE(SUM(length(entry)), 0) FROM log WHERE seq <= ?1",
                            [older],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?;
                        tx.execute("DELETE FROM log WHERE seq <= ?1", [older])?;
                        removed_entries += n as u64;
                        added_bytes = added_bytes.wrapping_sub((b + freed) as u64);
                    }
                }
            }
        }
    }
    let start = Instant::now();
    tx.commit()?;
    let took = start.elapsed();
    c.fsync_ns
        .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    let s = took.as_secs_f64();
    let bucket = FSYNC_BUCKETS_S
        .iter()
        .position(|&b| s <= b)
        .unwrap_or(FSYNC_BUCKETS_S.len());
    c.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    c.commits.fetch_add(1, Ordering::Relaxed);
    c.appended.fetch_add(appended, Ordering::Relaxed);
    c.snapshots.fetch_add(snapshots, Ordering::Relaxed);
    c.bytes.fetch_add(added_bytes, Ordering::Relaxed);
    c.entries.fetch_add(appended, Ordering::Relaxed);
    c.entries.fetch_sub(removed_entries, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests;

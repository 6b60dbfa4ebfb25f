//! The durable input log behind a small trait, and the framing every entry carries.
//!
//! An [`InputLog`] holds the inputs the service accepted, in order, each numbered by a
//! [`Seq`], and snapshots of the state after some of them. The service appends an input
//! before it acknowledges it; on start it restores the latest snapshot and replays the
//! entries after it ([`Recovery`]). The embedded implementation is
//! [`SqliteLog`](crate::SqliteLog); a replicated one (a distributed log) implements the same
//! trait.
//!
//! Every entry and snapshot is framed as
//! ```text
//! payload | CRC-32 of (seq u64 LE | payload), u32 LE | payload length, u32 LE
//! ```
//! so a cut or changed entry, or an entry stored under another number, is detected when
//! the log is read back.

use std::time::Duration;

/// The position of an entry in the log: 1 for the first, then consecutive.
pub type Seq = u64;

/// Called once an append or snapshot is durable (with its position) or has failed.
pub type Ack = Box<dyn FnOnce(Result<Seq, LogError>) + Send>;

/// What an [`InputLog`] hands back when it is opened: the state to start from.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The latest intact snapshot and the position of the last entry it includes.
    pub snapshot: Option<(Seq, Vec<u8>)>,
    /// The entries after the snapshot, in order, with their positions.
    pub tail: Vec<(Seq, Vec<u8>)>,
    /// A torn last entry that was detected by its checksum and dropped.
    pub dropped_torn: Option<Seq>,
}

impl Recovery {
    /// The position of the last entry recovered (snapshot or tail), 0 for an empty log.
    pub fn last_seq(&self) -> Seq {
        self.tail
            .last()
            .map(|(s, _)| *s)
            .or(self.snapshot.as_ref().map(|(s, _)| *s))
            .unwrap_or(0)
    }
}

/// Counters a log keeps for the service's metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStats {
    /// Entries appended since the log was opened.
    pub appended: u64,
    /// Commits (each one fsync) since the log was opened.
    pub commits: u64,
    /// Bytes of entries and snapshots held now.
    pub bytes: u64,
    /// Entries held now (after compaction).
    pub entries: u64,
    /// Snapshots written since the log was opened.
    pub snapshots: u64,
    /// Commit (fsync) durations: counts per bucket of [`FSYNC_BUCKETS_S`], then the total.
    pub fsync_buckets: Vec<u64>,
    /// Sum of commit durations.
    pub fsync_total: Duration,
}

/// Upper bounds, in seconds, of the commit-duration histogram buckets.
pub const FSYNC_BUCKETS_S: [f64; 10] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// A log could not be opened, read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The store underneath failed.
    #[error("log {path}: {message}")]
    Store {
        /// The log's location.
        path: String,
        /// What failed.
        message: String,
    },
    /// An entry before the last one fails its checksum: the log cannot be trusted from
    /// there on, so the start stops.
    #[error(
        "log entry {seq} of {last} is corrupt ({what}); the entries after it cannot be replayed"
    )]
    Corrupt {
        /// The corrupt entry's position.
        seq: Seq,
        /// The last entry's position.
        last: Seq,
        /// What is wrong with it.
        what: String,
    },
    /// Positions are not consecutive.
    #[error("log entry {expected} is missing (the next one is {found})")]
    Gap {
        /// The position that should come next.
        expected: Seq,
        /// The position found instead.
        found: Seq,
    },
    /// Every snapshot is corrupt and the entries before them are compacted away.
    #[error("snapshot at entry {seq} is corrupt ({what}) and no earlier state is left")]
    SnapshotCorrupt {
        /// The position the snapshot was taken at.
        seq: Seq,
        /// What is wrong with it.
        what: String,
    },
    /// The log was closed.
    #[error("log is closed")]
    Closed,
}

/// A durable, ordered log of inputs with snapshots.
///
/// Appends are numbered in the order of the calls; an entry is durable once its [`Ack`] is
/// called with `Ok(seq)`, and every entry before it is durable then too.
pub trait InputLog: Send + Sync {
    /// Queues `entry` as the next position (returned at once); `ack` is called once it is
    /// durable. Concurrent appends share commits (group commit).
    fn append(&self, entry: Vec<u8>, ack: Ack) -> Seq;

    /// Queues a snapshot of the state after entry `seq` (every entry up to `seq` must have
    /// been appended); `ack` is called once it is durable. Entries older than the snapshot
    /// before it are then compacted away.
    fn snapshot(&self, seq: Seq, bytes: Vec<u8>, ack: Ack);

    /// The last position known durable.
    fn durable(&self) -> Seq;

    /// Counters for metrics.
    fn stats(&self) -> LogStats;

    /// Appends `entry` and waits until it is durable.
    ///
    /// # Errors
    /// The [`LogError`] the commit failed with.
    fn append_wait(&self, entry: Vec<u8>) -> Result<Seq, LogError> {
        let (tx, rx) = crossbeam::channel::bounded(1);
        self.append(
            entry,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(LogError::Closed))
    }

    /// Writes a snapshot and waits until it is durable.
    ///
    /// # Errors
    /// The [`LogError`] the commit failed with.
    fn snapshot_wait(&self, seq: Seq, bytes: Vec<u8>) -> Result<Seq, LogError> {
        let (tx, rx) = crossbeam::channel::bounded(1);
        self.snapshot(
            seq,
            bytes,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(LogError::Closed))
    }
}

/// Frames `payload` for position `seq` (see the module doc).
pub fn frame(seq: Seq, mut payload: Vec<u8>) -> Vec<u8> {
    let sum = checksum(seq, &payload);
    let len = payload.len() as u32;
    payload.extend_from_slice(&sum.to_le_bytes());
    payload.extend_from_slice(&len.to_le_bytes());
    payload
}

/// Checks a framed entry read back at position `seq` and returns its payload.
///
/// # Errors
/// What is wrong: too short, a length that does not match (cut), or a checksum mismatch.
pub fn unframe(seq: Seq, mut framed: Vec<u8>) -> Result<Vec<u8>, String> {
    let n = framed.len();
    if n < 8 {
        return Err(format!("{n} bytes, shorter than its frame"));
    }
    let len = u32::from_le_bytes(framed[n - 4..].try_into().unwrap_or_default()) as usize;
    let sum = u32::from_le_bytes(framed[n - 8..n - 4].try_into().unwrap_or_default());
    if len != n - 8 {
        return Err(format!("length {} where its frame says {len}", n - 8));
    }
    framed.truncate(len);
    if checksum(seq, &framed) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(framed)
}

fn checksum(seq: Seq, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frame_round_trips_and_any_flipped_or_cut_byte_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            seq in 1u64..1000,
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
        ) {
            let framed = frame(seq, payload.clone());
            prop_assert_eq!(unframe(seq, framed.clone()), Ok(payload.clone()));
            prop_assert!(unframe(seq + 1, framed.clone()).is_err());
            let mut flipped = framed.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert!(unframe(seq, flipped).is_err());
            let mut cut_short = framed.clone();
            cut_short.truncate(cut.index(framed.len()));
            prop_assert!(unframe(seq, cut_short).is_err());
        }
    }
}

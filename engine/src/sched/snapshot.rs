//! Persistence of the scheduler: the engine's snapshot plus leases, timers and counters.
//!
//! Format: [`SCHED_MAGIC`], the format version ([`SCHED_FORMAT_VERSION`], little-endian
//! u32), the bincode body, and an FNV-1a checksum of everything before it (u64 LE). The
//! body embeds the engine's own snapshot bytes (R14), which carry their own header.
//!
//! Leases are part of the state (and of [`Scheduler::state_hash`]). On restore they are
//! not resumed, since the actuations they stand for died with the process: their objects
//! are still unsettled, so the restored scheduler dispatches them again (actuators are
//! idempotent by contract); [`Scheduler::restored_leases`] lists what was in flight.

use std::collections::{BTreeMap, BTreeSet};

use super::{Lease, SchedConfig, SchedConfigError, SchedStats, Scheduler};
use crate::engine::Engine;
use crate::error::SnapshotError;
use crate::id::Time;

/// The first bytes of a scheduler snapshot.
pub const SCHED_MAGIC: &[u8; 8] = b"SYNCSCHD";

/// The scheduler snapshot format version. 1: leases, re-sync timers, counters.
pub const SCHED_FORMAT_VERSION: u32 = 1;

#[derive(bincode::Encode, bincode::Decode)]
struct Body {
    config: SchedConfig,
    engine: Vec<u8>,
    leases: Vec<Lease>,
    next_lease: u64,
    timers: Vec<(Time, u32)>,
    resync_count: Vec<(u32, u32)>,
    rerun: Vec<u32>,
    draining: bool,
    last_now: Time,
    stats: SchedStats,
}

/// Scheduler snapshot bytes could not be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedSnapshotError {
    /// Not a scheduler snapshot.
    #[error("not a syncore scheduler snapshot (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error("scheduler snapshot format {found}, expected {expected}")]
    Version {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// Truncated or corrupt.
    #[error("corrupt scheduler snapshot: {0}")]
    Corrupt(String),
    /// The embedded engine snapshot.
    #[error("engine snapshot: {0}")]
    Engine(SnapshotError),
    /// The embedded configuration does not fit the schema.
    #[error("{0}")]
    Config(SchedConfigError),
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Scheduler {
    /// Serialises the whole scheduler state: the engine's snapshot, leases in flight,
    /// re-sync timers, the lease counter and the work counters. Same inputs, same bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let body = Body {
            config: self.config.clone(),
            engine: self.engine.snapshot(),
            leases: self.leases().copied().collect(),
            next_lease: self.next_lease,
            timers: self.timers.iter().copied().collect(),
            resync_count: self.resync_count.iter().map(|(&k, &v)| (k, v)).collect(),
            rerun: self.rerun.iter().copied().collect(),
            draining: self.draining,
            last_now: self.last_now,
            stats: self.stats,
        };
        let mut out = SCHED_MAGIC.to_vec();
        out.extend_from_slice(&SCHED_FORMAT_VERSION.to_le_bytes());
        out.extend(bincode::encode_to_vec(&body, bincode::config::standard()).expect("encodes"));
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// A 64-bit hash of [`Scheduler::snapshot`].
    pub fn state_hash(&self) -> u64 {
        fnv1a(&self.snapshot())
    }

    /// Rebuilds a scheduler from [`Scheduler::snapshot`] bytes: a restart. Policies and
    /// watchers must be registered again ([`Scheduler::engine_mut`]). The leases that were
    /// in flight are listed by [`Scheduler::restored_leases`] and their tasks are
    /// dispatched again; the result is not draining (a snapshot handed back by a graceful
    /// shutdown restarts dispatching, as [`Scheduler::migrate`]).
    ///
    /// # Errors
    /// [`SchedSnapshotError`]; never panics.
    pub fn restore(bytes: &[u8]) -> Result<Scheduler, SchedSnapshotError> {
        let mut s = Scheduler::decode(bytes, true)?;
        s.draining = false;
        Ok(s)
    }

    /// The scheduler exactly as snapshotted (draining included), its leases listed in
    /// `restored`. The checksum pass over the whole snapshot is skipped when `check_sum`
    /// is false (the caller checked the bytes); the engine's bytes inside are covered by
    /// that checksum, so their own is never computed again.
    fn decode(bytes: &[u8], check_sum: bool) -> Result<Scheduler, SchedSnapshotError> {
        if bytes.len() < 8 + 4 + 8 || &bytes[..8] != SCHED_MAGIC {
            return Err(SchedSnapshotError::BadMagic);
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if found != SCHED_FORMAT_VERSION {
            return Err(SchedSnapshotError::Version {
                found,
                expected: SCHED_FORMAT_VERSION,
            });
        }
        let (content, sum) = bytes.split_at(bytes.len() - 8);
        if check_sum && fnv1a(content) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
            return Err(SchedSnapshotError::Corrupt("checksum mismatch".into()));
        }
        let limit = bincode::config::standard().with_limit::<{ 1 << 32 }>();
        let (body, used): (Body, usize) = bincode::decode_from_slice(&content[12..], limit)
            .map_err(|e| SchedSnapshotError::Corrupt(e.to_string()))?;
        if used != content.len() - 12 {
            return Err(SchedSnapshotError::Corrupt("trailing bytes".into()));
        }
        let engine =
            Engine::restore_with(&body.engine, false).map_err(SchedSnapshotError::Engine)?;
        let mut s = Scheduler::new(engine, body.config).map_err(SchedSnapshotError::Config)?;
        s.next_lease = body.next_lease;
        for (t, id) in body.timers {
            s.timers.insert((t, id));
            s.resync_due.insert(id, t);
        }
        s.resync_count = body.resync_count.into_iter().collect::<BTreeMap<_, _>>();
        s.rerun = body.rerun.into_iter().collect::<BTreeSet<_>>();
        s.draining = body.draining;
        s.last_now = body.last_now;
        s.stats = body.stats;
        // Leases must name live objects as they are (bytes a caller vouched for are still
        // checked): one per object, of the object's actuated model, at a version it had.
        let mut leased = BTreeSet::new();
        for l in &body.leases {
            let t = &l.task;
            let fits = l.id.object == t.object
                && l.id.seq < s.next_lease
                && s.engine.alive(t.object)
                && s.engine.model_of(t.object) == t.model
                && s.engine.schema().model(t.model).kind == crate::schema::ModelKind::Actuated
                && t.version <= s.engine.version_of(t.object)
                && leased.insert(t.object.0);
            if !fits {
                return Err(SchedSnapshotError::Corrupt(format!(
                    "lease {} does not fit the objects in the snapshot",
                    l.id.seq
                )));
            }
        }
        s.restored = body.leases;
        Ok(s)
    }

    /// The leases in flight when the snapshot this scheduler was restored from was taken
    /// (their tasks are dispatched again).
    pub fn restored_leases(&self) -> &[Lease] {
        &self.restored
    }
}

/// A scheduler could not move onto a new schema, engine settings or configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedMigrateError {
    /// The engine state cannot move onto the new schema or settings.
    #[error("{0}")]
    Engine(Box<crate::MigrateError>),
    /// The new configuration does not fit the new schema.
    #[error("{0}")]
    Config(SchedConfigError),
}

impl Scheduler {
    /// Like [`Scheduler::restore`], but the scheduler continues exactly where the snapshot
    /// left it: the leases in the snapshot stay **in flight** and a draining one stays
    /// draining. For a driver that replays a log of later inputs onto the snapshot (their
    /// deliveries name those leases), then starts the actuations of the leases still in
    /// flight again itself (actuators are idempotent by contract). [`Scheduler::restored_leases`] is
    /// empty. Policies and watchers must be registered again ([`Scheduler::engine_mut`]).
    ///
    /// # Errors
    /// [`SchedSnapshotError`]; never panics.
    pub fn resume(bytes: &[u8]) -> Result<Scheduler, SchedSnapshotError> {
        Scheduler::resume_with(bytes, true)
    }

    /// [`Scheduler::resume`] of bytes whose integrity the caller has already checked with
    /// a checksum of its own (a durable log that frames each snapshot with a CRC, as
    /// syncore-service's does): the snapshot's FNV-1a pass, one read of every byte, is
    /// skipped. Everything else is checked as by `resume`: magic, format version,
    /// lengths, trailing bytes, and the whole-state consistency check (R14), so
    /// inconsistent bytes are still refused and nothing panics.
    ///
    /// # Errors
    /// [`SchedSnapshotError`]; never panics.
    pub fn resume_verified(bytes: &[u8]) -> Result<Scheduler, SchedSnapshotError> {
        Scheduler::resume_with(bytes, false)
    }

    fn resume_with(bytes: &[u8], check_sum: bool) -> Result<Scheduler, SchedSnapshotError> {
        let mut s = Scheduler::decode(bytes, check_sum)?;
        for l in std::mem::take(&mut s.restored) {
            s.put_lease(l, None);
        }
        Ok(s)
    }

    /// Takes a snapshot and drops what is not in it (the current plan and ready queue,
    /// rebuilt by the next input), so that from now on this scheduler goes through the
    /// same states as [`Scheduler::resume`] of the returned bytes: a log that records the
    /// snapshot and the inputs after it replays to this scheduler's state hashes. Leases,
    /// registered policies and watchers and the metrics counters are kept, and so is the
    /// earliest backoff expiry known, so [`Scheduler::next_wake`] still reports it (a
    /// resumed scheduler learns it at its first input, which replans).
    pub fn checkpoint(&mut self) -> Vec<u8> {
        let bytes = self.snapshot();
        self.cur = super::Current::default();
        self.ready = super::queue::Ready::new(self.models.len());
        self.object_prio.clear();
        self.restored.clear();
        self.dirty = true;
        bytes
    }

    /// Moves the scheduler onto a new schema, engine settings and configuration (a
    /// restart with a changed deployment; [`Engine::migrate`] says what may change). The
    /// engine is migrated only when its schema or settings differ. Re-sync timers, the
    /// lease counter, the clock and the work counters carry over (object ids survive a
    /// migration); the leases in flight end up in [`Scheduler::restored_leases`] and their
    /// objects are dispatched again; the result is not draining (a restart after a
    /// shutdown dispatches again). Register policies and watchers again.
    ///
    /// # Errors
    /// [`SchedMigrateError`] naming what cannot move; the old state is dropped either
    /// way, so keep its [`Scheduler::snapshot`] if needed.
    pub fn migrate(
        self,
        schema: crate::Schema,
        settings: crate::Config,
        config: SchedConfig,
    ) -> Result<Scheduler, SchedMigrateError> {
        let leases: Vec<Lease> = self.leases().copied().collect();
        let Scheduler {
            engine,
            next_lease,
            timers,
            resync_count,
            rerun,
            last_now,
            stats,
            ..
        } = self;
        let engine = if engine.schema().def() != schema.def() || engine.config() != &settings {
            engine
                .migrate(schema, settings)
                .map_err(|e| SchedMigrateError::Engine(Box::new(e)))?
        } else {
            engine
        };
        let mut s = Scheduler::new(engine, config).map_err(SchedMigrateError::Config)?;
        s.next_lease = next_lease;
        for (t, id) in timers {
            if s.engine.alive(crate::ObjectId(id)) {
                s.timers.insert((t, id));
                s.resync_due.insert(id, t);
            }
        }
        s.resync_count = resync_count;
        s.rerun = rerun;
        s.last_now = last_now;
        s.stats = stats;
        s.restored = leases;
        Ok(s)
    }
}

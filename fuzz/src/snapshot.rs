//! Target `snapshot`: `Engine::restore` on foreign, truncated, corrupt and forged bytes
//! (R14).
//!
//! Input: a mode byte, then
//! - mode 0: raw bytes, restored as they are (header, length and checksum checks);
//! - mode 1: a payload, wrapped in a valid header, length and checksum, so bincode
//!   decoding and the consistency checks behind the checksum are reached;
//! - mode 2: edits (set, insert, remove a byte) applied to the payload of the base state's
//!   real snapshot, checksum fixed up: well-formed bytes that say something slightly wrong.
//!
//! Oracle: restore returns an error or an engine, never panics or allocates without bound.
//! An engine it returns is used: it must pass [`state::check`](super::state::check) (plan
//! equal to the reference planner's, snapshot round trip), then keep passing it after every
//! task completes and after every object is marked for deletion.

use arbitrary::Unstructured;
use syncore::{ChangeSet, Engine, Outcome, Time, FORMAT_VERSION, MAGIC};

use super::gen::below;
use super::state;

/// Bytes of the header before the payload: magic, version, payload length.
pub const HEADER_LEN: usize = 20;

/// Runs one input; `Err` is a finding.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some((&mode, rest)) = data.split_first() else {
        return restore_checked(data);
    };
    match mode % 3 {
        0 => restore_checked(rest),
        1 => restore_checked(&wrap(rest)),
        _ => {
            let base = state::base_snapshot();
            let mut payload = base[HEADER_LEN..base.len() - 8].to_vec();
            edit(&mut payload, rest);
            restore_checked(&wrap(&payload))
        }
    }
}

/// `payload` in a valid snapshot frame (header, length, FNV-1a checksum).
pub fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&fnv1a(payload).to_le_bytes());
    out
}

/// 64-bit FNV-1a, as the snapshot format uses.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Applies up to 8 byte edits drawn from `edits` to `payload`.
pub fn edit(payload: &mut Vec<u8>, edits: &[u8]) {
    let mut u = Unstructured::new(edits);
    for _ in 0..8 {
        if u.is_empty() || payload.is_empty() {
            return;
        }
        let (Ok(op), Ok(at), Ok(byte)) = (
            u.int_in_range(0u8..=3),
            below(&mut u, payload.len()),
            u.arbitrary::<u8>(),
        ) else {
            return;
        };
        match op {
            0 | 1 => payload[at] = byte,
            2 => payload.insert(at, byte),
            _ => {
                payload.remove(at);
            }
        }
    }
}

/// Restores `bytes`; if that succeeds, uses the engine and checks it at every step.
pub fn restore_checked(bytes: &[u8]) -> Result<(), String> {
    let mut engine = match Engine::restore(bytes) {
        Ok(engine) => engine,
        Err(e) if e.to_string().is_empty() => return Err(format!("{e:?}: empty message")),
        Err(_) => return Ok(()),
    };
    let now = Time(1_000);
    state::check(&engine, now)?;
    let _ = engine.pretend(now, 8);
    for key in engine.keys().map(str::to_string).collect::<Vec<_>>() {
        let _ = engine.status(&key, now);
    }
    for task in engine.plan(now).tasks {
        engine
            .complete(&task, Outcome::ok(), now)
            .map_err(|e| format!("a planned task of a restored engine: {e}"))?;
    }
    state::check(&engine, now)?;
    let keys: Vec<String> = engine.keys().map(str::to_string).collect();
    let before = engine.snapshot();
    let set = ChangeSet::from(keys.iter().map(syncore::Change::delete).collect::<Vec<_>>());
    if engine.apply(set).is_err() && engine.snapshot() != before {
        return Err("a refused delete of every key changed the state".into());
    }
    state::check(&engine, now)
}

//! The fuzz targets' corpus, replayed on a stable toolchain (issue 7).
//!
//! Goal: every machine checks what the fuzzers found, not only machines with cargo-fuzz.
//! Method: each file under `fuzz/corpus/<target>/` (seeds and every regression input) runs
//! through the same `run` function the fuzz target calls (`fuzz/src/`, included here with
//! `#[path]`); an `Err` or a panic fails the test and names the file. A smoke pass then
//! feeds each target pseudo-random inputs and byte-flipped corpus files (TigerBeetle's
//! smoke mode: a fixed seed, a short budget), and the canary target must fire.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code, missing_docs)]
mod fuzz;

// src/scenario.rs, compiled inside `fuzz`, names its sibling module `crate::locate`.
use fuzz::locate;

/// Pseudo-random inputs per target in the smoke pass.
const SMOKE_INPUTS: usize = 64;
/// Byte-flipped variants of each corpus file in the smoke pass.
const SMOKE_FLIPS: usize = 4;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn run_target(target: &str) -> fn(&[u8]) -> Result<(), String> {
    fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
}

/// Runs one input; a finding or a panic becomes an `Err` naming the input.
fn check(target: &str, what: &str, data: &[u8]) -> Result<(), String> {
    let run = run_target(target);
    match catch_unwind(AssertUnwindSafe(|| run(data))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(finding)) => Err(format!("{target}: {what}: {finding}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{target}: {what}: panicked: {message}"))
        }
    }
}

/// xorshift64*: the smoke pass's fixed pseudo-random source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len_max: usize) -> Vec<u8> {
        let len = (self.next() % (len_max as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("a readable corpus file"))
        })
        .collect()
}

/// Replays the corpus of `target`, then its smoke pass; reports every finding at once.
fn replay(target: &str) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} has no seeds");
    let mut findings = Vec::new();
    for (name, data) in &files {
        findings.extend(check(target, name, data).err());
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    for i in 0..SMOKE_INPUTS {
        let data = rng.bytes(256);
        findings.extend(check(target, &format!("smoke input {i}: {data:?}"), &data).err());
    }
    for (name, data) in &files {
        for _ in 0..SMOKE_FLIPS {
            let mut data = data.clone();
            if data.is_empty() {
                continue;
            }
            let at = (rng.next() % data.len() as u64) as usize;
            data[at] ^= 1 << (rng.next() % 8);
            findings.extend(check(target, &format!("{name} flipped at {at}"), &data).err());
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

#[test]
fn corpus_schema() {
    replay("schema");
}

#[test]
fn corpus_changes() {
    replay("changes");
}

#[test]
fn corpus_snapshot() {
    replay("snapshot");
}

#[test]
fn corpus_ops() {
    replay("ops");
}

#[test]
fn corpus_outcomes() {
    replay("outcomes");
}

#[test]
fn corpus_canary_seeds_do_not_fire() {
    for (name, data) in corpus("canary") {
        assert_eq!(check("canary", &name, &data), Ok(()));
    }
}

/// The canary must fire on some generated input: otherwise the generators no longer reach
/// three-wave plans and the fuzz targets built on them prove little.
#[test]
fn canary_fires() {
    let mut rng = Rng(7);
    let fired = (0..20_000).any(|_| fuzz::canary::run(&rng.bytes(512)).is_err());
    assert!(fired, "no input tripped the canary's planted invariant");
}

/// Writes the snapshot seeds from the current format when `SYNCORE_FUZZ_WRITE_SEEDS=1`
/// (after a format change: `SYNCORE_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus
/// write_snapshot_seeds`); otherwise does nothing. Seeds: the base state raw (mode 0),
/// its payload (mode 1), edits of it (mode 2), a truncated and a foreign file.
#[test]
fn write_snapshot_seeds() {
    if std::env::var("SYNCORE_FUZZ_WRITE_SEEDS").as_deref() != Ok("1") {
        return;
    }
    let base = fuzz::state::base_snapshot();
    let payload = &base[fuzz::snapshot::HEADER_LEN..base.len() - 8];
    let with_mode = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("raw-base.bin", with_mode(0, base)),
        ("raw-truncated.bin", with_mode(0, &base[..base.len() / 2])),
        (
            "raw-foreign.bin",
            with_mode(0, b"SYNCORE\0\x07\0\0\0PK\x03\x04"),
        ),
        ("payload-base.bin", with_mode(1, payload)),
        ("edit-set.bin", with_mode(2, &[0, 40, 7, 1, 90, 0])),
        (
            "edit-insert-remove.bin",
            with_mode(2, &[2, 12, 200, 3, 60, 0]),
        ),
    ];
    for (name, bytes) in seeds {
        std::fs::write(corpus_dir("snapshot").join(name), bytes).unwrap();
    }
}

/// Every target has a fuzz binary, a corpus directory, and a replay test above.
#[test]
fn every_target_has_a_binary_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    for (name, _) in fuzz::TARGETS {
        assert!(
            root.join(format!("fuzz/fuzz_targets/{name}.rs")).is_file(),
            "no fuzz_targets/{name}.rs"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} not in fuzz/Cargo.toml"
        );
        assert!(corpus_dir(name).is_dir(), "no fuzz/corpus/{name}");
    }
    let _ = locate::strip_comments("");
}

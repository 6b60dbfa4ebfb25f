//! `Scheduler::resume_verified`: the resume of a snapshot whose integrity the caller
//! checked itself (a log frame's CRC) skips the checksum pass and nothing else: the same
//! state as `resume` for good bytes, every structural check still refuses bad bytes, and
//! no byte flipped anywhere makes it panic.

use proptest::prelude::*;
use syncore::sched::{Dispatch, Input, SchedConfig, Scheduler};
use syncore::{ChangeSet, Config, Engine, Outcome, Schema, Time};

const SCHEMA: &str = r#"{"models": [
  {"name": "Site", "fields": [{"name": "name", "type": "string"}],
   "feedback": [{"name": "dir", "type": "string"}]},
  {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "n", "type": "int"}],
   "links": [{"field": "site", "target": "Site", "into": ["dir"]}]}]}"#;

/// A scheduler with synced objects, one object in flight and one backing off.
fn state() -> Scheduler {
    let engine = Engine::new(Schema::from_json(SCHEMA).unwrap(), Config::default());
    let mut s = Scheduler::new(engine, SchedConfig::default()).unwrap();
    let mut out: Vec<Dispatch> = Vec::new();
    let mut set = ChangeSet::new();
    for i in 0..4 {
        set = set.upsert(format!("s{i}"), "Site", [("name", format!("site {i}"))]);
    }
    s.step(
        Input::Apply {
            changes: set,
            now: Time(1),
        },
        &mut out,
    );
    let sites: Vec<Dispatch> = std::mem::take(&mut out);
    assert_eq!(sites.len(), 4);
    for (i, d) in sites.iter().enumerate() {
        let outcome = if i == 0 {
            Outcome::failed("backend down")
        } else {
            Outcome::ok()
        };
        s.step(
            Input::Deliver {
                lease: d.lease,
                outcome,
                now: Time(2),
            },
            &mut out,
        );
    }
    s.step(
        Input::Apply {
            changes: ChangeSet::new().upsert(
                "sl",
                "Slice",
                [
                    ("site", syncore::Value::Ref("s1".into())),
                    ("n", syncore::Value::Int(3)),
                ],
            ),
            now: Time(3),
        },
        &mut out,
    );
    assert!(s.in_flight() > 0, "a lease is in flight in the snapshot");
    s
}

#[test]
fn resume_verified_of_good_bytes_is_the_state_resume_gives() {
    let bytes = state().snapshot();
    let checked = Scheduler::resume(&bytes).unwrap();
    let verified = Scheduler::resume_verified(&bytes).unwrap();
    assert_eq!(verified.snapshot(), checked.snapshot());
    assert_eq!(verified.snapshot(), bytes);
    assert_eq!(
        verified.leases().copied().collect::<Vec<_>>(),
        checked.leases().copied().collect::<Vec<_>>()
    );
    assert_eq!(verified.engine().len(), 5);
}

#[test]
fn resume_verified_still_refuses_what_is_not_a_whole_snapshot() {
    let bytes = state().snapshot();
    let mut trailing = bytes.clone();
    trailing.insert(bytes.len() - 8, 0);
    let mut version = bytes.clone();
    version[8] ^= 0x40;
    for (what, bad) in [
        ("empty", Vec::new()),
        ("cut to its header", bytes[..20].to_vec()),
        ("cut by one byte", bytes[..bytes.len() - 1].to_vec()),
        ("cut in half", bytes[..bytes.len() / 2].to_vec()),
        (
            "foreign magic",
            b"SYNCSCHDxxxxxxxxxxxxxxxxxxxxxxxx".to_vec(),
        ),
        ("another format version", version),
        ("a byte inserted", trailing),
    ] {
        assert!(
            Scheduler::resume_verified(&bad).is_err(),
            "{what}: accepted"
        );
        assert!(Scheduler::resume(&bad).is_err(), "{what}: accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A flipped byte is refused by the checksummed resume; the unchecked one may accept
    /// it only as a consistent state (which it then encodes again), and never panics.
    #[test]
    fn a_flipped_byte_never_panics_and_an_accepted_one_is_consistent(
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let bytes = state().snapshot();
        let mut bad = bytes.clone();
        let i = at.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(Scheduler::resume(&bad).is_err());
        if let Ok(s) = Scheduler::resume_verified(&bad) {
            let again = s.snapshot();
            let back = Scheduler::resume(&again);
            prop_assert!(back.is_ok(), "{:?}", back.err());
        }
    }
}

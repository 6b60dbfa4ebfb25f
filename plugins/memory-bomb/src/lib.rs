//! Hostile: `sync` allocates 1 MiB blocks until the host's memory limit refuses to grow the
//! linear memory.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Allocates without end.
struct Bomb;

impl Actuator for Bomb {
    fn sync(_: &ObjectView) -> Outcome {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![0xa5; 1 << 20]));
        }
    }
}

export_actuator!(Bomb);

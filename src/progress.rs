//! A progress bar on stderr for long runs: only on a terminal, only after a moment, and
//! erased before the timeline is printed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use syncore::{Completion, TaskKind};

use crate::run::Event;

/// Runs shorter than this never show a bar.
const DELAY: Duration = Duration::from_millis(300);
/// Redraws at most this often.
const PERIOD: Duration = Duration::from_millis(80);

/// Progress state, fed with every event of a run.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    total: usize,
    synced: usize,
    actuations: u64,
    now: u64,
    started: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A bar over `total` objects, drawn only if `want` and stderr is a terminal.
    pub fn new(total: usize, want: bool) -> Progress {
        Progress {
            enabled: want && std::io::stderr().is_terminal(),
            total: total.max(1),
            synced: 0,
            actuations: 0,
            now: 0,
            started: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    /// Counts one event and redraws if it is time to.
    pub fn event(&mut self, e: &Event) {
        self.now = e.at();
        if let Event::Finished {
            kind, completion, ..
        } = e
        {
            self.actuations += 1;
            if *kind == TaskKind::Sync && completion == &Some(Completion::Synced) {
                self.synced += 1;
            }
        }
        if !self.enabled || self.started.elapsed() < DELAY {
            return;
        }
        if self.last.is_some_and(|l| l.elapsed() < PERIOD) {
            return;
        }
        self.last = Some(Instant::now());
        let frac = (self.synced.min(self.total) as f64 / self.total as f64).min(0.99);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {:>3.0}%  t={}ms  {} actuations",
            frac * 100.0,
            self.now,
            self.actuations
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the bar.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

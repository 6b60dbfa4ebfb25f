//! Time for the run loop: the [`Clock`] trait, a [`RealClock`] and a [`VirtualClock`].
//!
//! The engine itself never reads a clock: `now` is an argument of `plan` and `complete`
//! (DESIGN.md, R12). Only the [`crate::Runner`] holds a clock, and [`RealClock`] is the one
//! place in the library allowed to read `std::time`. Tests and the [`crate::sim`] harness use
//! a [`VirtualClock`], which only moves when told to, so whole runs are reproducible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::id::Time;

/// A source of time for the run loop and for actuation timing.
///
/// # Examples
/// ```
/// use syncore::{Clock, Time, VirtualClock};
/// let clock = VirtualClock::new(Time(5));
/// // Nothing to do until t=100: a virtual clock jumps there and asks for no real wait.
/// assert_eq!(clock.block_for(Time(100)), std::time::Duration::ZERO);
/// assert_eq!(clock.now(), Time(100));
/// ```
pub trait Clock: Send + Sync {
    /// The current time, in milliseconds (the unit of [`Time`]).
    fn now(&self) -> Time;

    /// Called by the run loop when nothing is due before `deadline`: how long to block
    /// (in real time) waiting for new input before `deadline` is reached. A real clock
    /// returns the time left; a virtual clock moves itself to `deadline` (if it is later)
    /// and returns zero.
    fn block_for(&self, deadline: Time) -> Duration;

    /// A monotonic reading in nanoseconds, for actuation timing (Gantt records) only: it
    /// never enters engine state or state hashes.
    fn monotonic_ns(&self) -> u64;

    /// Whether time moves only when told to (recorded in trace headers). Default: `false`.
    fn is_virtual(&self) -> bool {
        false
    }
}

/// The wall clock: milliseconds since the Unix epoch when it was made, advanced by a
/// monotonic timer (so it never goes backwards, even if the system clock does).
#[derive(Debug)]
pub struct RealClock {
    start: std::time::Instant,
    start_ms: u64,
}

impl RealClock {
    /// A clock reading the system time now.
    pub fn new() -> RealClock {
        let start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        RealClock {
            start: std::time::Instant::now(),
            start_ms,
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        RealClock::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Time {
        Time(
            self.start_ms
                .saturating_add(self.start.elapsed().as_millis() as u64),
        )
    }

    fn block_for(&self, deadline: Time) -> Duration {
        Duration::from_millis(deadline.0.saturating_sub(self.now().0))
    }

    fn monotonic_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// A clock that moves only when told to: by [`VirtualClock::set`],
/// [`VirtualClock::advance`], or by the run loop jumping to its next wake time
/// ([`Clock::block_for`]). Shared between threads behind an `Arc`.
///
/// # Examples
/// ```
/// use syncore::{Clock, Time, VirtualClock};
/// let clock = VirtualClock::new(Time(0));
/// clock.advance(250);
/// assert_eq!(clock.now(), Time(250));
/// assert_eq!(clock.monotonic_ns(), 250_000_000);
/// ```
#[derive(Debug, Default)]
pub struct VirtualClock {
    ms: AtomicU64,
}

impl VirtualClock {
    /// A virtual clock showing `start`.
    pub fn new(start: Time) -> VirtualClock {
        VirtualClock {
            ms: AtomicU64::new(start.0),
        }
    }

    /// Sets the time to `t` (it may go backwards: the caller decides).
    pub fn set(&self, t: Time) {
        self.ms.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`, saturating; returns the new time.
    pub fn advance(&self, ms: u64) -> Time {
        let mut cur = self.ms.load(Ordering::SeqCst);
        loop {
            let next = cur.saturating_add(ms);
            match self
                .ms
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Time(next),
                Err(seen) => cur = seen,
            }
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Time {
        Time(self.ms.load(Ordering::SeqCst))
    }

    fn block_for(&self, deadline: Time) -> Duration {
        self.ms.fetch_max(deadline.0, Ordering::SeqCst);
        Duration::ZERO
    }

    fn monotonic_ns(&self) -> u64 {
        self.ms.load(Ordering::SeqCst).saturating_mul(1_000_000)
    }

    fn is_virtual(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_never_moves_backwards_when_blocking() {
        let c = VirtualClock::new(Time(50));
        assert_eq!(c.block_for(Time(10)), Duration::ZERO);
        assert_eq!(c.now(), Time(50));
        c.block_for(Time(70));
        assert_eq!(c.now(), Time(70));
        assert_eq!(c.advance(u64::MAX), Time(u64::MAX));
    }

    #[test]
    fn real_clock_is_monotonic_and_wall_aligned() {
        let c = RealClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a.0 > 1_600_000_000_000, "milliseconds since the Unix epoch");
        assert!(c.block_for(Time(0)).is_zero());
        assert!(c.monotonic_ns() <= c.monotonic_ns());
    }
}

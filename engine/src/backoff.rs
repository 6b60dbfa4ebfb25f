//! Backoff policy (R5, R6): a pure function of the failure count, the seed and the key.

use serde::{Deserialize, Serialize};

/// How long a failed or deferred object waits before it is eligible again.
///
/// The k-th consecutive failure waits `min(cap, base * factor^(k-1))` milliseconds plus a
/// jitter in `[0, delay * jitter_permille / 1000]`, a pure function of `seed`, the object's
/// key and `k` (R5). All arithmetic saturates. With `growth` off the delay is `base` every
/// time. A deferred outcome waits `defer_delay_ms` without growth (R6).
///
/// # Examples
/// ```
/// use syncore::BackoffPolicy;
/// let p = BackoffPolicy { jitter_permille: 0, ..BackoffPolicy::default() };
/// assert_eq!(p.delay_ms(1, "net-1"), 100);
/// assert_eq!(p.delay_ms(3, "net-1"), 400);
/// assert_eq!(p.delay_ms(200, "net-1"), p.cap_ms);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffPolicy {
    /// Delay after the first failure, in ms. Default: 100.
    pub base_ms: u64,
    /// Growth factor per further failure. Default: 2.
    pub factor: u32,
    /// Largest delay before jitter, in ms. Default: 60,000.
    pub cap_ms: u64,
    /// Jitter band, in thousandths of the delay, added on top. Default: 100 (up to +10%).
    pub jitter_permille: u32,
    /// Seed of the jitter. Default: 0.
    pub seed: u64,
    /// Whether delays grow with the failure count. Default: `true`.
    pub growth: bool,
    /// Delay after a `Deferred` outcome, in ms (R6). Default: `None`, meaning `base_ms`.
    pub defer_delay_ms: Option<u64>,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base_ms: 100,
            factor: 2,
            cap_ms: 60_000,
            jitter_permille: 100,
            seed: 0,
            growth: true,
            defer_delay_ms: None,
        }
    }
}

impl BackoffPolicy {
    /// The delay before jitter for the `failures`-th consecutive failure (1-based):
    /// `min(cap, base * factor^(failures-1))`, saturating; `base` when growth is off.
    pub fn raw_delay_ms(&self, failures: u32) -> u64 {
        if !self.growth || failures <= 1 {
            return self.base_ms.min(self.cap_ms);
        }
        let mut delay = self.base_ms;
        // At most 64 doublings reach u64::MAX; the loop stops as soon as the cap is hit.
        for _ in 1..failures {
            if delay >= self.cap_ms || self.factor <= 1 {
                break;
            }
            delay = delay.saturating_mul(u64::from(self.factor));
        }
        delay.min(self.cap_ms)
    }

    /// The jitter added to `delay` for (`key`, `failures`): in `[0, delay * permille / 1000]`.
    pub fn jitter_ms(&self, delay: u64, failures: u32, key: &str) -> u64 {
        let band = (u128::from(delay) * u128::from(self.jitter_permille) / 1000) as u64;
        if band == 0 {
            return 0;
        }
        let mut h = self.seed ^ u64::from(failures).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for &b in key.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        splitmix(h) % band.saturating_add(1)
    }

    /// The full delay for the `failures`-th consecutive failure of `key`, jitter included.
    pub fn delay_ms(&self, failures: u32, key: &str) -> u64 {
        let raw = self.raw_delay_ms(failures);
        raw.saturating_add(self.jitter_ms(raw, failures, key))
    }

    /// The delay after a `Deferred` outcome (R6): `defer_delay_ms`, or `base_ms`.
    pub fn defer_ms(&self) -> u64 {
        self.defer_delay_ms.unwrap_or(self.base_ms)
    }
}

/// SplitMix64's finaliser: a well-mixed pure function of its input.
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn r5_growth_disabled_gives_base_every_time() {
        let p = BackoffPolicy {
            growth: false,
            jitter_permille: 0,
            ..Default::default()
        };
        for k in 1..50 {
            assert_eq!(p.delay_ms(k, "x"), p.base_ms.min(p.cap_ms));
        }
    }

    proptest! {
        #[test]
        fn r5_kth_failure_delay_is_capped_power_inside_jitter_band(
            base in 0u64..10_000, factor in 1u32..10, cap in 0u64..1_000_000_000,
            jitter in 0u32..1000, seed: u64, k in 1u32..300, key in "[a-z0-9]{0,12}",
        ) {
            let p = BackoffPolicy { base_ms: base, factor, cap_ms: cap, jitter_permille: jitter, seed, growth: true, defer_delay_ms: None };
            // Reference in u128 with an explicit bound, so it cannot overflow either.
            let mut expect: u128 = u128::from(base);
            for _ in 1..k { if expect > u128::from(cap) { break; } expect *= u128::from(factor); }
            let expect = expect.min(u128::from(cap)) as u64;
            prop_assert_eq!(p.raw_delay_ms(k), expect);
            let d = p.delay_ms(k, &key);
            prop_assert!(d >= expect);
            prop_assert!(u128::from(d) <= u128::from(expect) + u128::from(expect) * u128::from(jitter) / 1000);
            prop_assert_eq!(d, p.delay_ms(k, &key), "jitter is a pure function");
        }
    }
}

//! Exponential backoff with jitter: the one policy for reconnects and retries.

use std::time::Duration;

use iobp_config::BackoffSpec;

/// Waits `initial`, doubling each time up to `max`, each varied by ±`jitter_percent`;
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    spec: BackoffSpec,
    next_ms: u64,
    rng: u64,
}

impl Backoff {
    /// A backoff following `spec`.
    pub fn new(spec: BackoffSpec) -> Self {
        // Seed from the clock and the object's address: pairs that fail together should not
        // retry in lock step.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| u64::from(d.subsec_nanos()) ^ d.as_secs())
            ^ (std::ptr::from_ref(&spec) as usize as u64).rotate_left(17);
        Backoff { spec, next_ms: spec.initial_ms, rng: seed | 1 }
    }

    /// The next wait, and advances.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.spec.max_ms);
        let spread = base * u64::from(self.spec.jitter_percent) / 100;
        let jittered =
            if spread == 0 { base } else { base - spread + self.random() % (2 * spread + 1) };
        Duration::from_millis(jittered.max(1))
    }

    /// Back to the initial wait.
    pub fn reset(&mut self) {
        self.next_ms = self.spec.initial_ms;
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter_and_resets() {
        let spec = BackoffSpec { initial_ms: 1000, max_ms: 60_000, jitter_percent: 20 };
        let mut b = Backoff::new(spec);
        let bases = [1000u64, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000];
        for base in bases {
            let d = u64::try_from(b.next_delay().as_millis()).unwrap_or(u64::MAX);
            assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{d} not within 20% of {base}");
        }
        b.reset();
        let d = u64::try_from(b.next_delay().as_millis()).unwrap_or(u64::MAX);
        assert!((800..=1200).contains(&d));
    }

    #[test]
    fn no_jitter_is_exact() {
        let mut b = Backoff::new(BackoffSpec { initial_ms: 10, max_ms: 35, jitter_percent: 0 });
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![10, 20, 35, 35]);
    }
}

//! When a failed job runs again: exponential backoff with jitter. The jitter spreads retries of
//! jobs that failed together (an outage) so they do not all hit the recovered service at once.

use std::time::Duration;

/// The delay after failed attempt number `attempt` (from 1): `base × 2^(attempt−1)`, capped at
/// `max`, less up to a quarter at random (`jitter` in `[0, 1)`). Never more than `max`, and each
/// attempt's range lies above the previous one's, so delays grow whatever the jitter.
pub fn delay(attempt: i64, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = u32::try_from((attempt - 1).clamp(0, 32)).unwrap_or(32);
    let full = base.saturating_mul(2u32.saturating_pow(doublings)).min(max);
    full.saturating_sub(full.mul_f64(0.25 * jitter.clamp(0.0, 1.0)))
}

/// A uniform number in `[0, 1)`; 0 (no jitter) when the OS has no randomness to give.
pub fn random_jitter() -> f64 {
    getrandom::u32().map(|n| f64::from(n) / (f64::from(u32::MAX) + 1.0)).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(1000);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn delays_double_with_each_attempt() {
        let d: Vec<u128> = (1..=5).map(|a| delay(a, BASE, MAX, 0.0).as_millis()).collect();
        assert_eq!(d, vec![1000, 2000, 4000, 8000, 16000]);
    }

    #[test]
    fn jitter_takes_off_at_most_a_quarter_so_delays_still_grow() {
        assert_eq!(delay(1, BASE, MAX, 0.999_999).as_millis(), 750);
        for a in 1..10 {
            assert!(delay(a + 1, BASE, MAX, 0.999_999) > delay(a, BASE, MAX, 0.0), "attempt {a}");
        }
    }

    #[test]
    fn the_delay_never_passes_the_maximum_even_after_many_attempts() {
        assert_eq!(delay(40, BASE, MAX, 0.0), MAX);
        assert_eq!(delay(i64::MAX, BASE, MAX, 0.0), MAX);
        assert!(delay(40, BASE, MAX, 0.5) < MAX);
    }

    #[test]
    fn random_jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = random_jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}

//! Probabilistic failures for load tests: each authenticated request is, at random,
//! rate limited, answered 503, applied and then left without an answer, or served
//! normally. Seeded, so a run can be repeated (as far as request order allows).

use std::ops::RangeInclusive;
use std::time::Duration;

/// How often requests fail, and how. Rates are probabilities in `0.0..=1.0`, drawn in
/// this order; what is left over is served normally.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    /// A 429 (HubSpot's RATE_LIMIT body) with a `Retry-After` drawn from
    /// `retry_after_secs`.
    pub rate_limited: f64,
    pub retry_after_secs: RangeInclusive<u64>,
    /// A 503 gateway page: not applied.
    pub unavailable: f64,
    /// The request takes effect, then the answer is held for `timeout` (make it longer
    /// than the client's timeout): the client cannot tell whether it happened.
    pub applied_then_timeout: f64,
    pub timeout: Duration,
    pub seed: u64,
}

impl Default for Chaos {
    /// No failures at all; set the rates you want.
    fn default() -> Self {
        Self {
            rate_limited: 0.0,
            retry_after_secs: 1..=1,
            unavailable: 0.0,
            applied_then_timeout: 0.0,
            timeout: Duration::from_secs(30),
            seed: 0x5eed_f011_0713,
        }
    }
}

/// What chaos decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roll {
    Normal,
    RateLimited { retry_after_secs: u64 },
    Unavailable,
    AppliedThenTimeout(Duration),
}

pub(crate) struct ChaosState {
    chaos: Chaos,
    rng: SplitMix64,
}

impl ChaosState {
    pub(crate) fn new(chaos: Chaos) -> Self {
        let rng = SplitMix64(chaos.seed);
        Self { chaos, rng }
    }

    pub(crate) fn roll(&mut self) -> Roll {
        let draw = self.rng.unit();
        let chaos = &self.chaos;
        let mut threshold = chaos.rate_limited;
        if draw < threshold {
            let (low, high) = (
                *chaos.retry_after_secs.start(),
                *chaos.retry_after_secs.end(),
            );
            let span = high.saturating_sub(low).saturating_add(1);
            let retry_after_secs = low + self.rng.next() % span;
            return Roll::RateLimited { retry_after_secs };
        }
        threshold += chaos.unavailable;
        if draw < threshold {
            return Roll::Unavailable;
        }
        threshold += chaos.applied_then_timeout;
        if draw < threshold {
            return Roll::AppliedThenTimeout(chaos.timeout);
        }
        Roll::Normal
    }
}

/// A tiny, good-enough PRNG (Vigna's SplitMix64): no dependency for a test fake.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        // 53 random bits: exactly representable.
        #[allow(clippy::cast_precision_loss)]
        let bits = (self.next() >> 11) as f64;
        bits / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_roughly_honoured_and_retry_after_stays_in_range() {
        let mut state = ChaosState::new(Chaos {
            rate_limited: 0.3,
            retry_after_secs: 1..=3,
            unavailable: 0.05,
            applied_then_timeout: 0.05,
            ..Chaos::default()
        });
        let (mut limited, mut unavailable, mut applied) = (0, 0, 0);
        for _ in 0..10_000 {
            match state.roll() {
                Roll::RateLimited { retry_after_secs } => {
                    assert!((1..=3).contains(&retry_after_secs));
                    limited += 1;
                }
                Roll::Unavailable => unavailable += 1,
                Roll::AppliedThenTimeout(_) => applied += 1,
                Roll::Normal => {}
            }
        }
        assert!((2_700..3_300).contains(&limited), "{limited}");
        assert!((350..650).contains(&unavailable), "{unavailable}");
        assert!((350..650).contains(&applied), "{applied}");
    }
}

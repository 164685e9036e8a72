//! When to try a failed job again: one policy for every connector (svix's
//! `calculate_retry_delay`, vector's split of "whether" from "when"). A connector says
//! *whether* ([`crate::Outcome::Retry`], with the API's `Retry-After` if it gave one);
//! this says *when*, or that it is time to give up.

use std::time::Duration;

use followthrough_core::Timestamp;

/// Exponential backoff with jitter, a cap, and the API's `Retry-After` as a floor.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt, before jitter.
    pub base: Duration,
    /// No computed delay exceeds this (a `Retry-After` may: the API decides).
    pub cap: Duration,
    /// Attempts in all (the first one included); after the last, a dead letter.
    pub max_attempts: u32,
    /// A job queued longer ago than this is not retried again: a follow-up a week late
    /// is worse than a person looking at it.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(15 * 60),
            max_attempts: 12,
            max_age: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// What to do after a retryable outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time.
    RetryAt(Timestamp),
    /// The last attempt was used, or the next one would come after `max_age`.
    GiveUp(GiveUp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    Attempts,
    Age,
}

impl RetryPolicy {
    /// After attempt number `attempt` (1 for the first) failed at `now`, with the API
    /// asking for `retry_after`: when to try again, or to give up. `created_at` is when
    /// the job was queued.
    pub fn next(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Next {
        if attempt >= self.max_attempts {
            return Next::GiveUp(GiveUp::Attempts);
        }
        let delay = self.delay(attempt, retry_after, rand::random::<f64>());
        let at = now.saturating_add(delay);
        if at.since(created_at) > self.max_age {
            return Next::GiveUp(GiveUp::Age);
        }
        Next::RetryAt(at)
    }

    /// The delay after attempt `attempt` failed: `base * 2^(attempt-1)`, capped, with
    /// "equal jitter" (half fixed, half random, so retries of many jobs that failed
    /// together spread out but none comes back almost at once), and never less than
    /// `retry_after`. `unit` is a random number in `[0, 1)`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let backoff = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let half = backoff / 2;
        let jittered = half + half.mul_f64(unit.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or_default())
    }
}

/// The unit a bare number in `Retry-After` is counted in: seconds by the HTTP standard;
/// milliseconds where an API says so (HubSpot's workflow webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfterUnit {
    Seconds,
    Millis,
}

/// Parses a `Retry-After` value: a non-negative number in `unit`, or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`), which is turned into the time left from `now`
/// (zero if it is past). `None` for anything else: the caller falls back to its own
/// backoff rather than guessing.
pub fn parse_retry_after(value: &str, unit: RetryAfterUnit, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(number) = value.parse::<f64>() {
        if !number.is_finite() || number < 0.0 {
            return None;
        }
        let seconds = match unit {
            RetryAfterUnit::Seconds => number,
            RetryAfterUnit::Millis => number / 1000.0,
        };
        // A day is more than any API asks for; beyond it the value is nonsense.
        return Some(Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?;
    let left = date.timestamp().as_millisecond() - now.as_millis();
    Some(Duration::from_millis(u64::try_from(left).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: 5,
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        let p = policy();
        assert_eq!(p.delay(1, None, 0.0), Duration::from_millis(500));
        assert!(p.delay(1, None, 0.999_999) < Duration::from_secs(1));
        assert_eq!(p.delay(3, None, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, None, 1.0), Duration::from_secs(4));
        // 2^19 s would be days: the cap holds.
        assert_eq!(p.delay(20, None, 1.0), Duration::from_secs(60));
        assert_eq!(p.delay(u32::MAX, None, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_is_a_floor_even_above_the_cap() {
        let p = policy();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 0.0),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(600)), 1.0),
            Duration::from_secs(600)
        );
        // A shorter Retry-After does not shorten our own backoff.
        assert_eq!(
            p.delay(4, Some(Duration::from_millis(10)), 0.0),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn gives_up_after_the_last_attempt_or_past_the_age() {
        let p = policy();
        let t0 = Timestamp::from_millis(1_000_000);
        assert!(matches!(p.next(1, None, t0, t0), Next::RetryAt(at) if at > t0));
        assert_eq!(p.next(5, None, t0, t0), Next::GiveUp(GiveUp::Attempts));
        let late = t0.saturating_add(Duration::from_secs(3_599));
        assert_eq!(
            p.next(2, Some(Duration::from_secs(5)), t0, late),
            Next::GiveUp(GiveUp::Age)
        );
    }

    #[test]
    fn retry_after_parses_seconds_millis_and_http_dates() {
        let now = Timestamp::from_millis(1_790_000_000_000);
        let s = RetryAfterUnit::Seconds;
        assert_eq!(parse_retry_after("3", s, now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", s, now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("2500", RetryAfterUnit::Millis, now),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(parse_retry_after("-1", s, now), None);
        assert_eq!(parse_retry_after("soon", s, now), None);
        assert_eq!(parse_retry_after("", s, now), None);
        // 1_790_000_000 s since the epoch is Mon, 21 Sep 2026 14:13:20 UTC.
        assert_eq!(
            parse_retry_after("Mon, 21 Sep 2026 14:13:50 GMT", s, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 21 Sep 2026 14:00:00 GMT", s, now),
            Some(Duration::ZERO)
        );
    }
}

//! Client-side rate limits: at most `max` requests in any rolling `per` window, per
//! bucket (a connector, a HubSpot account, a Slack channel).
//!
//! Written by hand rather than with `governor`: HubSpot counts requests in a *rolling*
//! ten-second window (`TEN_SECONDLY_ROLLING`), and a token bucket (GCRA) can only promise
//! "at most N in any window" by allowing a burst of N/2 and refilling at N/2 per window,
//! which halves the throughput we are entitled to. A sliding log of send times is exact,
//! costs `max` timestamps per bucket (a few hundred), and is a few dozen lines.
//!
//! Limits are per process. Several instances sharing one API account must split the
//! account's limit between them in config.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `max` requests in any rolling window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub per: Duration,
}

impl Limit {
    pub fn new(max: u32, per: Duration) -> Self {
        Self {
            max: max.max(1),
            per,
        }
    }
}

/// Every bucket's recent send times.
#[derive(Debug)]
pub struct RateLimiter {
    /// Added to every window: a request is counted when it is let go, but the API
    /// counts it when it arrives, a little later and with jitter.
    margin: Duration,
    buckets: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(Duration::from_millis(250))
    }
}

impl RateLimiter {
    pub fn new(margin: Duration) -> Self {
        Self {
            margin,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `cost` more requests fit in `bucket` under `limit`, then counts them as
    /// sent now. A cost above `limit.max` is treated as `limit.max`. Returns how long it
    /// waited (zero when the bucket had room).
    pub async fn acquire(&self, bucket: &str, limit: Limit, cost: u32) -> Duration {
        let started = Instant::now();
        let cost = cost.clamp(1, limit.max) as usize;
        let window = limit.per + self.margin;
        loop {
            let wait_until = {
                let mut buckets = self
                    .buckets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let sent = buckets.entry(bucket.to_owned()).or_default();
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= window)
                {
                    sent.pop_front();
                }
                if sent.len() + cost <= limit.max as usize {
                    sent.extend(std::iter::repeat_n(now, cost));
                    return now.duration_since(started);
                }
                // Room appears when enough of the oldest sends leave the window.
                let freeing = sent.len() + cost - limit.max as usize;
                sent[freeing - 1] + window
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_any_rolling_window() {
        let limiter = RateLimiter::new(Duration::ZERO);
        let limit = Limit::new(10, Duration::from_secs(1));
        let mut sends = Vec::new();
        let start = Instant::now();
        for _ in 0..35 {
            limiter.acquire("hubspot", limit, 1).await;
            sends.push(Instant::now().duration_since(start));
        }
        // The first ten go at once, then ten per second: the whole window, no halving.
        assert_eq!(sends[9], Duration::ZERO);
        assert_eq!(sends[10], Duration::from_secs(1));
        assert_eq!(sends[34], Duration::from_secs(3));
        for (i, at) in sends.iter().enumerate() {
            let in_window = sends[i..]
                .iter()
                .take_while(|later| **later - *at < Duration::from_secs(1))
                .count();
            assert!(in_window <= 10, "{in_window} sends within 1 s of {at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_independent_and_costs_count() {
        let limiter = RateLimiter::new(Duration::from_millis(100));
        let limit = Limit::new(1, Duration::from_secs(1));
        assert_eq!(limiter.acquire("slack:C1", limit, 1).await, Duration::ZERO);
        assert_eq!(limiter.acquire("slack:C2", limit, 1).await, Duration::ZERO);
        // The margin is added to the window.
        assert_eq!(
            limiter.acquire("slack:C1", limit, 1).await,
            Duration::from_millis(1100)
        );
        let two = Limit::new(4, Duration::from_secs(10));
        limiter.acquire("hubspot", two, 3).await;
        assert_eq!(
            limiter.acquire("hubspot", two, 2).await,
            Duration::from_millis(10_100)
        );
    }
}

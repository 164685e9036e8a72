//! How HubSpot's answers are classified for the outbox: which statuses are worth
//! retrying, how long HubSpot asked us to wait, and whether an answer that never came
//! can have taken effect.
//!
//! - 2xx: success.
//! - 429, 423 (at least 2 s), 477 (portal migration), 502, 503, 504, 521-524: retry.
//! - Other 4xx: terminal, with HubSpot's `message` and `errors[].message`s.
//! - 500 and the other 5xx: indeterminate. HubSpot lists them as neither retryable nor
//!   refused; the server failed while handling the request, which may have taken effect.
//! - No connection made: retry. Sent, then no answer (timeout, reset): indeterminate.

use std::time::Duration;

use followthrough_core::Timestamp;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::client::{Answer, HubSpotClient, SendError};
use crate::{Failure, Outcome, RetryAfterUnit, parse_retry_after};

/// HubSpot asks for at least 2 s after a 423 (locked).
pub const LOCKED_WAIT: Duration = Duration::from_secs(2);

/// What a status means, before any detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Retry,
    Terminal,
    Indeterminate,
}

/// The class of an HTTP status from HubSpot's API.
pub fn status_class(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        423 | 429 | 477 | 502..=504 | 521..=524 => StatusClass::Retry,
        500..=599 => StatusClass::Indeterminate,
        _ => StatusClass::Terminal,
    }
}

/// How long the answer asks us to wait: `Retry-After` in seconds or as an HTTP date
/// (relative to `now`); without it, the rate-limit window when HubSpot's
/// `X-HubSpot-RateLimit-Remaining` is 0 (HubSpot's CRM API sends no `Retry-After` on
/// its 429s). `None` when nothing says.
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let given = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
    if let Some(wait) = given.and_then(|v| parse_retry_after(v, RetryAfterUnit::Seconds, now)) {
        return Some(wait);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let remaining = header("x-hubspot-ratelimit-remaining")?
        .trim()
        .parse::<u64>();
    let interval = header("x-hubspot-ratelimit-interval-milliseconds")?
        .trim()
        .parse::<u64>();
    match (remaining, interval) {
        (Ok(0), Ok(interval)) => Some(Duration::from_millis(interval)),
        _ => None,
    }
}

/// A non-2xx answer as an outcome: `Retry`, `Terminal` or `Indeterminate`, with
/// HubSpot's message as the reason and the body's start as the response.
pub(crate) fn failure(client: &HubSpotClient, answer: &Answer, now: Timestamp) -> Outcome {
    let code = answer.status.as_u16();
    let reason = answer.status.canonical_reason().unwrap_or("");
    let message = match client.error_message(&answer.body) {
        Some(detail) => format!("HubSpot answered {code}: {detail}"),
        None => format!("HubSpot answered {code} {reason}")
            .trim_end()
            .to_owned(),
    };
    let mut failure = Failure {
        status: Some(code),
        message,
        retry_after: retry_after(&answer.headers, now),
        response: client.body_start(&answer.body),
    };
    match status_class(code) {
        StatusClass::Retry => {
            if code == 423 {
                let asked = failure.retry_after.unwrap_or(Duration::ZERO);
                failure.retry_after = Some(asked.max(LOCKED_WAIT));
            }
            Outcome::Retry(failure)
        }
        StatusClass::Indeterminate => Outcome::Indeterminate(failure),
        StatusClass::Terminal | StatusClass::Success => Outcome::Terminal(failure),
    }
}

/// A request that got no answer: `Retry` if nothing was sent, else `Indeterminate`.
pub(crate) fn transport(error: &SendError) -> Outcome {
    let failure = Failure::new(None, error.message());
    match error {
        SendError::NotSent(_) => Outcome::Retry(failure),
        SendError::NoAnswer(_) => Outcome::Indeterminate(failure),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn statuses_fall_in_hubspots_classes() {
        for status in [200, 201, 204, 207] {
            assert_eq!(status_class(status), StatusClass::Success, "{status}");
        }
        for status in [423, 429, 477, 502, 503, 504, 521, 522, 523, 524] {
            assert_eq!(status_class(status), StatusClass::Retry, "{status}");
        }
        for status in [400, 401, 403, 404, 405, 409, 415, 422, 301] {
            assert_eq!(status_class(status), StatusClass::Terminal, "{status}");
        }
        for status in [500, 501, 505, 520, 599] {
            assert_eq!(status_class(status), StatusClass::Indeterminate, "{status}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now: jiff::Timestamp = "2015-10-21T07:28:00Z".parse().unwrap();
        let now = Timestamp::from_millis(now.as_millisecond());
        let in_seconds = headers(&[("retry-after", " 7 ")]);
        assert_eq!(retry_after(&in_seconds, now), Some(Duration::from_secs(7)));
        let as_date = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        assert_eq!(retry_after(&as_date, now), Some(Duration::from_secs(30)));
        let past = headers(&[("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT")]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        let garbage = headers(&[("retry-after", "soon")]);
        assert_eq!(retry_after(&garbage, now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn without_retry_after_an_exhausted_window_means_wait_the_interval() {
        let now = Timestamp::from_millis(0);
        let exhausted = headers(&[
            ("x-hubspot-ratelimit-remaining", "0"),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
        ]);
        assert_eq!(retry_after(&exhausted, now), Some(Duration::from_secs(10)));
        let room_left = headers(&[
            ("x-hubspot-ratelimit-remaining", "3"),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
        ]);
        assert_eq!(retry_after(&room_left, now), None);
    }
}

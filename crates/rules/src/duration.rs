//! Durations as rules write them (`14d`, `24h`, `90m`, `2h 30m`, `1 business day`) and the
//! [`Calendar`] that turns them into a due time.
//!
//! CEL has no day unit and HubSpot users think in business days, so durations live in the
//! YAML layer. Calendar units (days, weeks) are added in the calendar's time zone, so
//! "14d" across a DST change still lands at the same wall-clock time.

use std::fmt;

use followthrough_core::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, ZonedDateTime as Zoned};

/// The longest wait a rule may ask for; anything longer is almost certainly a typo
/// (`14000d`) and would keep a run alive for years.
const MAX_DAYS: i64 = 366;
const MAX_BUSINESS_DAYS: i64 = 260;

/// A parsed duration: a span of clock/calendar time, or a number of working days.
#[derive(Debug, Clone)]
pub enum Delay {
    Span(Span),
    BusinessDays(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "`{0}` is not a duration: write e.g. `14d`, `24h`, `90m`, `2h 30m` or `1 business day`"
    )]
    Syntax(String),
    #[error("`{0}` is not a positive duration")]
    NotPositive(String),
    #[error(
        "`{0}` is longer than the maximum of {MAX_DAYS} days ({MAX_BUSINESS_DAYS} business days)"
    )]
    TooLong(String),
}

impl Delay {
    pub fn parse(text: &str) -> Result<Delay, DurationError> {
        let trimmed = text.trim();
        if let Some(days) = parse_business_days(trimmed) {
            let days = days.ok_or_else(|| DurationError::Syntax(text.to_owned()))?;
            if days <= 0 {
                return Err(DurationError::NotPositive(text.to_owned()));
            }
            if days > MAX_BUSINESS_DAYS {
                return Err(DurationError::TooLong(text.to_owned()));
            }
            return Ok(Delay::BusinessDays(days));
        }
        // jiff's "friendly" format reads `14d`, `2h 30m`, `90 minutes` and ISO 8601 `P14D`.
        let span: Span = trimmed
            .parse()
            .map_err(|_| DurationError::Syntax(text.to_owned()))?;
        if span.signum() <= 0 {
            return Err(DurationError::NotPositive(text.to_owned()));
        }
        // Days are taken as 24 h only for this bound; adding happens in the calendar's zone.
        let reference = jiff::SpanRelativeTo::days_are_24_hours();
        let days = span
            .total((jiff::Unit::Day, reference))
            .map_err(|_| DurationError::TooLong(text.to_owned()))?;
        if days > MAX_DAYS as f64 {
            return Err(DurationError::TooLong(text.to_owned()));
        }
        Ok(Delay::Span(span))
    }
}

impl PartialEq for Delay {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Delay::Span(a), Delay::Span(b)) => a.fieldwise() == *b,
            (Delay::BusinessDays(a), Delay::BusinessDays(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delay::Span(span) => write!(f, "{span:#}"),
            Delay::BusinessDays(1) => f.write_str("1 business day"),
            Delay::BusinessDays(n) => write!(f, "{n} business days"),
        }
    }
}

/// `Some(Some(n))` for `n business day(s)`, `Some(None)` for a malformed business-day
/// phrase, `None` when the text does not mention business days at all.
fn parse_business_days(text: &str) -> Option<Option<i64>> {
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_suffix("business days")
        .or_else(|| lower.strip_suffix("business day"))?;
    Some(rest.trim().parse::<i64>().ok())
}

/// The working week and time zone business days and calendar days are counted in.
/// Passed into evaluation (never read from the machine), so the same rule gives the same
/// due time on every instance and in tests.
#[derive(Debug, Clone)]
pub struct Calendar {
    time_zone: TimeZone,
    working_days: Vec<Weekday>,
    holidays: Vec<Date>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
    #[error("a working week needs at least one working day")]
    NoWorkingDays,
}

impl Default for Calendar {
    /// UTC, Monday to Friday, no holidays.
    fn default() -> Self {
        Self {
            time_zone: TimeZone::UTC,
            working_days: vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
            holidays: Vec::new(),
        }
    }
}

impl Calendar {
    /// A calendar in an IANA time zone (e.g. `Europe/Paris`) with the given working days.
    pub fn new(
        time_zone: &str,
        working_days: Vec<Weekday>,
        holidays: Vec<Date>,
    ) -> Result<Self, CalendarError> {
        if working_days.is_empty() {
            return Err(CalendarError::NoWorkingDays);
        }
        let time_zone =
            TimeZone::get(time_zone).map_err(|_| CalendarError::TimeZone(time_zone.to_owned()))?;
        Ok(Self {
            time_zone,
            working_days,
            holidays,
        })
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    fn is_working_day(&self, date: Date) -> bool {
        self.working_days.contains(&date.weekday()) && !self.holidays.contains(&date)
    }

    /// `from + delay`. Business days keep the time of day and skip non-working days:
    /// one business day from Friday 10:00 is Monday 10:00, and from Saturday too.
    pub fn add(&self, from: Timestamp, delay: &Delay) -> Timestamp {
        let Ok(start) = jiff::Timestamp::from_millisecond(from.as_millis()) else {
            return from;
        };
        let start = start.to_zoned_datetime(self.time_zone.clone());
        let end = match delay {
            Delay::Span(span) => start.checked_add(*span).ok(),
            Delay::BusinessDays(n) => self.add_business_days(&start, *n),
        };
        end.map(|zoned| Timestamp::from_millis(zoned.timestamp().as_millisecond()))
            .unwrap_or(Timestamp(i64::MAX))
    }

    fn add_business_days(&self, start: &Zoned, days: i64) -> Option<Zoned> {
        let mut date = start.date();
        let mut counted = 0;
        // Bounded: MAX_BUSINESS_DAYS working days fit in far fewer than 10 years of dates
        // unless the holidays cover everything, which we refuse to loop on forever.
        for _ in 0..3660 {
            date = date.tomorrow().ok()?;
            if self.is_working_day(date) {
                counted += 1;
                if counted == days {
                    return date
                        .to_datetime(start.time())
                        .to_zoned_datetime(self.time_zone.clone())
                        .ok();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp(text.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    }

    #[test]
    fn parses_the_forms_rules_use() {
        let cal = Calendar::default();
        let start = ts("2025-11-28T10:00:00Z"); // a Friday
        for (text, end) in [
            ("14d", "2025-12-12T10:00:00Z"),
            ("24h", "2025-11-29T10:00:00Z"),
            ("90m", "2025-11-28T11:30:00Z"),
            ("2h 30m", "2025-11-28T12:30:00Z"),
            ("1 business day", "2025-12-01T10:00:00Z"),
            ("3 business days", "2025-12-03T10:00:00Z"),
        ] {
            let delay = Delay::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cal.add(start, &delay), ts(end), "{text}");
        }
    }

    #[test]
    fn rejects_impossible_durations() {
        assert!(matches!(
            Delay::parse("soon"),
            Err(DurationError::Syntax(_))
        ));
        assert!(matches!(
            Delay::parse("0d"),
            Err(DurationError::NotPositive(_))
        ));
        assert!(matches!(
            Delay::parse("0 business days"),
            Err(DurationError::NotPositive(_))
        ));
        assert!(matches!(
            Delay::parse("-3h"),
            Err(DurationError::NotPositive(_))
        ));
        assert!(matches!(
            Delay::parse("5000d"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            Delay::parse("x business days"),
            Err(DurationError::Syntax(_))
        ));
    }

    #[test]
    fn business_days_follow_the_configured_week_and_zone() {
        // Sunday to Thursday week in Dubai (UTC+4): Thursday 23:00 UTC is Friday 03:00
        // local, a weekend day, so one business day later is Sunday 03:00 local.
        let week = vec![
            Weekday::Sunday,
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
        ];
        let cal = Calendar::new("Asia/Dubai", week, vec![]).unwrap();
        let delay = Delay::BusinessDays(1);
        assert_eq!(
            cal.add(ts("2025-11-27T23:00:00Z"), &delay),
            ts("2025-11-29T23:00:00Z")
        );
        let holiday = Calendar::new(
            "UTC",
            Calendar::default().working_days,
            vec![jiff::civil::date(2025, 12, 1)],
        )
        .unwrap();
        assert_eq!(
            holiday.add(ts("2025-11-28T10:00:00Z"), &delay),
            ts("2025-12-02T10:00:00Z")
        );
    }

    #[test]
    fn calendar_days_keep_wall_clock_time_across_dst() {
        let cal = Calendar::new("Europe/Paris", Calendar::default().working_days, vec![]).unwrap();
        // 2025-10-26 Paris leaves summer time: 14 days from 10:00 CEST is 10:00 CET.
        let end = cal.add(ts("2025-10-20T08:00:00Z"), &Delay::parse("14d").unwrap());
        assert_eq!(end, ts("2025-11-03T09:00:00Z"));
    }
}

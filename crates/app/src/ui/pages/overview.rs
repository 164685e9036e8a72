//! `GET /ui/`: is followthrough keeping up? Ingest rate, timers, outbox backlog, dead
//! letters, failing connectors and the rules in force, on one page.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use followthrough_core::Timestamp;
use followthrough_store::JournalEntry;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

use super::chrome;
use crate::server::AppState;
use crate::ui::page::{UiError, render};
use crate::ui::session::Session;

/// The ingest-rate window, in minutes.
const WINDOW_MINUTES: usize = 15;
/// How many recent webhook requests are read to count it. At a higher request rate the
/// oldest minutes are undercounted, and the page says so.
const REQUESTS_READ: usize = 5000;

#[derive(Debug, Serialize)]
struct Minute {
    /// Start of the minute, RFC 3339.
    at: String,
    events: u64,
}

#[derive(Debug, Serialize)]
struct Backlog {
    connector: String,
    pending: u64,
    oldest_created_at: Option<String>,
    oldest_age: Option<String>,
}

pub async fn show(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let now = state.clock.now();
    let stats = state.store.stats().await?;
    let requests = state.store.recent_requests(REQUESTS_READ).await?;
    let truncated = requests.len() == REQUESTS_READ;
    let minutes = ingest_per_minute(&requests, now);
    let accepted: u64 = minutes.iter().map(|m| m.events).sum();
    let busiest = minutes.iter().map(|m| m.events).max().unwrap_or(0);
    let backlog: Vec<Backlog> = stats
        .outbox_pending
        .iter()
        .map(|b| Backlog {
            connector: b.connector.clone(),
            pending: b.pending,
            oldest_created_at: b.oldest_created_at.map(Timestamp::to_rfc3339),
            oldest_age: b.oldest_created_at.map(|at| age(at, now)),
        })
        .collect();
    let failing: Vec<_> = state
        .outbox
        .health()
        .into_iter()
        .filter(|h| h.circuit != "closed")
        .collect();
    let rules = state.rules.current();
    Ok(render(
        StatusCode::OK,
        "overview.html",
        context! {
            title => "Overview",
            chrome => Serde(chrome(&state, &session)),
            now => now.to_rfc3339(),
            started_at => state.started_at.to_rfc3339(),
            minutes => Serde(minutes),
            accepted => accepted,
            per_minute => format!("{:.1}", accepted as f64 / WINDOW_MINUTES as f64),
            busiest => busiest.max(1),
            truncated => truncated,
            inbox_pending => stats.inbox_pending,
            timers_pending => stats.timers_pending,
            next_timer_at => stats.next_timer_at.map(Timestamp::to_rfc3339),
            outbox_pending => stats.outbox_pending_total(),
            oldest_age => stats.oldest_pending_at().map(|at| age(at, now)),
            backlog => Serde(backlog),
            dead_letters => stats.dead_letters,
            failing => Serde(failing),
            connectors => state.outbox.connectors(),
            rules_loaded => rules.rules().len(),
            active_runs => stats.active_runs_total(),
        },
    ))
}

/// Accepted webhook events per minute over the window, oldest minute first. Counted
/// from the journal's request rows, so it survives restarts and counts every instance
/// sharing the store.
fn ingest_per_minute(requests: &[JournalEntry], now: Timestamp) -> Vec<Minute> {
    const MINUTE_MS: i64 = 60_000;
    let current = now.as_millis().div_euclid(MINUTE_MS);
    let first = current - (WINDOW_MINUTES as i64 - 1);
    let mut counts = vec![0u64; WINDOW_MINUTES];
    for request in requests {
        if request.detail["outcome"] != "accepted" {
            continue;
        }
        let minute = request.at.as_millis().div_euclid(MINUTE_MS);
        if (first..=current).contains(&minute) {
            let slot = usize::try_from(minute - first).unwrap_or(0);
            counts[slot] += request.detail["events"].as_u64().unwrap_or(0);
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(slot, events)| Minute {
            at: Timestamp::from_millis((first + slot as i64) * MINUTE_MS).to_rfc3339(),
            events,
        })
        .collect()
}

/// How long ago `then` was, roughly, for a person: `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
fn age(then: Timestamp, now: Timestamp) -> String {
    let ms = u64::try_from(now.as_millis().saturating_sub(then.as_millis())).unwrap_or(0);
    let secs = Duration::from_millis(ms).as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use followthrough_store::JournalKind;
    use serde_json::json;

    use super::*;

    fn request(at_ms: i64, outcome: &str, events: u64) -> JournalEntry {
        JournalEntry {
            at: Timestamp::from_millis(at_ms),
            object: None,
            kind: JournalKind::Webhook,
            summary: String::new(),
            detail: json!({ "outcome": outcome, "events": events }),
        }
    }

    #[test]
    fn accepted_events_are_counted_in_their_minute_of_the_window() {
        let now = Timestamp::from_millis(100 * 60_000 + 30_000);
        let minutes = ingest_per_minute(
            &[
                request(100 * 60_000 + 1, "accepted", 3),
                request(100 * 60_000 + 2, "rejected", 0),
                request(99 * 60_000, "accepted", 2),
                request(86 * 60_000, "accepted", 5),
                request(85 * 60_000, "accepted", 7),
            ],
            now,
        );
        assert_eq!(minutes.len(), WINDOW_MINUTES);
        let counts: Vec<u64> = minutes.iter().map(|m| m.events).collect();
        assert_eq!(counts[0], 5, "the window's first minute");
        assert_eq!(counts[13], 2);
        assert_eq!(counts[14], 3, "the current minute");
        assert_eq!(
            counts.iter().sum::<u64>(),
            10,
            "the minute before the window is out"
        );
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        let at = |secs: i64| Timestamp::from_millis(secs * 1000);
        assert_eq!(age(at(0), at(42)), "42s");
        assert_eq!(age(at(0), at(303)), "5m 3s");
        assert_eq!(age(at(0), at(7800)), "2h 10m");
        assert_eq!(age(at(0), at(3 * 86_400 + 4 * 3600)), "3d 4h");
        assert_eq!(age(at(10), at(0)), "0s");
    }
}

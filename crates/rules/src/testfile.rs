//! The `*.test.yaml` format: cases with an initial object, timed events and the actions
//! expected. Parsed with serde-saphyr like rules, so mistakes get `file:line:column`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use followthrough_core::{Event, EventId, EventKind, ObjectRef, Timestamp};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::context::Owner;
use crate::diagnostic::{Diagnostic, Pos, from_yaml_error};
use crate::duration::{Calendar, Delay};

/// The default start of simulated time: a Friday, 10:00 UTC.
pub const DEFAULT_START: &str = "2025-11-28T10:00:00Z";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files (relative to the test file) to load; default: every rule in its folder.
    #[serde(default)]
    pub rules: Vec<String>,
    /// When simulated time starts; `+13d` in events is relative to it.
    pub start: Option<String>,
    pub calendar: Option<CalendarSpec>,
    #[serde(default)]
    pub owners: Vec<Owner>,
    pub cases: Vec<Case>,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub time_zone: Option<String>,
    pub working_days: Option<Vec<String>>,
    #[serde(default)]
    pub holidays: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub object: ObjectSpec,
    #[serde(default)]
    pub associated: Vec<ObjectSpec>,
    /// URL -> JSON result for `lookup` steps.
    #[serde(default)]
    pub lookups: BTreeMap<String, Json>,
    #[serde(default)]
    pub events: Vec<Step>,
    /// A list of expected actions, or the text `no actions`.
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSpec {
    #[serde(default = "hubspot")]
    pub source: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Json>,
}

fn hubspot() -> String {
    "hubspot".into()
}

impl ObjectSpec {
    pub fn reference(&self) -> ObjectRef {
        ObjectRef::new(&self.source, &self.object_type, &self.id)
    }
}

/// One entry of `events`: an event at a time, or `advance: <time>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `+13d`, `+2h 30m` (from `start`) or an RFC 3339 time; default: the previous time.
    pub at: Option<String>,
    /// Property changes of the case's object, one event per property.
    pub change: Option<BTreeMap<String, Json>>,
    /// The case's object is created (with its initial properties).
    pub created: Option<bool>,
    pub deleted: Option<bool>,
    /// An association from the case's object to another object is added.
    pub associate: Option<ObjectSpec>,
    pub dissociate: Option<ObjectSpec>,
    /// An engagement (call, email, ...) associated with the case's object is created.
    pub engagement: Option<ObjectSpec>,
    /// Who made the change (HubSpot `changeSource`).
    pub change_source: Option<String>,
    /// Only let time pass until this time (timers fire).
    pub advance: Option<String>,
}

#[derive(Debug)]
pub enum Expect {
    Text(String),
    Actions(Vec<Expected>),
}

/// By hand rather than `#[serde(untagged)]`: untagged enums buffer their input, which
/// loses serde-saphyr's positions and block-style mappings.
impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Expect;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of expected actions, or `no actions`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Expect, E> {
                if v == "no actions" {
                    Ok(Expect::Text(v.to_owned()))
                } else {
                    Err(E::custom(format!(
                        "`{v}`: write a list of actions or `no actions`"
                    )))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Expect, A::Error> {
                let mut list = Vec::new();
                while let Some(item) = seq.next_element()? {
                    list.push(item);
                }
                Ok(Expect::Actions(list))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// `create_task`, `slack_dm`, ... or `failed` for a failed run.
    pub action: String,
    /// Expected simulated time, like an event's `at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// A subset of the rendered parameters (objects compared key by key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl TestFile {
    pub fn load(path: &Path) -> Result<TestFile, Diagnostic> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, Pos::START, format!("cannot read: {e}")))?;
        let mut file: TestFile =
            serde_saphyr::from_str(&source).map_err(|e| from_yaml_error(path, &e))?;
        file.path = path.to_owned();
        Ok(file)
    }

    pub fn start(&self) -> Result<Timestamp, String> {
        parse_absolute(self.start.as_deref().unwrap_or(DEFAULT_START))
    }

    pub fn calendar(&self) -> Result<Calendar, String> {
        let Some(spec) = &self.calendar else {
            return Ok(Calendar::default());
        };
        let days = match &spec.working_days {
            None => vec!["mon", "tue", "wed", "thu", "fri"]
                .into_iter()
                .map(String::from)
                .collect(),
            Some(days) => days.clone(),
        };
        let days = days
            .iter()
            .map(|d| weekday(d))
            .collect::<Result<Vec<_>, _>>()?;
        let holidays = spec
            .holidays
            .iter()
            .map(|h| h.parse().map_err(|e| format!("holiday `{h}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Calendar::new(spec.time_zone.as_deref().unwrap_or("UTC"), days, holidays)
            .map_err(|e| e.to_string())
    }
}

fn weekday(text: &str) -> Result<jiff::civil::Weekday, String> {
    use jiff::civil::Weekday::*;
    Ok(match text.to_ascii_lowercase().get(..3) {
        Some("mon") => Monday,
        Some("tue") => Tuesday,
        Some("wed") => Wednesday,
        Some("thu") => Thursday,
        Some("fri") => Friday,
        Some("sat") => Saturday,
        Some("sun") => Sunday,
        _ => return Err(format!("`{text}` is not a weekday")),
    })
}

fn parse_absolute(text: &str) -> Result<Timestamp, String> {
    text.parse::<jiff::Timestamp>()
        .map(|t| Timestamp(t.as_millisecond()))
        .map_err(|e| format!("`{text}` is not a time: {e}"))
}

/// `+13d` from `start` (in the calendar's zone), or an absolute RFC 3339 time.
pub fn parse_time(text: &str, start: Timestamp, calendar: &Calendar) -> Result<Timestamp, String> {
    match text.trim().strip_prefix('+') {
        Some("0") => Ok(start),
        Some(relative) => Delay::parse(relative)
            .map(|d| calendar.add(start, &d))
            .map_err(|e| e.to_string()),
        None => parse_absolute(text),
    }
}

/// Builds a canonical event, as ingest would normalize a webhook.
pub fn event(
    object: ObjectRef,
    kind: EventKind,
    at: Timestamp,
    change_source: Option<String>,
    seq: u64,
) -> Event {
    let subscription = format!("{}.{}", object.object_type, kind.name());
    Event {
        id: EventId::new(),
        source: object.source.clone(),
        dedup_key: format!("test:{seq}"),
        object,
        kind,
        occurred_at: at,
        received_at: at,
        subscription,
        change_source,
        source_id: None,
        raw: followthrough_core::RawJson::null(),
    }
}

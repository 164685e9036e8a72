//! What a condition or template sees: [`EvalContext`], gathered by the engine (or the
//! simulator) before evaluation so that evaluation itself does no I/O.
//!
//! HubSpot sends every property as a string. For CEL, strings that are canonical
//! integers (`"50"`, `"-3"`, no leading zero) become `int` and canonical decimals
//! (`"12.5"`) become `double`, so `object.lead_score >= 50` works; JSON integers become
//! `int` rather than `uint`. Templates see the values as sent, so `12.50` prints as is.
//! An absent or null property of `object` or `previous` reads as `""` in CEL (HubSpot
//! itself treats "no value" and "" alike), so `object.next_step == ""` means "empty".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::Key;
use followthrough_core::{Event, EventKind, ObjectRef, Timestamp};
use serde_json::{Map, Value as Json, json};

use crate::duration::Calendar;

/// A CRM object and its current properties (values as the CRM sent them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjectState {
    pub object: ObjectRef,
    #[serde(default)]
    pub properties: BTreeMap<String, Json>,
}

impl ObjectState {
    pub fn new(object: ObjectRef) -> Self {
        Self {
            object,
            properties: BTreeMap::new(),
        }
    }
}

pub use followthrough_core::Owner;

/// Everything one evaluation may read. Built once per (event, object) and shared by
/// every rule evaluated for it: the CEL form is built lazily, once.
#[derive(Debug)]
pub struct EvalContext {
    /// The event being evaluated; `None` when a timer wakes a run.
    pub event: Option<Event>,
    /// The object the rule is about, with its properties after the event.
    pub object: ObjectState,
    /// Properties before the event.
    pub previous: BTreeMap<String, Json>,
    pub owner: Option<Owner>,
    /// Linked objects by type (`contact`, `company`, ...).
    pub associated: BTreeMap<String, Vec<ObjectState>>,
    pub now: Timestamp,
    pub calendar: Calendar,
    cel: OnceLock<CelVars>,
    raw: OnceLock<Json>,
    coerced: OnceLock<Json>,
}

impl Clone for EvalContext {
    fn clone(&self) -> Self {
        Self::new(
            self.event.clone(),
            self.object.clone(),
            self.previous.clone(),
            self.owner.clone(),
            self.associated.clone(),
            self.now,
            self.calendar.clone(),
        )
    }
}

impl EvalContext {
    pub fn new(
        event: Option<Event>,
        object: ObjectState,
        previous: BTreeMap<String, Json>,
        owner: Option<Owner>,
        associated: BTreeMap<String, Vec<ObjectState>>,
        now: Timestamp,
        calendar: Calendar,
    ) -> Self {
        Self {
            event,
            object,
            previous,
            owner,
            associated,
            now,
            calendar,
            cel: OnceLock::new(),
            raw: OnceLock::new(),
            coerced: OnceLock::new(),
        }
    }

    /// What the engine and the simulator both gather for a rule: the object after the
    /// event, its owner (named by its `hubspot_owner_id`; known by id only if `owners`
    /// does not know it), and its linked objects grouped by type.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        event: Option<Event>,
        object: ObjectState,
        previous: BTreeMap<String, Json>,
        owners: impl Fn(&str) -> Option<Owner>,
        linked: impl IntoIterator<Item = ObjectState>,
        now: Timestamp,
        calendar: Calendar,
    ) -> Self {
        let owner = object
            .properties
            .get(crate::simulator::OWNER_PROPERTY)
            .map(|id| crate::trigger::value_text(Some(id)).trim().to_owned())
            .filter(|id| !id.is_empty())
            .map(|id| {
                owners(&id).unwrap_or(Owner {
                    id,
                    ..Owner::default()
                })
            });
        let mut associated: BTreeMap<String, Vec<ObjectState>> = BTreeMap::new();
        for other in linked {
            associated
                .entry(other.object.object_type.clone())
                .or_default()
                .push(other);
        }
        Self::new(event, object, previous, owner, associated, now, calendar)
    }

    /// A context with only an object and a time: for timer wakes and tests.
    pub fn for_object(object: ObjectState, now: Timestamp) -> Self {
        Self::new(
            None,
            object,
            BTreeMap::new(),
            None,
            BTreeMap::new(),
            now,
            Calendar::default(),
        )
    }

    /// The CEL variables (without `vars`), built on first use with `fill`; the caller
    /// checks [`CelVars::covers`] since another rule set may have built them first.
    pub(crate) fn cel(&self, fill: &Arc<BTreeSet<String>>) -> &CelVars {
        self.cel
            .get_or_init(|| CelVars::build_with(self, fill, &Map::new()))
    }

    /// The context as templates see it, with the run's `vars`.
    pub(crate) fn template_value(&self, vars: &Map<String, Json>) -> minijinja::Value {
        let mut root = self.raw.get_or_init(|| self.view(false)).clone();
        root["vars"] = Json::Object(vars.clone());
        minijinja::Value::from(minijinja::value::Serde(&root))
    }

    /// The value at a dotted path in the coerced (CEL) view, or null; for the journal.
    pub fn lookup_path(&self, path: &str) -> Json {
        // Absent properties read as "" in CEL; report them the same way.
        let absent = if path.starts_with("object.") || path.starts_with("previous.") {
            Json::String(String::new())
        } else {
            Json::Null
        };
        let mut current = self.coerced.get_or_init(|| self.view(true));
        for part in path.split('.') {
            match current.get(part) {
                Some(next) => current = next,
                None => return absent,
            }
        }
        current.clone()
    }

    /// The whole context as JSON; `coerce` applies the CEL number coercion.
    fn view(&self, coerce: bool) -> Json {
        let props = |map: &BTreeMap<String, Json>| -> Json {
            Json::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), if coerce { coerce_json(v) } else { v.clone() }))
                    .collect(),
            )
        };
        let mut associated = Map::new();
        for (kind, objects) in &self.associated {
            let list: Vec<Json> = objects
                .iter()
                .map(|o| {
                    let mut p = props(&o.properties);
                    p["id"] = Json::String(o.object.id.clone());
                    p
                })
                .collect();
            if let Some(first) = list.first() {
                associated.insert(kind.clone(), first.clone());
            }
            associated.insert(plural(kind), Json::Array(list));
        }
        let owner = self.owner.clone().unwrap_or_default();
        json!({
            "event": self.event_view(coerce),
            "object": props(&self.object.properties),
            "previous": props(&self.previous),
            "owner": { "id": owner.id, "email": owner.email, "name": owner.name, "teams": owner.teams },
            "associated": associated,
            "vars": {},
            "now": self.now.to_rfc3339(),
        })
    }

    fn event_view(&self, coerce: bool) -> Json {
        let Some(event) = &self.event else {
            return json!({ "kind": "timer", "occurred_at": self.now.to_rfc3339() });
        };
        let mut view = json!({
            "kind": event.kind.name(),
            "source": event.source,
            "object": { "source": event.object.source, "type": event.object.object_type, "id": event.object.id },
            "occurred_at": event.occurred_at.to_rfc3339(),
            "subscription": event.subscription,
            "change_source": event.change_source.clone().unwrap_or_default(),
            "source_id": event.source_id.clone().unwrap_or_default(),
        });
        match &event.kind {
            EventKind::PropertyChange { property, value } => {
                view["property"] = Json::String(property.clone());
                view["value"] = if coerce {
                    coerce_json(value)
                } else {
                    value.clone()
                };
            }
            EventKind::AssociationChange {
                to,
                association_type,
                removed,
            } => {
                view["association"] = json!({
                    "to": { "source": to.source, "type": to.object_type, "id": to.id },
                    "type": association_type,
                    "removed": removed,
                });
            }
            EventKind::Merged { merged_ids, new_id } => {
                view["merged_ids"] = json!(merged_ids);
                view["new_id"] = json!(new_id);
            }
            EventKind::Created | EventKind::Deleted | EventKind::Restored => {}
        }
        view
    }
}

/// `company` -> `companies`, `contact` -> `contacts`: the list form of `associated`.
pub fn plural(kind: &str) -> String {
    match kind.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{kind}s"),
    }
}

/// A canonical integer or decimal string as a JSON number; anything else unchanged.
fn coerce_json(value: &Json) -> Json {
    match value {
        Json::String(s) => match coerce_str(s) {
            Some(Number::Int(i)) => json!(i),
            Some(Number::Float(f)) => json!(f),
            None => value.clone(),
        },
        Json::Null => Json::String(String::new()),
        other => other.clone(),
    }
}

enum Number {
    Int(i64),
    Float(f64),
}

/// Only canonical forms are numbers: `"007"` (a code) and `"1e3"` stay strings.
fn coerce_str(s: &str) -> Option<Number> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int_part, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let canonical_int = !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && (int_part == "0" || !int_part.starts_with('0'));
    if !canonical_int {
        return None;
    }
    match frac {
        None => s.parse().ok().map(Number::Int),
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok().map(Number::Float)
        }
        Some(_) => None,
    }
}

fn to_cel(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => match coerce_str(s) {
            Some(Number::Int(i)) => cel::Value::Int(i),
            Some(Number::Float(f)) => cel::Value::Float(f),
            None => cel::Value::String(Arc::new(s.clone())),
        },
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(map) => map_to_cel(map.iter().map(|(k, v)| (k.as_str(), v)), &BTreeSet::new()),
    }
}

/// A property map for CEL; `fill` names read as "" when absent or null.
fn map_to_cel<'a>(
    entries: impl Iterator<Item = (&'a str, &'a Json)>,
    fill: &BTreeSet<String>,
) -> cel::Value {
    let mut map: HashMap<Key, cel::Value> = entries
        .map(|(k, v)| {
            (
                Key::from(k),
                if v.is_null() {
                    cel::Value::String(Arc::new(String::new()))
                } else {
                    to_cel(v)
                },
            )
        })
        .collect();
    for name in fill {
        map.entry(Key::from(name.as_str()))
            .or_insert_with(|| cel::Value::String(Arc::new(String::new())));
    }
    cel::Value::from(map)
}

/// The CEL variables of one context, converted once.
#[derive(Clone)]
pub struct CelVars {
    event: Box<dyn Val>,
    object: Box<dyn Val>,
    previous: Box<dyn Val>,
    owner: Box<dyn Val>,
    associated: Box<dyn Val>,
    now: Box<dyn Val>,
    vars: Box<dyn Val>,
    /// Property names filled with "" in `object`/`previous`.
    filled: Arc<BTreeSet<String>>,
}

impl std::fmt::Debug for CelVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelVars").finish_non_exhaustive()
    }
}

fn boxed(value: cel::Value) -> Box<dyn Val> {
    let fallback: Box<dyn Val> = Box::new(cel::common::types::CelNull);
    Box::<dyn Val>::try_from(value).unwrap_or(fallback)
}

impl CelVars {
    /// Builds the variables, filling `fill` properties and binding the run's `vars`.
    pub(crate) fn build_with(
        ctx: &EvalContext,
        fill: &Arc<BTreeSet<String>>,
        vars: &Map<String, Json>,
    ) -> Self {
        let view = ctx.coerced.get_or_init(|| ctx.view(true));
        let object = map_to_cel(
            ctx.object.properties.iter().map(|(k, v)| (k.as_str(), v)),
            fill,
        );
        let previous = map_to_cel(ctx.previous.iter().map(|(k, v)| (k.as_str(), v)), fill);
        let now = jiff::Timestamp::from_millisecond(ctx.now.as_millis())
            .ok()
            .and_then(|ts| chrono::DateTime::from_timestamp_millis(ts.as_millisecond()))
            .map(|dt| cel::Value::Timestamp(dt.fixed_offset()))
            .unwrap_or(cel::Value::Null);
        Self {
            event: boxed(to_cel(&view["event"])),
            object: boxed(object),
            previous: boxed(previous),
            owner: boxed(to_cel_owner(&view["owner"])),
            associated: boxed(to_cel(&view["associated"])),
            now: boxed(now),
            vars: boxed(to_cel(&Json::Object(vars.clone()))),
            filled: Arc::clone(fill),
        }
    }

    pub(crate) fn covers(&self, properties: &Arc<BTreeSet<String>>) -> bool {
        // Rules of one set share the same Arc: a pointer check on the hot path.
        Arc::ptr_eq(properties, &self.filled) || properties.is_subset(&self.filled)
    }
}

/// Owner ids stay strings (they are ids, not quantities).
fn to_cel_owner(owner: &Json) -> cel::Value {
    let mut map: HashMap<Key, cel::Value> = HashMap::new();
    for field in ["id", "email", "name"] {
        map.insert(
            Key::from(field),
            cel::Value::String(Arc::new(
                owner[field].as_str().unwrap_or_default().to_owned(),
            )),
        );
    }
    let teams = owner["teams"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|v| cel::Value::String(Arc::new(v.as_str().unwrap_or_default().to_owned())))
                .collect()
        })
        .unwrap_or_default();
    map.insert(Key::from("teams"), cel::Value::List(Arc::new(teams)));
    cel::Value::from(map)
}

impl VariableResolver for CelVars {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = match variable {
            "event" => &self.event,
            "object" => &self.object,
            "previous" => &self.previous,
            "owner" => &self.owner,
            "associated" => &self.associated,
            "now" => &self.now,
            "vars" => &self.vars,
            _ => return None,
        };
        Some(CowVal::Borrowed(value.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_numbers_are_coerced() {
        for (text, expected) in [
            ("50", json!(50)),
            ("-3", json!(-3)),
            ("12.5", json!(12.5)),
            ("0", json!(0)),
        ] {
            assert_eq!(coerce_json(&json!(text)), expected, "{text}");
        }
        for text in [
            "007",
            "1e3",
            "12.",
            ".5",
            "",
            "abc",
            "1 000",
            "99999999999999999999",
        ] {
            assert_eq!(coerce_json(&json!(text)), json!(text), "{text}");
        }
        assert_eq!(plural("company"), "companies");
        assert_eq!(plural("deal"), "deals");
    }
}

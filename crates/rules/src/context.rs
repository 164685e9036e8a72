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
use crate::expr::ROOTS;

/// An object's properties by name (values as the CRM sent them), shared: the engine
/// keeps each object's map once and hands the same map to every context that reads the
/// object (as `object`, `previous` or a linked object) instead of a copy each time.
pub type Properties = Arc<BTreeMap<String, Json>>;

/// A CRM object and its current properties.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjectState {
    pub object: ObjectRef,
    #[serde(default)]
    pub properties: Properties,
}

impl ObjectState {
    pub fn new(object: ObjectRef) -> Self {
        Self {
            object,
            properties: Properties::default(),
        }
    }

    pub fn with_properties(object: ObjectRef, properties: BTreeMap<String, Json>) -> Self {
        Self {
            object,
            properties: Arc::new(properties),
        }
    }
}

pub use followthrough_core::Owner;

/// Everything one evaluation may read. Built once per (event, object) and shared by
/// every rule evaluated for it.
#[derive(Debug)]
pub struct EvalContext {
    /// The event being evaluated; `None` when a timer wakes a run.
    pub event: Option<Event>,
    /// The object the rule is about, with its properties after the event.
    pub object: ObjectState,
    /// Properties before the event.
    pub previous: Properties,
    pub owner: Option<Owner>,
    /// Linked objects by type (`contact`, `company`, ...).
    pub associated: BTreeMap<String, Vec<ObjectState>>,
    pub now: Timestamp,
    pub calendar: Calendar,
    converted: Converted,
}

/// The context's roots in CEL and template form, each converted on first use and then
/// shared by every rule evaluated in this context. Most rules read one or two roots
/// (`object.next_step`), and converting all of them (the linked objects with all their
/// properties, say) cost more than evaluating the rules did.
#[derive(Default)]
struct Converted {
    /// The fill (properties read as "" when absent) `cel_object`/`cel_previous` have;
    /// set by the first rule that reads either of them.
    cel_fill: OnceLock<Arc<BTreeSet<String>>>,
    cel_object: OnceLock<Box<dyn Val>>,
    cel_previous: OnceLock<Box<dyn Val>>,
    cel_event: OnceLock<Box<dyn Val>>,
    cel_owner: OnceLock<Box<dyn Val>>,
    cel_associated: OnceLock<Box<dyn Val>>,
    cel_now: OnceLock<Box<dyn Val>>,
    /// Template values by root, in `ROOTS` order.
    template: [OnceLock<minijinja::Value>; ROOTS.len()],
}

impl std::fmt::Debug for Converted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converted").finish_non_exhaustive()
    }
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
        previous: Properties,
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
            converted: Converted::default(),
        }
    }

    /// What the engine and the simulator both gather for a rule: the object after the
    /// event, its owner (named by its `hubspot_owner_id`; known by id only if `owners`
    /// does not know it), and its linked objects grouped by type.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        event: Option<Event>,
        object: ObjectState,
        previous: Properties,
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
            Properties::default(),
            None,
            BTreeMap::new(),
            now,
            Calendar::default(),
        )
    }

    /// The context as templates see it: the `roots` they read, and the run's `vars`.
    pub(crate) fn template_value(
        &self,
        roots: &[&str],
        vars: &Map<String, Json>,
    ) -> minijinja::Value {
        let root_values = roots.iter().filter_map(|root| {
            let value = if *root == "vars" {
                minijinja::Value::from(minijinja::value::Serde(vars))
            } else {
                let at = ROOTS.iter().position(|r| r == root)?;
                self.converted.template[at]
                    .get_or_init(|| {
                        minijinja::Value::from(minijinja::value::Serde(self.root_view(root, false)))
                    })
                    .clone()
            };
            Some((*root, value))
        });
        minijinja::Value::from(root_values.collect::<BTreeMap<_, _>>())
    }

    /// The value at a dotted path in the coerced (CEL) view, or null; for the journal.
    pub fn lookup_path(&self, path: &str) -> Json {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        // Absent properties read as "" in CEL; report them the same way.
        let absent = if matches!(root, "object" | "previous") {
            Json::String(String::new())
        } else {
            Json::Null
        };
        let properties = match root {
            "object" => Some(&self.object.properties),
            "previous" => Some(&self.previous),
            _ => None,
        };
        // A property is looked up alone: viewing the whole object to read one of its
        // properties was most of the cost of journaling a decision.
        let start = match (properties, parts.next()) {
            (Some(properties), Some(name)) => match properties.get(name) {
                Some(value) => coerce_json(value),
                None => return absent,
            },
            (_, first) => {
                let view = self.root_view(root, true);
                match first {
                    None => return view,
                    Some(name) => match view.get(name) {
                        Some(value) => value.clone(),
                        None => return absent,
                    },
                }
            }
        };
        let mut current = &start;
        for part in parts {
            match current.get(part) {
                Some(next) => current = next,
                None => return absent,
            }
        }
        current.clone()
    }

    /// One root of the context as JSON; `coerce` applies the CEL number coercion.
    fn root_view(&self, root: &str, coerce: bool) -> Json {
        match root {
            "event" => self.event_view(coerce),
            "object" => props_view(&self.object.properties, coerce),
            "previous" => props_view(&self.previous, coerce),
            "owner" => {
                let owner = self.owner.clone().unwrap_or_default();
                json!({ "id": owner.id, "email": owner.email, "name": owner.name, "teams": owner.teams })
            }
            "associated" => self.associated_view(coerce),
            "now" => Json::String(self.now.to_rfc3339()),
            "vars" => Json::Object(Map::new()),
            _ => Json::Null,
        }
    }

    /// `associated` as JSON: by type, the first linked object, and by plural, all of them.
    fn associated_view(&self, coerce: bool) -> Json {
        let mut associated = Map::new();
        for (kind, objects) in &self.associated {
            let list: Vec<Json> = objects
                .iter()
                .map(|o| {
                    let mut p = props_view(&o.properties, coerce);
                    p["id"] = Json::String(o.object.id.clone());
                    p
                })
                .collect();
            if let Some(first) = list.first() {
                associated.insert(kind.clone(), first.clone());
            }
            associated.insert(plural(kind), Json::Array(list));
        }
        Json::Object(associated)
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

/// Properties as JSON; `coerce` applies the CEL number coercion.
fn props_view(properties: &BTreeMap<String, Json>, coerce: bool) -> Json {
    Json::Object(
        properties
            .iter()
            .map(|(k, v)| (k.clone(), if coerce { coerce_json(v) } else { v.clone() }))
            .collect(),
    )
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

/// The CEL variables one evaluation sees: the context's roots, converted on first read
/// and kept in the context for the next rule (see [`Converted`]), and the run's `vars`.
pub struct CelVars<'a> {
    ctx: &'a EvalContext,
    /// Property names that read as "" in `object`/`previous` when absent.
    fill: &'a Arc<BTreeSet<String>>,
    vars: &'a Map<String, Json>,
    /// `vars`, converted on first read.
    cel_vars: OnceLock<Box<dyn Val>>,
    /// `object`/`previous` with this rule's fill, when the context's do not cover it.
    own_object: OnceLock<Box<dyn Val>>,
    own_previous: OnceLock<Box<dyn Val>>,
}

impl std::fmt::Debug for CelVars<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelVars").finish_non_exhaustive()
    }
}

fn boxed(value: cel::Value) -> Box<dyn Val> {
    let fallback: Box<dyn Val> = Box::new(cel::common::types::CelNull);
    Box::<dyn Val>::try_from(value).unwrap_or(fallback)
}

impl<'a> CelVars<'a> {
    /// The variables of `ctx` for a rule filling `fill`, with the run's `vars`.
    pub(crate) fn new(
        ctx: &'a EvalContext,
        fill: &'a Arc<BTreeSet<String>>,
        vars: &'a Map<String, Json>,
    ) -> Self {
        Self {
            ctx,
            fill,
            vars,
            cel_vars: OnceLock::new(),
            own_object: OnceLock::new(),
            own_previous: OnceLock::new(),
        }
    }

    /// `object` or `previous`: the context's copy when its fill covers this rule's
    /// (rules of one set share one fill, so this is a pointer check), else our own.
    fn properties(&self, previous: bool) -> &dyn Val {
        let converted = &self.ctx.converted;
        let source = if previous {
            &self.ctx.previous
        } else {
            &self.ctx.object.properties
        };
        let convert = |fill: &BTreeSet<String>| {
            boxed(map_to_cel(
                source.iter().map(|(k, v)| (k.as_str(), v)),
                fill,
            ))
        };
        let shared_fill = converted.cel_fill.get_or_init(|| Arc::clone(self.fill));
        let covered = Arc::ptr_eq(shared_fill, self.fill) || self.fill.is_subset(shared_fill);
        let value = match (covered, previous) {
            (true, false) => converted.cel_object.get_or_init(|| convert(shared_fill)),
            (true, true) => converted.cel_previous.get_or_init(|| convert(shared_fill)),
            (false, false) => self.own_object.get_or_init(|| convert(self.fill)),
            (false, true) => self.own_previous.get_or_init(|| convert(self.fill)),
        };
        value.as_ref()
    }

    fn now(&self) -> cel::Value {
        chrono::DateTime::from_timestamp_millis(self.ctx.now.as_millis())
            .map(|dt| cel::Value::Timestamp(dt.fixed_offset()))
            .unwrap_or(cel::Value::Null)
    }
}

/// Owner ids stay strings (they are ids, not quantities).
fn to_cel_owner(owner: Option<&Owner>) -> cel::Value {
    let owner = owner.cloned().unwrap_or_default();
    let text = |s: String| cel::Value::String(Arc::new(s));
    let mut map: HashMap<Key, cel::Value> = HashMap::new();
    map.insert(Key::from("id"), text(owner.id));
    map.insert(Key::from("email"), text(owner.email));
    map.insert(Key::from("name"), text(owner.name));
    let teams = owner.teams.into_iter().map(text).collect();
    map.insert(Key::from("teams"), cel::Value::List(Arc::new(teams)));
    cel::Value::from(map)
}

impl VariableResolver for CelVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let converted = &self.ctx.converted;
        let cached = |lock: &'b OnceLock<Box<dyn Val>>, convert: &dyn Fn() -> Box<dyn Val>| {
            lock.get_or_init(convert).as_ref()
        };
        let value: &dyn Val = match variable {
            "object" => self.properties(false),
            "previous" => self.properties(true),
            "event" => cached(&converted.cel_event, &|| {
                boxed(to_cel(&self.ctx.event_view(true)))
            }),
            "owner" => cached(&converted.cel_owner, &|| {
                boxed(to_cel_owner(self.ctx.owner.as_ref()))
            }),
            "associated" => cached(&converted.cel_associated, &|| {
                boxed(to_cel(&self.ctx.associated_view(true)))
            }),
            "now" => cached(&converted.cel_now, &|| boxed(self.now())),
            "vars" => cached(&self.cel_vars, &|| {
                boxed(to_cel(&Json::Object(self.vars.clone())))
            }),
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
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

#[cfg(test)]
mod conversion_tests {
    use super::*;
    use crate::expr::Condition;

    fn context() -> EvalContext {
        let contact = ObjectRef::new("hubspot", "contact", "7");
        let object = ObjectState {
            object: ObjectRef::new("hubspot", "deal", "1"),
            properties: BTreeMap::from([
                ("dealname".to_owned(), json!("Acme")),
                ("amount".to_owned(), json!("1200")),
                ("closed".to_owned(), Json::Null),
                ("hubspot_owner_id".to_owned(), json!("42")),
            ])
            .into(),
        };
        let linked = ObjectState {
            object: contact,
            properties: BTreeMap::from([("lead_score".to_owned(), json!("72"))]).into(),
        };
        let owner = Owner {
            id: "42".into(),
            email: "rep@example.com".into(),
            name: "Rae".into(),
            teams: vec!["closers".into()],
        };
        EvalContext::gather(
            None,
            object,
            BTreeMap::from([("amount".to_owned(), json!("900"))]).into(),
            |id| (id == "42").then(|| owner.clone()),
            [linked],
            Timestamp::from_millis(1_764_324_000_000),
            Calendar::default(),
        )
    }

    fn holds(condition: &str, ctx: &EvalContext) -> bool {
        let condition = Condition::compile(condition).expect("compiles");
        let fill = Arc::new(condition.properties.clone());
        condition
            .eval_bool(&CelVars::new(ctx, &fill, &Map::new()))
            .expect("evaluates")
    }

    #[test]
    fn each_rule_reads_its_own_absent_properties_as_empty_whichever_converted_first() {
        let ctx = context();
        // The first rule converts `object` with its fill; the second fills another name.
        assert!(holds(
            r#"object.next_step == "" && object.amount > 1000"#,
            &ctx
        ));
        assert!(holds(
            r#"object.stage == "" && previous.amount == 900"#,
            &ctx
        ));
        assert!(holds(
            r#"object.next_step == "" && previous.next_step == """#,
            &ctx
        ));
    }

    #[test]
    fn every_other_root_reads_as_cel_sees_it_when_first_read() {
        let ctx = context();
        assert!(holds(
            r#"owner.email == "rep@example.com" && "closers" in owner.teams"#,
            &ctx
        ));
        assert!(holds(
            "associated.contact.lead_score >= 50 && size(associated.contacts) == 1",
            &ctx
        ));
        assert!(holds(r#"event.kind == "timer""#, &ctx));
        assert!(holds(r#"now == timestamp("2025-11-28T10:00:00Z")"#, &ctx));
        // A run's vars are its own, not the context's: two runs, two values.
        let condition = Condition::compile("vars.attempts == 2").expect("compiles");
        let fill = Arc::new(BTreeSet::new());
        for (attempts, expected) in [(2, true), (3, false)] {
            let vars = Map::from_iter([("attempts".to_owned(), json!(attempts))]);
            let result = condition.eval_bool(&CelVars::new(&ctx, &fill, &vars));
            assert_eq!(result, Ok(expected), "attempts = {attempts}");
        }
    }

    #[test]
    fn journal_inputs_read_each_path_as_cel_sees_it() {
        let ctx = context();
        for (path, expected) in [
            ("object.amount", json!(1200)),
            ("object.dealname", json!("Acme")),
            ("object.closed", json!("")),
            ("object.next_step", json!("")),
            ("previous.amount", json!(900)),
            ("previous.dealname", json!("")),
            ("owner.email", json!("rep@example.com")),
            ("owner.teams", json!(["closers"])),
            ("associated.contact.lead_score", json!(72)),
            ("associated.contact.id", json!("7")),
            ("associated.companies", Json::Null),
            ("event.kind", json!("timer")),
            ("now", json!("2025-11-28T10:00:00Z")),
            ("vars.attempts", Json::Null),
        ] {
            assert_eq!(ctx.lookup_path(path), expected, "{path}");
        }
        assert_eq!(
            ctx.lookup_path("associated.contacts"),
            json!([{ "id": "7", "lead_score": 72 }])
        );
    }

    #[test]
    fn templates_see_the_roots_they_read_with_values_as_sent() {
        let ctx = context();
        let value = ctx.template_value(&["object", "owner", "vars"], &Map::new());
        let env = minijinja::Environment::new();
        let rendered = env
            .render_str(
                "{{ object.amount }} {{ owner.name }} {{ vars | length }}",
                &value,
            )
            .expect("renders");
        assert_eq!(rendered, "1200 Rae 0");
    }
}

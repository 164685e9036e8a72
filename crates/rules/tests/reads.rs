//! `Rule::reads`: what a rule needs fetched of the owner and of associated objects, from
//! its conditions, templates and recipients, and for the three shipped examples.

use std::collections::BTreeSet;
use std::path::Path;

use followthrough_rules::{Reads, Rule, RuleSet};

fn rule(steps: &str, when: Option<&str>) -> Rule {
    let when = when.map(|w| format!("when: '{w}'\n")).unwrap_or_default();
    let source = format!("id: r\non: {{ object: deal, event: created }}\n{when}steps:\n{steps}");
    RuleSet::parse_rule(Path::new("r.yaml"), &source).unwrap_or_else(|d| panic!("{d:#?}\n{source}"))
}

fn reads(owner: bool, associated: &[&str]) -> Reads {
    Reads {
        owner,
        associated: associated.iter().map(|s| s.to_string()).collect(),
    }
}

const NOTE: &str = "  - create_note: { body: 'hello' }\n";

#[test]
fn a_rule_on_the_object_alone_reads_nothing_more() {
    let r = rule(
        NOTE,
        Some("object.amount > 100 && previous.dealstage != \"\""),
    );
    assert_eq!(r.reads(), &Reads::default());
    assert!(r.reads().is_empty());
}

#[test]
fn conditions_read_the_owner_beyond_its_id() {
    assert_eq!(
        rule(NOTE, Some("owner.id != \"\"")).reads(),
        &Reads::default()
    );
    for when in [
        "\"hunters\" in owner.teams",
        "owner.email.endsWith(\"@example.com\")",
        "has(owner.name)",
        "owner.id != \"\" && owner.name != \"\"",
    ] {
        assert_eq!(rule(NOTE, Some(when)).reads(), &reads(true, &[]), "{when}");
    }
    // In a step's `if` and a `wait_for`'s `when` too.
    let steps = "  - if: 'owner.teams.size() > 0'\n    then:\n      - create_note: { body: x }\n";
    assert!(rule(steps, None).reads().owner);
    let steps = "  - wait_for: { change: amount, when: 'owner.email != \"\"', timeout: 1d }\n";
    assert!(rule(steps, None).reads().owner);
}

#[test]
fn conditions_name_associated_types_in_either_form() {
    let r = rule(
        NOTE,
        Some(
            "associated.contacts.exists(c, c.email != \"\") && associated.company.name != \"\" && associated.companies.size() < 3",
        ),
    );
    assert_eq!(r.reads(), &reads(false, &["company", "contact"]));
    // A comprehension variable is not a root: `c.owner` is not the owner.
    let r = rule(NOTE, Some("associated.deals.all(owner, owner.amount > 0)"));
    assert_eq!(r.reads(), &reads(false, &["deal"]));
}

#[test]
fn templates_read_the_owner_and_associated_objects() {
    let steps = "  - create_note: { body: 'for {{ owner.name }}' }\n";
    assert_eq!(rule(steps, None).reads(), &reads(true, &[]));
    let steps = "  - update: { note_owner: '{{ owner.id }}' }\n";
    assert_eq!(rule(steps, None).reads(), &reads(false, &[]));
    let steps = "  - slack_message: { channel: '#deals', text: '{% for c in associated.contacts %}{{ c.firstname }}{% endfor %} at {{ associated.company.name }}' }\n";
    assert_eq!(
        rule(steps, None).reads(),
        &reads(false, &["company", "contact"])
    );
    // Templates in http bodies, headers and lookups count as well.
    let steps = "  - http: { url: 'https://x.test/{{ object.id }}', headers: { X-Team: '{{ owner.teams | join(\",\") }}' }, body: { who: ['{{ associated.tickets | length }}'] } }\n";
    assert_eq!(rule(steps, None).reads(), &reads(true, &["ticket"]));
    let steps =
        "  - lookup: { url: 'https://x.test/{{ associated.line_items | length }}', into: items }\n";
    assert_eq!(rule(steps, None).reads(), &reads(false, &["line_item"]));
}

#[test]
fn sending_to_or_as_the_owner_reads_the_owner() {
    for (steps, owner) in [
        ("  - slack_dm: { to: owner, text: hi }\n", true),
        ("  - slack_dm: { to: 'U123', text: hi }\n", false),
        ("  - enroll_sequence: { sequence: nurture }\n", true),
        (
            "  - enroll_sequence: { sequence: nurture, sender: owner }\n",
            true,
        ),
        (
            "  - enroll_sequence: { sequence: nurture, sender: a@example.com }\n",
            false,
        ),
        // A task only needs the owner's id.
        ("  - create_task: { subject: Call, owner: owner }\n", false),
        ("  - create_task: { subject: Call }\n", false),
        ("  - assign_owner: { team: hunters }\n", false),
    ] {
        assert_eq!(rule(steps, None).reads().owner, owner, "{steps}");
    }
}

#[test]
fn the_examples_read_what_they_say() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules"));
    let set = RuleSet::load_dir(dir).unwrap();
    let none = BTreeSet::new();
    let get = |id: &str| set.get(id).unwrap().reads().clone();
    // `owner: owner` on a task and `object.hubspot_owner_id`: the id is enough.
    assert_eq!(
        get("new-sql-gets-a-call"),
        Reads {
            owner: false,
            associated: none.clone()
        }
    );
    // `slack_dm to: owner` and `{{ owner.name }}`.
    assert_eq!(
        get("negotiation-needs-next-step"),
        Reads {
            owner: true,
            associated: none.clone()
        }
    );
    // `enroll_sequence` is sent as the owner by default.
    assert_eq!(
        get("lead-gone-cold"),
        Reads {
            owner: true,
            associated: none
        }
    );

    let mut all = Reads::default();
    for rule in set.rules() {
        all.merge(rule.reads());
    }
    assert_eq!(all, reads(true, &[]));
}

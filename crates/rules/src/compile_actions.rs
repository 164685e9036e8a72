//! Compiling the action steps of a rule (`create_task`, `update`, ... `http`): the
//! second half of [`crate::compile`], split off to keep each file readable.

use std::collections::BTreeMap;

use crate::compile::{Compiler, TransposeAll, pos};
use crate::diagnostic::Pos;
use crate::model::{Action, Body, Priority, Recipient};
use crate::raw::{RawStep, S};
use crate::template::Text;

impl Compiler<'_> {
    pub(crate) fn headers(
        &mut self,
        raw: Option<&BTreeMap<String, S<String>>>,
    ) -> Option<Vec<(String, Text)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (name, value) in raw.into_iter().flatten() {
            match self.text(value) {
                Some(t) => out.push((name.clone(), t)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(crate) fn action(&mut self, s: &RawStep, at: Pos) -> Option<Action> {
        if let Some(t) = &s.create_task {
            let t = &t.value;
            let subject = self.text(&t.subject);
            let body = t.body.as_ref().map(|b| self.text(b));
            let priority = match t.priority.as_ref().map(|p| p.value.to_ascii_uppercase()) {
                None => Some(Priority::Medium),
                Some(p) if p == "LOW" => Some(Priority::Low),
                Some(p) if p == "MEDIUM" => Some(Priority::Medium),
                Some(p) if p == "HIGH" => Some(Priority::High),
                Some(p) => {
                    self.sink.error(
                        pos(t.priority.as_ref().unwrap()),
                        format!("unknown priority `{p}`, expected LOW, MEDIUM or HIGH"),
                    );
                    None
                }
            };
            let due_in = t.due_in.as_ref().map(|d| self.delay(d));
            let owner = self.recipient(t.owner.as_ref());
            return Some(Action::CreateTask {
                subject: subject?,
                body: body.transpose_all()?,
                priority: priority?,
                task_type: t.task_type.as_ref().map(|v| v.value.to_ascii_uppercase()),
                due_in: due_in.transpose_all()?,
                owner: owner?,
            });
        }
        if let Some(u) = &s.update {
            if u.value.is_empty() {
                self.sink
                    .error(pos(u), "`update` needs at least one `property: value`");
            }
            let mut properties = Vec::new();
            for (name, value) in &u.value {
                properties.push((name.clone(), self.text(value)?));
            }
            return Some(Action::Update { properties });
        }
        if let Some(r) = &s.revert {
            let property = r.value.trim().to_owned();
            if property.is_empty() {
                self.sink.error(
                    pos(r),
                    "`revert` names the property to restore, e.g. `revert: dealstage`",
                );
                return None;
            }
            self.reverts.push(property.clone());
            return Some(Action::Revert { property });
        }
        if let Some(a) = &s.assign_owner {
            let v = &a.value;
            if v.team.is_some() == v.owner.is_some() {
                self.sink.error(pos(a), "`assign_owner` needs exactly one of `team` (round-robin) or `owner` (an owner id)");
                return None;
            }
            let strategy = v
                .strategy
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_else(|| "round_robin".into());
            if !matches!(strategy.as_str(), "round_robin" | "least_loaded") {
                self.sink.error(
                    pos(v.strategy.as_ref().unwrap()),
                    format!("unknown strategy `{strategy}`, expected round_robin or least_loaded"),
                );
            }
            let owner = v.owner.as_ref().map(|o| self.text(o));
            return Some(Action::AssignOwner {
                team: v.team.as_ref().map(|t| t.value.clone()),
                owner: owner.transpose_all()?,
                strategy,
            });
        }
        if let Some(e) = &s.enroll_sequence {
            let sequence = self.text(&e.value.sequence);
            let sender = self.recipient(e.value.sender.as_ref());
            // The sequence is sent as the owner: the connector needs their email.
            self.sends_to_owner |= sender == Some(Recipient::Owner);
            return Some(Action::EnrollSequence {
                sequence: sequence?,
                sender: sender?,
            });
        }
        if let Some(l) = &s.add_to_list {
            return self
                .text(&l.value.list)
                .map(|list| Action::AddToList { list });
        }
        if let Some(n) = &s.create_note {
            return self
                .text(&n.value.body)
                .map(|body| Action::CreateNote { body });
        }
        if let Some(d) = &s.slack_dm {
            let to = self.recipient(Some(&d.value.to));
            self.sends_to_owner |= to == Some(Recipient::Owner);
            let text = self.text(&d.value.text);
            return Some(Action::SlackDm {
                to: to?,
                text: text?,
            });
        }
        if let Some(m) = &s.slack_message {
            let channel = self.text(&m.value.channel);
            let text = self.text(&m.value.text);
            return Some(Action::SlackMessage {
                channel: channel?,
                text: text?,
            });
        }
        if let Some(h) = &s.http {
            let v = &h.value;
            let method = v
                .method
                .as_ref()
                .map(|m| m.value.to_ascii_uppercase())
                .unwrap_or_else(|| "POST".into());
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                self.sink.error(
                    pos(v.method.as_ref().unwrap()),
                    format!("unknown HTTP method `{method}`"),
                );
            }
            let url = self.text(&v.url);
            let headers = self.headers(v.headers.as_ref());
            let body = v.body.as_ref().map(|b| self.body(&b.value, pos(b)));
            return Some(Action::Http {
                method,
                url: url?,
                headers: headers?,
                body: body.transpose_all()?,
            });
        }
        self.sink.error(at, "unrecognized step");
        None
    }

    fn body(&mut self, value: &serde_json::Value, at: Pos) -> Option<Body> {
        Some(match value {
            serde_json::Value::String(s) => match self.templates.add(s) {
                Ok(t) => Body::Text(t),
                Err(e) => {
                    self.sink.error(at, e.message);
                    return None;
                }
            },
            serde_json::Value::Array(items) => Body::List(
                items
                    .iter()
                    .map(|i| self.body(i, at))
                    .collect::<Option<_>>()?,
            ),
            serde_json::Value::Object(map) => Body::Map(
                map.iter()
                    .map(|(k, v)| self.body(v, at).map(|b| (k.clone(), b)))
                    .collect::<Option<_>>()?,
            ),
            other => Body::Value(other.clone()),
        })
    }
}

//! Rendering an action step into the parameters the connector will execute: every
//! template rendered, "owner" resolved, due times computed. The JSON shapes here are
//! the contract with the connectors and what rule tests match against.

use serde_json::{Map, Value as Json, json};

use crate::context::EvalContext;
use crate::model::{Action, Body, Recipient, Rule};
use crate::run::RunState;
use crate::template::Text;

pub(crate) fn render_action(
    rule: &Rule,
    action: &Action,
    state: &RunState,
    ctx: &EvalContext,
) -> Result<Json, String> {
    // Built on the first template only: the context as a template value is a deep copy
    // of the object, and most actions' texts are literals (`update: {done: "yes"}`).
    let tpl = std::cell::OnceCell::new();
    let render = |text: &Text| match text {
        Text::Literal(s) => Ok(s.clone()),
        Text::Template { .. } => rule.templates.render(
            text,
            tpl.get_or_init(|| ctx.template_value(rule.templates.roots(), &state.vars)),
        ),
    };
    let owner = ctx.owner.clone().unwrap_or_default();
    let owner_id = || {
        if owner.id.is_empty() {
            Json::Null
        } else {
            Json::String(owner.id.clone())
        }
    };
    let object = state.object.to_string();
    Ok(match action {
        Action::CreateTask {
            subject,
            body,
            priority,
            task_type,
            due_in,
            owner: to,
        } => {
            let mut params = json!({
                "subject": render(subject)?,
                "priority": priority,
                "owner_id": match to { Recipient::Owner => owner_id(), Recipient::Text(t) => Json::String(render(t)?) },
                "associations": [object],
            });
            if let Some(body) = body {
                params["body"] = Json::String(render(body)?);
            }
            if let Some(kind) = task_type {
                params["type"] = Json::String(kind.clone());
            }
            if let Some(delay) = due_in {
                let due = ctx.calendar.add(ctx.now, delay);
                params["due_at"] = Json::String(due.to_rfc3339());
                params["due_at_ms"] = json!(due.as_millis());
            }
            params
        }
        Action::Update { properties } => {
            let mut map = Map::new();
            for (name, value) in properties {
                map.insert(name.clone(), Json::String(render(value)?));
            }
            json!({ "properties": map })
        }
        Action::Revert { property } => {
            let value = state.reverts.get(property).cloned().unwrap_or(Json::Null);
            let current = ctx
                .object
                .properties
                .get(property)
                .cloned()
                .unwrap_or(Json::Null);
            json!({ "property": property, "value": value, "from": current })
        }
        Action::AssignOwner {
            team,
            owner,
            strategy,
        } => match (team, owner) {
            (Some(team), _) => json!({ "team": team, "strategy": strategy }),
            (None, Some(owner)) => json!({ "owner_id": render(owner)? }),
            (None, None) => return Err("assign_owner without team or owner".into()),
        },
        Action::EnrollSequence { sequence, sender } => json!({
            "sequence": render(sequence)?,
            "sender": match sender { Recipient::Owner => json!({ "owner_id": owner_id(), "email": owner.email }), Recipient::Text(t) => json!({ "email": render(t)? }) },
        }),
        Action::AddToList { list } => json!({ "list": render(list)? }),
        Action::CreateNote { body } => json!({ "body": render(body)?, "associations": [object] }),
        Action::SlackDm { to, text } => {
            let to = match to {
                Recipient::Owner if owner.email.is_empty() => {
                    return Err("slack_dm to owner: the object has no owner with an email".into());
                }
                Recipient::Owner => owner.email.clone(),
                Recipient::Text(t) => render(t)?,
            };
            json!({ "to": to, "text": render(text)? })
        }
        Action::SlackMessage { channel, text } => {
            json!({ "channel": render(channel)?, "text": render(text)? })
        }
        Action::Http {
            method,
            url,
            headers,
            body,
        } => {
            let mut rendered_headers = Map::new();
            for (name, value) in headers {
                rendered_headers.insert(name.clone(), Json::String(render(value)?));
            }
            let body = match body {
                Some(body) => render_body(body, &render)?,
                None => Json::Null,
            };
            json!({ "method": method, "url": render(url)?, "headers": rendered_headers, "body": body })
        }
    })
}

fn render_body(
    body: &Body,
    render: &dyn Fn(&Text) -> Result<String, String>,
) -> Result<Json, String> {
    Ok(match body {
        Body::Value(v) => v.clone(),
        Body::Text(t) => Json::String(render(t)?),
        Body::List(items) => Json::Array(
            items
                .iter()
                .map(|i| render_body(i, render))
                .collect::<Result<_, _>>()?,
        ),
        Body::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| render_body(v, render).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

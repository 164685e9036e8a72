//! `revert`: put a property back. `{"property","value","from"}`: `value` is what to
//! restore (when `null`, the value before the current one in the property's history);
//! `from` is the value the rule saw. Safe to repeat: a property already at the target,
//! or changed since the rule saw it, is left alone.

use reqwest::Method;
use serde_json::{Value as Json, json};

use super::read::api_type;
use super::write::{HubSpotConnector, describe, not_hubspot, property_text, terminal};
use crate::{ActionJob, Outcome, Success};

impl HubSpotConnector {
    pub(crate) async fn revert(&self, job: &ActionJob) -> Outcome {
        let Some(property) = job.params.get("property").and_then(Json::as_str) else {
            return terminal("revert needs a `property`");
        };
        if let Some(refusal) = not_hubspot(job) {
            return refusal;
        }
        let kind = api_type(&job.object.object_type);
        let mut url = self.url(&["crm", "v3", "objects", kind, &job.object.id]);
        url.query_pairs_mut()
            .append_pair("properties", property)
            .append_pair("propertiesWithHistory", property);
        let answer = match self.call(Method::GET, url, None).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let record = answer.json();
        let current = record["properties"][property]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let given = job.params.get("value").filter(|v| !v.is_null());
        let target = match given {
            Some(value) => match property_text(value) {
                Some(target) => target,
                None => return terminal("revert: `value` must be a string, number or boolean"),
            },
            None => match previous_value(&record["propertiesWithHistory"][property], &current) {
                Some(target) => target,
                None => {
                    return terminal(format!(
                        "cannot revert {property} of {}: its history holds no value before `{current}`",
                        describe(job)
                    ));
                }
            },
        };
        let done = |summary: String| {
            Outcome::Success(Success {
                status: Some(answer.status.as_u16()),
                summary,
                result: json!({ "object": job.object.to_string(), "property": property, "changed": false }),
            })
        };
        if current == target {
            return done(format!(
                "{property} of {} is already `{target}`",
                describe(job)
            ));
        }
        let seen = job
            .params
            .get("from")
            .filter(|v| !v.is_null())
            .and_then(property_text);
        if let Some(seen) = seen.filter(|seen| *seen != current) {
            return done(format!(
                "{property} of {} not reverted: it changed since the rule saw it (`{seen}`, now `{current}`)",
                describe(job)
            ));
        }
        let summary = format!(
            "{property} of {} reverted from `{current}` to `{target}`",
            describe(job)
        );
        self.patch(job, json!({ property: target }), summary).await
    }
}

/// The newest value in `history` (newest first) older than the current value: the
/// first entry that differs from it.
fn previous_value(history: &Json, current: &str) -> Option<String> {
    let entries = history.as_array()?;
    entries
        .iter()
        .filter_map(|entry| entry["value"].as_str())
        .find(|value| *value != current)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::previous_value;

    #[test]
    fn previous_value_skips_the_current_value_at_the_top() {
        let history = json!([
            {"value": "closedlost"}, {"value": "closedlost"}, {"value": "proposal"}, {"value": "qualified"}
        ]);
        assert_eq!(
            previous_value(&history, "closedlost").as_deref(),
            Some("proposal")
        );
        assert_eq!(previous_value(&json!([{"value": "a"}]), "a"), None);
        assert_eq!(previous_value(&json!(null), "a"), None);
    }
}

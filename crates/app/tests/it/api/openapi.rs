//! The OpenAPI document is valid OpenAPI 3.1, and true: every operation it documents is
//! called with valid parameters and must answer a documented status with a body that
//! fits the documented schema, with no undocumented field. The operations are read from
//! the document, not listed here, so a route or field changed without its
//! documentation fails this test.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Seeded, seeded};

const OAS_3_1_SCHEMA: &str = include_str!("../../fixtures/openapi-3.1-schema-2022-10-07.json");

/// One documented operation.
pub struct Operation {
    /// `GET /api/v1/runs/{run_id}`.
    pub name: String,
    pub method: Method,
    pub path: String,
    /// Needs the bearer token (the document's security applies and is not waived).
    pub secured: bool,
    pub spec: Value,
}

impl Operation {
    /// The path with every `{param}` set to `1`: enough to reach the route's auth.
    pub fn example_path(&self) -> String {
        fill_path(&self.path, |_| "1".to_owned())
    }
}

/// Every operation of the document, in path order.
pub fn operations(document: &Value) -> Vec<Operation> {
    let global = document["security"].as_array().cloned().unwrap_or_default();
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, spec) in item.as_object().expect("a path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let security = spec["security"].as_array().unwrap_or(&global);
            // No requirement, or an empty one (`{}`), means no token is needed.
            let secured = !security.is_empty()
                && security
                    .iter()
                    .all(|requirement| requirement.as_object().is_some_and(|r| !r.is_empty()));
            found.push(Operation {
                name: format!("{method} {path}"),
                method,
                path: path.clone(),
                secured,
                spec: spec.clone(),
            });
        }
    }
    found
}

fn fill_path(path: &str, mut value: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("a closed {param}") + start;
        out.push_str(&rest[..start]);
        out.push_str(&value(&rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_every_operation_answers_as_documented() {
    let seeded = seeded().await;
    // Public: fetched without a token.
    let response = seeded
        .app
        .client
        .get(seeded.app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();

    let oas: Value = serde_json::from_str(OAS_3_1_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&oas).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not valid OpenAPI 3.1: {errors:#?}");
    // And the schema does refuse what is not OpenAPI 3.1.
    let mut older = document.clone();
    older["openapi"] = json!("3.0.3");
    assert!(!validator.is_valid(&older));
    assert!(
        !validator.is_valid(&json!({"openapi": "3.1.0", "paths": {}})),
        "no info"
    );
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearer"]["description"]})
    );

    // The check below is only as good as `strict`: it must refuse a body with a field
    // the document does not list, or without one it requires.
    let probe = jsonschema::validator_for(&strict(
        &json!({"$ref": "#/components/schemas/ErrorBody"}),
        &document,
    ))
    .unwrap();
    assert!(probe.is_valid(&json!({"error": {"code": "c", "message": "m"}})));
    assert!(!probe.is_valid(&json!({"error": {"code": "c", "message": "m", "extra": 1}})));
    assert!(!probe.is_valid(&json!({"error": {"code": "c"}})));

    let operations = operations(&document);
    assert!(operations.len() >= 11, "{} operations", operations.len());
    let mut answered = BTreeMap::new();
    for operation in &operations {
        if operation.secured {
            for status in ["400", "401", "404", "409"] {
                check_error_documented(operation, status);
            }
        }
        let status = call_and_check(&seeded, &document, operation).await;
        answered.insert(operation.name.clone(), status);
    }
    // With valid parameters, everything succeeds.
    for (name, status) in &answered {
        assert!((200..300).contains(status), "{name} answered {status}");
    }
}

/// A documented 4xx must use the shared error schema.
fn check_error_documented(operation: &Operation, status: &str) {
    let response = &operation.spec["responses"][status];
    if response.is_null() {
        assert_ne!(status, "401", "{}: 401 is not documented", operation.name);
        return;
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert_eq!(
        schema["$ref"], "#/components/schemas/ErrorBody",
        "{} {status}",
        operation.name
    );
}

/// Calls the operation with valid values for each documented parameter, and checks the
/// answer against the document. Returns the status.
async fn call_and_check(seeded: &Seeded, document: &Value, operation: &Operation) -> u16 {
    let name = &operation.name;
    let mut query = Vec::new();
    let mut path_values = BTreeMap::new();
    for parameter in operation.spec["parameters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let param = parameter["name"].as_str().unwrap();
        let value = valid_value(seeded, param).unwrap_or_else(|| {
            panic!("{name}: no valid value known for parameter `{param}`; teach valid_value")
        });
        match parameter["in"].as_str().unwrap() {
            "path" => {
                path_values.insert(param.to_owned(), value);
            }
            "query" => query.push((param.to_owned(), value)),
            other => panic!("{name}: parameter `{param}` in {other}"),
        }
    }
    let path = fill_path(&operation.path, |param| {
        path_values
            .get(param)
            .unwrap_or_else(|| panic!("{name}: `{{{param}}}` is not a documented parameter"))
            .clone()
    });
    let mut url = url::Url::parse(&seeded.app.url(&path)).unwrap();
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(&query);
    }
    let mut request = seeded.app.client.request(operation.method.clone(), url);
    if operation.secured {
        request = request.bearer_auth(&seeded.token);
    }
    let body_schema = &operation.spec["requestBody"]["content"]["application/json"]["schema"];
    if !body_schema.is_null() {
        let schema_name = body_schema["$ref"].as_str().unwrap_or_default();
        request = request.json(&valid_body(seeded, schema_name).unwrap_or_else(|| {
            panic!("{name}: no valid body known for `{schema_name}`; teach valid_body")
        }));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    let documented = &operation.spec["responses"][status.to_string()];
    assert!(
        !documented.is_null(),
        "{name} answered {status}, which is not documented: {text}"
    );
    assert!(
        content_type.starts_with("application/json"),
        "{name}: {content_type}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
    let schema = &documented["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{name} {status}: no documented body schema"
    );
    let validator = jsonschema::validator_for(&strict(schema, document))
        .unwrap_or_else(|e| panic!("{name} {status}: the documented schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} {status}: the body does not fit its schema: {errors:#?}\n{body:#}"
    );
    status
}

/// The response schema as a standalone JSON Schema: the document's components beside it
/// (so `#/components/schemas/...` resolves), and every object that lists its properties
/// closed to others and requiring them all: an undocumented field fails, and so does a
/// documented one left out (the API writes `null`, never omits a field).
fn strict(schema: &Value, document: &Value) -> Value {
    let mut components = document["components"].clone();
    if let Some(Value::Object(schemas)) = components.get_mut("schemas") {
        schemas.values_mut().for_each(close_objects);
    }
    let mut schema = schema.clone();
    close_objects(&mut schema);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": components,
    })
}

/// Walks a schema by its keywords (a property may be named like a keyword:
/// `properties` is one of an object's fields).
fn close_objects(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    if let Some(Value::Object(properties)) = map.get("properties") {
        let all: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
        map.insert("required".into(), Value::Array(all));
        map.entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    for (keyword, value) in map.iter_mut() {
        match (keyword.as_str(), value) {
            ("properties", Value::Object(by_name)) => by_name.values_mut().for_each(close_objects),
            ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(each)) => {
                each.iter_mut().for_each(close_objects)
            }
            ("items" | "additionalProperties" | "not" | "propertyNames", value) => {
                close_objects(value)
            }
            _ => {}
        }
    }
}

/// A valid value for a documented parameter, by name.
fn valid_value(seeded: &Seeded, param: &str) -> Option<String> {
    Some(match param {
        "object" => "hubspot:contact:501".to_owned(),
        "run_id" => seeded.waiting_run.clone(),
        "id" => seeded.letters[0].to_string(),
        "q" => super::EMAIL.to_owned(),
        "limit" => "10".to_owned(),
        "rule" => "lead-gone-cold".to_owned(),
        "status" => "active".to_owned(),
        "before" => "run_ZZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
        "include_replayed" => "true".to_owned(),
        "after" => "0".to_owned(),
        _ => return None,
    })
}

/// A valid request body, by the name of its documented schema.
fn valid_body(seeded: &Seeded, schema_ref: &str) -> Option<Value> {
    let name = schema_ref.rsplit('/').next()?;
    Some(match name {
        // The second letter: the first is replayed by its own route.
        "ReplayRequest" => json!({ "ids": [seeded.letters[1]] }),
        _ => return None,
    })
}

//! The `http` action: a call to any HTTP API a rule names ([`HttpConnector`]), and the
//! GET that `lookup` steps reuse ([`HttpConnector::get_json`]).
//!
//! The URL comes from a template, so it is untrusted: only http and https, never a
//! redirect followed, and never an internal address (see [`guard`]) unless its host is
//! in `allowed_hosts`. Messages name the method and host only; paths and queries often
//! carry tokens.

pub mod guard;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use serde_json::{Value as Json, json};
use url::Url;

use crate::{ActionJob, Connector, Failure, Outcome, Repeat, Success};
use guard::{AllowedHosts, GuardedResolver, Refused};
use wire::Scrub;

/// How the HTTP connector behaves.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Bounds each request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Bounds connecting alone (a connect that times out sent nothing: a plain retry).
    pub connect_timeout: Duration,
    /// Hosts the SSRF guard lets through, as the URL writes them: `hooks.internal`,
    /// `127.0.0.1`, `[::1]`. Empty in production unless an internal API is meant.
    pub allowed_hosts: Vec<String>,
    /// The most of an answer [`HttpConnector::get_json`] reads.
    pub max_response_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
            max_response_bytes: 1024 * 1024,
        }
    }
}

/// Why an [`HttpConnector`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct HttpConfigError(String);

/// Why a [`HttpConnector::get_json`] lookup failed: worth retrying, or not.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupFailure {
    Retry(Failure),
    Terminal(Failure),
}

impl LookupFailure {
    pub fn failure(&self) -> &Failure {
        match self {
            LookupFailure::Retry(failure) | LookupFailure::Terminal(failure) => failure,
        }
    }

    /// As a job's outcome (a GET never needs `Indeterminate`: repeating it is harmless).
    pub fn into_outcome(self) -> Outcome {
        match self {
            LookupFailure::Retry(failure) => Outcome::Retry(failure),
            LookupFailure::Terminal(failure) => Outcome::Terminal(failure),
        }
    }
}

/// The `http` connector.
pub struct HttpConnector {
    client: reqwest::Client,
    allowed: Arc<AllowedHosts>,
    max_response_bytes: usize,
}

impl fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnector")
            .field("allowed_hosts", &self.allowed.to_string())
            .finish_non_exhaustive()
    }
}

/// One request, checked and ready to send.
struct Call {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    scrub: Scrub,
}

impl Call {
    /// `POST example.com`: what messages name (never the path or query).
    fn what(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.url.host_str().unwrap_or_default()
        )
    }
}

impl HttpConnector {
    pub fn new(config: HttpConfig) -> Result<Self, HttpConfigError> {
        let allowed = Arc::new(AllowedHosts::new(&config.allowed_hosts));
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of the guard's sight.
            .no_proxy()
            .dns_resolver(GuardedResolver::new(allowed.clone()))
            .user_agent(concat!("followthrough/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| HttpConfigError(error.to_string()))?;
        Ok(Self {
            client,
            allowed,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// GETs `url` and decodes its JSON answer, through the same guard as the `http`
    /// action. Timeouts are retries here: a GET changes nothing.
    pub async fn get_json(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<Json, LookupFailure> {
        let headers: serde_json::Map<String, Json> = headers
            .iter()
            .map(|(name, value)| (name.clone(), Json::String(value.clone())))
            .collect();
        let params = json!({"method": "GET", "url": url, "headers": headers});
        let mut call = parse_call(&params).map_err(LookupFailure::Terminal)?;
        call.headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("application/json"));
        let response = match self.send(&call).await {
            Ok(response) => response,
            Err(Outcome::Terminal(failure)) => return Err(LookupFailure::Terminal(failure)),
            Err(other) => return Err(LookupFailure::Retry(failure_of(other))),
        };
        let status = response.status();
        if !status.is_success() {
            return match self.classify(&call, response).await {
                Outcome::Retry(failure) | Outcome::Indeterminate(failure) => {
                    Err(LookupFailure::Retry(failure))
                }
                other => Err(LookupFailure::Terminal(failure_of(other))),
            };
        }
        let cap = self.max_response_bytes;
        let body = wire::read_capped(response, cap + 1)
            .await
            .map_err(|error| {
                let message = format!(
                    "{}: could not read the answer{}",
                    call.what(),
                    wire::causes(&error)
                );
                LookupFailure::Retry(Failure::new(
                    Some(status.as_u16()),
                    call.scrub.text(&message),
                ))
            })?;
        if body.len() > cap {
            let message = format!("{}: the answer is larger than {cap} bytes", call.what());
            return Err(LookupFailure::Terminal(Failure::new(
                Some(status.as_u16()),
                message,
            )));
        }
        serde_json::from_slice(&body).map_err(|error| {
            let mut failure = Failure::new(
                Some(status.as_u16()),
                format!("{}: the answer is not JSON: {error}", call.what()),
            );
            failure.response = call.scrub.body(&body);
            LookupFailure::Terminal(failure)
        })
    }

    /// Checks the URL and sends; an `Err` is the outcome of a request that got no
    /// answer (or was never sent).
    async fn send(&self, call: &Call) -> Result<reqwest::Response, Outcome> {
        if let Err(refused) = guard::check_url(&call.url, &self.allowed) {
            return Err(refusal(call, &refused));
        }
        let mut request = self
            .client
            .request(call.method.clone(), call.url.clone())
            .headers(call.headers.clone());
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        request
            .send()
            .await
            .map_err(|error| match guard::find_refusal(&error) {
                Some(refused) => refusal(call, &refused),
                None => wire::transport_outcome(&call.what(), &error, &call.scrub),
            })
    }

    /// A non-2xx answer, classified.
    async fn classify(&self, call: &Call, response: reqwest::Response) -> Outcome {
        let status = response.status();
        let headers = response.headers().clone();
        let code = status.as_u16();
        if status.is_redirection() {
            let target = redirect_host(&call.url, &headers);
            let message = format!(
                "{}: answered {code}; redirect not followed: {target}",
                call.what()
            );
            return Outcome::Terminal(Failure::new(Some(code), message));
        }
        let body = wire::read_capped(response, 4 * 1024)
            .await
            .unwrap_or_default();
        let reason = status.canonical_reason().unwrap_or("");
        let message = format!("{}: answered {code} {reason}", call.what());
        let failure = wire::answered(
            code,
            message.trim_end().to_owned(),
            &headers,
            &body,
            &call.scrub,
        );
        match code {
            408 | 425 | 429 | 500..=599 => Outcome::Retry(failure),
            _ => Outcome::Terminal(failure),
        }
    }
}

#[async_trait::async_trait]
impl Connector for HttpConnector {
    fn name(&self) -> &'static str {
        "http"
    }

    /// Per host: each API has its own limits.
    fn bucket(&self, job: &ActionJob) -> String {
        let host = job.params["url"]
            .as_str()
            .and_then(|url| Url::parse(url).ok())
            .and_then(|url| url.host_str().map(str::to_owned));
        format!("http:{}", host.unwrap_or_default())
    }

    /// GET, HEAD, PUT, DELETE and OPTIONS are idempotent by HTTP's definition; a POST
    /// or PATCH to an API we know nothing about may not be.
    fn on_indeterminate(&self, job: &ActionJob) -> Repeat {
        if job.action == "lookup" {
            return Repeat::Safe;
        }
        let method = job.params["method"]
            .as_str()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        match method.as_str() {
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" => Repeat::Safe,
            _ => Repeat::Never,
        }
    }

    async fn execute(&self, job: &ActionJob) -> Outcome {
        if job.action == "lookup" {
            return self.lookup(job).await;
        }
        let call = match parse_call(&job.params) {
            Ok(call) => call,
            Err(failure) => return Outcome::Terminal(failure),
        };
        let response = match self.send(&call).await {
            Ok(response) => response,
            Err(outcome) => return outcome,
        };
        let status = response.status();
        if !status.is_success() {
            return self.classify(&call, response).await;
        }
        Outcome::Success(Success {
            status: Some(status.as_u16()),
            summary: format!("{} answered {}", call.what(), status.as_u16()),
            result: json!({"status": status.as_u16()}),
        })
    }
}

impl HttpConnector {
    /// A `lookup` step's GET (`{"url","headers","into"}`): the answer is kept as the
    /// job's result, `{"value": <the JSON>}`, which the engine hands to the waiting run.
    async fn lookup(&self, job: &ActionJob) -> Outcome {
        let url = job.params["url"].as_str().unwrap_or_default();
        let headers: BTreeMap<String, String> = job.params["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, value)| {
                let text = match value {
                    Json::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (name.clone(), text)
            })
            .collect();
        match self.get_json(url, &headers).await {
            Ok(value) => {
                let host = Url::parse(url)
                    .ok()
                    .and_then(|url| url.host_str().map(str::to_owned))
                    .unwrap_or_default();
                Outcome::Success(Success {
                    status: Some(200),
                    summary: format!("GET {host} answered with JSON"),
                    result: json!({ "value": value }),
                })
            }
            Err(failure) => failure.into_outcome(),
        }
    }
}

/// The rendered `{"method","url","headers","body"}` as a request; a `Failure` (always
/// terminal: the params will not change) when they cannot be one.
fn parse_call(params: &Json) -> Result<Call, Failure> {
    let bad = |message: String| Failure::new(None, message);
    let method_text = params["method"]
        .as_str()
        .unwrap_or("POST")
        .to_ascii_uppercase();
    let method = match method_text.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
            Method::from_bytes(method_text.as_bytes())
                .map_err(|_| bad(format!("bad method {method_text}")))?
        }
        other => return Err(bad(format!("unsupported HTTP method `{other}`"))),
    };
    let url_text = params["url"].as_str().unwrap_or_default();
    let url = Url::parse(url_text).map_err(|error| bad(format!("invalid URL: {error}")))?;
    let mut headers = HeaderMap::new();
    let mut secrets = Vec::new();
    if let Some(password) = url.password() {
        secrets.push(password.to_owned());
    }
    if let Some(given) = params["headers"].as_object() {
        for (name, value) in given {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("invalid header name `{name}`")))?;
            let text = match value {
                Json::String(text) => text.clone(),
                Json::Null => continue,
                other => other.to_string(),
            };
            let mut value = HeaderValue::from_str(&text)
                .map_err(|_| bad(format!("invalid value for header `{name}`")))?;
            // Header values often are credentials: keep them out of Debug and messages.
            value.set_sensitive(true);
            secrets.push(text.clone());
            if let Some((_, credential)) = text.split_once(' ') {
                secrets.push(credential.to_owned());
            }
            headers.append(header, value);
        }
    }
    let body = match &params["body"] {
        Json::Null => None,
        Json::String(text) => Some(text.clone().into_bytes()),
        other => {
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Some(serde_json::to_vec(other).unwrap_or_default())
        }
    };
    Ok(Call {
        method,
        url,
        headers,
        body,
        scrub: Scrub::new(secrets),
    })
}

/// The guard's refusal as a terminal outcome: repeating it will be refused again.
fn refusal(call: &Call, refused: &Refused) -> Outcome {
    Outcome::Terminal(Failure::new(None, format!("{}: {refused}", call.method)))
}

/// The host a 3xx points at (the request's own host for a relative `Location`).
fn redirect_host(base: &Url, headers: &HeaderMap) -> String {
    let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
        return "no Location given".to_owned();
    };
    match base.join(location) {
        Ok(target) => target
            .host_str()
            .unwrap_or("a URL without a host")
            .to_owned(),
        Err(_) => "an invalid Location".to_owned(),
    }
}

fn failure_of(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Retry(failure) | Outcome::Terminal(failure) | Outcome::Indeterminate(failure) => {
            failure
        }
        Outcome::Success(success) => Failure::new(success.status, success.summary),
    }
}

#[cfg(test)]
mod tests;

//! `[[alert]]` entries: webhooks told about runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Validator;
use super::raw::RawAlert;
use crate::error::Result;

/// What a run can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A step failed (or was skipped because one did).
    Failure,
    /// Every step succeeded or was up to date.
    Success,
    /// A silver expectation or gold audit had failing rows (whatever its action).
    ExpectationFailed,
}

impl AlertEvent {
    /// The name as written in the project file and sent in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Failure => "failure",
            AlertEvent::Success => "success",
            AlertEvent::ExpectationFailed => "expectation_failed",
        }
    }
}

/// A validated `[[alert]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// Name (default `alert-<n>`, n counting from 1).
    pub name: String,
    /// Where the JSON body is POSTed: an `http` or `https` URL.
    pub url: String,
    /// The events it is sent for (default: `failure`).
    pub on: Vec<AlertEvent>,
    /// Headers sent as written.
    pub headers: Vec<(String, String)>,
    /// Headers whose values come from environment variables (name -> variable), read when
    /// the alert is sent; never logged.
    pub headers_env: Vec<(String, String)>,
    /// Retries after a timeout, a connection error, a 429 or a 5xx (default 3).
    pub retries: u32,
    /// The first wait between attempts, doubled each time, plus jitter (default 1s).
    pub backoff: Duration,
    /// How long one attempt may take (default 10s).
    pub timeout: Duration,
}

impl Validator<'_> {
    pub(super) fn alerts(&self, raw: Vec<RawAlert>) -> Result<Vec<AlertConfig>> {
        let mut out: Vec<AlertConfig> = Vec::with_capacity(raw.len());
        for (i, a) in raw.into_iter().enumerate() {
            let url = a.url.get_ref().trim();
            let parsed = url::Url::parse(url)
                .map_err(|e| self.err(&a.url, "alert.url", format!("`{url}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(self.err(
                    &a.url,
                    "alert.url",
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
            for name in a.headers.keys().chain(a.headers_env.keys()) {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(self.err(
                        &a.url,
                        "alert.headers",
                        format!("`{name}` is not a valid header name"),
                    ));
                }
            }
            for (name, value) in &a.headers {
                if reqwest::header::HeaderValue::from_str(value).is_err() {
                    return Err(self.err(
                        &a.url,
                        "alert.headers",
                        format!("the value of `{name}` is not a valid header value"),
                    ));
                }
            }
            let name = a.name.unwrap_or_else(|| format!("alert-{}", i + 1));
            if out.iter().any(|o| o.name == name) {
                return Err(self.err(
                    &a.url,
                    "alert.name",
                    format!("alert `{name}` is defined twice"),
                ));
            }
            let on = a.on.unwrap_or_else(|| vec![AlertEvent::Failure]);
            if on.is_empty() {
                return Err(self.err(&a.url, "alert.on", "names no event"));
            }
            out.push(AlertConfig {
                name,
                url: url.to_string(),
                on,
                headers: a.headers.into_iter().collect(),
                headers_env: a.headers_env.into_iter().collect(),
                retries: a.retries.unwrap_or(3),
                backoff: self
                    .duration(&a.backoff, "alert.backoff")?
                    .unwrap_or(Duration::from_secs(1)),
                timeout: self
                    .duration(&a.timeout, "alert.timeout")?
                    .unwrap_or(Duration::from_secs(10)),
            });
        }
        Ok(out)
    }
}

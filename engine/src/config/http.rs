//! `source = { kind = "http", ... }`: a bronze table fed by a JSON API, paginated,
//! retried, and incremental by a watermark field.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use crate::error::Result;

/// How the records sit in a response body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// One JSON document; `records` points at the array of records in it.
    #[default]
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// How the next page is asked for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request (default).
    None,
    /// `?<param>=<n>` counting from `start` (default `page`, 1), with an optional page size
    /// parameter.
    Page {
        /// The page number parameter.
        #[serde(default = "page_param")]
        param: String,
        /// The first page's number.
        #[serde(default = "one")]
        start: u64,
        /// The page size parameter, if the API takes one.
        size_param: Option<String>,
        /// The page size sent in `size_param`.
        size: Option<u64>,
    },
    /// `?<param>=<offset>&<limit_param>=<limit>`, the offset growing by the records received
    /// (defaults `offset`, `limit`, 100); a page shorter than `limit` is the last.
    Offset {
        /// The offset parameter.
        #[serde(default = "offset_param")]
        param: String,
        /// The page size parameter.
        #[serde(default = "limit_param")]
        limit_param: String,
        /// The page size.
        #[serde(default = "hundred")]
        limit: u64,
    },
    /// `?<param>=<token>` with the token taken from each response at the JSON pointer
    /// `pointer`; no token (missing, null or empty) ends the listing.
    Cursor {
        /// The cursor parameter.
        #[serde(default = "cursor_param")]
        param: String,
        /// Where the next token is in the response body (a JSON pointer, e.g. `/next`).
        pointer: String,
    },
    /// The next page's URL from the `Link: <...>; rel="next"` header.
    Link,
}

fn page_param() -> String {
    "page".into()
}
fn offset_param() -> String {
    "offset".into()
}
fn limit_param() -> String {
    "limit".into()
}
fn cursor_param() -> String {
    "cursor".into()
}
fn one() -> u64 {
    1
}
fn hundred() -> u64 {
    100
}

/// Credentials, from environment variables read when the source is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Authorization: Bearer <$token_env>`.
    Bearer {
        /// The variable holding the token.
        token_env: String,
    },
    /// `Authorization: Basic` with `user` and the password in `password_env`.
    Basic {
        /// User name.
        user: String,
        /// The variable holding the password.
        password_env: String,
    },
}

/// Incremental fetching by a watermark field of the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpIncremental {
    /// The record field whose largest value is the watermark (e.g. `updated_at`).
    pub field: String,
    /// The query parameter the watermark is sent in on the next run (e.g.
    /// `updated_since`); the API must include records equal to it.
    pub param: String,
    /// The value sent on the first run, if any.
    pub initial: Option<String>,
}

/// A validated HTTP source.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSource {
    /// The first page's URL (`http` or `https`).
    pub url: String,
    /// `GET` (default) or `POST`.
    pub method: String,
    /// Query parameters added to every request.
    pub params: Vec<(String, String)>,
    /// Headers sent as written.
    pub headers: Vec<(String, String)>,
    /// Headers whose values come from environment variables (never logged).
    pub headers_env: Vec<(String, String)>,
    /// Credentials.
    pub auth: Option<HttpAuth>,
    /// Body format.
    pub format: HttpFormat,
    /// JSON pointer of the record array in a `json` body (`""`: the body is the array).
    pub records: String,
    /// How pages follow each other.
    pub pagination: Pagination,
    /// Pages fetched at most in one run (default 1000); more is an error, nothing is lost.
    pub max_pages: u64,
    /// Retries of one request after a timeout, a connection error, a 429 or a 5xx
    /// (default 5).
    pub retries: u32,
    /// The first wait between attempts, doubled each time, plus jitter (default `500ms`).
    pub backoff: Duration,
    /// How long one request may take (default `30s`).
    pub timeout: Duration,
    /// Requests per second at most (default: no limit).
    pub rate: Option<f64>,
    /// Fetch only records past the last run's watermark.
    pub incremental: Option<HttpIncremental>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpAuth {
    bearer_env: Option<String>,
    user: Option<String>,
    password_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpIncremental {
    field: String,
    param: String,
    initial: Option<String>,
}

/// `source = { kind = "http", ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    url: String,
    method: Option<String>,
    #[serde(default)]
    params: IndexMap<String, String>,
    #[serde(default)]
    headers: IndexMap<String, String>,
    #[serde(default)]
    headers_env: IndexMap<String, String>,
    auth: Option<RawHttpAuth>,
    #[serde(default)]
    format: HttpFormat,
    records: Option<String>,
    pagination: Option<Pagination>,
    max_pages: Option<u64>,
    retries: Option<u32>,
    backoff: Option<String>,
    timeout: Option<String>,
    rate: Option<f64>,
    incremental: Option<RawHttpIncremental>,
}

impl Validator<'_> {
    /// Validates an HTTP source; errors name `key` and the line of the entry's name.
    pub(super) fn http_source(
        &self,
        at: &Spanned<String>,
        key: &str,
        raw: RawHttp,
    ) -> Result<HttpSource> {
        let bad = |field: &str, msg: String| self.err(at, &format!("{key}.{field}"), msg);
        let url = raw.url.trim().to_string();
        let parsed =
            url::Url::parse(&url).map_err(|e| bad("url", format!("`{url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("url", format!("`{url}` is not an http(s) URL")));
        }
        let method = raw
            .method
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        if !matches!(method.as_str(), "GET" | "POST") {
            return Err(bad("method", format!("`{method}` is not GET or POST")));
        }
        for name in raw.headers.keys().chain(raw.headers_env.keys()) {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(bad(
                    "headers",
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        for (name, value) in &raw.headers {
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(bad(
                    "headers",
                    format!("the value of `{name}` is not a valid header value"),
                ));
            }
        }
        let auth = match raw.auth {
            None => None,
            Some(RawHttpAuth {
                bearer_env: Some(token_env),
                user: None,
                password_env: None,
            }) => Some(HttpAuth::Bearer { token_env }),
            Some(RawHttpAuth {
                bearer_env: None,
                user: Some(user),
                password_env: Some(password_env),
            }) => Some(HttpAuth::Basic { user, password_env }),
            Some(_) => {
                return Err(bad(
                    "auth",
                    "give either `bearer_env`, or `user` and `password_env`".into(),
                ));
            }
        };
        let records = raw.records.unwrap_or_default();
        if !records.is_empty() && !records.starts_with('/') {
            return Err(bad(
                "records",
                format!(
                    "`{records}` is not a JSON pointer (e.g. `/data`, or `` for the whole body)"
                ),
            ));
        }
        if raw.format == HttpFormat::Ndjson && !records.is_empty() {
            return Err(bad(
                "records",
                "an `ndjson` body has no record pointer".into(),
            ));
        }
        let pagination = raw.pagination.unwrap_or(Pagination::None);
        match &pagination {
            Pagination::Cursor { pointer, .. } if !pointer.starts_with('/') => {
                return Err(bad(
                    "pagination.pointer",
                    format!("`{pointer}` is not a JSON pointer (e.g. `/next`)"),
                ));
            }
            Pagination::Offset { limit: 0, .. } => {
                return Err(bad("pagination.limit", "must be at least 1".into()));
            }
            Pagination::Cursor { .. } if raw.format == HttpFormat::Ndjson => {
                return Err(bad(
                    "pagination",
                    "a cursor is read from a JSON body, not NDJSON".into(),
                ));
            }
            _ => {}
        }
        let duration = |v: &Option<String>, field: &str, default: Duration| -> Result<Duration> {
            match v {
                None => Ok(default),
                Some(t) => humantime::parse_duration(t).map_err(|e| bad(field, e.to_string())),
            }
        };
        if let Some(r) = raw.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(bad(
                "rate",
                format!("{r} is not a positive number of requests per second"),
            ));
        }
        let max_pages = raw.max_pages.unwrap_or(1000);
        if max_pages == 0 {
            return Err(bad("max_pages", "must be at least 1".into()));
        }
        Ok(HttpSource {
            url,
            method,
            params: raw.params.into_iter().collect(),
            headers: raw.headers.into_iter().collect(),
            headers_env: raw.headers_env.into_iter().collect(),
            auth,
            format: raw.format,
            records,
            pagination,
            max_pages,
            retries: raw.retries.unwrap_or(5),
            backoff: duration(&raw.backoff, "backoff", Duration::from_millis(500))?,
            timeout: duration(&raw.timeout, "timeout", Duration::from_secs(30))?,
            rate: raw.rate,
            incremental: raw.incremental.map(|i| HttpIncremental {
                field: i.field,
                param: i.param,
                initial: i.initial,
            }),
        })
    }
}

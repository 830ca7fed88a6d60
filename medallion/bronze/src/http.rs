//! `kind = "http"`: a JSON API -> bronze, page by page. Each request is retried with
//! exponential backoff and jitter on timeouts, connection errors, 429 and 5xx (honouring
//! `Retry-After`) and paced to the configured rate. Records become rows as NDJSON lines do
//! (scalars as text, nested values as JSON text; a record that is not an object is
//! rejected). With `incremental`, the largest value of the watermark field and the records
//! seen at exactly that value are the cursor, stored as a table property in the same commit
//! as the rows: the next run asks for records from that value on (inclusive) and drops the
//! ones it already has, so records at the boundary are neither lost nor duplicated, and a
//! crash before the commit refetches the same records.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use assay_engine::config::{HttpAuth, HttpFormat, HttpSource, Pagination};
use assay_engine::delta::{self, CommitInfo};
use assay_engine::retry;
use assay_engine::step::{StepContext, StepReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{BronzeError, Result};
use crate::formats::{self, Chunk, Reject};
use crate::ingest::{BronzeStep, Sink};

/// The table property holding an HTTP source's cursor.
pub const CURSOR_PROPERTY: &str = "assay.source.cursor";

/// Response bodies larger than this fail the step (a page should be far smaller).
const MAX_BODY_BYTES: usize = 256 << 20;

/// Where the last run stopped: the watermark and the records seen at exactly it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cursor {
    watermark: Option<Value>,
    #[serde(default)]
    seen: BTreeSet<String>,
}

impl Cursor {
    fn read(table: Option<&deltalake::DeltaTable>) -> Cursor {
        table
            .and_then(|t| delta::table_property(t, CURSOR_PROPERTY))
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }
}

/// Orders two watermark values: numbers by value, RFC 3339 timestamps by instant, other
/// text as text.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        _ => {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let (x, y) = (text(a), text(b));
            match (
                chrono::DateTime::parse_from_rfc3339(&x),
                chrono::DateTime::parse_from_rfc3339(&y),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(&y),
            }
        }
    }
}

fn fingerprint(record: &Value) -> String {
    let digest = Sha256::digest(record.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One response.
struct Page {
    url: String,
    link_next: Option<String>,
    body: bytes::Bytes,
}

/// Sends the requests of one source: auth, retries, pacing.
struct Fetcher<'a> {
    source: &'a HttpSource,
    client: reqwest::Client,
    last: Option<Instant>,
}

impl Fetcher<'_> {
    fn err(&self, url: &str, message: impl Into<String>) -> BronzeError {
        BronzeError::Http {
            method: self.source.method.clone(),
            url: url.to_string(),
            message: message.into(),
        }
    }

    fn env(&self, url: &str, var: &str) -> Result<String> {
        std::env::var(var)
            .map_err(|_| self.err(url, format!("environment variable `{var}` is not set")))
    }

    async fn pace(&mut self) {
        if let (Some(rate), Some(last)) = (self.source.rate, self.last) {
            let gap = Duration::from_secs_f64(1.0 / rate);
            let since = last.elapsed();
            if since < gap {
                tokio::time::sleep(gap - since).await;
            }
        }
        self.last = Some(Instant::now());
    }

    async fn get(&mut self, url: &url::Url) -> Result<Page> {
        let shown = url.to_string();
        let method = reqwest::Method::from_bytes(self.source.method.as_bytes())
            .map_err(|e| self.err(&shown, e.to_string()))?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace().await;
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .timeout(self.source.timeout);
            for (k, v) in &self.source.headers {
                req = req.header(k, v);
            }
            for (k, var) in &self.source.headers_env {
                req = req.header(k, self.env(&shown, var)?);
            }
            req = match &self.source.auth {
                None => req,
                Some(HttpAuth::Bearer { token_env }) => {
                    req.bearer_auth(self.env(&shown, token_env)?)
                }
                Some(HttpAuth::Basic { user, password_env }) => {
                    req.basic_auth(user, Some(self.env(&shown, password_env)?))
                }
            };
            let (retry, after, why) = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    let link_next = next_link(resp.headers());
                    if resp
                        .content_length()
                        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
                    {
                        return Err(self.err(&shown, "the response is larger than 256 MiB"));
                    }
                    match resp.bytes().await {
                        Ok(body) if body.len() > MAX_BODY_BYTES => {
                            return Err(self.err(&shown, "the response is larger than 256 MiB"));
                        }
                        Ok(body) => {
                            return Ok(Page {
                                url: shown,
                                link_next,
                                body,
                            });
                        }
                        Err(e) => (true, None, format!("reading the body: {}", plain(&e))),
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let after = retry::retry_after(resp.headers());
                    let retry = retry::retryable(status);
                    (retry, after, format!("answered {status}"))
                }
                // The error's text names the URL, never the headers.
                Err(e) => (true, None, plain(&e)),
            };
            if !retry || attempt > self.source.retries {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(self.err(&shown, format!("{why}{tries}")));
            }
            let wait = after.unwrap_or_else(|| retry::wait_before(self.source.backoff, attempt));
            tracing::warn!(url = %shown, attempt, wait_ms = wait.as_millis() as u64, reason = %why, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// A reqwest error without the URL it repeats (the message names the URL already).
fn plain(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_string());
            }
        }
    }
    None
}

/// The records of a page and, for cursor pagination, the next token.
fn records(source: &HttpSource, page: &Page) -> Result<(Vec<Value>, Option<String>)> {
    let bad = |m: String| BronzeError::Http {
        method: source.method.clone(),
        url: page.url.clone(),
        message: m,
    };
    if source.format == HttpFormat::Ndjson {
        let mut out = Vec::new();
        for line in page.body.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // A line that is not JSON travels as text and is rejected by the NDJSON parser.
            out.push(
                serde_json::from_slice(line)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(line).into_owned())),
            );
        }
        return Ok((out, None));
    }
    let doc: Value = serde_json::from_slice(&page.body).map_err(|e| {
        let start = String::from_utf8_lossy(&page.body[..page.body.len().min(80)]).into_owned();
        bad(format!(
            "the response is not JSON ({e}); it starts with {start:?}"
        ))
    })?;
    let token = match &source.pagination {
        Pagination::Cursor { pointer, .. } => match doc.pointer(pointer) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        },
        _ => None,
    };
    let list = match doc.pointer(&source.records) {
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(bad(format!(
                "`records` = `{}` points at {}, not an array of records",
                source.records,
                formats::ndjson::kind(other)
            )));
        }
        None => {
            return Err(bad(format!(
                "the response has no `{}` (the `records` pointer)",
                source.records
            )));
        }
    };
    Ok((list, token))
}

/// `url` with `param` set to `value` (replacing an earlier value).
fn with_param(url: &url::Url, param: &str, value: &str) -> url::Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, value);
    out
}

/// Filters a page's records by the cursor and advances the next cursor.
struct Watermark<'a> {
    field: &'a str,
    old: Cursor,
    next: Cursor,
}

impl Watermark<'_> {
    /// Whether `record` is new; `Err` with a reason when it cannot be placed.
    fn admit(&mut self, record: &Value) -> std::result::Result<bool, String> {
        let Some(value) = record.get(self.field).filter(|v| !v.is_null()) else {
            return Err(format!("no watermark field `{}`", self.field));
        };
        let print = fingerprint(record);
        if let Some(w) = &self.old.watermark {
            match compare(value, w) {
                Ordering::Less => return Ok(false),
                Ordering::Equal if self.old.seen.contains(&print) => return Ok(false),
                _ => {}
            }
        }
        match self.next.watermark.as_ref().map(|w| compare(value, w)) {
            None | Some(Ordering::Greater) => {
                self.next.watermark = Some(value.clone());
                self.next.seen = BTreeSet::from([print]);
            }
            Some(Ordering::Equal) => {
                self.next.seen.insert(print);
            }
            Some(Ordering::Less) => {}
        }
        Ok(true)
    }
}

/// Turns a page's admitted records into rows (through the NDJSON parser) and writes them.
async fn write_page(
    sink: &mut Sink<'_>,
    page_url: &str,
    records: &[Value],
    mut watermark: Option<&mut Watermark<'_>>,
    report: &mut u64,
) -> Result<()> {
    let mut lines = Vec::with_capacity(records.len() * 64);
    let mut rejects = Vec::new();
    for (i, r) in records.iter().enumerate() {
        *report += 1;
        if let (Some(w), Value::Object(_)) = (watermark.as_deref_mut(), r) {
            match w.admit(r) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(reason) => {
                    rejects.push(Reject {
                        line: Some(i as u64 + 1),
                        raw: Some(r.to_string()),
                        reason,
                    });
                    continue;
                }
            }
        }
        match r {
            // A line that was not JSON (or a bare string): the parser rejects it with its
            // text.
            Value::String(text) => lines.extend_from_slice(text.replace('\n', " ").as_bytes()),
            other => lines.extend_from_slice(other.to_string().as_bytes()),
        }
        lines.push(b'\n');
    }
    if !rejects.is_empty() {
        sink.chunk(
            page_url,
            Chunk {
                batch: None,
                rejects,
                records: 0,
            },
        )
        .await?;
    }
    let mut chunks = Vec::new();
    let parsed = formats::ndjson::parse(lines.as_slice(), |c| {
        chunks.push(c);
        true
    });
    if let Err(e) = parsed {
        return Err(BronzeError::Malformed {
            file: page_url.to_string(),
            line: None,
            reason: format!("{e:?}"),
        });
    }
    for c in chunks {
        sink.chunk(page_url, c).await?;
    }
    Ok(())
}

/// One run of an HTTP source: every page into one commit with the new cursor.
pub(crate) async fn ingest(
    step: &BronzeStep,
    ctx: &StepContext,
    source: &HttpSource,
) -> Result<StepReport> {
    let target = step.target(ctx).await?;
    let old = if ctx.full_refresh {
        Cursor::default()
    } else {
        match &target.table {
            Some(t) => Cursor::read(Some(t)),
            None => Cursor::read(target.rejected_table.as_ref()),
        }
    };
    let client = reqwest::Client::builder()
        .connect_timeout(source.timeout)
        .build()
        .map_err(|e| BronzeError::Http {
            method: source.method.clone(),
            url: source.url.clone(),
            message: e.to_string(),
        })?;
    let mut fetcher = Fetcher {
        source,
        client,
        last: None,
    };
    let mut base =
        url::Url::parse(&source.url).map_err(|e| fetcher.err(&source.url, e.to_string()))?;
    for (k, v) in &source.params {
        base = with_param(&base, k, v);
    }
    let mut watermark = source.incremental.as_ref().map(|inc| Watermark {
        field: &inc.field,
        old: old.clone(),
        next: old.clone(),
    });
    if let Some(inc) = &source.incremental {
        let since = match &old.watermark {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => inc.initial.clone(),
        };
        if let Some(since) = since {
            base = with_param(&base, &inc.param, &since);
        }
    }
    let mut sink = step.sink(ctx, &target)?;
    let mut url = base.clone();
    match &source.pagination {
        Pagination::Page {
            param,
            start,
            size_param,
            size,
        } => {
            url = with_param(&url, param, &start.to_string());
            if let (Some(p), Some(n)) = (size_param, size) {
                url = with_param(&url, p, &n.to_string());
            }
        }
        Pagination::Offset {
            param,
            limit_param,
            limit,
        } => {
            url = with_param(&url, param, "0");
            url = with_param(&url, limit_param, &limit.to_string());
        }
        Pagination::None | Pagination::Cursor { .. } | Pagination::Link => {}
    }
    let mut pages = 0u64;
    let mut records_in = 0u64;
    let (mut page_no, mut offset) = match &source.pagination {
        Pagination::Page { start, .. } => (*start, 0),
        _ => (0, 0),
    };
    loop {
        if pages == source.max_pages {
            return Err(fetcher.err(
                url.as_str(),
                format!(
                    "more than {} pages; raise `max_pages` (nothing was written)",
                    source.max_pages
                ),
            ));
        }
        pages += 1;
        let page = fetcher.get(&url).await?;
        let (list, token) = records(source, &page)?;
        tracing::info!(table = %step.id(), url = %page.url, records = list.len(), "page");
        if list.is_empty() {
            break;
        }
        write_page(
            &mut sink,
            &page.url,
            &list,
            watermark.as_mut(),
            &mut records_in,
        )
        .await?;
        url = match &source.pagination {
            Pagination::None => break,
            Pagination::Page { param, .. } => {
                page_no += 1;
                with_param(&url, param, &page_no.to_string())
            }
            Pagination::Offset { param, limit, .. } => {
                offset += list.len() as u64;
                if (list.len() as u64) < *limit {
                    break;
                }
                with_param(&url, param, &offset.to_string())
            }
            Pagination::Cursor { param, .. } => match token {
                Some(t) => with_param(&url, param, &t),
                None => break,
            },
            Pagination::Link => match page.link_next.as_deref() {
                Some(next) => url.join(next).map_err(|e| {
                    fetcher.err(&page.url, format!("`Link` next `{next}` is not a URL: {e}"))
                })?,
                None => break,
            },
        };
    }
    let next = watermark.map(|w| w.next).unwrap_or_default();
    let cursor = serde_json::to_string(&next).unwrap_or_default();
    let changed = next != old || ctx.full_refresh;
    let wrote = sink.report.rows_written + sink.report.rows_rejected > 0;
    if !wrote && !changed {
        tracing::info!(table = %step.id(), pages, "no new records");
        return Ok(StepReport {
            rows_in: records_in,
            ..StepReport::default()
        });
    }
    let info = CommitInfo::new(Vec::new(), &ctx.run_id)
        .with("assay.batch_id", sink.lineage.batch_id.clone())
        .with("assay.pages", pages)
        .with_table_property(CURSOR_PROPERTY, cursor.clone());
    // Rejects committed by a run that crashed before its main commit carry this cursor.
    let rejects_done = !ctx.full_refresh
        && target
            .rejected_table
            .as_ref()
            .and_then(|t| delta::table_property(t, CURSOR_PROPERTY))
            .is_some_and(|c| c == cursor && source.incremental.is_some());
    let mut report = step.commit(ctx, sink, &target, &info, rejects_done).await?;
    report.rows_in = records_in;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_compare_numbers_instants_and_text() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(compare(&v("9"), &v("10")), Ordering::Less);
        assert_eq!(
            compare(
                &v("\"2026-01-01T10:00:00+01:00\""),
                &v("\"2026-01-01T09:30:00Z\"")
            ),
            Ordering::Less
        );
        assert_eq!(compare(&v("\"b\""), &v("\"a\"")), Ordering::Greater);
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "<https://x/a?page=1>; rel=\"prev\", <https://x/a?page=3>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://x/a?page=3"));
    }

    #[test]
    fn the_boundary_keeps_new_records_with_the_watermark_and_drops_seen_ones() {
        let rec = |id: u32, t: u32| serde_json::json!({"id": id, "t": t});
        let mut w = Watermark {
            field: "t",
            old: Cursor::default(),
            next: Cursor::default(),
        };
        for r in [rec(1, 5), rec(2, 7), rec(3, 7)] {
            assert_eq!(w.admit(&r), Ok(true));
        }
        assert!(w.admit(&serde_json::json!({"id": 4})).is_err());
        let mut again = Watermark {
            field: "t",
            old: w.next.clone(),
            next: w.next.clone(),
        };
        // The API answers `t >= 7`: the two seen at 7 are dropped, a new one at 7 is kept.
        assert_eq!(again.admit(&rec(2, 7)), Ok(false));
        assert_eq!(again.admit(&rec(3, 7)), Ok(false));
        assert_eq!(again.admit(&rec(5, 7)), Ok(true));
        assert_eq!(again.admit(&rec(1, 5)), Ok(false));
        assert_eq!(again.next.seen.len(), 3);
    }
}

//! Answers from the cache: entries stamped with the version they were computed at, ETags
//! that answer `If-None-Match` with 304, `X-Cache: hit|miss|bypass`.

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Gateway;
use crate::cache::Entry;
use crate::error::Result;

pub(crate) use crate::cache::etag;

/// True when the client's `If-None-Match` names `tag`.
pub(crate) fn matches_etag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t == tag || t.strip_prefix("W/") == Some(tag)
        })
}

/// 304 with the ETag.
pub(crate) fn not_modified(tag: &str) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(tag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

fn respond(entry: &Entry, cache: &'static str) -> Response {
    let mut res = (StatusCode::OK, entry.body.clone()).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&entry.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("x-cache", HeaderValue::from_static(cache));
    res
}

/// Answers from the cache when `key` holds an entry computed at `stamp` (304 when the
/// client's `If-None-Match` names the current ETag), or computes, stores and returns.
pub(crate) async fn cached_or<F, Fut>(
    gw: &Gateway,
    table: &str,
    key: &str,
    stamp: &str,
    headers: &HeaderMap,
    compute: F,
) -> Result<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Entry>>,
{
    if headers.contains_key(header::IF_NONE_MATCH) {
        let tag = etag(key, stamp);
        if matches_etag(headers, &tag) {
            return Ok(not_modified(&tag));
        }
    }
    if let Some(entry) = gw.cache.get(table, key, stamp).await {
        return Ok(respond(&entry, "hit"));
    }
    let entry = std::sync::Arc::new(compute().await?);
    gw.cache.put(table, key, entry.clone()).await;
    Ok(respond(&entry, "miss"))
}

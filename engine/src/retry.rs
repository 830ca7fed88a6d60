//! Retrying HTTP requests, shared by the alert webhooks and the HTTP bronze source:
//! exponential backoff with jitter, which answers are worth another try, and `Retry-After`.

use std::time::Duration;

/// The longest `Retry-After` honoured; a server asking for more waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait before attempt `n + 1` (n >= 1): `backoff * 2^(n-1)`, plus up to a quarter of
/// it at random.
pub fn wait_before(backoff: Duration, n: u32) -> Duration {
    let base = backoff.saturating_mul(1 << n.saturating_sub(1).min(16));
    let quarter = (base.as_millis() / 4).max(1) as u64;
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(quarter)) as u64;
    base + Duration::from_millis(jitter)
}

/// Whether an answer with `status` may succeed when asked again: 429 and 5xx.
pub fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The wait a `Retry-After` header asks for (seconds or an HTTP date), at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_retry_after_reads_seconds_and_dates() {
        let w = wait_before(Duration::from_millis(100), 3);
        assert!(
            w >= Duration::from_millis(400) && w <= Duration::from_millis(500),
            "{w:?}"
        );
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        h.insert(reqwest::header::RETRY_AFTER, past.parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert!(retryable(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retryable(reqwest::StatusCode::NOT_FOUND));
    }
}

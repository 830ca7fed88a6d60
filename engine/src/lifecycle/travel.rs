//! Time travel: a table at a version or at a point in time, by the commits' own times.

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;

use crate::delta;
use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::TableId;

/// A version of a table, by number or by time (time travel, restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A version number.
    Version(i64),
    /// The version current at this time (the latest committed at or before it).
    Timestamp(DateTime<Utc>),
}

/// The versions of a table still in its log, oldest first (log cleanup removes old ones).
///
/// # Errors
/// Listing the log failed.
pub async fn versions(lake: &Lake, id: &TableId) -> Result<Vec<i64>> {
    use futures::TryStreamExt;
    let (store, _) = lake.store()?;
    let log = lake.table_path(id).join("_delta_log");
    let entries: Vec<_> = store
        .list(Some(&log))
        .try_collect()
        .await
        .map_err(|e| EngineError::object_store(lake.table_url(id), e))?;
    let mut out: Vec<i64> = entries
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            let digits = name.strip_suffix(".json")?;
            (digits.len() == 20).then(|| digits.parse().ok()).flatten()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Loads version `v` of a table whose latest version is `latest`.
///
/// # Errors
/// [`EngineError::VersionNotFound`]: `v` is out of range, or its commit can no longer be read
/// (log cleanup).
pub(super) async fn load_version(
    lake: &Lake,
    id: &TableId,
    v: i64,
    latest: i64,
) -> Result<DeltaTable> {
    if v < 0 || v > latest {
        return Err(EngineError::VersionNotFound {
            table: id.to_string(),
            message: format!("there is no version {v} (the latest is {latest})"),
        });
    }
    let mut table = lake.handle(id)?;
    table
        .load_version(v as u64)
        .await
        .map_err(|e| EngineError::VersionNotFound {
            table: id.to_string(),
            message: format!("version {v} can no longer be read (log cleanup?): {e}"),
        })?;
    Ok(table)
}

/// The table's state at a version or point in time.
///
/// # Errors
/// The table does not exist, or the version does not (any more).
pub async fn open_at(lake: &Lake, id: &TableId, at: At) -> Result<DeltaTable> {
    match at {
        At::Version(v) => open_version(lake, id, v).await,
        At::Timestamp(t) => open_as_of(lake, id, t).await,
    }
}

/// The table's state at version `v`.
///
/// # Errors
/// The version does not exist or can no longer be read.
pub async fn open_version(lake: &Lake, id: &TableId, v: i64) -> Result<DeltaTable> {
    // One listing of the log for the range, one load of the version asked for.
    let latest = lake.latest_version(id).await?.ok_or_else(|| {
        EngineError::delta(
            id,
            deltalake::DeltaTableError::NotATable(lake.table_url(id).to_string()),
        )
    })?;
    load_version(lake, id, v, latest).await
}

/// The table's state as it was at time `t` (the latest commit made at or before it).
///
/// # Errors
/// `t` is before the table's first commit still in the log.
pub async fn open_as_of(lake: &Lake, id: &TableId, t: DateTime<Utc>) -> Result<DeltaTable> {
    let table = lake.open_existing(id).await?;
    let v = version_at(lake, id, &table, t).await?;
    if v == delta::version(&table) {
        return Ok(table);
    }
    let mut at = table;
    at.load_version(v as u64)
        .await
        .map_err(|e| EngineError::delta(id, e))?;
    Ok(at)
}

/// The latest version of `table` committed at or before `t`, by the commits' own timestamps
/// (`commitInfo.timestamp`; copies of a table keep them, unlike file times): a binary search
/// over the versions in the log.
pub(super) async fn version_at(
    lake: &Lake,
    id: &TableId,
    table: &DeltaTable,
    t: DateTime<Utc>,
) -> Result<i64> {
    let latest = delta::version(table);
    let store = table.log_store();
    let at = |v: i64| {
        let store = store.clone();
        async move {
            let bytes = store.read_commit_entry(v as u64).await.ok().flatten()?;
            let actions = deltalake::logstore::get_actions(v as u64, &bytes).ok()?;
            actions.into_iter().find_map(|a| match a {
                deltalake::kernel::Action::CommitInfo(ci) => ci.timestamp,
                _ => None,
            })
        }
    };
    let wanted = t.timestamp_millis();
    // The oldest commit still in the log: the search starts there.
    let mut lo = versions(lake, id).await?.first().copied().unwrap_or(latest);
    let first = at(lo).await;
    if first.is_none_or(|ts| ts > wanted) {
        let when = first
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(|d| d.to_rfc3339())
            .unwrap_or_else(|| "unknown".into());
        return Err(EngineError::VersionNotFound {
            table: id.to_string(),
            message: format!(
                "no version was committed at or before {} (the oldest readable, {lo}, was committed at {when})",
                t.to_rfc3339()
            ),
        });
    }
    let mut hi = latest;
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        match at(mid).await {
            Some(ts) if ts <= wanted => lo = mid,
            _ => hi = mid - 1,
        }
    }
    Ok(lo)
}

/// Parses a point in time for time travel: RFC 3339 (`2026-11-30T10:00:00Z`), a date-time
/// without zone (UTC), or a date (its midnight, UTC).
///
/// # Errors
/// A text in none of these forms.
pub fn parse_timestamp(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(d.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!(
        "`{text}` is not a timestamp (use RFC 3339, e.g. 2026-11-30T10:00:00Z)"
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    #[test]
    fn timestamps_parse_in_the_documented_forms() {
        let want = "2026-11-30T10:00:00+00:00";
        assert_eq!(
            parse_timestamp("2026-11-30T10:00:00Z")
                .unwrap()
                .to_rfc3339(),
            want
        );
        assert_eq!(
            parse_timestamp("2026-11-30T11:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            want
        );
        assert_eq!(
            parse_timestamp("2026-11-30 10:00:00").unwrap().to_rfc3339(),
            want
        );
        assert_eq!(
            parse_timestamp("2026-11-30").unwrap().to_rfc3339(),
            "2026-11-30T00:00:00+00:00"
        );
        assert!(
            parse_timestamp("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }
}

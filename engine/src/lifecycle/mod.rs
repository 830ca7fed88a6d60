//! Table lifecycle: compaction and Z-ordering, vacuum, restore, time travel, checks and
//! backups to a second store. The Delta operations are delta-rs'; this module chooses their
//! settings, checks the user's request first and reports what changed.

mod clone;
mod verify;

use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use serde::Serialize;

use crate::config::{TableMaintenance, delta_interval};
use crate::delta;
use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::{Layer, TableId};

pub use clone::{CloneReport, MARKER, claim_target, clone_table};
pub use verify::{Problem, VerifyReport, verify};

/// A table's files: how many, how many smaller than a target, and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileStats {
    /// Live data files.
    pub files: usize,
    /// Live data files smaller than the target size.
    pub small: usize,
    /// Bytes of the live data files.
    pub bytes: u64,
    /// Rows (from the files' statistics).
    pub rows: u64,
}

/// The file statistics of a table's loaded snapshot, `target` deciding what is small.
///
/// # Errors
/// The table has no loaded state.
pub fn file_stats(id: &TableId, table: &DeltaTable, target: u64) -> Result<FileStats> {
    let snap = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
    let mut s = FileStats::default();
    for f in snap.log_data().iter() {
        let size = f.size().max(0) as u64;
        s.files += 1;
        s.bytes += size;
        s.rows += f.num_records().unwrap_or(0) as u64;
        if size < target {
            s.small += 1;
        }
    }
    Ok(s)
}

/// What `assay optimize` did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct Optimized {
    /// `layer.name`.
    pub table: String,
    /// The version the compaction committed (`None`: nothing to compact).
    pub version: Option<i64>,
    /// Files and bytes before.
    pub before: FileStats,
    /// Files and bytes after.
    pub after: FileStats,
    /// Files rewritten.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// The Z-order columns (empty: compaction).
    pub zorder_by: Vec<String>,
}

/// Compacts a table's small files to the target size (Z-ordered by `zorder_by` when given) in
/// one commit that changes no data (`dataChange = false`). A table with nothing to compact
/// gets no commit.
///
/// # Errors
/// The table does not exist, a Z-order column is not one of its columns (or a partition
/// column), or the rewrite failed.
pub async fn optimize(lake: &Lake, id: &TableId, settings: &TableMaintenance) -> Result<Optimized> {
    let table = lake.open_existing(id).await?;
    let target = settings.target_file_bytes;
    let before = file_stats(id, &table, target)?;
    let zorder = &settings.zorder_by;
    if !zorder.is_empty() {
        let snap = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
        let schema = snap.schema();
        let partitions = snap.metadata().partition_columns().to_vec();
        for c in zorder {
            if schema.field(c).is_none() {
                return Err(EngineError::Maintenance {
                    table: id.to_string(),
                    message: format!("zorder_by: `{c}` is not a column of the table"),
                });
            }
            if partitions.contains(c) {
                return Err(EngineError::Maintenance {
                    table: id.to_string(),
                    message: format!(
                        "zorder_by: `{c}` is a partition column; every file holds one value of it"
                    ),
                });
            }
        }
    }
    let kind = if zorder.is_empty() {
        OptimizeType::Compact
    } else {
        OptimizeType::ZOrder(zorder.clone())
    };
    let target_size = std::num::NonZeroU64::new(target.max(1)).unwrap_or(std::num::NonZeroU64::MIN);
    // Rewritten files keep the plain string and binary types the table's other writers use
    // (DataFusion would read, and delta-rs then write, view types, which some readers'
    // filters do not take).
    let mut config = datafusion::prelude::SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let session = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let (table, metrics) = table
        .optimize()
        .with_session_state(std::sync::Arc::new(session))
        .with_type(kind)
        .with_target_size(target_size)
        .with_writer_properties(delta::writer_properties())
        .await
        .map_err(|e| EngineError::delta(id, e))?;
    let after = file_stats(id, &table, target)?;
    let committed = metrics.num_files_added > 0 || metrics.num_files_removed > 0;
    Ok(Optimized {
        table: id.to_string(),
        version: committed.then(|| delta::version(&table)),
        before,
        after,
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        zorder_by: zorder.clone(),
    })
}

/// What `assay vacuum` did (or would do) to one table.
#[derive(Debug, Clone, Serialize)]
pub struct Vacuumed {
    /// `layer.name`.
    pub table: String,
    /// Whether files were only listed.
    pub dry_run: bool,
    /// The files deleted (or that would be), relative to the table's directory.
    pub files: Vec<String>,
}

/// Deletes the files of a table that no version within `retain` needs: files removed by
/// commits older than `retain`, and files no commit references (left by failed writes) older
/// than `retain`. `min_retain` is the shortest retention accepted unless `force`.
///
/// # Errors
/// A retention below `min_retain` without `force`; the table does not exist; storage failed.
pub async fn vacuum(
    lake: &Lake,
    id: &TableId,
    retain: Duration,
    min_retain: Duration,
    force: bool,
    dry_run: bool,
) -> Result<Vacuumed> {
    if !force {
        check_retention(retain, min_retain).map_err(|message| EngineError::Maintenance {
            table: id.to_string(),
            message,
        })?;
    }
    let table = lake.open_existing(id).await?;
    let chrono_retain =
        chrono::Duration::from_std(retain).map_err(|_| EngineError::Maintenance {
            table: id.to_string(),
            message: "the retention is too long".into(),
        })?;
    let (_table, metrics) = table
        .vacuum()
        .with_retention_period(chrono_retain)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| EngineError::delta(id, e))?;
    let root = lake.table_path(id);
    let mut files: Vec<String> = metrics
        .files_deleted
        .iter()
        .map(|f| {
            let p = object_store::path::Path::from(f.as_str());
            match p.prefix_match(&root) {
                Some(parts) => parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                None => f.clone(),
            }
        })
        .collect();
    files.sort();
    Ok(Vacuumed {
        table: id.to_string(),
        dry_run,
        files,
    })
}

/// Refuses a vacuum retention shorter than `[maintenance] vacuum_min_retain`.
///
/// # Errors
/// The message to show, naming both durations and `--force`.
pub fn check_retention(retain: Duration, min_retain: Duration) -> std::result::Result<(), String> {
    if retain >= min_retain {
        return Ok(());
    }
    Err(format!(
        "a retention of {} is shorter than `[maintenance] vacuum_min_retain` = {}: time travel \
         and readers still on an older version may need those files (use --force to vacuum anyway)",
        humantime::format_duration(retain),
        humantime::format_duration(min_retain)
    ))
}

/// A version of a table, by number or by time (time travel, restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A version number.
    Version(i64),
    /// The version current at this time (the latest committed at or before it).
    Timestamp(DateTime<Utc>),
}

/// What `assay restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// `layer.name`.
    pub table: String,
    /// The version the table was at.
    pub from: i64,
    /// The version whose state it has again.
    pub restored: i64,
    /// The version of the restore commit (`None` when the table was at that state already).
    pub version: Option<i64>,
    /// Files added back.
    pub files_restored: usize,
    /// Files removed.
    pub files_removed: usize,
}

/// Brings a table back to an earlier version in one new commit (history is kept: the
/// versions in between stay readable).
///
/// # Errors
/// The version does not exist (or its log entry was cleaned up), the timestamp is before the
/// first commit, a file the version needs was vacuumed; nothing is changed then.
pub async fn restore(lake: &Lake, id: &TableId, target: At) -> Result<Restored> {
    let table = lake.open_existing(id).await?;
    let latest = delta::version(&table);
    let wanted = match target {
        At::Version(v) => {
            check_version(id, &table, v).await?;
            v
        }
        At::Timestamp(t) => version_at(id, &table, t).await?,
    };
    if wanted == latest {
        return Ok(Restored {
            table: id.to_string(),
            from: latest,
            restored: wanted,
            version: None,
            files_restored: 0,
            files_removed: 0,
        });
    }
    let (table, metrics) = table
        .restore()
        .with_version_to_restore(wanted as u64)
        .await
        .map_err(|e| EngineError::Maintenance {
            table: id.to_string(),
            message: format!("cannot restore version {wanted}: {e}"),
        })?;
    Ok(Restored {
        table: id.to_string(),
        from: latest,
        restored: wanted,
        version: Some(delta::version(&table)),
        files_restored: metrics.num_restored_file,
        files_removed: metrics.num_removed_file,
    })
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

/// Checks that version `v` of a table can be loaded (it exists and its log is complete).
async fn check_version(id: &TableId, table: &DeltaTable, v: i64) -> Result<()> {
    let latest = delta::version(table);
    if v < 0 || v > latest {
        return Err(EngineError::VersionNotFound {
            table: id.to_string(),
            message: format!("there is no version {v} (the latest is {latest})"),
        });
    }
    let mut probe = table.clone();
    probe
        .load_version(v as u64)
        .await
        .map_err(|e| EngineError::VersionNotFound {
            table: id.to_string(),
            message: format!("version {v} can no longer be read (log cleanup?): {e}"),
        })
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
    let table = lake.open_existing(id).await?;
    if delta::version(&table) == v {
        return Ok(table);
    }
    check_version(id, &table, v).await?;
    let mut at = table;
    at.load_version(v as u64)
        .await
        .map_err(|e| EngineError::delta(id, e))?;
    Ok(at)
}

/// The table's state as it was at time `t` (the latest commit made at or before it).
///
/// # Errors
/// `t` is before the table's first commit still in the log.
pub async fn open_as_of(lake: &Lake, id: &TableId, t: DateTime<Utc>) -> Result<DeltaTable> {
    let table = lake.open_existing(id).await?;
    let v = version_at(id, &table, t).await?;
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
async fn version_at(id: &TableId, table: &DeltaTable, t: DateTime<Utc>) -> Result<i64> {
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
    let mut lo = oldest_commit(id, table).await?.unwrap_or(latest);
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

/// The oldest version whose commit file is still in the table's log.
async fn oldest_commit(id: &TableId, table: &DeltaTable) -> Result<Option<i64>> {
    use futures::TryStreamExt;
    let store = table.log_store();
    let entries: Vec<_> = store
        .object_store(None)
        .list(Some(store.log_path()))
        .try_collect()
        .await
        .map_err(|e| EngineError::object_store(id, e))?;
    Ok(entries
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            let digits = name.strip_suffix(".json")?;
            (digits.len() == 20)
                .then(|| digits.parse::<i64>().ok())
                .flatten()
        })
        .min())
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

/// Sets the table properties that carry `settings` (checkpoint interval, log and deleted
/// file retention) where the table's differ, in one commit; delta-rs and every other Delta
/// writer then checkpoint and clean the log by them after each commit. Returns whether a
/// commit was made.
///
/// # Errors
/// The commit failed.
pub async fn apply_settings(
    lake: &Lake,
    id: &TableId,
    settings: &TableMaintenance,
) -> Result<bool> {
    let Some(table) = lake.open(id).await? else {
        return Ok(false);
    };
    let snap = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
    use deltalake::table::config::TablePropertiesExt;
    let config = snap.table_config();
    let mut changes = std::collections::HashMap::new();
    if config.checkpoint_interval().get() != settings.checkpoint_interval {
        changes.insert(
            "delta.checkpointInterval".to_string(),
            settings.checkpoint_interval.to_string(),
        );
    }
    if config.log_retention_duration() != settings.log_retention {
        changes.insert(
            "delta.logRetentionDuration".to_string(),
            delta_interval(settings.log_retention),
        );
    }
    if config.deleted_file_retention_duration() != settings.vacuum_retain {
        changes.insert(
            "delta.deletedFileRetentionDuration".to_string(),
            delta_interval(settings.vacuum_retain),
        );
    }
    if changes.is_empty() {
        return Ok(false);
    }
    table
        .set_tbl_properties()
        .with_properties(changes)
        .await
        .map_err(|e| EngineError::delta(id, e))?;
    Ok(true)
}

/// Maintenance after a run, for the tables it committed to (with their side tables) and the
/// system tables: their settings become table properties where they differ, and with
/// `auto` a table holding more than `small_files` small files is compacted, then vacuumed
/// with its `vacuum_retain` (when that is not below `vacuum_min_retain`). Returns one line
/// per thing done; failures are logged and reported as lines, never fail the run.
pub async fn after_run(
    lake: &Lake,
    config: &crate::config::MaintenanceConfig,
    summary: &crate::runner::RunSummary,
) -> Vec<String> {
    let written: std::collections::BTreeSet<TableId> = summary
        .steps
        .iter()
        .filter(|s| s.report.version.is_some())
        .map(|s| s.table.clone())
        .collect();
    if written.is_empty() || !config.configured {
        return Vec::new();
    }
    let mut tables: Vec<TableId> = Vec::new();
    let mut layers: Vec<Layer> = written.iter().map(|t| t.layer).collect();
    layers.dedup();
    for layer in layers.into_iter().chain([Layer::System]) {
        match lake.table_names(layer).await {
            Ok(names) => tables.extend(names.into_iter().map(|n| TableId::new(layer, n))),
            Err(e) => {
                tracing::warn!(layer = %layer, error = %e, "listing a layer for maintenance failed")
            }
        }
    }
    let tables = selected(tables, Some(&written))
        .into_iter()
        .chain(
            ["runs", "expectations"]
                .into_iter()
                .map(|n| TableId::new(Layer::System, n)),
        )
        .collect::<std::collections::BTreeSet<_>>();
    let tables: Vec<TableId> = tables.into_iter().collect();
    maintain_tables(lake, config, &tables, false).await
}

/// Maintains `tables`: settings applied where they differ; a table with more than
/// `small_files` small files compacted (with `auto`, or always when `scheduled`), then
/// vacuumed with its `vacuum_retain` when that is not below `vacuum_min_retain`. One line per
/// thing done; a failure is logged and reported as a line.
pub async fn maintain_tables(
    lake: &Lake,
    config: &crate::config::MaintenanceConfig,
    tables: &[TableId],
    scheduled: bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    for id in tables {
        let mut settings = config.for_table(id);
        settings.auto |= scheduled;
        match maintain(lake, id, &settings, config.vacuum_min_retain).await {
            Ok(mut done) => lines.append(&mut done),
            Err(e) => {
                tracing::warn!(table = %id, error = %e, "maintenance failed");
                lines.push(format!("{id}: maintenance failed: {e}"));
            }
        }
    }
    lines
}

/// [`maintain_tables`] for one table.
async fn maintain(
    lake: &Lake,
    id: &TableId,
    settings: &TableMaintenance,
    min_retain: Duration,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if apply_settings(lake, id, settings).await? {
        lines.push(format!(
            "{id}: settings applied (checkpoint every {} commits, log kept {}, removed files kept {})",
            settings.checkpoint_interval,
            humantime::format_duration(settings.log_retention),
            humantime::format_duration(settings.vacuum_retain)
        ));
    }
    if !settings.auto {
        return Ok(lines);
    }
    let Some(table) = lake.open(id).await? else {
        return Ok(lines);
    };
    let stats = file_stats(id, &table, settings.target_file_bytes)?;
    if stats.small <= settings.small_files {
        return Ok(lines);
    }
    let done = optimize(lake, id, settings).await?;
    tracing::info!(table = %id, before = done.before.files, after = done.after.files, "compacted");
    lines.push(format!(
        "{id}: compacted {} files into {} (version {})",
        done.before.files,
        done.after.files,
        done.version.map_or("-".into(), |v| v.to_string())
    ));
    if settings.vacuum_retain >= min_retain {
        let v = vacuum(lake, id, settings.vacuum_retain, min_retain, false, false).await?;
        if !v.files.is_empty() {
            lines.push(format!("{id}: vacuumed {} files", v.files.len()));
        }
    }
    Ok(lines)
}

/// `rel` (a path relative to a table's directory) under the table's directory `root`.
fn under(
    root: &object_store::path::Path,
    rel: &object_store::path::Path,
) -> object_store::path::Path {
    object_store::path::Path::from_iter(root.parts().chain(rel.parts()))
}

/// Every table of the lake (bronze, silver, gold, system), in layer then name order.
///
/// # Errors
/// Listing the store failed.
pub async fn all_tables(lake: &Lake) -> Result<Vec<TableId>> {
    let mut out = Vec::new();
    for layer in Layer::ALL {
        for name in lake.table_names(layer).await? {
            out.push(TableId::new(layer, name));
        }
    }
    Ok(out)
}

/// The tables of `all` that a selection names, with their side tables
/// (`silver.x__quarantine` goes with `silver.x`); all when `selection` is `None`.
pub fn selected(
    all: Vec<TableId>,
    selection: Option<&std::collections::BTreeSet<TableId>>,
) -> Vec<TableId> {
    let Some(sel) = selection else { return all };
    all.into_iter()
        .filter(|id| {
            let base = match id.name.split_once("__") {
                Some((b, _)) => TableId::new(id.layer, b),
                None => id.clone(),
            };
            sel.contains(&base)
        })
        .collect()
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

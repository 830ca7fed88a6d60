//! Table lifecycle: compaction and Z-ordering, vacuum, restore, time travel, checks and
//! backups to a second store. The Delta operations are delta-rs'; this module chooses their
//! settings, checks the user's request first and reports what changed.

mod clone;
mod maintain;
mod travel;
mod verify;

use std::time::Duration;

use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use serde::Serialize;

use crate::config::TableMaintenance;
use crate::delta;
use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::{Layer, TableId};

pub use clone::{CloneReport, MARKER, claim_target, clone_table};
pub use maintain::{after_run, apply_settings, maintain_tables};
pub use travel::{At, open_as_of, open_at, open_version, parse_timestamp, versions};
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
            travel::load_version(lake, id, v, latest).await?;
            v
        }
        At::Timestamp(t) => travel::version_at(lake, id, &table, t).await?,
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

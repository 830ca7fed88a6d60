//! Maintenance by the settings: table properties, compaction past `small_files`, vacuum;
//! after runs and on `task = "maintain"` schedules.

use std::time::Duration;

use crate::config::{TableMaintenance, delta_interval};
use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::{Layer, TableId};

use super::{file_stats, optimize, selected, vacuum};

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

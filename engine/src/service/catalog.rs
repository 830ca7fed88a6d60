//! What the catalog tells a client about a table: columns, version, size, partitions and
//! its recent commits.

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use serde::Serialize;

use super::error::{Result, ServiceError};
use crate::delta;
use crate::table::TableId;

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Arrow data type, e.g. `Int64`, `Decimal128(12, 2)`, `Timestamp(µs, "UTC")`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether the column may hold NULL.
    pub nullable: bool,
}

/// One table as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableSummary {
    /// `layer.name`.
    pub table: String,
    /// The layer (`bronze`, `silver`, `gold`, `_system`).
    pub layer: String,
    /// The name within the layer.
    pub name: String,
    /// The latest version.
    pub version: i64,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Rows, from the files' statistics (`null` when a file has none).
    pub rows: Option<u64>,
    /// Bytes of live data files.
    pub size_bytes: i64,
    /// Live data files.
    pub files: u64,
    /// Partition columns.
    pub partition_columns: Vec<String>,
    /// When the latest commit was made (RFC 3339).
    pub last_commit: Option<String>,
}

/// One commit of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Commit {
    /// The version it made.
    pub version: i64,
    /// When (RFC 3339).
    pub timestamp: Option<String>,
    /// The Delta operation (`WRITE`, `MERGE`, ...).
    pub operation: Option<String>,
    /// Data files added.
    pub files_added: u64,
    /// Data files removed.
    pub files_removed: u64,
    /// Rows the commit wrote (its operation metrics; `null` when not recorded).
    pub rows_added: Option<u64>,
    /// Whether it changed data (`false` for compaction, vacuum, settings).
    pub data_change: bool,
    /// The Assay run that made it, if any.
    pub run_id: Option<String>,
}

/// A table's summary and its latest commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: TableSummary,
    /// The latest commits, newest first.
    pub history: Vec<Commit>,
}

fn millis_to_rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The commit at `version` of a table, from its log entry.
async fn commit(table: &DeltaTable, version: i64) -> Option<Commit> {
    let bytes = table
        .log_store()
        .read_commit_entry(version as u64)
        .await
        .ok()??;
    let actions = deltalake::logstore::get_actions(version as u64, &bytes).ok()?;
    let (mut added, mut removed) = (0u64, 0u64);
    let mut info = None;
    let mut data_change = false;
    let mut added_rows: Option<u64> = None;
    for a in actions {
        match a {
            Action::CommitInfo(c) => info = Some(c),
            Action::Add(a) => {
                added += 1;
                data_change |= a.data_change;
                if a.data_change
                    && let Ok(Some(stats)) = a.get_stats()
                {
                    *added_rows.get_or_insert(0) += stats.num_records.max(0) as u64;
                }
            }
            Action::Remove(r) => {
                removed += 1;
                data_change |= r.data_change;
            }
            _ => {}
        }
    }
    let info = info?;
    let metric = |k: &str| {
        info.info
            .get("operationMetrics")
            .and_then(|m| m.get(k))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    };
    let rows_added = metric("num_added_rows")
        .or_else(|| metric("numOutputRows"))
        .or_else(|| {
            Some(
                metric("num_target_rows_inserted")?
                    + metric("num_target_rows_updated").unwrap_or(0),
            )
        })
        .or(added_rows);
    Some(Commit {
        version,
        timestamp: info.timestamp.and_then(millis_to_rfc3339),
        operation: info.operation.clone(),
        files_added: added,
        files_removed: removed,
        rows_added,
        data_change,
        run_id: info
            .info
            .get("assay.run_id")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

/// The time of the commit at `version` (epoch ms), from its log entry.
pub(crate) async fn commit_time(table: &DeltaTable, version: i64) -> Option<i64> {
    let at = commit(table, version).await?.timestamp?;
    chrono::DateTime::parse_from_rfc3339(&at)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Columns, version, size, partitions and the last commit time of a loaded table.
///
/// # Errors
/// The table has no readable state.
pub(crate) async fn summary(id: &TableId, table: &DeltaTable) -> Result<TableSummary> {
    let schema = delta::arrow_schema(id, table)?;
    let snap = table
        .snapshot()
        .map_err(|e| ServiceError::from(crate::EngineError::delta(id, e)))?;
    let (mut rows, mut size, mut files) = (Some(0u64), 0i64, 0u64);
    for f in snap.log_data().iter() {
        files += 1;
        size += f.size();
        rows = match (rows, f.num_records()) {
            (Some(r), Some(n)) => Some(r + n as u64),
            _ => None,
        };
    }
    let version = delta::version(table);
    let last = commit(table, version).await;
    Ok(TableSummary {
        table: id.to_string(),
        layer: id.layer.as_str().to_string(),
        name: id.name.clone(),
        version,
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnInfo {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
        rows,
        size_bytes: size,
        files,
        partition_columns: snap.metadata().partition_columns().to_vec(),
        last_commit: last.and_then(|c| c.timestamp),
    })
}

/// The table's summary and its last `history` commits, newest first.
///
/// # Errors
/// The table has no readable state.
pub(crate) async fn detail(id: &TableId, table: &DeltaTable, history: i64) -> Result<TableDetail> {
    let summary = summary(id, table).await?;
    let latest = summary.version;
    let mut commits = Vec::new();
    for v in (0.max(latest - history + 1)..=latest).rev() {
        if let Some(c) = commit(table, v).await {
            commits.push(c);
        }
    }
    Ok(TableDetail {
        summary,
        history: commits,
    })
}

/// A page of a table's commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    /// `layer.name`.
    pub table: String,
    /// The latest version.
    pub latest: i64,
    /// The oldest version still in the log (older ones were cleaned up and cannot be read).
    pub oldest: i64,
    /// Commits skipped (newest first).
    pub offset: usize,
    /// Commits asked for.
    pub limit: usize,
    /// The `offset` of the next page; `null` on the last.
    pub next_offset: Option<usize>,
    /// The commits, newest first.
    pub commits: Vec<Commit>,
}

/// Commits `offset..offset + limit` (newest first) of the `versions` still in the log.
///
/// # Errors
/// The table has no readable state.
pub(crate) async fn history(
    id: &TableId,
    table: &DeltaTable,
    versions: &[i64],
    limit: usize,
    offset: usize,
) -> Result<HistoryPage> {
    let latest = delta::version(table);
    let listed: Vec<i64> = versions
        .iter()
        .rev()
        .copied()
        .filter(|v| *v <= latest)
        .collect();
    let page: Vec<i64> = listed.iter().skip(offset).take(limit).copied().collect();
    let commits = futures::future::join_all(page.iter().map(|v| commit(table, *v)))
        .await
        .into_iter()
        .flatten()
        .collect();
    let next = offset.saturating_add(limit);
    Ok(HistoryPage {
        table: id.to_string(),
        latest,
        oldest: listed.last().copied().unwrap_or(latest),
        offset,
        limit,
        next_offset: (next < listed.len()).then_some(next),
        commits,
    })
}

/// The project's DAG as the caller may see it: the tables steps write, and which feeds which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lineage {
    /// The tables, in run order (upstream first).
    pub nodes: Vec<LineageNode>,
    /// `from` is read by the step that writes `to`.
    pub edges: Vec<LineageEdge>,
}

/// A table of the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineageNode {
    /// `layer.name`.
    pub table: String,
    /// Its layer.
    pub layer: String,
}

/// An edge of the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineageEdge {
    /// The upstream table.
    pub from: String,
    /// The table written from it.
    pub to: String,
}

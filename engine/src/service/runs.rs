//! Run history from `_system.runs`, and the run in progress.

use arrow::array::RecordBatch;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use serde::{Deserialize, Serialize};

use super::error::{Result, ServiceError};
use crate::delta;
use crate::history::runs_table;
use crate::launcher::Running;
use crate::storage::Lake;

/// Which runs to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsFilter {
    /// Runs to return at most (1 to 1,000).
    pub limit: usize,
    /// Only runs in this state (`running`, `succeeded`, `failed` or `abandoned`).
    pub status: Option<String>,
}

/// One row of `_system.runs`: a run (`kind = "run"`) or one of its steps (`"step"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRecord {
    /// The run.
    pub run_id: String,
    /// `run` or `step`.
    pub kind: String,
    /// The step's table (`null` for the run row).
    pub step: Option<String>,
    /// The step's layer.
    pub layer: Option<String>,
    /// A run: `running`, `succeeded`, `failed` or `abandoned` (its process died before
    /// recording the end); a step: `succeeded`, `up_to_date`, `failed` or `skipped`.
    pub status: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339); the start while running, the last heartbeat when abandoned.
    pub ended_at: String,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Rows read.
    pub rows_in: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// The version the step committed.
    pub version: Option<i64>,
    /// Attempts made.
    pub attempts: i32,
    /// Why it failed.
    pub error: Option<String>,
}

/// Recent runs and the one in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    /// The run this server is running, if any.
    pub running: Option<Running>,
    /// Runs, newest first: finished ones, and those still `running` or `abandoned`.
    pub runs: Vec<RunRecord>,
}

/// One run with its steps: finished, or still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum RunDetail {
    /// A finished run.
    Finished {
        /// The run row.
        #[serde(flatten)]
        run: RunRecord,
        /// Its steps.
        steps: Vec<RunRecord>,
    },
    /// The run in progress on the server asked (`status: running`).
    Running {
        /// The run.
        #[serde(flatten)]
        run: Running,
        /// Always `running`.
        status: String,
        /// The steps started so far, in the order they started: finished ones as they will
        /// be recorded; running ones with `status: running`, the rows written so far and
        /// `ended_at` now.
        steps: Vec<RunRecord>,
        /// The selected steps not started yet, in run order.
        pending: Vec<String>,
    },
}

/// `_system.runs` rows matching `filter`, newest first.
pub(crate) async fn rows(
    lake: &Lake,
    filter: Expr,
    limit: Option<usize>,
) -> Result<Vec<RunRecord>> {
    let id = runs_table();
    let Some(table) = lake.open(&id).await? else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let batches: Vec<RecordBatch> = delta::scan(&id, &table, &ctx, None)
        .await?
        .filter(filter)?
        .sort(vec![
            col("started_at").sort(false, false),
            col("kind").sort(true, false),
        ])?
        .limit(0, limit)?
        .collect()
        .await?;
    records(&batches)
}

/// `_system.runs` batches as records.
fn records(batches: &[RecordBatch]) -> Result<Vec<RunRecord>> {
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for b in batches {
        w.write(b).map_err(ServiceError::internal)?;
    }
    w.finish().map_err(ServiceError::internal)?;
    let buf = w.into_inner();
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(ServiceError::internal)
}

/// The run rows of `filter`.
pub(crate) async fn list(lake: &Lake, f: &RunsFilter) -> Result<Vec<RunRecord>> {
    if !(1..=1000).contains(&f.limit) {
        return Err(ServiceError::invalid(format!(
            "`limit`: {} is not a number from 1 to 1000",
            f.limit
        )));
    }
    let mut filter = col("kind").eq(lit("run"));
    if let Some(s) = &f.status {
        if !matches!(s.as_str(), "running" | "succeeded" | "failed" | "abandoned") {
            return Err(ServiceError::invalid(format!(
                "`status`: `{s}` is not one of running, succeeded, failed, abandoned"
            )));
        }
        filter = filter.and(col("status").eq(lit(s.clone())));
    }
    rows(lake, filter, Some(f.limit)).await
}

/// One finished run with its steps.
pub(crate) async fn detail(lake: &Lake, run_id: &str) -> Result<RunDetail> {
    let rows = rows(lake, col("run_id").eq(lit(run_id.to_string())), None).await?;
    let (runs, steps): (Vec<RunRecord>, Vec<RunRecord>) =
        rows.into_iter().partition(|r| r.kind == "run");
    let run = runs
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::not_found(format!("no run `{run_id}`")))?;
    Ok(RunDetail::Finished { run, steps })
}

/// Run `run` as far as it got (see [`crate::launcher::Launcher::progress`]).
pub(crate) fn running(run: Running, progress: crate::launcher::Progress) -> Result<RunDetail> {
    let steps = if progress.steps.is_empty() {
        Vec::new()
    } else {
        records(&[crate::history::batch_of(&progress.steps)?])?
    };
    Ok(RunDetail::Running {
        run,
        status: "running".into(),
        steps,
        pending: progress.pending.iter().map(ToString::to_string).collect(),
    })
}

//! Run history: `_system.runs` (one row per run and per step) and `_system.expectations`
//! (one row per run and rule). Both are ordinary Delta tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::prelude::{SessionContext, col, lit};

use crate::delta::{CommitInfo, WriteMode, replace_where, write_frame};
use crate::error::{EngineError, Result};
use crate::runner::RunSummary;
use crate::storage::Lake;
use crate::table::{Layer, TableId};

mod live;

pub use live::{HEARTBEAT_TTL, Pulse, begin};

/// `_system.runs`.
pub fn runs_table() -> TableId {
    TableId::new(Layer::System, "runs")
}

/// `_system.expectations`.
pub fn expectations_table() -> TableId {
    TableId::new(Layer::System, "expectations")
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// One row of `_system.runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The run.
    pub run_id: String,
    /// `run` or `step`.
    pub kind: &'static str,
    /// The step's table (`None` on the run row).
    pub step: Option<String>,
    /// The step's layer.
    pub layer: Option<String>,
    /// `running`, `succeeded`, `failed`, `abandoned` (runs); a step's status.
    pub status: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End (the start while running).
    pub ended_at: DateTime<Utc>,
    /// Rows read.
    pub rows_in: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// The version a step committed.
    pub version: Option<i64>,
    /// Attempts made.
    pub attempts: i32,
    /// Why it failed.
    pub error: Option<String>,
}

impl RunRow {
    /// The run row of a run that has just started: `running`, nothing done yet.
    pub fn running(run_id: &str, started_at: DateTime<Utc>) -> Self {
        RunRow {
            run_id: run_id.to_string(),
            kind: "run",
            step: None,
            layer: None,
            status: "running".into(),
            started_at,
            ended_at: started_at,
            rows_in: 0,
            rows_written: 0,
            rows_rejected: 0,
            version: None,
            attempts: 1,
            error: None,
        }
    }

    /// The row of a finished step of run `run_id`.
    pub fn step(run_id: &str, s: &crate::runner::StepOutcome) -> Self {
        RunRow {
            run_id: run_id.to_string(),
            kind: "step",
            step: Some(s.table.to_string()),
            layer: Some(s.table.layer.as_str().to_string()),
            status: s.status.as_str().to_string(),
            started_at: s.started_at,
            ended_at: s.ended_at,
            rows_in: s.report.rows_in as i64,
            rows_written: s.report.rows_written as i64,
            rows_rejected: s.report.rows_rejected as i64,
            version: s.report.version,
            attempts: s.attempts as i32,
            error: s.error.clone(),
        }
    }
}

/// The schema of `_system.runs`.
pub fn runs_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("step", DataType::Utf8, true),
        Field::new("layer", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("started_at", ts(), false),
        Field::new("ended_at", ts(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("rows_in", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("rows_rejected", DataType::Int64, false),
        Field::new("version", DataType::Int64, true),
        Field::new("attempts", DataType::Int32, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// The rows a finished run leaves in `_system.runs`: one `run` row, then one `step` row per
/// step.
pub fn rows_of(summary: &RunSummary) -> Vec<RunRow> {
    let failed = summary.steps.iter().filter(|s| s.error.is_some()).count();
    let sum = |f: fn(&crate::step::StepReport) -> u64| {
        summary.steps.iter().map(|s| f(&s.report) as i64).sum()
    };
    let mut rows = Vec::with_capacity(summary.steps.len() + 1);
    rows.push(RunRow {
        status: if summary.succeeded() {
            "succeeded"
        } else {
            "failed"
        }
        .into(),
        ended_at: summary.ended_at,
        rows_in: sum(|r| r.rows_in),
        rows_written: sum(|r| r.rows_written),
        rows_rejected: sum(|r| r.rows_rejected),
        error: (failed > 0).then(|| format!("{failed} step(s) failed or skipped")),
        ..RunRow::running(&summary.run_id, summary.started_at)
    });
    rows.extend(
        summary
            .steps
            .iter()
            .map(|s| RunRow::step(&summary.run_id, s)),
    );
    rows
}

/// The rows a run adds to `_system.runs`: one `run` row, then one `step` row per step.
///
/// # Errors
/// Building the batch failed (a bug).
pub fn runs_batch(summary: &RunSummary) -> Result<RecordBatch> {
    batch_of(&rows_of(summary))
}

/// `rows` as one batch of `_system.runs`.
///
/// # Errors
/// Building the batch failed (a bug).
pub fn batch_of(rows: &[RunRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut run_id = StringBuilder::with_capacity(n, n * 36);
    let mut kind = StringBuilder::new();
    let mut step = StringBuilder::new();
    let mut layer = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut started = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut ended = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut duration = Int64Builder::new();
    let mut rows_in = Int64Builder::new();
    let mut rows_written = Int64Builder::new();
    let mut rows_rejected = Int64Builder::new();
    let mut version = Int64Builder::new();
    let mut attempts = Int32Builder::new();
    let mut error = StringBuilder::new();
    for r in rows {
        run_id.append_value(&r.run_id);
        kind.append_value(r.kind);
        step.append_option(r.step.as_deref());
        layer.append_option(r.layer.as_deref());
        status.append_value(&r.status);
        started.append_value(micros(r.started_at));
        ended.append_value(micros(r.ended_at));
        duration.append_value((r.ended_at - r.started_at).num_milliseconds());
        rows_in.append_value(r.rows_in);
        rows_written.append_value(r.rows_written);
        rows_rejected.append_value(r.rows_rejected);
        version.append_option(r.version);
        attempts.append_value(r.attempts);
        error.append_option(r.error.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(run_id.finish()),
        Arc::new(kind.finish()),
        Arc::new(step.finish()),
        Arc::new(layer.finish()),
        Arc::new(status.finish()),
        Arc::new(started.finish()),
        Arc::new(ended.finish()),
        Arc::new(duration.finish()),
        Arc::new(rows_in.finish()),
        Arc::new(rows_written.finish()),
        Arc::new(rows_rejected.finish()),
        Arc::new(version.finish()),
        Arc::new(attempts.finish()),
        Arc::new(error.finish()),
    ];
    RecordBatch::try_new(runs_schema(), columns)
        .map_err(|e| EngineError::query(runs_table(), e.into()))
}

/// The rows a run adds to `_system.expectations`, or `None` when it measured none.
///
/// # Errors
/// Building the batch failed (a bug).
pub fn expectations_batch(summary: &RunSummary) -> Result<Option<RecordBatch>> {
    let outcomes = summary.expectations();
    if outcomes.is_empty() {
        return Ok(None);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("passed", DataType::Int64, false),
        Field::new("failed", DataType::Int64, false),
        Field::new("recorded_at", ts(), false),
    ]));
    let mut run_id = StringBuilder::new();
    let mut table = StringBuilder::new();
    let mut rule = StringBuilder::new();
    let mut action = StringBuilder::new();
    let mut passed = Int64Builder::new();
    let mut failed = Int64Builder::new();
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for o in &outcomes {
        run_id.append_value(&summary.run_id);
        table.append_value(&o.table);
        rule.append_value(&o.rule);
        action.append_value(o.action.as_str());
        passed.append_value(o.passed as i64);
        failed.append_value(o.failed as i64);
        at.append_value(micros(summary.ended_at));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(run_id.finish()),
        Arc::new(table.finish()),
        Arc::new(rule.finish()),
        Arc::new(action.finish()),
        Arc::new(passed.finish()),
        Arc::new(failed.finish()),
        Arc::new(at.finish()),
    ];
    RecordBatch::try_new(schema, columns)
        .map(Some)
        .map_err(|e| EngineError::query(expectations_table(), e.into()))
}

/// Records a finished run: its rows replace its `running` row in `_system.runs` (one commit),
/// and its expectation outcomes are appended to `_system.expectations`.
///
/// # Errors
/// Writing either table failed.
pub async fn record(lake: &Lake, summary: &RunSummary) -> Result<()> {
    count(summary);
    let ctx = SessionContext::new();
    let info = CommitInfo::new(Vec::new(), &summary.run_id);
    let mut attempt = 1;
    loop {
        let df = ctx
            .read_batch(runs_batch(summary)?)
            .map_err(|e| EngineError::query(runs_table(), e))?;
        let written = if lake.latest_version(&runs_table()).await?.is_some() {
            let this_run = col("run_id").eq(lit(summary.run_id.clone()));
            replace_where(lake, &runs_table(), df, this_run, &[], &info).await
        } else {
            write_frame(lake, &runs_table(), df, WriteMode::Append, &[], &info).await
        };
        match written {
            Ok(_) => break,
            // A run that marked this one abandoned (its heartbeat lapsed) committed meanwhile.
            Err(e) if attempt < RECORD_ATTEMPTS => {
                tracing::warn!(run_id = %summary.run_id, error = %e, attempt, "recording the run again");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(batch) = expectations_batch(summary)? {
        let df = ctx
            .read_batch(batch)
            .map_err(|e| EngineError::query(expectations_table(), e))?;
        write_frame(
            lake,
            &expectations_table(),
            df,
            WriteMode::Append,
            &[],
            &info,
        )
        .await?;
    }
    Ok(())
}

/// Commits tried when recording a run's end.
const RECORD_ATTEMPTS: u32 = 3;

/// The run's figures in `/metrics`.
fn count(summary: &RunSummary) {
    let status = if summary.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    metrics::counter!("assay_runs_total", "status" => status).increment(1);
    metrics::histogram!("assay_run_duration_seconds", "status" => status)
        .record((summary.ended_at - summary.started_at).as_seconds_f64());
    for s in &summary.steps {
        let table = s.table.to_string();
        let status = s.status.as_str();
        metrics::counter!("assay_step_runs_total", "table" => table.clone(), "status" => status)
            .increment(1);
        metrics::counter!("assay_step_rows_written_total", "table" => table.clone(), "status" => status)
            .increment(s.report.rows_written);
        metrics::counter!("assay_step_rows_rejected_total", "table" => table.clone(), "status" => status)
            .increment(s.report.rows_rejected);
        metrics::histogram!("assay_step_duration_seconds", "table" => table, "status" => status)
            .record((s.ended_at - s.started_at).as_seconds_f64());
    }
}

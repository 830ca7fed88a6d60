//! Run history: `_system.runs` (one row per run and per step) and `_system.expectations`
//! (one row per run and rule). Both are ordinary Delta tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use crate::delta::{CommitInfo, WriteMode, write_frame};
use crate::error::{EngineError, Result};
use crate::runner::RunSummary;
use crate::storage::Lake;
use crate::table::{Layer, TableId};

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

/// The rows a run adds to `_system.runs`: one `run` row, then one `step` row per step.
///
/// # Errors
/// Building the batch failed (a bug).
pub fn runs_batch(summary: &RunSummary) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
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
    ]));
    let n = summary.steps.len() + 1;
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

    let failed = summary.steps.iter().filter(|s| s.error.is_some()).count();
    run_id.append_value(&summary.run_id);
    kind.append_value("run");
    step.append_null();
    layer.append_null();
    status.append_value(if summary.succeeded() {
        "succeeded"
    } else {
        "failed"
    });
    started.append_value(micros(summary.started_at));
    ended.append_value(micros(summary.ended_at));
    duration.append_value((summary.ended_at - summary.started_at).num_milliseconds());
    rows_in.append_value(summary.steps.iter().map(|s| s.report.rows_in as i64).sum());
    rows_written.append_value(
        summary
            .steps
            .iter()
            .map(|s| s.report.rows_written as i64)
            .sum(),
    );
    rows_rejected.append_value(
        summary
            .steps
            .iter()
            .map(|s| s.report.rows_rejected as i64)
            .sum(),
    );
    version.append_null();
    attempts.append_value(1);
    if failed > 0 {
        error.append_value(format!("{failed} step(s) failed or skipped"));
    } else {
        error.append_null();
    }
    for s in &summary.steps {
        run_id.append_value(&summary.run_id);
        kind.append_value("step");
        step.append_value(s.table.to_string());
        layer.append_value(s.table.layer.as_str());
        status.append_value(s.status.as_str());
        started.append_value(micros(s.started_at));
        ended.append_value(micros(s.ended_at));
        duration.append_value((s.ended_at - s.started_at).num_milliseconds());
        rows_in.append_value(s.report.rows_in as i64);
        rows_written.append_value(s.report.rows_written as i64);
        rows_rejected.append_value(s.report.rows_rejected as i64);
        version.append_option(s.report.version);
        attempts.append_value(s.attempts as i32);
        error.append_option(s.error.as_deref());
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
    RecordBatch::try_new(schema, columns).map_err(|e| EngineError::query(runs_table(), e.into()))
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

/// Appends a run to `_system.runs` and its expectation outcomes to `_system.expectations`
/// (one commit each).
///
/// # Errors
/// Writing either table failed.
pub async fn record(lake: &Lake, summary: &RunSummary) -> Result<()> {
    let status = if summary.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    metrics::counter!("assay_runs_total", "status" => status).increment(1);
    for s in &summary.steps {
        let table = s.table.to_string();
        metrics::counter!("assay_step_runs_total", "table" => table.clone(), "status" => s.status.as_str())
            .increment(1);
        metrics::counter!("assay_step_rows_written_total", "table" => table.clone())
            .increment(s.report.rows_written);
        metrics::counter!("assay_step_rows_rejected_total", "table" => table.clone())
            .increment(s.report.rows_rejected);
        metrics::histogram!("assay_step_duration_seconds", "table" => table)
            .record((s.ended_at - s.started_at).as_seconds_f64());
    }
    let ctx = SessionContext::new();
    let info = CommitInfo::new(Vec::new(), &summary.run_id);
    let runs = runs_batch(summary)?;
    let df = ctx
        .read_batch(runs)
        .map_err(|e| EngineError::query(runs_table(), e))?;
    write_frame(lake, &runs_table(), df, WriteMode::Append, &[], &info).await?;
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

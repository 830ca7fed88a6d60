//! Incremental gold: the model runs over its stream's changes since the last run and the
//! result is applied by strategy — MERGEd by key, appended, or, for `partitions`, used only
//! to find the partitions to recompute, which are then replaced in one commit.

use arrow::array::RecordBatch;
use assay_engine::EngineError;
use assay_engine::config::{Incremental, Strategy};
use assay_engine::delta::{self, CommitInfo, Staged, WriteMode};
use assay_engine::step::{StepContext, StepReport};
use assay_engine::stream::{self, Inputs};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, col, lit};
use deltalake::DeltaTable;

use crate::error::{GoldError, Result};
use crate::model::GoldStep;

/// Touched partitions above this count are replaced by recomputing the whole table (still
/// in one commit), instead of a predicate listing each of them.
const MAX_LISTED_PARTITIONS: usize = 1000;

/// Applies the model's result over the stream's changes to `target`.
///
/// # Errors
/// The stream's changes cannot be followed by this strategy (a full refresh is needed), the
/// model's output changed its columns, or the query or commit failed.
pub(crate) async fn apply(
    step: &GoldStep,
    ctx: &StepContext,
    inc: &Incremental,
    target: DeltaTable,
    inputs: Inputs,
    info: &CommitInfo,
) -> Result<StepReport> {
    let needs_refresh = |v: i64, what: &str| -> GoldError {
        EngineError::NeedsFullRefresh {
            table: step.table.to_string(),
            upstream: inc.stream.to_string(),
            reason: format!(
                "its commit {v} {what}, which strategy `{}` cannot apply",
                inc.strategy.as_str()
            ),
        }
        .into()
    };
    let changes = &inputs.changes;
    match inc.strategy {
        Strategy::Append => {
            if let Some(v) = changes.first_rewrite {
                return Err(needs_refresh(v, "removed or rewrote rows"));
            }
        }
        Strategy::Merge => {
            if let Some(v) = changes.first_delete {
                return Err(needs_refresh(v, "may have deleted rows"));
            }
        }
        Strategy::Partitions => {}
    }
    if changes.added.is_empty() && changes.removed.is_empty() {
        return Ok(StepReport::default());
    }
    if inc.strategy == Strategy::Partitions {
        return partitions(step, ctx, inc, target, inputs, info).await;
    }
    if inc.strategy == Strategy::Merge {
        // Rows a MERGE upstream only copied into new files are not changes.
        stream_changes(step, ctx, inc, &inputs, false).await?;
    }
    let frame = model(step, &inputs).await?;
    check_schema(step, &target, &frame)?;
    let audits = !step.config.audits.is_empty();
    if inc.strategy == Strategy::Merge {
        for k in &inc.unique_key {
            if frame.schema().field_with_unqualified_name(k).is_err() {
                return Err(GoldError::UniqueKey {
                    model: step.table.to_string(),
                    column: k.clone(),
                });
            }
        }
        let mut outcomes = Vec::new();
        if audits {
            // The table once merged: its rows whose key the result does not hold, and
            // the result.
            let current = stream::provider(&step.table, &target, &inputs.session, None).await?;
            let current = inputs.session.read_table(current).map_err(step.q())?;
            let version = merged(current, frame.clone(), &inc.unique_key).map_err(step.q())?;
            outcomes = step.audited(ctx, version).await?;
        }
        ctx.faults.before_commit(&step.table)?;
        let (table, counts) = delta::Merge::new(&step.table, target, frame, &inc.unique_key)
            .commit(info)
            .await?;
        let mut report = crate::model::written(&table, counts.changed());
        report.expectations = outcomes;
        return Ok(report);
    }
    if audits {
        let staged =
            Staged::write(&ctx.lake, &step.table, frame, &step.config.partition_by).await?;
        let current = stream::provider(&step.table, &target, &inputs.session, None).await?;
        let current = inputs.session.read_table(current).map_err(step.q())?;
        let new = staged.frame(&ctx.lake, &inputs.session).await?;
        let version = conform(new, &current)
            .and_then(|n| current.union(n))
            .map_err(step.q())?;
        return step
            .publish(ctx, staged, version, info, WriteMode::Append)
            .await;
    }
    ctx.faults.before_commit(&step.table)?;
    let table = delta::write_frame(
        &ctx.lake,
        &step.table,
        frame,
        WriteMode::Append,
        &step.config.partition_by,
        info,
    )
    .await?;
    let rows = delta::last_commit_added_rows(&table).await;
    Ok(crate::model::written(&table, rows))
}

/// `current` after a MERGE of `result` by `keys`: the rows whose key `result` does not
/// hold, and every row of `result`.
fn merged(
    current: DataFrame,
    result: DataFrame,
    keys: &[String],
) -> datafusion::error::Result<DataFrame> {
    let names: Vec<String> = (0..keys.len()).map(|i| format!("__key_{i}")).collect();
    let result_keys = result.clone().select(
        keys.iter()
            .zip(&names)
            .map(|(k, n)| col(k.as_str()).alias(n))
            .collect::<Vec<_>>(),
    )?;
    let left: Vec<&str> = keys.iter().map(String::as_str).collect();
    let right: Vec<&str> = names.iter().map(String::as_str).collect();
    let kept = current.join(
        result_keys,
        datafusion::common::JoinType::LeftAnti,
        &left,
        &right,
        None,
    )?;
    let result = conform(result, &kept)?;
    kept.union(result)
}

/// The model's SQL planned over the inputs as registered.
async fn model(step: &GoldStep, inputs: &Inputs) -> Result<DataFrame> {
    step.frame(&inputs.session).await
}

fn check_schema(step: &GoldStep, target: &DeltaTable, frame: &DataFrame) -> Result<()> {
    let schema = frame.schema().as_arrow().clone();
    match delta::schema_change(&step.table, target, &schema)? {
        Some(change) => Err(GoldError::SchemaChanged {
            model: step.table.to_string(),
            change,
        }),
        None => Ok(()),
    }
}

/// Registers the stream's changed rows as the stream in the inputs' session, when its
/// commits removed files: the rows of the added files that were not in the removed ones
/// (new or updated values), plus, with `with_old`, the rows of the removed files that are
/// not in the added ones (deleted rows and the old values of updated ones). Rows a rewrite
/// merely copied cancel out. The removed files are read at the version last consumed.
async fn stream_changes(
    step: &GoldStep,
    ctx: &StepContext,
    inc: &Incremental,
    inputs: &Inputs,
    with_old: bool,
) -> Result<()> {
    let changes = &inputs.changes;
    if changes.removed.is_empty() {
        return Ok(());
    }
    let session = &inputs.session;
    let stream_ref = TableReference::partial(inc.stream.layer.as_str(), inc.stream.name.as_str());
    let consumed = inputs.consumed.unwrap_or(-1);
    let mut old = ctx.lake.handle(&inc.stream)?;
    old.load_version(consumed as u64)
        .await
        .map_err(|e| EngineError::NeedsFullRefresh {
            table: step.table.to_string(),
            upstream: inc.stream.to_string(),
            reason: format!("its version {consumed} cannot be read any more ({e})"),
        })?;
    let removed =
        stream::provider(&inc.stream, &old, session, Some(changes.removed.clone())).await?;
    let added = session.table(stream_ref.clone()).await.map_err(step.q())?;
    let removed = session.read_table(removed).map_err(step.q())?;
    let removed = conform(removed, &added).map_err(step.q())?;
    let mut changed = added.clone().except(removed.clone()).map_err(step.q())?;
    if with_old {
        let old_rows = removed.except(added).map_err(step.q())?;
        changed = changed.union(old_rows).map_err(step.q())?;
    }
    session.deregister_table(stream_ref).map_err(step.q())?;
    stream::register(session, &inc.stream, changed.into_view())?;
    Ok(())
}

/// `partitions`: the model over the changed rows (new and old values) names the partitions
/// to recompute; the model over the whole stream, restricted to them, replaces exactly
/// those partitions in one commit.
async fn partitions(
    step: &GoldStep,
    ctx: &StepContext,
    inc: &Incremental,
    target: DeltaTable,
    inputs: Inputs,
    info: &CommitInfo,
) -> Result<StepReport> {
    stream_changes(step, ctx, inc, &inputs, true).await?;
    let session = &inputs.session;
    let partition_by = &step.config.partition_by;
    let changed_model = model(step, &inputs).await?;
    step.check_partitions(&changed_model)?;
    let touched: Vec<RecordBatch> = changed_model
        .select(partition_by.iter().map(col).collect::<Vec<_>>())
        .and_then(|f| f.distinct())
        .map_err(step.q())?
        .collect()
        .await
        .map_err(step.q())?;
    let count: usize = touched.iter().map(RecordBatch::num_rows).sum();
    if count == 0 {
        return Ok(StepReport::default());
    }
    // Now the whole stream, as read.
    let stream_ref = TableReference::partial(inc.stream.layer.as_str(), inc.stream.name.as_str());
    session.deregister_table(stream_ref).map_err(step.q())?;
    let whole = stream::provider(&inc.stream, &inputs.stream_table, session, None).await?;
    stream::register(session, &inc.stream, whole)?;
    let full = model(step, &inputs).await?;
    check_schema(step, &target, &full)?;
    if count > MAX_LISTED_PARTITIONS {
        tracing::info!(model = %step.table, partitions = count, "many partitions touched; recomputing all");
        return step.overwrite(ctx, full, info).await;
    }
    let predicate = partition_predicate(partition_by, &touched).map_err(step.q())?;
    let frame = full.filter(predicate.clone()).map_err(step.q())?;
    let mut outcomes = Vec::new();
    if !step.config.audits.is_empty() {
        // The table once replaced: the partitions kept, and the recomputed ones.
        let current = stream::provider(&step.table, &target, session, None).await?;
        let current = session.read_table(current).map_err(step.q())?;
        let version = current
            .filter(predicate.clone().is_not_true())
            .and_then(|kept| Ok((conform(frame.clone(), &kept)?, kept)))
            .and_then(|(new, kept)| kept.union(new))
            .map_err(step.q())?;
        outcomes = step.audited(ctx, version).await?;
    }
    ctx.faults.before_commit(&step.table)?;
    let table =
        delta::replace_where(&ctx.lake, &step.table, frame, predicate, partition_by, info).await?;
    let rows = delta::last_commit_added_rows(&table).await;
    tracing::info!(model = %step.table, partitions = count, rows, "partitions replaced");
    let mut report = crate::model::written(&table, rows);
    report.expectations = outcomes;
    Ok(report)
}

/// `frame` with the column names and types of `like` (older files of a table may carry
/// types the latest schema widened).
fn conform(frame: DataFrame, like: &DataFrame) -> datafusion::error::Result<DataFrame> {
    let columns: Vec<Expr> = like
        .schema()
        .fields()
        .iter()
        .map(|f| {
            datafusion::logical_expr::cast(col(f.name()), f.data_type().clone()).alias(f.name())
        })
        .collect();
    frame.select(columns)
}

/// `p IN (v, ...)` for one partition column (with `OR p IS NULL` for a NULL value), or an
/// OR of `p1 = v1 AND p2 = v2` for several; the values are those of `touched`.
fn partition_predicate(
    columns: &[String],
    touched: &[RecordBatch],
) -> datafusion::error::Result<Expr> {
    let mut tuples: Vec<Vec<ScalarValue>> = Vec::new();
    for batch in touched {
        for row in 0..batch.num_rows() {
            let mut tuple = Vec::with_capacity(columns.len());
            for c in 0..columns.len() {
                tuple.push(ScalarValue::try_from_array(batch.column(c), row)?);
            }
            tuples.push(tuple);
        }
    }
    let value = |c: &str, v: &ScalarValue| {
        if v.is_null() {
            col(c).is_null()
        } else {
            col(c).eq(lit(v.clone()))
        }
    };
    if let [only] = columns {
        let (nulls, values): (Vec<_>, Vec<_>) = tuples
            .into_iter()
            .filter_map(|mut t| t.pop())
            .partition(ScalarValue::is_null);
        let mut expr = (!values.is_empty())
            .then(|| col(only.as_str()).in_list(values.into_iter().map(lit).collect(), false));
        if !nulls.is_empty() {
            let is_null = col(only.as_str()).is_null();
            expr = Some(match expr {
                Some(e) => e.or(is_null),
                None => is_null,
            });
        }
        return Ok(expr.unwrap_or_else(|| lit(false)));
    }
    Ok(tuples
        .iter()
        .filter_map(|t| {
            columns
                .iter()
                .zip(t)
                .map(|(c, v)| value(c, v))
                .reduce(Expr::and)
        })
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn predicates_list_each_touched_partition() {
        let batch = RecordBatch::try_from_iter(vec![(
            "d",
            Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])) as ArrayRef,
        )])
        .unwrap();
        let p = partition_predicate(&["d".into()], &[batch]).unwrap();
        assert_eq!(
            p.to_string(),
            "d IN ([Utf8(\"a\"), Utf8(\"b\")]) OR d IS NULL"
        );

        let batch = RecordBatch::try_from_iter(vec![
            (
                "y",
                Arc::new(Int64Array::from(vec![2026, 2025])) as ArrayRef,
            ),
            ("m", Arc::new(Int64Array::from(vec![1, 12])) as ArrayRef),
        ])
        .unwrap();
        let p = partition_predicate(&["y".into(), "m".into()], &[batch]).unwrap();
        assert_eq!(
            p.to_string(),
            "y = Int64(2026) AND m = Int64(1) OR y = Int64(2025) AND m = Int64(12)"
        );
    }
}

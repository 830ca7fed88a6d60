//! Audits: a gold model's new version, written but not yet committed, is checked before it
//! is published. A failing `fail` audit keeps the previous version; a `warn` audit is
//! recorded and the version published. Every outcome goes to `_system.expectations`.

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use assay_engine::config::{Action, Audit, Check};
use assay_engine::delta;
use assay_engine::step::{ExpectationOutcome, StepContext};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::{count, max, sum};
use datafusion::logical_expr::{Expr, cast, ident, lit, not, when};
use datafusion::prelude::SessionContext;

use crate::error::{GoldError, Result};
use crate::model::GoldStep;

/// What the audits found: every outcome, and the failures that block publishing.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// One outcome per audit, in declared order.
    pub(crate) outcomes: Vec<ExpectationOutcome>,
    /// `audit: what failed` for each failing `fail` audit.
    pub(crate) blocking: Vec<String>,
}

impl Verdict {
    /// The error that keeps the previous version, when an audit blocks.
    pub(crate) fn into_error(
        self,
        model: &str,
    ) -> std::result::Result<Vec<ExpectationOutcome>, GoldError> {
        if self.blocking.is_empty() {
            return Ok(self.outcomes);
        }
        Err(GoldError::AuditFailed {
            model: model.to_string(),
            details: self.blocking.join("; "),
            outcomes: self.outcomes,
        })
    }
}

/// Runs the model's audits over `version` (the table as it would be once published).
///
/// # Errors
/// An audit cannot be planned (a column the model does not have, a bad rule) or run.
pub(crate) async fn audit(
    step: &GoldStep,
    ctx: &StepContext,
    version: DataFrame,
) -> Result<Verdict> {
    let audits = &step.config.audits;
    let model = step.table.to_string();
    let bad = |a: &Audit, e: datafusion::error::DataFusionError| GoldError::Audit {
        model: model.clone(),
        audit: a.name.clone(),
        message: e.to_string(),
    };
    // Row checks and the row count in one pass.
    let mut aggs = vec![cast(count(lit(1i64)), DataType::Int64).alias("__rows")];
    let mut slots = Vec::new();
    for (i, a) in audits.iter().enumerate() {
        let failing = match &a.check {
            Check::Rule(rule) => {
                let e = version.parse_sql_expr(rule).map_err(|e| bad(a, e))?;
                not(datafusion::functions::expr_fn::coalesce(vec![
                    e,
                    lit(false),
                ]))
            }
            Check::NotNull(c) => field(&version, c).map_err(|e| bad(a, e))?.is_null(),
            Check::AcceptedValues { column: c, values } => {
                let target = field(&version, c).map_err(|e| bad(a, e))?;
                let list = values
                    .iter()
                    .map(|v| version.parse_sql_expr(v))
                    .collect::<datafusion::error::Result<Vec<_>>>()
                    .map_err(|e| bad(a, e))?;
                target.clone().is_not_null().and(target.in_list(list, true))
            }
            _ => continue,
        };
        let one = when(failing, lit(1i64))
            .otherwise(lit(0i64))
            .map_err(|e| bad(a, e))?;
        aggs.push(cast(sum(one), DataType::Int64).alias(format!("__a{i}")));
        slots.push(i);
    }
    let batches = version
        .clone()
        .aggregate(vec![], aggs)
        .map_err(|e| GoldError::Audit {
            model: model.clone(),
            audit: "row checks".into(),
            message: e.to_string(),
        })?
        .collect()
        .await
        .map_err(step.q())?;
    let rows = int(&batches, 0);
    let mut failed: Vec<Option<u64>> = vec![None; audits.len()];
    for (slot, i) in slots.iter().enumerate() {
        failed[*i] = Some(int(&batches, slot + 1));
    }
    let session = ctx.catalog.session();
    let mut verdict = Verdict::default();
    for (i, a) in audits.iter().enumerate() {
        let (passed, fails, why) = match &a.check {
            Check::Rule(_) | Check::NotNull(_) | Check::AcceptedValues { .. } => {
                let f = failed[i].unwrap_or(0);
                (rows - f, f, format!("{f} row(s)"))
            }
            Check::Unique(columns) => {
                let f = duplicates(&version, columns).await.map_err(|e| bad(a, e))?;
                (rows - f, f, format!("{f} row(s) share a value"))
            }
            Check::Relationship {
                column: c,
                table,
                to,
            } => {
                let f = orphans(&session, &version, c, table, to)
                    .await
                    .map_err(|e| bad(a, e))?;
                (
                    rows - f,
                    f,
                    format!("{f} row(s) have no match in {table}.{to}"),
                )
            }
            Check::RowCount { min, max } => {
                let low = min.is_some_and(|m| rows < m);
                let high = max.is_some_and(|m| rows > m);
                let why = match (low, high, min, max) {
                    (true, _, Some(m), _) => format!("{rows} row(s), expected at least {m}"),
                    (_, true, _, Some(m)) => format!("{rows} row(s), expected at most {m}"),
                    _ => String::new(),
                };
                let f = u64::from(low || high);
                (1 - f, f, why)
            }
            Check::Freshness {
                table,
                column,
                max_age,
            } => {
                let age = age(ctx, &session, table, column.as_deref())
                    .await
                    .map_err(|e| bad(a, e))?;
                match age {
                    Some(age) if age <= *max_age => (1, 0, String::new()),
                    Some(age) => (
                        0,
                        1,
                        format!(
                            "last updated {} ago, more than {}",
                            humantime::format_duration(Duration::from_secs(age.as_secs())),
                            humantime::format_duration(*max_age)
                        ),
                    ),
                    None => (0, 1, format!("{table} has no value to date it by")),
                }
            }
        };
        if fails > 0 {
            let line = format!("`{}` failed: {why}", a.name);
            match a.action {
                Action::Fail => verdict.blocking.push(line),
                _ => tracing::warn!(model = %model, "audit {line}; published anyway (warn)"),
            }
        }
        verdict.outcomes.push(ExpectationOutcome {
            table: model.clone(),
            rule: a.name.clone(),
            action: a.action,
            passed,
            failed: fails,
        });
    }
    Ok(verdict)
}

/// A column of `frame`, or an error naming the columns it has.
fn field(frame: &DataFrame, name: &str) -> datafusion::error::Result<Expr> {
    if frame.schema().has_column_with_unqualified_name(name) {
        return Ok(ident(name));
    }
    let names: Vec<&str> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    Err(datafusion::error::DataFusionError::Plan(format!(
        "no column `{name}` (the columns are: {})",
        names.join(", ")
    )))
}

/// The first column of the first row, as a count (0 when absent or NULL).
fn int(batches: &[RecordBatch], index: usize) -> u64 {
    let Some(b) = batches.first() else {
        return 0;
    };
    let col = b.column(index).as_primitive::<Int64Type>();
    if col.is_empty() || col.is_null(0) {
        0
    } else {
        col.value(0).max(0) as u64
    }
}

/// Rows whose `columns` values (none NULL) appear more than once.
async fn duplicates(version: &DataFrame, columns: &[String]) -> datafusion::error::Result<u64> {
    let mut present: Option<Expr> = None;
    let mut group = Vec::new();
    for c in columns {
        let e = field(version, c)?;
        let nn = e.clone().is_not_null();
        present = Some(match present {
            Some(p) => p.and(nn),
            None => nn,
        });
        group.push(e);
    }
    let mut frame = version.clone();
    if let Some(p) = present {
        frame = frame.filter(p)?;
    }
    let batches = frame
        .aggregate(
            group,
            vec![cast(count(lit(1i64)), DataType::Int64).alias("__n")],
        )?
        .filter(ident("__n").gt(lit(1i64)))?
        .aggregate(vec![], vec![cast(sum(ident("__n")), DataType::Int64)])?
        .collect()
        .await?;
    Ok(int(&batches, 0))
}

/// Rows whose non-NULL `column` has no equal value in `table.to`.
async fn orphans(
    session: &SessionContext,
    version: &DataFrame,
    c: &str,
    table: &assay_engine::TableId,
    to: &str,
) -> datafusion::error::Result<u64> {
    let key = field(version, c)?;
    let ty = version
        .schema()
        .qualified_field_with_unqualified_name(c)?
        .1
        .data_type()
        .clone();
    let target = session
        .table(datafusion::common::TableReference::partial(
            table.layer.as_str(),
            table.name.as_str(),
        ))
        .await?;
    field(&target, to)?;
    let parents = target
        .select(vec![cast(ident(to), ty).alias("__parent")])?
        .distinct()?;
    let batches = version
        .clone()
        .filter(key.is_not_null())?
        .join(parents, JoinType::LeftAnti, &[c], &["__parent"], None)?
        .aggregate(vec![], vec![cast(count(lit(1i64)), DataType::Int64)])?
        .collect()
        .await?;
    Ok(int(&batches, 0))
}

/// How long ago `table` changed: its last commit, or the greatest value of `column`
/// (a timestamp or date); `None` when it has no commit time or no value.
async fn age(
    ctx: &StepContext,
    session: &SessionContext,
    table: &assay_engine::TableId,
    column: Option<&str>,
) -> datafusion::error::Result<Option<Duration>> {
    let now = chrono::Utc::now().timestamp_micros();
    let micros = match column {
        None => {
            let t = ctx
                .lake
                .open(table)
                .await
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            match t {
                Some(t) => delta::last_commit_time(&t).await,
                None => None,
            }
        }
        Some(c) => {
            let frame = session
                .table(datafusion::common::TableReference::partial(
                    table.layer.as_str(),
                    table.name.as_str(),
                ))
                .await?;
            field(&frame, c)?;
            let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let batches = frame
                .aggregate(vec![], vec![max(cast(ident(c), ts)).alias("__latest")])?
                .collect()
                .await?;
            let value = batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .map(|b| ScalarValue::try_from_array(b.column(0), 0))
                .transpose()?;
            match value {
                Some(ScalarValue::TimestampMicrosecond(v, _)) => v,
                _ => None,
            }
        }
    };
    Ok(micros.map(|m| Duration::from_micros(now.saturating_sub(m).max(0) as u64)))
}

//! The silver step: read only the new bronze data, cast, check expectations, quarantine,
//! dedup, and MERGE into silver by keys, recording the consumed upstream versions in the
//! same commit.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use assay_engine::config::{Action, SilverConfig, SilverInput};
use assay_engine::dag::sql_references;
use assay_engine::delta::{self, CommitInfo, WriteMode, consumed_app_id};
use assay_engine::step::{ExpectationOutcome, Step, StepContext, StepError, StepReport};
use assay_engine::{EngineError, Layer, TableId};
use async_trait::async_trait;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, cast, ident, lit, when};
use datafusion::prelude::SessionContext;
use std::ops::Not;

use crate::error::{Result, SilverError};
use crate::stage::{any_failed, failed_rules, quote, stage};

/// Refines one silver table.
#[derive(Debug)]
pub struct SilverStep {
    table: TableId,
    config: SilverConfig,
    upstreams: Vec<TableId>,
}

impl SilverStep {
    /// A step for one `[[silver]]` entry.
    ///
    /// # Errors
    /// The entry's SQL does not parse or names a table without a layer.
    pub fn new(config: SilverConfig) -> std::result::Result<Self, EngineError> {
        let table = TableId::new(Layer::Silver, &config.name);
        let upstreams = match &config.input {
            SilverInput::Table(id) => vec![id.clone()],
            SilverInput::Sql { file, text } => sql_references(&table.to_string(), file, text)?,
        };
        Ok(SilverStep {
            table,
            config,
            upstreams,
        })
    }
}

#[async_trait]
impl Step for SilverStep {
    fn table(&self) -> &TableId {
        &self.table
    }

    fn upstreams(&self) -> &[TableId] {
        &self.upstreams
    }

    async fn run(&self, ctx: &StepContext) -> std::result::Result<StepReport, StepError> {
        Ok(self.refine(ctx).await?)
    }
}

struct Stats {
    rows: u64,
    typed: u64,
    failed: Vec<u64>,
    quarantined: u64,
    dropped: u64,
}

impl SilverStep {
    fn q(&self) -> impl Fn(datafusion::error::DataFusionError) -> SilverError + '_ {
        move |e| SilverError::Query {
            table: self.table.to_string(),
            source: Box::new(e),
        }
    }

    /// Registers each upstream's new data under its `layer.name`; returns the cursors to
    /// record, or `None` when no upstream has anything new.
    async fn register_increments(
        &self,
        ctx: &StepContext,
        session: &SessionContext,
        target: Option<&deltalake::DeltaTable>,
    ) -> Result<Option<Vec<(String, i64)>>> {
        let default_catalog = session.catalog("datafusion").ok_or_else(|| {
            self.q()(datafusion::error::DataFusionError::Plan(
                "no default catalog".into(),
            ))
        })?;
        for layer in [Layer::Bronze, Layer::Silver, Layer::Gold, Layer::System] {
            default_catalog
                .register_schema(layer.as_str(), Arc::new(MemorySchemaProvider::new()))
                .map_err(self.q())?;
        }
        let mut cursors = Vec::new();
        let mut any_new = false;
        for up in &self.upstreams {
            let Some(table) = ctx.lake.open(up).await? else {
                tracing::info!(upstream = %up, "upstream has no table yet; nothing to refine");
                return Ok(None);
            };
            let latest = delta::version(&table);
            let consumed = match target {
                Some(t) => delta::txn_version(&self.table, t, &consumed_app_id(up)).await?,
                None => None,
            };
            let files = if consumed.is_some_and(|c| c >= latest) {
                Vec::new()
            } else {
                delta::added_since(up, &table, consumed).await?
            };
            let provider: Arc<dyn datafusion::catalog::TableProvider> = if files.is_empty() {
                let schema = delta::arrow_schema(up, &table)?;
                Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(self.q())?)
            } else {
                any_new = true;
                delta::scan(up, &table, session, Some(files))
                    .await?
                    .into_view()
            };
            session
                .register_table(
                    TableReference::partial(up.layer.as_str(), up.name.as_str()),
                    provider,
                )
                .map_err(self.q())?;
            cursors.push((consumed_app_id(up), latest));
        }
        Ok(any_new.then_some(cursors))
    }

    async fn refine(&self, ctx: &StepContext) -> Result<StepReport> {
        let table_name = self.table.to_string();
        let target = ctx.lake.open(&self.table).await?;
        let session = SessionContext::new();
        let Some(cursors) = self
            .register_increments(ctx, &session, target.as_ref())
            .await?
        else {
            return Ok(StepReport::default());
        };
        let input = match &self.config.input {
            SilverInput::Table(id) => session
                .table(TableReference::partial(id.layer.as_str(), id.name.as_str()))
                .await
                .map_err(self.q())?,
            SilverInput::Sql { text, .. } => session.sql(text).await.map_err(self.q())?,
        };
        let staged = stage(&table_name, &self.config, input)?;
        let stats = self.stats(&staged.frame).await?;
        let outcomes: Vec<ExpectationOutcome> = self
            .config
            .expectations
            .iter()
            .zip(&stats.failed)
            .map(|(e, &failed)| ExpectationOutcome {
                table: table_name.clone(),
                rule: e.name.clone(),
                action: e.action,
                passed: stats.typed - failed,
                failed,
            })
            .collect();
        let fatal: Vec<String> = outcomes
            .iter()
            .filter(|o| o.action == Action::Fail && o.failed > 0)
            .map(|o| format!("rule `{}` failed for {} row(s)", o.rule, o.failed))
            .collect();
        if !fatal.is_empty() {
            return Err(SilverError::ExpectationFailed {
                table: table_name,
                details: fatal.join(", "),
                outcomes,
            });
        }
        let info = CommitInfo::new(cursors, &ctx.run_id);

        let ok = ident("__cast_error").is_null();
        let quarantine = ident("__cast_error")
            .is_not_null()
            .or(ok.clone().and(any_failed(&self.config, Action::Quarantine)));
        if stats.quarantined > 0 {
            self.write_quarantine(ctx, &staged, quarantine.clone(), &info)
                .await?;
        }
        ctx.faults.before_commit(&self.table)?;

        let good = staged
            .frame
            .clone()
            .filter(
                quarantine
                    .not()
                    .and(any_failed(&self.config, Action::Drop).not()),
            )
            .map_err(self.q())?
            .select(staged.output_columns.iter().map(ident).collect::<Vec<_>>())
            .map_err(self.q())?;
        let deduped = self.dedup(&session, good).await?;
        let mut report = StepReport {
            rows_in: stats.rows,
            rows_rejected: stats.quarantined + stats.dropped,
            expectations: outcomes,
            ..StepReport::default()
        };
        let (version, written) = match target {
            Some(t) if !self.config.keys.is_empty() => {
                crate::merge::merge(
                    &self.table,
                    &self.config,
                    &staged.output_columns,
                    t,
                    deduped,
                    &info,
                )
                .await?
            }
            _ => {
                // First write, or no keys (append-only): plain append, counted first.
                let count = deduped.clone().count().await.map_err(self.q())? as u64;
                let table = delta::write_frame(
                    &ctx.lake,
                    &self.table,
                    deduped,
                    WriteMode::Append,
                    &[],
                    &info,
                )
                .await?;
                (delta::version(&table), count)
            }
        };
        report.version = Some(version);
        report.rows_written = written;
        Ok(report)
    }

    async fn stats(&self, frame: &datafusion::dataframe::DataFrame) -> Result<Stats> {
        let one = |cond: Expr| -> Result<Expr> {
            Ok(sum(cast(
                when(cond, lit(1i64))
                    .otherwise(lit(0i64))
                    .map_err(self.q())?,
                DataType::Int64,
            )))
        };
        let ok = ident("__cast_error").is_null();
        let quarantine = ident("__cast_error")
            .is_not_null()
            .or(ok.clone().and(any_failed(&self.config, Action::Quarantine)));
        let dropped = quarantine
            .clone()
            .not()
            .and(any_failed(&self.config, Action::Drop));
        let mut aggs = vec![
            cast(count(lit(1i64)), DataType::Int64).alias("rows"),
            one(ok.clone())?.alias("typed"),
            one(quarantine)?.alias("quarantined"),
            one(dropped)?.alias("dropped"),
        ];
        for i in 0..self.config.expectations.len() {
            aggs.push(one(ok.clone().and(ident(format!("__fail_{i}"))))?.alias(format!("f{i}")));
        }
        let batches = frame
            .clone()
            .aggregate(vec![], aggs)
            .map_err(self.q())?
            .collect()
            .await
            .map_err(self.q())?;
        let value = |batch: &RecordBatch, i: usize| -> u64 {
            let col = batch.column(i).as_primitive::<Int64Type>();
            if col.is_empty() || col.is_null(0) {
                0
            } else {
                col.value(0).max(0) as u64
            }
        };
        let Some(b) = batches.first() else {
            return Ok(Stats {
                rows: 0,
                typed: 0,
                failed: vec![0; self.config.expectations.len()],
                quarantined: 0,
                dropped: 0,
            });
        };
        let rows = value(b, 0);
        let typed = value(b, 1);
        Ok(Stats {
            rows,
            typed,
            quarantined: value(b, 2),
            dropped: value(b, 3),
            failed: (0..self.config.expectations.len())
                .map(|i| value(b, 4 + i))
                .collect(),
        })
    }

    async fn write_quarantine(
        &self,
        ctx: &StepContext,
        staged: &crate::stage::Staged,
        quarantine: Expr,
        info: &CommitInfo,
    ) -> Result<()> {
        let qid = self.table.side("quarantine");
        // The same cursors guard the quarantine: a rerun after a crash between the two
        // commits does not quarantine the same rows twice.
        if let Some(existing) = ctx.lake.open(&qid).await? {
            let mut done = true;
            for (app, v) in &info.transactions {
                done &= delta::txn_version(&qid, &existing, app).await? == Some(*v);
            }
            if done {
                return Ok(());
            }
        }
        let mut columns: Vec<Expr> = staged
            .input_columns
            .iter()
            .enumerate()
            .map(|(i, c)| cast(ident(format!("__raw_{i}")), DataType::Utf8).alias(c))
            .collect();
        columns.push(failed_rules(&self.config)?.alias("_failed_rules"));
        columns.push(
            datafusion::functions::expr_fn::coalesce(vec![
                ident("__cast_error"),
                lit("failed expectations"),
            ])
            .alias("_reason"),
        );
        columns.push(lit(ctx.run_id.clone()).alias("_run_id"));
        columns.push(
            lit(ScalarValue::TimestampMicrosecond(
                Some(chrono::Utc::now().timestamp_micros()),
                Some("UTC".into()),
            ))
            .alias("_quarantined_at"),
        );
        let frame = staged
            .frame
            .clone()
            .filter(quarantine)
            .map_err(self.q())?
            .select(columns)
            .map_err(self.q())?;
        delta::write_frame(&ctx.lake, &qid, frame, WriteMode::Append, &[], info).await?;
        Ok(())
    }

    /// Keeps the latest row per key (by `sequence_by`, descending, NULLs last).
    async fn dedup(
        &self,
        session: &SessionContext,
        good: datafusion::dataframe::DataFrame,
    ) -> Result<datafusion::dataframe::DataFrame> {
        if self.config.keys.is_empty() {
            return Ok(good);
        }
        session
            .register_table("__good", good.into_view())
            .map_err(self.q())?;
        let keys: Vec<String> = self.config.keys.iter().map(|k| quote(k)).collect();
        let order = match &self.config.sequence_by {
            Some(s) => format!("ORDER BY {} DESC NULLS LAST", quote(s)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT * EXCLUDE (__rn) FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {} {order}) AS __rn FROM __good) WHERE __rn = 1",
            keys.join(", ")
        );
        session.sql(&sql).await.map_err(self.q())
    }
}

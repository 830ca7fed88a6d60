//! The silver step: read only the new bronze data, cast, check expectations, quarantine,
//! dedup, and MERGE into silver by keys, recording the consumed upstream versions in the
//! same commit.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use assay_engine::config::{Action, History, SilverConfig, SilverInput};
use assay_engine::delta::{self, CommitInfo, WriteMode};
use assay_engine::step::{ExpectationOutcome, Step, StepContext, StepError, StepReport};
use assay_engine::stream::{self, Inputs, Prepared};
use assay_engine::{EngineError, Layer, TableId};
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, cast, ident, lit, when};
use datafusion::prelude::SessionContext;

use crate::error::{Result, SilverError};
use crate::stage::{DELETE, Masks, failed_rules, stage};

/// Refines one silver table.
#[derive(Debug)]
pub struct SilverStep {
    pub(crate) table: TableId,
    pub(crate) config: SilverConfig,
    upstreams: Vec<TableId>,
}

impl SilverStep {
    /// A step for one `[[silver]]` entry.
    ///
    /// # Errors
    /// The entry's SQL does not parse or names a table without a layer.
    pub fn new(config: SilverConfig) -> std::result::Result<Self, EngineError> {
        let table = TableId::new(Layer::Silver, &config.name);
        let upstreams = config.upstreams.clone();
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

/// What a silver writer needs: the table, its config, the run and the inputs' session.
pub(crate) struct Target<'a> {
    /// The step's context.
    pub(crate) ctx: &'a StepContext,
    /// The silver table.
    pub(crate) id: &'a TableId,
    /// Its config.
    pub(crate) config: &'a SilverConfig,
    /// Its output columns, in order.
    pub(crate) columns: &'a [String],
    /// The session the inputs are registered in.
    pub(crate) session: &'a SessionContext,
    /// The commit's cursors and metadata.
    pub(crate) info: &'a CommitInfo,
    /// The table as it is, when it exists.
    pub(crate) table: Option<deltalake::DeltaTable>,
    /// True when the whole stream is read: the table is (re)built from scratch.
    pub(crate) replay: bool,
    /// True when no key occurs twice in the input: each row is its key's latest.
    pub(crate) unique_keys: bool,
}

impl Target<'_> {
    /// Wraps a DataFusion error with the table.
    pub(crate) fn q(&self) -> impl Fn(datafusion::error::DataFusionError) -> SilverError + use<> {
        let table = self.id.to_string();
        move |e| SilverError::Query {
            table: table.clone(),
            source: Box::new(e),
        }
    }
}

/// True when `table` already holds a commit with exactly these cursors: a run that crashed
/// after writing it is being redone.
pub(crate) async fn recorded(
    id: &TableId,
    table: &deltalake::DeltaTable,
    info: &CommitInfo,
) -> Result<bool> {
    let mut done = true;
    for (app, v) in &info.transactions {
        done &= delta::txn_version(id, table, app).await? == Some(*v);
    }
    Ok(done)
}

/// What a run's input held, by the expectations' masks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    /// Input rows.
    pub(crate) rows: u64,
    /// Rows held to the expectations: typed, and not delete events.
    pub(crate) checked: u64,
    /// Per expectation, the checked rows that break it.
    pub(crate) failed: Vec<u64>,
    /// Rows quarantined.
    pub(crate) quarantined: u64,
    /// Rows dropped.
    pub(crate) dropped: u64,
}

impl Stats {
    /// Adds another part's counts.
    pub(crate) fn add(&mut self, other: &Stats) {
        self.rows += other.rows;
        self.checked += other.checked;
        self.quarantined += other.quarantined;
        self.dropped += other.dropped;
        if self.failed.len() < other.failed.len() {
            self.failed.resize(other.failed.len(), 0);
        }
        for (a, b) in self.failed.iter_mut().zip(&other.failed) {
            *a += b;
        }
    }

    /// Each rule's outcome, and the error when a `fail` rule broke.
    pub(crate) fn outcomes(
        &self,
        table: &TableId,
        config: &SilverConfig,
    ) -> Result<Vec<ExpectationOutcome>> {
        let outcomes: Vec<ExpectationOutcome> = config
            .expectations
            .iter()
            .zip(&self.failed)
            .map(|(e, &failed)| ExpectationOutcome {
                table: table.to_string(),
                rule: e.name.clone(),
                action: e.action,
                passed: self.checked.saturating_sub(failed),
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
                table: table.to_string(),
                details: fatal.join(", "),
                outcomes,
            });
        }
        Ok(outcomes)
    }
}

impl SilverStep {
    /// The columns a good row keeps: the output ones, plus the delete flag.
    fn kept_columns(&self, staged: &crate::stage::Staged) -> Vec<Expr> {
        let mut columns: Vec<Expr> = staged.output_columns.iter().map(ident).collect();
        if self.config.apply_as_deletes.is_some() {
            columns.push(ident(DELETE));
        }
        columns
    }

    fn q(&self) -> impl Fn(datafusion::error::DataFusionError) -> SilverError + '_ {
        move |e| SilverError::Query {
            table: self.table.to_string(),
            source: Box::new(e),
        }
    }

    /// The streamed input's new rows (all of them on a full refresh or a first run) and
    /// every other upstream whole; `None` when the stream has nothing new (or an input has
    /// no table yet). A stream whose commits removed rows cannot be followed.
    async fn inputs(
        &self,
        ctx: &StepContext,
        target: Option<&deltalake::DeltaTable>,
    ) -> Result<Option<Inputs>> {
        let stream = &self.config.stream;
        let inputs =
            match stream::prepare(ctx, &self.table, target, stream, &self.upstreams).await? {
                Prepared::Ready(inputs) => inputs,
                Prepared::UpToDate => return Ok(None),
                Prepared::Waiting(up) => {
                    tracing::info!(upstream = %up, "upstream has no table yet; nothing to refine");
                    return Ok(None);
                }
            };
        if let Some(v) = inputs.changes.first_rewrite {
            return Err(EngineError::NeedsFullRefresh {
                table: self.table.to_string(),
                upstream: stream.to_string(),
                reason: format!(
                    "its commit {v} removed or rewrote rows (a full refresh, MERGE or delete), \
                     and a stream only takes appended rows"
                ),
            }
            .into());
        }
        if inputs.is_incremental() && inputs.changes.added.is_empty() {
            return Ok(None);
        }
        Ok(Some(*inputs))
    }

    async fn refine(&self, ctx: &StepContext) -> Result<StepReport> {
        let table_name = self.table.to_string();
        let target = ctx.lake.open(&self.table).await?;
        let Some(inputs) = self.inputs(ctx, target.as_ref()).await? else {
            return Ok(StepReport::default());
        };
        let session = &inputs.session;
        let cursors = vec![inputs.cursor()];
        let input = match &self.config.input {
            SilverInput::Table(id) => session
                .table(TableReference::partial(id.layer.as_str(), id.name.as_str()))
                .await
                .map_err(self.q())?,
            SilverInput::Sql { text, .. } => session.sql(text).await.map_err(self.q())?,
        };
        let staged = stage(&table_name, &self.config, input)?;
        let replay = ctx.full_refresh || target.is_none();
        if crate::load::applies(&self.config, replay) {
            return crate::load::Load {
                step: self,
                ctx,
                session,
                staged: &staged,
                target,
                cursors,
                replay,
            }
            .run()
            .await;
        }
        let stats = self.stats(&staged.frame).await?;
        let outcomes = stats.outcomes(&self.table, &self.config)?;
        let info = CommitInfo::new(cursors, &ctx.run_id);

        let masks = Masks::new(&self.config);
        self.write_quarantine(ctx, &staged, masks.quarantine, stats.quarantined, &info)
            .await?;

        let good = staged
            .frame
            .clone()
            .filter(masks.good)
            .map_err(self.q())?
            .select(self.kept_columns(&staged))
            .map_err(self.q())?;
        let mut report = StepReport {
            rows_in: stats.rows,
            rows_rejected: stats.quarantined + stats.dropped,
            expectations: outcomes,
            ..StepReport::default()
        };
        let unique_keys = self.config.history == History::Scd1
            && !self.config.keys.is_empty()
            && !crate::dedup::has_duplicate_keys(&self.config, &staged.frame)
                .await
                .map_err(self.q())?;
        let w = Target {
            ctx,
            id: &self.table,
            config: &self.config,
            columns: &staged.output_columns,
            session,
            info: &info,
            table: target,
            replay,
            unique_keys,
        };
        // Tables without keys, and first loads without change data, took the one pass.
        let (version, written) = match self.config.history {
            History::Scd1 => crate::merge::upsert(w, good).await?,
            History::Scd2 => crate::scd2::apply(w, good).await?,
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
        let masks = Masks::new(&self.config);
        let mut aggs = vec![
            cast(count(lit(1i64)), DataType::Int64).alias("rows"),
            one(masks.checked)?.alias("checked"),
            one(masks.quarantine)?.alias("quarantined"),
            one(masks.dropped)?.alias("dropped"),
        ];
        for (i, failed) in masks.failed.into_iter().enumerate() {
            aggs.push(one(failed)?.alias(format!("f{i}")));
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
                checked: 0,
                failed: vec![0; self.config.expectations.len()],
                quarantined: 0,
                dropped: 0,
            });
        };
        let rows = value(b, 0);
        let checked = value(b, 1);
        Ok(Stats {
            rows,
            checked,
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
        rows: u64,
        info: &CommitInfo,
    ) -> Result<()> {
        let qid = self.table.side("quarantine");
        let existing = ctx.lake.open(&qid).await?;
        // A full refresh replaces the quarantine too (emptying it when nothing fails now).
        if rows == 0 && !(ctx.full_refresh && existing.is_some()) {
            return Ok(());
        }
        // The same cursors guard the quarantine: a rerun after a crash between the two
        // commits does not quarantine the same rows twice.
        if let Some(existing) = existing.filter(|_| !ctx.full_refresh)
            && recorded(&qid, &existing, info).await?
        {
            return Ok(());
        }
        let columns = quarantine_columns(&self.config, staged, &ctx.run_id)?;
        let frame = staged
            .frame
            .clone()
            .filter(quarantine)
            .map_err(self.q())?
            .select(columns)
            .map_err(self.q())?;
        let mode = if ctx.full_refresh {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        };
        delta::write_frame(&ctx.lake, &qid, frame, mode, &[], info).await?;
        Ok(())
    }
}

/// The quarantine table's columns over a staged frame: the input columns as text, the
/// failed rules, the reason, the run and the time.
///
/// # Errors
/// A rule's expression cannot be built.
pub(crate) fn quarantine_columns(
    config: &SilverConfig,
    staged: &crate::stage::Staged,
    run_id: &str,
) -> Result<Vec<Expr>> {
    let mut columns: Vec<Expr> = staged
        .input_columns
        .iter()
        .enumerate()
        .map(|(i, c)| cast(ident(format!("__raw_{i}")), DataType::Utf8).alias(c))
        .collect();
    columns.push(failed_rules(config)?.alias("_failed_rules"));
    columns.push(
        datafusion::functions::expr_fn::coalesce(vec![
            ident("__cast_error"),
            lit("failed expectations"),
        ])
        .alias("_reason"),
    );
    columns.push(lit(run_id.to_string()).alias("_run_id"));
    columns.push(
        lit(ScalarValue::TimestampMicrosecond(
            Some(chrono::Utc::now().timestamp_micros()),
            Some("UTC".into()),
        ))
        .alias("_quarantined_at"),
    );
    Ok(columns)
}

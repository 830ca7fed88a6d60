//! One pass over a run's input when nothing has to be merged: a first load or a full
//! refresh without change data, and every run of a table without keys.
//!
//! The staged plan runs once, its partitions in parallel. Each batch is counted for the
//! expectations and split by the same masks a merge run uses: good rows go to new files of
//! the table, quarantined rows to new files of `silver.<name>__quarantine`. Nothing is
//! committed until the pass is over and no `fail` rule broke (otherwise the files are
//! deleted and silver stays as it was); then the quarantine and the table are each published
//! in one commit. With keys, only the key columns of the written files are read back to see
//! whether a key repeats; only then are the rows deduplicated (latest by `sequence_by`) into
//! the table instead, from the typed files rather than the input.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use assay_engine::config::{History, SilverConfig};
use assay_engine::delta::{self, CommitInfo, FileWriter, NewFiles, WriteMode};
use assay_engine::step::{StepContext, StepReport};
use assay_engine::{EngineError, TableId};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ident};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::StreamExt;

use crate::error::{Result, SilverError};
use crate::refine::{SilverStep, Stats, quarantine_columns, recorded};
use crate::stage::{Masks, Staged};

/// Memory the duplicate-key checks and deduplications of all the loads running in this
/// process may hold together; past it they spill to the temporary directory, so loads of any
/// size, however many run at once, stay in bounded memory.
pub(crate) const DEDUP_MEMORY: usize = 512 << 20;

/// A session over the process-wide pool of [`DEDUP_MEMORY`] bytes: concurrent loads share it
/// (each spillable operator gets a fair share) instead of holding one budget each.
fn bounded_session() -> datafusion::error::Result<SessionContext> {
    static POOL: std::sync::OnceLock<Arc<dyn MemoryPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| Arc::new(FairSpillPool::new(DEDUP_MEMORY)));
    session_over(Arc::clone(pool))
}

/// A session whose operators hold at most `bytes` and spill past it.
#[cfg(test)]
pub(crate) fn bounded_session_of(bytes: usize) -> datafusion::error::Result<SessionContext> {
    session_over(Arc::new(FairSpillPool::new(bytes)))
}

fn session_over(pool: Arc<dyn MemoryPool>) -> datafusion::error::Result<SessionContext> {
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(
        datafusion::prelude::SessionConfig::new(),
        runtime,
    ))
}

/// True when a run of this table takes the one pass: no change data to apply and nothing
/// to merge (no keys, or the table is rebuilt from its whole input).
pub(crate) fn applies(config: &SilverConfig, replay: bool) -> bool {
    config.history == History::Scd1
        && config.apply_as_deletes.is_none()
        && (config.keys.is_empty() || replay)
}

/// One pass of a silver step.
pub(crate) struct Load<'a> {
    /// The step.
    pub(crate) step: &'a SilverStep,
    /// Its context.
    pub(crate) ctx: &'a StepContext,
    /// The session the inputs are registered in.
    pub(crate) session: &'a SessionContext,
    /// The input, cast and checked.
    pub(crate) staged: &'a Staged,
    /// The table as it is, when it exists.
    pub(crate) target: Option<DeltaTable>,
    /// The cursors to commit.
    pub(crate) cursors: Vec<(String, i64)>,
    /// The table is rebuilt from its whole input.
    pub(crate) replay: bool,
}

/// The masks and projections of the pass, planned once and shared by every partition.
struct Split {
    table: String,
    quarantine: Arc<dyn PhysicalExpr>,
    dropped: Arc<dyn PhysicalExpr>,
    good: Arc<dyn PhysicalExpr>,
    checked: Arc<dyn PhysicalExpr>,
    failed: Vec<Arc<dyn PhysicalExpr>>,
    /// Positions of the output columns in the staged rows.
    kept: Vec<usize>,
    kept_schema: SchemaRef,
    rejected: Vec<Arc<dyn PhysicalExpr>>,
    rejected_schema: SchemaRef,
}

/// What one partition wrote and counted.
struct Part {
    stats: Stats,
    written: u64,
    main: Option<NewFiles>,
    rejected: Option<NewFiles>,
}

fn query_error(table: &str) -> impl Fn(datafusion::error::DataFusionError) -> SilverError + use<> {
    let table = table.to_string();
    move |e| SilverError::Query {
        table: table.clone(),
        source: Box::new(e),
    }
}

impl Split {
    fn eval(&self, expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
        expr.evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(query_error(&self.table))
    }

    fn count(&self, expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<u64> {
        Ok(self.eval(expr, batch)?.as_boolean().true_count() as u64)
    }

    fn rows(
        &self,
        mask: &Arc<dyn PhysicalExpr>,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>> {
        let mask = self.eval(mask, batch)?;
        let rows = filter_record_batch(batch, mask.as_boolean())
            .map_err(|e| query_error(&self.table)(e.into()))?;
        Ok((rows.num_rows() > 0).then_some(rows))
    }

    /// Counts one batch, writes its good rows to `main` and its quarantined rows to
    /// `rejected`; returns the good rows written.
    async fn batch(
        &self,
        batch: RecordBatch,
        stats: &mut Stats,
        main: &mut FileWriter,
        rejected: &mut FileWriter,
    ) -> Result<u64> {
        stats.rows += batch.num_rows() as u64;
        stats.checked += self.count(&self.checked, &batch)?;
        stats.dropped += self.count(&self.dropped, &batch)?;
        for (n, f) in stats.failed.iter_mut().zip(&self.failed) {
            *n += self.count(f, &batch)?;
        }
        let err = |e: arrow::error::ArrowError| query_error(&self.table)(e.into());
        if let Some(bad) = self.rows(&self.quarantine, &batch)? {
            stats.quarantined += bad.num_rows() as u64;
            let columns = self
                .rejected
                .iter()
                .map(|e| self.eval(e, &bad))
                .collect::<Result<Vec<_>>>()?;
            let bad =
                RecordBatch::try_new(Arc::clone(&self.rejected_schema), columns).map_err(err)?;
            rejected.write(bad).await?;
        }
        let Some(good) = self.rows(&self.good, &batch)? else {
            return Ok(0);
        };
        let good = good.project(&self.kept).map_err(err)?;
        let good = RecordBatch::try_new(Arc::clone(&self.kept_schema), good.columns().to_vec())
            .map_err(err)?;
        let n = good.num_rows() as u64;
        main.write(good).await?;
        Ok(n)
    }

    async fn part(
        self: Arc<Self>,
        mut stream: SendableRecordBatchStream,
        mut main: FileWriter,
        mut rejected: FileWriter,
        rules: usize,
    ) -> Result<Part> {
        let mut stats = Stats {
            failed: vec![0; rules],
            ..Stats::default()
        };
        let mut written = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_error(&self.table))?;
            written += self
                .batch(batch, &mut stats, &mut main, &mut rejected)
                .await?;
        }
        Ok(Part {
            stats,
            written,
            main: main.finish().await?,
            rejected: rejected.finish().await?,
        })
    }
}

impl Load<'_> {
    fn q(&self) -> impl Fn(datafusion::error::DataFusionError) -> SilverError + use<> {
        query_error(&self.step.table.to_string())
    }

    fn split(&self) -> Result<Split> {
        let config = &self.step.config;
        let frame = &self.staged.frame;
        let schema = frame.schema();
        // Simplified first: the physical planner wants `coalesce` and friends rewritten.
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(schema.clone()))
                .build(),
        );
        let physical = |e: Expr| {
            simplifier
                .simplify(e)
                .and_then(|e| self.session.create_physical_expr(e, schema))
                .map_err(self.q())
        };
        let masks = Masks::new(config);
        let kept: Vec<Expr> = self.staged.output_columns.iter().map(ident).collect();
        let kept_schema = Arc::new(
            frame
                .clone()
                .select(kept)
                .map_err(self.q())?
                .schema()
                .as_arrow()
                .clone(),
        );
        let kept = self
            .staged
            .output_columns
            .iter()
            .map(|c| {
                schema
                    .index_of_column_by_name(None, c)
                    .ok_or_else(|| c.clone())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|c| SilverError::MissingColumn {
                table: self.step.table.to_string(),
                column: c,
                available: self.staged.input_columns.join(", "),
            })?;
        let rejected = quarantine_columns(config, self.staged, &self.ctx.run_id)?;
        let rejected_schema = Arc::new(
            frame
                .clone()
                .select(rejected.clone())
                .map_err(self.q())?
                .schema()
                .as_arrow()
                .clone(),
        );
        Ok(Split {
            table: self.step.table.to_string(),
            quarantine: physical(masks.quarantine)?,
            dropped: physical(masks.dropped)?,
            good: physical(masks.good)?,
            checked: physical(masks.checked)?,
            failed: masks
                .failed
                .into_iter()
                .map(physical)
                .collect::<Result<_>>()?,
            kept,
            kept_schema,
            rejected: rejected.into_iter().map(physical).collect::<Result<_>>()?,
            rejected_schema,
        })
    }

    /// Runs the staged plan once, every partition on its own task; returns the counts and
    /// the files written for the table and its quarantine.
    async fn pass(&self, split: Split) -> Result<(Stats, u64, NewFiles, NewFiles)> {
        let table = &self.step.table;
        let qid = table.side("quarantine");
        let lake = &self.ctx.lake;
        let plan = self
            .staged
            .frame
            .clone()
            .create_physical_plan()
            .await
            .map_err(self.q())?;
        let task = Arc::new(self.session.task_ctx());
        let split = Arc::new(split);
        let rules = self.step.config.expectations.len();
        let mut parts = tokio::task::JoinSet::new();
        for i in 0..plan.output_partitioning().partition_count() {
            let stream = plan.execute(i, Arc::clone(&task)).map_err(self.q())?;
            let main = FileWriter::new(lake, table, None)?
                .schema(&split.kept_schema)
                .partitioned(&self.step.config.partition_by);
            let rejected = FileWriter::new(lake, &qid, None)?.schema(&split.rejected_schema);
            parts.spawn(Arc::clone(&split).part(stream, main, rejected, rules));
        }
        let mut stats = Stats {
            failed: vec![0; rules],
            ..Stats::default()
        };
        let (mut written, mut main, mut rejected) = (0, None::<NewFiles>, None::<NewFiles>);
        while let Some(joined) = parts.join_next().await {
            let part = joined.map_err(|e| {
                self.q()(datafusion::error::DataFusionError::External(Box::new(e)))
            })??;
            stats.add(&part.stats);
            written += part.written;
            for (all, new) in [(&mut main, part.main), (&mut rejected, part.rejected)] {
                match (all.as_mut(), new) {
                    (Some(all), Some(new)) => all
                        .absorb(new)
                        .map_err(|e| EngineError::delta(table, e.into()))?,
                    (None, new) => *all = new,
                    (Some(_), None) => {}
                }
            }
        }
        let missing = || {
            EngineError::delta(
                table,
                deltalake::DeltaTableError::Generic("the pass wrote no schema".into()),
            )
        };
        Ok((
            stats,
            written,
            main.ok_or_else(missing)?,
            rejected.ok_or_else(missing)?,
        ))
    }

    /// Runs the pass and publishes what it wrote.
    pub(crate) async fn run(self) -> Result<StepReport> {
        let table = &self.step.table;
        let config = &self.step.config;
        let lake = &self.ctx.lake;
        let split = self.split()?;
        if let Some(existing) = self.target.as_ref().filter(|_| !self.replay)
            && let Some(change) = delta::schema_change(table, existing, &split.kept_schema)?
        {
            return Err(SilverError::SchemaChanged {
                table: table.to_string(),
                change,
            });
        }
        let (stats, written, main, rejected) = self.pass(split).await?;
        let main = delta::Staged::from_files(table, main);
        let rejected = delta::Staged::from_files(&table.side("quarantine"), rejected);
        let outcomes = match stats.outcomes(table, config) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                main.abandon(lake).await;
                rejected.abandon(lake).await;
                return Err(e);
            }
        };
        let info = CommitInfo::new(self.cursors.clone(), &self.ctx.run_id);
        self.publish_quarantine(rejected, stats.quarantined, &info)
            .await?;
        let mode = if self.ctx.full_refresh {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        };
        // Keys are checked, and deduplicated when one repeats, in a session of bounded
        // memory: the grouping and the sort spill to disk past it.
        let bounded = bounded_session().map_err(self.q())?;
        let duplicates = !config.keys.is_empty() && {
            let frame = main.frame(lake, &bounded).await?;
            crate::dedup::has_duplicate_keys(config, &frame)
                .await
                .map_err(self.q())?
        };
        let (version, written) = if duplicates {
            // Several rows of a key: keep each key's latest, read from the typed files.
            let frame = main.frame(lake, &bounded).await?;
            let columns: Vec<Expr> = self.staged.output_columns.iter().map(ident).collect();
            let latest = crate::dedup::latest(config, frame)
                .and_then(|f| f.select(columns))
                .map_err(self.q())?;
            let deduplicated =
                delta::Staged::write(lake, table, latest, &config.partition_by).await?;
            let rows = deduplicated.rows();
            self.ctx.faults.before_commit(table)?;
            let t = deduplicated
                .commit(lake, self.target.as_ref(), &info, mode)
                .await?;
            main.abandon(lake).await;
            (delta::version(&t), rows)
        } else {
            self.ctx.faults.before_commit(table)?;
            let t = main.commit(lake, self.target.as_ref(), &info, mode).await?;
            (delta::version(&t), written)
        };
        Ok(StepReport {
            rows_in: stats.rows,
            rows_written: written,
            rows_rejected: stats.quarantined + stats.dropped,
            version: Some(version),
            expectations: outcomes,
        })
    }

    /// Commits the quarantined rows (replacing the quarantine on a full refresh, emptying
    /// it when nothing fails now). The same cursors guard the quarantine, so a rerun after a
    /// crash between the two commits does not quarantine the same rows twice.
    async fn publish_quarantine(
        &self,
        files: delta::Staged,
        rows: u64,
        info: &CommitInfo,
    ) -> Result<()> {
        let lake = &self.ctx.lake;
        let qid: TableId = self.step.table.side("quarantine");
        let existing = lake.open(&qid).await?;
        let full_refresh = self.ctx.full_refresh;
        let skip = match existing.as_ref() {
            _ if rows == 0 && !(full_refresh && existing.is_some()) => true,
            Some(t) if !full_refresh => recorded(&qid, t, info).await?,
            _ => false,
        };
        if skip {
            files.abandon(lake).await;
            return Ok(());
        }
        let mode = if full_refresh {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        };
        files.commit(lake, existing.as_ref(), info, mode).await?;
        Ok(())
    }
}

//! `silver.<name>__tombstones`: the deletes (`apply_as_deletes`) a silver table must
//! remember so that a late, older event of a deleted key is not applied. With history
//! kept in place (SCD1) it holds the latest delete of each key still deleted; with
//! `history = "scd2"` every delete event, since each one closes a version.
//!
//! Written before the table itself in each run, under the same cursor, so a rerun after a
//! crash between the two commits records nothing twice.

use assay_engine::TableId;
use assay_engine::config::{History, SilverConfig};
use assay_engine::delta::{self, CommitInfo, Merge, WriteMode, quote_ident};
use assay_engine::step::StepContext;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, ident, lit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use std::ops::Not;

use crate::error::{Result, SilverError};
use crate::stage::DELETE;

/// The tombstones of a silver table.
pub(crate) fn id(table: &TableId) -> TableId {
    table.side("tombstones")
}

/// The tombstones table, when there is one.
pub(crate) async fn open(ctx: &StepContext, table: &TableId) -> Result<Option<DeltaTable>> {
    Ok(ctx.lake.open(&id(table)).await?)
}

/// The tombstones as a frame, read before this run's are recorded.
pub(crate) async fn frame(
    table: &TableId,
    t: &DeltaTable,
    session: &SessionContext,
) -> Result<DataFrame> {
    Ok(delta::scan(&id(table), t, session, None).await?)
}

fn query(id: &TableId, e: datafusion::error::DataFusionError) -> SilverError {
    SilverError::Query {
        table: id.to_string(),
        source: Box::new(e),
    }
}

/// Records the delete events of `events` (the run's latest event per key for SCD1, every
/// event for SCD2; both with the `__delete` flag) in the tombstones.
pub(crate) async fn record(
    ctx: &StepContext,
    config: &SilverConfig,
    table: &TableId,
    existing: Option<DeltaTable>,
    events: DataFrame,
    info: &CommitInfo,
    replay: bool,
) -> Result<()> {
    let tid = id(table);
    let q = |e| query(&tid, e);
    let Some(seq) = config.sequence_by.as_ref() else {
        return Ok(());
    };
    let mut columns: Vec<Expr> = config.keys.iter().map(ident).collect();
    columns.push(ident(seq));
    columns.push(lit(ctx.run_id.clone()).alias("_run_id"));
    match existing.filter(|_| !replay) {
        None => {
            let deletes = events
                .filter(ident(DELETE))
                .and_then(|f| f.select(columns))
                .map_err(q)?;
            let mode = if replay {
                WriteMode::Overwrite
            } else {
                WriteMode::Append
            };
            delta::write_frame(&ctx.lake, &tid, deletes, mode, &[], info).await?;
        }
        Some(t) => {
            if crate::refine::recorded(&tid, &t, info).await? {
                return Ok(());
            }
            match config.history {
                History::Scd1 => {
                    // A newer upsert lifts a tombstone; a newer delete moves it.
                    columns.push(ident(DELETE).not().alias("__upsert"));
                    let source = events.select(columns).map_err(q)?;
                    let s = quote_ident(seq);
                    let names = tombstone_columns(config, seq);
                    Merge::new(&tid, t, source, &config.keys)
                        .columns(&names)
                        .deletes("__upsert")
                        .update_when(format!("s.{s} > t.{s}"))
                        .commit(info)
                        .await?;
                }
                History::Scd2 => {
                    let source = events
                        .filter(ident(DELETE))
                        .and_then(|f| f.select(columns))
                        .map_err(q)?;
                    let mut on = config.keys.clone();
                    on.push(seq.clone());
                    Merge::new(&tid, t, source, &on)
                        .columns(&tombstone_columns(config, seq))
                        .insert_only()
                        .commit(info)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

fn tombstone_columns(config: &SilverConfig, seq: &str) -> Vec<String> {
    let mut names = config.keys.clone();
    names.push(seq.to_string());
    names.push("_run_id".into());
    names
}

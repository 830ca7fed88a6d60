//! SCD2 (`history = "scd2"`): every version of a key is kept, with `_valid_from` (its
//! `sequence_by` value), `_valid_to` (the next event's, NULL while current) and
//! `_is_current`. A delete event closes the version before it.
//!
//! A run rebuilds the history of the keys it touches from their stored versions, their
//! tombstones and the new events, so a late event lands in its place, and MERGEs the
//! result by key and `_valid_from`; keys it does not touch are not rewritten.

use arrow::datatypes::DataType;
use assay_engine::config::SCD2_COLUMNS;
use assay_engine::delta::{self, Merge, WriteMode};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::functions_window::expr_fn::lead;
use datafusion::logical_expr::{Expr, ExprFunctionExt, cast, ident, lit, when};
use std::ops::Not;

use crate::error::Result;
use crate::refine::Target;
use crate::stage::DELETE;
use crate::{dedup, tombstones};

/// Which event wins a tie on key and sequence: a delete, then a new event, then a stored one.
const PRIORITY: &str = "__priority";
const VALID_FROM: &str = SCD2_COLUMNS[0];
const VALID_TO: &str = SCD2_COLUMNS[1];
const IS_CURRENT: &str = SCD2_COLUMNS[2];

/// Writes the good rows of a run as history; returns the new version and the rows changed.
pub(crate) async fn apply(w: Target<'_>, good: DataFrame) -> Result<(i64, u64)> {
    let q = w.q();
    let Some(seq) = w.config.sequence_by.clone() else {
        return Ok((-1, 0));
    };
    let deletes = w.config.apply_as_deletes.is_some();
    let flagged = if deletes {
        good
    } else {
        good.with_column(DELETE, lit(false)).map_err(&q)?
    };
    let new = flagged
        .with_column(
            PRIORITY,
            when(ident(DELETE), lit(2i32))
                .otherwise(lit(1i32))
                .map_err(&q)?,
        )
        .map_err(&q)?;
    let tombs = if deletes {
        tombstones::open(w.ctx, w.id).await?
    } else {
        None
    };
    let target = w.table.clone().filter(|_| !w.replay);
    let mut all = new.clone();
    let mut stored = None;
    if let Some(t) = &target {
        // The stored versions and tombstones of the keys this run touches.
        let touched = touched(&w, &new).map_err(&q)?;
        let old =
            semi_join(&w, delta::scan(w.id, t, w.session, None).await?, &touched).map_err(&q)?;
        let old_events = conform(&w, &new, old.clone(), false, 0).map_err(&q)?;
        all = all.union(old_events).map_err(&q)?;
        if let Some(tt) = &tombs {
            let frame = tombstones::frame(w.id, tt, w.session).await?;
            let frame = semi_join(&w, frame, &touched).map_err(&q)?;
            all = all
                .union(conform(&w, &new, frame, true, 2).map_err(&q)?)
                .map_err(&q)?;
        }
        stored = Some(old);
    }
    let events = dedup::events(w.config, all, PRIORITY).map_err(&q)?;
    if deletes {
        tombstones::record(
            w.ctx,
            w.config,
            w.id,
            tombs,
            events.clone(),
            w.info,
            w.replay,
        )
        .await?;
    }
    let history = history(&w, &seq, events).map_err(&q)?;
    w.ctx.faults.before_commit(w.id)?;
    let Some(t) = target else {
        let mode = if w.replay && w.ctx.full_refresh {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        };
        let table = delta::write_frame(
            &w.ctx.lake,
            w.id,
            history,
            mode,
            &w.config.partition_by,
            w.info,
        )
        .await?;
        return Ok((
            delta::version(&table),
            delta::last_commit_added_rows(&table).await,
        ));
    };
    let Some(old) = stored else {
        return Ok((delta::version(&t), 0));
    };
    // Stored versions the new history no longer has (a delete won a tie) are removed.
    let mut on = w.config.keys.clone();
    on.push(VALID_FROM.to_string());
    let gone = anti_join(old, &history, &on).map_err(&q)?;
    let source = history
        .with_column(DELETE, lit(false))
        .and_then(|h| h.union(gone))
        .map_err(&q)?;
    let mut columns = w.columns.to_vec();
    columns.extend(SCD2_COLUMNS.iter().map(|c| c.to_string()));
    let (table, counts) = Merge::new(w.id, t, source, &on)
        .columns(&columns)
        .deletes(DELETE)
        .commit(w.info)
        .await?;
    Ok((delta::version(&table), counts.changed()))
}

/// The distinct keys of `new`, renamed `__k_i`.
fn touched(w: &Target<'_>, new: &DataFrame) -> datafusion::error::Result<DataFrame> {
    new.clone()
        .select(
            w.config
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| ident(k).alias(format!("__k_{i}")))
                .collect::<Vec<_>>(),
        )?
        .distinct()
}

/// The rows of `frame` whose key is in `touched`.
fn semi_join(
    w: &Target<'_>,
    frame: DataFrame,
    touched: &DataFrame,
) -> datafusion::error::Result<DataFrame> {
    let left: Vec<&str> = w.config.keys.iter().map(String::as_str).collect();
    let names: Vec<String> = (0..left.len()).map(|i| format!("__k_{i}")).collect();
    let right: Vec<&str> = names.iter().map(String::as_str).collect();
    // Key types of a stored table may differ from the staged ones (e.g. view types).
    let schema = frame.schema().clone();
    let mut cast_keys = Vec::new();
    for (i, k) in left.iter().enumerate() {
        let (_, f) = schema.qualified_field_with_unqualified_name(k)?;
        cast_keys.push(cast(ident(names[i].as_str()), f.data_type().clone()).alias(&names[i]));
    }
    let touched = touched.clone().select(cast_keys)?;
    frame.join(touched, JoinType::LeftSemi, &left, &right, None)
}

/// The rows of `old` whose `on` columns match no row of `new`, as delete events with the
/// columns of `new`.
fn anti_join(
    old: DataFrame,
    new: &DataFrame,
    on: &[String],
) -> datafusion::error::Result<DataFrame> {
    let names: Vec<String> = (0..on.len()).map(|i| format!("__n_{i}")).collect();
    let renamed = new.clone().select(
        on.iter()
            .zip(&names)
            .map(|(c, n)| ident(c).alias(n))
            .collect::<Vec<_>>(),
    )?;
    let left: Vec<&str> = on.iter().map(String::as_str).collect();
    let right: Vec<&str> = names.iter().map(String::as_str).collect();
    let schema = new.schema().clone();
    let mut columns = Vec::new();
    for f in schema.fields() {
        columns.push(cast(ident(f.name()), f.data_type().clone()).alias(f.name()));
    }
    columns.push(lit(true).alias(DELETE));
    old.join(renamed, JoinType::LeftAnti, &left, &right, None)?
        .select(columns)
}

/// `frame` (stored versions or tombstones) as events with the columns and types of `new`:
/// columns `frame` lacks are NULL; `delete` and `priority` set.
fn conform(
    w: &Target<'_>,
    new: &DataFrame,
    frame: DataFrame,
    delete: bool,
    priority: i32,
) -> datafusion::error::Result<DataFrame> {
    let has: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut columns: Vec<Expr> = Vec::new();
    for c in w.columns {
        let (_, f) = new.schema().qualified_field_with_unqualified_name(c)?;
        let ty: DataType = f.data_type().clone();
        columns.push(if has.contains(c) {
            cast(ident(c), ty).alias(c)
        } else {
            lit(ScalarValue::try_from(&ty)?).alias(c)
        });
    }
    columns.push(lit(delete).alias(DELETE));
    columns.push(lit(priority).alias(PRIORITY));
    frame.select(columns)
}

/// The versions the events make: each upsert is valid from its sequence value to the next
/// event's (upsert or delete) of its key.
fn history(w: &Target<'_>, seq: &str, events: DataFrame) -> datafusion::error::Result<DataFrame> {
    let next = lead(ident(seq), Some(1), None)
        .partition_by(w.config.keys.iter().map(ident).collect())
        .order_by(vec![ident(seq).sort(true, false)])
        .build()?
        .alias(VALID_TO);
    let mut columns: Vec<Expr> = w.columns.iter().map(ident).collect();
    columns.push(ident(seq).alias(VALID_FROM));
    columns.push(ident(VALID_TO));
    columns.push(ident(VALID_TO).is_null().alias(IS_CURRENT));
    events
        .window(vec![next])?
        .filter(ident(DELETE).not())?
        .select(columns)
}

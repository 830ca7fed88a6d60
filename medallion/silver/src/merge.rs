//! SCD1: the latest event of each key MERGEd into silver — new keys inserted, changed rows
//! updated, deletes (`apply_as_deletes`) applied — and an older event never overwrites a
//! newer one, not even after the key was deleted (tombstones remember deletes).

use assay_engine::delta::{self, Merge, WriteMode, quote_ident as quote};
use datafusion::common::JoinType;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, cast, ident};
use std::ops::Not;

use crate::error::Result;
use crate::refine::Target;
use crate::stage::DELETE;
use crate::{dedup, tombstones};

/// Writes the good rows of a run; returns the new version and the rows changed.
pub(crate) async fn upsert(w: Target<'_>, good: DataFrame) -> Result<(i64, u64)> {
    let q = w.q();
    let latest = if w.unique_keys {
        good
    } else {
        dedup::latest(w.config, good).map_err(&q)?
    };
    let deletes = w.config.apply_as_deletes.is_some();
    let mut source = latest.clone();
    if deletes {
        let tombs = tombstones::open(w.ctx, w.id).await?;
        if let Some(t) = tombs.as_ref().filter(|_| !w.replay) {
            let frame = tombstones::frame(w.id, t, w.session).await?;
            source = without_tombstoned(&w, latest.clone(), frame).map_err(&q)?;
        }
        tombstones::record(w.ctx, w.config, w.id, tombs, latest, w.info, w.replay).await?;
    }
    w.ctx.faults.before_commit(w.id)?;
    let Some(target) = w.table.filter(|_| !w.replay) else {
        let rows = if deletes {
            source.filter(ident(DELETE).not()).map_err(&q)?
        } else {
            source
        };
        let rows = rows
            .select(w.columns.iter().map(ident).collect::<Vec<_>>())
            .map_err(&q)?;
        let mode = if w.replay && w.ctx.full_refresh {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        };
        let table = delta::write_frame(
            &w.ctx.lake,
            w.id,
            rows,
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
    let mut merge = Merge::new(w.id, target, source, &w.config.keys).columns(w.columns);
    if let Some(seq) = &w.config.sequence_by {
        // An older version of a row never overwrites (or deletes) a newer one.
        let s = quote(seq);
        merge = merge.update_when(format!("(t.{s} IS NULL) OR (s.{s} >= t.{s})"));
    }
    if deletes {
        merge = merge.deletes(DELETE);
    }
    let (table, counts) = merge.commit(w.info).await?;
    Ok((delta::version(&table), counts.changed()))
}

/// `latest` without the upserts that a tombstone at least as new overrides.
fn without_tombstoned(
    w: &Target<'_>,
    latest: DataFrame,
    tombs: DataFrame,
) -> datafusion::error::Result<DataFrame> {
    let Some(seq) = &w.config.sequence_by else {
        return Ok(latest);
    };
    let schema = latest.schema().clone();
    let typed = |c: &str| -> datafusion::error::Result<Expr> {
        let (_, field) = schema.qualified_field_with_unqualified_name(c)?;
        Ok(cast(ident(c), field.data_type().clone()))
    };
    let mut right = Vec::new();
    let mut right_keys = Vec::new();
    for (i, k) in w.config.keys.iter().enumerate() {
        let name = format!("__t_key_{i}");
        right.push(typed(k)?.alias(&name));
        right_keys.push(name);
    }
    right.push(typed(seq)?.alias("__t_seq"));
    let tombs = tombs.select(right)?;
    let left_keys: Vec<&str> = w.config.keys.iter().map(String::as_str).collect();
    let right_keys: Vec<&str> = right_keys.iter().map(String::as_str).collect();
    let mut drop: Vec<&str> = right_keys.clone();
    drop.push("__t_seq");
    latest
        .join(tombs, JoinType::Left, &left_keys, &right_keys, None)?
        .filter(
            ident(DELETE)
                .or(ident("__t_seq").is_null())
                .or(ident(seq).gt(ident("__t_seq"))),
        )?
        .drop_columns(&drop)
}

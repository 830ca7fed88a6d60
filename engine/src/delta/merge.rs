//! MERGE by key, as a builder: new keys inserted, changed rows updated (where a condition
//! holds), rows flagged as deletes removed, unchanged rows untouched; one commit.

use datafusion::dataframe::DataFrame;
use deltalake::{DeltaTable, DeltaTableError};

use super::{CommitInfo, quote_ident};
use crate::error::{EngineError, Result};
use crate::table::TableId;

/// A MERGE of `source` into `target` on equal `keys`.
///
/// `source` must hold at most one row per key. A matched row is updated when one of the
/// other columns differs (and `update_when` holds); with [`Merge::deletes`], a source row
/// whose flag column is true deletes its match instead (where `update_when` holds) and is
/// never inserted.
///
/// # Example
/// ```no_run
/// # async fn f(id: &assay_engine::TableId, t: deltalake::DeltaTable, s: datafusion::dataframe::DataFrame) -> assay_engine::Result<()> {
/// use assay_engine::delta::{CommitInfo, Merge};
/// let keys = vec!["id".to_string()];
/// let columns = vec!["id".to_string(), "v".to_string()];
/// let (table, counts) = Merge::new(id, t, s, &keys)
///     .columns(&columns)
///     .update_when("s.\"v\" >= t.\"v\"")
///     .commit(&CommitInfo::default())
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Merge<'a> {
    id: &'a TableId,
    target: DeltaTable,
    source: DataFrame,
    keys: Vec<String>,
    columns: Vec<String>,
    update_when: Option<String>,
    deletes: Option<String>,
    updates: bool,
}

/// What a MERGE did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
}

impl MergeCounts {
    /// Rows the MERGE wrote or removed.
    pub fn changed(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

impl<'a> Merge<'a> {
    /// A MERGE on equal `keys`; every column of `source` is set unless [`Merge::columns`]
    /// says otherwise.
    pub fn new(id: &'a TableId, target: DeltaTable, source: DataFrame, keys: &[String]) -> Self {
        let columns = source
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Merge {
            id,
            target,
            source,
            keys: keys.to_vec(),
            columns,
            update_when: None,
            deletes: None,
            updates: true,
        }
    }

    /// The target columns to insert and update (each from the source column of its name).
    pub fn columns(mut self, columns: &[String]) -> Self {
        self.columns = columns.to_vec();
        self
    }

    /// A SQL predicate over `t.` (target) and `s.` (source) columns that must hold for a
    /// matched row to be updated or deleted (e.g. the source is not older).
    pub fn update_when(mut self, predicate: impl Into<String>) -> Self {
        self.update_when = Some(predicate.into());
        self
    }

    /// The boolean source column that marks deletes.
    pub fn deletes(mut self, column: &str) -> Self {
        self.deletes = Some(column.to_string());
        self
    }

    /// Matched rows are never updated (only inserts and deletes).
    pub fn insert_only(mut self) -> Self {
        self.updates = false;
        self
    }

    /// Runs the MERGE as one commit.
    ///
    /// # Errors
    /// A conflict after delta-rs' retries, storage, or a bad predicate.
    pub async fn commit(self, info: &CommitInfo) -> Result<(DeltaTable, MergeCounts)> {
        let id = self.id;
        let err = |e: DeltaTableError| EngineError::delta(id, e);
        let on = self
            .keys
            .iter()
            .map(|k| format!("t.{q} = s.{q}", q = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let and = |a: Option<String>, b: Option<String>| match (a, b) {
            (Some(a), Some(b)) => Some(format!("({a}) AND ({b})")),
            (a, b) => a.or(b),
        };
        let flag = self
            .deletes
            .as_ref()
            .map(|d| format!("s.{}", quote_ident(d)));
        let not_flag = flag.as_ref().map(|f| format!("NOT {f}"));
        let mut builder = self
            .target
            .merge(self.source, on)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_writer_properties(super::writer_properties())
            .with_commit_properties(info.properties());
        if let Some(delete) = flag
            .clone()
            .and_then(|f| and(Some(f), self.update_when.clone()))
        {
            builder = builder
                .when_matched_delete(|d| d.predicate(delete))
                .map_err(err)?;
        }
        let updated: Vec<&String> = self
            .columns
            .iter()
            .filter(|c| !self.keys.contains(c))
            .collect();
        if self.updates && !updated.is_empty() {
            let changed = updated
                .iter()
                .map(|c| format!("(t.{q} IS DISTINCT FROM s.{q})", q = quote_ident(c)))
                .collect::<Vec<_>>()
                .join(" OR ");
            let predicate =
                and(and(Some(changed), self.update_when), not_flag.clone()).unwrap_or_default();
            builder = builder
                .when_matched_update(|u| {
                    let u = u.predicate(predicate);
                    updated.iter().fold(u, |u, c| {
                        u.update(quote_ident(c), format!("s.{}", quote_ident(c)))
                    })
                })
                .map_err(err)?;
        }
        let columns = &self.columns;
        builder = builder
            .when_not_matched_insert(|i| {
                let i = match &not_flag {
                    Some(p) => i.predicate(p.clone()),
                    None => i,
                };
                columns.iter().fold(i, |i, c| {
                    i.set(quote_ident(c), format!("s.{}", quote_ident(c)))
                })
            })
            .map_err(err)?;
        let (table, metrics) = builder.await.map_err(err)?;
        let counts = MergeCounts {
            inserted: metrics.num_target_rows_inserted as u64,
            updated: metrics.num_target_rows_updated as u64,
            deleted: metrics.num_target_rows_deleted as u64,
        };
        Ok((table, counts))
    }
}

//! MERGE by keys: new keys inserted, changed rows updated, unchanged rows untouched, and an
//! older version of a row never overwrites a newer one.

use assay_engine::TableId;
use assay_engine::config::SilverConfig;
use assay_engine::delta::CommitInfo;
use datafusion::dataframe::DataFrame;
use deltalake::DeltaTable;

use crate::error::{Result, SilverError};
use crate::stage::quote;

/// Merges `source` into `target`; returns the new version and the rows inserted or updated.
///
/// # Errors
/// The merge failed (conflict after retries, storage).
pub(crate) async fn merge(
    id: &TableId,
    config: &SilverConfig,
    columns: &[String],
    target: DeltaTable,
    source: DataFrame,
    info: &CommitInfo,
) -> Result<(i64, u64)> {
    let err = |e: deltalake::DeltaTableError| SilverError::Merge {
        table: id.to_string(),
        source: Box::new(e),
    };
    let on = config
        .keys
        .iter()
        .map(|k| format!("t.{q} = s.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let changed: Vec<String> = columns
        .iter()
        .filter(|c| !config.keys.contains(c))
        .map(|c| format!("(t.{q} IS DISTINCT FROM s.{q})", q = quote(c)))
        .collect();
    let mut builder = target
        .merge(source, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(info.properties());
    if !changed.is_empty() {
        let mut predicate = format!("({})", changed.join(" OR "));
        if let Some(seq) = &config.sequence_by {
            let q = quote(seq);
            predicate = format!("{predicate} AND ((t.{q} IS NULL) OR (s.{q} >= t.{q}))");
        }
        builder = builder
            .when_matched_update(|u| {
                columns.iter().fold(u.predicate(predicate), |u, c| {
                    u.update(quote(c), format!("s.{}", quote(c)))
                })
            })
            .map_err(err)?;
    }
    builder = builder
        .when_not_matched_insert(|i| {
            columns
                .iter()
                .fold(i, |i, c| i.set(quote(c), format!("s.{}", quote(c))))
        })
        .map_err(err)?;
    let (table, metrics) = builder.await.map_err(err)?;
    let written = (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64;
    Ok((assay_engine::delta::version(&table), written))
}

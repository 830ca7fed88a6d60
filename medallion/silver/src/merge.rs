//! MERGE by keys: new keys inserted, changed rows updated, unchanged rows untouched, and an
//! older version of a row never overwrites a newer one.

use assay_engine::TableId;
use assay_engine::config::SilverConfig;
use assay_engine::delta::{self, CommitInfo, quote_ident as quote};
use datafusion::dataframe::DataFrame;
use deltalake::DeltaTable;

use crate::error::Result;

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
    // An older version of a row never overwrites a newer one.
    let update_when = config.sequence_by.as_ref().map(|seq| {
        let q = quote(seq);
        format!("(t.{q} IS NULL) OR (s.{q} >= t.{q})")
    });
    let (table, written) =
        delta::merge_by_keys(id, target, source, &config.keys, columns, update_when, info).await?;
    Ok((delta::version(&table), written))
}

//! One row per key, or one event per key and sequence value, by window functions.

use assay_engine::config::SilverConfig;
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, SortExpr, ident, lit};

use crate::stage::DELETE;

const RN: &str = "__rn";

/// Keeps the first row of each `partition` in `order`.
fn first_per(
    frame: DataFrame,
    partition: Vec<Expr>,
    order: Vec<SortExpr>,
) -> datafusion::error::Result<DataFrame> {
    let mut rn = row_number().partition_by(partition);
    if !order.is_empty() {
        rn = rn.order_by(order);
    }
    let rn = rn.build()?.alias(RN);
    frame
        .window(vec![rn])?
        .filter(ident(RN).eq(lit(1u64)))?
        .drop_columns(&[RN])
}

fn keys(config: &SilverConfig) -> Vec<Expr> {
    config.keys.iter().map(ident).collect()
}

/// The latest row per key (by `sequence_by`, descending, NULLs last; on a tie a delete
/// wins over an upsert).
///
/// # Errors
/// Planning failed.
pub(crate) fn latest(
    config: &SilverConfig,
    frame: DataFrame,
) -> datafusion::error::Result<DataFrame> {
    let mut order = Vec::new();
    if let Some(s) = &config.sequence_by {
        order.push(ident(s).sort(false, false));
    }
    if config.apply_as_deletes.is_some() {
        order.push(ident(DELETE).sort(false, false));
    }
    first_per(frame, keys(config), order)
}

/// One event per key and `sequence_by` value, the first by `priority` (descending).
///
/// # Errors
/// Planning failed.
pub(crate) fn events(
    config: &SilverConfig,
    frame: DataFrame,
    priority: &str,
) -> datafusion::error::Result<DataFrame> {
    let mut partition = keys(config);
    partition.extend(config.sequence_by.iter().map(ident));
    first_per(frame, partition, vec![ident(priority).sort(false, false)])
}

/// True when some key occurs in more than one row of `frame` (NULL keys group together, as
/// in [`latest`]'s partitions). Only the key columns are read and hashed, so a load of
/// unique keys (the common case) skips the whole-row sort [`latest`] needs: without
/// duplicates every row is its key's latest.
///
/// # Errors
/// Planning or execution failed.
pub(crate) async fn has_duplicate_keys(
    config: &SilverConfig,
    frame: &DataFrame,
) -> datafusion::error::Result<bool> {
    let repeated = frame
        .clone()
        .select(keys(config))?
        .aggregate(keys(config), vec![count(lit(1u8)).alias("__n")])?
        .filter(ident("__n").gt(lit(1i64)))?
        .limit(0, Some(1))?
        .collect()
        .await?;
    Ok(repeated.iter().any(|b| b.num_rows() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::Int64Type;
    use assay_engine::config::SilverConfig;
    use std::sync::Arc;

    fn config() -> SilverConfig {
        let toml = r#"
[[silver]]
name = "t"
from = "bronze.t"
keys = ["k"]
sequence_by = "s"
"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("assay.toml"), toml).unwrap();
        let project = assay_engine::config::Project::load(dir.path()).unwrap();
        project.silver[0].clone()
    }

    /// 1,200,000 rows (29 MB), keys 0..600,000 each twice (sequence 1 and 2), in a session
    /// of 24 MiB:
    /// the check and the deduplication spill, and the answers are exact.
    #[tokio::test]
    async fn the_key_check_and_the_dedup_spill_in_bounded_memory() {
        let n: i64 = 600_000;
        let keys: Vec<i64> = (0..n).chain(0..n).collect();
        let seqs: Vec<i64> = (0..n).map(|_| 1).chain((0..n).map(|_| 2)).collect();
        let vals: Vec<i64> = keys.iter().zip(&seqs).map(|(k, s)| k * 10 + s).collect();
        let batch = RecordBatch::try_from_iter([
            ("k", Arc::new(Int64Array::from(keys)) as _),
            ("s", Arc::new(Int64Array::from(seqs)) as _),
            ("v", Arc::new(Int64Array::from(vals)) as _),
        ])
        .unwrap();
        let ctx = crate::load::bounded_session_of(24 << 20).unwrap();
        let frame = ctx.read_batch(batch).unwrap();
        let cfg = config();
        assert!(has_duplicate_keys(&cfg, &frame).await.unwrap());
        let unique = frame.clone().filter(ident("s").eq(lit(2i64))).unwrap();
        assert!(!has_duplicate_keys(&cfg, &unique).await.unwrap());
        let latest = latest(&cfg, frame)
            .unwrap()
            .aggregate(
                vec![],
                vec![
                    datafusion::functions_aggregate::expr_fn::count(lit(1)).alias("n"),
                    datafusion::functions_aggregate::expr_fn::sum(ident("v")).alias("v"),
                ],
            )
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n_rows = latest[0].column(0).as_primitive::<Int64Type>().value(0);
        let v_sum = latest[0].column(1).as_primitive::<Int64Type>().value(0);
        assert_eq!(n_rows, n);
        // Each key keeps its sequence-2 row: v = k * 10 + 2.
        assert_eq!(v_sum, (0..n).map(|k| k * 10 + 2).sum::<i64>());
    }
}

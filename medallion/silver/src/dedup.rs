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

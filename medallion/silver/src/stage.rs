//! Casts and expectations as DataFusion expressions over the input, evaluated in one plan.
//!
//! The staged frame has, per input column `i`, the raw value as `__raw_i`; the typed output
//! columns under their own names; `__cast_error` (why the row cannot be typed, or NULL);
//! and `__fail_i` per expectation (true when the rule is not true for the row).

use arrow::datatypes::DataType;
use assay_engine::config::{Action, SilverConfig};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::functions::expr_fn::{coalesce, concat, concat_ws, nullif};
use datafusion::logical_expr::{Expr, cast, ident, lit, not, try_cast, when};

use crate::error::{Result, SilverError};

/// The staged input and the names needed to read it.
pub(crate) struct Staged {
    pub(crate) frame: DataFrame,
    /// Input column names, in order (`__raw_i` holds column `i`).
    pub(crate) input_columns: Vec<String>,
    /// Output column names, in order.
    pub(crate) output_columns: Vec<String>,
}

pub(crate) use assay_engine::delta::quote_ident as quote;

/// Builds the staged frame.
///
/// # Errors
/// A declared column or key missing from the input, or an invalid rule.
pub(crate) fn stage(table: &str, config: &SilverConfig, input: DataFrame) -> Result<Staged> {
    let q = |e| SilverError::Query {
        table: table.to_string(),
        source: Box::new(e),
    };
    let input_columns: Vec<String> = input
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let missing = |column: &str| SilverError::MissingColumn {
        table: table.to_string(),
        column: column.to_string(),
        available: input_columns.join(", "),
    };
    let outputs: Vec<(String, Option<(DataType, String)>)> = if config.columns.is_empty() {
        input_columns
            .iter()
            .filter(|c| !c.starts_with('_'))
            .map(|c| (c.clone(), None))
            .collect()
    } else {
        config
            .columns
            .iter()
            .map(|(c, t)| (c.clone(), Some((t.data_type.clone(), t.name.clone()))))
            .collect()
    };
    for (c, _) in &outputs {
        if !input_columns.contains(c) {
            return Err(missing(c));
        }
    }
    let output_names: Vec<String> = outputs.iter().map(|(c, _)| c.clone()).collect();
    for k in config.keys.iter().chain(config.sequence_by.iter()) {
        if !output_names.contains(k) {
            return Err(missing(k));
        }
    }

    let mut projection: Vec<Expr> = input_columns
        .iter()
        .enumerate()
        .map(|(i, c)| ident(c).alias(format!("__raw_{i}")))
        .collect();
    let mut errors: Vec<Expr> = Vec::new();
    for (c, ty) in &outputs {
        let typed = match ty {
            Some((dt, name)) => {
                let typed = try_cast(ident(c), dt.clone());
                errors.push(
                    when(
                        ident(c).is_not_null().and(typed.clone().is_null()),
                        concat(vec![
                            lit(format!("{c}: cannot cast '")),
                            cast(ident(c), DataType::Utf8),
                            lit(format!("' to {name}")),
                        ]),
                    )
                    .end()
                    .map_err(q)?,
                );
                typed
            }
            None => ident(c),
        };
        if config.keys.contains(c) {
            errors.push(
                when(typed.clone().is_null(), lit(format!("key `{c}` is NULL")))
                    .end()
                    .map_err(q)?,
            );
        }
        projection.push(typed.alias(c));
    }
    let cast_error = if errors.is_empty() {
        lit(ScalarValue::Utf8(None))
    } else {
        nullif(concat_ws(lit("; "), errors), lit(""))
    };
    projection.push(cast_error.alias("__cast_error"));
    let mut frame = input.select(projection).map_err(q)?;
    for (i, e) in config.expectations.iter().enumerate() {
        let bad = |message: String| SilverError::BadRule {
            table: table.to_string(),
            rule: e.name.clone(),
            message,
        };
        let expr = frame
            .parse_sql_expr(&e.rule)
            .map_err(|err| bad(err.to_string()))?;
        let failed = not(coalesce(vec![expr, lit(false)]));
        frame = frame
            .with_column(&format!("__fail_{i}"), failed)
            .map_err(|err| bad(err.to_string()))?;
    }
    Ok(Staged {
        frame,
        input_columns,
        output_columns: output_names,
    })
}

/// `__fail_i` for every rule with the given action, OR-ed (false when none).
pub(crate) fn any_failed(config: &SilverConfig, action: Action) -> Expr {
    config
        .expectations
        .iter()
        .enumerate()
        .filter(|(_, e)| e.action == action)
        .map(|(i, _)| ident(format!("__fail_{i}")))
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false))
}

/// Names of the failed quarantine/drop rules of a row, comma-separated.
pub(crate) fn failed_rules(config: &SilverConfig) -> Result<Expr> {
    let mut parts = Vec::new();
    for (i, e) in config.expectations.iter().enumerate() {
        if matches!(e.action, Action::Quarantine | Action::Drop) {
            let expr = when(ident(format!("__fail_{i}")), lit(e.name.clone()))
                .end()
                .map_err(|err| SilverError::Query {
                    table: config.name.clone(),
                    source: Box::new(err),
                })?;
            parts.push(expr);
        }
    }
    Ok(if parts.is_empty() {
        lit(ScalarValue::Utf8(None))
    } else {
        nullif(concat_ws(lit(","), parts), lit(""))
    })
}

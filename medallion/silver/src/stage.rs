//! Casts and expectations as DataFusion expressions over the input, evaluated in one plan.
//!
//! The staged frame has, per input column `i`, the raw value as `__raw_i`; the typed output
//! columns under their own names; `__cast_error` (why the row cannot be typed, or NULL);
//! `__fail_i` per expectation (true when the rule is not true for the row); and, with
//! `apply_as_deletes`, `__delete` (true for a delete event).
//!
//! A delete event only needs its key and sequence: its other columns are neither cast-checked
//! nor held to expectations.

use arrow::datatypes::DataType;
use assay_engine::config::{Action, ConfigExpr, History, SilverConfig};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::functions::expr_fn::{coalesce, concat, concat_ws, nullif};
use datafusion::logical_expr::{Expr, ExprSchemable, cast, ident, lit, not, try_cast, when};
use std::ops::Not;

use crate::decimal::try_parse_decimal;
use crate::error::{Result, SilverError};

/// The staged input and the names needed to read it.
pub(crate) struct Staged {
    pub(crate) frame: DataFrame,
    /// Input column names, in order (`__raw_i` holds column `i`).
    pub(crate) input_columns: Vec<String>,
    /// Output column names, in order.
    pub(crate) output_columns: Vec<String>,
}

/// The column flagging delete events (`apply_as_deletes`).
pub(crate) const DELETE: &str = "__delete";

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
    let mut output_names: Vec<String> = outputs.iter().map(|(c, _)| c.clone()).collect();
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
    let is_delete = match &config.apply_as_deletes {
        Some(p) => Some(delete_predicate(&input, p)?),
        None => None,
    };
    // Keys and the sequence must be valid on every event; other columns only on upserts.
    let ordered = is_delete.is_some() || config.history == History::Scd2;
    let identity = |c: &String| config.keys.contains(c) || config.sequence_by.as_ref() == Some(c);
    let mut errors: Vec<Expr> = Vec::new();
    for (c, ty) in &outputs {
        let typed = match ty {
            Some((dt, name)) => {
                let text = input.schema().fields().iter().any(|f| {
                    f.name() == c
                        && matches!(
                            f.data_type(),
                            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                        )
                });
                let typed = match dt {
                    DataType::Decimal128(p, s) if text => try_parse_decimal(ident(c), *p, *s),
                    _ => try_cast(ident(c), dt.clone()),
                };
                let mut bad = ident(c).is_not_null().and(typed.clone().is_null());
                if let (Some(d), false) = (&is_delete, identity(c)) {
                    bad = bad.and(d.clone().not());
                }
                errors.push(
                    when(
                        bad,
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
        } else if ordered && config.sequence_by.as_ref() == Some(c) {
            errors.push(
                when(
                    typed.clone().is_null(),
                    lit(format!("sequence_by `{c}` is NULL")),
                )
                .end()
                .map_err(q)?,
            );
        }
        projection.push(typed.alias(c));
    }
    if let Some(d) = &is_delete {
        projection.push(d.clone().alias(DELETE));
    }
    let cast_error = if errors.is_empty() {
        lit(ScalarValue::Utf8(None))
    } else {
        nullif(concat_ws(lit("; "), errors), lit(""))
    };
    projection.push(cast_error.alias("__cast_error"));
    let mut frame = input.select(projection).map_err(q)?;
    // Partition columns derived from date parts (`year(order_ts)`) are stored columns.
    for d in &config.derived {
        if !output_names.contains(&d.column) {
            return Err(missing(&d.column));
        }
        frame = frame.with_column(&d.name, d.expr()).map_err(q)?;
        output_names.push(d.name.clone());
    }
    for (i, e) in config.expectations.iter().enumerate() {
        let bad = |message: String| SilverError::BadRule {
            table: table.to_string(),
            rule: e.name.clone(),
            message,
        };
        let expr = frame
            .parse_sql_expr(&e.rule)
            .map_err(|err| bad(err.to_string()))?;
        let mut failed = not(coalesce(vec![expr, lit(false)]));
        if is_delete.is_some() {
            failed = failed.and(ident(DELETE).not());
        }
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

/// Which rows of the staged frame go where, and which are counted for the expectations:
/// one definition for the counting query of a merge and for the one-pass load.
pub(crate) struct Masks {
    /// Rows written to the quarantine table: not typed (or a NULL key), or a failed
    /// `quarantine` rule.
    pub(crate) quarantine: Expr,
    /// Rows dropped by a failed `drop` rule (and not quarantined).
    pub(crate) dropped: Expr,
    /// Rows kept for the table.
    pub(crate) good: Expr,
    /// Rows held to the expectations: typed, and not delete events.
    pub(crate) checked: Expr,
    /// Per expectation, the checked rows that break it.
    pub(crate) failed: Vec<Expr>,
}

impl Masks {
    /// The masks of `config`'s rules over a staged frame.
    pub(crate) fn new(config: &SilverConfig) -> Masks {
        let ok = ident("__cast_error").is_null();
        let quarantine = ident("__cast_error")
            .is_not_null()
            .or(ok.clone().and(any_failed(config, Action::Quarantine)));
        let drop = any_failed(config, Action::Drop);
        let checked = match config.apply_as_deletes {
            Some(_) => ok.clone().and(ident(DELETE).not()),
            None => ok.clone(),
        };
        Masks {
            dropped: quarantine.clone().not().and(drop.clone()),
            good: quarantine.clone().not().and(drop.not()),
            quarantine,
            checked,
            failed: (0..config.expectations.len())
                .map(|i| ok.clone().and(ident(format!("__fail_{i}"))))
                .collect(),
        }
    }
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

/// `apply_as_deletes` planned over the input: a boolean, NULL counted as false.
fn delete_predicate(input: &DataFrame, p: &ConfigExpr) -> Result<Expr> {
    let expr = input
        .parse_sql_expr(&p.sql)
        .map_err(|e| p.error(format!("`{}`: {e}", p.sql)))?;
    let ty = expr
        .get_type(input.schema())
        .map_err(|e| p.error(format!("`{}`: {e}", p.sql)))?;
    if ty != DataType::Boolean && ty != DataType::Null {
        let ty = match ty {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "string".to_string(),
            other => other.to_string(),
        };
        return Err(p
            .error(format!(
                "`{}` is of type {ty}, not a boolean expression",
                p.sql
            ))
            .into());
    }
    Ok(coalesce(vec![expr, lit(false)]))
}

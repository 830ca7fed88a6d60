//! Filtered rows of one table: the typed request (filters, columns, order, paging), its
//! DataFusion plan over the Delta scan, and whether appended rows can change its answer —
//! decided by running the request's own filter over them, not by a second evaluator.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{Expr, SessionContext, lit};
use serde_json::{Map, Value};

use super::error::{Result, ServiceError};

/// A comparison in a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// SQL `LIKE` (`%` and `_`), text columns only.
    Like,
    /// One of several values.
    In,
}

/// One column filter, values as text (typed by the column when planned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// The comparison.
    pub op: FilterOp,
    /// The value (several for `In`).
    pub values: Vec<String>,
    /// How the client wrote the filter (`price[gte]`), for error messages.
    pub param: String,
}

/// A sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The column.
    pub column: String,
    /// Descending.
    pub desc: bool,
}

/// Which rows of a table to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsRequest {
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Columns to return (`None`: all).
    pub columns: Option<Vec<String>>,
    /// Sort order.
    pub order_by: Vec<Order>,
    /// Rows to return at most.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
    /// An older version to read (time travel); the latest when `None`.
    pub at: Option<crate::lifecycle::At>,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn field_type(schema: &DFSchema, param: &str, name: &str) -> Result<DataType> {
    schema
        .fields()
        .iter()
        .find(|f| f.name() == name)
        .map(|f| f.data_type().clone())
        .ok_or_else(|| {
            let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            ServiceError::invalid(format!(
                "`{param}`: unknown column `{name}` (columns: {})",
                known.join(", ")
            ))
        })
}

impl RowsRequest {
    /// True when no filter narrows the rows (any append may change the answer).
    pub fn unfiltered(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters as one predicate over `schema`, each value typed by its column.
    ///
    /// # Errors
    /// An unknown column, a value that is not of the column's type, `like` on a column
    /// that is not text: each names the parameter.
    pub fn predicate(&self, schema: &DFSchema) -> Result<Option<Expr>> {
        let mut all: Option<Expr> = None;
        for f in &self.filters {
            let ty = field_type(schema, &f.param, &f.column)?;
            let c = Expr::Column(Column::from_name(&f.column));
            let typed = |v: &String| -> Result<Expr> {
                ScalarValue::try_from_string(v.clone(), &ty)
                    .ok()
                    .map(lit)
                    .ok_or_else(|| {
                        ServiceError::invalid(format!("`{}`: `{v}` is not a valid {ty}", f.param))
                    })
            };
            let first = || {
                f.values
                    .first()
                    .ok_or_else(|| ServiceError::invalid(format!("`{}`: no value", f.param)))
            };
            let e = match f.op {
                FilterOp::Eq => c.eq(typed(first()?)?),
                FilterOp::Ne => c.not_eq(typed(first()?)?),
                FilterOp::Gt => c.gt(typed(first()?)?),
                FilterOp::Gte => c.gt_eq(typed(first()?)?),
                FilterOp::Lt => c.lt(typed(first()?)?),
                FilterOp::Lte => c.lt_eq(typed(first()?)?),
                FilterOp::Like => {
                    if !is_text(&ty) {
                        return Err(ServiceError::invalid(format!(
                            "`{}`: `like` needs a text column; `{}` is {ty}",
                            f.param, f.column
                        )));
                    }
                    c.like(lit(first()?.clone()))
                }
                FilterOp::In => {
                    let list = f.values.iter().map(typed).collect::<Result<Vec<_>>>()?;
                    c.in_list(list, false)
                }
            };
            all = Some(match all {
                Some(a) => a.and(e),
                None => e,
            });
        }
        Ok(all)
    }

    /// The request over a scan: filters (pushed into the scan), order, columns, paging.
    ///
    /// # Errors
    /// See [`RowsRequest::predicate`]; an unknown `order_by` or `columns` column.
    pub fn apply(&self, mut df: DataFrame) -> Result<DataFrame> {
        let schema = df.schema().clone();
        if let Some(p) = self.predicate(&schema)? {
            df = df.filter(p)?;
        }
        if !self.order_by.is_empty() {
            let mut sort = Vec::new();
            for o in &self.order_by {
                field_type(&schema, "order_by", &o.column)?;
                sort.push(Expr::Column(Column::from_name(&o.column)).sort(!o.desc, o.desc));
            }
            df = df.sort(sort)?;
        }
        if let Some(cols) = &self.columns {
            for c in cols {
                field_type(&schema, "columns", c)?;
            }
            let names: Vec<&str> = cols.iter().map(String::as_str).collect();
            df = df.select_columns(&names)?;
        }
        Ok(df.limit(self.offset, Some(self.limit))?)
    }

    /// Whether appending `rows` (typed as the table) can change this request's answer:
    /// true when unfiltered, or when at least one row satisfies every filter — the same
    /// typed predicate the scan uses, run by DataFusion over the new rows.
    ///
    /// # Errors
    /// The request does not fit the rows' schema (then callers should assume it does).
    pub async fn touched_by(&self, rows: &RecordBatch) -> Result<bool> {
        if self.unfiltered() {
            return Ok(true);
        }
        let df = SessionContext::new().read_batch(rows.clone())?;
        let Some(p) = self.predicate(df.schema())? else {
            return Ok(true);
        };
        Ok(df.filter(p)?.limit(0, Some(1))?.count().await? > 0)
    }
}

/// JSON rows checked against a table's schema and decoded into one batch of it.
///
/// # Errors
/// An unknown field, a missing required field, a value not of its column's type (each
/// naming the row, 0-based, and the field), or no rows.
pub fn decode_rows(
    schema: &std::sync::Arc<Schema>,
    rows: &[Map<String, Value>],
) -> Result<RecordBatch> {
    validate(schema, rows)?;
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_strict_mode(true)
        .build_decoder()
        .map_err(ServiceError::internal)?;
    decoder
        .serialize(rows)
        .map_err(|e| ServiceError::invalid(format!("rows: {e}")))?;
    decoder
        .flush()
        .map_err(|e| ServiceError::invalid(format!("rows: {e}")))?
        .ok_or_else(|| ServiceError::invalid("body: no rows"))
}

/// Checks every row against the table's schema.
fn validate(schema: &Schema, rows: &[Map<String, Value>]) -> Result<()> {
    let bad = |i: usize, msg: String| ServiceError::invalid(format!("row {i}: {msg}"));
    if rows.is_empty() {
        return Err(ServiceError::invalid("body: no rows"));
    }
    for (i, row) in rows.iter().enumerate() {
        for name in row.keys() {
            if schema.field_with_name(name).is_err() {
                let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(bad(
                    i,
                    format!("unknown field `{name}` (columns: {})", cols.join(", ")),
                ));
            }
        }
        for f in schema.fields() {
            let name = f.name();
            let v = row.get(name).unwrap_or(&Value::Null);
            if v.is_null() {
                if !f.is_nullable() {
                    return Err(bad(i, format!("field `{name}` is required")));
                }
                continue;
            }
            let ty = f.data_type();
            let ok = match ty {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => v
                    .as_i64()
                    .is_some_and(|n| ScalarValue::try_from_string(n.to_string(), ty).is_ok()),
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => v
                    .as_u64()
                    .is_some_and(|n| ScalarValue::try_from_string(n.to_string(), ty).is_ok()),
                DataType::Float16 | DataType::Float32 | DataType::Float64 => v.is_number(),
                DataType::Boolean => v.is_boolean(),
                t if is_text(t) => v.is_string(),
                DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..) => {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n)
                            if matches!(
                                ty,
                                DataType::Decimal128(..) | DataType::Decimal256(..)
                            ) =>
                        {
                            n.to_string()
                        }
                        _ => String::new(),
                    };
                    !text.is_empty()
                        && ScalarValue::try_from_string(text, ty).is_ok_and(|s| !s.is_null())
                }
                _ => true, // nested and other types: the decoder decides
            };
            if !ok {
                return Err(bad(i, format!("field `{name}`: {v} is not a valid {ty}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::datatypes::{Field, TimeUnit};

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn request(filters: &[(&str, FilterOp, &[&str])]) -> RowsRequest {
        RowsRequest {
            filters: filters
                .iter()
                .map(|(c, op, v)| Filter {
                    column: c.to_string(),
                    op: *op,
                    values: v.iter().map(|s| s.to_string()).collect(),
                    param: c.to_string(),
                })
                .collect(),
            columns: None,
            order_by: Vec::new(),
            limit: 100,
            offset: 0,
            at: None,
        }
    }

    fn rows(json: &str) -> RecordBatch {
        let rows: Vec<Map<String, Value>> = serde_json::from_str(json).unwrap();
        decode_rows(&schema(), &rows).unwrap()
    }

    #[tokio::test]
    async fn appended_rows_touch_exactly_the_requests_their_typed_values_match() {
        use FilterOp::*;
        // A decimal sent as a string and as a number, a date, a timestamp with an offset.
        let new = rows(
            r#"[{"name": "Mug", "price": "10.50", "day": "2026-11-01", "at": "2026-11-01T10:00:00+02:00", "n": null},
                {"name": "Pot", "price": 7, "day": "2026-11-03", "at": "2026-11-02T00:00:00Z", "n": 3}]"#,
        );
        let cases: Vec<(RowsRequest, bool)> = vec![
            (request(&[("price", Eq, &["10.5"])]), true),
            (request(&[("price", Eq, &["10.50"])]), true),
            (request(&[("price", Eq, &["7.00"])]), true),
            (request(&[("price", Eq, &["10.51"])]), false),
            (request(&[("price", Gte, &["11"])]), false),
            (request(&[("price", Lt, &["8"])]), true),
            (request(&[("day", Eq, &["2026-11-01"])]), true),
            (request(&[("day", Gt, &["2026-11-03"])]), false),
            (request(&[("at", Eq, &["2026-11-01T08:00:00Z"])]), true),
            (request(&[("at", Lt, &["2026-11-01T08:00:00Z"])]), false),
            (request(&[("price", In, &["1", "7"])]), true),
            (request(&[("price", In, &["1", "2"])]), false),
            (request(&[("name", Like, &["M%"])]), true),
            (request(&[("name", Like, &["X%"])]), false),
            // NULL matches no comparison; the other row has n = 3.
            (request(&[("n", Eq, &["1"])]), false),
            (request(&[("n", Ne, &["1"])]), true),
            (request(&[("name", Eq, &["Mug"]), ("n", Eq, &["3"])]), false),
            (request(&[]), true),
        ];
        for (req, want) in cases {
            assert_eq!(
                req.touched_by(&new).await.unwrap(),
                want,
                "{:?}",
                req.filters
            );
        }
    }

    #[test]
    fn bad_filters_and_rows_name_the_parameter_row_and_field() {
        let df = DFSchema::try_from(schema().as_ref().clone()).unwrap();
        let e = request(&[("nope", FilterOp::Eq, &["1"])])
            .predicate(&df)
            .unwrap_err();
        assert!(
            e.message().starts_with("`nope`: unknown column `nope`"),
            "{e}"
        );
        let e = request(&[("price", FilterOp::Eq, &["ten"])])
            .predicate(&df)
            .unwrap_err();
        assert_eq!(
            e.message(),
            "`price`: `ten` is not a valid Decimal128(10, 2)"
        );
        let e = request(&[("n", FilterOp::Like, &["1%"])])
            .predicate(&df)
            .unwrap_err();
        assert!(e.message().contains("`like` needs a text column"), "{e}");
        let bad: Vec<Map<String, Value>> =
            serde_json::from_str(r#"[{"name": "a"}, {"price": "x"}]"#).unwrap();
        let e = decode_rows(&schema(), &bad).unwrap_err();
        assert_eq!(
            e.message(),
            "row 1: field `price`: \"x\" is not a valid Decimal128(10, 2)"
        );
    }
}

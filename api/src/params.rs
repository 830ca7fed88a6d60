//! The query string of `GET /tables/{t}/rows`: column filters and paging, parsed once,
//! normalized for cache keys, turned into DataFusion expressions for the scan, and matched
//! against JSON rows to decide which cached answers an insert makes stale.

use std::fmt::Write as _;

use crate::error::{ApiError, Result};

/// Rows returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// A comparison in a filter: `col=v` is `Eq`, `col[op]=v` the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
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
    /// SQL `LIKE` (`%` and `_`).
    Like,
    /// One of a comma-separated list.
    In,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" | "neq" => Op::Ne,
            "gt" => Op::Gt,
            "gte" | "ge" => Op::Gte,
            "lt" => Op::Lt,
            "lte" | "le" => Op::Lte,
            "like" => Op::Like,
            "in" => Op::In,
            _ => return None,
        })
    }
}

/// One column filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// The comparison.
    pub op: Op,
    /// The value as written (for `In`: comma-separated values).
    pub value: String,
    /// The parameter as written, for error messages (`price[gte]`).
    pub param: String,
}

impl Filter {
    /// The values of an `In` filter, or the single value.
    pub fn values(&self) -> Vec<&str> {
        match self.op {
            Op::In => self.value.split(',').collect(),
            _ => vec![self.value.as_str()],
        }
    }

    /// Whether a JSON row (as inserted) satisfies the filter. A value that cannot be compared
    /// counts as a match: a false "match" only costs a cache miss, a false "no match" would
    /// serve a stale answer.
    pub fn matches(&self, row: &serde_json::Map<String, serde_json::Value>) -> bool {
        use serde_json::Value;
        let Some(v) = row.get(&self.column) else {
            return false; // the column is NULL in the new row: no comparison is true
        };
        let text = match v {
            Value::Null => return false,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return true,
        };
        let cmp = |want: &str| -> Option<std::cmp::Ordering> {
            match (text.parse::<f64>(), want.parse::<f64>()) {
                (Ok(a), Ok(b)) if matches!(v, Value::Number(_)) => a.partial_cmp(&b),
                _ => Some(text.as_str().cmp(want)),
            }
        };
        use std::cmp::Ordering::*;
        match self.op {
            Op::Eq => cmp(&self.value).is_none_or(|o| o == Equal),
            Op::Ne => cmp(&self.value).is_none_or(|o| o != Equal),
            Op::Gt => cmp(&self.value).is_none_or(|o| o == Greater),
            Op::Gte => cmp(&self.value).is_none_or(|o| o != Less),
            Op::Lt => cmp(&self.value).is_none_or(|o| o == Less),
            Op::Lte => cmp(&self.value).is_none_or(|o| o != Greater),
            Op::Like => like(&text, &self.value),
            Op::In => self
                .values()
                .iter()
                .any(|w| cmp(w).is_none_or(|o| o == Equal)),
        }
    }
}

/// SQL `LIKE`: `%` any run, `_` any one character, no escape.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative match with backtracking to the last `%`.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) && p[pi] != '%' {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// Sort direction of an `order_by` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The column.
    pub column: String,
    /// Descending (`-col` or `col.desc`).
    pub desc: bool,
}

/// A parsed rows query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsQuery {
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
    /// The query string sorted and normalized: the cache key's last part.
    pub normalized: String,
}

fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '&' | '=' | '%' | '+' | ':') || c.is_control() || c == ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

fn names(param: &str, value: &str) -> Result<Vec<String>> {
    let list: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "`{param}`: give at least one column"
        )));
    }
    Ok(list)
}

impl RowsQuery {
    /// Parses a raw (percent-encoded) query string. `max_limit` caps `limit`.
    ///
    /// # Errors
    /// A 400 naming the parameter: a bad number, an unknown operator, an empty name, a
    /// repeated paging parameter.
    pub fn parse(raw: &str, max_limit: usize) -> Result<RowsQuery> {
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        pairs.sort();
        let mut q = RowsQuery {
            filters: Vec::new(),
            columns: None,
            order_by: Vec::new(),
            limit: DEFAULT_LIMIT,
            offset: 0,
            normalized: String::new(),
        };
        let mut seen = std::collections::HashSet::new();
        for (k, v) in &pairs {
            let control = matches!(k.as_str(), "columns" | "order_by" | "limit" | "offset");
            if control && !seen.insert(k.clone()) {
                return Err(ApiError::BadRequest(format!("`{k}` is given twice")));
            }
            match k.as_str() {
                "columns" => q.columns = Some(names(k, v)?),
                "order_by" => {
                    for item in names(k, v)? {
                        let (column, desc) = if let Some(c) = item.strip_prefix('-') {
                            (c.to_string(), true)
                        } else if let Some(c) = item.strip_suffix(".desc") {
                            (c.to_string(), true)
                        } else if let Some(c) = item.strip_suffix(".asc") {
                            (c.to_string(), false)
                        } else {
                            (item.clone(), false)
                        };
                        q.order_by.push(Order { column, desc });
                    }
                }
                "limit" => {
                    let n: usize = v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("`limit`: `{v}` is not a whole number"))
                    })?;
                    if n > max_limit {
                        return Err(ApiError::BadRequest(format!(
                            "`limit`: {n} is above the maximum of {max_limit}"
                        )));
                    }
                    q.limit = n;
                }
                "offset" => {
                    q.offset = v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("`offset`: `{v}` is not a whole number"))
                    })?;
                }
                _ => q.filters.push(Self::filter(k, v)?),
            }
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                q.normalized.push('&');
            }
            escape(&mut q.normalized, k);
            q.normalized.push('=');
            escape(&mut q.normalized, v);
        }
        Ok(q)
    }

    fn filter(param: &str, value: &str) -> Result<Filter> {
        let (column, op) = match param.split_once('[') {
            None => (param, Op::Eq),
            Some((column, rest)) => {
                let op = rest.strip_suffix(']').ok_or_else(|| {
                    ApiError::BadRequest(format!("`{param}`: expected `column[operator]`"))
                })?;
                let op = Op::parse(op).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`{param}`: unknown operator `{op}` (eq, ne, gt, gte, lt, lte, like, in)"
                    ))
                })?;
                (column, op)
            }
        };
        if column.is_empty() {
            return Err(ApiError::BadRequest(format!("`{param}`: no column name")));
        }
        if op == Op::In && value.split(',').any(str::is_empty) {
            return Err(ApiError::BadRequest(format!(
                "`{param}`: give comma-separated values without empty items"
            )));
        }
        Ok(Filter {
            column: column.to_string(),
            op,
            value: value.to_string(),
            param: param.to_string(),
        })
    }

    /// True when no filter narrows the rows (any insert may change the answer).
    pub fn unfiltered(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether an inserted row can change this query's answer.
    pub fn affected_by(&self, row: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.filters.iter().all(|f| f.matches(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_paging_and_a_sorted_key() {
        let q = RowsQuery::parse(
            "price%5Bgte%5D=10&category=C&limit=5&order_by=-price,name&columns=name,price",
            1000,
        )
        .unwrap();
        assert_eq!(q.limit, 5);
        assert_eq!(q.filters.len(), 2);
        assert_eq!(q.filters[0].column, "category");
        assert_eq!(q.filters[1].op, Op::Gte);
        assert_eq!(
            q.order_by,
            vec![
                Order {
                    column: "price".into(),
                    desc: true
                },
                Order {
                    column: "name".into(),
                    desc: false
                }
            ]
        );
        assert_eq!(
            q.normalized,
            "category=C&columns=name,price&limit=5&order_by=-price,name&price[gte]=10"
        );
        // The same query in another order has the same key.
        let again = RowsQuery::parse(
            "columns=name,price&order_by=-price,name&limit=5&category=C&price[gte]=10",
            1000,
        )
        .unwrap();
        assert_eq!(again.normalized, q.normalized);
        assert_eq!(
            RowsQuery::parse("name=a%26b%3Dc", 10).unwrap().normalized,
            "name=a%26b%3Dc"
        );
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (qs, want) in [
            ("limit=x", "`limit`"),
            ("limit=5000", "maximum of 1000"),
            ("price[foo]=1", "unknown operator `foo`"),
            ("price[gte=1", "expected `column[operator]`"),
            ("[gte]=1", "no column name"),
            ("limit=1&limit=2", "given twice"),
            ("id[in]=1,,2", "without empty items"),
            ("columns=", "at least one column"),
        ] {
            let e = RowsQuery::parse(qs, 1000).unwrap_err().to_string();
            assert!(e.contains(want), "{qs}: {e}");
        }
    }

    #[test]
    fn filters_match_json_rows() {
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"category":"C","price":12.5,"name":"Mug","n":null}"#).unwrap();
        let q = |s: &str| RowsQuery::parse(s, 100).unwrap();
        assert!(q("category=C").affected_by(&row));
        assert!(!q("category=A").affected_by(&row));
        assert!(q("price[gte]=10").affected_by(&row));
        assert!(!q("price[gt]=100").affected_by(&row));
        assert!(!q("price[lt]=9").affected_by(&row)); // numeric, not text, comparison
        assert!(q("name[like]=M%25").affected_by(&row));
        assert!(!q("name[like]=X%25").affected_by(&row));
        assert!(q("category[in]=A,C").affected_by(&row));
        assert!(!q("n=1").affected_by(&row));
        assert!(q("limit=5").affected_by(&row));
        assert!(like("espresso", "%press_"));
        assert!(!like("espresso", "press%"));
    }
}

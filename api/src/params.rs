//! The query string of `GET /tables/{t}/rows`: column filters and paging, parsed once into
//! the serving core's [`RowsRequest`] and normalized for cache keys (from which a cached
//! key's request is parsed back when an append asks which keys it touches).

use std::fmt::Write as _;

use assay_engine::service::{Filter, FilterOp, Order, RowsRequest};

use crate::error::{ApiError, Result};

/// Rows returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

fn op(s: &str) -> Option<FilterOp> {
    Some(match s {
        "eq" => FilterOp::Eq,
        "ne" | "neq" => FilterOp::Ne,
        "gt" => FilterOp::Gt,
        "gte" | "ge" => FilterOp::Gte,
        "lt" => FilterOp::Lt,
        "lte" | "le" => FilterOp::Lte,
        "like" => FilterOp::Like,
        "in" => FilterOp::In,
        _ => return None,
    })
}

/// A parsed rows query string: the request for the serving core and the cache key's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsQuery {
    /// What to read.
    pub request: RowsRequest,
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
        return Err(ApiError::bad_request(format!(
            "`{param}`: give at least one column"
        )));
    }
    Ok(list)
}

/// A `version=N` or `as_of=T` parameter (time travel).
///
/// # Errors
/// A 400 naming the parameter: not a whole number, not a timestamp.
pub fn at(param: &str, value: &str) -> Result<assay_engine::lifecycle::At> {
    use assay_engine::lifecycle::{At, parse_timestamp};
    if param == "version" {
        let v: i64 = value.parse().ok().filter(|v| *v >= 0).ok_or_else(|| {
            ApiError::bad_request(format!("`version`: `{value}` is not a version number"))
        })?;
        return Ok(At::Version(v));
    }
    // A query string turns an unescaped `+` of the offset into a space: take it back.
    let value = if value.contains('T') {
        value.replacen(' ', "+", 1)
    } else {
        value.to_string()
    };
    parse_timestamp(&value)
        .map(At::Timestamp)
        .map_err(|e| ApiError::bad_request(format!("`{param}`: {e}")))
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
        let mut q = RowsRequest {
            filters: Vec::new(),
            columns: None,
            order_by: Vec::new(),
            limit: DEFAULT_LIMIT,
            offset: 0,
            at: None,
        };
        let mut normalized = String::new();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in &pairs {
            let control = matches!(
                k.as_str(),
                "columns" | "order_by" | "limit" | "offset" | "version" | "as_of"
            );
            if control && !seen.insert(k.clone()) {
                return Err(ApiError::bad_request(format!("`{k}` is given twice")));
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
                        ApiError::bad_request(format!("`limit`: `{v}` is not a whole number"))
                    })?;
                    if n > max_limit {
                        return Err(ApiError::bad_request(format!(
                            "`limit`: {n} is above the maximum of {max_limit}"
                        )));
                    }
                    q.limit = n;
                }
                "offset" => {
                    q.offset = v.parse().map_err(|_| {
                        ApiError::bad_request(format!("`offset`: `{v}` is not a whole number"))
                    })?;
                }
                "version" | "as_of" => {
                    if q.at.is_some() {
                        return Err(ApiError::bad_request(
                            "give one of `version` and `as_of`, not both",
                        ));
                    }
                    q.at = Some(at(k, v)?);
                }
                _ => q.filters.push(Self::filter(k, v)?),
            }
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                normalized.push('&');
            }
            escape(&mut normalized, k);
            normalized.push('=');
            escape(&mut normalized, v);
        }
        Ok(RowsQuery {
            request: q,
            normalized,
        })
    }

    fn filter(param: &str, value: &str) -> Result<Filter> {
        let (column, op) = match param.split_once('[') {
            None => (param, FilterOp::Eq),
            Some((column, rest)) => {
                let name = rest.strip_suffix(']').ok_or_else(|| {
                    ApiError::bad_request(format!("`{param}`: expected `column[operator]`"))
                })?;
                let o = op(name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`{param}`: unknown operator `{name}` (eq, ne, gt, gte, lt, lte, like, in)"
                    ))
                })?;
                (column, o)
            }
        };
        if column.is_empty() {
            return Err(ApiError::bad_request(format!("`{param}`: no column name")));
        }
        if op == FilterOp::In && value.split(',').any(str::is_empty) {
            return Err(ApiError::bad_request(format!(
                "`{param}`: give comma-separated values without empty items"
            )));
        }
        let values = match op {
            FilterOp::In => value.split(',').map(str::to_string).collect(),
            _ => vec![value.to_string()],
        };
        Ok(Filter {
            column: column.to_string(),
            op,
            values,
            param: param.to_string(),
        })
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
        let r = &q.request;
        assert_eq!(r.limit, 5);
        assert_eq!(r.filters.len(), 2);
        assert_eq!(r.filters[0].column, "category");
        assert_eq!(r.filters[1].op, FilterOp::Gte);
        assert_eq!(
            r.order_by,
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
        // A normalized key parses back to the same request.
        let back = RowsQuery::parse(&q.normalized, 1000).unwrap();
        assert_eq!(back, q);
        assert_eq!(
            RowsQuery::parse("id%5Bin%5D=1,2", 10)
                .unwrap()
                .request
                .filters[0]
                .values,
            vec!["1".to_string(), "2".to_string()]
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
}

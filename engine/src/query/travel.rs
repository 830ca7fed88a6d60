//! Time travel in served SQL. `FROM gold.x VERSION AS OF 3` and
//! `FROM gold.x TIMESTAMP AS OF '2026-11-30T10:00:00Z'` (Delta's syntax, as Databricks and
//! Spark write it) become references to the table names `x@v3` and `x@20261130100000000`
//! (Databricks' `@` syntax, which may also be written directly: `gold."x@v3"`); the lake
//! catalog resolves such a name to that version of the table. Table names never hold `@`,
//! so no real table is shadowed.

use chrono::{DateTime, Utc};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::QueryError;
use crate::lifecycle::{At, parse_timestamp};

/// The `@` form of a timestamp: `yyyyMMddHHmmssSSS`, UTC.
const STAMP: &str = "%Y%m%d%H%M%S%3f";

/// Rewrites `VERSION AS OF n` and `TIMESTAMP AS OF 'time'` after a table name into the `@`
/// form of the name; SQL without them is returned as it is.
///
/// # Errors
/// [`QueryError::InvalidSql`] for a clause after an alias instead of the table name, or a
/// time that does not parse.
pub fn rewrite(sql: &str) -> Result<String, QueryError> {
    let Ok(mut tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(sql.to_string());
    };
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let Some(kind) = clause_start(&tokens[i]) else {
            i += 1;
            continue;
        };
        let Some((end, value)) = clause(&tokens, i) else {
            i += 1;
            continue;
        };
        let suffix = match (kind, &value) {
            (Keyword::VERSION, Token::Number(n, _)) => {
                let v: i64 = n.parse().map_err(|_| {
                    QueryError::InvalidSql(format!("VERSION AS OF {n}: not a version number"))
                })?;
                format!("v{v}")
            }
            (Keyword::TIMESTAMP, Token::SingleQuotedString(t)) => {
                let at = parse_timestamp(t)
                    .map_err(|e| QueryError::InvalidSql(format!("TIMESTAMP AS OF: {e}")))?;
                at.format(STAMP).to_string()
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let Some(name_at) = previous(&tokens, i) else {
            i += 1;
            continue;
        };
        let Token::Word(name) = &tokens[name_at] else {
            i += 1;
            continue;
        };
        if previous(&tokens, name_at)
            .is_some_and(|p| matches!(&tokens[p], Token::Word(w) if w.keyword == Keyword::AS))
        {
            return Err(QueryError::InvalidSql(format!(
                "`{}` AS OF comes right after the table name, before its alias `{}`",
                if kind == Keyword::VERSION {
                    "VERSION"
                } else {
                    "TIMESTAMP"
                },
                name.value
            )));
        }
        // Unquoted names are folded to lower case, as the planner folds them.
        let base = if name.quote_style.is_some() {
            name.value.clone()
        } else {
            name.value.to_lowercase()
        };
        tokens[name_at] = Token::Word(Word {
            value: format!("{base}@{suffix}"),
            quote_style: Some('"'),
            keyword: Keyword::NoKeyword,
        });
        tokens.drain(name_at + 1..=end);
        i = name_at + 1;
        changed = true;
    }
    if !changed {
        return Ok(sql.to_string());
    }
    Ok(tokens.iter().map(ToString::to_string).collect())
}

/// `VERSION` or `TIMESTAMP` as an unquoted word.
fn clause_start(t: &Token) -> Option<Keyword> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => [Keyword::VERSION, Keyword::TIMESTAMP]
            .into_iter()
            .find(|k| w.keyword == *k),
        _ => None,
    }
}

/// The index of the clause's last token and its value, for `KIND AS OF value` at `start`.
fn clause(tokens: &[Token], start: usize) -> Option<(usize, Token)> {
    let mut at = start;
    for expected in [Keyword::AS, Keyword::OF] {
        at = next(tokens, at)?;
        match &tokens[at] {
            Token::Word(w) if w.keyword == expected && w.quote_style.is_none() => {}
            _ => return None,
        }
    }
    at = next(tokens, at)?;
    Some((at, tokens[at].clone()))
}

fn next(tokens: &[Token], from: usize) -> Option<usize> {
    (from + 1..tokens.len()).find(|&j| !matches!(tokens[j], Token::Whitespace(_)))
}

fn previous(tokens: &[Token], from: usize) -> Option<usize> {
    (0..from)
        .rev()
        .find(|&j| !matches!(tokens[j], Token::Whitespace(_)))
}

/// Splits a table name of the `@` form into the table's name and the version asked for;
/// `None` for a plain name.
///
/// # Errors
/// An `@` suffix that is neither `v<version>` nor a 17-digit `yyyyMMddHHmmssSSS` time.
pub fn split(name: &str) -> Result<Option<(&str, At)>, QueryError> {
    let Some((base, suffix)) = name.split_once('@') else {
        return Ok(None);
    };
    let bad = || {
        QueryError::InvalidSql(format!(
            "`{name}`: after `@` comes v<version> (e.g. `{base}@v3`) or a time yyyyMMddHHmmssSSS"
        ))
    };
    if let Some(v) = suffix.strip_prefix('v') {
        let v: i64 = v.parse().map_err(|_| bad())?;
        return Ok(Some((base, At::Version(v))));
    }
    if suffix.len() != 17 || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let t = chrono::NaiveDateTime::parse_from_str(suffix, STAMP).map_err(|_| bad())?;
    Ok(Some((
        base,
        At::Timestamp(DateTime::<Utc>::from_naive_utc_and_offset(t, Utc)),
    )))
}

#[cfg(test)]
mod tests {
    use super::{At, rewrite, split};

    #[test]
    fn version_and_timestamp_clauses_become_at_names() {
        assert_eq!(
            rewrite("SELECT * FROM gold.orders VERSION AS OF 3 WHERE x = 1").unwrap(),
            "SELECT * FROM gold.\"orders@v3\" WHERE x = 1"
        );
        assert_eq!(
            rewrite("select count(*) from Orders timestamp as of '2026-11-30T10:00:00Z' o")
                .unwrap(),
            "select count(*) from \"orders@20261130100000000\" o"
        );
        // Both sides of a join, each at its own version.
        assert_eq!(
            rewrite("SELECT 1 FROM a VERSION AS OF 1 JOIN a VERSION AS OF 2 USING (k)").unwrap(),
            "SELECT 1 FROM \"a@v1\" JOIN \"a@v2\" USING (k)"
        );
        // Untouched: strings, casts, other SQL.
        for sql in [
            "SELECT 'x VERSION AS OF 3' FROM t",
            "SELECT CAST(a AS TIMESTAMP) AS of FROM t",
            "SELECT version FROM t",
        ] {
            assert_eq!(rewrite(sql).unwrap(), sql);
        }
    }

    #[test]
    fn misplaced_or_bad_clauses_are_refused() {
        let e = rewrite("SELECT * FROM t AS x VERSION AS OF 3").unwrap_err();
        assert!(e.to_string().contains("before its alias"), "{e}");
        let e = rewrite("SELECT * FROM t TIMESTAMP AS OF 'yesterday'").unwrap_err();
        assert!(e.to_string().contains("not a timestamp"), "{e}");
    }

    #[test]
    fn at_names_split_into_table_and_version() {
        assert_eq!(split("orders").unwrap(), None);
        assert_eq!(
            split("orders@v12").unwrap(),
            Some(("orders", At::Version(12)))
        );
        let Some(("orders", At::Timestamp(t))) = split("orders@20261130100000000").unwrap() else {
            panic!("not a timestamp");
        };
        assert_eq!(t.to_rfc3339(), "2026-11-30T10:00:00+00:00");
        assert!(split("orders@yesterday").is_err());
        assert!(split("orders@v").is_err());
    }
}

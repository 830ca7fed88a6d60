//! `source = { kind = "postgres", ... }`: a bronze table read from a PostgreSQL table or
//! query, streamed, incremental by a watermark column.

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use crate::error::Result;

/// Incremental reading by a watermark column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbIncremental {
    /// The column whose largest value is the watermark (e.g. `updated_at`).
    pub column: String,
    /// A column that tells rows with the same watermark apart (e.g. the primary key);
    /// without it, whole rows are compared.
    pub key: Option<String>,
}

/// Reading a big table in parallel ranges of an integer column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbParallel {
    /// The integer column whose range is split (e.g. the primary key).
    pub column: String,
    /// How many ranges are read at once, each on its own connection (2 to 32).
    pub ranges: u32,
}

/// A validated database source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSource {
    /// The environment variable holding the connection URL (a secret).
    pub url_env: String,
    /// A table (`name` or `schema.name`), or
    pub table: Option<String>,
    /// a query whose rows are the source.
    pub query: Option<String>,
    /// Read only rows past the last run's watermark.
    pub incremental: Option<DbIncremental>,
    /// Read in parallel ranges (PostgreSQL).
    pub parallel: Option<DbParallel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDbParallel {
    column: String,
    ranges: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDbIncremental {
    column: String,
    key: Option<String>,
}

/// `source = { kind = "postgres", ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    url_env: String,
    table: Option<String>,
    query: Option<String>,
    incremental: Option<RawDbIncremental>,
    parallel: Option<RawDbParallel>,
}

fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').count() <= 2
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        })
}

impl Validator<'_> {
    /// Validates a database source; errors name `key` and the line of the entry's name.
    pub(super) fn database_source(
        &self,
        at: &Spanned<String>,
        key: &str,
        raw: RawDatabase,
        postgres: bool,
    ) -> Result<DatabaseSource> {
        let bad = |field: &str, msg: String| self.err(at, &format!("{key}.{field}"), msg);
        if raw.url_env.trim().is_empty() {
            return Err(bad("url_env", "names no environment variable".into()));
        }
        match (&raw.table, &raw.query) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad("table", "give either `table` or `query`".into()));
            }
            (Some(t), None) if !identifier(t) => {
                return Err(bad(
                    "table",
                    format!("`{t}` is not a table name (`name` or `schema.name`)"),
                ));
            }
            _ => {}
        }
        let incremental = match raw.incremental {
            None => None,
            Some(i) => {
                for (field, v) in [("column", Some(&i.column)), ("key", i.key.as_ref())] {
                    if let Some(v) = v
                        && !identifier(v)
                    {
                        return Err(bad(
                            &format!("incremental.{field}"),
                            format!("`{v}` is not a column name"),
                        ));
                    }
                }
                Some(DbIncremental {
                    column: i.column,
                    key: i.key,
                })
            }
        };
        let parallel = match raw.parallel {
            None => None,
            Some(_) if !postgres => {
                return Err(bad(
                    "parallel",
                    "parallel range reads are for `postgres` sources".into(),
                ));
            }
            Some(p) => {
                if !identifier(&p.column) {
                    return Err(bad(
                        "parallel.column",
                        format!("`{}` is not a column name", p.column),
                    ));
                }
                if !(2..=32).contains(&p.ranges) {
                    return Err(bad(
                        "parallel.ranges",
                        format!("{} is not a number from 2 to 32", p.ranges),
                    ));
                }
                Some(DbParallel {
                    column: p.column,
                    ranges: p.ranges,
                })
            }
        };
        Ok(DatabaseSource {
            url_env: raw.url_env,
            table: raw.table,
            query: raw.query,
            incremental,
            parallel,
        })
    }
}

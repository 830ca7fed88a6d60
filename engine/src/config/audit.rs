//! Gold audits: checks a model's new version must pass before it is published (write,
//! audit, then publish), as `expect` rules or dbt-style shorthands.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use super::medallion::Action;
use super::raw::{RawExpectation, RawFreshness, RawGold};
use crate::error::Result;
use crate::table::TableId;

/// One audit of a gold model.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// The name recorded in `_system.expectations` (`unique(order_id)`, a rule's own name).
    pub name: String,
    /// What is checked.
    pub check: Check,
    /// `fail`: the new version is not published; `warn`: it is, and the outcome recorded.
    pub action: Action,
}

/// What an audit checks on the new version.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// A SQL boolean over the model's columns; a row passes only when it is true.
    Rule(String),
    /// No two rows share these columns' values (rows with a NULL among them are ignored).
    Unique(Vec<String>),
    /// The column has no NULL.
    NotNull(String),
    /// Every non-NULL value of the column is one of these SQL literals.
    AcceptedValues {
        /// The column.
        column: String,
        /// The accepted values, as SQL literals (`'a'`, `1`, `TRUE`).
        values: Vec<String>,
    },
    /// Every non-NULL value of the column exists in `table.to`.
    Relationship {
        /// The column of the model.
        column: String,
        /// The table it refers to.
        table: TableId,
        /// The column of that table.
        to: String,
    },
    /// The new version's row count is within bounds.
    RowCount {
        /// At least this many rows.
        min: Option<u64>,
        /// At most this many rows.
        max: Option<u64>,
    },
    /// An input is recent: its latest commit (or the greatest value of `column`) is at most
    /// `max_age` old.
    Freshness {
        /// The input table.
        table: TableId,
        /// A timestamp or date column; `None`: the table's last commit time.
        column: Option<String>,
        /// How old it may be.
        max_age: Duration,
    },
}

impl Check {
    /// True for checks on the table as a whole (recorded as one check, not per row).
    pub fn is_table_level(&self) -> bool {
        matches!(self, Check::RowCount { .. } | Check::Freshness { .. })
    }
}

impl Validator<'_> {
    /// The audits of a gold entry; `refs` are the tables its SQL reads.
    pub(super) fn audits(&self, key: &str, g: &RawGold, refs: &[TableId]) -> Result<Vec<Audit>> {
        let default = match &g.on_violation {
            Some(a) => self.audit_action(a, &format!("{key}.on_violation"))?,
            None => Action::Fail,
        };
        let mut audits = Vec::new();
        for (name, e) in &g.expect {
            let k = format!("{key}.expect.{name}");
            let (rule, action) = match e.get_ref() {
                RawExpectation::Rule(rule) => (rule.clone(), default),
                RawExpectation::Full(f) => {
                    let action = self.audit_action(&Spanned::new(e.span(), f.action), &k)?;
                    (f.rule.clone(), action)
                }
            };
            super::medallion::check_predicate(&rule).map_err(|m| self.err(e, &k, m))?;
            audits.push(Audit {
                name: name.clone(),
                check: Check::Rule(rule),
                action,
            });
        }
        let mut push = |name: String, check: Check| {
            audits.push(Audit {
                name,
                check,
                action: default,
            })
        };
        if let Some(u) = &g.unique {
            for v in u.get_ref() {
                let columns = match v {
                    toml::Value::String(c) => vec![c.clone()],
                    toml::Value::Array(a) if !a.is_empty() => a
                        .iter()
                        .map(|c| c.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            self.err(
                                u,
                                &format!("{key}.unique"),
                                "a key is a list of column names",
                            )
                        })?,
                    _ => {
                        return Err(self.err(
                            u,
                            &format!("{key}.unique"),
                            "each entry is a column name or a list of column names (a key)",
                        ));
                    }
                };
                push(
                    format!("unique({})", columns.join(",")),
                    Check::Unique(columns),
                );
            }
        }
        if let Some(n) = &g.not_null {
            for c in n.get_ref() {
                push(format!("not_null({c})"), Check::NotNull(c.clone()));
            }
        }
        if let Some(av) = &g.accepted_values {
            for (column, values) in av.get_ref() {
                let k = format!("{key}.accepted_values.{column}");
                if values.is_empty() {
                    return Err(self.err(av, &k, "lists no value"));
                }
                let values = values
                    .iter()
                    .map(sql_literal)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|m| self.err(av, &k, m))?;
                push(
                    format!("accepted_values({column})"),
                    Check::AcceptedValues {
                        column: column.clone(),
                        values,
                    },
                );
            }
        }
        if let Some(rel) = &g.relationships {
            for (column, target) in rel.get_ref() {
                let k = format!("{key}.relationships.{column}");
                let (table, to) = target
                    .rsplit_once('.')
                    .and_then(|(t, c)| Some((TableId::parse(t).ok()?, c.to_string())))
                    .filter(|(_, c)| !c.is_empty())
                    .ok_or_else(|| {
                        self.err(
                            rel,
                            &k,
                            format!("`{target}` is not `layer.table.column` (e.g. `silver.customers.customer_id`)"),
                        )
                    })?;
                push(
                    format!("relationships({column})"),
                    Check::Relationship {
                        column: column.clone(),
                        table,
                        to,
                    },
                );
            }
        }
        if let Some(rc) = &g.row_count {
            let r = rc.get_ref();
            if r.min.is_none() && r.max.is_none() {
                return Err(self.err(rc, &format!("{key}.row_count"), "set `min`, `max` or both"));
            }
            if let (Some(min), Some(max)) = (r.min, r.max)
                && min > max
            {
                return Err(self.err(
                    rc,
                    &format!("{key}.row_count"),
                    format!("`min` ({min}) is above `max` ({max})"),
                ));
            }
            push(
                "row_count".into(),
                Check::RowCount {
                    min: r.min,
                    max: r.max,
                },
            );
        }
        if let Some(f) = &g.freshness {
            let k = format!("{key}.freshness");
            let entries: Vec<toml::Value> = match f.get_ref() {
                toml::Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for entry in entries {
                let raw: RawFreshness = entry.try_into().map_err(|e: toml::de::Error| {
                    self.err(
                        f,
                        &k,
                        format!(
                            "expected `{{ table = \"silver.x\", max_age = \"24h\", column = \"...\" }}` (column optional): {}",
                            e.message()
                        ),
                    )
                })?;
                let table = TableId::parse(&raw.table).map_err(|m| self.err(f, &k, m))?;
                if !refs.contains(&table) {
                    let reads: Vec<String> = refs.iter().map(|r| format!("`{r}`")).collect();
                    return Err(self.err(
                        f,
                        &k,
                        format!(
                            "`{table}` is not an input of the model (it reads: {})",
                            reads.join(", ")
                        ),
                    ));
                }
                let max_age = humantime::parse_duration(&raw.max_age)
                    .map_err(|e| self.err(f, &format!("{k}.max_age"), e))?;
                push(
                    format!("freshness({table})"),
                    Check::Freshness {
                        table,
                        column: raw.column,
                        max_age,
                    },
                );
            }
        }
        Ok(audits)
    }

    fn audit_action(&self, a: &Spanned<Action>, key: &str) -> Result<Action> {
        match a.get_ref() {
            Action::Warn | Action::Fail => Ok(*a.get_ref()),
            other => Err(self.err(
                a,
                key,
                format!(
                    "a gold audit is `warn` (publish and record) or `fail` (keep the previous version), not `{}`",
                    other.as_str()
                ),
            )),
        }
    }
}

/// A TOML value as a SQL literal.
fn sql_literal(v: &toml::Value) -> std::result::Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) if f.is_finite() => f.to_string(),
        toml::Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        other => return Err(format!("`{other}` is not a string, number or boolean")),
    })
}

impl super::GoldConfig {
    /// The tables the model's audits read (relationship targets), in order, once each.
    pub fn audit_tables(&self) -> Vec<TableId> {
        let mut out: Vec<TableId> = Vec::new();
        for a in &self.audits {
            if let Check::Relationship { table, .. } = &a.check
                && !out.contains(table)
            {
                out.push(table.clone());
            }
        }
        out
    }
}

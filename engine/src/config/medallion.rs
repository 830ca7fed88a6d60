//! The medallion sections of the project file: `[[bronze]]`, `[[silver]]` and `[[gold]]`,
//! their typed config and how each entry is validated.

use serde::Deserialize;
use toml::Spanned;

use super::raw::{self, RawExpectation, RawSource};
use super::{ColumnType, Validator, parse_column_type};
use crate::error::{EngineError, Result};
use crate::table::{Layer, TableId};

/// What bronze does with a line it cannot parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the step with file, line and reason (default).
    #[default]
    Fail,
    /// Write the raw line to `bronze.<name>__rejected` and go on.
    Quarantine,
}

/// What bronze does when its source gains columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// Add the new columns to the table (older rows read NULL in them) (default).
    #[default]
    AddColumns,
    /// Fail the step naming the new columns; nothing is written.
    Fail,
}

/// File format of a files source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Decide per file by extension: `.csv`/`.tsv`, `.ndjson`/`.jsonl`/`.json`, `.parquet`.
    #[default]
    Auto,
    /// Delimited text.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

/// CSV parsing options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// The first line names the columns (default: true).
    pub header: bool,
    /// Field delimiter (default: `,`).
    pub delimiter: char,
    /// Quote character (default: `"`).
    pub quote: char,
    /// A field equal to this string is NULL (default: empty string).
    pub null: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: ',',
            quote: '"',
            null: String::new(),
        }
    }
}

/// One bronze table and its source.
#[derive(Debug, Clone)]
pub struct BronzeConfig {
    /// Table name inside the bronze layer.
    pub name: String,
    /// Where rows come from.
    pub source: SourceConfig,
    /// What to do with malformed input.
    pub on_error: OnError,
    /// What to do when the source gains columns.
    pub schema_evolution: SchemaEvolution,
    /// Partition columns (Hive-style directories), from the source's columns.
    pub partition_by: Vec<String>,
}

/// A bronze source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Files selected by a glob under the project directory or a lake-supported URL.
    Files {
        /// The glob, as a URL (`file:///…/*.csv`, `s3://…`) after resolution.
        pattern: String,
        /// File format.
        format: FileFormat,
        /// CSV options.
        csv: CsvOptions,
    },
    /// A JSON API, page by page.
    Http(Box<super::HttpSource>),
    /// A PostgreSQL table or query.
    Postgres(Box<super::DatabaseSource>),
    /// A MySQL or MariaDB table or query.
    Mysql(Box<super::DatabaseSource>),
}

/// What happens to a row that breaks an expectation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the row, count the violation (default).
    #[default]
    Warn,
    /// Drop the row, count it.
    Drop,
    /// Move the row to `silver.<name>__quarantine` with the failed rule names.
    Quarantine,
    /// Fail the step; silver stays at its previous version.
    Fail,
}

impl Action {
    /// The action's name as written in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Drop => "drop",
            Action::Quarantine => "quarantine",
            Action::Fail => "fail",
        }
    }
}

/// One expectation on a silver table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Rule name.
    pub name: String,
    /// SQL boolean expression; a row passes only when it is true.
    pub rule: String,
    /// What to do with a row that fails.
    pub action: Action,
}

/// Where a silver table reads from.
#[derive(Debug, Clone)]
pub enum SilverInput {
    /// One bronze (or silver) table as it is.
    Table(TableId),
    /// A SQL query over bronze tables.
    Sql {
        /// Path of the SQL file, relative to the project.
        file: String,
        /// The query text.
        text: String,
    },
}

/// A part of a date or timestamp that a partition column can be derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    /// `year(c)`: the year, an `Int32`.
    Year,
    /// `month(c)`: the month, 1-12.
    Month,
    /// `day(c)`: the day of the month, 1-31.
    Day,
    /// `hour(c)`: the hour, 0-23.
    Hour,
    /// `date(c)`: the date, a `Date32`.
    Date,
}

/// A partition column computed from another column: `partition_by = ["year(order_ts)"]`
/// stores `order_ts_year` with every row and partitions by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedColumn {
    /// The stored column, `<column>_<part>`.
    pub name: String,
    /// The part taken.
    pub part: DatePart,
    /// The column it is taken from.
    pub column: String,
}

impl DerivedColumn {
    /// The expression computing the column from its source column.
    pub fn expr(&self) -> datafusion::logical_expr::Expr {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::logical_expr::{cast, ident, lit};
        let source = ident(&self.column);
        let part = |p: &str| {
            cast(
                datafusion::functions::datetime::expr_fn::date_part(lit(p), source.clone()),
                DataType::Int32,
            )
        };
        match self.part {
            DatePart::Year => part("year"),
            DatePart::Month => part("month"),
            DatePart::Day => part("day"),
            DatePart::Hour => part("hour"),
            DatePart::Date => cast(source.clone(), DataType::Date32),
        }
    }

    /// Parses `part(column)`; `None` for a plain column name.
    ///
    /// # Errors
    /// A call of something else than `year`, `month`, `day`, `hour`, `date`.
    pub fn parse(item: &str) -> std::result::Result<Option<DerivedColumn>, String> {
        let Some((f, rest)) = item.trim().split_once('(') else {
            return Ok(None);
        };
        let column = rest
            .strip_suffix(')')
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.contains(['(', ')', ',']))
            .ok_or_else(|| format!("`{item}`: expected part(column), e.g. year(order_ts)"))?;
        let f = f.trim().to_ascii_lowercase();
        let part = match f.as_str() {
            "year" => DatePart::Year,
            "month" => DatePart::Month,
            "day" => DatePart::Day,
            "hour" => DatePart::Hour,
            "date" => DatePart::Date,
            other => {
                return Err(format!(
                    "`{item}`: `{other}` is not a date part (year, month, day, hour, date)"
                ));
            }
        };
        Ok(Some(DerivedColumn {
            name: format!("{column}_{f}"),
            part,
            column: column.to_string(),
        }))
    }
}

/// Splits `partition_by` as written into the stored partition column names and the columns
/// derived from date parts.
///
/// # Errors
/// An item that is neither a column nor `part(column)`.
pub fn partition_columns(
    items: &[String],
) -> std::result::Result<(Vec<String>, Vec<DerivedColumn>), String> {
    let mut names = Vec::new();
    let mut derived = Vec::new();
    for item in items {
        match DerivedColumn::parse(item)? {
            Some(d) => {
                names.push(d.name.clone());
                derived.push(d);
            }
            None => names.push(item.trim().to_string()),
        }
    }
    Ok((names, derived))
}

/// One silver table.
#[derive(Debug, Clone)]
pub struct SilverConfig {
    /// Table name inside the silver layer.
    pub name: String,
    /// Input table or query.
    pub input: SilverInput,
    /// The streamed input: read incrementally, only the commits not yet consumed. Every
    /// other table the SQL references is read whole at its latest version.
    pub stream: TableId,
    /// Every table the input reads (the stream first).
    pub upstreams: Vec<TableId>,
    /// Declared column types in output order (empty: keep the input's columns).
    pub columns: Vec<(String, ColumnType)>,
    /// Dedup and MERGE keys (empty: append-only).
    pub keys: Vec<String>,
    /// Column that orders versions of a key; the latest wins.
    pub sequence_by: Option<String>,
    /// Expectations in declared order.
    pub expectations: Vec<Expectation>,
    /// `apply_as_deletes`: a SQL predicate over the input's columns; a row where it holds is
    /// a delete of its key (needs `keys` and `sequence_by`).
    pub apply_as_deletes: Option<ConfigExpr>,
    /// How versions of a key are kept (`history`).
    pub history: History,
    /// Partition columns (Hive-style directories), from the output's columns and
    /// `derived`.
    pub partition_by: Vec<String>,
    /// Partition columns computed from date parts of output columns, stored with each row.
    pub derived: Vec<DerivedColumn>,
}

/// How a silver table with keys keeps the versions of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// Only the latest version of each key, updated in place (default).
    #[default]
    Scd1,
    /// Every version of a key, with `_valid_from`, `_valid_to` (NULL while current) and
    /// `_is_current`; ordered by `sequence_by`.
    Scd2,
}

/// The columns an SCD2 silver table adds to its declared ones.
pub const SCD2_COLUMNS: [&str; 3] = ["_valid_from", "_valid_to", "_is_current"];

/// A SQL expression from the project file, with where it was written, so that a problem
/// found only when it is planned still names the file, key and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigExpr {
    /// The SQL text.
    pub sql: String,
    /// The project file.
    pub file: String,
    /// `line N: `key`` of the entry.
    pub at: String,
}

impl ConfigExpr {
    /// A configuration error about this expression.
    pub fn error(&self, message: impl std::fmt::Display) -> EngineError {
        EngineError::Config {
            file: self.file.clone(),
            message: format!("{}: {message}", self.at),
        }
    }
}

/// How an incremental gold model applies the rows computed from its stream's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// MERGE by `unique_key`: new keys inserted, existing keys updated.
    Merge,
    /// Appended.
    Append,
    /// Only the partitions the new rows touch are recomputed and replaced.
    Partitions,
}

impl Strategy {
    /// The strategy's name as written in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Merge => "merge",
            Strategy::Append => "append",
            Strategy::Partitions => "partitions",
        }
    }
}

/// `[[gold]] incremental`: the model reads only its stream's changes since the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// How the result is applied.
    pub strategy: Strategy,
    /// The MERGE key (`merge` only).
    pub unique_key: Vec<String>,
    /// The streamed input; every other table the SQL reads is read whole.
    pub stream: TableId,
}

/// One gold model.
#[derive(Debug, Clone)]
pub struct GoldConfig {
    /// Table name inside the gold layer.
    pub name: String,
    /// Path of the SQL file, relative to the project.
    pub file: String,
    /// The query text.
    pub sql: String,
    /// Partition columns (the model's output columns and `derived`).
    pub partition_by: Vec<String>,
    /// Partition columns computed from date parts of output columns, stored with each row.
    pub derived: Vec<DerivedColumn>,
    /// Incremental materialization; `None`: a full rebuild whenever an upstream changed.
    pub incremental: Option<Incremental>,
    /// Checks on the new version before it is published.
    pub audits: Vec<super::Audit>,
    /// `engine`: where this model runs; `None` follows `[engine] mode`.
    pub engine: Option<super::EngineMode>,
}

impl Validator<'_> {
    /// `partition_by` of an entry: names, and the derived date parts when `derive` allows.
    fn partitions(
        &self,
        key: &str,
        items: &[String],
        derive: bool,
    ) -> Result<(Vec<String>, Vec<DerivedColumn>)> {
        let err = |message: String| EngineError::Config {
            file: self.file.to_string(),
            message: format!("`{key}.partition_by`: {message}"),
        };
        let (names, derived) = partition_columns(items).map_err(err)?;
        if !derive && !derived.is_empty() {
            return Err(err(
                "bronze keeps its values as they came; derive date parts in silver or gold".into(),
            ));
        }
        Ok((names, derived))
    }

    pub(super) fn bronze(
        &self,
        i: usize,
        b: raw::RawBronze,
        seen: &mut std::collections::HashSet<TableId>,
    ) -> Result<BronzeConfig> {
        let key = format!("bronze[{i}]");
        self.name(&b.name, &key, seen, Layer::Bronze)?;
        let source =
            match b.source {
                RawSource::Files { path, format, csv } => {
                    // Values inside the tagged `source` table carry no span: report the
                    // line of the table's name.
                    let path = Spanned::new(b.name.span(), path);
                    let pattern = self.glob(&path, &format!("{key}.source.path"))?;
                    SourceConfig::Files {
                        pattern,
                        format,
                        csv,
                    }
                }
                RawSource::Http(raw) => SourceConfig::Http(Box::new(self.http_source(
                    &b.name,
                    &format!("{key}.source"),
                    *raw,
                )?)),
                RawSource::Postgres(raw) => SourceConfig::Postgres(Box::new(
                    self.database_source(&b.name, &format!("{key}.source"), *raw, true)?,
                )),
                RawSource::Mysql(raw) => SourceConfig::Mysql(Box::new(self.database_source(
                    &b.name,
                    &format!("{key}.source"),
                    *raw,
                    false,
                )?)),
            };
        Ok(BronzeConfig {
            name: b.name.into_inner(),
            source,
            on_error: b.on_error,
            schema_evolution: b.schema_evolution,
            partition_by: self
                .partitions(&format!("bronze[{i}]"), &b.partition_by, false)?
                .0,
        })
    }

    pub(super) fn silver(
        &self,
        i: usize,
        s: raw::RawSilver,
        seen: &mut std::collections::HashSet<TableId>,
    ) -> Result<SilverConfig> {
        let key = format!("silver[{i}]");
        self.name(&s.name, &key, seen, Layer::Silver)?;
        let input = match (&s.from, &s.sql) {
            (Some(from), None) => {
                let id = TableId::parse(from.get_ref())
                    .map_err(|m| self.err(from, &format!("{key}.from"), m))?;
                SilverInput::Table(id)
            }
            (None, Some(sql)) => SilverInput::Sql {
                file: sql.get_ref().clone(),
                text: self.sql_file(sql, &format!("{key}.sql"))?,
            },
            (Some(from), Some(_)) => {
                return Err(self.err(from, &key, "set either `from` or `sql`, not both"));
            }
            (None, None) => {
                let default = format!("sql/silver/{}.sql", s.name.get_ref());
                if !self.dir.join(&default).is_file() {
                    return Err(self.err(
                        &s.name,
                        &key,
                        format!("needs `from = \"bronze.<table>\"`, `sql = \"...\"` or a file `{default}`"),
                    ));
                }
                let text = self.sql_file(&Spanned::new(s.name.span(), default.clone()), &key)?;
                SilverInput::Sql {
                    file: default,
                    text,
                }
            }
        };
        let model = format!("silver.{}", s.name.get_ref());
        let (refs, source) = match &input {
            SilverInput::Table(id) => (vec![id.clone()], "`from`".to_string()),
            SilverInput::Sql { file, text } => (
                crate::dag::sql_references(&model, file, text)?,
                format!("the SQL of `{file}`"),
            ),
        };
        let (stream, upstreams) =
            self.stream(&key, &model, &s.name, s.stream.as_ref(), refs, &source)?;
        let mut columns = Vec::new();
        for (col, ty) in s.columns {
            let parsed = parse_column_type(ty.get_ref())
                .map_err(|m| self.err(&ty, &format!("{key}.columns.{col}"), m))?;
            columns.push((col, parsed));
        }
        if s.sequence_by.is_some() && s.keys.is_empty() {
            return Err(self.err(&s.name, &key, "`sequence_by` needs `keys`"));
        }
        let history = s.history.as_ref().map_or(History::Scd1, |h| *h.get_ref());
        let needs_order = |span: std::ops::Range<usize>, what: &str, k: &str| -> Result<()> {
            if s.keys.is_empty() || s.sequence_by.is_none() {
                return Err(self.err(
                    &Spanned::new(span, ()),
                    &format!("{key}.{k}"),
                    format!("{what} needs `keys` and `sequence_by` (the column that orders the events of a key)"),
                ));
            }
            Ok(())
        };
        if let Some(h) = s.history.as_ref().filter(|h| *h.get_ref() == History::Scd2) {
            needs_order(h.span(), "`history = \"scd2\"`", "history")?;
            if let Some(c) = columns
                .iter()
                .map(|(c, _)| c.as_str())
                .find(|c| SCD2_COLUMNS.contains(c))
            {
                return Err(self.err(
                    h,
                    &format!("{key}.columns"),
                    format!("`{c}` is a column `history = \"scd2\"` adds itself"),
                ));
            }
        }
        let apply_as_deletes = match &s.apply_as_deletes {
            Some(p) => {
                needs_order(p.span(), "`apply_as_deletes`", "apply_as_deletes")?;
                let k = format!("{key}.apply_as_deletes");
                check_predicate(p.get_ref()).map_err(|m| self.err(p, &k, m))?;
                Some(ConfigExpr {
                    sql: p.get_ref().clone(),
                    file: self.file.to_string(),
                    at: format!("line {}: `{k}`", self.line_of(p)),
                })
            }
            None => None,
        };
        let expectations = s
            .expect
            .into_iter()
            .map(|(name, e)| match e {
                RawExpectation::Rule(rule) => Expectation {
                    name,
                    rule,
                    action: s.on_violation,
                },
                RawExpectation::Full(f) => Expectation {
                    name,
                    rule: f.rule,
                    action: f.action,
                },
            })
            .collect();
        let (partition_by, derived) = self.partitions(&key, &s.partition_by, true)?;
        Ok(SilverConfig {
            name: s.name.into_inner(),
            input,
            stream,
            upstreams,
            columns,
            keys: s.keys,
            sequence_by: s.sequence_by,
            expectations,
            apply_as_deletes,
            history,
            partition_by,
            derived,
        })
    }

    /// The streamed input of an entry and all its upstreams (the stream first): the `stream`
    /// key, which may be left out when the entry reads one table. `refs` are the tables the
    /// entry reads, `source` says where they come from (for messages).
    fn stream(
        &self,
        key: &str,
        model: &str,
        name: &Spanned<String>,
        stream: Option<&Spanned<String>>,
        refs: Vec<TableId>,
        source: &str,
    ) -> Result<(TableId, Vec<TableId>)> {
        let names = || {
            refs.iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let stream = match stream {
            Some(st) => {
                let id = TableId::parse(st.get_ref())
                    .map_err(|m| self.err(st, &format!("{key}.stream"), m))?;
                if !refs.contains(&id) {
                    return Err(self.err(
                        st,
                        &format!("{key}.stream"),
                        format!("`{id}` is not read by {source} (it reads: {})", names()),
                    ));
                }
                id
            }
            None => match refs.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(self.err(
                        name,
                        key,
                        format!("{model} reads no table, so it has no input to stream"),
                    ));
                }
                _ => {
                    return Err(self.err(
                        name,
                        &format!("{key}.stream"),
                        format!(
                            "{model} reads several tables ({}): set `stream` to the one read incrementally; the others are read whole",
                            names()
                        ),
                    ));
                }
            },
        };
        let mut upstreams = vec![stream.clone()];
        upstreams.extend(refs.into_iter().filter(|r| *r != stream));
        Ok((stream, upstreams))
    }

    /// A gold entry's `incremental` table, validated against its SQL and `partition_by`.
    fn incremental(
        &self,
        key: &str,
        g: &raw::RawGold,
        file: &str,
        refs: &[TableId],
    ) -> Result<Option<Incremental>> {
        let model = format!("gold.{}", g.name.get_ref());
        let Some(inc) = &g.incremental else {
            if let Some(st) = &g.stream {
                return Err(self.err(
                    st,
                    &format!("{key}.stream"),
                    "only an `incremental` model has a streamed input",
                ));
            }
            return Ok(None);
        };
        let ikey = format!("{key}.incremental");
        let raw = inc.get_ref();
        match raw.strategy {
            Strategy::Merge if raw.unique_key.is_empty() => {
                return Err(self.err(
                    inc,
                    &format!("{ikey}.unique_key"),
                    "strategy `merge` needs `unique_key`, the columns that identify a row",
                ));
            }
            Strategy::Append | Strategy::Partitions if !raw.unique_key.is_empty() => {
                return Err(self.err(
                    inc,
                    &format!("{ikey}.unique_key"),
                    format!(
                        "only strategy `merge` takes `unique_key` (this is `{}`)",
                        raw.strategy.as_str()
                    ),
                ));
            }
            Strategy::Partitions if g.partition_by.is_empty() => {
                return Err(self.err(
                    inc,
                    &format!("{ikey}.strategy"),
                    "strategy `partitions` needs `partition_by`: the partitions it recomputes",
                ));
            }
            _ => {}
        }
        let source = format!("the SQL of `{file}`");
        let (stream, _) = self.stream(
            key,
            &model,
            &g.name,
            g.stream.as_ref(),
            refs.to_vec(),
            &source,
        )?;
        Ok(Some(Incremental {
            strategy: raw.strategy,
            unique_key: raw.unique_key.clone(),
            stream,
        }))
    }

    /// `[[gold]]` entries plus every `sql/gold/*.sql` not named by one.
    pub(super) fn gold(
        &self,
        raw: Vec<raw::RawGold>,
        seen: &mut std::collections::HashSet<TableId>,
    ) -> Result<Vec<GoldConfig>> {
        let mut gold = Vec::new();
        for (i, g) in raw.into_iter().enumerate() {
            let key = format!("gold[{i}]");
            self.name(&g.name, &key, seen, Layer::Gold)?;
            let rel = g.sql.clone().unwrap_or_else(|| {
                Spanned::new(g.name.span(), format!("sql/gold/{}.sql", g.name.get_ref()))
            });
            let sql = self.sql_file(&rel, &format!("{key}.sql"))?;
            let model = format!("gold.{}", g.name.get_ref());
            let refs = crate::dag::sql_references(&model, rel.get_ref(), &sql)?;
            let (partition_by, derived) = self.partitions(&key, &g.partition_by, true)?;
            let mut g = g;
            g.partition_by = partition_by;
            let incremental = self.incremental(&key, &g, rel.get_ref(), &refs)?;
            let audits = self.audits(&key, &g, &refs)?;
            gold.push(GoldConfig {
                name: g.name.into_inner(),
                file: rel.into_inner(),
                sql,
                partition_by: g.partition_by,
                derived,
                incremental,
                audits,
                engine: g.engine.map(Spanned::into_inner),
            });
        }
        let named: std::collections::HashSet<String> = gold
            .iter()
            .map(|g| g.file.trim_start_matches("./").to_string())
            .collect();
        let mut discovered = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("sql/gold")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("sql") {
                    continue;
                }
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let rel = format!("sql/gold/{stem}.sql");
                if named.contains(&rel) || seen.contains(&TableId::new(Layer::Gold, stem)) {
                    continue;
                }
                discovered.push((stem.to_string(), rel));
            }
        }
        discovered.sort();
        for (stem, rel) in discovered {
            let spanned = Spanned::new(0..0, stem.clone());
            self.name(&spanned, &rel, seen, Layer::Gold)
                .map_err(|_| EngineError::Config {
                    file: rel.clone(),
                    message: format!("`{stem}` is not a valid gold table name"),
                })?;
            let sql =
                std::fs::read_to_string(self.dir.join(&rel)).map_err(|e| EngineError::Config {
                    file: rel.clone(),
                    message: format!("cannot read: {e}"),
                })?;
            gold.push(GoldConfig {
                name: stem,
                file: rel,
                sql,
                partition_by: Vec::new(),
                derived: Vec::new(),
                incremental: None,
                audits: Vec::new(),
                engine: None,
            });
        }
        Ok(gold)
    }
}

/// Checks that `sql` parses as a row predicate: a SQL expression that can be boolean (a
/// comparison, `AND`/`OR`/`NOT`, `IS NULL`, `IN`, `LIKE`, a column, a function...), not an
/// arithmetic or literal value and not a subquery. Its type is checked again when planned.
pub(crate) fn check_predicate(sql: &str) -> std::result::Result<(), String> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator as B, Expr as E, UnaryOperator, Value};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            p.expect_token(&datafusion::sql::sqlparser::tokenizer::Token::EOF)?;
            Ok(e)
        })
        .map_err(|e| format!("`{sql}` is not a SQL expression: {e}"))?;
    let reads_tables = datafusion::sql::sqlparser::ast::visit_expressions(&expr, |e| {
        if matches!(e, E::Subquery(_) | E::Exists { .. } | E::InSubquery { .. }) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    if reads_tables.is_break() {
        return Err(format!(
            "`{sql}`: a row predicate cannot read other tables (no subqueries)"
        ));
    }
    let not_boolean = |what: &str| Err(format!("`{sql}` is {what}, not a boolean expression"));
    let mut e = &expr;
    while let E::Nested(inner) = e {
        e = inner;
    }
    match e {
        E::BinaryOp { op, .. } => match op {
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo | B::StringConcat => {
                not_boolean("arithmetic")
            }
            B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor => not_boolean("a bitwise operation"),
            _ => Ok(()),
        },
        E::UnaryOp { op, .. } if *op != UnaryOperator::Not => not_boolean("arithmetic"),
        E::Value(v) => match &v.value {
            Value::Boolean(_) | Value::Null => Ok(()),
            _ => not_boolean("a literal value"),
        },
        _ => Ok(()),
    }
}

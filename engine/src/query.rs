//! `QueryService`: read-only SQL for a principal, with a memory pool, a timeout and a row
//! limit, returning a stream of record batches. REST and Flight SQL both sit on it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use futures::{Stream, StreamExt};

use crate::auth::Principal;
use crate::error::ErrorKind;
use crate::session::{CATALOG, LakeCatalog};
use crate::table::Layer;

/// Limits on one query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory the query may use for sorts, joins and aggregates (bytes).
    pub memory_bytes: usize,
    /// Wall-clock time from planning to the last batch.
    pub timeout: Duration,
    /// Rows a result may have (`None`: no limit).
    pub max_rows: Option<usize>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(300),
            max_rows: None,
        }
    }
}

/// Why a query was refused or failed, classified for status codes.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or plan.
    #[error("invalid SQL: {0}")]
    InvalidSql(String),
    /// A statement that is not a read-only query.
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// A table the caller cannot see, or that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The query ran longer than its timeout.
    #[error("query timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The result has more rows than allowed.
    #[error("result exceeds the row limit of {0} rows")]
    TooManyRows(usize),
    /// The query needs more memory than its pool.
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(String),
    /// Anything else (storage, a bug): details are logged, not sent.
    #[error("internal error")]
    Internal(#[source] Box<DataFusionError>),
}

impl QueryError {
    /// Classifies a DataFusion error (a root cause our limits raised keeps its kind).
    pub fn from_datafusion(e: DataFusionError) -> QueryError {
        classify(&e).unwrap_or_else(|| QueryError::Internal(Box::new(e)))
    }

    /// How a client sees the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::InvalidSql(_) => ErrorKind::Invalid,
            QueryError::ReadOnly(_) => ErrorKind::Forbidden,
            QueryError::NotFound(_) => ErrorKind::NotFound,
            QueryError::Timeout(_) => ErrorKind::Timeout,
            QueryError::TooManyRows(_) | QueryError::ResourcesExhausted(_) => ErrorKind::TooLarge,
            QueryError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The kind of a DataFusion error, classified as a query error would be.
pub fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    classify(e).map_or(ErrorKind::Internal, |q| q.kind())
}

/// The user-facing class of a DataFusion error, `None` when it is ours (internal).
fn classify(e: &DataFusionError) -> Option<QueryError> {
    let root = e.find_root();
    match root {
        DataFusionError::SQL(err, _) => Some(QueryError::InvalidSql(err.to_string())),
        DataFusionError::ResourcesExhausted(m) => Some(QueryError::ResourcesExhausted(m.clone())),
        DataFusionError::External(inner) => match inner.downcast_ref::<QueryError>() {
            Some(QueryError::Timeout(d)) => Some(QueryError::Timeout(*d)),
            Some(QueryError::TooManyRows(n)) => Some(QueryError::TooManyRows(*n)),
            Some(QueryError::NotFound(m)) => Some(QueryError::NotFound(m.clone())),
            _ => None,
        },
        DataFusionError::Plan(_) | DataFusionError::SchemaError(_, _) => {
            Some(QueryError::InvalidSql(root.strip_backtrace()))
        }
        DataFusionError::NotImplemented(m) => Some(QueryError::InvalidSql(m.clone())),
        _ => None,
    }
}

/// Plans and runs read-only SQL over the lake for a principal.
#[derive(Debug, Clone)]
pub struct QueryService {
    catalog: Arc<LakeCatalog>,
    limits: QueryLimits,
}

impl QueryService {
    /// A service over a catalog with the given limits.
    pub fn new(catalog: Arc<LakeCatalog>, limits: QueryLimits) -> Self {
        QueryService { catalog, limits }
    }

    /// The catalog behind the service.
    pub fn catalog(&self) -> &Arc<LakeCatalog> {
        &self.catalog
    }

    /// The limits applied to every query.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A session that shows the principal only the layers its role may read, with no
    /// access to local files and a bounded memory pool.
    ///
    /// # Errors
    /// The runtime cannot be built.
    pub fn session(&self, principal: &Principal) -> Result<SessionContext, QueryError> {
        Ok(self.recording_session(principal)?.0)
    }

    /// [`QueryService::session`], and the names of the tables its lookups did not find.
    fn recording_session(
        &self,
        principal: &Principal,
    ) -> Result<(SessionContext, Missing), QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| QueryError::Internal(Box::new(e)))?;
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, Layer::Gold.as_str())
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let missing = Missing::default();
        let visible = RoleCatalog {
            inner: Arc::clone(&self.catalog),
            layers: principal.role.layers(),
            missing: missing.clone(),
        };
        ctx.register_catalog(CATALOG, Arc::new(visible));
        Ok((ctx, missing))
    }

    /// Plans a read-only query (optionally with `$1`-style parameter values).
    ///
    /// # Errors
    /// Bad SQL, a statement other than a query, an unknown or hidden table.
    pub async fn plan(
        &self,
        principal: &Principal,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<DataFrame, QueryError> {
        check_read_only(sql)?;
        let sql = number_placeholders(sql);
        let (ctx, missing) = self.recording_session(principal)?;
        let planning = async {
            let df = ctx.sql(&sql).await.map_err(|e| {
                missing
                    .error()
                    .unwrap_or_else(|| QueryError::from_datafusion(e))
            })?;
            match params {
                Some(p) => df.with_param_values(p).map_err(QueryError::from_datafusion),
                None => Ok(df),
            }
        };
        tokio::time::timeout(self.limits.timeout, planning)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))?
    }

    /// Runs a planned query as a stream that enforces the row limit and the timeout.
    ///
    /// # Errors
    /// Physical planning failed.
    pub async fn execute(&self, df: DataFrame) -> Result<SendableRecordBatchStream, QueryError> {
        let stream = df
            .execute_stream()
            .await
            .map_err(QueryError::from_datafusion)?;
        let schema = stream.schema();
        let limited = Limited {
            inner: stream,
            deadline: Box::pin(tokio::time::sleep(self.limits.timeout)),
            timeout: self.limits.timeout,
            rows: 0,
            max_rows: self.limits.max_rows,
            done: false,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, limited)))
    }
}

/// Rewrites JDBC/ODBC-style `?` placeholders to DataFusion's `$1`, `$2`, … (text inside
/// strings and quoted names is left alone).
pub fn number_placeholders(sql: &str) -> String {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p == "?"))
    {
        return sql.to_string();
    }
    let mut n = 0;
    tokens
        .into_iter()
        .map(|t| match t {
            Token::Placeholder(p) if p == "?" => {
                n += 1;
                format!("${n}")
            }
            other => other.to_string(),
        })
        .collect()
}

/// Refuses everything but queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN` of a query).
///
/// # Errors
/// [`QueryError::InvalidSql`] when it does not parse, [`QueryError::ReadOnly`] otherwise.
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| QueryError::InvalidSql(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::InvalidSql(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    fn is_query(s: &DfStatement) -> bool {
        match s {
            DfStatement::Statement(inner) => match inner.as_ref() {
                Statement::Query(_) => true,
                Statement::Explain { statement, .. } => {
                    matches!(statement.as_ref(), Statement::Query(_))
                }
                _ => false,
            },
            DfStatement::Explain(e) => is_query(&e.statement),
            _ => false,
        }
    }
    for s in &statements {
        if !is_query(s) {
            let kind = s.to_string();
            let head: String = kind
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(QueryError::ReadOnly(format!(
                "only queries are allowed here (SELECT, WITH, VALUES, EXPLAIN); `{head} ...` is not"
            )));
        }
    }
    Ok(())
}

/// Tables a session's lookups did not find (unknown, hidden, or not a table name at all).
#[derive(Debug, Clone, Default)]
struct Missing(Arc<Mutex<Vec<String>>>);

impl Missing {
    fn push(&self, name: String) {
        if let Ok(mut m) = self.0.lock() {
            m.push(name);
        }
    }

    /// The first missing table, as the error of a plan that failed.
    fn error(&self) -> Option<QueryError> {
        let m = self.0.lock().ok()?;
        m.first()
            .map(|name| QueryError::NotFound(format!("table {name} not found")))
    }
}

/// The lake catalog as one principal sees it; lookups that find nothing are recorded, so
/// a failed plan can say which table was missing without reading the planner's message.
#[derive(Debug)]
struct RoleCatalog {
    inner: Arc<LakeCatalog>,
    layers: Vec<Layer>,
    missing: Missing,
}

impl CatalogProvider for RoleCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.as_str().to_string()).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let visible = Layer::parse(name)
            .filter(|l| self.layers.contains(l))
            .and_then(|_| self.inner.schema(name));
        Some(Arc::new(RecordingSchema {
            schema: name.to_string(),
            inner: visible,
            missing: self.missing.clone(),
        }))
    }
}

/// A layer as the principal sees it (`inner: None` for a layer it may not see, which then
/// holds no table), recording the names it does not find.
#[derive(Debug)]
struct RecordingSchema {
    schema: String,
    inner: Option<Arc<dyn SchemaProvider>>,
    missing: Missing,
}

#[async_trait::async_trait]
impl SchemaProvider for RecordingSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .as_ref()
            .map(|s| s.table_names())
            .unwrap_or_default()
    }

    async fn table(
        &self,
        name: &str,
    ) -> Result<Option<Arc<dyn datafusion::catalog::TableProvider>>, DataFusionError> {
        let found = match &self.inner {
            Some(s) => s.table(name).await?,
            None => None,
        };
        if found.is_none() {
            self.missing.push(format!("{}.{name}", self.schema));
        }
        Ok(found)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.as_ref().is_some_and(|s| s.table_exist(name))
    }
}

/// Enforces the row limit and the deadline on a result stream.
struct Limited {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    rows: usize,
    max_rows: Option<usize>,
    done: bool,
}

impl Stream for Limited {
    type Item = Result<datafusion::arrow::array::RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            let err = QueryError::Timeout(self.timeout);
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(err)))));
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows();
                if let Some(max) = self.max_rows
                    && self.rows > max
                {
                    self.done = true;
                    let err = QueryError::TooManyRows(max);
                    return Poll::Ready(Some(Err(DataFusionError::External(Box::new(err)))));
                }
                Poll::Ready(Some(Ok(batch)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c > ?"),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND c > $2"
        );
        assert_eq!(number_placeholders("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn only_queries_pass_the_read_only_check() {
        assert!(check_read_only("SELECT 1").is_ok());
        assert!(check_read_only("WITH a AS (SELECT 1) SELECT * FROM a").is_ok());
        assert!(check_read_only("EXPLAIN SELECT 1").is_ok());
        for bad in [
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "INSERT INTO gold.t VALUES (1)",
            "DROP TABLE gold.t",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let err = check_read_only(bad).unwrap_err();
            assert!(matches!(err, QueryError::ReadOnly(_)), "{bad}: {err}");
        }
        assert!(matches!(
            check_read_only("SELEC 1"),
            Err(QueryError::InvalidSql(_))
        ));
        assert!(matches!(
            check_read_only("SELECT 1; SELECT 2"),
            Err(QueryError::InvalidSql(_))
        ));
    }
}

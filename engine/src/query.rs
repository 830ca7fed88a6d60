//! `QueryService`: read-only SQL for a principal, with a memory pool, a timeout and a row
//! limit, returning a stream of record batches. REST and Flight SQL both sit on it.

use std::pin::Pin;
use std::sync::Arc;
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

use crate::access::Principal;
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
    /// Classifies a DataFusion error.
    pub fn from_datafusion(e: DataFusionError) -> QueryError {
        let root = e.find_root();
        let user = |m: String| Some(QueryError::InvalidSql(m));
        let classified = match root {
            DataFusionError::SQL(err, _) => user(err.to_string()),
            DataFusionError::ResourcesExhausted(m) => {
                Some(QueryError::ResourcesExhausted(m.clone()))
            }
            DataFusionError::External(inner) => match inner.downcast_ref::<QueryError>() {
                Some(QueryError::Timeout(d)) => Some(QueryError::Timeout(*d)),
                Some(QueryError::TooManyRows(n)) => Some(QueryError::TooManyRows(*n)),
                _ => None,
            },
            DataFusionError::Plan(m) if m.contains("not found") => {
                Some(QueryError::NotFound(m.clone()))
            }
            DataFusionError::Plan(_) | DataFusionError::SchemaError(_, _) => {
                user(root.strip_backtrace())
            }
            DataFusionError::NotImplemented(m) => user(m.clone()),
            _ => None,
        };
        classified.unwrap_or_else(|| QueryError::Internal(Box::new(e)))
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
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| QueryError::Internal(Box::new(e)))?;
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, Layer::Gold.as_str())
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let visible = RoleCatalog {
            inner: Arc::clone(&self.catalog),
            layers: principal.role.layers(),
        };
        ctx.register_catalog(CATALOG, Arc::new(visible));
        Ok(ctx)
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
        let ctx = self.session(principal)?;
        let planning = async {
            let df = ctx.sql(&sql).await.map_err(QueryError::from_datafusion)?;
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

/// The lake catalog as one principal sees it.
#[derive(Debug)]
struct RoleCatalog {
    inner: Arc<LakeCatalog>,
    layers: Vec<Layer>,
}

impl CatalogProvider for RoleCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.as_str().to_string()).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let layer = Layer::parse(name)?;
        if !self.layers.contains(&layer) {
            return None;
        }
        self.inner.schema(name)
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

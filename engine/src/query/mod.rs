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
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{Stream, StreamExt};

mod budget;
mod functions;
pub mod gate;
pub mod travel;

pub use budget::{Admission, QueryPool, ServerMemory, Ticket};
pub use gate::SqlLimits;

use crate::auth::Principal;
use crate::error::ErrorKind;
use crate::session::{CATALOG, LakeCatalog};
use crate::table::Layer;

/// Limits on queries, each one a `[query]` key.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory one query may hold: operators, growing functions, result batches (bytes).
    pub memory_bytes: usize,
    /// Memory all queries of the process may hold together (bytes).
    pub server_memory_bytes: usize,
    /// Wall-clock time of planning, and from planning to the last batch.
    pub timeout: Duration,
    /// Rows a result may have (`None`: no limit).
    pub max_rows: Option<usize>,
    /// Bytes of Arrow data a result may have (`None`: no limit).
    pub max_result_bytes: Option<usize>,
    /// Size and nesting of the SQL text.
    pub sql: SqlLimits,
    /// Filters one rows request may have.
    pub max_filters: usize,
    /// Queries running at once in the process.
    pub max_concurrent: usize,
    /// Queries running at once for one principal.
    pub max_concurrent_per_user: usize,
    /// Bytes one query may spill to temporary files.
    pub spill_bytes: u64,
    /// Threads that plan and run queries, away from the servers' own workers.
    pub threads: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            server_memory_bytes: 4 << 30,
            timeout: Duration::from_secs(300),
            max_rows: None,
            max_result_bytes: None,
            sql: SqlLimits::default(),
            max_filters: 64,
            max_concurrent: 16,
            max_concurrent_per_user: 4,
            spill_bytes: 10 << 30,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
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
    /// The request passes a limit checked before planning (SQL size or nesting, filters).
    #[error("{0}")]
    Limit(String),
    /// Too many queries run now (for the server or the caller).
    #[error("{0}")]
    Busy(String),
    /// The result is larger than `[query] max_result_mb`.
    #[error("result exceeds `[query] max_result_mb` = {0} MiB")]
    TooManyBytes(usize),
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
            QueryError::InvalidSql(_) | QueryError::Limit(_) => ErrorKind::Invalid,
            QueryError::Busy(_) => ErrorKind::Busy,
            QueryError::ReadOnly(_) => ErrorKind::Forbidden,
            QueryError::NotFound(_) => ErrorKind::NotFound,
            QueryError::Timeout(_) => ErrorKind::Timeout,
            QueryError::TooManyRows(_)
            | QueryError::TooManyBytes(_)
            | QueryError::ResourcesExhausted(_) => ErrorKind::TooLarge,
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
            Some(QueryError::TooManyBytes(n)) => Some(QueryError::TooManyBytes(*n)),
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
    planner: Arc<Planner>,
    admission: Arc<Admission>,
    memory: Arc<ServerMemory>,
    /// Parquet footers and page indexes read by earlier queries: data files never change
    /// (a Delta commit adds new ones), so every query's session shares one bounded cache.
    footers: Arc<FileMetadataCache>,
}

/// Bytes of Parquet metadata the query sessions keep between queries (DataFusion's default).
const FOOTER_CACHE_BYTES: usize = 50 << 20;

/// The runtime that plans and runs queries: its threads are not the servers' workers,
/// so a heavy plan never stalls `/health`, and a timed-out plan is aborted there.
struct Planner {
    handle: tokio::runtime::Handle,
    /// Owned to shut it down without blocking when the service is dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Planner")
    }
}

impl Planner {
    fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("assay-query")
            // Deep but admitted plans recurse in the planner and optimizer.
            .thread_stack_size(16 << 20)
            .enable_all()
            .build()?;
        Ok(Planner {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the query runtime within `timeout`, aborting it past that.
    async fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let task = self.handle.spawn(work);
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(joined)) => Err(QueryError::Internal(Box::new(DataFusionError::Execution(
                format!("query task failed: {joined}"),
            )))),
            Err(_) => {
                abort.abort();
                Err(QueryError::Timeout(timeout))
            }
        }
    }
}

impl Planner {
    /// Spawns `work` on the query runtime.
    fn spawn(
        &self,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.handle.spawn(work)
    }
}

/// The batches of a query running on the query runtime; dropping it stops the query.
struct Received {
    rx: tokio::sync::mpsc::Receiver<Result<datafusion::arrow::array::RecordBatch, DataFusionError>>,
    producer: tokio::task::AbortHandle,
}

impl Stream for Received {
    type Item = Result<datafusion::arrow::array::RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

impl Drop for Planner {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl QueryService {
    /// A service over a catalog with the given limits, with its own query runtime.
    ///
    /// # Errors
    /// The query runtime's threads cannot be started.
    pub fn new(catalog: Arc<LakeCatalog>, limits: QueryLimits) -> Result<Self, QueryError> {
        let planner = Planner::new(limits.threads).map_err(|e| {
            QueryError::Internal(Box::new(DataFusionError::Execution(format!(
                "cannot start the query runtime: {e}"
            ))))
        })?;
        Ok(QueryService {
            catalog,
            planner: Arc::new(planner),
            admission: Admission::new(limits.max_concurrent, limits.max_concurrent_per_user),
            memory: Arc::new(ServerMemory::new(limits.server_memory_bytes)),
            footers: Arc::new(
                DefaultCache::new(FOOTER_CACHE_BYTES).with_name("assay parquet footers"),
            ),
            limits,
        })
    }

    /// The catalog behind the service.
    pub fn catalog(&self) -> &Arc<LakeCatalog> {
        &self.catalog
    }

    /// The limits applied to every query.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Bytes all queries hold now (the server-wide budget's use).
    pub fn memory_used(&self) -> usize {
        self.memory.used()
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.admission.running()
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
        let pool = Arc::new(QueryPool::new(
            self.limits.memory_bytes,
            Arc::clone(&self.memory),
        ));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_max_temp_directory_size(self.limits.spill_bytes),
            )
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::clone(&self.footers)))
                    .with_metadata_cache_limit(FOOTER_CACHE_BYTES),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(Box::new(e)))?;
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, Layer::Gold.as_str())
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        functions::register(&ctx, &pool);
        let missing = Missing::default();
        let visible = RoleCatalog {
            inner: Arc::clone(&self.catalog),
            layers: principal.role.layers(),
            missing: missing.clone(),
        };
        ctx.register_catalog(CATALOG, Arc::new(visible));
        Ok((ctx, missing))
    }

    /// Refuses a rows request with more filters than `[query] max_filters`.
    ///
    /// # Errors
    /// [`QueryError::Limit`] naming the limit.
    pub fn check_filters(&self, filters: usize) -> Result<(), QueryError> {
        if filters > self.limits.max_filters {
            return Err(QueryError::Limit(format!(
                "{filters} filters, more than `[query] max_filters` = {}",
                self.limits.max_filters
            )));
        }
        Ok(())
    }

    /// Plans a read-only query (optionally with `$1`-style parameter values): the text is
    /// checked against the limits, planned on the query runtime within the timeout, and
    /// every node of the plan must read.
    ///
    /// # Errors
    /// A limit, bad SQL, a plan that would not only read, an unknown or hidden table, too
    /// many queries running.
    pub async fn plan(
        &self,
        principal: &Principal,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<DataFrame, QueryError> {
        let limits = self.limits.sql;
        gate::check_size(sql, limits)?;
        let sql = travel::rewrite(&number_placeholders(sql))?;
        let ticket = self.admission.admit(&principal.name)?;
        let (ctx, missing) = self.recording_session(principal)?;
        let planning = async move {
            let _ticket = ticket;
            let statement = gate::parse(&sql, limits)?;
            let state = ctx.state();
            let found = |e| {
                missing
                    .error()
                    .unwrap_or_else(|| QueryError::from_datafusion(e))
            };
            let plan = state.statement_to_plan(statement).await.map_err(found)?;
            gate::check_plan(&plan)?;
            let df = ctx.execute_logical_plan(plan).await.map_err(found)?;
            match params {
                Some(p) => df.with_param_values(p).map_err(QueryError::from_datafusion),
                None => Ok(df),
            }
        };
        self.planner.run(self.limits.timeout, planning).await
    }

    /// Runs a planned query as a stream that enforces the row, byte and memory limits and
    /// the timeout; it counts as one of the principal's running queries until it ends.
    ///
    /// # Errors
    /// Too many queries running; physical planning failed.
    pub async fn execute(
        &self,
        principal: &Principal,
        df: DataFrame,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let ticket = self.admission.admit(&principal.name)?;
        let task = df.task_ctx();
        let started = tokio::time::Instant::now();
        let stream = self
            .planner
            .run(self.limits.timeout, async move {
                df.execute_stream()
                    .await
                    .map_err(QueryError::from_datafusion)
            })
            .await?;
        let schema = stream.schema();
        let mut limited = Limited {
            inner: stream,
            deadline: Box::pin(tokio::time::sleep_until(started + self.limits.timeout)),
            timeout: self.limits.timeout,
            rows: 0,
            max_rows: self.limits.max_rows,
            bytes: 0,
            max_bytes: self.limits.max_result_bytes,
            held: MemoryConsumer::new("query result").register(task.memory_pool()),
            _ticket: ticket,
            done: false,
        };
        // The query runs on the query runtime; the caller's task only receives batches.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let producer = self.planner.spawn(async move {
            while let Some(item) = limited.next().await {
                if item.is_err() {
                    // The query ends here: its slot and memory are free before the error
                    // reaches the client.
                    drop(limited);
                    let _ = tx.send(item).await;
                    return;
                }
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            drop(limited);
        });
        let received = Received {
            rx,
            producer: producer.abort_handle(),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, received)))
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

/// Enforces the row, byte and memory limits and the deadline on a result stream; the
/// batch last handed out stays charged to the query's pool until the next is asked for.
struct Limited {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    rows: usize,
    max_rows: Option<usize>,
    bytes: usize,
    max_bytes: Option<usize>,
    held: MemoryReservation,
    _ticket: Ticket,
    done: bool,
}

impl Limited {
    fn fail(&mut self, err: QueryError) -> Poll<Option<<Self as Stream>::Item>> {
        self.done = true;
        self.held.free();
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(err)))))
    }
}

impl Stream for Limited {
    type Item = Result<datafusion::arrow::array::RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let timeout = self.timeout;
            return self.fail(QueryError::Timeout(timeout));
        }
        self.held.free();
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows();
                if let Some(max) = self.max_rows
                    && self.rows > max
                {
                    return self.fail(QueryError::TooManyRows(max));
                }
                let size = batch.get_array_memory_size();
                self.bytes += size;
                if let Some(max) = self.max_bytes
                    && self.bytes > max
                {
                    return self.fail(QueryError::TooManyBytes(max >> 20));
                }
                if let Err(e) = self.held.try_grow(size) {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
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
}

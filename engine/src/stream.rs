//! A step's inputs: one streamed table, read from the commits the step has not consumed yet
//! (or whole on a first run and on a full refresh), and every other table it reads whole,
//! at its latest version — a stream-static join, as declarative pipelines do.
//!
//! Each table is opened once, so the rows a step reads and the cursor it records come from
//! the same snapshot even when a writer commits in between.

use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use crate::delta::{self, Changes, consumed_app_id};
use crate::error::{EngineError, Result};
use crate::step::StepContext;
use crate::table::{Layer, TableId};

/// The inputs of one step, registered under their `layer.name` in [`Inputs::session`].
pub struct Inputs {
    /// A session where the stream holds only its new rows and the other tables are whole.
    pub session: SessionContext,
    /// The streamed input.
    pub stream: TableId,
    /// The stream's table, as opened for this read.
    pub stream_table: DeltaTable,
    /// The stream version the step had consumed; `None` when it reads the whole stream
    /// (first run or full refresh).
    pub consumed: Option<i64>,
    /// The stream version this read reaches (the cursor to record).
    pub latest: i64,
    /// What the stream's commits after `consumed` changed (empty when `consumed` is `None`).
    pub changes: Changes,
    /// Every input's version as read, stream first (`assay.consumed:<table>` -> version).
    pub versions: Vec<(String, i64)>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("stream", &self.stream)
            .field("consumed", &self.consumed)
            .field("latest", &self.latest)
            .field("changes", &self.changes)
            .finish_non_exhaustive()
    }
}

impl Inputs {
    /// True when only the stream's new commits are read.
    pub fn is_incremental(&self) -> bool {
        self.consumed.is_some()
    }

    /// The stream's cursor to record in the step's commit.
    pub fn cursor(&self) -> (String, i64) {
        (consumed_app_id(&self.stream), self.latest)
    }
}

/// Whether a step has something to read.
#[derive(Debug)]
pub enum Prepared {
    /// The inputs, ready to query.
    Ready(Box<Inputs>),
    /// The stream has no commit the step has not consumed.
    UpToDate,
    /// An input has no table yet (its step has not produced anything).
    Waiting(TableId),
}

/// A session whose default catalog has the schemas `bronze`, `silver`, `gold`, `_system`,
/// empty, for a step to register its inputs in; `for_cluster`: the tables registered will
/// be read on a Ballista cluster ([`crate::cluster::Bound`]).
///
/// # Errors
/// Registering a schema failed.
pub fn input_session(context: &TableId, for_cluster: bool) -> Result<SessionContext> {
    let session = SessionContext::new_with_config(crate::cluster::session_config(for_cluster));
    let catalog = session.catalog("datafusion").ok_or_else(|| {
        EngineError::query(
            context,
            datafusion::error::DataFusionError::Plan("no default catalog".into()),
        )
    })?;
    for layer in Layer::ALL {
        catalog
            .register_schema(layer.as_str(), Arc::new(MemorySchemaProvider::new()))
            .map_err(|e| EngineError::query(context, e))?;
    }
    Ok(session)
}

/// Registers `provider` as `layer.name` of `id` in `session`.
///
/// # Errors
/// The name is taken.
pub fn register(
    session: &SessionContext,
    id: &TableId,
    provider: Arc<dyn TableProvider>,
) -> Result<()> {
    session
        .register_table(
            TableReference::partial(id.layer.as_str(), id.name.as_str()),
            provider,
        )
        .map(|_| ())
        .map_err(|e| EngineError::query(id, e))
}

/// A provider over the given data files of a table (all of them when `None`; an empty
/// table with its schema when the list is empty).
///
/// # Errors
/// Planning the scan failed.
pub async fn provider(
    id: &TableId,
    table: &DeltaTable,
    session: &SessionContext,
    files: Option<Vec<String>>,
) -> Result<Arc<dyn TableProvider>> {
    // An empty list is an empty table; one going to a cluster is an empty file list.
    let bound = crate::cluster::is_bound(session.state().config());
    if files.as_ref().is_some_and(Vec::is_empty) && !bound {
        let schema = delta::arrow_schema(id, table)?;
        let empty =
            MemTable::try_new(schema, vec![vec![]]).map_err(|e| EngineError::query(id, e))?;
        return Ok(Arc::new(empty));
    }
    Ok(delta::scan(id, table, session, files).await?.into_view())
}

/// Opens the inputs of `consumer` (writing `target`, when it exists): `stream` from the
/// commits after the version recorded in `target` (whole on a full refresh or a first
/// run), every table of `upstreams` other than the stream whole.
///
/// # Errors
/// Opening or reading a table's log failed; [`EngineError::NeedsFullRefresh`] when the
/// stream's log no longer holds the commits the consumer needs.
pub async fn prepare(
    ctx: &StepContext,
    consumer: &TableId,
    target: Option<&DeltaTable>,
    stream: &TableId,
    upstreams: &[TableId],
) -> Result<Prepared> {
    let Some(stream_table) = ctx.lake.open(stream).await? else {
        return Ok(Prepared::Waiting(stream.clone()));
    };
    let latest = delta::version(&stream_table);
    let consumed = match target {
        Some(t) if !ctx.full_refresh => {
            delta::txn_version(consumer, t, &consumed_app_id(stream)).await?
        }
        _ => None,
    };
    if consumed == Some(latest) {
        return Ok(Prepared::UpToDate);
    }
    // Reading the whole stream needs no file list: the scan takes the snapshot's files.
    let changes = match consumed {
        Some(_) => delta::changes_since(consumer, stream, &stream_table, consumed).await?,
        None => Changes::default(),
    };
    let session = input_session(consumer, ctx.catalog.is_for_cluster())?;
    let files = consumed.map(|_| changes.added.clone());
    let p = provider(stream, &stream_table, &session, files).await?;
    register(&session, stream, p)?;
    let mut versions = vec![(consumed_app_id(stream), latest)];
    for up in upstreams.iter().filter(|u| *u != stream) {
        let Some(table) = ctx.lake.open(up).await? else {
            return Ok(Prepared::Waiting(up.clone()));
        };
        versions.push((consumed_app_id(up), delta::version(&table)));
        let p = provider(up, &table, &session, None).await?;
        register(&session, up, p)?;
    }
    Ok(Prepared::Ready(Box::new(Inputs {
        session,
        stream: stream.clone(),
        stream_table,
        consumed,
        latest,
        changes,
        versions,
    })))
}

//! The `Step` seam: one node of the DAG, implemented by each layer crate.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::Action;
use crate::error::{EngineError, Result};
use crate::session::LakeCatalog;
use crate::storage::Lake;
use crate::table::TableId;

/// What a step gets to do its work.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The lake to read and write.
    pub lake: Lake,
    /// The catalog over the lake (latest snapshots).
    pub catalog: Arc<LakeCatalog>,
    /// The run this step belongs to.
    pub run_id: String,
    /// Rebuild from scratch (`--full-refresh`): bronze re-ingests every file still present,
    /// silver replays its whole streamed input, gold recomputes; each table is replaced in
    /// one commit and its cursors restart.
    pub full_refresh: bool,
    /// Test-only fault points.
    pub faults: Faults,
}

/// One expectation's outcome in one run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpectationOutcome {
    /// `layer.name` of the table.
    pub table: String,
    /// Rule name.
    pub rule: String,
    /// Action taken on failing rows.
    pub action: Action,
    /// Rows that passed.
    pub passed: u64,
    /// Rows that failed.
    pub failed: u64,
}

/// What a step did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepReport {
    /// Rows read from sources or upstream tables.
    pub rows_in: u64,
    /// Rows written to the step's table.
    pub rows_written: u64,
    /// Rows rejected (malformed, failed casts, dropped or quarantined by expectations).
    pub rows_rejected: u64,
    /// The table version committed, `None` when nothing was new.
    pub version: Option<i64>,
    /// Expectation outcomes (silver).
    pub expectations: Vec<ExpectationOutcome>,
}

/// A failed step: the cause, whether a retry may help, and expectation outcomes so far.
#[derive(Debug)]
pub struct StepError {
    /// The cause.
    pub source: Box<dyn StdError + Send + Sync>,
    /// True when a retry may succeed (IO, commit conflicts).
    pub transient: bool,
    /// Expectation outcomes measured before the failure.
    pub expectations: Vec<ExpectationOutcome>,
}

impl StepError {
    /// A failure that a retry will not fix.
    pub fn permanent(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StepError {
            source: source.into(),
            transient: false,
            expectations: Vec::new(),
        }
    }

    /// A failure a retry may fix.
    pub fn transient(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StepError {
            source: source.into(),
            transient: true,
            expectations: Vec::new(),
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Our error types already print their sources' messages.
        write!(f, "{}", self.source)
    }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        let transient = e.is_transient();
        StepError {
            source: Box::new(e),
            transient,
            expectations: Vec::new(),
        }
    }
}

/// One node of the pipeline: bronze ingest, silver refinement or gold model.
#[async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    /// The table the step writes.
    fn table(&self) -> &TableId;
    /// The tables the step reads.
    fn upstreams(&self) -> &[TableId];
    /// Runs the step once.
    async fn run(&self, ctx: &StepContext) -> Result<StepReport, StepError>;
}

/// Test-only fault points: a named point fails with [`EngineError::InjectedFault`].
///
/// Points are `before_commit:<layer.name>`, checked after a step has written its data files
/// and before it commits them, to prove that a crash there loses and duplicates nothing.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    points: Arc<HashSet<String>>,
}

impl Faults {
    /// Faults that fire at the given points.
    pub fn new(points: impl IntoIterator<Item = String>) -> Self {
        Faults {
            points: Arc::new(points.into_iter().collect()),
        }
    }

    /// Fails when `point` is armed.
    ///
    /// # Errors
    /// [`EngineError::InjectedFault`] naming the point.
    pub fn check(&self, point: &str) -> Result<()> {
        if self.points.contains(point) {
            return Err(EngineError::InjectedFault(point.to_string()));
        }
        Ok(())
    }

    /// The fault point between writing a table's data files and committing them.
    ///
    /// # Errors
    /// See [`Faults::check`].
    pub fn before_commit(&self, table: &TableId) -> Result<()> {
        self.check(&format!("before_commit:{table}"))
    }
}

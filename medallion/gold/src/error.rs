//! Gold errors.

use assay_engine::EngineError;
use assay_engine::step::StepError;

/// Result alias of the gold crate.
pub type Result<T, E = GoldError> = std::result::Result<T, E>;

/// What can go wrong while building a model.
#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    /// The model's SQL failed to plan or run.
    #[error("{model} ({file}): {source}")]
    Query {
        /// The gold table.
        model: String,
        /// The SQL file.
        file: String,
        /// The DataFusion error.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// A `partition_by` column is not in the model's output.
    #[error("{model}: partition column `{column}` is not in the query's output")]
    PartitionColumn {
        /// The gold table.
        model: String,
        /// The column.
        column: String,
    },
    /// An incremental model's output no longer has the table's columns.
    #[error(
        "{model}: the model's output changed ({change}); an incremental model keeps its columns: rebuild it with `assay run --full-refresh --select {model}`"
    )]
    SchemaChanged {
        /// The gold table.
        model: String,
        /// What changed, column by column.
        change: String,
    },
    /// A `unique_key` column is not in the model's output.
    #[error("{model}: `unique_key` column `{column}` is not in the query's output")]
    UniqueKey {
        /// The gold table.
        model: String,
        /// The column.
        column: String,
    },
    /// An audit cannot be planned or run (a column the model lacks, a bad rule).
    #[error("{model}: audit `{audit}`: {message}")]
    Audit {
        /// The gold table.
        model: String,
        /// The audit's name.
        audit: String,
        /// What is wrong.
        message: String,
    },
    /// A `fail` audit found rows (or a table) that break it: nothing was published.
    #[error("{model}: audit failed: {details}; {model} left at its previous version")]
    AuditFailed {
        /// The gold table.
        model: String,
        /// `audit: what failed` per failing audit.
        details: String,
        /// Every audit's outcome, recorded in `_system.expectations` though the step fails.
        outcomes: Vec<assay_engine::step::ExpectationOutcome>,
    },
    /// An engine operation failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<GoldError> for StepError {
    fn from(mut e: GoldError) -> Self {
        if let GoldError::AuditFailed { outcomes, .. } = &mut e {
            let outcomes = std::mem::take(outcomes);
            let mut err = StepError::permanent(e);
            err.expectations = outcomes;
            return err;
        }
        match &e {
            GoldError::Engine(inner) if inner.is_transient() => StepError::transient(e),
            _ => StepError::permanent(e),
        }
    }
}

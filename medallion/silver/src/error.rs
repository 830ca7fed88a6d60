//! Silver errors.

use assay_engine::EngineError;
use assay_engine::step::StepError;

/// Result alias of the silver crate.
pub type Result<T, E = SilverError> = std::result::Result<T, E>;

/// What can go wrong while refining.
#[derive(Debug, thiserror::Error)]
pub enum SilverError {
    /// A declared column, key or `sequence_by` is not in the input.
    #[error("{table}: column `{column}` is not in the input (input columns: {available})")]
    MissingColumn {
        /// The silver table.
        table: String,
        /// The column named in the project file.
        column: String,
        /// What the input has.
        available: String,
    },
    /// An expectation is not a valid SQL boolean expression.
    #[error("{table}: expectation `{rule}`: {message}")]
    BadRule {
        /// The silver table.
        table: String,
        /// The rule name.
        rule: String,
        /// The parser's or planner's message.
        message: String,
    },
    /// Rows broke an expectation whose action is `fail`.
    #[error("{table}: expectation failed: {details}; silver left unchanged")]
    ExpectationFailed {
        /// The silver table.
        table: String,
        /// `rule (N rows)` for each failing rule.
        details: String,
        /// Every rule's outcome, recorded in `_system.expectations` even though the step fails.
        outcomes: Vec<assay_engine::step::ExpectationOutcome>,
    },
    /// The output columns no longer match the table's (an append cannot change them).
    #[error(
        "{table}: the output columns changed ({change}); rebuild it with `assay run --full-refresh --select {table}`"
    )]
    SchemaChanged {
        /// The silver table.
        table: String,
        /// What changed, column by column.
        change: String,
    },
    /// A query or write failed.
    #[error("{table}: {source}")]
    Query {
        /// The silver table.
        table: String,
        /// The DataFusion error.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// An engine operation failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<SilverError> for StepError {
    fn from(mut e: SilverError) -> Self {
        if let SilverError::ExpectationFailed { outcomes, .. } = &mut e {
            let outcomes = std::mem::take(outcomes);
            let mut err = StepError::permanent(e);
            err.expectations = outcomes;
            return err;
        }
        let transient = match &e {
            SilverError::Engine(inner) => inner.is_transient(),
            _ => false,
        };
        if transient {
            StepError::transient(e)
        } else {
            StepError::permanent(e)
        }
    }
}

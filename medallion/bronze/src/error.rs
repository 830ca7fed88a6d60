//! Bronze errors.

use assay_engine::EngineError;
use assay_engine::step::StepError;

/// Result alias of the bronze crate.
pub type Result<T, E = BronzeError> = std::result::Result<T, E>;

/// What can go wrong while ingesting.
#[derive(Debug, thiserror::Error)]
pub enum BronzeError {
    /// A line or file could not be parsed and `on_error = "fail"`.
    #[error("{file}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Malformed {
        /// The source file URL.
        file: String,
        /// 1-based line number, when the problem is one line.
        line: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// The file's format cannot be told from its name.
    #[error("{file}: cannot tell the format from the extension; set `format` on the source")]
    UnknownFormat {
        /// The source file URL.
        file: String,
    },
    /// Reading a source failed.
    #[error("{url}: {source}")]
    Read {
        /// What was being read.
        url: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Listing or opening source files failed.
    #[error("{url}: {source}")]
    Store {
        /// What was being listed or opened.
        url: String,
        /// The object store error.
        #[source]
        source: object_store::Error,
    },
    /// A source URL or glob that cannot be used.
    #[error("source `{url}`: {message}")]
    Source {
        /// The source URL or glob as configured.
        url: String,
        /// Why it cannot be used.
        message: String,
    },
    /// An HTTP source failed (after its retries): unreachable, refused, not JSON, too many
    /// pages. Never names a secret.
    #[error("{method} {url}: {message}")]
    Http {
        /// The request method.
        method: String,
        /// The page's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A database source failed: unreachable, refused, a missing table, a value that does
    /// not fit its column. Never names a secret.
    #[error("{system} {what}: {message}")]
    Database {
        /// `PostgreSQL` or `MySQL/MariaDB`.
        system: &'static str,
        /// The table (`table `x``) or `query`.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The source gained columns and `schema_evolution = "fail"`.
    #[error(
        "{table}: the source has new column(s) {columns}; nothing was written (schema_evolution = \"fail\"; set \"add_columns\" to add them)"
    )]
    SchemaChanged {
        /// The bronze table.
        table: String,
        /// The new columns.
        columns: String,
    },
    /// Building or writing batches failed.
    #[error("table {table}: {source}")]
    Write {
        /// The table being written.
        table: String,
        /// The delta-rs error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// An engine operation failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<BronzeError> for StepError {
    fn from(e: BronzeError) -> Self {
        let transient = match &e {
            BronzeError::Read { .. } => true,
            BronzeError::Store { source, .. } => {
                assay_engine::error::store_error_is_transient(source)
            }
            BronzeError::Engine(inner) => inner.is_transient(),
            _ => false,
        };
        if transient {
            StepError::transient(e)
        } else {
            StepError::permanent(e)
        }
    }
}

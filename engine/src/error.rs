//! The engine's error type.

use std::fmt;

use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// Result alias used across the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What kind of failure an error is, for a client: each server maps a kind to one status
/// (an HTTP code, a gRPC code) through one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The table, run, account or key does not exist, or the caller may not see it.
    NotFound,
    /// The request is malformed: a bad parameter, value, body, SQL or config.
    Invalid,
    /// The caller is known but may not do this.
    Forbidden,
    /// No credentials, or bad ones.
    Unauthenticated,
    /// The state does not allow it now: a taken name, a run in progress, a commit race.
    Conflict,
    /// A backend the request needs (storage, the account store, an issuer) is unreachable.
    Unavailable,
    /// The work ran past its time limit.
    Timeout,
    /// The result or the work exceeds a limit (rows, memory).
    TooLarge,
    /// Too many requests or queries now (a concurrency cap or a rate limit): retry later.
    Busy,
    /// A bug or an unexpected failure: details are logged, never sent.
    Internal,
}

/// Everything that can go wrong in the engine, with the context a user needs to act.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The project file or a file it names is invalid.
    #[error("{file}: {message}")]
    Config {
        /// The file at fault (usually `assay.toml`).
        file: String,
        /// What is wrong, naming the key and line.
        message: String,
    },
    /// The lake root URL cannot be used.
    #[error("lake root `{url}`: {message}")]
    LakeRoot {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        message: String,
    },
    /// A Delta operation on a table failed.
    #[error("table {table}: {source}")]
    Delta {
        /// `layer.name` of the table.
        table: String,
        /// The delta-rs error.
        #[source]
        source: Box<DeltaTableError>,
    },
    /// The Ballista cluster cannot be reached.
    #[error("Ballista scheduler {scheduler}: {message}")]
    Cluster {
        /// The scheduler's address.
        scheduler: String,
        /// Why it cannot be used.
        message: String,
    },
    /// A query failed.
    #[error("{context}: {source}")]
    Query {
        /// What was being queried (a table, a model, a file).
        context: String,
        /// The DataFusion error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// Object store access failed.
    #[error("{url}: {source}")]
    ObjectStore {
        /// The URL that was being accessed.
        url: String,
        /// The object store error.
        #[source]
        source: object_store::Error,
    },
    /// The pipeline's steps depend on each other in a cycle.
    #[error("dependency cycle: {0}")]
    Cycle(String),
    /// The account store or a token could not be handled (hashing, a malformed log row).
    #[error("auth: {0}")]
    Auth(String),
    /// A model refers to a table no step produces.
    #[error("{model} references unknown table `{table}`")]
    UnknownTable {
        /// The model (step) whose SQL holds the reference.
        model: String,
        /// The table it names.
        table: String,
    },
    /// SQL text could not be parsed.
    #[error("{file}: invalid SQL: {message}")]
    Sql {
        /// The file (or step) the SQL came from.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// The scheduler's records in the lake could not be read or written.
    #[error("scheduler: {0}")]
    Schedule(String),
    /// A `--select` expression names nothing.
    #[error("selection `{0}` matches no step")]
    EmptySelection(String),
    /// A table cannot be brought up to date incrementally: the commits of its streamed
    /// input it still needs are gone (log cleanup) or were rewritten.
    #[error(
        "{table}: cannot read {upstream} incrementally: {reason}; rebuild it with `assay run --full-refresh --select {table}`"
    )]
    NeedsFullRefresh {
        /// The table that consumes the stream.
        table: String,
        /// The streamed input.
        upstream: String,
        /// What happened to the input's log.
        reason: String,
    },
    /// A maintenance request that cannot be carried out as asked (nothing was changed).
    #[error("table {table}: {message}")]
    Maintenance {
        /// `layer.name`.
        table: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A version (or point in time) of a table that does not exist or is no longer readable.
    #[error("table {table}: {message}")]
    VersionNotFound {
        /// `layer.name`.
        table: String,
        /// Which version and why.
        message: String,
    },
    /// Rows whose columns the table cannot take as they are.
    #[error("table {table}: {message}")]
    SchemaChange {
        /// `layer.name`.
        table: String,
        /// Which column and what to do.
        message: String,
    },
    /// A clone target that cannot receive the copy (unreachable, or holding other data).
    #[error("clone target {url}: {message}")]
    CloneTarget {
        /// The target's URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A test-only fault point fired.
    #[error("injected fault at {0}")]
    InjectedFault(String),
}

impl EngineError {
    /// Wraps a delta-rs error with the table it concerns.
    pub fn delta(table: impl fmt::Display, source: DeltaTableError) -> Self {
        EngineError::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }

    /// Wraps a DataFusion error with what was being done.
    pub fn query(context: impl fmt::Display, source: DataFusionError) -> Self {
        EngineError::Query {
            context: context.to_string(),
            source: Box::new(source),
        }
    }

    /// Wraps an object store error with the URL concerned.
    pub fn object_store(url: impl fmt::Display, source: object_store::Error) -> Self {
        EngineError::ObjectStore {
            url: url.to_string(),
            source,
        }
    }

    /// How a client should see this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Config { .. }
            | EngineError::Sql { .. }
            | EngineError::Cycle(_)
            | EngineError::EmptySelection(_)
            | EngineError::Maintenance { .. }
            | EngineError::CloneTarget { .. }
            | EngineError::SchemaChange { .. } => ErrorKind::Invalid,
            EngineError::VersionNotFound { .. } => ErrorKind::NotFound,
            EngineError::Cluster { .. } => ErrorKind::Unavailable,
            EngineError::UnknownTable { .. } => ErrorKind::NotFound,
            EngineError::NeedsFullRefresh { .. } => ErrorKind::Conflict,
            EngineError::Query { source, .. } => crate::query::datafusion_kind(source),
            EngineError::ObjectStore { source, .. } => store_kind(source),
            EngineError::Delta { source, .. } => match source.as_ref() {
                DeltaTableError::ObjectStore { source } => store_kind(source),
                DeltaTableError::VersionAlreadyExists(_) | DeltaTableError::Transaction { .. } => {
                    ErrorKind::Conflict
                }
                DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_) => {
                    ErrorKind::NotFound
                }
                DeltaTableError::Io { .. } => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            EngineError::LakeRoot { .. }
            | EngineError::Auth(_)
            | EngineError::InjectedFault(_)
            | EngineError::Schedule(_) => ErrorKind::Internal,
        }
    }

    /// True when retrying the same operation may succeed (IO, commit conflicts).
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Cluster { .. } => true,
            EngineError::ObjectStore { source, .. } => store_error_is_transient(source),
            EngineError::Delta { source, .. } => match source.as_ref() {
                DeltaTableError::ObjectStore { source } => store_error_is_transient(source),
                DeltaTableError::Io { .. }
                | DeltaTableError::Transaction { .. }
                | DeltaTableError::VersionAlreadyExists(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// The kind of an object store error: unreachable storage is `Unavailable`.
fn store_kind(e: &object_store::Error) -> ErrorKind {
    if store_error_is_transient(e) {
        ErrorKind::Unavailable
    } else if matches!(e, object_store::Error::NotFound { .. }) {
        ErrorKind::NotFound
    } else {
        ErrorKind::Internal
    }
}

/// True when an object store error may go away on retry. A missing bucket or object, a
/// refused credential or a bad path will not: retrying only delays the message.
pub fn store_error_is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

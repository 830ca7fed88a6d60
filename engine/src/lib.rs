//! # assay-engine
//!
//! The core of Assay, shared by the medallion layers and the servers:
//!
//! - [`config`]: the project file (`assay.toml`) parsed once into typed, validated config;
//! - [`storage::Lake`]: the lake root URL and its object store; tables live at
//!   `<root>/<layer>/<name>`;
//! - [`delta`]: Delta IO (one commit per write, cursors as `txn` actions in the same commit,
//!   reading only the files added since a version);
//! - [`session::LakeCatalog`]: a DataFusion catalog with schemas `bronze`, `silver`, `gold`,
//!   `_system` that resolves the latest snapshot per query; [`cluster`]: the same queries on
//!   a Ballista cluster, the lake's tables sent as their files;
//! - [`step::Step`], [`dag::Pipeline`] and [`runner`]: the DAG of steps and how it runs;
//!   [`progress`]: rows and bytes a running step has written so far;
//! - [`stream`]: a step's inputs, one streamed incrementally and the others whole;
//! - [`history`]: `_system.runs` and `_system.expectations`; [`launcher`]: runs a server
//!   starts in the background (`POST /runs`); [`scheduler`]: the `[[schedule]]` ticks
//!   `assay serve` fires, each claimed once across replicas through the lake; [`alerts`]:
//!   `[[alert]]` webhooks told about finished runs, in the background;
//! - [`service`]: the serving core ([`service::LakeService`]) every server is a thin
//!   adapter over: one authorization ([`auth::authorize`]), one error kind per failure;
//! - [`identity`]: roles, principals and secrets (plain values); [`auth`]: passwords, JWTs,
//!   API keys, OIDC and the account store ([`auth::store`], kept outside the served
//!   namespace under `<root>/_auth/`) — a tree that storage, session and config never
//!   import; [`query`]: read-only SQL with limits.
//!
//! Data flows: each layer crate turns its config section into [`step::Step`]s; the binary
//! puts them in a [`dag::Pipeline`] (upstreams come from the SQL's table references) and
//! [`runner::run`] executes it, then [`history::record`] writes the run.

pub mod alerts;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod dag;
pub mod delta;
mod emulator;
pub mod error;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod history;
pub mod identity;
pub mod launcher;
pub mod lifecycle;
pub mod progress;
pub mod query;
pub mod retry;
pub mod runner;
pub mod scheduler;
pub mod service;
pub mod session;
pub mod step;
pub mod storage;
pub mod stream;
pub mod table;
pub mod tls;

pub use error::{EngineError, ErrorKind, Result};
pub use storage::Lake;
pub use table::{Layer, TableId};

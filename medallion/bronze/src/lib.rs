//! # assay-bronze
//!
//! Sources -> bronze Delta tables. A files source lists a glob (local or any URL the lake
//! supports), skips files already ingested (path, size and modification time are recorded
//! as Delta `txn` actions in the same commit as the rows), parses CSV, NDJSON or Parquet
//! batch by batch on a blocking thread, adds the lineage columns `_ingested_at`,
//! `_source_file` and `_batch_id`, and commits everything as one Delta version. Malformed
//! lines either fail the step (file, line, reason) or go to `bronze.<name>__rejected`.
//! An HTTP source ([`http`]) pages through a JSON API into the same writers, its cursor
//! kept as a table property in the same commit as the rows.

mod database;
pub mod discover;
pub mod error;
mod formats;
pub mod http;
pub mod ingest;
mod mysql;
mod postgres;

use std::sync::Arc;

use assay_engine::config::Project;
use assay_engine::step::Step;

pub use error::{BronzeError, Result};
pub use ingest::BronzeStep;

/// One step per `[[bronze]]` entry of the project.
pub fn steps(project: &Project) -> Vec<Arc<dyn Step>> {
    project
        .bronze
        .iter()
        .map(|b| Arc::new(BronzeStep::new(b.clone())) as Arc<dyn Step>)
        .collect()
}

//! # assay-silver
//!
//! Bronze -> silver. Each step reads only the bronze files committed since the version it
//! last consumed (recorded as a Delta `txn` action in its own commit), optionally through a
//! SQL file, casts to the declared column types, evaluates expectations (warn, drop,
//! quarantine, fail), writes rejected rows with their reasons to
//! `silver.<name>__quarantine`, keeps the latest row per key by `sequence_by`, and MERGEs
//! into silver by keys.

mod decimal;
mod dedup;
pub mod error;
mod load;
mod merge;
pub mod refine;
mod scd2;
mod stage;
mod tombstones;

use std::sync::Arc;

use assay_engine::EngineError;
use assay_engine::config::Project;
use assay_engine::step::Step;

pub use error::{Result, SilverError};
pub use refine::SilverStep;

/// One step per `[[silver]]` entry of the project.
///
/// # Errors
/// An entry's SQL does not parse.
pub fn steps(project: &Project) -> std::result::Result<Vec<Arc<dyn Step>>, EngineError> {
    project
        .silver
        .iter()
        .map(|s| Ok(Arc::new(SilverStep::new(s.clone())?) as Arc<dyn Step>))
        .collect()
}

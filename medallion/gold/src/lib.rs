//! # assay-gold
//!
//! SQL models -> gold tables. Each model is one `SELECT` over `silver.*` / `gold.*` tables
//! (its upstreams come from the SQL's table references), planned against the lake catalog
//! and streamed into a full refresh of the gold table in one Delta commit, optionally
//! partitioned. The upstream versions the build saw are recorded in the same commit, so an
//! unchanged model is skipped. A model that declares `incremental` reads only its stream's
//! changes since the last run and MERGEs, appends or replaces the touched partitions.

mod audit;
pub mod error;
mod incremental;
pub mod model;

use std::sync::Arc;

use assay_engine::EngineError;
use assay_engine::config::Project;
use assay_engine::step::Step;

pub use error::{GoldError, Result};
pub use model::GoldStep;

/// One step per gold model of the project.
///
/// # Errors
/// A model's SQL does not parse.
pub fn steps(project: &Project) -> std::result::Result<Vec<Arc<dyn Step>>, EngineError> {
    project
        .gold
        .iter()
        .map(|g| Ok(Arc::new(GoldStep::new(g.clone(), project.cluster_for(g))?) as Arc<dyn Step>))
        .collect()
}

//! The Unity Catalog API's shapes, as Assay answers them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::super::{Result, ServiceError};
use super::MAX_PAGE;

/// A catalog (`CatalogInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// Name.
    pub name: String,
    /// What it is.
    pub comment: String,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Owner.
    pub owner: String,
    /// Stable id.
    pub id: String,
    /// The lake's root URL.
    pub storage_root: String,
}

/// A schema (`SchemaInfo`): a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schema {
    /// The layer.
    pub name: String,
    /// The catalog.
    pub catalog_name: String,
    /// `catalog.layer`.
    pub full_name: String,
    /// What the layer holds.
    pub comment: String,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Owner.
    pub owner: String,
    /// Stable id.
    pub schema_id: String,
}

/// A column (`ColumnInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Spark's catalog string (`bigint`, `decimal(12,2)`).
    pub type_text: String,
    /// The Delta `StructField` as JSON.
    pub type_json: String,
    /// `ColumnTypeName` (`LONG`, `DECIMAL`, ...).
    pub type_name: &'static str,
    /// Decimal precision (0 for other types).
    pub type_precision: i32,
    /// Decimal scale (0 for other types).
    pub type_scale: i32,
    /// Position, from 0.
    pub position: i32,
    /// Whether it may be null.
    pub nullable: bool,
    /// Its index among the partition columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_index: Option<i32>,
    /// The column's `comment` metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A table (`TableInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    /// Name within its schema.
    pub name: String,
    /// The catalog.
    pub catalog_name: String,
    /// The layer.
    pub schema_name: String,
    /// Always `EXTERNAL`: the files live at `storage_location`.
    pub table_type: &'static str,
    /// Always `DELTA`.
    pub data_source_format: &'static str,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// The table's directory URL.
    pub storage_location: String,
    /// Delta table properties, and `delta.lastCommitVersion`.
    pub properties: BTreeMap<String, String>,
    /// Owner.
    pub owner: String,
    /// Creation time (epoch ms): the table's metadata, else its last commit.
    pub created_at: i64,
    /// Last commit time (epoch ms).
    pub updated_at: i64,
    /// Stable per table of this lake.
    pub table_id: String,
}

/// A table's name and type (`table-summaries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    /// `catalog.schema.table`.
    pub full_name: String,
    /// Always `EXTERNAL`.
    pub table_type: &'static str,
}

/// One page of a listing and the token of the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, when there is one.
    pub next_page_token: Option<String>,
}

/// A page request: `max_results` (absent or 0: [`MAX_PAGE`]; negative: an error) and the
/// token a previous page returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// `max_results`.
    pub max_results: Option<i64>,
    /// `page_token`.
    pub page_token: Option<String>,
}

impl PageRequest {
    /// The page size asked for, bounded by [`MAX_PAGE`].
    pub(super) fn size(&self) -> Result<usize> {
        match self.max_results {
            None | Some(0) => Ok(MAX_PAGE),
            Some(n) if n < 0 => Err(ServiceError::invalid(format!(
                "`max_results`: {n} is negative"
            ))),
            Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE)),
        }
    }
}

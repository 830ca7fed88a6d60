//! The lake as an open Unity Catalog: one catalog (the project), a schema per layer the
//! caller's role sees, a Delta table (`EXTERNAL`, `DELTA`) per table, and short-lived
//! credentials to read a table's files (see [`vend`]). The shapes follow the Unity Catalog
//! REST API (`/api/2.1/unity-catalog`), so DuckDB's `unity_catalog` extension, delta-rs'
//! `uc://` tables and the `unitycatalog-client` SDK attach to the lake.

use std::collections::BTreeMap;

use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};

use super::versions::Versions;
use super::{Result, ServiceError};
use crate::auth::{Action, Principal, authorize};
use crate::storage::Lake;
use crate::table::{Layer, TableId};

mod model;
mod service;
mod types;
pub mod vend;

pub use model::{Catalog, Column, Page, PageRequest, Schema, Table, TableSummary};
pub use service::UnityCatalog;

pub use vend::{AwsCredentials, AzureSas, Credentials, Operation, VendConfig};

/// The Unity Catalog settings of a server.
#[derive(Debug, Clone)]
pub struct UnityConfig {
    /// The one catalog's name (`[serve] catalog_name`, default the project's name).
    pub catalog_name: String,
    /// How table credentials are made (`[serve.credentials]`).
    pub vend: VendConfig,
}

impl Default for UnityConfig {
    fn default() -> Self {
        UnityConfig {
            catalog_name: "assay".into(),
            vend: VendConfig::default(),
        }
    }
}

/// The error code a Unity Catalog client expects beside the status.
pub const CATALOG_DOES_NOT_EXIST: &str = "CATALOG_DOES_NOT_EXIST";
/// A schema (layer) that does not exist for the caller.
pub const SCHEMA_DOES_NOT_EXIST: &str = "SCHEMA_DOES_NOT_EXIST";
/// A table that does not exist for the caller.
pub const TABLE_DOES_NOT_EXIST: &str = "TABLE_DOES_NOT_EXIST";

/// Tables one page holds at most.
pub const MAX_PAGE: usize = 1000;

/// Tables a listing opens at once.
const OPENS_AT_ONCE: usize = 8;

/// A stable UUID-shaped id of `what` in the lake at `root`.
fn stable_id(root: &str, what: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("assay:{root}:{what}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The stable id of a table of `lake`.
pub fn table_id(lake: &Lake, id: &TableId) -> String {
    stable_id(lake.root().as_str(), &id.to_string())
}

fn layer_comment(layer: Layer) -> &'static str {
    match layer {
        Layer::Bronze => "Raw data as ingested",
        Layer::Silver => "Cleaned, typed and deduplicated tables",
        Layer::Gold => "Tables built from SQL models",
        Layer::System => "Run history and expectation outcomes",
    }
}

/// The catalog and its layers as the caller may see them.
pub(crate) struct View<'a> {
    pub(crate) lake: &'a Lake,
    pub(crate) versions: &'a Versions,
    pub(crate) config: &'a UnityConfig,
    pub(crate) principal: &'a Principal,
}

impl View<'_> {
    /// The one catalog.
    pub(crate) fn catalog(&self) -> Catalog {
        let root = self.lake.root().as_str();
        Catalog {
            name: self.config.catalog_name.clone(),
            comment: "An Assay lakehouse: a schema per layer".into(),
            properties: BTreeMap::new(),
            owner: "assay".into(),
            id: stable_id(root, ""),
            storage_root: root.to_string(),
        }
    }

    /// `Ok` when `name` is the catalog.
    pub(crate) fn check_catalog(&self, name: &str) -> Result<()> {
        if name == self.config.catalog_name {
            Ok(())
        } else {
            Err(
                ServiceError::not_found(format!("catalog `{name}` does not exist"))
                    .with_reason(CATALOG_DOES_NOT_EXIST),
            )
        }
    }

    fn schema_of(&self, layer: Layer) -> Schema {
        let catalog = &self.config.catalog_name;
        Schema {
            name: layer.as_str().into(),
            catalog_name: catalog.clone(),
            full_name: format!("{catalog}.{}", layer.as_str()),
            comment: layer_comment(layer).into(),
            properties: BTreeMap::new(),
            owner: "assay".into(),
            schema_id: stable_id(self.lake.root().as_str(), layer.as_str()),
        }
    }

    /// The layers the caller sees.
    pub(crate) fn schemas(&self, catalog: &str) -> Result<Vec<Schema>> {
        self.check_catalog(catalog)?;
        Ok(self
            .principal
            .role
            .layers()
            .into_iter()
            .map(|l| self.schema_of(l))
            .collect())
    }

    /// The layer `name` of `catalog`, when the caller sees it.
    pub(crate) fn layer(&self, catalog: &str, name: &str) -> Result<Layer> {
        self.check_catalog(catalog)?;
        Layer::ALL
            .into_iter()
            .find(|l| l.as_str() == name && self.principal.role.can_read(*l))
            .ok_or_else(|| {
                ServiceError::not_found(format!("schema `{catalog}.{name}` does not exist"))
                    .with_reason(SCHEMA_DOES_NOT_EXIST)
            })
    }

    /// One schema by full name.
    pub(crate) fn schema(&self, full_name: &str) -> Result<Schema> {
        let (catalog, name) = full_name.split_once('.').ok_or_else(|| {
            ServiceError::invalid(format!(
                "`{full_name}` is not a schema's full name (`catalog.schema`)"
            ))
        })?;
        Ok(self.schema_of(self.layer(catalog, name)?))
    }

    /// The names of a layer's tables after `page_token`, sorted, one page.
    async fn names(&self, layer: Layer, page: &PageRequest) -> Result<Page<String>> {
        let size = page.size()?;
        let mut names = self.versions.tables(layer).await?;
        names.sort();
        let after = page.page_token.as_deref().filter(|t| !t.is_empty());
        let start = after.map_or(0, |t| names.partition_point(|n| n.as_str() <= t));
        let rest = &names[start.min(names.len())..];
        let items: Vec<String> = rest.iter().take(size).cloned().collect();
        let next_page_token = (rest.len() > size).then(|| items.last().cloned()).flatten();
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// One page of a layer's tables.
    pub(crate) async fn tables(
        &self,
        catalog: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>> {
        let layer = self.layer(catalog, schema)?;
        let names = self.names(layer, page).await?;
        // Tables are opened a few at a time (each open reads its log), in name order.
        let described: Vec<Option<Table>> = futures::stream::iter(names.items)
            .map(|name| async move {
                let id = TableId::new(layer, name);
                // A table dropped since it was listed is left out.
                match self.lake.open(&id).await? {
                    Some(t) => Ok::<_, ServiceError>(Some(self.describe(&id, &t).await?)),
                    None => Ok(None),
                }
            })
            .buffered(OPENS_AT_ONCE)
            .try_collect()
            .await?;
        Ok(Page {
            items: described.into_iter().flatten().collect(),
            next_page_token: names.next_page_token,
        })
    }

    /// Names and types of the tables of the caller's layers whose names match the patterns
    /// (exact names, or `*` wildcards), in layer then name order; the page token is the last
    /// `layer.table` given.
    pub(crate) async fn summaries(
        &self,
        catalog: &str,
        schema_pattern: Option<&str>,
        table_pattern: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<TableSummary>> {
        self.check_catalog(catalog)?;
        let size = page.size()?;
        let mut all = Vec::new();
        for layer in self.principal.role.layers() {
            if !matches(schema_pattern, layer.as_str()) {
                continue;
            }
            let mut names = self.versions.tables(layer).await?;
            names.sort();
            all.extend(
                names
                    .into_iter()
                    .filter(|n| matches(table_pattern, n))
                    .map(|n| format!("{}.{n}", layer.as_str())),
            );
        }
        let after = page.page_token.as_deref().filter(|t| !t.is_empty());
        let start = after.map_or(0, |t| all.iter().position(|n| n == t).map_or(0, |i| i + 1));
        let rest = &all[start.min(all.len())..];
        let items: Vec<String> = rest.iter().take(size).cloned().collect();
        let next_page_token = (rest.len() > size).then(|| items.last().cloned()).flatten();
        Ok(Page {
            items: items
                .into_iter()
                .map(|n| TableSummary {
                    full_name: format!("{}.{n}", self.config.catalog_name),
                    table_type: "EXTERNAL",
                })
                .collect(),
            next_page_token,
        })
    }

    /// The table `catalog.schema.table`, when the caller sees it.
    pub(crate) async fn table(&self, full_name: &str) -> Result<Table> {
        let (id, t) = self.open(full_name).await?;
        self.describe(&id, &t).await
    }

    async fn open(&self, full_name: &str) -> Result<(TableId, DeltaTable)> {
        let missing = || {
            ServiceError::not_found(format!("table `{full_name}` does not exist"))
                .with_reason(TABLE_DOES_NOT_EXIST)
        };
        let mut parts = full_name.splitn(3, '.');
        let (Some(catalog), Some(schema), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ServiceError::invalid(format!(
                "`{full_name}` is not a table's full name (`catalog.schema.table`)"
            )));
        };
        let layer = self.layer(catalog, schema)?;
        let id = TableId::parse(&format!("{}.{name}", layer.as_str())).map_err(|_| missing())?;
        authorize(self.principal, Action::ReadTable(&id)).map_err(|_| missing())?;
        let table = self.lake.open(&id).await?.ok_or_else(missing)?;
        Ok((id, table))
    }

    /// The visible table whose id is `table_id`.
    pub(crate) async fn by_id(&self, table_id: &str) -> Result<(TableId, DeltaTable)> {
        for layer in self.principal.role.layers() {
            for name in self.versions.tables(layer).await? {
                let id = TableId::new(layer, name);
                if self::table_id(self.lake, &id) == table_id
                    && let Some(t) = self.lake.open(&id).await?
                {
                    return Ok((id, t));
                }
            }
        }
        Err(
            ServiceError::not_found(format!("table with id `{table_id}` does not exist"))
                .with_reason(TABLE_DOES_NOT_EXIST),
        )
    }

    async fn describe(&self, id: &TableId, table: &DeltaTable) -> Result<Table> {
        let snap = table
            .snapshot()
            .map_err(|e| ServiceError::from(crate::EngineError::delta(id, e)))?;
        let metadata = snap.metadata();
        let partitions = metadata.partition_columns().to_vec();
        let schema = snap.schema();
        let columns = schema
            .fields()
            .enumerate()
            .map(|(i, f)| types::column(i, f, &partitions))
            .collect();
        let version = crate::delta::version(table);
        let mut properties: BTreeMap<String, String> = metadata
            .configuration()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        properties.insert("delta.lastCommitVersion".into(), version.to_string());
        let updated_at = super::catalog::commit_time(table, version)
            .await
            .unwrap_or_default();
        Ok(Table {
            name: id.name.clone(),
            catalog_name: self.config.catalog_name.clone(),
            schema_name: id.layer.as_str().into(),
            table_type: "EXTERNAL",
            data_source_format: "DELTA",
            columns,
            storage_location: location(self.lake, id),
            properties,
            owner: "assay".into(),
            created_at: metadata.created_time().unwrap_or(updated_at),
            updated_at,
            table_id: table_id(self.lake, id),
        })
    }
}

/// A table's directory as clients address it: without the trailing `/` (`file:///...`,
/// `s3://bucket/...`, `az://container/...`).
pub(crate) fn location(lake: &Lake, id: &TableId) -> String {
    lake.table_url(id)
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

/// `*` matches any run of characters; no pattern matches everything.
fn matches(pattern: Option<&str>, name: &str) -> bool {
    let Some(p) = pattern.filter(|p| !p.is_empty()) else {
        return true;
    };
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_lake_and_name() {
        let a = stable_id("file:///lake/", "gold.x");
        assert_eq!(a, stable_id("file:///lake/", "gold.x"));
        assert_ne!(a, stable_id("file:///lake/", "gold.y"));
        assert_ne!(a, stable_id("s3://b/lake/", "gold.x"));
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    #[test]
    fn patterns_match_names_or_wildcards() {
        assert!(matches(None, "orders"));
        assert!(matches(Some("orders"), "orders"));
        assert!(!matches(Some("orders"), "orders2"));
        assert!(matches(Some("ord*"), "orders"));
        assert!(matches(Some("*ers"), "orders"));
        assert!(matches(Some("o*d*s"), "orders"));
        assert!(!matches(Some("x*"), "orders"));
    }

    #[test]
    fn page_sizes_are_bounded() {
        let p = |n| PageRequest {
            max_results: n,
            page_token: None,
        };
        assert_eq!(p(None).size().unwrap(), MAX_PAGE);
        assert_eq!(p(Some(0)).size().unwrap(), MAX_PAGE);
        assert_eq!(p(Some(2)).size().unwrap(), 2);
        assert_eq!(p(Some(1_000_000)).size().unwrap(), MAX_PAGE);
        assert!(p(Some(-1)).size().is_err());
    }
}

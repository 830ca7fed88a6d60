//! The DataFusion side of the lake: a catalog with schemas `bronze`, `silver`, `gold` and
//! `_system` that opens the latest Delta snapshot on every lookup.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionConfig;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use crate::error::Result;
use crate::storage::Lake;
use crate::table::{Layer, TableId};

/// The catalog name under which the lake is registered.
pub const CATALOG: &str = "assay";

/// A DataFusion catalog over the lake; every table lookup loads the latest snapshot.
#[derive(Debug)]
pub struct LakeCatalog {
    lake: Lake,
    schemas: BTreeMap<Layer, Arc<LakeSchema>>,
}

impl LakeCatalog {
    /// Builds the catalog and lists the tables present now.
    ///
    /// # Errors
    /// Listing the lake failed.
    pub async fn load(lake: Lake) -> Result<Arc<LakeCatalog>> {
        let mut schemas = BTreeMap::new();
        for layer in Layer::ALL {
            let names = lake.table_names(layer).await?;
            schemas.insert(
                layer,
                Arc::new(LakeSchema {
                    lake: lake.clone(),
                    layer,
                    names: RwLock::new(names),
                    snapshots: Mutex::new(HashMap::new()),
                    config: SessionConfig::new(),
                }),
            );
        }
        Ok(Arc::new(LakeCatalog { lake, schemas }))
    }

    /// Re-lists the tables of every layer (new tables become visible).
    ///
    /// # Errors
    /// Listing the lake failed.
    pub async fn refresh(&self) -> Result<()> {
        for (layer, schema) in &self.schemas {
            let names = self.lake.table_names(*layer).await?;
            if let Ok(mut guard) = schema.names.write() {
                *guard = names;
            }
        }
        Ok(())
    }

    /// The same catalog with its tables opened to be read on a Ballista cluster
    /// ([`crate::cluster::Bound`]); its [`LakeCatalog::session`] is marked the same way.
    pub fn for_cluster(&self) -> Arc<LakeCatalog> {
        let schemas = self
            .schemas
            .iter()
            .map(|(layer, s)| {
                let names = s.names.read().map(|n| n.clone()).unwrap_or_default();
                let schema = LakeSchema {
                    lake: self.lake.clone(),
                    layer: *layer,
                    names: RwLock::new(names),
                    snapshots: Mutex::new(HashMap::new()),
                    config: crate::cluster::session_config(true),
                };
                (*layer, Arc::new(schema))
            })
            .collect();
        Arc::new(LakeCatalog {
            lake: self.lake.clone(),
            schemas,
        })
    }

    /// The lake behind the catalog.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// A session whose default catalog is this one, so `gold.x` resolves to the lake.
    pub fn session(self: &Arc<Self>) -> SessionContext {
        let config = crate::cluster::session_config(self.is_for_cluster())
            .with_default_catalog_and_schema(CATALOG, Layer::Gold.as_str())
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG, Arc::clone(self) as Arc<dyn CatalogProvider>);
        ctx
    }

    /// Whether the tables are opened for a cluster ([`LakeCatalog::for_cluster`]).
    pub fn is_for_cluster(&self) -> bool {
        self.schemas
            .values()
            .any(|s| crate::cluster::is_bound(&s.config))
    }
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas
            .keys()
            .map(|l| l.as_str().to_string())
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let layer = Layer::parse(name)?;
        self.schemas
            .get(&layer)
            .map(|s| Arc::clone(s) as Arc<dyn SchemaProvider>)
    }
}

/// One layer of the lake as a DataFusion schema.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
    layer: Layer,
    names: RwLock<Vec<String>>,
    /// The snapshot each table had at its last lookup, reused while no newer commit exists.
    snapshots: Mutex<HashMap<String, DeltaTable>>,
    /// The settings tables are opened with (marked when they go to a cluster).
    config: SessionConfig,
}

impl LakeSchema {
    /// The table at its latest version, `None` when it does not exist. One listing of its
    /// log from the version last seen tells whether the snapshot kept from an earlier lookup
    /// is still the latest; only a table with a newer commit is loaded again (loading every
    /// table of every query cost ~7 ms a reference over Flight SQL).
    async fn latest(&self, id: &TableId) -> Result<Option<DeltaTable>> {
        let name = id.name.as_str();
        let Some(version) = self.lake.latest_version(id).await? else {
            if let Ok(mut kept) = self.snapshots.lock() {
                kept.remove(name);
            }
            return Ok(None);
        };
        let kept = self
            .snapshots
            .lock()
            .ok()
            .and_then(|kept| kept.get(name).cloned())
            .filter(|t| crate::delta::version(t) == version);
        if kept.is_some() {
            return Ok(kept);
        }
        let table = self.lake.open(id).await?;
        if let (Some(t), Ok(mut kept)) = (&table, self.snapshots.lock()) {
            kept.insert(name.to_string(), t.clone());
        }
        Ok(table)
    }
}

impl LakeSchema {
    /// A table at an older version (time travel); `None` when the table does not exist.
    async fn at(
        &self,
        name: &str,
        at: crate::lifecycle::At,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let id = TableId::new(self.layer, name);
        let table = match crate::lifecycle::open_at(&self.lake, &id, at).await {
            Ok(t) => t,
            Err(e @ crate::EngineError::VersionNotFound { .. }) => {
                return Err(DataFusionError::External(Box::new(
                    crate::query::QueryError::NotFound(e.to_string()),
                )));
            }
            // No such table: the lookup found nothing.
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DataFusionError::External(Box::new(e))),
        };
        let provider = crate::delta::table_provider(&id, &table, &self.config, None)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(provider))
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.names.read().map(|n| n.clone()).unwrap_or_default()
    }

    async fn table(
        &self,
        name: &str,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let external = |e: crate::EngineError| DataFusionError::External(Box::new(e));
        if let Some((base, at)) =
            crate::query::travel::split(name).map_err(|e| DataFusionError::External(Box::new(e)))?
        {
            return self.at(base, at).await;
        }
        let id = TableId::new(self.layer, name);
        let Some(table) = self.latest(&id).await.map_err(external)? else {
            return Ok(None);
        };
        if let Ok(mut guard) = self.names.write()
            && !guard.iter().any(|n| n == name)
        {
            guard.push(name.to_string());
            guard.sort();
        }
        let provider = crate::delta::table_provider(&id, &table, &self.config, None)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|n| n == name)
    }
}

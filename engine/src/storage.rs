//! The lake root: one URL, one object store, tables at `<root>/<layer>/<name>`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStore;
use url::Url;

use crate::error::{EngineError, Result};
use crate::table::{Layer, TableId};

/// The storage root of a project and the options to reach it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
}

impl Lake {
    /// Resolves a lake root as written (a URL, `file://./rel`, or a plain path) against the
    /// project directory.
    ///
    /// # Errors
    /// A root that is neither a URL nor a path, or a scheme the lake does not support.
    pub fn resolve(root: &str, project_dir: &Path) -> Result<Lake> {
        let bad = |message: String| EngineError::LakeRoot {
            url: root.to_string(),
            message,
        };
        let local = |p: &str| -> Result<Url> {
            let path = Path::new(p);
            let abs = if path.is_absolute() {
                path.to_path_buf()
            } else {
                let base = std::path::absolute(project_dir)
                    .map_err(|e| bad(format!("project directory: {e}")))?;
                base.join(path)
            };
            Url::from_directory_path(normalize(&abs))
                .map_err(|()| bad("not an absolute path".into()))
        };
        let url = if let Some(rest) = root.strip_prefix("file://") {
            local(rest)?
        } else if root.contains("://") {
            Url::parse(root).map_err(|e| bad(e.to_string()))?
        } else {
            local(root)?
        };
        match url.scheme() {
            "file" => {}
            other => {
                return Err(bad(format!(
                    "scheme `{other}` is not supported yet (use a path or a file:// URL)"
                )));
            }
        }
        Ok(Lake {
            root: url,
            options: HashMap::new(),
        })
    }

    /// The root URL, always ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Storage options handed to delta-rs and object_store.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of a table's directory.
    pub fn table_url(&self, id: &TableId) -> Url {
        let base = self.root.as_str().trim_end_matches('/');
        // Layer and table names are validated ([a-z0-9_]), so the join cannot escape.
        Url::parse(&format!("{base}/{}/{}/", id.layer, id.name))
            .unwrap_or_else(|_| self.root.clone())
    }

    /// Opens the latest snapshot of a table, or `None` when it does not exist yet.
    ///
    /// # Errors
    /// Storage or log errors other than "not a table".
    pub async fn open(&self, id: &TableId) -> Result<Option<DeltaTable>> {
        if !self.has_log(id).await? {
            return Ok(None);
        }
        let url = self.table_url(id);
        let builder = DeltaTableBuilder::from_url(url)
            .and_then(|b| b.with_storage_options(self.options.clone()).build())
            .map_err(|e| EngineError::delta(id, e))?;
        let mut table = builder;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
                Ok(None)
            }
            Err(e) => Err(EngineError::delta(id, e)),
        }
    }

    /// True when the table's `_delta_log` holds at least one entry.
    async fn has_log(&self, id: &TableId) -> Result<bool> {
        let (store, root) = self.store()?;
        let log = root
            .clone()
            .join(id.layer.as_str())
            .join(id.name.as_str())
            .join("_delta_log");
        let mut entries = store.list(Some(&log));
        match entries.try_next().await {
            Ok(entry) => Ok(entry.is_some()),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(EngineError::object_store(self.table_url(id), e)),
        }
    }

    /// Like [`Lake::open`], but a table that is not there is an error.
    ///
    /// # Errors
    /// The table does not exist, or cannot be read.
    pub async fn open_existing(&self, id: &TableId) -> Result<DeltaTable> {
        self.open(id).await?.ok_or_else(|| {
            EngineError::delta(
                id,
                DeltaTableError::NotATable(self.table_url(id).to_string()),
            )
        })
    }

    /// An unloaded handle for a table location (for creating tables).
    ///
    /// # Errors
    /// The URL cannot be handled by delta-rs.
    pub fn handle(&self, id: &TableId) -> Result<DeltaTable> {
        DeltaTableBuilder::from_url(self.table_url(id))
            .and_then(|b| b.with_storage_options(self.options.clone()).build())
            .map_err(|e| EngineError::delta(id, e))
    }

    /// The object store behind the root and the root's path inside it.
    ///
    /// # Errors
    /// The URL is not supported by object_store.
    pub fn store(&self) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
        let (store, path) = object_store::parse_url_opts(&self.root, self.options.iter())
            .map_err(|e| EngineError::object_store(&self.root, e))?;
        Ok((Arc::from(store), path))
    }

    /// Names of the Delta tables stored in one layer, sorted.
    ///
    /// # Errors
    /// Listing the store failed.
    pub async fn table_names(&self, layer: Layer) -> Result<Vec<String>> {
        let (store, root) = self.store()?;
        let prefix = root.clone().join(layer.as_str());
        let listing = match store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::object_store(&self.root, e)),
        };
        let mut names = Vec::new();
        for dir in listing.common_prefixes {
            let Some(name) = dir.filename() else { continue };
            let log = dir.clone().join("_delta_log");
            let mut entries = store.list(Some(&log));
            if entries
                .try_next()
                .await
                .map_err(|e| EngineError::object_store(&self.root, e))?
                .is_some()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_file_urls_against_the_project() {
        let lake = Lake::resolve("file://./lakehouse", Path::new("/tmp/proj")).unwrap();
        assert_eq!(lake.root().as_str(), "file:///tmp/proj/lakehouse/");
        let id = TableId::new(Layer::Bronze, "orders");
        assert_eq!(
            lake.table_url(&id).as_str(),
            "file:///tmp/proj/lakehouse/bronze/orders/"
        );
        let lake = Lake::resolve("/data/lake", Path::new("/tmp/proj")).unwrap();
        assert_eq!(lake.root().as_str(), "file:///data/lake/");
        let err = Lake::resolve("gopher://x/y", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("scheme `gopher`"), "{err}");
    }
}

//! The lake root: one URL, one object store, tables at `<root>/<layer>/<name>`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStore;
use url::Url;

use crate::error::{EngineError, Result};
use crate::table::{Layer, TableId};

mod options;

pub use options::{
    AzureSettings, S3Settings, StorageOptions, StorageSettings, object_store_for, process_env,
};

/// The storage root of a project, its options and the store behind it (built once).
#[derive(Clone)]
pub struct Lake {
    root: Url,
    options: StorageOptions,
    store: Arc<dyn ObjectStore>,
    prefix: object_store::path::Path,
    /// The last version [`Lake::latest_version`] saw per table: the next listing starts there.
    seen: Arc<std::sync::Mutex<HashMap<TableId, i64>>>,
}

impl fmt::Debug for Lake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lake")
            .field("root", &self.root.as_str())
            .field("options", &self.options)
            .finish()
    }
}

impl Lake {
    /// Resolves a lake root as written (a URL, `file://./rel`, or a plain path) against the
    /// project directory, with options from the environment only.
    ///
    /// # Errors
    /// See [`Lake::resolve_with`].
    pub fn resolve(root: &str, project_dir: &Path) -> Result<Lake> {
        Self::resolve_with(
            root,
            project_dir,
            &StorageSettings::default().options(&process_env()),
        )
    }

    /// Resolves a lake root with explicit store options (see [`StorageSettings::options`]).
    ///
    /// # Errors
    /// A root that is neither a URL nor a path, a scheme the lake does not support, or
    /// options the store rejects.
    pub fn resolve_with(root: &str, project_dir: &Path, options: &StorageOptions) -> Result<Lake> {
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
        let mut url = if let Some(rest) = root.strip_prefix("file://") {
            local(rest)?
        } else if root.contains("://") {
            Url::parse(root).map_err(|e| bad(e.to_string()))?
        } else {
            local(root)?
        };
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        if url.scheme() != "file"
            && url.scheme() != "memory"
            && url.host_str().is_none_or(str::is_empty)
        {
            return Err(bad("the URL names no bucket or container".into()));
        }
        let (store, prefix) = object_store_for(&url, options).map_err(bad)?;
        Ok(Lake {
            root: url,
            options: options.clone(),
            store,
            prefix,
            seen: Arc::default(),
        })
    }

    /// A lake rooted at `<root>/<name>/` on the same store (a namespace beside the layers,
    /// never listed by this lake).
    ///
    /// # Errors
    /// `name` is not a plain directory name.
    pub fn child(&self, name: &str) -> Result<Lake> {
        let bad = |message: &str| EngineError::LakeRoot {
            url: format!("{}{name}", self.root),
            message: message.to_string(),
        };
        if name.is_empty() || name.contains(['/', '.', '\\']) {
            return Err(bad("not a plain directory name"));
        }
        let root = self
            .root
            .join(&format!("{name}/"))
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Lake {
            root,
            options: self.options.clone(),
            store: Arc::clone(&self.store),
            prefix: self.prefix.clone().join(name),
            seen: Arc::default(),
        })
    }

    /// The root URL, always ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Storage options handed to delta-rs and object_store (they may hold credentials).
    pub fn options(&self) -> &StorageOptions {
        &self.options
    }

    /// The URL of a table's directory.
    pub fn table_url(&self, id: &TableId) -> Url {
        let base = self.root.as_str().trim_end_matches('/');
        // Layer and table names are validated ([a-z0-9_]), so the join cannot escape.
        Url::parse(&format!("{base}/{}/{}/", id.layer, id.name))
            .unwrap_or_else(|_| self.root.clone())
    }

    /// The path of a table's directory inside the store.
    pub fn table_path(&self, id: &TableId) -> object_store::path::Path {
        self.prefix
            .clone()
            .join(id.layer.as_str())
            .join(id.name.as_str())
    }

    /// Opens the latest snapshot of a table, or `None` when it does not exist yet.
    ///
    /// # Errors
    /// Storage or log errors other than "not a table".
    pub async fn open(&self, id: &TableId) -> Result<Option<DeltaTable>> {
        if !self.has_log(id).await? {
            return Ok(None);
        }
        let mut table = self.handle(id)?;
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

    /// The latest committed version of a table from one listing of its `_delta_log`
    /// (cheaper than loading it), or `None` when it has no commit. The listing starts at the
    /// version this lake saw last, so it stays short on long logs (stores list from an offset
    /// natively); a table whose log went back (re-created) is listed from the start.
    ///
    /// # Errors
    /// Listing the store failed.
    pub async fn latest_version(&self, id: &TableId) -> Result<Option<i64>> {
        let log = self
            .prefix
            .clone()
            .join(id.layer.as_str())
            .join(id.name.as_str())
            .join("_delta_log");
        let hint = self.seen.lock().ok().and_then(|m| m.get(id).copied());
        let latest = match hint {
            Some(v) => match self.list_versions(id, &log, Some(v)).await? {
                Some(found) if found >= v => Some(found),
                _ => self.list_versions(id, &log, None).await?,
            },
            None => self.list_versions(id, &log, None).await?,
        };
        if let Ok(mut m) = self.seen.lock() {
            match latest {
                Some(v) => m.insert(id.clone(), v),
                None => m.remove(id),
            };
        }
        Ok(latest)
    }

    /// The highest commit or checkpoint version in `log`, listing from version `from`.
    async fn list_versions(
        &self,
        id: &TableId,
        log: &object_store::path::Path,
        from: Option<i64>,
    ) -> Result<Option<i64>> {
        let mut entries = match from {
            // Entries sort after the bare 20-digit name: `<v>.json` is included.
            Some(v) => self
                .store
                .list_with_offset(Some(log), &log.clone().join(format!("{v:020}"))),
            None => self.store.list(Some(log)),
        };
        let mut latest: Option<i64> = None;
        loop {
            match entries.try_next().await {
                Ok(Some(meta)) => {
                    let name = meta.location.filename().unwrap_or_default();
                    let digits = name.split('.').next().unwrap_or_default();
                    let is_log = name.ends_with(".json") || name.contains(".checkpoint");
                    if is_log
                        && digits.len() == 20
                        && let Ok(v) = digits.parse::<i64>()
                    {
                        latest = latest.max(Some(v));
                    }
                }
                Ok(None) => return Ok(latest),
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(EngineError::object_store(self.table_url(id), e)),
            }
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
        let url = self.table_url(id);
        DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| {
                b.with_storage_backend(Arc::clone(&self.store), url)
                    .with_storage_options(self.options.as_map().clone())
                    .build()
            })
            .map_err(|e| EngineError::delta(id, e))
    }

    /// The object store behind the root and the root's path inside it.
    ///
    /// # Errors
    /// The URL is not supported by object_store.
    pub fn store(&self) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
        Ok((Arc::clone(&self.store), self.prefix.clone()))
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
    use crate::identity::Secret;

    #[tokio::test]
    async fn latest_version_follows_new_commits_and_recreated_tables() {
        use crate::delta::{CommitInfo, WriteMode, write_frame};
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let id = TableId::parse("gold.t").unwrap();
        assert_eq!(lake.latest_version(&id).await.unwrap(), None);
        let write = |mode| {
            let lake = lake.clone();
            let id = id.clone();
            async move {
                let df = datafusion::prelude::SessionContext::new()
                    .sql("SELECT 1 AS x")
                    .await
                    .unwrap();
                write_frame(&lake, &id, df, mode, &[], &CommitInfo::new(vec![], "t"))
                    .await
                    .unwrap();
            }
        };
        for expected in 0..3 {
            write(WriteMode::Append).await;
            assert_eq!(lake.latest_version(&id).await.unwrap(), Some(expected));
            // Asked again from the remembered version: unchanged.
            assert_eq!(lake.latest_version(&id).await.unwrap(), Some(expected));
        }
        // Another handle on the same lake (another process) starts from scratch.
        let other = Lake::resolve("lake", dir.path()).unwrap();
        assert_eq!(other.latest_version(&id).await.unwrap(), Some(2));
        // The table is dropped and re-created: its log starts again at 0.
        std::fs::remove_dir_all(dir.path().join("lake/gold/t")).unwrap();
        assert_eq!(lake.latest_version(&id).await.unwrap(), None);
        write(WriteMode::Append).await;
        write(WriteMode::Append).await;
        std::fs::remove_dir_all(dir.path().join("lake/gold/t")).unwrap();
        write(WriteMode::Append).await;
        assert_eq!(
            other.latest_version(&id).await.unwrap(),
            Some(0),
            "hint 2, log at 0"
        );
    }

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
        let err = Lake::resolve("s3:///prefix", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("no bucket or container"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let settings = StorageSettings {
            s3: S3Settings {
                secret_access_key: Some(Secret::new("s3-secret-value")),
                ..S3Settings::default()
            },
            azure: AzureSettings {
                sas_token: Some(Secret::new("?sv=sas-secret-value")),
                ..AzureSettings::default()
            },
            ..StorageSettings::default()
        };
        let options = settings.options(&[]);
        assert_eq!(
            options.as_map()["azure_storage_sas_key"],
            "sv=sas-secret-value"
        );
        let lake = Lake::resolve_with("s3://bucket/lake", Path::new("/"), &options).unwrap();
        for printed in [
            format!("{settings:?}"),
            format!("{options:?}"),
            format!("{lake:?}"),
        ] {
            assert!(
                !printed.contains("secret-value"),
                "a secret was printed: {printed}"
            );
        }
    }
}

//! Finding source files: a glob over any URL the lake supports.

use std::sync::Arc;

use futures::TryStreamExt;
use globset::GlobBuilder;
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use assay_engine::storage::{StorageOptions, object_store_for};

use crate::error::{BronzeError, Result};

/// One file found by a glob.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Full URL of the file (what `_source_file` records).
    pub url: String,
    /// Location inside its store.
    pub location: Path,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, in milliseconds since the epoch.
    pub modified_ms: i64,
}

impl SourceFile {
    /// The Delta `txn` application id that records this file as ingested. Path and size are
    /// in the id; the modification time is the version, so a rewritten file is new again.
    pub fn app_id(&self) -> String {
        format!("assay.file:{}#{}", self.url, self.size)
    }
}

/// A glob resolved to its store, the literal prefix to list and the matcher.
pub struct Listing {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    base: String,
    matcher: globset::GlobMatcher,
    pattern: String,
}

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listing")
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl Listing {
    /// Prepares a URL glob such as `file:///data/orders/*.csv` or `s3://b/in/**/*.json`.
    ///
    /// # Errors
    /// A bad glob or an unsupported URL.
    pub fn new(pattern: &str, options: &StorageOptions) -> Result<Listing> {
        let bad = |message: String| BronzeError::Source {
            url: pattern.to_string(),
            message,
        };
        let glob_start = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
        let literal = &pattern[..glob_start];
        let dir = &literal[..literal.rfind('/').map_or(0, |i| i + 1)];
        let url = Url::parse(dir).map_err(|e| bad(e.to_string()))?;
        let (store, prefix) = object_store_for(&url, options).map_err(bad)?;
        // Store locations are relative to the bucket / container (or `/` for local files):
        // the URL with its path cut to `/` is what a location is appended to.
        let mut base_url = url.clone();
        base_url.set_path("/");
        base_url.set_query(None);
        let base = base_url.to_string();
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| bad(format!("bad glob: {e}")))?
            .compile_matcher();
        Ok(Listing {
            store,
            prefix,
            base,
            matcher,
            pattern: pattern.to_string(),
        })
    }

    /// The store the files live in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Files matching the glob, sorted by URL.
    ///
    /// # Errors
    /// Listing the store failed.
    pub async fn files(&self) -> Result<Vec<SourceFile>> {
        let mut out = Vec::new();
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut list = self.store.list(prefix);
        while let Some(meta) = list.try_next().await.map_err(|source| BronzeError::Store {
            url: self.pattern.clone(),
            source,
        })? {
            let url = format!("{}{}", self.base, meta.location);
            if self.matcher.is_match(&url) {
                out.push(SourceFile {
                    url,
                    location: meta.location,
                    size: meta.size,
                    modified_ms: meta.last_modified.timestamp_millis(),
                });
            }
        }
        out.sort_by(|a, b| a.url.cmp(&b.url));
        Ok(out)
    }
}

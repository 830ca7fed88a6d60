//! `assay clone`: copies tables (their log and every data file a version in the log needs)
//! to a second lake root, on any store; on repeat only what is new is copied.
//!
//! Data files are copied before the log entries that reference them, the log in version
//! order and `_last_checkpoint` last, so a reader of the copy sees a complete version at
//! every moment, even while a clone runs or after one was interrupted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::TableId;

/// Files copied at the same time.
const CONCURRENCY: usize = 8;

/// The object at a clone target's root that says which lake it copies.
pub const MARKER: &str = "_assay_clone.json";

/// What `assay clone` did for one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CloneReport {
    /// `layer.name`.
    pub table: String,
    /// The latest version copied.
    pub version: i64,
    /// Data files copied now.
    pub files_copied: usize,
    /// Bytes of the data files copied now.
    pub bytes_copied: u64,
    /// Data files the target had already.
    pub files_present: usize,
    /// Log entries copied now.
    pub log_entries_copied: usize,
    /// Files of old versions that the source no longer has (vacuumed): those versions
    /// cannot be read in the copy either.
    pub files_gone: usize,
}

/// Makes sure `dst` may receive a clone of `src`: it answers, and it is empty or a clone of
/// `src` (its marker says so). Writes the marker on an empty target.
///
/// # Errors
/// The target cannot be listed or written, or holds other data.
pub async fn claim_target(src: &Lake, dst: &Lake) -> Result<()> {
    let (store, root) = dst.store()?;
    let failed = |e: object_store::Error| EngineError::CloneTarget {
        url: dst.root().to_string(),
        message: format!("cannot be reached: {e}"),
    };
    let marker = root.clone().join(MARKER);
    match object_store::ObjectStoreExt::get(store.as_ref(), &marker).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(failed)?;
            let source = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("source")?.as_str().map(str::to_string));
            if source.as_deref() != Some(src.root().as_str()) {
                return Err(EngineError::CloneTarget {
                    url: dst.root().to_string(),
                    message: format!(
                        "is a clone of {}, not of {}",
                        source.unwrap_or_else(|| "an unknown lake".into()),
                        src.root()
                    ),
                });
            }
            return Ok(());
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(failed(e)),
    }
    let mut listing = store.list(Some(&root));
    if let Some(first) = listing.try_next().await.map_err(failed)? {
        return Err(EngineError::CloneTarget {
            url: dst.root().to_string(),
            message: format!(
                "is not empty (it holds {}) and is not a clone of this lake: choose an empty location",
                first.location
            ),
        });
    }
    let body = serde_json::json!({
        "source": src.root().as_str(),
        "created_at": chrono::Utc::now().to_rfc3339(),
        "by": format!("assay {}", env!("CARGO_PKG_VERSION")),
    });
    object_store::ObjectStoreExt::put(store.as_ref(), &marker, body.to_string().into())
        .await
        .map_err(failed)?;
    Ok(())
}

/// Copies one table from `src` to the same place under `dst` (see the module doc).
///
/// # Errors
/// The source does not load; the target's table is another table (its Delta table id
/// differs); a file the latest version needs is missing; storage failed.
pub async fn clone_table(src: &Lake, dst: &Lake, id: &TableId) -> Result<CloneReport> {
    let table = src.open_existing(id).await?;
    let version = crate::delta::version(&table);
    let (from, _) = src.store()?;
    let (to, _) = dst.store()?;
    let src_root = src.table_path(id);
    let dst_root = dst.table_path(id);
    let src_err = |e: object_store::Error| EngineError::object_store(src.table_url(id), e);
    let dst_err = |e: object_store::Error| EngineError::CloneTarget {
        url: dst.table_url(id).to_string(),
        message: e.to_string(),
    };

    if let Some(existing) = dst.open(id).await? {
        let theirs = existing
            .snapshot()
            .ok()
            .map(|s| s.metadata().id().to_string());
        let ours = table.snapshot().ok().map(|s| s.metadata().id().to_string());
        if theirs != ours {
            return Err(EngineError::CloneTarget {
                url: dst.table_url(id).to_string(),
                message: format!(
                    "holds another table than {id} (Delta table id {} there, {} here)",
                    theirs.unwrap_or_default(),
                    ours.unwrap_or_default()
                ),
            });
        }
    }

    // The log: every entry, in name (= version) order.
    let log = src_root.clone().join("_delta_log");
    let entries: Vec<object_store::ObjectMeta> =
        from.list(Some(&log)).try_collect().await.map_err(src_err)?;
    let mut entries: Vec<_> = entries
        .into_iter()
        .filter(|m| {
            let name = m.location.filename().unwrap_or_default();
            !name.starts_with('.') && !name.ends_with(".tmp")
        })
        .collect();
    entries.sort_by(|a, b| a.location.cmp(&b.location));

    // The data files: added by a commit in the log, or live at a checkpoint in it.
    let live: BTreeSet<Path> = table
        .snapshot()
        .map_err(|e| EngineError::delta(id, e))?
        .log_data()
        .iter()
        .map(|f| f.object_store_path())
        .collect();
    let mut needed = live.clone();
    let mut checkpoints = BTreeSet::new();
    for m in &entries {
        let name = m.location.filename().unwrap_or_default();
        let digits = name.split('.').next().unwrap_or_default();
        let Ok(v) = digits.parse::<u64>() else {
            continue;
        };
        if name.ends_with(".json") {
            let Some(bytes) = table
                .log_store()
                .read_commit_entry(v)
                .await
                .map_err(|e| EngineError::delta(id, e))?
            else {
                continue;
            };
            for action in deltalake::logstore::get_actions(v, &bytes)
                .map_err(|e| EngineError::delta(id, e))?
            {
                if let deltalake::kernel::Action::Add(a) = action
                    && let Ok(p) = Path::from_url_path(&a.path)
                {
                    needed.insert(p);
                }
            }
        } else if name.contains(".checkpoint") {
            checkpoints.insert(v);
        }
    }
    for v in checkpoints {
        if v as i64 == version {
            continue;
        }
        let mut at = table.clone();
        if at.load_version(v).await.is_ok()
            && let Ok(snap) = at.snapshot()
        {
            needed.extend(snap.log_data().iter().map(|f| f.object_store_path()));
        }
    }

    // What the target holds already (data files are immutable: same name, same bytes).
    let present: HashMap<Path, u64> = to
        .list(Some(&dst_root))
        .map_ok(|m| (m.location, m.size))
        .try_collect()
        .await
        .map_err(dst_err)?;

    let mut report = CloneReport {
        table: id.to_string(),
        version,
        ..CloneReport::default()
    };
    let mut work = Vec::new();
    for rel in needed {
        let target = super::under(&dst_root, &rel);
        if present.contains_key(&target) {
            report.files_present += 1;
            continue;
        }
        work.push((rel, target));
    }
    let copies = futures::stream::iter(work.into_iter().map(|(rel, target)| {
        let (from, to) = (Arc::clone(&from), Arc::clone(&to));
        let source = super::under(&src_root, &rel);
        let is_live = live.contains(&rel);
        async move {
            match copy(&from, &source, &to, &target).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(Failure::Read(object_store::Error::NotFound { .. })) if !is_live => Ok(None),
                Err(Failure::Read(e)) => Err(EngineError::object_store(&source, e)),
                Err(Failure::Write(e)) => Err(EngineError::CloneTarget {
                    url: target.to_string(),
                    message: e.to_string(),
                }),
            }
        }
    }))
    .buffer_unordered(CONCURRENCY);
    futures::pin_mut!(copies);
    while let Some(done) = copies.next().await {
        match done? {
            Some(bytes) => {
                report.files_copied += 1;
                report.bytes_copied += bytes;
            }
            None => report.files_gone += 1,
        }
    }

    // Then the log, in order; `_last_checkpoint` (rewritten in place) last.
    let mut last_checkpoint = None;
    for m in entries {
        let rel = Path::from_iter(m.location.prefix_match(&src_root).into_iter().flatten());
        let target = super::under(&dst_root, &rel);
        if m.location.filename() == Some("_last_checkpoint") {
            last_checkpoint = Some((m.location, target));
            continue;
        }
        if present.get(&target) == Some(&m.size) {
            continue;
        }
        copy(&from, &m.location, &to, &target)
            .await
            .map_err(|f| f.into_error(&m.location, &target))?;
        report.log_entries_copied += 1;
    }
    if let Some((source, target)) = last_checkpoint {
        copy(&from, &source, &to, &target)
            .await
            .map_err(|f| f.into_error(&source, &target))?;
    }
    Ok(report)
}

/// Where a copy failed.
enum Failure {
    Read(object_store::Error),
    Write(object_store::Error),
}

impl Failure {
    fn into_error(self, source: &Path, target: &Path) -> EngineError {
        match self {
            Failure::Read(e) => EngineError::object_store(source, e),
            Failure::Write(e) => EngineError::CloneTarget {
                url: target.to_string(),
                message: e.to_string(),
            },
        }
    }
}

/// Streams one object from one store to another (multipart for large ones); its bytes.
async fn copy(
    from: &Arc<dyn ObjectStore>,
    source: &Path,
    to: &Arc<dyn ObjectStore>,
    target: &Path,
) -> std::result::Result<u64, Failure> {
    let got = object_store::ObjectStoreExt::get(from.as_ref(), source)
        .await
        .map_err(Failure::Read)?;
    let mut stream = got.into_stream();
    let mut writer = object_store::buffered::BufWriter::new(Arc::clone(to), target.clone());
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Failure::Read)?;
        bytes += chunk.len() as u64;
        if let Err(e) = writer.write_all(&chunk).await {
            let _ = writer.abort().await;
            return Err(Failure::Write(object_store::Error::Generic {
                store: "target",
                source: Box::new(e),
            }));
        }
    }
    writer.shutdown().await.map_err(|e| {
        Failure::Write(object_store::Error::Generic {
            store: "target",
            source: Box::new(e),
        })
    })?;
    Ok(bytes)
}

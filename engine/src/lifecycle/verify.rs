//! `assay verify`: every file a table's latest version references exists, has the size the
//! log says, and has a Parquet footer that reads with the row count the log records.

use futures::StreamExt;
use parquet::file::metadata::ParquetMetaDataReader;
use serde::Serialize;

use crate::error::Result;
use crate::storage::Lake;
use crate::table::TableId;

/// Files checked at the same time.
const CONCURRENCY: usize = 16;

/// One thing wrong with a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file concerned, relative to the table's directory (`_delta_log` for the log).
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// What `assay verify` found in one table.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// `layer.name`.
    pub table: String,
    /// The version checked (`-1` when the log did not load).
    pub version: i64,
    /// Data files checked.
    pub files: usize,
    /// Everything wrong; empty for a sound table.
    pub problems: Vec<Problem>,
}

/// Checks a table's latest version: its log loads, and every data file it references is
/// there, with the logged size, a readable footer and the logged row count.
///
/// # Errors
/// Only the store's own failures to answer; a missing or broken file is a [`Problem`].
pub async fn verify(lake: &Lake, id: &TableId) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        table: id.to_string(),
        version: -1,
        files: 0,
        problems: Vec::new(),
    };
    let table = match lake.open(id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            report.problems.push(Problem {
                file: "_delta_log".into(),
                message: "no Delta log: not a table".into(),
            });
            return Ok(report);
        }
        Err(e) => {
            report.problems.push(Problem {
                file: "_delta_log".into(),
                message: format!("the log does not load: {e}"),
            });
            return Ok(report);
        }
    };
    report.version = crate::delta::version(&table);
    let snap = match table.snapshot() {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(Problem {
                file: "_delta_log".into(),
                message: format!("the log does not load: {e}"),
            });
            return Ok(report);
        }
    };
    let (store, _) = lake.store()?;
    let root = lake.table_path(id);
    let files: Vec<_> = snap
        .log_data()
        .iter()
        .map(|f| {
            let rel = f.object_store_path();
            (
                rel.to_string(),
                super::under(&root, &rel),
                f.size().max(0) as u64,
                f.num_records(),
            )
        })
        .collect();
    report.files = files.len();
    let checks = futures::stream::iter(files.into_iter().map(|(rel, path, size, rows)| {
        let store = std::sync::Arc::clone(&store);
        async move {
            let message = check_file(store, path, size, rows).await?;
            Some(Problem { file: rel, message })
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .filter_map(|p| async move { p })
    .collect::<Vec<_>>()
    .await;
    report.problems = checks;
    report.problems.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(report)
}

/// What is wrong with one data file, `None` when nothing is.
async fn check_file(
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    size: u64,
    rows: Option<usize>,
) -> Option<String> {
    use object_store::ObjectStoreExt;
    let meta = match store.head(&path).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => return Some("missing".into()),
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    if meta.size != size {
        return Some(format!("has {} bytes, the log says {size}", meta.size));
    }
    // The footer: its length and the magic in the last 8 bytes, the metadata before them.
    if size < 12 {
        return Some(format!("has {size} bytes: too short for a Parquet file"));
    }
    let tail = match store.get_range(&path, size - 8..size).await {
        Ok(t) => t,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    if &tail[4..] != b"PAR1" {
        return Some("is not a Parquet file (no PAR1 magic at its end)".into());
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if len + 12 > size {
        return Some(format!(
            "its Parquet footer claims {len} bytes, more than the file holds"
        ));
    }
    let raw = match store.get_range(&path, size - 8 - len..size - 8).await {
        Ok(r) => r,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let footer = match ParquetMetaDataReader::decode_metadata(&raw) {
        Ok(m) => m,
        Err(e) => return Some(format!("its Parquet footer does not read: {e}")),
    };
    let in_file = footer.file_metadata().num_rows();
    match rows {
        Some(r) if r as i64 != in_file => Some(format!("holds {in_file} rows, the log says {r}")),
        _ => None,
    }
}

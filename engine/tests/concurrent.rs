//! Two writers committing to one table at the same time: every commit lands, versions are
//! consecutive, no row is lost. Run on the local file system and on the in-memory store
//! (S3 and Azure emulators do not check conditional writes atomically; see docs/storage.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use assay_engine::delta::{self, CommitInfo, WriteMode, write_frame};
use assay_engine::session::LakeCatalog;
use assay_engine::{Lake, TableId};
use datafusion::prelude::SessionContext;

const WRITERS: i64 = 2;
const COMMITS_EACH: i64 = 6;

async fn append(lake: &Lake, id: &TableId, value: i64, writer: &str) {
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![value])) as ArrayRef),
        (
            "writer",
            Arc::new(StringArray::from(vec![writer])) as ArrayRef,
        ),
    ])
    .unwrap();
    let df = SessionContext::new().read_batch(batch).unwrap();
    let info = CommitInfo::new(vec![], &format!("{writer}-{value}"));
    write_frame(lake, id, df, WriteMode::Append, &[], &info)
        .await
        .unwrap();
}

async fn two_writers_lose_no_commit(lake: Lake) {
    let id = TableId::parse("bronze.events").unwrap();
    append(&lake, &id, -1, "creator").await;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let lake = lake.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..COMMITS_EACH {
                append(&lake, &id, w * 1000 + i, &format!("w{w}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let table = lake.open_existing(&id).await.unwrap();
    let latest = delta::version(&table);
    assert_eq!(latest, WRITERS * COMMITS_EACH, "one version per commit");
    // Versions 0..=latest are all there (consecutive), each holding one writer's commit.
    let log = table.log_store();
    let mut run_ids = BTreeSet::new();
    for v in 0..=latest {
        let bytes = log
            .read_commit_entry(v as u64)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("version {v} is missing"));
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let run_id = text
            .split("\"assay.run_id\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("version {v} has no run id: {text}"));
        assert!(
            run_ids.insert(run_id.to_string()),
            "{run_id} committed twice"
        );
    }
    let mut expected: BTreeSet<String> = BTreeSet::from(["creator--1".to_string()]);
    for w in 0..WRITERS {
        for i in 0..COMMITS_EACH {
            expected.insert(format!("w{w}-{}", w * 1000 + i));
        }
    }
    assert_eq!(
        run_ids, expected,
        "every writer's every commit is in the log"
    );

    let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
    let batches = catalog
        .session()
        .sql("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM bronze.events")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i: usize| {
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(i))
            .value(0)
    };
    assert_eq!(col(0), 1 + WRITERS * COMMITS_EACH);
    assert_eq!(col(1), 1 + WRITERS * COMMITS_EACH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_on_local_disk_lose_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    two_writers_lose_no_commit(Lake::resolve("lake", dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_on_the_in_memory_store_lose_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    two_writers_lose_no_commit(Lake::resolve("memory:///lake", dir.path()).unwrap()).await;
}

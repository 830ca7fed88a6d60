use super::*;
use crate::delta::{CommitInfo, WriteMode, write_frame};
use crate::session::LakeCatalog;
use crate::table::TableId;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
};

/// Writes `sql`'s rows to `name`, partitioned by `by`.
async fn table(lake: &Lake, name: &str, sql: &str, by: &[&str]) {
    let id = TableId::parse(name).unwrap();
    let df = SessionContext::new().sql(sql).await.unwrap();
    let by: Vec<String> = by.iter().map(|s| s.to_string()).collect();
    write_frame(
        lake,
        &id,
        df,
        WriteMode::Append,
        &by,
        &CommitInfo::new(vec![], "t"),
    )
    .await
    .unwrap();
}

async fn text(ctx: &SessionContext, plan: LogicalPlan) -> String {
    let rows = ctx
        .execute_logical_plan(plan)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    pretty_format_batches(&rows).unwrap().to_string()
}

/// What the scheduler does with a client's query: decode the plan with the codec in a
/// process that knows nothing of the lake but its store, and run it there.
async fn shipped(lake: &Lake, sql: &str) -> (String, String) {
    let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
    let local = catalog.session();
    let expected = text(
        &local,
        local.sql(sql).await.unwrap().into_optimized_plan().unwrap(),
    )
    .await;

    let bound = catalog.for_cluster().session();
    let plan = bound.sql(sql).await.unwrap().into_unoptimized_plan();
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &LakeCodec::default()).unwrap();
    let runtime = runtime_producer(lake, None).unwrap()(&SessionConfig::new()).unwrap();
    let remote = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    let decoded = logical_plan_from_bytes_with_extension_codec(
        &bytes,
        &remote.task_ctx(),
        &LakeCodec::default(),
    )
    .unwrap();
    (expected, text(&remote, decoded).await)
}

#[tokio::test]
async fn partitioned_tables_travel_as_their_files_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    // Partition columns in the middle of the schema, a null partition, two commits.
    table(
        &lake,
        "silver.sales",
        "SELECT * FROM (VALUES (1, 'a', DATE '2026-01-02', 2.5), (2, 'b', DATE '2026-01-02', 4.0), \
         (3, NULL, DATE '2026-01-03', 1.0)) AS t(id, region, day, amount)",
        &["region", "day"],
    )
    .await;
    table(
        &lake,
        "silver.sales",
        "SELECT * FROM (VALUES (4, 'a', DATE '2026-01-04', 8.0), (5, 'x/y: %z', DATE '2026-01-04', 1.5)) \
         AS t(id, region, day, amount)",
        &["region", "day"],
    )
    .await;
    table(
        &lake,
        "silver.regions",
        "SELECT * FROM (VALUES ('a', 'North'), ('b', 'South')) AS t(region, label)",
        &[],
    )
    .await;
    for sql in [
        "SELECT * FROM silver.sales ORDER BY id",
        "SELECT day, id FROM silver.sales WHERE region = 'a' ORDER BY id",
        "SELECT r.label, sum(s.amount) AS total, count(*) AS n FROM silver.sales s \
         LEFT JOIN silver.regions r ON s.region = r.region GROUP BY r.label ORDER BY r.label",
    ] {
        let (expected, got) = shipped(&lake, sql).await;
        assert_eq!(got, expected, "{sql}");
        assert!(expected.lines().count() > 4, "{expected}");
    }
}

#[tokio::test]
async fn a_table_opened_for_this_process_only_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    table(&lake, "gold.t", "SELECT 1 AS id", &[]).await;
    let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
    let plan = catalog
        .session()
        .sql("SELECT * FROM gold.t")
        .await
        .unwrap()
        .into_unoptimized_plan();
    let err = logical_plan_to_bytes_with_extension_codec(&plan, &LakeCodec::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not opened for the cluster"), "{err}");
}

#[test]
fn scheduler_addresses() {
    assert_eq!(
        parse_scheduler("df://node1:50050").unwrap(),
        "df://node1:50050"
    );
    assert_eq!(parse_scheduler("node1").unwrap(), "df://node1:50050");
    assert_eq!(
        parse_scheduler("127.0.0.1:7000").unwrap(),
        "df://127.0.0.1:7000"
    );
    assert_eq!(
        scheduler_host_port("df://[::1]:9").unwrap(),
        ("[::1]".to_string(), 9)
    );
    for bad in [
        "http://x:1",
        "df://",
        "df://x:1/path",
        "df://u@x:1",
        "df://x:99999",
    ] {
        assert!(parse_scheduler(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_change_list_of_encoded_paths_selects_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let values = "SELECT * FROM (VALUES (1, 'x/y: %z'), (2, 'plain')) AS t(id, region)";
    table(&lake, "silver.t", values, &["region"]).await;
    table(
        &lake,
        "silver.t",
        "SELECT 3 AS id, 'a b%' AS region",
        &["region"],
    )
    .await;
    // The second commit's files as the log writes them (percent-encoded), as a change list
    // hands them over.
    let log = std::fs::read_to_string(
        dir.path()
            .join("lake/silver/t/_delta_log/00000000000000000001.json"),
    )
    .unwrap();
    let added: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["add"]["path"].as_str().map(String::from))
        .collect();
    assert_eq!(added.len(), 1);
    assert!(added[0].contains('%'), "{added:?}");
    let id = TableId::parse("silver.t").unwrap();
    let t = lake.open_existing(&id).await.unwrap();
    let config = bound(SessionConfig::new());
    let provider = crate::delta::table_provider(&id, &t, &config, Some(&added))
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("t", provider).unwrap();
    let rows = ctx
        .sql("SELECT id, region FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = pretty_format_batches(&rows).unwrap().to_string();
    assert!(text.contains("| 3  | a b% "), "{text}");
    assert_eq!(
        rows.iter().map(|b| b.num_rows()).sum::<usize>(),
        1,
        "{text}"
    );
}

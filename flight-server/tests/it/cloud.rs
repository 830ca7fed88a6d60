//! Flight SQL serving tables stored on S3 (moto) and Azure Blob Storage (Azurite).

use assay_engine::query::QueryLimits;
use assay_testkit::Backend;

use crate::kit::{ADMIN, Server, append, pretty, products, query};

async fn serves_a_lake_on(backend: Backend) {
    let server = Server::start_on(backend, QueryLimits::default()).await;
    assert!(
        !server.lake.root().as_str().starts_with("file:"),
        "{}",
        server.lake.root()
    );
    let mut c = server.login(ADMIN).await;
    let sql = "SELECT category, COUNT(*) AS n, SUM(price) AS total FROM gold.products \
               GROUP BY category ORDER BY category";
    assert_eq!(
        pretty(&query(&mut c, sql).await.unwrap()),
        "\
+----------+---+-------+
| category | n | total |
+----------+---+-------+
| A        | 1 | 24.50 |
| B        | 1 | 89.00 |
| C        | 2 | 29.80 |
+----------+---+-------+"
    );
    // A commit to the bucket while the server runs is visible to the next query.
    append(
        &server.lake,
        "gold.products",
        products(&[40], &["Filter papers"], &["A"], &[450]),
    )
    .await;
    let batches = query(&mut c, "SELECT COUNT(*) AS n FROM gold.products")
        .await
        .unwrap();
    assert_eq!(
        pretty(&batches),
        "\
+---+
| n |
+---+
| 5 |
+---+"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_table_stored_on_s3() {
    serves_a_lake_on(Backend::start("s3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_table_stored_on_azure() {
    serves_a_lake_on(Backend::start("azure")).await;
}

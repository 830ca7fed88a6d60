//! Crash safety: a failure between writing data files and committing them, then a rerun,
//! loses nothing and duplicates nothing.

use crate::kit::{Backend, Fixture};

crate::on_every_backend!(
    a_crash_before_the_bronze_commit_is_recovered_exactly,
    a_crash_on_an_existing_table_keeps_the_previous_version,
    a_crash_between_quarantine_and_silver_commits_does_not_double_quarantine,
);

async fn a_crash_before_the_bronze_commit_is_recovered_exactly(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    let out = f.assay(&["run", "--inject-fault", "before_commit:bronze.orders"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("injected fault at before_commit:bronze.orders"),
        "{err}"
    );
    assert_eq!(f.version("bronze.orders").await, None, "no commit happened");
    // Data files were written before the fault: they exist but belong to no version.
    let orphans = f
        .lake_files("bronze/orders")
        .await
        .iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert!(orphans > 0, "the fault fired after data files were written");
    assert_eq!(
        f.version("bronze.customers").await,
        Some(0),
        "other steps still ran"
    );

    f.run_ok(&[]);
    assert_eq!(f.count("bronze.orders").await, 13);
    assert_eq!(
        f.count("bronze.orders__rejected").await,
        1,
        "rejects not doubled"
    );
    assert_eq!(f.count("silver.orders").await, 8);
    assert_eq!(
        f.count(
            "(SELECT order_id, _source_file FROM bronze.orders GROUP BY 1, 2 HAVING COUNT(*) > 1)"
        )
        .await,
        0,
        "no duplicates"
    );
}

async fn a_crash_on_an_existing_table_keeps_the_previous_version(backend: Backend) {
    let f = Fixture::example_on(backend).await;
    f.run_ok(&[]);
    f.add_source(
        "examples/retail/orders/orders_2026-11-05.csv",
        "order_id,customer_id,product_id,quantity,amount,order_date,updated_at,status\n\
         1014,1,30,1,9.90,2026-11-05,2026-11-05T10:00:00Z,placed\n",
    )
    .await;
    let out = f.assay(&["run", "--inject-fault", "before_commit:bronze.orders"]);
    assert!(!out.status.success());
    assert_eq!(f.version("bronze.orders").await, Some(0));
    assert_eq!(f.count("bronze.orders").await, 13);
    f.run_ok(&[]);
    assert_eq!(f.count("bronze.orders").await, 14);
    assert_eq!(f.count("silver.orders").await, 9);
}

async fn a_crash_between_quarantine_and_silver_commits_does_not_double_quarantine(
    backend: Backend,
) {
    let f = Fixture::example_on(backend).await;
    let out = f.assay(&["run", "--inject-fault", "before_commit:silver.orders"]);
    assert!(!out.status.success());
    assert_eq!(f.count("silver.orders__quarantine").await, 3);
    assert_eq!(f.version("silver.orders").await, None);
    f.run_ok(&[]);
    assert_eq!(f.count("silver.orders__quarantine").await, 3);
    assert_eq!(f.count("silver.orders").await, 8);
    assert_eq!(f.count("gold.daily_revenue").await, 7);
}

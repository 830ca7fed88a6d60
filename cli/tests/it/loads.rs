//! Silver runs that take one pass over their input (first loads, full refreshes, tables
//! without keys): counts, quarantine and dedup as a merge run gives them, every table equal
//! to a from-scratch run after each run, and nothing left behind by a failed pass.

use crate::kit::Fixture;

/// A keyed table and an append-only table over the same feed, with every kind of rule.
const FEED: &str = r#"
[[bronze]]
name = "readings"
source = { kind = "files", path = "data/readings/*.csv" }

[[silver]]
name = "latest"
from = "bronze.readings"
columns = { sensor = "bigint", value = "decimal(8,2)", at = "timestamp" }
keys = ["sensor"]
sequence_by = "at"
expect = { in_range = "value < 1000", known = { rule = "sensor < 100", action = "drop" },
           soft = { rule = "value >= 0", action = "warn" } }
on_violation = "quarantine"

[[silver]]
name = "all_readings"
from = "bronze.readings"
columns = { sensor = "bigint", value = "decimal(8,2)", at = "timestamp" }
expect = { in_range = "value < 1000", known = { rule = "sensor < 100", action = "drop" } }
on_violation = "quarantine"
"#;

/// Batches of readings (`sensor,value,at`): duplicates of a key in one file, a value that
/// does not cast, a NULL key, rows for each rule.
const BATCHES: [&str; 3] = [
    "1,10.5,2026-01-01T00:00:00Z\n1,11.5,2026-01-02T00:00:00Z\n2,abc,2026-01-01T00:00:00Z\n\
     ,3.0,2026-01-01T00:00:00Z\n3,1500,2026-01-01T00:00:00Z\n200,1.0,2026-01-01T00:00:00Z\n\
     4,-1,2026-01-01T00:00:00Z\n",
    "1,9.0,2026-01-01T12:00:00Z\n5,50,2026-01-03T00:00:00Z\n5,51,2026-01-04T00:00:00Z\n",
    "6,60,2026-01-05T00:00:00Z\n2,20,2026-01-05T00:00:00Z\n",
];

const TABLES: [&str; 5] = [
    "SELECT sensor, value, at FROM silver.latest ORDER BY sensor",
    "SELECT sensor, value, at FROM silver.all_readings ORDER BY sensor, at, value",
    "SELECT sensor, value, at, _failed_rules, _reason FROM silver.latest__quarantine \
     ORDER BY at, sensor, value",
    "SELECT sensor, value, at, _failed_rules, _reason FROM silver.all_readings__quarantine \
     ORDER BY at, sensor, value",
    "SELECT \"table\", rule, action, SUM(passed) AS passed, SUM(failed) AS failed \
     FROM _system.expectations GROUP BY \"table\", rule, action ORDER BY \"table\", rule",
];

fn feed() -> Fixture {
    Fixture::with_config(FEED)
}

fn write_batch(f: &Fixture, i: usize, rows: &str) {
    f.write(
        &format!("data/readings/b{i}.csv"),
        &format!("sensor,value,at\n{rows}"),
    );
}

#[tokio::test]
async fn one_pass_loads_and_appends_equal_a_rebuild_after_every_run() {
    let f = feed();
    for (i, batch) in BATCHES.iter().enumerate() {
        write_batch(&f, i, batch);
        f.run_ok(&[]);
        let fresh = f.rebuilt();
        // A rebuild reads every file in one run, so its expectation counts are the sums
        // of the incremental runs' counts; the tables must be equal row for row.
        for sql in TABLES {
            assert_eq!(f.table(sql).await, fresh.table(sql).await, "run {i}: {sql}");
        }
    }
    assert_eq!(
        f.table(TABLES[0]).await,
        "\
+--------+-------+----------------------+
| sensor | value | at                   |
+--------+-------+----------------------+
| 1      | 11.50 | 2026-01-02T00:00:00Z |
| 2      | 20.00 | 2026-01-05T00:00:00Z |
| 4      | -1.00 | 2026-01-01T00:00:00Z |
| 5      | 51.00 | 2026-01-04T00:00:00Z |
| 6      | 60.00 | 2026-01-05T00:00:00Z |
+--------+-------+----------------------+"
    );
    // The append-only table keeps every good row, duplicates included; without keys a
    // NULL sensor is a row like any other (and `known` drops it).
    assert_eq!(f.count("silver.all_readings").await, 8);
    assert_eq!(
        f.table(TABLES[4]).await,
        "\
+---------------------+----------+------------+--------+--------+
| table               | rule     | action     | passed | failed |
+---------------------+----------+------------+--------+--------+
| silver.all_readings | in_range | quarantine | 10     | 1      |
| silver.all_readings | known    | drop       | 9      | 2      |
| silver.latest       | in_range | quarantine | 9      | 1      |
| silver.latest       | known    | drop       | 9      | 1      |
| silver.latest       | soft     | warn       | 9      | 1      |
+---------------------+----------+------------+--------+--------+"
    );
    let summary = f.run_ok(&[]);
    assert!(summary.contains("up_to_date"), "{summary}");
}

#[tokio::test]
async fn a_failing_rule_on_a_first_load_leaves_no_table_and_no_files() {
    let f = Fixture::with_config(
        r#"
[[bronze]]
name = "readings"
source = { kind = "files", path = "data/readings/*.csv" }

[[silver]]
name = "readings"
from = "bronze.readings"
columns = { sensor = "bigint", value = "decimal(8,2)", at = "timestamp" }
expect = { in_range = { rule = "value < 1000", action = "fail" } }
"#,
    );
    write_batch(&f, 0, BATCHES[0]);
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("rule `in_range` failed for 1 row(s)"),
        "{stdout}"
    );
    assert_eq!(f.version("silver.readings").await, None);
    assert_eq!(f.version("silver.readings__quarantine").await, None);
    let parquet = |files: Vec<String>| files.into_iter().filter(|n| n.ends_with(".parquet"));
    assert_eq!(parquet(f.lake_files("silver/readings").await).count(), 0);
    assert_eq!(
        parquet(f.lake_files("silver/readings__quarantine").await).count(),
        0
    );
}

#[tokio::test]
async fn an_append_whose_columns_changed_asks_for_a_full_refresh() {
    let f = feed();
    write_batch(&f, 0, BATCHES[0]);
    f.run_ok(&[]);
    let toml = FEED.replace(
        "name = \"all_readings\"\nfrom = \"bronze.readings\"\ncolumns = { sensor = \"bigint\", value = \"decimal(8,2)\"",
        "name = \"all_readings\"\nfrom = \"bronze.readings\"\ncolumns = { sensor = \"bigint\", value = \"double\"",
    );
    assert_ne!(toml, FEED);
    f.write("assay.toml", &toml);
    write_batch(&f, 1, BATCHES[1]);
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("silver.all_readings: the output columns changed (column `value` was")
            && stdout.contains("assay run --full-refresh --select silver.all_readings"),
        "{stdout}"
    );
    f.run_ok(&["--full-refresh", "--select", "silver.all_readings"]);
    assert_eq!(f.table(TABLES[1]).await, f.rebuilt().table(TABLES[1]).await);
}

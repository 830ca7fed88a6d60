//! Change data: deletes (`apply_as_deletes`) and history (`history = "scd2"`) from events
//! that arrive out of order, twice, or after their key was deleted. After every run, each
//! table equals a from-scratch run over the same files, row for row.

use crate::kit::Fixture;

/// One CDC feed, refined twice: in place (SCD1) and as history (SCD2).
const CDC: &str = r#"
[[bronze]]
name = "events"
source = { kind = "files", path = "data/events/*.csv" }

[[silver]]
name = "accounts"
from = "bronze.events"
columns = { id = "bigint", name = "string", seq = "bigint" }
keys = ["id"]
sequence_by = "seq"
apply_as_deletes = "op = 'D'"
expect = { named = "name IS NOT NULL" }
on_violation = "quarantine"

[[silver]]
name = "account_history"
from = "bronze.events"
columns = { id = "bigint", name = "string", seq = "bigint" }
keys = ["id"]
sequence_by = "seq"
apply_as_deletes = "op = 'D'"
history = "scd2"
"#;

const ACCOUNTS: &str = "SELECT id, name, seq FROM silver.accounts ORDER BY id";
const HISTORY: &str = "SELECT id, name, _valid_from, _valid_to, _is_current \
                       FROM silver.account_history ORDER BY id, _valid_from";

/// Batches of events: `id,name,seq,op`.
const BATCHES: [&str; 4] = [
    // Inserts; a key updated twice in one batch; a delete of a key never inserted.
    "1,Ada,10,I\n2,Bo,10,I\n3,Cy,10,I\n3,Cy B,20,U\n4,Di,50,D\n",
    // An update; a delete (no name: deletes need only key and sequence); a late update
    // older than what silver holds; a late insert older than the key's delete; a duplicate.
    "1,Ada L,30,U\n2,,40,D\n1,Ada X,20,U\n4,Di,30,I\n3,Cy B,20,U\n",
    // A re-insert after the delete; a delete of a key, then an older update of it.
    "2,Bo again,60,I\n3,,70,D\n3,Cy C,65,U\n",
    // A late delete of a deleted span, a late update inside it, a tie of an update and a
    // delete (the delete wins).
    "2,,50,D\n2,Bo late,45,U\n1,Ada T,40,U\n1,,40,D\n",
];

fn cdc() -> Fixture {
    Fixture::with_config(CDC)
}

fn write_batch(f: &Fixture, i: usize, rows: &str) {
    f.write(
        &format!("data/events/b{i}.csv"),
        &format!("id,name,seq,op\n{rows}"),
    );
}

#[tokio::test]
async fn deletes_and_history_equal_a_rebuild_after_every_run() {
    let f = cdc();
    for (i, batch) in BATCHES.iter().enumerate() {
        write_batch(&f, i, batch);
        f.run_ok(&[]);
        let fresh = f.rebuilt();
        for sql in [ACCOUNTS, HISTORY] {
            assert_eq!(f.table(sql).await, fresh.table(sql).await, "run {i}: {sql}");
        }
    }
    assert_eq!(
        f.table(ACCOUNTS).await,
        "\
+----+----------+-----+
| id | name     | seq |
+----+----------+-----+
| 2  | Bo again | 60  |
+----+----------+-----+",
        "1: deleted at 40 (the tie); 3: deleted at 70 (the update at 65 is older); \
         4: deleted at 50 (the insert at 30 is older)"
    );
    assert_eq!(
        f.table(HISTORY).await,
        "\
+----+----------+-------------+-----------+-------------+
| id | name     | _valid_from | _valid_to | _is_current |
+----+----------+-------------+-----------+-------------+
| 1  | Ada      | 10          | 20        | false       |
| 1  | Ada X    | 20          | 30        | false       |
| 1  | Ada L    | 30          | 40        | false       |
| 2  | Bo       | 10          | 40        | false       |
| 2  | Bo late  | 45          | 50        | false       |
| 2  | Bo again | 60          |           | true        |
| 3  | Cy       | 10          | 20        | false       |
| 3  | Cy B     | 20          | 65        | false       |
| 3  | Cy C     | 65          | 70        | false       |
| 4  | Di       | 30          | 50        | false       |
+----+----------+-------------+-----------+-------------+"
    );
    // Deletes skip expectations: the nameless delete events were not quarantined.
    assert_eq!(f.version("silver.accounts__quarantine").await, None);
    // The tombstones hold each key's latest delete until a newer upsert arrives (SCD1; the
    // late delete of 2 at 50 came after its upsert at 60) and every delete (SCD2).
    assert_eq!(
        f.table("SELECT id, seq FROM silver.accounts__tombstones ORDER BY id")
            .await,
        "\
+----+-----+
| id | seq |
+----+-----+
| 1  | 40  |
| 2  | 50  |
| 3  | 70  |
| 4  | 50  |
+----+-----+"
    );
    assert_eq!(f.count("silver.account_history__tombstones").await, 5);

    // Nothing new: nothing committed.
    let versions = (
        f.version("silver.accounts").await,
        f.version("silver.account_history").await,
    );
    let out = f.run_ok(&[]);
    assert_eq!(out.matches("up_to_date").count(), 3, "{out}");
    assert_eq!(
        versions,
        (
            f.version("silver.accounts").await,
            f.version("silver.account_history").await
        )
    );
    // A full refresh rebuilds both (and their tombstones) in one commit each.
    f.run_ok(&["--full-refresh", "--select", "silver"]);
    assert_eq!(
        f.version("silver.accounts").await,
        versions.0.map(|v| v + 1)
    );
    let fresh = f.rebuilt();
    for sql in [ACCOUNTS, HISTORY] {
        assert_eq!(f.table(sql).await, fresh.table(sql).await, "{sql}");
    }
}

#[tokio::test]
async fn a_crash_between_the_tombstones_and_the_table_is_completed_by_the_rerun() {
    let f = cdc();
    write_batch(&f, 0, BATCHES[0]);
    f.run_ok(&[]);
    for (i, batch) in BATCHES.iter().enumerate().skip(1) {
        write_batch(&f, i, batch);
        let out = f.assay(&[
            "run",
            "--inject-fault",
            "before_commit:silver.accounts",
            "--inject-fault",
            "before_commit:silver.account_history",
        ]);
        assert!(!out.status.success(), "batch {i}: the faults fired");
        f.run_ok(&[]);
        let fresh = f.rebuilt();
        for sql in [ACCOUNTS, HISTORY] {
            assert_eq!(
                f.table(sql).await,
                fresh.table(sql).await,
                "batch {i}: {sql}"
            );
        }
    }
}

#[tokio::test]
async fn a_delete_predicate_that_is_not_boolean_names_the_key_and_line() {
    let f = Fixture::with_config(&CDC.replace(
        "apply_as_deletes = \"op = 'D'\"\nexpect",
        "apply_as_deletes = \"op\"\nexpect",
    ));
    write_batch(&f, 0, BATCHES[0]);
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "line 12: `silver[0].apply_as_deletes`: `op` is of type string, not a boolean expression"
        ),
        "{err}"
    );
    assert_eq!(f.version("silver.accounts").await, None, "nothing written");
}

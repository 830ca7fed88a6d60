//! `kind = "postgres"` bronze sources against a real PostgreSQL started by the test kit:
//! types mapped to Arrow, incremental runs by a watermark with rows at the boundary, a crash
//! between fetch and commit, and bad sources.

use assay_testkit::Postgres;

use crate::kit::{Fixture, succeeded as ok};

const PROJECT: &str = r#"
[[bronze]]
name = "readings"
source = { kind = "postgres", url_env = "PG_URL", table = "public.readings",
           incremental = { column = "updated_at", key = "id" } }

[[bronze]]
name = "recent"
source = { kind = "postgres", url_env = "PG_URL",
           query = "SELECT id, sensor FROM readings WHERE id <= 2" }
"#;

fn run(f: &Fixture, pg: &Postgres, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    f.command(&args).env("PG_URL", pg.url()).output().unwrap()
}

#[tokio::test]
async fn postgres_tables_load_typed_and_incrementally_exactly_once() {
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE readings (id int PRIMARY KEY, sensor text, value numeric(10,3), ok bool,
           taken date, at_local timestamp, tags text[], doc jsonb, uid uuid, f float8,
           big bigint, small smallint, note text, spot point, updated_at timestamptz NOT NULL);
         INSERT INTO readings VALUES
           (1, 's1', 12.345, true, '2026-11-01', '2026-11-01 08:00:00.5', '{a,b}', '{\"k\": [1, 2]}',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.5, 9007199254740993, 7, '', '(1,2)',
            '2026-11-01 10:00:00+00'),
           (2, 's2', -0.001, false, NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL,
            '2026-11-02 10:00:00+01'),
           (3, NULL, NULL, NULL, NULL, NULL, '{}', 'null', NULL, NULL, NULL, NULL, 'x,\"y\"', NULL,
            '2026-11-02 09:00:00+00');",
    );
    let f = Fixture::with_config(PROJECT);
    ok(&run(&f, &pg, &[]));
    assert_eq!(f.count("bronze.readings").await, 3);
    assert_eq!(f.count("bronze.recent").await, 2);
    assert_eq!(
        f.table(
            "SELECT arrow_typeof(id) AS id, arrow_typeof(value) AS value, arrow_typeof(ok) AS ok, \
             arrow_typeof(taken) AS taken, arrow_typeof(at_local) AS at_local, \
             arrow_typeof(updated_at) AS updated_at, arrow_typeof(big) AS big, \
             arrow_typeof(small) AS small, arrow_typeof(f) AS f FROM bronze.readings LIMIT 1"
        )
        .await,
        f.table(
            "SELECT 'Int32' AS id, 'Decimal128(10, 3)' AS value, 'Boolean' AS ok, 'Date32' AS taken, \
             'Timestamp(µs)' AS at_local, 'Timestamp(µs, \"UTC\")' AS updated_at, 'Int64' AS big, \
             'Int16' AS small, 'Float64' AS f"
        )
        .await
    );
    assert_eq!(
        f.table(
            "SELECT id, sensor, value, ok, taken, at_local, tags, doc, uid, big, note, spot, updated_at \
             FROM bronze.readings ORDER BY id"
        )
        .await,
        r#"+----+--------+--------+-------+------------+-------------------------+-----------+---------------+--------------------------------------+------------------+-------+-------+----------------------+
| id | sensor | value  | ok    | taken      | at_local                | tags      | doc           | uid                                  | big              | note  | spot  | updated_at           |
+----+--------+--------+-------+------------+-------------------------+-----------+---------------+--------------------------------------+------------------+-------+-------+----------------------+
| 1  | s1     | 12.345 | true  | 2026-11-01 | 2026-11-01T08:00:00.500 | ["a","b"] | {"k": [1, 2]} | a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 | 9007199254740993 |       | (1,2) | 2026-11-01T10:00:00Z |
| 2  | s2     | -0.001 | false |            |                         |           |               |                                      |                  |       |       | 2026-11-02T09:00:00Z |
| 3  |        |        |       |            |                         | []        | null          |                                      |                  | x,"y" |       | 2026-11-02T09:00:00Z |
+----+--------+--------+-------+------------+-------------------------+-----------+---------------+--------------------------------------+------------------+-------+-------+----------------------+"#
    );
    assert_eq!(
        f.count("bronze.readings WHERE note = ''").await,
        1,
        "'' is not NULL"
    );
    assert_eq!(f.count("bronze.readings WHERE isnan(f)").await, 1);

    // Rows 2 and 3 share the watermark. A new row arrives at it (committed later), row 1 is
    // updated, row 2 is deleted (bronze keeps what it read: a watermark does not see deletes;
    // silver's `apply_as_deletes` is for sources that send delete markers).
    pg.sql(
        "INSERT INTO readings (id, sensor, updated_at) VALUES (4, 's4', '2026-11-02 09:00:00+00');
         UPDATE readings SET sensor = 's1b', updated_at = '2026-11-03 10:00:00+00' WHERE id = 1;
         DELETE FROM readings WHERE id = 2;",
    );
    let out = run(
        &f,
        &pg,
        &[
            "--select",
            "bronze.readings",
            "--inject-fault",
            "before_commit:bronze.readings",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(f.count("bronze.readings").await, 3, "nothing committed");
    ok(&run(&f, &pg, &["--select", "bronze.readings"]));
    assert_eq!(
        f.table("SELECT id, sensor FROM bronze.readings ORDER BY id, sensor").await,
        f.table("SELECT * FROM (VALUES (1, 's1'), (1, 's1b'), (2, 's2'), (3, NULL), (4, 's4')) AS t(id, sensor)").await,
        "the row at the boundary arrives once, the rows already read are not read again"
    );
    let version = f.version("bronze.readings").await;
    ok(&run(&f, &pg, &["--select", "bronze.readings"]));
    assert_eq!(
        f.version("bronze.readings").await,
        version,
        "nothing new, no commit"
    );
}

#[test]
fn bad_postgres_sources_fail_clearly() {
    let pg = Postgres::start();
    let f = Fixture::with_config(
        "[[bronze]]\nname = \"x\"\nsource = { kind = \"postgres\", url_env = \"PG_URL\", table = \"nope\" }\n",
    );
    let out = run(&f, &pg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("relation \"nope\" does not exist"), "{err}");

    let secret = format!(
        "postgres://postgres:hunter22@127.0.0.1:{}/missing_db",
        pg.port()
    );
    let out = f.command(&["run"]).env("PG_URL", &secret).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("missing_db"), "{err}");
    assert!(!err.contains("hunter22"), "{err}");

    let dead = format!(
        "postgres://postgres:hunter22@127.0.0.1:{}/x",
        assay_testkit::free_port()
    );
    let out = f.command(&["run"]).env("PG_URL", &dead).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to PostgreSQL (the URL in `PG_URL`)"),
        "{err}"
    );
    assert!(!err.contains("hunter22"), "{err}");

    let out = f.command(&["run"]).env_remove("PG_URL").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable `PG_URL` is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn mariadb_tables_load_typed_incrementally_and_join_a_postgres_table_in_silver() {
    let pg = Postgres::start();
    let my = assay_testkit::MariaDb::start();
    pg.sql(
        "CREATE TABLE sensors (id int PRIMARY KEY, site text);
         INSERT INTO sensors VALUES (1, 'north'), (2, 'south');",
    );
    my.sql(
        "CREATE TABLE readings (id INT PRIMARY KEY, sensor_id INT, value DECIMAL(10,3),
           ok TINYINT(1), taken DATE, at_local DATETIME(6), big BIGINT UNSIGNED, tiny TINYINT,
           note VARCHAR(20), doc JSON, updated_at TIMESTAMP(6) NOT NULL);
         INSERT INTO readings VALUES
           (1, 1, 12.345, 1, '2026-11-01', '2026-11-01 08:00:00.5', 18446744073709551615, -5, '',
            '{\"k\": 1}', '2026-11-01 10:00:00'),
           (2, 2, -0.001, 0, NULL, NULL, NULL, NULL, NULL, NULL, '2026-11-02 09:00:00'),
           (3, 1, 1.000, NULL, NULL, NULL, NULL, NULL, 'x', NULL, '2026-11-02 09:00:00');",
    );
    let f = Fixture::with_config(
        r#"
[[bronze]]
name = "readings"
source = { kind = "mysql", url_env = "MY_URL", table = "readings",
           incremental = { column = "updated_at", key = "id" } }

[[bronze]]
name = "sensors"
source = { kind = "postgres", url_env = "PG_URL", table = "sensors" }

[[silver]]
name = "readings"
from = "bronze.readings"
keys = ["id"]
sequence_by = "updated_at"

[[gold]]
name = "by_site"
"#,
    );
    f.write(
        "sql/gold/by_site.sql",
        "SELECT s.site, COUNT(*) AS n, SUM(r.value) AS total \
         FROM silver.readings r JOIN bronze.sensors s ON s.id = r.sensor_id GROUP BY s.site",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        f.command(&args)
            .env("PG_URL", pg.url())
            .env("MY_URL", my.url())
            .output()
            .unwrap()
    };
    ok(&run(&[]));
    assert_eq!(
        f.table(
            "SELECT arrow_typeof(value) AS value, arrow_typeof(ok) AS ok, arrow_typeof(taken) AS taken, \
             arrow_typeof(at_local) AS at_local, arrow_typeof(big) AS big, arrow_typeof(tiny) AS tiny, \
             arrow_typeof(updated_at) AS updated_at FROM bronze.readings LIMIT 1"
        )
        .await,
        f.table(
            "SELECT 'Decimal128(10, 3)' AS value, 'Boolean' AS ok, 'Date32' AS taken, \
             'Timestamp(µs)' AS at_local, 'Decimal128(20, 0)' AS big, 'Int8' AS tiny, \
             'Timestamp(µs, \"UTC\")' AS updated_at"
        )
        .await
    );
    assert_eq!(
        f.table("SELECT id, value, ok, taken, at_local, big, note, doc, updated_at FROM bronze.readings ORDER BY id")
            .await,
        r#"+----+--------+-------+------------+-------------------------+----------------------+------+----------+----------------------+
| id | value  | ok    | taken      | at_local                | big                  | note | doc      | updated_at           |
+----+--------+-------+------------+-------------------------+----------------------+------+----------+----------------------+
| 1  | 12.345 | true  | 2026-11-01 | 2026-11-01T08:00:00.500 | 18446744073709551615 |      | {"k": 1} | 2026-11-01T10:00:00Z |
| 2  | -0.001 | false |            |                         |                      |      |          | 2026-11-02T09:00:00Z |
| 3  | 1.000  |       |            |                         |                      | x    |          | 2026-11-02T09:00:00Z |
+----+--------+-------+------------+-------------------------+----------------------+------+----------+----------------------+"#
    );
    assert_eq!(
        f.table("SELECT site, n, CAST(total AS VARCHAR) AS total FROM gold.by_site ORDER BY site")
            .await,
        f.table("SELECT * FROM (VALUES ('north', 2, '13.345'), ('south', 1, '-0.001')) AS t(site, n, total)")
            .await,
        "a MariaDB table joined with a PostgreSQL table"
    );

    // A row at the watermark arrives later, another changes; the crash-then-rerun is exact.
    my.sql(
        "INSERT INTO readings (id, sensor_id, value, updated_at) VALUES (4, 2, 2.000, '2026-11-02 09:00:00');
         UPDATE readings SET value = 20.000, updated_at = '2026-11-03 10:00:00' WHERE id = 1;",
    );
    let out = run(&["--inject-fault", "before_commit:bronze.readings"]);
    assert!(!out.status.success());
    assert_eq!(f.count("bronze.readings").await, 3);
    ok(&run(&[]));
    assert_eq!(
        f.table("SELECT id, CAST(value AS VARCHAR) AS value FROM bronze.readings ORDER BY id, value")
            .await,
        f.table(
            "SELECT * FROM (VALUES (1, '12.345'), (1, '20.000'), (2, '-0.001'), (3, '1.000'), (4, '2.000')) \
             AS t(id, value)"
        )
        .await,
        "the row at the boundary arrives once, the rows already read are not read again"
    );
    assert_eq!(f.count("silver.readings").await, 4);
    let version = f.version("bronze.readings").await;
    ok(&run(&["--select", "bronze.readings"]));
    assert_eq!(
        f.version("bronze.readings").await,
        version,
        "nothing new, no commit"
    );
}

#[test]
fn bad_mariadb_sources_fail_clearly() {
    let my = assay_testkit::MariaDb::start();
    let f = Fixture::with_config(
        "[[bronze]]\nname = \"x\"\nsource = { kind = \"mysql\", url_env = \"MY_URL\", table = \"nope\" }\n",
    );
    let out = f
        .command(&["run"])
        .env("MY_URL", my.url())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("MySQL/MariaDB table `nope`") && err.contains("doesn't exist"),
        "{err}"
    );

    let g = Fixture::with_config(
        "[[bronze]]\nname = \"x\"\nsource = { kind = \"mysql\", url_env = \"MY_URL\", table = \"t\", parallel = { column = \"id\", ranges = 4 } }\n",
    );
    let out = g.assay(&["ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "line 2: `bronze[0].source.parallel`: parallel range reads are for `postgres` sources"
        ),
        "{err}"
    );

    let secret = format!("mysql://root:hunter22@127.0.0.1:{}/test", my.port());
    let out = f.command(&["run"]).env("MY_URL", &secret).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Access denied"), "{err}");
    assert!(!err.contains("hunter22"), "{err}");
}

#[tokio::test]
async fn a_big_postgres_table_is_read_in_parallel_ranges_of_one_snapshot() {
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE events (id int PRIMARY KEY, k bigint, payload text, updated_at timestamptz NOT NULL);
         INSERT INTO events SELECT g, CASE WHEN g % 100 = 0 THEN NULL ELSE g * 3 END, 'p' || g,
           '2026-11-01'::timestamptz + (g % 50) * interval '1 minute'
         FROM generate_series(1, 20000) AS g;",
    );
    let f = Fixture::with_config(
        r#"
[[bronze]]
name = "events"
source = { kind = "postgres", url_env = "PG_URL", table = "events",
           parallel = { column = "k", ranges = 4 },
           incremental = { column = "updated_at", key = "id" } }
"#,
    );
    let run = || {
        f.command(&["run"])
            .env("PG_URL", pg.url())
            .output()
            .unwrap()
    };
    ok(&run());
    assert_eq!(f.count("bronze.events").await, 20_000);
    assert_eq!(
        f.table(
            "SELECT COUNT(DISTINCT id) AS ids, SUM(k) AS k, COUNT(k) AS with_k FROM bronze.events"
        )
        .await,
        f.table(&format!(
            "SELECT 20000 AS ids, CAST({} AS BIGINT) AS k, 19800 AS with_k",
            pg.sql("SELECT sum(k) FROM events").trim()
        ))
        .await,
        "every row once, the NULL keys too"
    );
    pg.sql(
        "INSERT INTO events VALUES (20001, NULL, 'late', '2026-11-01 00:49:00+00'),
                                   (20002, 5, 'new', '2026-11-02 00:00:00+00');",
    );
    ok(&run());
    assert_eq!(f.count("bronze.events").await, 20_002);
    assert_eq!(
        f.count("bronze.events WHERE payload IN ('late', 'new')")
            .await,
        2
    );
}

#[tokio::test]
async fn database_rows_that_do_not_fit_their_types_are_rejected_with_the_reason() {
    let pg = Postgres::start();
    let my = assay_testkit::MariaDb::start();
    pg.sql(
        "CREATE TABLE odd (id int, d date, v numeric(6,2));
         INSERT INTO odd VALUES (1, '2026-11-01', 1.50), (2, 'infinity', 2.00), (3, NULL, 'NaN'),
                                (4, '2026-11-04', NULL);",
    );
    my.sql(
        "CREATE TABLE odd (id INT, d DATE);
         INSERT INTO odd VALUES (1, '2026-11-01'), (2, '0000-00-00'), (3, NULL);",
    );
    let config = |on_error: &str| {
        format!(
            r#"
[[bronze]]
name = "pg_odd"
on_error = "{on_error}"
source = {{ kind = "postgres", url_env = "PG_URL", table = "odd" }}

[[bronze]]
name = "my_odd"
on_error = "{on_error}"
source = {{ kind = "mysql", url_env = "MY_URL", table = "odd" }}
"#
        )
    };
    let f = Fixture::with_config(&config("fail"));
    let run = |f: &Fixture| {
        f.command(&["run"])
            .env("PG_URL", pg.url())
            .env("MY_URL", my.url())
            .output()
            .unwrap()
    };
    let out = run(&f);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("postgres:odd line 2: a value does not fit its column type"),
        "{err}"
    );
    assert!(
        err.contains("mysql:odd line 2: column `d`: `0000-00-00` does not fit Date32"),
        "{err}"
    );
    assert_eq!(f.version("bronze.pg_odd").await, None, "nothing written");

    f.write("assay.toml", &config("quarantine"));
    ok(&run(&f));
    assert_eq!(f.count("bronze.pg_odd").await, 2);
    assert_eq!(f.count("bronze.pg_odd__rejected").await, 2);
    assert_eq!(
        f.count("bronze.pg_odd__rejected WHERE _line = 2 AND _raw LIKE '2,infinity,%'")
            .await,
        1
    );
    assert_eq!(
        f.count("bronze.pg_odd WHERE v IS NULL").await,
        1,
        "row 4: NULL stays NULL"
    );
    assert_eq!(f.count("bronze.my_odd").await, 2);
    assert_eq!(
        f.count("bronze.my_odd__rejected WHERE _raw = '[\"2\",\"0000-00-00\"]'")
            .await,
        1
    );
}

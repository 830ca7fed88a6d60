use std::path::Path;

use super::*;

fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sql/gold")).unwrap();
    std::fs::write(dir.path().join("sql/gold/kpis.sql"), "SELECT 1 AS x").unwrap();
    dir
}

fn load(dir: &Path, text: &str) -> Result<Project> {
    Project::from_toml(dir, text)
}

#[test]
fn parses_a_full_project_and_discovers_gold_models() {
    let dir = project_dir();
    let p = load(
        dir.path(),
        r#"
[lake]
root = "s3://bucket/lake"

[run]
retries = 5
step_timeout = "10m"

[[bronze]]
name = "orders"
source = { kind = "files", path = "data/*.csv", format = "csv", csv = { delimiter = ";" } }
on_error = "quarantine"

[[silver]]
name = "orders"
from = "bronze.orders"
columns = { order_id = "bigint", amount = "decimal(12,2)" }
keys = ["order_id"]
expect = { positive = "amount >= 0", strict = { rule = "amount < 1000", action = "fail" } }
on_violation = "drop"
"#,
    )
    .unwrap();
    assert_eq!(p.lake_root, "s3://bucket/lake");
    assert_eq!(p.run.retries, 5);
    assert_eq!(p.run.step_timeout, Duration::from_secs(600));
    let SourceConfig::Files { pattern, csv, .. } = &p.bronze[0].source else {
        panic!("a files source")
    };
    assert!(
        pattern.starts_with("file:///") && pattern.ends_with("/data/*.csv"),
        "{pattern}"
    );
    assert_eq!(csv.delimiter, ';');
    let s = &p.silver[0];
    assert_eq!(s.columns[0].0, "order_id", "declared order is kept");
    assert_eq!(s.expectations[0].action, Action::Drop);
    assert_eq!(s.expectations[1].action, Action::Fail);
    assert_eq!(p.gold[0].name, "kpis");
    assert_eq!(p.gold[0].sql, "SELECT 1 AS x");
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let dir = project_dir();
    let err = load(
        dir.path(),
        "[lake]\nroot = \"x\"\n\n[[gold]]\nname = \"kpis\"\nmaterialise = \"table\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("unknown field `materialise`"), "{err}");
}

#[test]
fn wrong_types_name_the_line() {
    let dir = project_dir();
    let err = load(dir.path(), "[run]\nretries = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn missing_sql_files_name_the_key_and_file() {
    let dir = project_dir();
    let err = load(
        dir.path(),
        "[[gold]]\nname = \"x\"\nsql = \"sql/gold/nope.sql\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 3: `gold[0].sql`"), "{err}");
    assert!(
        err.contains("cannot read SQL file `sql/gold/nope.sql`"),
        "{err}"
    );
}

#[test]
fn bad_globs_and_types_and_names_are_errors() {
    let dir = project_dir();
    let err = load(
        dir.path(),
        "[[bronze]]\nname = \"o\"\nsource = { kind = \"files\", path = \"data/[*.csv\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`bronze[0].source.path`: bad glob"), "{err}");

    let err = load(
        dir.path(),
        "[[silver]]\nname = \"o\"\nfrom = \"bronze.o\"\ncolumns = { a = \"money\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 4: `silver[0].columns.a`: unknown column type `money`"),
        "{err}"
    );

    let err = load(
        dir.path(),
        "[[bronze]]\nname = \"Bad-Name\"\nsource = { kind = \"files\", path = \"x\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a valid table name"), "{err}");

    let err = load(
        dir.path(),
        "[[silver]]\nname = \"o\"\nfrom = \"platinum.o\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown layer `platinum`"), "{err}");
}

#[test]
fn auth_section_and_secrets() {
    use crate::config::SignupPolicy;
    use crate::identity::Role;
    let dir = project_dir();
    let p = load(dir.path(), "").unwrap();
    assert_eq!(p.auth.signup, SignupPolicy::Approval);
    assert_eq!(p.auth.token_ttl, Duration::from_secs(12 * 3600));
    assert!(p.auth.oidc.is_none());
    let p = load(
        dir.path(),
        r#"
[auth]
signup = "closed"
jwt_secret_env = "MY_SECRET"
token_ttl = "30m"

[auth.oidc]
issuer = "https://id.example.com"
audience = "assay"
jwks_url = "https://id.example.com/jwks"
role_claim = "groups"
default_role = "engineer"
"#,
    )
    .unwrap();
    assert_eq!(p.auth.signup, SignupPolicy::Closed);
    assert_eq!(p.auth.token_ttl, Duration::from_secs(1800));
    let oidc = p.auth.oidc.clone().unwrap();
    assert_eq!(oidc.username_claim, "preferred_username");
    assert_eq!(
        (oidc.role_claim.as_str(), oidc.default_role),
        ("groups", Role::Engineer)
    );
    assert_eq!(oidc.jwks_ttl, Duration::from_secs(600));

    let env = |v: &'static str| move |k: &str| (k == "MY_SECRET").then(|| v.to_string());
    assert!(p.jwt_secret(env("")).unwrap().is_none());
    let short = p.jwt_secret(env("too short")).unwrap_err().to_string();
    assert!(
        short.contains("MY_SECRET") && !short.contains("too short"),
        "{short}"
    );
    let long = "x".repeat(40);
    let long: &'static str = Box::leak(long.into_boxed_str());
    assert_eq!(p.jwt_secret(env(long)).unwrap().unwrap().expose(), long);

    let bad = load(dir.path(), "[auth]\nsignup = \"maybe\"\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("maybe"), "{bad}");
    let bad = load(dir.path(), "[auth.oidc]\nissuer = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("audience"), "{bad}");

    let admin = |k: &str| match k {
        "ASSAY_ADMIN_USER" => Some("root".to_string()),
        "ASSAY_ADMIN_PASSWORD" => Some("pw-123456".to_string()),
        _ => None,
    };
    let (name, pw) = p.bootstrap_admin(admin).unwrap();
    assert_eq!((name.as_str(), pw.expose()), ("root", "pw-123456"));
    assert!(p.bootstrap_admin(|_| None).is_none());
}

#[test]
fn the_streamed_input_is_from_the_only_table_or_the_stream_key() {
    let dir = project_dir();
    std::fs::create_dir_all(dir.path().join("sql/silver")).unwrap();
    std::fs::write(
        dir.path().join("sql/silver/enriched.sql"),
        "SELECT o.id, c.name FROM bronze.orders o JOIN bronze.customers c ON o.cid = c.id",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sql/silver/plain.sql"),
        "WITH x AS (SELECT * FROM bronze.orders) SELECT * FROM x",
    )
    .unwrap();
    let p = load(
        dir.path(),
        r#"
[[silver]]
name = "a"
from = "bronze.orders"

[[silver]]
name = "plain"
sql = "sql/silver/plain.sql"

[[silver]]
name = "enriched"
sql = "sql/silver/enriched.sql"
stream = "bronze.orders"
"#,
    )
    .unwrap();
    let orders = TableId::parse("bronze.orders").unwrap();
    let customers = TableId::parse("bronze.customers").unwrap();
    assert_eq!(p.silver[0].stream, orders);
    assert_eq!(
        p.silver[1].stream, orders,
        "one table read: it is the stream"
    );
    assert_eq!(p.silver[2].stream, orders);
    assert_eq!(
        p.silver[2].upstreams,
        vec![orders, customers],
        "stream first"
    );

    // Several tables and no `stream`: the entry and the candidates are named.
    let err = load(
        dir.path(),
        "[[silver]]\nname = \"enriched\"\nsql = \"sql/silver/enriched.sql\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 2: `silver[0].stream`: silver.enriched reads several tables (`bronze.customers`, `bronze.orders`): set `stream`"),
        "{err}"
    );

    // A stream the SQL does not read.
    let err = load(
        dir.path(),
        "[[silver]]\nname = \"enriched\"\nsql = \"sql/silver/enriched.sql\"\nstream = \"bronze.returns\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 4: `silver[0].stream`: `bronze.returns` is not read by the SQL of `sql/silver/enriched.sql` (it reads: `bronze.customers`, `bronze.orders`)"),
        "{err}"
    );
    let err = load(
        dir.path(),
        "[[silver]]\nname = \"a\"\nfrom = \"bronze.orders\"\nstream = \"bronze.x\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`silver[0].stream`: `bronze.x` is not read by `from`"),
        "{err}"
    );
    let err = load(
        dir.path(),
        "[[silver]]\nname = \"a\"\nfrom = \"bronze.orders\"\nstream = \"orders\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 4: `silver[0].stream`: `orders` is not of the form layer.table"),
        "{err}"
    );
}

#[test]
fn incremental_gold_models_are_validated() {
    let dir = project_dir();
    std::fs::write(
        dir.path().join("sql/gold/facts.sql"),
        "SELECT o.id, p.name FROM silver.orders o JOIN silver.products p ON o.pid = p.id",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sql/gold/daily.sql"),
        "SELECT d AS x, COUNT(*) AS n FROM silver.orders GROUP BY d",
    )
    .unwrap();
    let p = load(
        dir.path(),
        r#"
[[gold]]
name = "facts"
stream = "silver.orders"
incremental = { strategy = "merge", unique_key = ["id"] }

[[gold]]
name = "daily"
partition_by = ["x"]
incremental = { strategy = "partitions" }
"#,
    )
    .unwrap();
    let facts = p.gold[0].incremental.as_ref().unwrap();
    assert_eq!(facts.strategy, Strategy::Merge);
    assert_eq!(facts.unique_key, vec!["id".to_string()]);
    assert_eq!(facts.stream, TableId::parse("silver.orders").unwrap());
    assert!(p.gold[1].incremental.is_some());

    let cases = [
        (
            "[[gold]]\nname = \"kpis\"\nincremental = { strategy = \"merge\" }\n",
            "line 3: `gold[0].incremental.unique_key`: strategy `merge` needs `unique_key`",
        ),
        (
            "[[gold]]\nname = \"kpis\"\nincremental = { strategy = \"partitions\" }\n",
            "line 3: `gold[0].incremental.strategy`: strategy `partitions` needs `partition_by`",
        ),
        (
            "[[gold]]\nname = \"kpis\"\nincremental = { strategy = \"append\", unique_key = [\"x\"] }\n",
            "only strategy `merge` takes `unique_key` (this is `append`)",
        ),
        (
            "[[gold]]\nname = \"kpis\"\nincremental = { strategy = \"upsert\" }\n",
            "unknown variant `upsert`",
        ),
        (
            "[[gold]]\nname = \"facts\"\nincremental = { strategy = \"append\" }\n",
            "`gold[0].stream`: gold.facts reads several tables (`silver.orders`, `silver.products`): set `stream`",
        ),
        (
            "[[gold]]\nname = \"kpis\"\nstream = \"silver.orders\"\n",
            "line 3: `gold[0].stream`: only an `incremental` model has a streamed input",
        ),
        (
            "[[gold]]\nname = \"kpis\"\nincremental = { strategy = \"append\" }\n",
            "gold.kpis reads no table, so it has no input to stream",
        ),
    ];
    for (toml, expected) in cases {
        let err = load(dir.path(), toml).unwrap_err().to_string();
        assert!(err.contains(expected), "{toml}\n{err}");
    }
}

#[test]
fn change_data_keys_are_validated() {
    let dir = project_dir();
    let base = "[[silver]]\nname = \"orders\"\nfrom = \"bronze.orders\"\n";
    let p = load(
        dir.path(),
        &format!(
            "{base}keys = [\"id\"]\nsequence_by = \"seq\"\napply_as_deletes = \"op = 'D'\"\nhistory = \"scd2\"\n"
        ),
    )
    .unwrap();
    let s = &p.silver[0];
    assert_eq!(s.history, History::Scd2);
    let d = s.apply_as_deletes.as_ref().unwrap();
    assert_eq!(d.sql, "op = 'D'");
    assert_eq!(d.at, "line 6: `silver[0].apply_as_deletes`");
    assert_eq!(
        load(dir.path(), base).unwrap().silver[0].history,
        History::Scd1
    );

    let cases = [
        (
            "apply_as_deletes = \"op = 'D'\"\n",
            "line 4: `silver[0].apply_as_deletes`: `apply_as_deletes` needs `keys` and `sequence_by`",
        ),
        (
            "keys = [\"id\"]\nhistory = \"scd2\"\n",
            "line 5: `silver[0].history`: `history = \"scd2\"` needs `keys` and `sequence_by`",
        ),
        ("history = \"scd3\"\n", "unknown variant `scd3`"),
        (
            "keys = [\"id\"]\nsequence_by = \"seq\"\napply_as_deletes = \"amount + 1\"\n",
            "line 6: `silver[0].apply_as_deletes`: `amount + 1` is arithmetic, not a boolean expression",
        ),
        (
            "keys = [\"id\"]\nsequence_by = \"seq\"\napply_as_deletes = \"'D'\"\n",
            "`'D'` is a literal value, not a boolean expression",
        ),
        (
            "keys = [\"id\"]\nsequence_by = \"seq\"\napply_as_deletes = \"op = \"\n",
            "`op = ` is not a SQL expression",
        ),
        (
            "keys = [\"id\"]\nsequence_by = \"seq\"\napply_as_deletes = \"op = 'D' OR id IN (SELECT id FROM bronze.x)\"\n",
            "a row predicate cannot read other tables",
        ),
        (
            "keys = [\"id\"]\nsequence_by = \"seq\"\nhistory = \"scd2\"\ncolumns = { id = \"bigint\", _valid_to = \"timestamp\" }\n",
            "`silver[0].columns`: `_valid_to` is a column `history = \"scd2\"` adds itself",
        ),
    ];
    for (extra, expected) in cases {
        let toml = format!("{base}{extra}");
        let err = load(dir.path(), &toml).unwrap_err().to_string();
        assert!(err.contains(expected), "{toml}\n{err}");
    }
}

#[test]
fn gold_audits_are_validated() {
    let dir = project_dir();
    std::fs::write(
        dir.path().join("sql/gold/facts.sql"),
        "SELECT o.id, o.status, o.customer_id FROM silver.orders o",
    )
    .unwrap();
    let p = load(
        dir.path(),
        r#"
[[gold]]
name = "facts"
expect = { positive = "id > 0", soft = { rule = "status <> 'x'", action = "warn" } }
unique = ["id", ["status", "customer_id"]]
not_null = ["id", "status"]
accepted_values = { status = ["new", "shipped"], id = [1, 2, 3] }
relationships = { customer_id = "silver.customers.customer_id" }
row_count = { min = 1 }
freshness = { table = "silver.orders", max_age = "24h", column = "updated_at" }
"#,
    )
    .unwrap();
    let g = &p.gold[0];
    let names: Vec<&str> = g.audits.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "positive",
            "soft",
            "unique(id)",
            "unique(status,customer_id)",
            "not_null(id)",
            "not_null(status)",
            "accepted_values(status)",
            "accepted_values(id)",
            "relationships(customer_id)",
            "row_count",
            "freshness(silver.orders)",
        ]
    );
    assert_eq!(g.audits[0].action, Action::Fail, "audits fail by default");
    assert_eq!(g.audits[1].action, Action::Warn);
    assert_eq!(
        g.audits[6].check,
        Check::AcceptedValues {
            column: "status".into(),
            values: vec!["'new'".into(), "'shipped'".into()],
        }
    );
    assert_eq!(
        g.audit_tables(),
        vec![TableId::parse("silver.customers").unwrap()]
    );
    assert_eq!(
        g.audits[10].check,
        Check::Freshness {
            table: TableId::parse("silver.orders").unwrap(),
            column: Some("updated_at".into()),
            max_age: Duration::from_secs(24 * 3600),
        }
    );
    let warn = load(
        dir.path(),
        "[[gold]]\nname = \"facts\"\non_violation = \"warn\"\nnot_null = [\"id\"]\n",
    )
    .unwrap();
    assert_eq!(warn.gold[0].audits[0].action, Action::Warn);

    let head = "[[gold]]\nname = \"facts\"\n";
    let cases = [
        (
            "on_violation = \"quarantine\"\n",
            "line 3: `gold[0].on_violation`: a gold audit is `warn` (publish and record) or `fail` (keep the previous version), not `quarantine`",
        ),
        (
            "expect = { bad = { rule = \"id > 0\", action = \"drop\" } }\n",
            "`gold[0].expect.bad`: a gold audit is `warn`",
        ),
        (
            "expect = { sum = \"id + 1\" }\n",
            "`gold[0].expect.sum`: `id + 1` is arithmetic, not a boolean expression",
        ),
        (
            "unique = [1]\n",
            "line 3: `gold[0].unique`: each entry is a column name or a list of column names",
        ),
        (
            "accepted_values = { status = [] }\n",
            "`gold[0].accepted_values.status`: lists no value",
        ),
        (
            "relationships = { customer_id = \"customers.id\" }\n",
            "`gold[0].relationships.customer_id`: `customers.id` is not `layer.table.column`",
        ),
        (
            "row_count = { min = 5, max = 1 }\n",
            "`gold[0].row_count`: `min` (5) is above `max` (1)",
        ),
        (
            "row_count = {}\n",
            "`gold[0].row_count`: set `min`, `max` or both",
        ),
        (
            "freshness = { table = \"silver.products\", max_age = \"1h\" }\n",
            "`gold[0].freshness`: `silver.products` is not an input of the model (it reads: `silver.orders`)",
        ),
        (
            "freshness = { table = \"silver.orders\", max_age = \"soon\" }\n",
            "`gold[0].freshness.max_age`",
        ),
        (
            "freshness = { table = \"silver.orders\" }\n",
            "`gold[0].freshness`: expected `{ table = \"silver.x\", max_age = \"24h\", column = \"...\" }`",
        ),
    ];
    for (extra, expected) in cases {
        let toml = format!("{head}{extra}");
        let err = load(dir.path(), &toml).unwrap_err().to_string();
        assert!(err.contains(expected), "{toml}\n{err}");
    }
}

#[test]
fn limits_of_queries_servers_and_logins_are_read_and_checked() {
    let dir = project_dir();
    let p = load(
        dir.path(),
        r#"
[query]
memory_mb = 256
server_memory_mb = 1024
max_sql_bytes = 1000
max_depth = 32
max_filters = 8
max_concurrent = 3
max_concurrent_per_user = 2
max_result_mb = 10
spill_mb = 100
threads = 1

[serve]
max_connections = 10
header_timeout = "2s"
max_body_mb = 1
max_streams = 8
run_lease_ttl = "5s"

[auth]
logins_per_minute = 5
signups_per_hour = 2
lockout_after = 3
max_lockout = "30s"
concurrent_logins = 1
"#,
    )
    .unwrap();
    let q = &p.query;
    assert_eq!(
        (q.memory_bytes, q.server_memory_bytes),
        (256 << 20, 1024 << 20)
    );
    assert_eq!(
        (q.sql.max_bytes, q.sql.max_depth, q.max_filters),
        (1000, 32, 8)
    );
    assert_eq!((q.max_concurrent, q.max_concurrent_per_user), (3, 2));
    assert_eq!(
        (q.max_result_bytes, q.spill_bytes, q.threads),
        (Some(10 << 20), 100 << 20, 1)
    );
    let s = &p.serve.limits;
    assert_eq!(s.max_connections, 10);
    assert_eq!(s.header_timeout, Duration::from_secs(2));
    assert_eq!((s.max_body_bytes, s.max_streams), (1 << 20, 8));
    assert_eq!(p.serve.run_lease_ttl, Duration::from_secs(5));
    let t = &p.auth.throttle;
    assert_eq!(
        (t.logins_per_minute, t.signups_per_hour, t.lockout_after),
        (5, 2, 3)
    );
    assert_eq!(
        (t.max_lockout, t.concurrent_checks),
        (Duration::from_secs(30), 1)
    );

    let err = load(
        dir.path(),
        "[query]\nmemory_mb = 2048\nserver_memory_mb = 1024\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`query.server_memory_mb` = 1024 is less than"),
        "{err}"
    );
    let err = load(dir.path(), "[serve]\nrun_lease_ttl = \"10ms\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2: `serve.run_lease_ttl`: at least 1s"),
        "{err}"
    );
    let err = load(dir.path(), "[query]\nmax_depth = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`query.max_depth`: must be at least 1"),
        "{err}"
    );
}

/// Random project files built from the format's keys and punctuation: every one is a
/// project or an error, never a panic (a bounded run; the suite runs it every time).
#[test]
fn random_project_files_never_panic_the_parser() {
    let dir = project_dir();
    let pieces = [
        "[lake]\n",
        "[[bronze]]\n",
        "[[silver]]\n",
        "[[gold]]\n",
        "[query]\n",
        "[serve]\n",
        "[auth]\n",
        "[auth.oidc]\n",
        "[cache]\n",
        "[run]\n",
        "name = \"orders\"\n",
        "from = \"bronze.orders\"\n",
        "stream = \"bronze.x\"\n",
        "keys = [\"id\"]\n",
        "root = \"s3://b/l\"\n",
        "source = { kind = \"files\", path = \"*.csv\" }\n",
        "columns = { id = \"bigint\" }\n",
        "sql = \"sql/gold/kpis.sql\"\n",
        "memory_mb = 0\n",
        "max_depth = -1\n",
        "timeout = \"x\"\n",
        "history = \"scd2\"\n",
        "incremental = { strategy = \"merge\" }\n",
        "apply_as_deletes = \"op = 'D'\"\n",
        "expect = { a = \"id >\" }\n",
        "unique = [\"id\"]\n",
        "= \n",
        "\"\n",
        "[[\n",
        "{\n",
        "é = 1\n",
        "header_timeout = \"1ms\"\n",
        "partition_by = [\"year(x)\"]\n",
    ];
    crate::fuzz::check(2000, crate::fuzz::pieces(&pieces, 1..13, ""), |text| {
        let _ = load(dir.path(), &text);
        Ok(())
    })
    .unwrap();
}

#[test]
fn schedules_and_entry_options() {
    let dir = project_dir();
    let p = load(
        dir.path(),
        r#"
[[bronze]]
name = "orders"
source = { kind = "files", path = "data/*.csv" }
tags = ["nightly", "raw"]
retries = 0
timeout = "5m"

[[gold]]
name = "kpis"
retry_backoff = "10s"

[[schedule]]
name = "nightly"
cron = "0 30 2 * * *"
timezone = "Europe/Madrid"
select = "silver+"
exclude = "tag:raw"

[[schedule]]
name = "hourly"
cron = "15 * * * *"
catch_up = "skip"
full_refresh = true
"#,
    )
    .unwrap();
    let orders = TableId::new(Layer::Bronze, "orders");
    let kpis = TableId::new(Layer::Gold, "kpis");
    assert_eq!(p.run.retries_of(&orders), 0);
    assert_eq!(p.run.timeout_of(&orders), Duration::from_secs(300));
    assert_eq!(p.run.retry_backoff_of(&orders), p.run.retry_backoff);
    assert_eq!(p.run.retry_backoff_of(&kpis), Duration::from_secs(10));
    assert_eq!(p.run.retries_of(&kpis), p.run.retries);
    assert_eq!(
        p.run.tags()[&orders].iter().collect::<Vec<_>>(),
        ["nightly", "raw"]
    );

    let [nightly, hourly] = &p.schedules[..] else {
        panic!("two schedules: {:?}", p.schedules);
    };
    assert_eq!(nightly.timezone, chrono_tz::Europe::Madrid);
    assert_eq!(nightly.catch_up, CatchUp::Once, "the default");
    assert_eq!(nightly.select.as_deref(), Some("silver+"));
    assert_eq!(nightly.exclude.as_deref(), Some("tag:raw"));
    assert!(!nightly.full_refresh);
    assert_eq!(nightly.line, 14);
    // 02:30 Madrid is 01:30 UTC in winter and 00:30 UTC in summer; the last Sunday of
    // March 2027 (the 28th) springs forward at 02:00, so 02:30 does not exist that day.
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let ticks: Vec<String> = nightly
        .ticks_after(at("2027-03-26T12:00:00Z"), 4)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect();
    assert_eq!(ticks[0], "2027-03-27T02:30:00+01:00");
    assert_eq!(ticks[1], "2027-03-28T03:00:00+02:00", "after the gap");
    assert_eq!(ticks[2], "2027-03-29T02:30:00+02:00");
    // 2027-10-31 falls back at 03:00: 02:30 happens twice and fires once.
    let ticks: Vec<String> = nightly
        .ticks_after(at("2027-10-30T12:00:00Z"), 2)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect();
    assert_eq!(
        ticks,
        ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"]
    );
    assert_eq!(
        nightly.next_after(at("2026-12-06T01:30:00Z")),
        Some(at("2026-12-07T01:30:00Z")),
        "strictly after"
    );
    assert_eq!(hourly.catch_up, CatchUp::Skip);
    assert!(hourly.full_refresh);
    assert_eq!(hourly.timezone, chrono_tz::UTC);
    assert_eq!(
        hourly.next_after(at("2026-12-06T10:20:00Z")),
        Some(at("2026-12-06T11:15:00Z")),
        "five fields: minute first"
    );
}

#[test]
fn bad_schedules_name_the_key_and_line() {
    let dir = project_dir();
    let cases = [
        (
            "cron = \"0 30 2 * *  * *\"",
            "line 4: `schedule.cron`: `0 30 2 * *  * *` has 7 fields",
        ),
        (
            "cron = \"61 * * * *\"",
            "line 4: `schedule.cron`: `61 * * * *`:",
        ),
        (
            "cron = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"",
            "line 5: `schedule.timezone`: `Mars/Olympus` is not an IANA time zone name",
        ),
        (
            "cron = \"0 2 * * *\"\ncatch_up = \"all\"",
            "unknown variant `all`, expected `once` or `skip`",
        ),
        (
            "cron = \"0 2 * * *\"\n[[schedule]]\nname = \"a\"\ncron = \"0 3 * * *\"",
            "line 6: `schedule.name`: schedule `a` is defined twice",
        ),
    ];
    for (body, expected) in cases {
        let text = format!("\n[[schedule]]\nname = \"a\"\n{body}\n");
        let err = load(dir.path(), &text).unwrap_err().to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
    let err = load(
        dir.path(),
        "[[gold]]\nname = \"kpis\"\ntags = [\"Not Valid\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 3: `gold[0].tags`: `Not Valid` is not a valid tag"),
        "{err}"
    );
}

#[test]
fn alerts_are_parsed_and_bad_ones_name_the_key_and_line() {
    let dir = project_dir();
    let p = load(
        dir.path(),
        r#"
[[alert]]
url = "https://hooks.example.com/a"
headers_env = { "Authorization" = "HOOK_AUTH" }

[[alert]]
name = "chat"
url = "http://127.0.0.1:9/x"
on = ["success", "expectation_failed"]
retries = 0
timeout = "2s"
"#,
    )
    .unwrap();
    let [a, b] = &p.alerts[..] else {
        panic!("{:?}", p.alerts)
    };
    assert_eq!(a.name, "alert-1");
    assert_eq!(a.on, [AlertEvent::Failure], "the default");
    assert_eq!((a.retries, a.timeout), (3, Duration::from_secs(10)));
    assert_eq!(
        a.headers_env,
        [("Authorization".to_string(), "HOOK_AUTH".to_string())]
    );
    assert_eq!(b.on, [AlertEvent::Success, AlertEvent::ExpectationFailed]);
    assert_eq!((b.retries, b.timeout), (0, Duration::from_secs(2)));

    for (body, expected) in [
        (
            "url = \"ftp://h/x\"",
            "line 3: `alert.url`: `ftp://h/x` is not an http(s) URL",
        ),
        ("url = \"nope\"", "line 3: `alert.url`: `nope` is not a URL"),
        (
            "url = \"http://h/\"\nheaders = { \"Bad Header\" = \"x\" }",
            "line 3: `alert.headers`: `Bad Header` is not a valid header name",
        ),
        (
            "url = \"http://h/\"\non = [\"sometimes\"]",
            "unknown variant `sometimes`",
        ),
    ] {
        let err = load(dir.path(), &format!("\n[[alert]]\n{body}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
}

#[test]
fn maintenance_defaults_overrides_and_clustering() {
    use std::time::Duration;
    let dir = project_dir();
    let p = load(
        dir.path(),
        r#"
[maintenance]
checkpoint_interval = 10
log_retention = "7d"
vacuum_min_retain = "24h"
target_file_mb = 64

[[bronze]]
name = "orders"
source = { kind = "files", path = "data/*.csv" }
partition_by = ["region"]

[[gold]]
name = "kpis"
cluster_by = ["x"]
maintenance = { auto = true, small_files = 4, vacuum_retain = "48h" }
"#,
    )
    .unwrap();
    let m = &p.maintenance;
    assert_eq!(m.vacuum_min_retain, Duration::from_secs(86_400));
    let orders = m.for_table(&TableId::parse("bronze.orders").unwrap());
    assert_eq!(orders.checkpoint_interval, 10);
    assert_eq!(orders.log_retention, Duration::from_secs(7 * 86_400));
    assert_eq!(orders.target_file_bytes, 64 << 20);
    assert!(!orders.auto);
    let kpis = m.for_table(&TableId::parse("gold.kpis").unwrap());
    assert_eq!(kpis.zorder_by, vec!["x".to_string()]);
    assert!(kpis.auto);
    assert_eq!(kpis.small_files, 4);
    assert_eq!(kpis.vacuum_retain, Duration::from_secs(48 * 3_600));
    // Overrides start from `[maintenance]`, not from Delta's defaults.
    assert_eq!(kpis.checkpoint_interval, 10);
    // A side table has its base table's settings but not its clustering columns.
    let q = m.for_table(&TableId::parse("gold.kpis__quarantine").unwrap());
    assert!(q.auto && q.zorder_by.is_empty());
    assert_eq!(p.bronze[0].partition_by, vec!["region".to_string()]);
    let e = load(dir.path(), "[maintenance]\nlog_retention = \"soon\"\n").unwrap_err();
    assert!(e.to_string().contains("`maintenance.log_retention`"), "{e}");
    let e = load(dir.path(), "[maintenance]\nretain = \"1h\"\n").unwrap_err();
    assert!(e.to_string().contains("retain"), "{e}");
}

#[test]
fn the_access_log_goes_to_a_stream_or_a_file_of_the_project() {
    let dir = project_dir();
    let with = |value: &str| {
        load(dir.path(), &format!("[serve]\naccess_log = \"{value}\"\n"))
            .unwrap()
            .serve
            .access_log
    };
    assert_eq!(with("stdout"), Some(AccessLog::Stdout));
    assert_eq!(with("stderr"), Some(AccessLog::Stderr));
    assert_eq!(
        with("logs/access.json"),
        Some(AccessLog::File(dir.path().join("logs/access.json")))
    );
    assert_eq!(with(""), None);
    assert_eq!(load(dir.path(), "").unwrap().serve.access_log, None);
}

#[test]
fn the_unity_catalog_is_named_after_the_project_and_credentials_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = load(dir.path(), "[project]\nname = \"retail\"\n").unwrap();
    assert_eq!(p.serve.unity.catalog_name, "retail");
    assert!(!p.serve.unity.vend.share_lake_keys);
    assert_eq!(p.serve.unity.vend.ttl, std::time::Duration::from_secs(3600));
    let p = load(
        dir.path(),
        "[serve]\ncatalog_name = \"lake\"\n[serve.credentials]\nttl = \"30m\"\ns3_role_arn = \"arn:aws:iam::1:role/r\"\n",
    )
    .unwrap();
    assert_eq!(p.serve.unity.catalog_name, "lake");
    assert_eq!(p.serve.unity.vend.ttl, std::time::Duration::from_secs(1800));
    assert_eq!(
        p.serve.unity.vend.s3_role_arn.as_deref(),
        Some("arn:aws:iam::1:role/r")
    );
    let e = load(dir.path(), "[serve]\ncatalog_name = \"a.b\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2: `serve.catalog_name`"), "{e}");
    let e = load(dir.path(), "[serve.credentials]\nttl = \"1m\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`serve.credentials.ttl`: from 15m to 12h"),
        "{e}"
    );
}

#[test]
fn engine_mode_and_scheduler() {
    let dir = project_dir();
    let p = load(dir.path(), "").unwrap();
    assert_eq!(p.engine.mode, EngineMode::Local);
    assert!(p.cluster_for(&p.gold[0]).is_none());

    let text = r#"
[engine]
mode = "ballista"

[engine.ballista]
scheduler = "df://sched:7000"

[[gold]]
name = "kpis"
engine = "local"
"#;
    let mut p = load(dir.path(), text).unwrap();
    assert_eq!(p.engine.scheduler.as_deref(), Some("df://sched:7000"));
    assert!(
        p.cluster_for(&p.gold[0]).is_none(),
        "the model's own engine wins"
    );
    p.force_engine(EngineMode::Ballista).unwrap();
    assert_eq!(
        p.cluster_for(&p.gold[0]).unwrap().scheduler(),
        "df://sched:7000"
    );
    p.force_engine(EngineMode::Local).unwrap();
    assert!(p.cluster_for(&p.gold[0]).is_none());

    // A model on the cluster without a scheduler, a bad mode, a bad address.
    let cases = [
        ("[engine]\nmode = \"ballista\"\n", "line 2: `engine.mode`"),
        (
            "[[gold]]\nname = \"kpis\"\nengine = \"ballista\"\n",
            "`gold[0].engine`",
        ),
        ("[engine]\nmode = \"spark\"\n", "unknown variant `spark`"),
        (
            "[engine.ballista]\nscheduler = \"http://x:1\"\n",
            "`engine.ballista.scheduler`: `http://x:1`: a scheduler's address is df://host:port",
        ),
        ("[engine]\nmodes = \"local\"\n", "unknown field `modes`"),
    ];
    for (text, want) in cases {
        let err = load(dir.path(), text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
    let mut p = load(dir.path(), "").unwrap();
    let err = p
        .force_engine(EngineMode::Ballista)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--engine ballista: `ballista` needs `[engine.ballista] scheduler"),
        "{err}"
    );
}

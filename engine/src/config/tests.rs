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
    let SourceConfig::Files { pattern, csv, .. } = &p.bronze[0].source;
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
    use crate::access::{Role, SignupPolicy};
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

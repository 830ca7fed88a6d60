//! Lakes on S3 and Azure: credentials from the environment, and clear errors (that never
//! print a secret) for a missing bucket or container, bad credentials and an unreachable
//! endpoint. The end-to-end suite itself runs on every backend (see `example.rs`).

use std::time::{Duration, Instant};

use assay_testkit::{Azurite, Backend, Moto, S3_KEY_ID, S3_SECRET, free_port};

use crate::kit::Fixture;

const ONE_TABLE: &str = r#"
[project]
name = "cloud"

[run]
retries = 0

[[bronze]]
name = "events"
source = { kind = "files", path = "data/*.csv" }
"#;

fn project(lake: &str, extra: &str) -> Fixture {
    let f = Fixture::with_config(&format!("[lake]\nroot = \"{lake}\"\n{extra}\n{ONE_TABLE}"));
    f.write("data/a.csv", "id,kind\n1,click\n2,view\n");
    f
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn s3_credentials_and_endpoint_come_from_the_standard_aws_variables() {
    let moto = Moto::start();
    moto.create_bucket("env-lake");
    let f = project("s3://env-lake/lake", "");
    let out = f
        .command(&["run"])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let backend = Backend::S3(moto.into());
    let lake = backend.lake("s3://env-lake/lake", f.path());
    let table = lake
        .open(&assay_engine::TableId::parse("bronze.events").unwrap())
        .await
        .unwrap()
        .expect("bronze.events exists on S3");
    assert_eq!(assay_engine::delta::version(&table), 0);
}

#[tokio::test]
async fn a_missing_bucket_is_an_error_that_names_the_url_and_hides_the_secret() {
    let moto = Moto::start();
    let f = project("s3://no-such-bucket/lake", &moto.toml());
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("s3://no-such-bucket/lake/"), "{err}");
    assert!(
        err.contains("NoSuchBucket") || err.contains("not found") || err.contains("404"),
        "{err}"
    );
    assert!(!err.contains(S3_SECRET), "the secret leaked:\n{err}");
}

#[tokio::test]
async fn a_missing_container_is_an_error_that_names_the_url() {
    let azurite = Azurite::start();
    let f = project("az://no-such-container/lake", &azurite.toml());
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("az://no-such-container/lake/"), "{err}");
    assert!(
        err.contains("ContainerNotFound") || err.contains("not found") || err.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_azure_key_is_refused_without_printing_it() {
    let azurite = Azurite::start();
    azurite.create_container("keyed");
    // Well-formed base64, but not the account's key.
    let wrong = "d3Jvbmcta2V5LWZvci10aGUtYXp1cml0ZS1hY2NvdW50LWRvLW5vdC1wcmludA==";
    let extra = format!(
        "[lake.azure]\nuse_emulator = true\nendpoint = \"{}\"\naccess_key = \"{wrong}\"\n",
        azurite.endpoint()
    );
    let f = project("az://keyed/lake", &extra);
    let out = f.assay(&["run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("az://keyed/lake/"), "{err}");
    assert!(
        err.contains("AuthorizationFailure")
            || err.contains("403")
            || err.contains("Forbidden")
            || err.contains("denied"),
        "{err}"
    );
    assert!(!err.contains(wrong), "the key leaked:\n{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_within_the_configured_timeouts() {
    let port = free_port(); // nothing listens here
    let extra = format!(
        "connect_timeout = \"1s\"\ntimeout = \"2s\"\nmax_retries = 1\nretry_timeout = \"3s\"\n\
         [lake.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\nregion = \"us-east-1\"\n\
         access_key_id = \"{S3_KEY_ID}\"\nsecret_access_key = \"{S3_SECRET}\"\n"
    );
    let f = project("s3://lake/prefix", &extra);
    let started = Instant::now();
    let out = f.assay(&["run"]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("s3://lake/prefix/"), "{err}");
    assert!(!err.contains(S3_SECRET), "the secret leaked:\n{err}");
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}: timeouts and retries were not applied"
    );
}

#[tokio::test]
async fn an_unknown_lake_key_names_the_key() {
    let f = Fixture::with_config("[lake]\nroot = \"s3://b/p\"\n[lake.s3]\nregoin = \"x\"\n");
    let out = f.assay(&["ls"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("regoin"), "{err}");
    let f = Fixture::with_config("[lake]\nroot = \"s3://b/p\"\ntimeout = \"soon\"\n");
    let out = f.assay(&["ls"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("lake.timeout"), "{err}");
}

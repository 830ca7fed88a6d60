//! Test kit: a copy of the example project in a temp dir, the real binary, and queries
//! against the lake it writes.

use std::path::{Path, PathBuf};
use std::process::Output;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use assay_engine::session::LakeCatalog;
use assay_engine::{Lake, TableId};
pub(crate) use assay_testkit::Backend;

/// A throwaway project: the bundled example copied into a temp dir, its lake on local disk
/// or in a bucket / container of a throwaway S3 or Azure server.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    backend: Backend,
    /// The lake root URL (`None`: the project's own `./lakehouse`).
    lake_root: Option<String>,
    /// Where the example's source files live when not on local disk.
    landing: Option<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

use assay_testkit::copy_dir;

impl Fixture {
    /// The bundled example project on local disk.
    pub(crate) fn example() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        assay_testkit::copy_example(&repo_root(), dir.path());
        Fixture {
            dir,
            backend: Backend::Local,
            lake_root: None,
            landing: None,
        }
    }

    /// The bundled example with its lake on `backend`. On S3 and Azure the source files are
    /// uploaded to a second bucket / container and the project reads them from there, as
    /// when CSV files are dropped into blob storage.
    pub(crate) async fn example_on(backend: Backend) -> Fixture {
        let mut f = Fixture::example();
        if matches!(backend, Backend::Local) {
            return f;
        }
        let lake = backend.new_root("lake", f.path());
        let landing = backend.new_root("landing", f.path());
        backend
            .upload_dir(&f.path().join("examples/retail"), &landing, "retail")
            .await;
        let toml = std::fs::read_to_string(f.path().join("assay.toml")).unwrap();
        let toml = toml
            .replace(
                "root = \"file://./lakehouse\"",
                &format!("root = \"{lake}\""),
            )
            .replace(
                "path = \"examples/retail/",
                &format!("path = \"{landing}/retail/"),
            );
        assert!(toml.contains(&lake) && toml.contains(&landing), "{toml}");
        std::fs::write(
            f.path().join("assay.toml"),
            format!("{toml}\n{}", backend.toml()),
        )
        .unwrap();
        // Nothing may be read from the local copies any more.
        std::fs::remove_dir_all(f.path().join("examples")).unwrap();
        f.backend = backend;
        f.lake_root = Some(lake);
        f.landing = Some(landing);
        f
    }

    /// An empty project with the given `assay.toml`.
    pub(crate) fn with_config(toml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("assay.toml"), toml).unwrap();
        Fixture {
            dir,
            backend: Backend::Local,
            lake_root: None,
            landing: None,
        }
    }

    /// A project with the given `assay.toml` body whose lake is a fresh root on `backend`
    /// (the `[lake]` table is written here).
    pub(crate) fn with_config_on(backend: &Backend, toml: &str) -> Fixture {
        let mut f = Fixture::with_config("");
        let root = backend.new_root("lake", f.path());
        f.write(
            "assay.toml",
            &format!("[lake]\nroot = \"{root}\"\n{}\n{toml}", backend.toml()),
        );
        f.backend = backend.clone();
        f.lake_root = Some(root);
        f
    }

    /// The lake root's URL.
    pub(crate) fn lake_url(&self) -> String {
        self.lake()
            .root()
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }

    /// A table (at `version`, else its latest) as the Python `deltalake` package reads it:
    /// `rows`, `digest` (of every row, order aside), `version`, `files`, `partitions`.
    pub(crate) fn digest(&self, table: &str, version: Option<i64>) -> serde_json::Value {
        digest_at(&self.backend, &self.lake_url(), table, version)
    }

    /// The same project (config, SQL and source files under `data/`) with a fresh lake,
    /// run once: what a full rebuild of the same input gives.
    pub(crate) fn rebuilt(&self) -> Fixture {
        let toml = std::fs::read_to_string(self.path().join("assay.toml")).unwrap();
        self.rebuilt_with(&toml)
    }

    /// [`Fixture::rebuilt`] under another `assay.toml` (e.g. the same tables on local disk).
    pub(crate) fn rebuilt_with(&self, toml: &str) -> Fixture {
        let fresh = Fixture::with_config(toml);
        for dir in ["data", "sql"] {
            if self.path().join(dir).is_dir() {
                copy_dir(&self.path().join(dir), &fresh.path().join(dir));
            }
        }
        fresh.run_ok(&[]);
        fresh
    }

    /// Deletes one object of the lake (`rel` under the root), behind Assay's back.
    pub(crate) async fn delete_lake_file(&self, rel: &str) {
        let (store, root) = self.lake().store().unwrap();
        let path = rel.split('/').fold(root, |p, part| p.join(part));
        object_store::ObjectStoreExt::delete(store.as_ref(), &path)
            .await
            .unwrap();
    }

    /// Adds a source file of the example (`examples/retail/...`) where the project reads
    /// its sources: the project directory, or the landing bucket / container.
    pub(crate) async fn add_source(&self, rel: &str, text: &str) {
        match &self.landing {
            None => self.write(rel, text),
            Some(landing) => {
                let rel = rel.strip_prefix("examples/").unwrap();
                self.backend
                    .put(landing, rel, text.as_bytes().to_vec())
                    .await;
            }
        }
    }

    /// Names of the files under a lake directory (e.g. `bronze/orders`), wherever it lives.
    pub(crate) async fn lake_files(&self, rel: &str) -> Vec<String> {
        match &self.lake_root {
            None => std::fs::read_dir(self.path().join("lakehouse").join(rel))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            Some(root) => self.backend.list(root, rel).await,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file under the project.
    pub(crate) fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Runs `assay --project DIR <args>` and returns its output.
    pub(crate) fn assay(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `assay --project DIR <args>` with a clean environment: no stray lake, admin or
    /// cloud credential variables from the machine.
    pub(crate) fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_assay"));
        cmd.arg("--project").arg(self.path()).args(args);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("AWS_") || k.starts_with("AZURE_") || k.starts_with("AZURITE_") {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.env_remove("ASSAY_LAKE")
            .env_remove("ASSAY_ADMIN_USER")
            .env_remove("ASSAY_ADMIN_PASSWORD")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// `assay serve` of this project on free ports, caching in-process, with the bootstrap
    /// admin `root` (password `pw-123456`); its stderr goes to `stderr`.
    pub(crate) fn serve_as_root(&self, stderr: std::process::Stdio) -> assay_testkit::Served {
        let mut cmd = self.command(&["serve"]);
        cmd.env_remove("REDIS_URL")
            .env("ASSAY_ADMIN_USER", "root")
            .env("ASSAY_ADMIN_PASSWORD", "pw-123456")
            .stderr(stderr);
        assay_testkit::serve(cmd)
    }

    /// Runs `assay run` and asserts it succeeded.
    pub(crate) fn run_ok(&self, args: &[&str]) -> String {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let out = self.assay(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "assay run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    pub(crate) fn lake(&self) -> Lake {
        match &self.lake_root {
            None => Lake::resolve("lakehouse", self.path()).unwrap(),
            Some(root) => self.backend.lake(root, self.path()),
        }
    }

    /// Runs SQL against the lake (schemas bronze, silver, gold, _system).
    pub(crate) async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        let catalog = LakeCatalog::load(self.lake()).await.unwrap();
        catalog
            .session()
            .sql(sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    }

    /// The query's result as a pretty table (for exact comparisons).
    pub(crate) async fn table(&self, sql: &str) -> String {
        pretty_format_batches(&self.query(sql).await)
            .unwrap()
            .to_string()
    }

    /// `SELECT COUNT(*)` of a table.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let b = self
            .query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .await;
        let col = b[0].column(0);
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(col).value(0)
    }

    /// The latest version of a table, `None` when it does not exist.
    pub(crate) async fn version(&self, table: &str) -> Option<i64> {
        let id = TableId::parse(table).unwrap();
        self.lake()
            .open(&id)
            .await
            .unwrap()
            .map(|t| assay_engine::delta::version(&t))
    }
}

/// Logs in as the bootstrap admin of [`Fixture::serve_as_root`]: the `Authorization` value.
pub(crate) fn root_bearer(port: u16) -> String {
    let (status, body) = assay_testkit::http_with_body(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        r#"{"username":"root","password":"pw-123456"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let login: serde_json::Value = serde_json::from_str(&body).unwrap();
    format!("Bearer {}", login["token"].as_str().unwrap())
}

/// Runs `sql` as root over Flight SQL with the real ADBC driver (Python) and returns the
/// first column of the first row as Python prints it.
pub(crate) fn adbc_scalar(uri: &str, sql: &str) -> String {
    const SCRIPT: &str = r#"
import sys, os
import adbc_driver_flightsql.dbapi as fs
with fs.connect(sys.argv[1], db_kwargs={"username": "root", "password": "pw-123456"}) as conn:
    cur = conn.cursor()
    cur.execute(sys.argv[2])
    print(cur.fetch_arrow_table().column(0).to_pylist()[0], flush=True)
os._exit(0)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT, uri, sql])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{answer}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer
}

/// Asserts a command exited 0, showing its output otherwise.
pub(crate) fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A table under the lake root `root` on `backend` as the Python `deltalake` package reads it
/// (see [`Fixture::digest`]).
pub(crate) fn digest_at(
    backend: &Backend,
    root: &str,
    table: &str,
    version: Option<i64>,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/table_digest.py");
    let (layer, name) = table.split_once('.').unwrap();
    let options: std::collections::HashMap<String, String> = backend
        .options()
        .as_map()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg(format!("{}/{layer}/{name}", root.trim_end_matches('/')))
        .env("STORAGE_OPTIONS", serde_json::to_string(&options).unwrap());
    if let Some(v) = version {
        cmd.arg(v.to_string());
    }
    let out = cmd
        .output()
        .expect("python3 runs (scripts/setup.sh installs deltalake)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reading {table}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

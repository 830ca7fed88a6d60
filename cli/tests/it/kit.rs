//! Test kit: a copy of the example project in a temp dir, the real binary, and queries
//! against the lake it writes.

use std::path::{Path, PathBuf};
use std::process::Output;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use assay_engine::session::LakeCatalog;
use assay_engine::{Lake, TableId};

/// A throwaway project: the bundled example copied into a temp dir.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Fixture {
    /// The bundled example project.
    pub(crate) fn example() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        std::fs::copy(root.join("assay.toml"), dir.path().join("assay.toml")).unwrap();
        copy_dir(&root.join("sql"), &dir.path().join("sql"));
        copy_dir(&root.join("examples"), &dir.path().join("examples"));
        Fixture { dir }
    }

    /// An empty project with the given `assay.toml`.
    pub(crate) fn with_config(toml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("assay.toml"), toml).unwrap();
        Fixture { dir }
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
        std::process::Command::new(env!("CARGO_BIN_EXE_assay"))
            .arg("--project")
            .arg(self.path())
            .args(args)
            .env_remove("ASSAY_LAKE")
            .env_remove("ASSAY_ADMIN_USER")
            .env_remove("ASSAY_ADMIN_PASSWORD")
            .output()
            .unwrap()
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
        Lake::resolve("lakehouse", self.path()).unwrap()
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

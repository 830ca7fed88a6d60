//! Test kit shared by the crates' integration tests: real servers started on free loopback
//! ports in temp dirs and stopped when dropped — `moto_server` for S3 and Azurite for Azure
//! Blob Storage, an OTLP trace receiver — and the lake settings that point Assay at them.
//!
//! `scripts/setup.sh` installs both (`pip install 'moto[server]' azure-storage-blob`,
//! `npm install -g azurite`). A missing server program is a test failure that says so,
//! never a silent skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake;
mod mariadb;
mod otlp;
mod postgres;

pub use fake::{FAKE_TOKEN, Failing, KINDS};
pub use mariadb::MariaDb;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres::Postgres;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use assay_engine::auth::Secret;
use assay_engine::delta::{CommitInfo, WriteMode, write_frame};
use assay_engine::storage::{
    AzureSettings, S3Settings, StorageOptions, StorageSettings, object_store_for,
};
use assay_engine::{Lake, TableId};
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

/// Credentials the kit gives the S3 server (moto accepts any; they must still never print).
pub const S3_KEY_ID: &str = "assay-test-key";
/// The secret half; tests assert it never appears in output.
pub const S3_SECRET: &str = "assay-test-secret-do-not-print";

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (with its process group) when dropped, and its temp dir.
struct ServerProcess {
    child: Child,
    name: &'static str,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn spawn(name: &'static str, mut cmd: Command, dir: tempfile::TempDir, port: u16) -> Self {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{name}` ({e}); run scripts/setup.sh to install it")
            });
        let mut p = ServerProcess {
            child,
            name,
            _dir: dir,
        };
        p.wait_for(port);
        p
    }

    fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self._dir.path().join("server.log"))
                    .unwrap_or_default();
                panic!(
                    "`{}` exited with {status} before listening:\n{log}",
                    self.name
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("`{}` did not listen on port {port} within 60 s", self.name);
    }
}

/// Sends one HTTP/1.1 request without a body and returns the status code and body.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http_with_body(port, method, path, headers, "")
}

/// Sends one HTTP/1.1 request with a body and returns the status code and body.
pub fn http_with_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// A throwaway S3 server: `moto_server` on a free loopback port.
pub struct Moto {
    port: u16,
    _process: ServerProcess,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` and waits until it answers.
    pub fn start() -> Moto {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path());
        let process = ServerProcess::spawn("moto_server", cmd, dir, port);
        Moto {
            port,
            _process: process,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket (moto takes an unsigned `PUT /bucket`).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = http(self.port, "PUT", &format!("/{name}"), &[]);
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// Lake settings for this server: endpoint, plain HTTP, a region and test credentials.
    pub fn settings(&self) -> StorageSettings {
        StorageSettings {
            s3: S3Settings {
                region: Some("us-east-1".into()),
                endpoint: Some(self.endpoint()),
                allow_http: Some(true),
                access_key_id: Some(S3_KEY_ID.into()),
                secret_access_key: Some(Secret::new(S3_SECRET)),
                ..S3Settings::default()
            },
            ..quick_client()
        }
    }

    /// The same settings as `assay.toml` keys (a `[lake.s3]` table).
    pub fn toml(&self) -> String {
        format!(
            "[lake.s3]\nregion = \"us-east-1\"\nendpoint = \"{}\"\nallow_http = true\n\
             access_key_id = \"{S3_KEY_ID}\"\nsecret_access_key = \"{S3_SECRET}\"\n",
            self.endpoint()
        )
    }
}

/// A throwaway Azure Blob Storage server: Azurite's blob service on a free loopback port.
pub struct Azurite {
    port: u16,
    _process: ServerProcess,
}

impl Azurite {
    /// Starts `azurite-blob` in a temp dir and waits until it listens.
    pub fn start() -> Azurite {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("azurite-blob");
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &dir.path().display().to_string(),
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ])
        .current_dir(dir.path());
        let process = ServerProcess::spawn("azurite-blob", cmd, dir, port);
        Azurite {
            port,
            _process: process,
        }
    }

    /// `http://127.0.0.1:PORT` (the account is the first path segment, as Azurite wants).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a container with the Python Azure SDK (signed with the emulator's key).
    pub fn create_container(&self, name: &str) {
        let conn = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
             AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
             BlobEndpoint={}/devstoreaccount1;",
            self.endpoint()
        );
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys\nfrom azure.storage.blob import BlobServiceClient\n\
                 BlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])",
                &conn,
                name,
            ])
            .output()
            .expect("python3 runs (scripts/setup.sh installs azure-storage-blob)");
        assert!(
            out.status.success(),
            "create container {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Lake settings for this server: the emulator switch and its endpoint.
    pub fn settings(&self) -> StorageSettings {
        StorageSettings {
            azure: AzureSettings {
                use_emulator: Some(true),
                endpoint: Some(self.endpoint()),
                ..AzureSettings::default()
            },
            ..quick_client()
        }
    }

    /// The same settings as `assay.toml` keys (a `[lake.azure]` table).
    pub fn toml(&self) -> String {
        format!(
            "[lake.azure]\nuse_emulator = true\nendpoint = \"{}\"\n",
            self.endpoint()
        )
    }
}

/// Short timeouts and few retries: a test against a local server should fail fast.
fn quick_client() -> StorageSettings {
    StorageSettings {
        timeout: Some(Duration::from_secs(30)),
        connect_timeout: Some(Duration::from_secs(5)),
        max_retries: Some(2),
        retry_timeout: Some(Duration::from_secs(20)),
        ..StorageSettings::default()
    }
}

/// Where a test's lake lives.
#[derive(Clone)]
pub enum Backend {
    /// A directory on local disk.
    Local,
    /// A bucket on a moto S3 server.
    S3(Arc<Moto>),
    /// A container on an Azurite server.
    Azure(Arc<Azurite>),
}

impl Backend {
    /// Starts the server a backend needs: `local`, `s3` or `azure`.
    pub fn start(kind: &str) -> Backend {
        match kind {
            "local" => Backend::Local,
            "s3" => Backend::S3(Arc::new(Moto::start())),
            "azure" => Backend::Azure(Arc::new(Azurite::start())),
            other => panic!("unknown backend `{other}`"),
        }
    }

    /// A fresh bucket / container (or directory under `local_dir`) and its URL: the root
    /// for a lake or for source files.
    pub fn new_root(&self, name: &str, local_dir: &Path) -> String {
        match self {
            Backend::Local => {
                let dir = local_dir.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                format!("file://{}", dir.display())
            }
            Backend::S3(m) => {
                m.create_bucket(name);
                format!("s3://{name}/root")
            }
            Backend::Azure(a) => {
                a.create_container(name);
                format!("az://{name}/root")
            }
        }
    }

    /// The store settings (empty for local disk).
    pub fn settings(&self) -> StorageSettings {
        match self {
            Backend::Local => StorageSettings::default(),
            Backend::S3(m) => m.settings(),
            Backend::Azure(a) => a.settings(),
        }
    }

    /// The `[lake.*]` tables of `assay.toml` for this backend (empty for local disk).
    pub fn toml(&self) -> String {
        match self {
            Backend::Local => String::new(),
            Backend::S3(m) => m.toml(),
            Backend::Azure(a) => a.toml(),
        }
    }

    /// Store options as the engine builds them, without the process environment.
    pub fn options(&self) -> StorageOptions {
        self.settings().options(&[])
    }

    /// Opens a lake at `root`.
    pub fn lake(&self, root: &str, project_dir: &Path) -> Lake {
        Lake::resolve_with(root, project_dir, &self.options()).unwrap()
    }

    /// Writes one object under a root URL (`<root>/<rel>`).
    pub async fn put(&self, root: &str, rel: &str, bytes: Vec<u8>) {
        let url = Url::parse(&format!("{}/{rel}", root.trim_end_matches('/'))).unwrap();
        let (store, path) = object_store_for(&url, &self.options()).unwrap();
        store
            .put(&path, bytes::Bytes::from(bytes).into())
            .await
            .unwrap();
    }

    /// Paths (relative to `<root>/<rel>`) of the objects under it.
    pub async fn list(&self, root: &str, rel: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let url = Url::parse(&format!("{}/{rel}/", root.trim_end_matches('/'))).unwrap();
        let (store, prefix) = object_store_for(&url, &self.options()).unwrap();
        let mut out = Vec::new();
        let mut stream = store.list(Some(&prefix));
        while let Some(meta) = stream.try_next().await.unwrap() {
            let full = meta.location.to_string();
            out.push(
                full.strip_prefix(&format!("{prefix}/"))
                    .unwrap_or(&full)
                    .to_string(),
            );
        }
        out.sort();
        out
    }

    /// Copies a local directory tree to `<root>/<rel>`.
    pub async fn upload_dir(&self, from: &Path, root: &str, rel: &str) {
        let mut stack = vec![(from.to_path_buf(), rel.trim_end_matches('/').to_string())];
        while let Some((dir, rel)) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = format!("{rel}/{name}");
                if entry.file_type().unwrap().is_dir() {
                    stack.push((entry.path(), child));
                } else {
                    self.put(root, &child, std::fs::read(entry.path()).unwrap())
                        .await;
                }
            }
        }
    }

    /// A short lower-case name for the backend (`local`, `s3`, `azure`).
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::S3(_) => "s3",
            Backend::Azure(_) => "azure",
        }
    }
}

/// A throwaway `redis-server` on a free loopback port, persisting nothing; it can be killed
/// and started again on the same port.
pub struct Redis {
    port: u16,
    process: Option<ServerProcess>,
}

impl Redis {
    /// Starts `redis-server` and waits until it listens.
    pub fn start() -> Redis {
        let port = free_port();
        let mut r = Redis {
            port,
            process: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        self.process = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port (empty, as after a restart without
    /// persistence).
    pub fn restart(&mut self) {
        self.process = None;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.path().display().to_string(),
        ]);
        self.process = Some(ServerProcess::spawn("redis-server", cmd, dir, self.port));
    }

    /// Runs one command with `redis-cli` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A `gold.products`-shaped batch: `product_id bigint, name, category, price decimal(10,2)`
/// (prices in cents).
pub fn products(ids: &[i64], names: &[&str], cats: &[&str], cents: &[i128]) -> RecordBatch {
    let price = Decimal128Array::from(cents.to_vec())
        .with_precision_and_scale(10, 2)
        .unwrap();
    RecordBatch::try_from_iter(vec![
        (
            "product_id",
            Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(names.to_vec())) as ArrayRef,
        ),
        (
            "category",
            Arc::new(StringArray::from(cats.to_vec())) as ArrayRef,
        ),
        ("price", Arc::new(price) as ArrayRef),
    ])
    .unwrap()
}

/// Appends a batch to `layer.table` in one commit, as a job would.
pub async fn append(lake: &Lake, table: &str, batch: RecordBatch) {
    let df = datafusion::prelude::SessionContext::new()
        .read_batch(batch)
        .unwrap();
    let id = TableId::parse(table).unwrap();
    write_frame(
        lake,
        &id,
        df,
        WriteMode::Append,
        &[],
        &CommitInfo::new(vec![], "test"),
    )
    .await
    .unwrap();
}

/// A lake on `backend` (under `dir` for local disk) holding the servers' test tables:
/// `gold.products` (4 rows, categories A, B, C, C) and `silver.orders` (2 rows).
pub async fn seeded_lake(backend: &Backend, dir: &Path) -> Lake {
    let lake = match backend {
        Backend::Local => Lake::resolve("lake", dir).unwrap(),
        _ => {
            let root = backend.new_root("served", dir);
            backend.lake(&root, dir)
        }
    };
    append(
        &lake,
        "gold.products",
        products(
            &[10, 20, 30, 31],
            &[
                "Espresso beans",
                "Burr grinder",
                "Ceramic mug",
                "Travel tumbler",
            ],
            &["A", "B", "C", "C"],
            &[2450, 8900, 990, 1990],
        ),
    )
    .await;
    let orders = RecordBatch::try_from_iter(vec![(
        "order_id",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )])
    .unwrap();
    append(&lake, "silver.orders", orders).await;
    lake
}

/// A number from the environment variable `name`, or `default` when unset or not a number.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
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

/// Copies the bundled example project (`assay.toml`, `sql/`, `examples/`) of the repository
/// at `repo` into `to`.
pub fn copy_example(repo: &Path, to: &Path) {
    std::fs::copy(repo.join("assay.toml"), to.join("assay.toml")).unwrap();
    copy_dir(&repo.join("sql"), &to.join("sql"));
    copy_dir(&repo.join("examples"), &to.join("examples"));
}

/// A running `assay serve` on free loopback ports, started by [`serve`].
pub struct Served {
    /// The server process (stop it with [`Served::stop`]).
    pub child: Child,
    /// The Flight SQL URI, `grpc://127.0.0.1:PORT`.
    pub flight: String,
    /// The REST gateway's base URL, `http://127.0.0.1:PORT`.
    pub rest: String,
    /// The REST gateway's port.
    pub port: u16,
    /// The REST gateway's announcement after its address, e.g. `(cache: memory)`.
    pub rest_note: String,
}

/// Starts `cmd` (an `assay ... serve` command) with both servers on free ports and reads the
/// two addresses it prints first.
pub fn serve(mut cmd: Command) -> Served {
    use std::io::BufRead;
    cmd.args(["--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut next_line = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let line = next_line();
    let flight = line
        .strip_prefix("Flight SQL listening on ")
        .unwrap_or_else(|| panic!("Flight SQL address expected: {line}"))
        .to_string();
    let line = next_line();
    let (rest, rest_note) = line
        .strip_prefix("REST gateway listening on ")
        .and_then(|r| r.split_once(' ').or(Some((r, ""))))
        .unwrap_or_else(|| panic!("REST gateway address expected: {line}"));
    let port = rest
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {rest}"));
    Served {
        child,
        flight,
        rest: rest.to_string(),
        port,
        rest_note: rest_note.trim().to_string(),
    }
}

/// A test that fails before stopping its server does not leave it running (a server with
/// schedules would go on firing them).
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Served {
    /// Sends SIGTERM and returns how the process exited.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        self.child.wait().unwrap()
    }
}

/// Starts `cmd` and SIGKILLs it after `after` unless it ended first; true when it was killed.
pub fn kill_after(mut cmd: Command, after: Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    killed
}

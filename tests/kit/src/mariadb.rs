//! A throwaway MariaDB server (from the `mariadb-server` package's `mariadb-install-db` and
//! `mariadbd`) on a free loopback port in a temp dir; shut down and deleted when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running MariaDB server with a `test` database; `root` has no password on 127.0.0.1.
pub struct MariaDb {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn program(names: &[&str]) -> String {
    for n in names {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {n} || ls /usr/sbin/{n} 2>/dev/null"),
            ])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty());
        if let Some(p) = found {
            return p.lines().next().unwrap_or_default().to_string();
        }
    }
    panic!(
        "{} not found; run scripts/setup.sh (apt: mariadb-server)",
        names[0]
    )
}

impl MariaDb {
    /// Starts a fresh server.
    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().into_owned();
        let user = if crate::postgres::is_root() {
            "root"
        } else {
            ""
        };
        let mut install = Command::new(program(&["mariadb-install-db", "mysql_install_db"]));
        install.args([
            "--no-defaults",
            &format!("--datadir={data_s}"),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]);
        if !user.is_empty() {
            install.arg(format!("--user={user}"));
        }
        let out = install.output().unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(program(&["mariadbd", "mysqld"]));
        cmd.args([
            "--no-defaults".to_string(),
            format!("--datadir={data_s}"),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", dir.path().join("sock").display()),
            format!("--pid-file={}", dir.path().join("pid").display()),
            "--innodb-buffer-pool-size=64M".into(),
            "--skip-log-bin".into(),
        ]);
        if !user.is_empty() {
            cmd.arg(format!("--user={user}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let db = MariaDb { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.try_sql("CREATE DATABASE IF NOT EXISTS test").is_err() {
            assert!(
                Instant::now() < deadline,
                "MariaDB did not start: {}",
                std::fs::read_to_string(db.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db
    }

    /// `mysql://root@127.0.0.1:<port>/test`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(program(&["mariadb", "mysql"]))
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "-u",
                "root",
                "-N",
                "-B",
                "-e",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL in the `test` database with the `mariadb` client and returns its output.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(&format!("USE test; {sql}"))
            .unwrap_or_else(|e| panic!("mariadb: {e}"))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

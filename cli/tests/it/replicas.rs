//! Several replicas behind Nginx, started by `deploy/local.sh` (real `assay serve`
//! processes, a real `redis-server` and a real Nginx on free loopback ports), under steady
//! load while parts of it are killed with SIGKILL: no failed request, no wrong row.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::kit::Fixture;

/// `deploy/local.sh` run for a fixture, stopped (`down`) when dropped.
struct Deployment {
    project: PathBuf,
    state: tempfile::TempDir,
    /// Environment of every `local.sh` call beyond the test's own.
    env: Vec<(String, String)>,
}

fn local_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local.sh")
}

impl Deployment {
    /// `deploy/local.sh up n` over the fixture's project (its lake already built).
    fn up(f: &Fixture, n: usize) -> Deployment {
        Deployment::up_with(f, n, &[])
    }

    /// `up`, with more environment (`ASSAY_TLS_CERT`, …).
    fn up_with(f: &Fixture, n: usize, env: &[(&str, String)]) -> Deployment {
        let d = Deployment {
            project: f.path().to_path_buf(),
            state: tempfile::tempdir().unwrap(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let out = d.local(&["up", &n.to_string()]);
        assert!(out.contains("REST        http://127.0.0.1:"), "{out}");
        d
    }

    /// Runs `deploy/local.sh ARGS` and returns its output (asserting it succeeded).
    fn local(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("bash")
            .arg(local_sh())
            .args(args)
            .current_dir(&self.project)
            .env("ASSAY_BIN", env!("CARGO_BIN_EXE_assay"))
            .env("ASSAY_DEPLOY_DIR", self.state.path())
            .env("ASSAY_ADMIN_USER", "root")
            .env("ASSAY_ADMIN_PASSWORD", "pw-123456")
            .env_remove("REDIS_URL")
            .env_remove("ASSAY_LAKE")
            .env_remove("ASSAY_JWT_SECRET")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "local.sh {args:?}: {text}");
        text
    }

    /// A port from the deployment's `local.env` (`HTTP_PORT`, `REPLICA_2_HTTP`, …).
    fn port(&self, key: &str) -> u16 {
        let env = std::fs::read_to_string(self.state.path().join("local.env")).unwrap();
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in local.env: {env}"))
    }

    /// SIGKILLs a part (`redis` or a replica number) and waits until its ports refuse
    /// connections (a killed process's sockets close only when its last thread is gone,
    /// after its main thread already shows as a zombie).
    fn kill_9(&self, what: &str) {
        let (pidfile, ports) = if what == "redis" {
            ("redis.pid".to_string(), vec![self.port("REDIS_PORT")])
        } else {
            (
                format!("replica-{what}.pid"),
                vec![
                    self.port(&format!("REPLICA_{what}_HTTP")),
                    self.port(&format!("REPLICA_{what}_FLIGHT")),
                ],
            )
        };
        let pid = std::fs::read_to_string(self.state.path().join(pidfile)).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {what}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports
            .iter()
            .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "{what} still listens 10 s after kill -9"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(local_sh())
            .arg("down")
            .env("ASSAY_DEPLOY_DIR", self.state.path())
            .current_dir(&self.project)
            .output();
    }
}

/// One HTTP/1.1 request: status, headers (lower-cased names) and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    bearer: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

fn get(port: u16, path: &str, bearer: &str) -> (u16, String, String) {
    request(port, "GET", path, bearer, "").unwrap()
}

/// What a load run saw.
#[derive(Debug, Default)]
struct Load {
    requests: usize,
    failures: Vec<String>,
    latencies: Vec<Duration>,
}

impl Load {
    fn p(&self, q: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len().max(1)) - 1;
        l.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} requests, {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.requests,
            self.failures.len(),
            self.p(0.5),
            self.p(0.99),
            self.p(1.0)
        )
    }
}

/// `threads` clients GETting `path` through `port` until `stop`, each answer compared with
/// `expected` (a failed connection, another status or other rows is a failure).
fn load(
    port: u16,
    path: &'static str,
    bearer: String,
    expected: String,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Load> {
    std::thread::spawn(move || {
        let seen = Arc::new(Mutex::new(Load::default()));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (seen, stop, bearer, expected) = (
                    Arc::clone(&seen),
                    Arc::clone(&stop),
                    bearer.clone(),
                    expected.clone(),
                );
                std::thread::spawn(move || {
                    // Bounded in count as well as by `stop`.
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let started = Instant::now();
                        let answer = request(port, "GET", path, &bearer, "");
                        let took = started.elapsed();
                        let mut s = seen.lock().unwrap();
                        s.requests += 1;
                        s.latencies.push(took);
                        match answer {
                            Ok((200, _, body)) if body == expected => {}
                            Ok((status, _, body)) => s
                                .failures
                                .push(format!("{status}: {}", &body[..body.len().min(200)])),
                            Err(e) => s.failures.push(format!("connection: {e}")),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    })
}

/// Loads `port` (see [`load`]) for `before`, runs `event`, loads `after` more, then prints
/// the figures as `what` and asserts nothing failed.
fn under_load(
    (port, bearer, expected): (u16, &str, &str),
    before: Duration,
    event: impl FnOnce(),
    after: Duration,
    what: &str,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(
        port,
        ROWS,
        bearer.to_string(),
        expected.to_string(),
        4,
        Arc::clone(&stop),
    );
    std::thread::sleep(before);
    event();
    std::thread::sleep(after);
    stop.store(true, Ordering::Relaxed);
    let seen = running.join().unwrap();
    println!("{}", seen.report(what));
    assert!(seen.requests > 50, "{}", seen.report(what));
    assert!(seen.failures.is_empty(), "{what}: {:?}", seen.failures);
    seen
}

const ROWS: &str = "/api/v1/tables/gold.daily_revenue/rows?order_by=order_date,category";

fn login(port: u16) -> String {
    crate::kit::root_bearer(port)
}

/// Waits until a GET of `path` on `port` answers with `X-Cache: hit`.
fn wait_for_hit(port: u16, path: &str, bearer: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, head, _)) = request(port, "GET", path, bearer, "")
            && head.contains("x-cache: hit")
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn replicas_behind_nginx_survive_a_killed_replica_and_a_killed_redis() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let d = Deployment::up(&f, 3);
    let nginx = d.port("HTTP_PORT");
    let bearer = login(nginx);
    let (status, head, expected) = get(nginx, ROWS, &bearer);
    assert_eq!(status, 200, "{expected}");
    assert!(
        head.contains("x-request-id:"),
        "Nginx names the request: {head}"
    );
    let rows: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(rows["count"], 7, "{expected}");

    // Steady state, for comparison: through Nginx, and straight to one replica.
    let two = Duration::from_secs(2);
    let nothing = || {};
    under_load(
        (nginx, &bearer, &expected),
        two,
        nothing,
        Duration::ZERO,
        "steady, through Nginx",
    );
    let replica2 = d.port("REPLICA_2_HTTP");
    let straight = (replica2, bearer.as_str(), expected.as_str());
    under_load(
        straight,
        two,
        nothing,
        Duration::ZERO,
        "steady, straight to replica 2",
    );

    // kill -9 one of three replicas under load: Nginx retries the GETs it met.
    let through = (nginx, bearer.as_str(), expected.as_str());
    let kill = || d.kill_9("1");
    let three = Duration::from_secs(3);
    under_load(through, two, kill, three, "kill -9 replica 1 of 3");

    // It rejoins and answers from the cache the others filled.
    d.local(&["start", "1"]);
    let replica1 = d.port("REPLICA_1_HTTP");
    let (status, head, body) = get(replica1, ROWS, &bearer);
    assert_eq!((status, body.as_str()), (200, expected.as_str()));
    assert!(
        head.contains("x-cache: hit"),
        "a restarted replica hits the shared cache: {head}"
    );

    // kill -9 Redis under load: every request still answers with the right rows, uncached.
    let kill_redis = || {
        d.kill_9("redis");
        std::thread::sleep(three);
        let (status, head, body) = get(nginx, ROWS, &bearer);
        assert_eq!((status, body.as_str()), (200, expected.as_str()));
        assert!(
            !head.contains("x-cache: hit"),
            "no cache without Redis: {head}"
        );
    };
    let one = Duration::from_secs(1);
    under_load(through, one, kill_redis, Duration::ZERO, "kill -9 Redis");

    // Redis back (empty): hits resume on every replica.
    d.local(&["start", "redis"]);
    for i in 1..=3 {
        let port = d.port(&format!("REPLICA_{i}_HTTP"));
        assert!(wait_for_hit(port, ROWS, &bearer), "replica {i} hits again");
    }

    // Replicas log one JSON line per request: user, route, status, bytes, duration.
    let access = d.log("replica-2.access.json");
    let line = access
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["route"] == "/api/v1/tables/{table}/rows" && v["status"] == "200")
        .unwrap_or_else(|| panic!("an access line for rows: {access}"));
    assert_eq!(line["server"], "rest", "{line}");
    assert_eq!(line["user"], "root", "{line}");
    assert_eq!(
        line["bytes"].as_u64(),
        Some(expected.len() as u64),
        "{line}"
    );
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    assert!(
        line["request_id"].as_str().is_some_and(|r| r.len() == 32),
        "{line}"
    );
    // Nginx's JSON access log names the same request.
    let id = line["request_id"].as_str().unwrap();
    let nginx_log = d.log("nginx/access.json");
    assert!(nginx_log.contains(id), "Nginx logged request {id}");
}

#[test]
fn a_post_through_one_replica_is_seen_through_another_at_once() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let d = Deployment::up(&f, 2);
    let (a, b) = (d.port("REPLICA_1_HTTP"), d.port("REPLICA_2_HTTP"));
    let bearer = login(a);
    let path = "/api/v1/tables/gold.products/rows?order_by=product_id";
    // B has the table cached.
    let (_, _, before) = get(b, path, &bearer);
    let (status, head, again) = get(b, path, &bearer);
    assert_eq!((status, again.as_str()), (200, before.as_str()));
    assert!(head.contains("x-cache: hit"), "{head}");
    let count = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["count"]
            .as_i64()
            .unwrap()
    };
    // A POST of a row through A, then at once a GET through B (no stale hit), and the same
    // through Nginx.
    let row =
        r#"[{"product_id": 9001, "name": "Replica mug", "category": "kitchen", "price": "4.50"}]"#;
    let (status, _, body) =
        request(a, "POST", "/api/v1/tables/gold.products/rows", &bearer, row).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, head, after) = get(b, path, &bearer);
    assert_eq!(status, 200, "{after}");
    assert_eq!(count(&after), count(&before) + 1, "{head}\n{after}");
    assert!(after.contains("Replica mug"), "{after}");
    let (_, _, through_nginx) = get(d.port("HTTP_PORT"), path, &bearer);
    assert_eq!(through_nginx, after);
}

/// A Flight SQL client (the ADBC driver) with one prepared statement, executed again after
/// the replica that prepared it died: `parameter -> count` lines on stdin/stdout.
const PREPARED_CLIENT: &str = r#"
import sys, os
import adbc_driver_flightsql.dbapi as fs
conn = fs.connect(sys.argv[1], db_kwargs={"username": "root", "password": "pw-123456"})
cur = conn.cursor()
sql = "SELECT count(*) FROM gold.daily_revenue WHERE revenue > ?"
for line in sys.stdin:
    try:
        cur.execute(sql, parameters=(float(line),))
        print(cur.fetch_arrow_table().column(0).to_pylist()[0], flush=True)
    except Exception as e:
        print("error:", str(e).replace("\n", " "), flush=True)
os._exit(0)
"#;

#[test]
fn a_prepared_statement_outlives_the_replica_that_prepared_it() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let d = Deployment::up(&f, 3);
    let uri = format!("grpc://127.0.0.1:{}", d.port("FLIGHT_PORT"));
    let mut client = std::process::Command::new("python3")
        .args(["-c", PREPARED_CLIENT, &uri])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut ask = |threshold: &str| {
        writeln!(stdin, "{threshold}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = |t: &str| {
        let sql = format!("SELECT count(*) AS n FROM gold.daily_revenue WHERE revenue > {t}");
        let table = rt.block_on(f.table(&sql));
        table
            .lines()
            .nth(3)
            .unwrap()
            .trim_matches(|c| c == '|' || c == ' ')
            .to_string()
    };
    // Prepared (somewhere) and executed.
    let mut check = |threshold: &str, what: &str| {
        let answer = ask(threshold);
        assert_eq!(
            answer,
            count(threshold),
            "{what}\nNginx: {}\n{}",
            d.log("nginx/error.log"),
            d.log("local.env")
        );
    };
    check("10", "all replicas up");
    // Whichever replica prepared it, one of the two phases kills it: the handle is signed
    // and self-contained, so the survivors execute it with new parameters.
    d.kill_9("1");
    d.kill_9("2");
    check("20", "replicas 1, 2 dead");
    check("0", "replicas 1, 2 dead");
    d.local(&["start", "1"]);
    d.local(&["start", "2"]);
    // Nginx sends a failed replica requests again after `fail_timeout` (3 s).
    std::thread::sleep(Duration::from_millis(3500));
    d.kill_9("3");
    check("50", "replica 3 dead");
    check("10", "replica 3 dead");
    // Flight calls are in the replicas' access logs too, with the user and bytes sent.
    let lines: Vec<serde_json::Value> = (1..=3)
        .flat_map(|i| {
            d.log(&format!("replica-{i}.access.json"))
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect();
    let get = lines
        .iter()
        .find(|v| v["server"] == "flight" && v["method"] == "DoGet")
        .unwrap_or_else(|| panic!("a DoGet line: {lines:?}"));
    assert_eq!(get["status"], "ok", "{get}");
    assert_eq!(get["user"], "root", "{get}");
    assert!(get["bytes"].as_u64().is_some_and(|b| b > 0), "{get}");
    drop(stdin);
    let _ = client.wait();
}

#[test]
fn nginx_terminates_tls_for_both_servers() {
    let f = Fixture::example();
    f.run_ok(&[]);
    let certs = tempfile::tempdir().unwrap();
    crate::tls::certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let d = Deployment::up_with(
        &f,
        2,
        &[
            ("ASSAY_TLS_CERT", file("server.pem")),
            ("ASSAY_TLS_KEY", file("server.key")),
        ],
    );
    let https = format!("https://127.0.0.1:{}/health", d.port("HTTPS_PORT"));
    assert_eq!(crate::tls::https_get(certs.path(), &https, false), "200");
    let grpcs = format!("grpc+tls://127.0.0.1:{}", d.port("FLIGHT_TLS_PORT"));
    assert_eq!(crate::tls::adbc_over_tls(certs.path(), &grpcs, false), "42");
    // Plain text to the TLS port is refused; the plain-text ports still answer.
    let plain = format!("http://127.0.0.1:{}/health", d.port("HTTPS_PORT"));
    assert_ne!(crate::tls::https_get(certs.path(), &plain, false), "200");
    assert_eq!(
        assay_testkit::http(d.port("HTTP_PORT"), "GET", "/health", &[]).0,
        200
    );
}

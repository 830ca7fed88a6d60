//! Soak: the real `assay serve` on the bundled example under mixed load for 10 minutes —
//! REST (`wrk`, a cycle of cached row reads, differing filters that miss the cache, SQL
//! queries, catalog and health) and Flight SQL (ADBC clients in a separate Python process
//! running statements in a loop) at the same time — with the server's resident memory
//! sampled every 10 s. Flat memory means the last minute's RSS stays near the first's.
//!
//! `cargo bench -p assay --bench soak` (`ASSAY_SOAK_SECONDS`, default 600;
//! `ASSAY_SOAK_CLIENTS` REST connections, default 16; `ASSAY_SOAK_FLIGHT_CLIENTS`, default 4;
//! `REDIS_URL` to cache in a Redis instead of in-process). Needs `wrk` and the ADBC Flight SQL
//! driver (`scripts/setup.sh`, `scripts/bench-setup.sh`). The one account of the load gets
//! `[query] max_concurrent_per_user` = all connections, so statements are not refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assay_testkit::env_or;

/// The server's resident set in MiB (`VmRSS` of `/proc/PID/status`).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A wrk script cycling through a mix of requests; every response but 2xx is counted, and
/// the statuses other than 200 are printed at the end (`status N: count`).
const WRK_MIX: &str = r#"
local n = 0
local threads = {}
statuses = {}
function setup(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status ~= 200 then statuses[status] = (statuses[status] or 0) + 1 end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do
      io.write(string.format("status %d: %d\n", status, count))
    end
  end
end
local paths = {
  {"GET", "/api/v1/tables/gold.products/rows?category=A&limit=20", nil},
  {"GET", "/api/v1/tables/gold.daily_revenue/rows?limit=50&order_by=order_date", nil},
  {"GET", "/api/v1/tables/silver.orders/rows?limit=5&amount%5Bgt%5D=", "vary"},
  {"POST", "/api/v1/query", '{"sql": "SELECT category, COUNT(*) AS n FROM gold.products GROUP BY category"}'},
  {"GET", "/api/v1/catalog", nil},
  {"GET", "/health", nil},
}
request = function()
  n = n + 1
  local p = paths[(n % #paths) + 1]
  local path, body = p[2], p[3]
  if body == "vary" then
    path = path .. tostring(n % 997)
    body = nil
  end
  if body then
    -- wrk.format replaces the default headers (Host, the -H token) when given a table.
    local h = {}
    for k, v in pairs(wrk.headers) do h[k] = v end
    h["Content-Type"] = "application/json"
    return wrk.format(p[1], path, h, body)
  end
  return wrk.format(p[1], path)
end
"#;

/// ADBC clients, one thread each, running statements in a loop until the deadline; prints
/// `count p50_ms p99_ms errors`.
const FLIGHT_LOOP: &str = r#"
import sys, time, threading
import adbc_driver_flightsql.dbapi as fs
uri, user, password, seconds, clients = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
stmts = [
    "SELECT SUM(revenue) AS total FROM gold.daily_revenue",
    "SELECT * FROM gold.products WHERE price > 10 ORDER BY price LIMIT 20",
    "SELECT c.country, COUNT(*) AS n FROM silver.orders o JOIN silver.customers c ON o.customer_id = c.customer_id GROUP BY c.country",
]
lat, errors, kinds, lock = [], [0], {}, threading.Lock()
deadline = time.time() + seconds
def run(k):
    with fs.connect(uri, db_kwargs={"username": user, "password": password}) as conn:
        i = k
        while time.time() < deadline:
            t = time.perf_counter()
            try:
                cur = conn.cursor()
                cur.execute(stmts[i % len(stmts)])
                cur.fetch_arrow_table()
                cur.close()
                with lock:
                    lat.append((time.perf_counter() - t) * 1000)
            except Exception as e:
                with lock:
                    errors[0] += 1
                    kind = str(e).splitlines()[0][:120]
                    kinds[kind] = kinds.get(kind, 0) + 1
            i += 1
threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print(len(lat), q(0.50), q(0.99), errors[0], flush=True)
for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
    print(f"  {n} x {kind}", file=sys.stderr)
"#;

fn main() {
    let seconds = env_or("ASSAY_SOAK_SECONDS", 600);
    let clients = env_or("ASSAY_SOAK_CLIENTS", 16);
    let flight_clients = env_or("ASSAY_SOAK_FLIGHT_CLIENTS", 4);
    let bin = env!("CARGO_BIN_EXE_assay");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    assay_testkit::copy_example(&repo, dir.path());
    // One account drives all the load: give it the server's query slots, so the soak
    // measures queries rather than `429 busy` answers (the limits have their own tests).
    let config = dir.path().join("assay.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[query]\nmax_concurrent = {slots}\nmax_concurrent_per_user = {slots}\n",
        slots = clients + flight_clients
    ));
    std::fs::write(&config, text).unwrap();
    let project = dir.path().to_str().unwrap();
    let run = Command::new(bin)
        .args(["--project", project, "run"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let mut cmd = Command::new(bin);
    cmd.args(["--project", project, "serve"])
        .env("ASSAY_ADMIN_USER", "soak")
        .env("ASSAY_ADMIN_PASSWORD", "soak-password")
        .env("ASSAY_LOG", "warn")
        .stderr(Stdio::null());
    let server = assay_testkit::serve(cmd);
    let (flight, rest, port) = (server.flight.clone(), server.rest.clone(), server.port);
    let pid = server.child.id();
    let (status, login) = assay_testkit::http_with_body(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        r#"{"username": "soak", "password": "soak-password"}"#,
    );
    assert_eq!(status, 200, "{login}");
    let login: serde_json::Value = serde_json::from_str(&login).unwrap();
    let token = login["token"].as_str().expect("a token").to_string();
    let script = dir.path().join("mix.lua");
    std::fs::write(&script, WRK_MIX).unwrap();
    let flight_script = dir.path().join("flight_loop.py");
    std::fs::write(&flight_script, FLIGHT_LOOP).unwrap();

    let started = Instant::now();
    let rest_load = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{clients}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {token}"),
            &rest,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk (scripts/bench-setup.sh)");
    let flight_load = Command::new("python3")
        .args([
            flight_script.to_str().unwrap(),
            &flight,
            "soak",
            "soak-password",
            &seconds.to_string(),
            &flight_clients.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        samples.push((started.elapsed().as_secs(), rss_mib(pid)));
        std::thread::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds)));
    }
    let rest_out = rest_load.wait_with_output().unwrap();
    let flight_out = flight_load.wait_with_output().unwrap();
    samples.push((started.elapsed().as_secs(), rss_mib(pid)));
    let (health, _) = assay_testkit::http(port, "GET", "/health", &[]);
    let exit = server.stop();

    let text = String::from_utf8_lossy(&rest_out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "0".into())
    };
    let flight_fields: Vec<String> = String::from_utf8_lossy(&flight_out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let minute = |from: u64, to: u64| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, r)| *r)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let max = samples.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    println!(
        "soak: {seconds} s of `assay serve` on the example; REST wrk {clients} connections (mix of 6 \
         requests), Flight SQL {flight_clients} ADBC clients; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  REST    {} req/s   p50 {}   p99 {}   non-2xx: {}   socket errors: {}",
        field("Requests/sec:"),
        field("50%"),
        field("99%"),
        field("Non-2xx or 3xx responses:"),
        field("Socket errors:")
    );
    println!(
        "  Flight  {} statements   p50 {} ms   p99 {} ms   errors: {}",
        flight_fields.first().map_or("?", String::as_str),
        flight_fields.get(1).map_or("?", String::as_str),
        flight_fields.get(2).map_or("?", String::as_str),
        flight_fields.get(3).map_or("?", String::as_str)
    );
    for line in text.lines().filter(|l| l.starts_with("status ")) {
        println!("  REST {line}");
    }
    let last = samples.last().map_or(0, |(t, _)| *t);
    println!(
        "  RSS MiB: first minute {:.0}, last minute {:.0}, max {max:.0}; /health after: {health}; exit on SIGTERM: {exit}",
        minute(0, 60),
        minute(last.saturating_sub(60), last)
    );
    println!(
        "  RSS samples (s, MiB): {}",
        samples
            .iter()
            .map(|(t, r)| format!("{t}:{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

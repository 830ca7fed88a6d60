#!/usr/bin/env python3
"""Bronze sources beside the peers: PostgreSQL -> bronze and HTTP pages -> bronze.

    python3 benches/sources.py [--rows 5000000] [--pages 2000] [--assay PATH] [--write BENCHMARKS.md]

1. Starts a throwaway PostgreSQL (initdb/postgres from the `postgresql` package, as the
   `postgres` user when run as root) on a free port and fills `readings` with `--rows` rows
   (int, text, numeric(12,3), timestamptz, bigint).
2. Times, with the peak RSS of each process: `assay run` with a `postgres` source (one
   stream, then `parallel = { ranges = 2 }`); `psql \\copy ... TO` CSV plus `assay run` on
   that CSV file (the export-and-ingest route); Polars `read_database_uri` through
   connectorx, written to Delta by python `deltalake`; the ADBC PostgreSQL driver into
   pyarrow, written likewise. DuckDB's postgres extension is downloaded at first use, which
   this machine cannot, so it is left out.
3. Serves `--pages` JSON pages of 1,000 records from memory (a Python threaded HTTP server on
   a free port) and times `assay run` with an `http` source paging through them, beside a
   Python `urllib` loop that only fetches and parses the same pages.

Prints a Markdown table and, with `--write`, puts it into that file between
`<!-- sources:begin -->` and `<!-- sources:end -->`. Needs a release build and
`scripts/bench-setup.sh`.
"""

import argparse
import http.server
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, env=None, cwd=None):
    """Runs cmd; returns (seconds, peak RSS MiB) of that process."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M"] + cmd,
        env=env, cwd=cwd, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return elapsed, rss_kb / 1024


class Postgres:
    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            sys.exit("PostgreSQL not found: apt install postgresql")
        self.bin = found[-1].parent
        self.dir = tempfile.mkdtemp(prefix="assay-bench-pg-")
        root = os.geteuid() == 0
        self.owner = ["runuser", "-u", "postgres", "--"] if root else []
        if root:
            subprocess.run(["chown", "-R", "postgres", self.dir], check=True)
        data = f"{self.dir}/data"
        subprocess.run(self.owner + [str(self.bin / "initdb"), "-D", data, "-U", "postgres",
                        "--auth=trust", "--no-sync"], check=True, capture_output=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            self.owner + [str(self.bin / "postgres"), "-D", data, "-p", str(self.port),
                          "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                          "-c", "shared_buffers=512MB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            if subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def psql(self, *args):
        return subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args],
                              check=True, capture_output=True, text=True).stdout

    def stop(self):
        subprocess.run(self.owner + [str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data",
                                     "stop", "-m", "immediate"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def project(dir, body):
    shutil.rmtree(dir, ignore_errors=True)
    os.makedirs(dir)
    Path(dir, "assay.toml").write_text(body)
    return dir


PEER_POLARS = """
import sys, polars as pl
from deltalake import write_deltalake
df = pl.read_database_uri("SELECT * FROM readings", sys.argv[1], engine="connectorx")
write_deltalake(sys.argv[2], df.to_arrow(), mode="overwrite")
"""

PEER_ADBC = """
import sys, adbc_driver_postgresql.dbapi as pg
from deltalake import write_deltalake
with pg.connect(sys.argv[1]) as conn:
    cur = conn.cursor()
    cur.execute("SELECT * FROM readings")
    reader = cur.fetch_record_batch()
    write_deltalake(sys.argv[2], reader, mode="overwrite")
"""

PEER_HTTP = """
import json, sys, urllib.request
base, pages = sys.argv[1], int(sys.argv[2])
n = 0
for p in range(1, pages + 2):
    with urllib.request.urlopen(f"{base}/items?page={p}") as r:
        records = json.loads(r.read())["data"]
    if not records:
        break
    n += len(records)
print(n)
"""


def serve_pages(pages, per_page=1000):
    bodies = {}
    for p in range(1, pages + 1):
        recs = [{"id": (p - 1) * per_page + i, "name": f"n{i}", "value": i * 0.5,
                 "at": "2026-11-01T10:00:00Z", "tags": ["a", "b"]} for i in range(per_page)]
        bodies[p] = json.dumps({"data": recs}).encode()
    empty = json.dumps({"data": []}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            m = re.search(r"page=(\d+)", self.path)
            body = bodies.get(int(m.group(1)) if m else 1, empty)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--pages", type=int, default=2000)
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    ap.add_argument("--assay", default=f"{target}/release/assay")
    ap.add_argument("--write")
    args = ap.parse_args()
    assay = os.path.abspath(args.assay)
    work = tempfile.mkdtemp(prefix="assay-bench-sources-")
    rows = []
    version = "?"
    pg = Postgres()
    try:
        pg.psql("-c", f"""
            CREATE TABLE readings (id int PRIMARY KEY, sensor text, value numeric(12,3),
                                   at timestamptz, big bigint);
            INSERT INTO readings SELECT g, 'sensor-' || (g % 1000), (g % 100000) / 1000.0,
                   '2026-01-01'::timestamptz + g * interval '1 second', g::bigint * 7
            FROM generate_series(1, {args.rows}) AS g;""")
        pg.psql("-c", "VACUUM ANALYZE readings")
        env = dict(os.environ, PG_URL=pg.url)
        version = pg.psql("-Atc", "show server_version").strip()

        def assay_run(name, source):
            d = project(f"{work}/{name}", f'[[bronze]]\nname = "readings"\nsource = {source}\n')
            return timed([assay, "--project", d, "run"], env=env)

        t, m = assay_run("one", '{ kind = "postgres", url_env = "PG_URL", table = "readings" }')
        rows.append(("PostgreSQL -> bronze: `assay run` (one COPY stream)", t, m))
        t, m = assay_run("par", '{ kind = "postgres", url_env = "PG_URL", table = "readings", '
                                'parallel = { column = "id", ranges = 2 } }')
        rows.append(("PostgreSQL -> bronze: `assay run`, `parallel = { ranges = 2 }`", t, m))
        csv = f"{work}/readings.csv"
        t1, m1 = timed([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                        "postgres", "-X", "-q", "-c",
                        f"\\copy (SELECT * FROM readings) TO '{csv}' WITH (FORMAT csv, HEADER)"])
        d = project(f"{work}/csv", f'[[bronze]]\nname = "readings"\nsource = {{ kind = "files", path = "{csv}" }}\n')
        t2, m2 = timed([assay, "--project", d, "run"])
        rows.append(("`psql \\copy` CSV + `assay run` on the file (text columns)", t1 + t2, max(m1, m2)))
        t, m = timed([sys.executable, "-c", PEER_POLARS, pg.url, f"{work}/polars"])
        rows.append(("Polars `read_database_uri` (connectorx) + `write_deltalake`", t, m))
        t, m = timed([sys.executable, "-c", PEER_ADBC, pg.url, f"{work}/adbc"])
        rows.append(("ADBC PostgreSQL driver (pyarrow batches) + `write_deltalake`", t, m))
    finally:
        pg.stop()

    server, base = serve_pages(args.pages)
    d = project(f"{work}/http", f'[[bronze]]\nname = "items"\nsource = {{ kind = "http", url = "{base}/items", records = "/data", pagination = {{ kind = "page" }}, max_pages = {args.pages + 10} }}\n')
    t_http, m_http = timed([assay, "--project", d, "run"])
    t_py, m_py = timed([sys.executable, "-c", PEER_HTTP, base, str(args.pages)])
    server.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    cpu = platform.processor() or platform.machine()
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    base_t = rows[0][1]
    lines = [
        f"Machine: {cores} cores ({cpu}), {mem:.0f} GiB; PostgreSQL {version} on the same machine, "
        f"{args.rows:,} rows (int, text, numeric(12,3), timestamptz, bigint); lake on local disk.",
        "",
        "| route | time | rows/s | peak RSS | vs `assay run` |",
        "|---|---|---|---|---|",
    ]
    for name, t, m in rows:
        lines.append(f"| {name} | {t:.2f} s | {args.rows / t:,.0f} | {m:.0f} MiB | {t / base_t:.2f}x |")
    lines += [
        "",
        f"HTTP: {args.pages:,} pages of 1,000 records from a local Python server: "
        f"`assay run` {t_http:.2f} s ({args.pages / t_http:,.0f} pages/s, {m_http:.0f} MiB, into bronze); "
        f"a Python `urllib` loop that only fetches and parses them (writes nothing) {t_py:.2f} s "
        f"({args.pages / t_py:,.0f} pages/s).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        doc = Path(args.write).read_text()
        block = f"<!-- sources:begin -->\n{text}\n<!-- sources:end -->"
        if "<!-- sources:begin -->" in doc:
            doc = re.sub(r"<!-- sources:begin -->.*<!-- sources:end -->", block, doc, flags=re.S)
        else:
            doc += f"\n## Bronze sources: PostgreSQL and HTTP\n\n`python3 benches/sources.py --write BENCHMARKS.md`\n\n{block}\n"
        Path(args.write).write_text(doc)


if __name__ == "__main__":
    main()

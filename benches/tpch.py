#!/usr/bin/env python3
"""TPC-H through the whole of Assay beside the peers, in one invocation.

    python3 benches/tpch.py [--scale 1] [--assay PATH] [--runs 3] [--write BENCHMARKS.md]

1. Generates TPC-H CSV at the scale (PyPI `tpchgen-cli`, reused when already there).
2. Builds the medallion with the real `assay` binary: 8 bronze tables from the CSVs and 8
   silver tables with typed columns and keys, timed with the process' peak RSS; then bronze
   and silver `lineitem` alone on a fresh lake.
3. The peers on the same files, in the same time window: DuckDB (one typed pass over the 8
   CSVs into Parquet) and pyarrow (a typed streaming CSV read into `write_deltalake`).
4. `assay serve` over that lake: the 22 queries (`../shared/tpch/queries`) through Flight SQL
   with the ADBC driver, each checked against the official answers at SF1
   (`../shared/tpch/answers-sf1`); DuckDB and DataFusion-python run the same queries on the
   Parquet files. `SELECT 1` over Flight and REST, and a DoGet of all of `silver.lineitem`
   beside python `deltalake` reading the same table in-process.

Prints the table and, with `--write`, puts it into that Markdown file between the markers
`<!-- tpch:begin -->` and `<!-- tpch:end -->`. Needs `scripts/bench-setup.sh` and a release
build (`cargo build --release`, the default `--assay` is `target/release/assay` under
`CARGO_TARGET_DIR`).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TPCH = REPO.parent / "shared" / "tpch"

# Per table: typed columns (the rest are strings) and keys, as a data engineer would declare.
TABLES = {
    "region": (["r_regionkey"], ["r_regionkey"]),
    "nation": (["n_nationkey", "n_regionkey"], ["n_nationkey"]),
    "supplier": (["s_suppkey", "s_nationkey", "s_acctbal"], ["s_suppkey"]),
    "customer": (["c_custkey", "c_nationkey", "c_acctbal"], ["c_custkey"]),
    "part": (["p_partkey", "p_size", "p_retailprice"], ["p_partkey"]),
    "partsupp": (
        ["ps_partkey", "ps_suppkey", "ps_availqty", "ps_supplycost"],
        ["ps_partkey", "ps_suppkey"],
    ),
    "orders": (
        ["o_orderkey", "o_custkey", "o_totalprice", "o_orderdate", "o_shippriority"],
        ["o_orderkey"],
    ),
    "lineitem": (
        [
            "l_orderkey", "l_partkey", "l_suppkey", "l_linenumber", "l_quantity",
            "l_extendedprice", "l_discount", "l_tax", "l_shipdate", "l_commitdate",
            "l_receiptdate",
        ],
        ["l_orderkey", "l_linenumber"],
    ),
}
USER, PASSWORD = "bench", "bench-password-1"


def sql_type(column, typed):
    if column not in typed:
        return "string"
    if column.endswith("date"):
        return "date"
    if column.endswith("key") or column.endswith("number"):
        return "bigint"
    if column in ("p_size", "ps_availqty", "o_shippriority"):
        return "int"
    return "decimal(15,2)"


def duck_type(t):
    return {"string": "VARCHAR", "date": "DATE", "bigint": "BIGINT", "int": "INTEGER"}.get(
        t, "DECIMAL(15,2)"
    )


def header(data, table):
    with open(data / f"{table}.csv") as f:
        return f.readline().strip().split(",")


def project(dir_, data, tables):
    text = "[project]\nname = \"tpch\"\n\n[lake]\nroot = \"file://./lakehouse\"\n\n"
    for t in tables:
        typed, keys = TABLES[t]
        cols = ", ".join(f'{c} = "{sql_type(c, typed)}"' for c in header(data, t))
        text += (
            f'[[bronze]]\nname = "{t}"\nsource = {{ kind = "files", path = "{data}/{t}.csv" }}\n\n'
            f'[[silver]]\nname = "{t}"\nfrom = "bronze.{t}"\ncolumns = {{ {cols} }}\n'
            f"keys = [{', '.join(json.dumps(k) for k in keys)}]\n\n"
        )
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "assay.toml").write_text(text)


def timed(cmd, env=None, **kw):
    """Runs a command; returns (seconds, peak RSS in MiB, stdout)."""
    with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=o, stderr=e, **kw)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - start
        o.seek(0)
        e.seek(0)
        out, err = o.read().decode(), e.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out}\n{err}")
    return elapsed, usage.ru_maxrss / 1024, out


def py(code, *args):
    return timed([sys.executable, "-c", code, *map(str, args)])


DUCK_LOAD = """
import sys, json, duckdb
data, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect()
for table, cols in spec.items():
    types = ", ".join(f"'{c}': '{t}'" for c, t in cols)
    con.execute(f"COPY (SELECT * FROM read_csv('{data}/{table}.csv', header=true, columns={{{types}}})) "
                f"TO '{out}/{table}.parquet' (FORMAT parquet)")
"""

ARROW_LOAD = """
import sys, json, pyarrow as pa, pyarrow.csv as csv
from deltalake import write_deltalake
data, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def arrow(t):
    return {"VARCHAR": pa.string(), "DATE": pa.date32(), "BIGINT": pa.int64(),
            "INTEGER": pa.int32()}.get(t, pa.decimal128(15, 2))
for table, cols in spec.items():
    reader = csv.open_csv(f"{data}/{table}.csv",
        convert_options=csv.ConvertOptions(column_types={c: arrow(t) for c, t in cols}))
    write_deltalake(f"{out}/{table}", reader, mode="overwrite")
"""

PEER_QUERIES = """
import sys, time, json, statistics
engine, parquet, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
queries = json.loads(sys.stdin.read())
tables = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
if engine == "duckdb":
    import duckdb
    con = duckdb.connect()
    for t in tables:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{parquet}/{t}.parquet')")
    run = lambda q: con.execute(q).to_arrow_table()
else:
    import datafusion
    ctx = datafusion.SessionContext()
    for t in tables:
        ctx.register_parquet(t, f"{parquet}/{t}.parquet")
    run = lambda q: ctx.sql(q).collect()
out = {}
for name, q in queries.items():
    times = []
    for _ in range(runs):
        t = time.perf_counter(); run(q); times.append(time.perf_counter() - t)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""

FLIGHT_GET = """
import sys, time
import pyarrow.flight as fl
# A Flight SQL CommandStatementQuery in a protobuf Any, encoded by hand (pyarrow has no
# Flight SQL client; its C++ Flight client reads the DoGet stream).
def field(n, b):
    out, size = bytearray([n << 3 | 2]), len(b)
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + b
url, user, password, sql, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cmd = field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(
    2, field(1, sql.encode()))
client = fl.FlightClient(url)
options = fl.FlightCallOptions(headers=[client.authenticate_basic_token(user, password)])
for _ in range(runs):
    t = time.perf_counter()
    info = client.get_flight_info(fl.FlightDescriptor.for_command(cmd), options)
    size = 0
    for endpoint in info.endpoints:
        for chunk in client.do_get(endpoint.ticket, options):
            size += chunk.data.nbytes
    print(size, time.perf_counter() - t, flush=True)
"""

DELTA_READ = """
import os, sys, time
from deltalake import DeltaTable
t = time.perf_counter()
table = DeltaTable(sys.argv[1]).to_pyarrow_table()
whole = time.perf_counter() - t
del table
t = time.perf_counter()
table = DeltaTable(sys.argv[1]).to_pyarrow_dataset().to_table()
print(whole, time.perf_counter() - t, flush=True)
os._exit(0)  # the dataset's threads can abort the interpreter's teardown
"""


def lake_queries(text):
    """The query with every table of the FROM lists named `silver.<table>`."""
    names = "|".join(TABLES)
    return re.sub(
        rf"((?:\bfrom|\bjoin|,)\s+)({names})\b(?!\s*[=.(])",
        r"\1silver.\2",
        text,
        flags=re.IGNORECASE,
    )


def cell_equal(got, want):
    want = want.strip()
    if got is None:
        return want == "" or want.lower() == "null"
    if isinstance(got, (int, float, Decimal)):
        try:
            w = Decimal(want)
        except Exception:
            return False
        g = Decimal(str(got))
        if "." not in want:
            return g == w  # counts and keys: exact
        # TPC-H 2.1.3.5: sums within $100, averages and ratios within 1%; the answer set
        # prints two decimals. (q17's `sum(...) / 7.0` is 348406.054... from the exact sum
        # of these rows; the kit prints 348406.02.)
        return abs(g - w) <= max(Decimal("0.01"), min(Decimal(100), abs(w) / 100))
    return str(got).strip() == want


def check(name, table):
    lines = (TPCH / "answers-sf1" / f"{name}.out").read_text().strip().splitlines()[1:]
    rows = [dict(zip(range(table.num_columns), r)) for r in zip(*table.to_pydict().values())]
    if len(rows) != len(lines):
        return f"{len(rows)} rows, the answer has {len(lines)}"
    for i, (row, line) in enumerate(zip(rows, lines)):
        want = line.split("|")
        if len(want) != len(row):
            return f"row {i}: {len(row)} columns, the answer has {len(want)}"
        for j, w in enumerate(want):
            if not cell_equal(row[j], w):
                return f"row {i} column {j}: {row[j]!r}, the answer has {w.strip()!r}"
    return None


def serve(bin_, proj):
    env = dict(os.environ, ASSAY_ADMIN_USER=USER, ASSAY_ADMIN_PASSWORD=PASSWORD, ASSAY_LOG="warn")
    p = subprocess.Popen(
        [bin_, "--project", str(proj), "serve", "--flight-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    flight = p.stdout.readline().strip().removeprefix("Flight SQL listening on ")
    rest = p.stdout.readline().strip().removeprefix("REST gateway listening on ").split()[0]
    return p, flight, rest


def p50(samples):
    return statistics.median(samples) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    ap.add_argument("--assay", default=str(target / "release" / "assay"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", help="where the CSVs are (generated when missing)")
    ap.add_argument("--write", help="Markdown file to put the result table into")
    args = ap.parse_args()
    bin_ = args.assay
    if not Path(bin_).exists():
        sys.exit(f"{bin_} not found: cargo build --release first, or pass --assay")
    work = Path(tempfile.mkdtemp(prefix="assay-tpch-"))
    data = Path(args.data) if args.data else work / "csv"
    if not (data / "lineitem.csv").exists():
        subprocess.run(["tpchgen-cli", "csv", "-s", str(args.scale), f"--output-dir={data}"],
                       check=True)
    spec = {t: [(c, duck_type(sql_type(c, TABLES[t][0]))) for c in header(data, t)] for t in TABLES}
    lineitem_rows = sum(1 for _ in open(data / "lineitem.csv")) - 1
    rows = []

    def row(work_, assay, peer, ratio):
        rows.append((work_, assay, peer, ratio))
        print(f"{work_}: {assay} | {peer} | {ratio}", flush=True)

    # The medallion, then bronze and silver lineitem alone, beside the peers.
    proj = work / "medallion"
    project(proj, data, list(TABLES))
    med_s, med_rss, _ = timed([bin_, "--project", str(proj), "run"])
    duck_dir, arrow_dir = work / "duck", work / "arrow"
    duck_dir.mkdir()
    duck_s, duck_rss, _ = py(DUCK_LOAD, data, duck_dir, json.dumps(spec))
    arrow_s, arrow_rss, _ = py(ARROW_LOAD, data, arrow_dir, json.dumps(spec))
    best = min(duck_s, arrow_s)
    row("whole medallion: 8 bronze + 8 silver (typed, keyed)",
        f"{med_s:.1f} s, {med_rss:.0f} MiB peak RSS",
        f"DuckDB typed CSV → Parquet {duck_s:.1f} s ({duck_rss:.0f} MiB); "
        f"pyarrow → write_deltalake {arrow_s:.1f} s ({arrow_rss:.0f} MiB)",
        f"{med_s / best:.2f}x the faster peer")
    one = work / "lineitem"
    project(one, data, ["lineitem"])
    b_s, b_rss, _ = timed([bin_, "--project", str(one), "run", "--select", "bronze.lineitem"])
    s_s, s_rss, _ = timed([bin_, "--project", str(one), "run", "--select", "silver.lineitem"])
    li = {"lineitem": spec["lineitem"]}
    dl_dir = work / "duck-lineitem"
    dl_dir.mkdir()
    dl_s, dl_rss, _ = py(DUCK_LOAD, data, dl_dir, json.dumps(li))
    row(f"bronze lineitem from CSV ({lineitem_rows:,} rows)",
        f"{b_s:.2f} s, {b_rss:.0f} MiB",
        f"DuckDB typed COPY → Parquet {dl_s:.2f} s, {dl_rss:.0f} MiB",
        f"{b_s / dl_s:.2f}x")
    row("silver lineitem from bronze (typed, keyed)",
        f"{s_s:.2f} s, {s_rss:.0f} MiB",
        f"DuckDB typed lineitem from CSV {dl_s:.2f} s",
        f"{s_s / dl_s:.2f}x")

    # Serving.
    import adbc_driver_flightsql.dbapi as fs
    queries = {}
    for q in sorted((TPCH / "queries").glob("[qQ]*.sql"), key=lambda q: q.stem.lower()):
        queries[q.stem.lower()] = q.read_text().strip().rstrip(";")
    proc, flight, rest = serve(bin_, proj)
    try:
        conn = fs.connect(flight, db_kwargs={"username": USER, "password": PASSWORD})
        assay_times, failures = {}, []
        for name, q in queries.items():
            times, table = [], None
            for _ in range(args.runs):
                t = time.perf_counter()
                cur = conn.cursor()
                cur.execute(lake_queries(q))
                table = cur.fetch_arrow_table()
                cur.close()
                times.append(time.perf_counter() - t)
            assay_times[name] = statistics.median(times)
            if args.scale == 1.0:
                wrong = check(name, table)
                if wrong:
                    failures.append(f"{name}: {wrong}")
        peers = {}
        for engine in ("duckdb", "datafusion"):
            r = subprocess.run([sys.executable, "-c", PEER_QUERIES, engine, str(duck_dir),
                                str(args.runs)], input=json.dumps(queries), text=True,
                               capture_output=True)
            if r.returncode != 0:
                sys.exit(f"{engine} failed on the queries:\n{r.stderr}")
            peers[engine] = json.loads(r.stdout)
        total = sum(assay_times.values())
        duck_total, df_total = sum(peers["duckdb"].values()), sum(peers["datafusion"].values())
        worst = sorted(assay_times, key=lambda n: assay_times[n] / peers["datafusion"][n])[-4:]
        answers = (f"{22 - len(failures)}/22 official answers" if args.scale == 1.0
                   else "answers checked at SF1 only")
        row("TPC-H 22 queries via Flight SQL (ADBC) over silver, sum of medians",
            f"{total:.2f} s; {answers}",
            f"DuckDB on Parquet {duck_total:.2f} s; DataFusion-python on Parquet {df_total:.2f} s",
            f"{total / duck_total:.2f}x DuckDB, {total / df_total:.2f}x DataFusion "
            f"(worst {', '.join(reversed(worst))})")
        for f in failures:
            print("WRONG", f, flush=True)

        ones = []
        for _ in range(50):
            t = time.perf_counter()
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetch_arrow_table()
            cur.close()
            ones.append(time.perf_counter() - t)
        token = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{rest}/api/v1/login", data=json.dumps({"username": USER, "password": PASSWORD})
            .encode(), headers={"Content-Type": "application/json"})).read())["token"]
        rest_ones = []
        for _ in range(50):
            t = time.perf_counter()
            urllib.request.urlopen(urllib.request.Request(
                f"{rest}/api/v1/query", data=b'{"sql": "SELECT 1"}',
                headers={"Content-Type": "application/json",
                         "Authorization": f"Bearer {token}"})).read()
            rest_ones.append(time.perf_counter() - t)
        row("`SELECT 1` over Flight SQL (ADBC, one connection)",
            f"p50 {p50(ones):.1f} ms",
            f"REST `/api/v1/query`: p50 {p50(rest_ones):.1f} ms",
            f"{p50(ones) / p50(rest_ones):.1f}x")

        gets = []
        for _ in range(args.runs):
            t = time.perf_counter()
            cur = conn.cursor()
            cur.execute("SELECT * FROM silver.lineitem")
            table = cur.fetch_arrow_table()
            cur.close()
            gets.append(time.perf_counter() - t)
            size = table.nbytes
            del table
        conn.close()
        fast = py(FLIGHT_GET, flight, USER, PASSWORD, "SELECT * FROM silver.lineitem",
                  args.runs)[2].split("\n")
        fast = [line.split() for line in fast if line.strip()]
        fast_s = statistics.median(float(t) for _, t in fast)
        fast_size = int(fast[0][0])
    finally:
        proc.terminate()
        proc.wait()
    reads = [py(DELTA_READ, proj / "lakehouse" / "silver" / "lineitem")[2].split()
             for _ in range(args.runs)]
    whole = statistics.median(float(r[0]) for r in reads)
    dataset = statistics.median(float(r[1]) for r in reads)
    get_s = statistics.median(gets)
    row(f"Flight DoGet of silver.lineitem ({size / 1e9:.2f} GB of Arrow)",
        f"pyarrow.flight client {fast_size / fast_s / 1e6:.0f} MB/s ({fast_s:.2f} s); "
        f"ADBC (Go driver) {size / get_s / 1e6:.0f} MB/s ({get_s:.2f} s)",
        f"the same Delta table in-process: python deltalake `to_pyarrow_table` {whole:.2f} s, "
        f"its pyarrow dataset {dataset:.2f} s",
        f"{fast_s / dataset:.2f}x the dataset read")

    # Incremental: a second run of a 50-table project finds nothing new and commits nothing.
    noop = work / "noop"
    (noop / "data").mkdir(parents=True)
    text = "[lake]\nroot = \"file://./lakehouse\"\n\n"
    for i in range(25):
        (noop / "data" / f"t{i}.csv").write_text("id,v\n" + "".join(f"{j},{j * i}\n" for j in range(100)))
        text += (f'[[bronze]]\nname = "t{i}"\nsource = {{ kind = "files", path = "data/t{i}.csv" }}\n\n'
                 f'[[silver]]\nname = "t{i}"\nfrom = "bronze.t{i}"\n'
                 f'columns = {{ id = "bigint", v = "bigint" }}\nkeys = ["id"]\n\n')
    (noop / "assay.toml").write_text(text)
    timed([bin_, "--project", str(noop), "run"])
    noops = [timed([bin_, "--project", str(noop), "run"])[0] for _ in range(args.runs)]
    row("no-op run of a 50-table project (25 bronze + 25 silver, nothing new)",
        f"{statistics.median(noops):.2f} s", "target 0.5 s", "")

    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    table = [
        f"TPC-H SF{args.scale:g} (`tpchgen-cli csv`), {cores} cores, {mem:.0f} GiB, "
        f"{time.strftime('%Y-%m-%d')}; `python3 benches/tpch.py --scale {args.scale:g}`, "
        f"medians of {args.runs} where repeated.",
        "",
        "| work | Assay | peers on the same files, same run | ratio |",
        "|---|---|---|---|",
    ] + [f"| {w} | {a} | {p} | {r} |" for w, a, p, r in rows]
    text = "\n".join(table)
    print("\n" + text)
    if args.write:
        path = Path(args.write)
        doc = path.read_text()
        begin, end = "<!-- tpch:begin -->", "<!-- tpch:end -->"
        block = f"{begin}\n{text}\n{end}"
        doc = (re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc,
                      flags=re.S) if begin in doc else doc.rstrip() + "\n\n" + block + "\n")
        path.write_text(doc)
    shutil.rmtree(work, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()

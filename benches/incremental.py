#!/usr/bin/env python3
"""Incremental runs on TPC-H SF1 lineitem (6,001,215 rows): an incremental gold model after
a 1% append against a full rebuild of the same model, and the silver MERGE of 1% changed
rows beside Python `deltalake`'s merge of the same rows into a copy of the same table.

    python3 benches/incremental.py [--scale 1] [--assay target/release/assay] [--keep DIR]

Needs `tpchgen-cli`, `deltalake` and `pyarrow` (pip). Every measured operation runs in its
own process; time is wall time, memory the process's peak RSS (ru_maxrss).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

PROJECT = """
[[bronze]]
name = "lineitem"
source = { kind = "files", path = "data/lineitem/*.csv" }

[[silver]]
name = "lineitem"
from = "bronze.lineitem"
columns = { l_orderkey = "bigint", l_partkey = "bigint", l_suppkey = "bigint", l_linenumber = "int", l_quantity = "decimal(15,2)", l_extendedprice = "decimal(15,2)", l_discount = "decimal(15,2)", l_tax = "decimal(15,2)", l_returnflag = "string", l_linestatus = "string", l_shipdate = "date", l_commitdate = "date", l_receiptdate = "date", l_shipinstruct = "string", l_shipmode = "string", l_comment = "string" }
keys = ["l_orderkey", "l_linenumber"]

[[gold]]
name = "daily_revenue"
sql = "sql/gold/daily_revenue.sql"
partition_by = ["l_shipdate"]
incremental = { strategy = "partitions" }

[[gold]]
name = "daily_revenue_full"
sql = "sql/gold/daily_revenue.sql"
partition_by = ["l_shipdate"]

[[gold]]
name = "net_lines"
sql = "sql/gold/net_lines.sql"
incremental = { strategy = "merge", unique_key = ["l_orderkey", "l_linenumber"] }

[[gold]]
name = "net_lines_full"
sql = "sql/gold/net_lines.sql"
"""

DAILY = """SELECT l_shipdate, COUNT(*) AS lines,
       SUM(l_extendedprice * (1 - l_discount)) AS revenue
FROM silver.lineitem GROUP BY l_shipdate"""

NET = """SELECT l_orderkey, l_linenumber, l_shipdate,
       l_extendedprice * (1 - l_discount) AS net
FROM silver.lineitem"""

PEER_MERGE = r"""
import sys, time, resource
import pyarrow as pa, pyarrow.csv as pc
from deltalake import DeltaTable
table_dir, changes = sys.argv[1], sys.argv[2]
dt = DeltaTable(table_dir)
schema = pa.schema(dt.schema().to_arrow())
t = time.perf_counter()
src = pc.read_csv(changes, convert_options=pc.ConvertOptions(column_types=schema))
src = src.select(schema.names).cast(schema)
on = "t.l_orderkey = s.l_orderkey AND t.l_linenumber = s.l_linenumber"
m = (dt.merge(src, on, source_alias="s", target_alias="t")
       .when_matched_update_all().when_not_matched_insert_all().execute())
print(f"{time.perf_counter() - t:.3f} {m['num_target_rows_updated']}")
"""


def run(cmd, cwd=None):
    """Runs `cmd`; returns (seconds, peak RSS MiB, stdout)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    out, err = p.stdout.read(), p.stderr.read()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out}\n{err}")
    return secs, usage.ru_maxrss / 1024, out


def assay(binary, project, *args):
    return run([binary, "--project", project, "run", *args])


def write_rows(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="1")
    ap.add_argument("--assay", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "assay"))
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    binary = os.path.abspath(a.assay)
    work = a.keep or tempfile.mkdtemp(prefix="assay-incr-")
    os.makedirs(work, exist_ok=True)
    project = os.path.join(work, "project")
    data = os.path.join(project, "data", "lineitem")
    os.makedirs(data, exist_ok=True)
    os.makedirs(os.path.join(project, "sql", "gold"), exist_ok=True)
    with open(os.path.join(project, "assay.toml"), "w") as f:
        f.write(PROJECT)
    with open(os.path.join(project, "sql", "gold", "daily_revenue.sql"), "w") as f:
        f.write(DAILY)
    with open(os.path.join(project, "sql", "gold", "net_lines.sql"), "w") as f:
        f.write(NET)
    # A kept directory is reused for its generated CSV only: every run starts from no lake.
    shutil.rmtree(os.path.join(project, "lakehouse"), ignore_errors=True)
    for name in ("append.csv", "changes.csv"):
        if os.path.exists(os.path.join(data, name)):
            os.remove(os.path.join(data, name))
    base = os.path.join(data, "base.csv")
    if not os.path.exists(base):
        gen = os.path.join(work, "gen")
        subprocess.run(["tpchgen-cli", "csv", "-s", a.scale, "--tables", "lineitem",
                        "--output-dir", gen], check=True)
        shutil.move(os.path.join(gen, "lineitem.csv"), base)
    # One pass over the CSV: every 100th line becomes a changed row, every 100th (offset)
    # line the model of an appended one.
    step = 100
    n, max_key, sample_new, changed = 0, 0, [], []
    with open(base, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        for r in reader:
            max_key = max(max_key, int(r[0]))
            if n % step == 0:
                sample_new.append(r)
            elif n % step == step // 2:
                r[4] = str(int(float(r[4])) + 1)
                r[15] = "changed"
                changed.append(r)
            n += 1
    print(f"lineitem: {n:,} rows, {os.path.getsize(base) / 1e6:.0f} MB CSV; "
          f"machine: {os.cpu_count()} cores", flush=True)

    secs, rss, _ = assay(binary, project)
    print(f"initial medallion (bronze, silver with keys, 4 gold): {secs:.1f} s, {rss:.0f} MiB", flush=True)

    # 1% appended: new orders shipped on four new days (a daily load).
    new = []
    for i, r in enumerate(sample_new):
        r = list(r)
        r[0] = str(max_key + 1 + i)
        r[3] = "1"
        r[10] = f"1998-12-{2 + i % 4:02d}"
        new.append(r)
    write_rows(os.path.join(data, "append.csv"), [header] + new)
    secs, rss, _ = assay(binary, project, "--select", "bronze.lineitem")
    print(f"bronze ingest of the 1% append ({len(new):,} rows): {secs:.2f} s, {rss:.0f} MiB")
    secs, rss, _ = assay(binary, project, "--select", "silver.lineitem")
    print(f"silver MERGE of the 1% append (new keys): {secs:.2f} s, {rss:.0f} MiB")
    results = {}
    for model in ["daily_revenue", "daily_revenue_full", "net_lines", "net_lines_full"]:
        secs, rss, _ = assay(binary, project, "--select", f"gold.{model}")
        results[model] = (secs, rss)
        print(f"gold.{model} after the append: {secs:.2f} s, {rss:.0f} MiB", flush=True)
    for inc, full in [("daily_revenue", "daily_revenue_full"), ("net_lines", "net_lines_full")]:
        (si, ri), (sf, rf) = results[inc], results[full]
        print(f"  {inc}: incremental/full = {si / sf:.2f}x time, {ri / rf:.2f}x memory")

    # 1% changed: existing keys with a new quantity and comment.
    changes = os.path.join(work, "changes.csv")
    write_rows(changes, [header] + changed)
    silver = os.path.join(project, "lakehouse", "silver", "lineitem")
    peer_table = os.path.join(work, "peer_lineitem")
    shutil.rmtree(peer_table, ignore_errors=True)
    shutil.copytree(silver, peer_table)
    shutil.copy(changes, os.path.join(data, "changes.csv"))
    assay(binary, project, "--select", "bronze.lineitem")
    secs, rss, _ = assay(binary, project, "--select", "silver.lineitem")
    print(f"silver MERGE of 1% changed rows ({len(changed):,}) into {n + len(new):,}: "
          f"assay {secs:.2f} s, {rss:.0f} MiB", flush=True)
    psecs, prss, out = run([sys.executable, "-c", PEER_MERGE, peer_table, changes])
    merge_secs, updated = out.split()
    print(f"  python deltalake merge of the same rows into a copy of the same table: "
          f"{psecs:.2f} s process ({merge_secs} s in merge, {updated} updated), {prss:.0f} MiB")
    print(f"  assay/deltalake = {secs / psecs:.2f}x time, {rss / prss:.2f}x memory")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

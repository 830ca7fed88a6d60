#!/usr/bin/env python3
"""Compaction of a table of many small files, beside delta-rs' own (python `deltalake`).

    python3 benches/optimize.py [--files 1000] [--rows 2000] [--assay PATH] [--write BENCHMARKS.md]

1. Writes a Delta table of `--files` appends of `--rows` rows each (id, kind, amount, ts)
   with python `deltalake`: one small file per commit, as bronze ingests leave them.
2. Copies it three times and times, with the peak RSS of each process: `assay optimize`
   (compaction), `assay optimize --zorder-by kind,id`, and python `deltalake`'s
   `optimize.compact()` and `optimize.z_order(["kind", "id"])` on their own copies.
3. Times two reads of each table before and after, in a fresh process each (python
   `deltalake` + pyarrow, the reader independent of both writers): a full scan
   (`SUM(amount)`) and a filter (`kind = 'k3' AND id < 1000`, rows and files scanned after
   pruning). Checks every optimized copy holds the same rows (count and sum).

Prints a Markdown table and, with `--write`, puts it into that file between
`<!-- optimize:begin -->` and `<!-- optimize:end -->`. Needs a release build and
`scripts/bench-setup.sh`.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

READ = r"""
import json, sys, time
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
path = sys.argv[1]
t0 = time.perf_counter()
dt = DeltaTable(path)
data = dt.to_pyarrow_dataset()
full = data.to_table(columns=["amount"])
total = pc.sum(full["amount"]).as_py()
t1 = time.perf_counter()
dt = DeltaTable(path)
flt = (ds.field("kind") == "k3") & (ds.field("id") < 1000)
data = dt.to_pyarrow_dataset()
frags = [f for f in data.get_fragments(filter=flt)]
kept = 0
for f in frags:
    for rg in f.split_by_row_group(filter=flt):
        kept += 1
hits = data.to_table(filter=flt).num_rows
t2 = time.perf_counter()
print(json.dumps({"full_s": t1 - t0, "filter_s": t2 - t1, "rows": full.num_rows,
                  "sum": round(total, 2), "hits": hits, "files": len(dt.file_uris()),
                  "row_groups_scanned": kept}), flush=True)
import os
os._exit(0)
"""

WRITE = r"""
import random, sys
import pyarrow as pa
from deltalake import write_deltalake
path, files, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
for i in range(files):
    ids = list(range(i * rows, (i + 1) * rows))
    rng.shuffle(ids)
    batch = pa.table({
        "id": pa.array(ids, pa.int64()),
        "kind": pa.array([f"k{rng.randrange(10)}" for _ in range(rows)]),
        "amount": pa.array([rng.random() * 100 for _ in range(rows)]),
        "ts": pa.array([1_700_000_000_000_000 + i] * rows, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })
    write_deltalake(path, batch, mode="append")
import os
os._exit(0)
"""

PEER = r"""
import sys
from deltalake import DeltaTable
path, how = sys.argv[1], sys.argv[2]
dt = DeltaTable(path)
if how == "compact":
    dt.optimize.compact(target_size=128 * 1024 * 1024)
else:
    dt.optimize.z_order(["kind", "id"], target_size=128 * 1024 * 1024)
import os
os._exit(0)
"""


def timed(cmd, cwd=None):
    """Runs cmd; returns (seconds, peak RSS MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return elapsed, rss_kb / 1024, proc.stdout


def read(path):
    """The best of three fresh-process reads."""
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"reading {path} failed:\n{out.stderr}")
        runs.append(json.loads(out.stdout))
    best = dict(runs[0])
    best["full_s"] = min(r["full_s"] for r in runs)
    best["filter_s"] = min(r["filter_s"] for r in runs)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--assay", default=str(REPO / "target/release/assay"))
    ap.add_argument("--write")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="assay-optimize-"))
    try:
        base = work / "base" / "gold" / "events"
        base.parent.mkdir(parents=True)
        print(f"writing {args.files} commits of {args.rows} rows ...", file=sys.stderr)
        subprocess.run([sys.executable, "-c", WRITE, str(base), str(args.files), str(args.rows)], check=True)
        before = read(base)
        results = []
        for label, how in [("compact", None), ("Z-order by kind, id", "kind,id")]:
            # Assay on its own copy of the lake.
            lake = work / f"assay-{label[:7].strip()}"
            shutil.copytree(work / "base", lake / "lake")
            (lake / "assay.toml").write_text('[lake]\nroot = "file://./lake"\n')
            cmd = [args.assay, "--project", str(lake), "optimize"]
            if how:
                cmd += ["--zorder-by", how]
            a_s, a_rss, a_out = timed(cmd)
            a_read = read(lake / "lake" / "gold" / "events")
            # delta-rs (python) on its own copy.
            peer = work / f"peer-{label[:7].strip()}" / "events"
            shutil.copytree(base, peer)
            p_s, p_rss, _ = timed([sys.executable, "-c", PEER, str(peer), "z_order" if how else "compact"])
            p_read = read(peer)
            for r in (a_read, p_read):
                if (r["rows"], r["sum"], r["hits"]) != (before["rows"], before["sum"], before["hits"]):
                    sys.exit(f"rows changed: {r} vs {before}")
            results.append((label, a_s, a_rss, a_read, p_s, p_rss, p_read))

        cpu = os.cpu_count()
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        lines = [
            f"Machine: {cpu} cores ({platform.machine()}), {mem:.0f} GiB; a table of {args.files:,} files "
            f"({args.files:,} commits of {args.rows:,} rows: id, kind, amount, ts; {before['rows']:,} rows) "
            "on local disk, written by python `deltalake`. Reads: python `deltalake` + pyarrow in a fresh "
            "process, best of 3; filter `kind = 'k3' AND id < 1000`.",
            "",
            "| | optimize | peak RSS | files after | full scan | filtered read (row groups scanned) |",
            "|---|---|---|---|---|---|",
            f"| before | — | — | {before['files']:,} | {before['full_s']:.2f} s | {before['filter_s']:.2f} s ({before['row_groups_scanned']:,}) |",
        ]
        for label, a_s, a_rss, a_read, p_s, p_rss, p_read in results:
            lines.append(
                f"| `assay optimize` ({label}) | {a_s:.2f} s | {a_rss:.0f} MiB | {a_read['files']} | "
                f"{a_read['full_s']:.2f} s | {a_read['filter_s']:.2f} s ({a_read['row_groups_scanned']:,}) |"
            )
            lines.append(
                f"| python `deltalake` ({label}) | {p_s:.2f} s ({a_s / p_s:.2f}x) | {p_rss:.0f} MiB | {p_read['files']} | "
                f"{p_read['full_s']:.2f} s | {p_read['filter_s']:.2f} s ({p_read['row_groups_scanned']:,}) |"
            )
        table = "\n".join(lines)
        print(table)
        if args.write:
            doc = Path(args.write).read_text()
            block = f"<!-- optimize:begin -->\n{table}\n<!-- optimize:end -->"
            if "<!-- optimize:begin -->" in doc:
                doc = re.sub(r"<!-- optimize:begin -->.*?<!-- optimize:end -->", lambda _: block, doc, flags=re.S)
            else:
                doc += "\n" + block + "\n"
            Path(args.write).write_text(doc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

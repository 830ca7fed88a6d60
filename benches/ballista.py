#!/usr/bin/env python3
"""The 22 TPC-H queries as gold models: local mode vs a Ballista cluster of Assay processes.

    python3 benches/ballista.py [--scale 1] [--assay PATH] [--runs 2] [--data DIR] [--write BENCHMARKS.md]

1. Generates TPC-H CSV at the scale (PyPI `tpchgen-cli`, reused with `--data`) and builds
   bronze and silver with the real binary (as `benches/tpch.py` does).
2. Adds the 22 queries (`tests/tpch/queries`) as gold models `gold.q01` ... over silver,
   run one at a time (`[run] parallelism = 1`) so each step's time is its query's.
3. Rebuilds them (`assay run --select gold --full-refresh --output json`) `--runs` times in
   each mode: `--engine local`; `--engine ballista` with a scheduler and one executor;
   with a second executor. Executors run 2 tasks at once each (the machine's cores).
4. Checks every gold table of each cluster mode equals local mode's (rows in any order,
   decimals exact), and times a one-row model (`SELECT count(*) FROM silver.region`):
   what a job costs on the cluster beyond its work.

Prints the table and, with `--write`, puts it between `<!-- ballista:begin -->` and
`<!-- ballista:end -->` of that file. Needs `scripts/bench-setup.sh` and a release build.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tpch  # noqa: E402  (the medallion project and the query rewrite)

REPO = Path(__file__).resolve().parent.parent
QUERIES = REPO / "tests" / "tpch" / "queries"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


class Cluster:
    """`assay cluster scheduler` and `executors` executors of the project's lake."""

    def __init__(self, bin_, proj, executors, work):
        self.port = free_port()
        self.procs = [subprocess.Popen(
            [bin_, "cluster", "scheduler", "--bind", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        wait_port(self.port)
        for i in range(executors):
            flight, grpc = free_port(), free_port()
            wd = work / f"executor-{self.port}-{i}"
            wd.mkdir(parents=True)
            self.procs.append(subprocess.Popen(
                [bin_, "--project", str(proj), "cluster", "executor",
                 "--scheduler", f"df://127.0.0.1:{self.port}",
                 "--flight-port", str(flight), "--grpc-port", str(grpc),
                 "--concurrent-tasks", "2", "--work-dir", str(wd)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(flight)
            wait_port(grpc)

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
            p.wait()


def set_scheduler(proj, port):
    text = (proj / "assay.toml").read_text()
    text = text.split("\n[engine.ballista]")[0]
    (proj / "assay.toml").write_text(
        f'{text}\n[engine.ballista]\nscheduler = "df://127.0.0.1:{port}"\n')


def rebuild(bin_, proj, engine, select="gold"):
    """Step durations (s) of one full rebuild of the selected models, by table."""
    out = subprocess.run(
        [bin_, "--project", str(proj), "run", "--select", select, "--full-refresh",
         "--engine", engine, "--output", "json"],
        capture_output=True, text=True)
    report = json.loads(out.stdout)
    if report["status"] != "succeeded":
        sys.exit(f"{engine} run failed:\n{out.stderr[-3000:]}")
    return {s["table"]: s["duration_ms"] / 1000 for s in report["steps"]}


def snapshot(proj):
    """Every gold table's rows, sorted, as text."""
    code = """
import os, sys, json
from pathlib import Path
from deltalake import DeltaTable
out = {}
for d in sorted(Path(sys.argv[1]).iterdir()):
    rows = DeltaTable(str(d)).to_pyarrow_table().to_pylist()
    out[d.name] = sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)
print(json.dumps(out), flush=True)
os._exit(0)  # the dataset's threads can abort the interpreter's teardown
"""
    out = subprocess.run([sys.executable, "-c", code, str(proj / "lakehouse" / "gold")],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    ap.add_argument("--assay", default=str(target / "release" / "assay"))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--data", help="where the CSVs are (generated when missing)")
    ap.add_argument("--write", help="Markdown file to put the result table into")
    args = ap.parse_args()
    bin_ = args.assay
    work = Path(tempfile.mkdtemp(prefix="assay-ballista-"))
    data = Path(args.data) if args.data else work / "csv"
    if not (data / "lineitem.csv").exists():
        subprocess.run(["tpchgen-cli", "csv", "-s", str(args.scale), f"--output-dir={data}"],
                       check=True)
    proj = work / "project"
    tpch.project(proj, data, list(tpch.TABLES))
    with open(proj / "assay.toml", "a") as f:
        f.write("[run]\nparallelism = 1\n")
    (proj / "sql" / "gold").mkdir(parents=True)
    for q in sorted(QUERIES.glob("q*.sql")):
        sql = tpch.lake_queries(q.read_text()).strip().rstrip(";")
        (proj / "sql" / "gold" / q.name).write_text(sql)
    (proj / "sql" / "gold" / "tiny.sql").write_text("SELECT count(*) AS n FROM silver.region")
    medallion_s, _, _ = tpch.timed([bin_, "--project", str(proj), "run", "--select", "bronze silver"])
    print(f"medallion: {medallion_s:.1f} s", flush=True)

    modes = [("local", None), ("ballista, 1 executor", 1), ("ballista, 2 executors", 2)]
    times, tiny, same = {}, {}, {}
    reference = None
    for name, executors in modes:
        cluster = None
        if executors:
            cluster = Cluster(bin_, proj, executors, work)
            set_scheduler(proj, cluster.port)
        engine = "ballista" if executors else "local"
        try:
            rebuild(bin_, proj, engine)  # warm: first connections, the OS page cache
            runs = [rebuild(bin_, proj, engine, "gold") for _ in range(args.runs)]
            tiny[name] = statistics.median(
                rebuild(bin_, proj, engine, "gold.tiny")["gold.tiny"] for _ in range(5))
        finally:
            if cluster:
                cluster.stop()
        times[name] = {t: statistics.median(r[t] for r in runs) for t in runs[0]}
        got = snapshot(proj)
        if reference is None:
            reference = got
        else:
            same[name] = [t for t in reference if got.get(t) != reference[t]]
        print(name, {k: round(v, 2) for k, v in sorted(times[name].items())}, flush=True)

    queries = [f"gold.q{i:02d}" for i in range(1, 23)]
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"TPC-H SF{args.scale:g} (`tpchgen-cli csv`), {cores} cores, {mem:.0f} GiB, "
        f"{time.strftime('%Y-%m-%d')}; `python3 benches/ballista.py --scale {args.scale:g}`, "
        f"medians of {args.runs}; each query a gold model rebuilt in full (query + Delta "
        "write of its answer), models one at a time.",
        "",
        "| query | local | Ballista, 1 executor | Ballista, 2 executors | 1 exec / local | 2 exec / local |",
        "|---|---|---|---|---|---|",
    ]
    names = [m[0] for m in modes]
    for q in queries + ["sum"]:
        if q == "sum":
            vals = [sum(times[n][x] for x in queries) for n in names]
            label = "**sum of 22**"
        else:
            vals = [times[n][q] for n in names]
            label = q.removeprefix("gold.")
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f} s" for v in vals)
                     + f" | {vals[1] / vals[0]:.2f}x | {vals[2] / vals[0]:.2f}x |")
    lines.append(
        "| one-row model (`count(*)` of `silver.region`) | "
        + " | ".join(f"{tiny[n]:.3f} s" for n in names)
        + f" | +{tiny[names[1]] - tiny[names[0]]:.3f} s | +{tiny[names[2]] - tiny[names[0]]:.3f} s |")
    lines.append("")
    for n, diff in same.items():
        lines.append(f"- {n}: "
                     + ("all 23 gold tables equal local mode's, row for row" if not diff
                        else f"**differs from local mode**: {', '.join(diff)}"))
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = Path(args.write)
        doc = path.read_text()
        begin, end = "<!-- ballista:begin -->", "<!-- ballista:end -->"
        head, rest = doc.split(begin)
        _, tail = rest.split(end)
        path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()

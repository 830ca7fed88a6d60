"""Reads Assay's tables with an independent Delta reader (the Python `deltalake` package).

Usage: read_tables.py LAKE_DIR layer.table ...
Prints {"layer.table": {"rows": N, ...}} as JSON.
"""
import json
import os
import sys
from decimal import Decimal

from deltalake import DeltaTable

lake = sys.argv[1]
out = {}
for name in sys.argv[2:]:
    layer, table = name.split(".", 1)
    data = DeltaTable(f"{lake}/{layer}/{table}").to_pyarrow_table()
    info = {"rows": data.num_rows}
    if name == "gold.daily_revenue":
        total = sum((v for v in data.column("revenue").to_pylist()), Decimal("0"))
        info["revenue_total"] = f"{total:.2f}"
    out[name] = info
print(json.dumps(out), flush=True)
# The Rust runtime inside deltalake can abort during interpreter teardown; skip it.
os._exit(0)

"""Reads one Delta table with an independent reader (the Python `deltalake` package) and
prints what a test compares: rows, an order-independent digest of them, version, files.

Usage: table_digest.py TABLE_URI [VERSION]
Storage options (S3, Azure) come as JSON in the environment variable STORAGE_OPTIONS.
Prints {"rows": N, "digest": "...", "version": V, "files": F, "partitions": [...]}.
"""
import hashlib
import json
import os
import sys

from deltalake import DeltaTable

uri = sys.argv[1]
version = int(sys.argv[2]) if len(sys.argv) > 2 else None
options = json.loads(os.environ.get("STORAGE_OPTIONS", "{}"))
table = DeltaTable(uri, version=version, storage_options=options or None)
data = table.to_pyarrow_table()
columns = sorted(data.column_names)
rows = sorted(
    json.dumps([row[c] for c in columns], default=str) for row in data.to_pylist()
)
digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
out = {
    "rows": data.num_rows,
    "digest": digest,
    "version": table.version(),
    "files": len(table.file_uris()),
    "partitions": table.metadata().partition_columns,
}
print(json.dumps(out), flush=True)
# The Rust runtime inside deltalake can abort during interpreter teardown; skip it.
os._exit(0)

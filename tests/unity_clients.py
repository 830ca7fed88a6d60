"""Real Unity Catalog clients against `assay serve` (the `unity::` tests run this).

    python tests/unity_clients.py sdk ENDPOINT TOKEN CATALOG
        The official `unitycatalog-client` SDK (its strict pydantic models validate every
        answer): catalogs, schemas, every table page by page, one table, credentials. Needs
        the SDK's own virtualenv (scripts/setup.sh makes it: its pins clash with moto's).
    python tests/unity_clients.py duckdb ENDPOINT TOKEN CATALOG SCHEMA TABLE
        DuckDB with the unity_catalog, delta and httpfs extensions loaded from their PyPI
        packages by path (no download): CREATE SECRET, ATTACH, count the table's rows.
    python tests/unity_clients.py deltalake ENDPOINT TOKEN uc://CATALOG.SCHEMA.TABLE [KEY=VALUE...]
        python `deltalake` opening a `uc://` table and counting its rows. deltalake 1.6.6
        hangs in about two thirds of opens (a client-side deadlock), so each open runs in a
        child process (a fresh interpreter) with a 10 s timeout, retried up to 12 times.

Each mode prints one JSON document on stdout.
"""

import json
import multiprocessing
import os
import sys


def sdk(endpoint, token, catalog):
    import asyncio

    from unitycatalog.client import (
        ApiClient,
        CatalogsApi,
        Configuration,
        SchemasApi,
        TablesApi,
        TemporaryCredentialsApi,
    )
    from unitycatalog.client.models import GenerateTemporaryTableCredential

    async def main():
        config = Configuration(host=f"{endpoint}/api/2.1/unity-catalog")
        bearer = f"Bearer {token}"
        async with ApiClient(config, header_name="Authorization", header_value=bearer) as client:
            catalogs = await CatalogsApi(client).list_catalogs()
            schemas = await SchemasApi(client).list_schemas(catalog_name=catalog)
            tables, pages, token_ = [], 0, None
            for schema in schemas.schemas:
                token_ = None
                while True:
                    page = await TablesApi(client).list_tables(
                        catalog_name=catalog,
                        schema_name=schema.name,
                        max_results=1,
                        page_token=token_,
                    )
                    pages += 1
                    tables += [t.to_dict() for t in page.tables or []]
                    token_ = page.next_page_token
                    if not token_:
                        break
            first = tables[0]
            one = await TablesApi(client).get_table(
                f"{catalog}.{first['schema_name']}.{first['name']}"
            )
            creds = await TemporaryCredentialsApi(client).generate_temporary_table_credentials(
                GenerateTemporaryTableCredential(table_id=one.table_id, operation="READ")
            )
            return {
                "catalogs": [c.name for c in catalogs.catalogs],
                "schemas": [s.full_name for s in schemas.schemas],
                "tables": [f"{t['schema_name']}.{t['name']}" for t in tables],
                "pages": pages,
                "table": one.to_dict(),
                "credentials": creds.to_dict(),
            }

    return asyncio.run(main())


def duckdb_count(endpoint, token, catalog, schema, table):
    import duckdb
    import duckdb_extension_delta
    import duckdb_extension_httpfs
    import duckdb_extension_unity_catalog

    def path(module, name):
        base = os.path.join(os.path.dirname(module.__file__), "extensions")
        (version,) = os.listdir(base)
        return os.path.join(base, version, f"{name}.duckdb_extension")

    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for module, name in [
        (duckdb_extension_httpfs, "httpfs"),
        (duckdb_extension_delta, "delta"),
        (duckdb_extension_unity_catalog, "unity_catalog"),
    ]:
        con.execute(f"LOAD '{path(module, name)}'")
    con.execute(
        "CREATE SECRET (TYPE UNITY_CATALOG, TOKEN ?, ENDPOINT ?, AWS_REGION 'us-east-1')",
        [token, endpoint],
    )
    con.execute(f"ATTACH '{catalog}' AS lake (TYPE UNITY_CATALOG, DEFAULT_SCHEMA '{schema}')")
    (count,) = con.execute(f"SELECT count(*) FROM lake.{schema}.{table}").fetchone()
    return {"count": count}


def _open(uri, options, out):
    try:
        from deltalake import DeltaTable

        dt = DeltaTable(uri, storage_options=options)
        out.put({"count": dt.to_pyarrow_table().num_rows, "version": dt.version()})
    except Exception as e:  # reported to the parent, which retries only hangs
        out.put({"error": f"{type(e).__name__}: {e}"})


def deltalake_count(endpoint, token, uri, extra):
    options = {
        "unity_workspace_url": endpoint,
        "unity_access_token": token,
        "unity_allow_http_url": "true",
        **dict(kv.split("=", 1) for kv in extra),
    }
    hangs = 0
    # A fresh interpreter per attempt ("spawn"): nothing of this process is inherited.
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(12):
        out = ctx.Queue()
        child = ctx.Process(target=_open, args=(uri, options, out))
        child.start()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
            hangs += 1
            continue
        result = out.get(timeout=5)
        result["hangs"] = hangs
        return result
    return {"error": f"deltalake hung {hangs} times", "hangs": hangs}


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "sdk":
        print(json.dumps(sdk(*args)))
    elif mode == "duckdb":
        print(json.dumps(duckdb_count(*args)))
    elif mode == "deltalake":
        print(json.dumps(deltalake_count(args[0], args[1], args[2], args[3:])))
    else:
        sys.exit(f"unknown mode {mode}")

"""Drives Assay's Flight SQL server with the real ADBC driver (adbc-driver-flightsql).

Usage: flight_adbc.py URI ADMIN_USER ADMIN_PASSWORD READER_USER READER_PASSWORD
Exits non-zero with a message on the first failed check.
"""
import os
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager

uri, admin, admin_pw, reader, reader_pw = sys.argv[1:6]


def connect(user, password):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": password})


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        os._exit(1)
    print(f"ok: {what}", flush=True)


with connect(admin, admin_pw) as conn:
    cur = conn.cursor()
    cur.execute("SELECT product_id, name, category, price FROM gold.products ORDER BY product_id")
    table = cur.fetch_arrow_table()
    check(table.num_rows == 4, "query a gold table")
    check(table.column("name").to_pylist()[0] == "Espresso beans", "values come through")
    check(str(table.schema.field("name").type) == "string", "strings arrive as utf8")

    cur.execute("SELECT name FROM gold.products WHERE category = ? ORDER BY name", parameters=("C",))
    names = cur.fetch_arrow_table().column("name").to_pylist()
    check(names == ["Ceramic mug", "Travel tumbler"], "prepared statement with a bound parameter")

    objects = conn.adbc_get_objects().read_all().to_pylist()
    catalogs = [o["catalog_name"] for o in objects]
    check(catalogs == ["assay"], "adbc_get_objects lists the catalog")
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    check({"bronze", "silver", "gold", "_system"} <= set(schemas), "and every schema for an admin")
    gold_tables = {t["table_name"]: t for t in schemas["gold"]["db_schema_tables"]}
    check("products" in gold_tables, "and the tables")
    columns = [c["column_name"] for c in gold_tables["products"]["table_columns"]]
    check(columns == ["product_id", "name", "category", "price"], "and the columns")

    schema = conn.adbc_get_table_schema("products", db_schema_filter="gold")
    check(schema.names == ["product_id", "name", "category", "price"], "adbc_get_table_schema")

    try:
        cur.execute("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'")
        cur.fetch_arrow_table()
        check(False, "CREATE EXTERNAL TABLE is refused")
    except adbc_driver_manager.Error as e:
        check("read-only" in str(e), "CREATE EXTERNAL TABLE is refused")

try:
    with connect(admin, "wrong") as conn:
        conn.cursor().execute("SELECT 1")
    check(False, "a wrong password fails")
except adbc_driver_manager.Error:
    check(True, "a wrong password fails")

with connect(reader, reader_pw) as conn:
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) AS n FROM gold.products")
    check(cur.fetch_arrow_table().column("n").to_pylist() == [4], "a reader reads gold")
    try:
        cur.execute("SELECT * FROM silver.orders")
        cur.fetch_arrow_table()
        check(False, "a reader cannot see silver")
    except adbc_driver_manager.Error as e:
        check("not found" in str(e).lower(), "a reader cannot see silver")
    objects = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
    names = [s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]]
    check(names == ["gold"], "a reader's catalog shows only gold")

print("all checks passed", flush=True)
os._exit(0)

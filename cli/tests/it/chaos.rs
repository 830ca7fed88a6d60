//! Chaos: `assay run` on TPC-H data (generated here with `tpchgen`) killed with SIGKILL at
//! random moments, each kill followed by a rerun that must give every table exactly as an
//! uninterrupted run does (row counts and content hashes) and leave nothing that breaks a
//! later run (which succeeds and commits nothing).
//!
//! `ASSAY_CHAOS_SCALE` (default 0.01) sets the TPC-H scale factor, `ASSAY_CHAOS_TRIALS`
//! (default 20) the number of kills, `ASSAY_FUZZ_SEED` the moments chosen (as for the fuzz
//! targets).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::row::{RowConverter, SortField};
use assay_engine::table::Layer;

use crate::kit::Fixture;

/// Columns whose values differ between two runs of the same input by design.
const VOLATILE: [&str; 4] = ["_run_id", "_ingested_at", "_batch_id", "_quarantined_at"];

/// The eight TPC-H tables, every column typed in silver (the ones not listed as strings)
/// and keyed, and three gold models of two strategies.
fn project(data: &Path) -> String {
    let mut toml = medallion(data);
    toml.push_str(
        r#"[[gold]]
name = "pricing_summary"

[[gold]]
name = "shipping_priority"
incremental = { strategy = "merge", unique_key = ["l_orderkey"] }
stream = "silver.lineitem"

[[gold]]
name = "revenue_by_nation"
"#,
    );
    toml
}

/// The eight TPC-H tables read from `data/<table>/*.csv` into bronze, and into silver with
/// every column typed (the ones not listed as strings) and keyed.
pub(crate) fn medallion(data: &Path) -> String {
    use tpchgen::csv::{
        CustomerCsv, LineItemCsv, NationCsv, OrderCsv, PartCsv, PartSuppCsv, RegionCsv, SupplierCsv,
    };
    let tables: [(&str, &str, &[&str], &str); 8] = [
        (
            "region",
            RegionCsv::header(),
            &["r_regionkey"],
            "r_regionkey",
        ),
        (
            "nation",
            NationCsv::header(),
            &["n_nationkey", "n_regionkey"],
            "n_nationkey",
        ),
        (
            "supplier",
            SupplierCsv::header(),
            &["s_suppkey", "s_nationkey", "s_acctbal"],
            "s_suppkey",
        ),
        (
            "customer",
            CustomerCsv::header(),
            &["c_custkey", "c_nationkey", "c_acctbal"],
            "c_custkey",
        ),
        (
            "part",
            PartCsv::header(),
            &["p_partkey", "p_size", "p_retailprice"],
            "p_partkey",
        ),
        (
            "partsupp",
            PartSuppCsv::header(),
            &["ps_partkey", "ps_suppkey", "ps_availqty", "ps_supplycost"],
            "ps_partkey, ps_suppkey",
        ),
        (
            "orders",
            OrderCsv::header(),
            &[
                "o_orderkey",
                "o_custkey",
                "o_totalprice",
                "o_orderdate",
                "o_shippriority",
            ],
            "o_orderkey",
        ),
        (
            "lineitem",
            LineItemCsv::header(),
            &[
                "l_orderkey",
                "l_partkey",
                "l_suppkey",
                "l_linenumber",
                "l_quantity",
                "l_extendedprice",
                "l_discount",
                "l_tax",
                "l_shipdate",
                "l_commitdate",
                "l_receiptdate",
            ],
            "l_orderkey, l_linenumber",
        ),
    ];
    let data = data.display();
    let mut toml = String::new();
    for (name, header, typed, keys) in tables {
        let columns: Vec<String> = header
            .split(',')
            .map(|c| {
                let ty = match c {
                    _ if !typed.contains(&c) => "string",
                    _ if c.ends_with("date") => "date",
                    _ if c.ends_with("key") || c.ends_with("number") => "bigint",
                    "p_size" | "ps_availqty" | "o_shippriority" => "int",
                    _ => "decimal(15,2)",
                };
                format!("{c} = \"{ty}\"")
            })
            .collect();
        let keys: Vec<String> = keys.split(", ").map(|k| format!("\"{k}\"")).collect();
        writeln!(
            toml,
            "[[bronze]]\nname = \"{name}\"\nsource = {{ kind = \"files\", path = \"{data}/{name}/*.csv\" }}\n\n\
             [[silver]]\nname = \"{name}\"\nfrom = \"bronze.{name}\"\ncolumns = {{ {} }}\nkeys = [{}]\n",
            columns.join(", "),
            keys.join(", ")
        )
        .unwrap();
    }
    toml
}

const MODELS: [(&str, &str); 3] = [
    (
        "pricing_summary",
        "SELECT l_returnflag, l_linestatus, SUM(l_quantity) AS sum_qty,
                SUM(l_extendedprice * (1 - l_discount)) AS sum_disc_price, COUNT(*) AS count_order
         FROM silver.lineitem WHERE l_shipdate <= DATE '1998-09-02'
         GROUP BY l_returnflag, l_linestatus",
    ),
    (
        "shipping_priority",
        "SELECT l_orderkey, SUM(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
         FROM silver.customer JOIN silver.orders ON c_custkey = o_custkey
              JOIN silver.lineitem ON l_orderkey = o_orderkey
         WHERE c_mktsegment = 'BUILDING'
         GROUP BY l_orderkey, o_orderdate, o_shippriority",
    ),
    (
        "revenue_by_nation",
        "SELECT n_name, SUM(l_extendedprice * (1 - l_discount)) AS revenue
         FROM silver.lineitem JOIN silver.supplier ON l_suppkey = s_suppkey
              JOIN silver.nation ON s_nationkey = n_nationkey
         GROUP BY n_name",
    ),
];

/// Writes the eight tables as CSV files with headers, the large ones in two parts (two
/// files, so bronze commits several files at once).
pub(crate) fn generate(dir: &Path, scale: f64) {
    use tpchgen::csv::{
        CustomerCsv, LineItemCsv, NationCsv, OrderCsv, PartCsv, PartSuppCsv, RegionCsv, SupplierCsv,
    };
    use tpchgen::generators::{
        CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
        PartSuppGenerator, RegionGenerator, SupplierGenerator,
    };
    macro_rules! table {
        ($name:literal, $parts:literal, $gen:ident, $csv:ident) => {
            std::fs::create_dir_all(dir.join($name)).unwrap();
            for part in 1..=$parts {
                let mut text = String::new();
                writeln!(text, "{}", $csv::header()).unwrap();
                for row in $gen::new(scale, part, $parts).iter() {
                    writeln!(text, "{}", $csv::new(row)).unwrap();
                }
                std::fs::write(dir.join($name).join(format!("part-{part}.csv")), text).unwrap();
            }
        };
    }
    table!("region", 1, RegionGenerator, RegionCsv);
    table!("nation", 1, NationGenerator, NationCsv);
    table!("supplier", 1, SupplierGenerator, SupplierCsv);
    table!("customer", 2, CustomerGenerator, CustomerCsv);
    table!("part", 2, PartGenerator, PartCsv);
    table!("partsupp", 2, PartSuppGenerator, PartSuppCsv);
    table!("orders", 2, OrderGenerator, OrderCsv);
    table!("lineitem", 2, LineItemGenerator, LineItemCsv);
}

/// Row count and an order-independent hash of the rows (all columns but the volatile ones)
/// of one table, with its column names and types.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    schema: String,
    rows: u64,
    hash: u64,
}

pub(crate) fn fingerprint(batches: &[RecordBatch]) -> Fingerprint {
    let mut fp = Fingerprint {
        schema: String::new(),
        rows: 0,
        hash: 0,
    };
    let Some(first) = batches.first() else {
        return fp;
    };
    let keep: Vec<usize> = first
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !VOLATILE.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    for i in &keep {
        let f = first.schema().field(*i).clone();
        write!(fp.schema, "{}:{} ", f.name(), f.data_type()).unwrap();
    }
    let fields = keep
        .iter()
        .map(|i| SortField::new(first.schema().field(*i).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).unwrap();
    for batch in batches {
        let columns: Vec<_> = keep.iter().map(|i| batch.column(*i).clone()).collect();
        let rows = converter.convert_columns(&columns).unwrap();
        for row in rows.iter() {
            let mut h = std::hash::DefaultHasher::new();
            row.as_ref().hash(&mut h);
            // A sum of row hashes: equal for equal multisets of rows, in any order.
            fp.hash = fp.hash.wrapping_add(h.finish());
            fp.rows += 1;
        }
    }
    fp
}

/// Every table of the lake but `_system`'s, by name.
async fn fingerprints(f: &Fixture) -> BTreeMap<String, Fingerprint> {
    let lake = f.lake();
    let mut all = BTreeMap::new();
    for layer in [Layer::Bronze, Layer::Silver, Layer::Gold] {
        for name in lake.table_names(layer).await.unwrap() {
            let table = format!("{}.{name}", layer.as_str());
            let batches = f.query(&format!("SELECT * FROM {table}")).await;
            all.insert(table, fingerprint(&batches));
        }
    }
    all
}

/// The latest version of every table.
async fn versions(f: &Fixture) -> BTreeMap<String, Option<i64>> {
    let mut all = BTreeMap::new();
    for layer in [Layer::Bronze, Layer::Silver, Layer::Gold] {
        for name in f.lake().table_names(layer).await.unwrap() {
            let table = format!("{}.{name}", layer.as_str());
            let version = f.version(&table).await;
            all.insert(table, version);
        }
    }
    all
}

fn project_at(toml: &str) -> Fixture {
    let f = Fixture::with_config(toml);
    for (name, sql) in MODELS {
        f.write(&format!("sql/gold/{name}.sql"), sql);
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kill_9s_at_random_moments_each_rerun_equals_the_uninterrupted_run() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    let scale = env("ASSAY_CHAOS_SCALE").unwrap_or(0.01);
    let trials = env("ASSAY_CHAOS_TRIALS").map_or(20, |t| t as u32);
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), scale);
    let toml = project(data.path());

    let reference = project_at(&toml);
    let started = Instant::now();
    reference.run_ok(&[]);
    let full = started.elapsed();
    let expected = fingerprints(&reference).await;
    assert_eq!(
        expected.len(),
        19,
        "8 bronze, 8 silver, 3 gold: {expected:?}"
    );
    assert!(expected["silver.lineitem"].rows > 50_000, "{scale}");

    let moments = assay_engine::fuzz::cases(trials, 0..1000u32);
    let mut killed = 0;
    for (trial, permille) in moments.iter().enumerate() {
        let f = project_at(&toml);
        // Anywhere from process start to the end of an uninterrupted run.
        let at = full.mul_f64(f64::from(*permille) / 1000.0);
        if assay_testkit::kill_after(f.command(&["run"]), at) {
            killed += 1;
        }

        f.run_ok(&[]);
        let got = fingerprints(&f).await;
        assert_eq!(got, expected, "trial {trial}: killed at {at:?} of {full:?}");
        // Nothing left over changes or breaks the next run: it succeeds and commits nothing.
        let before = versions(&f).await;
        f.run_ok(&[]);
        assert_eq!(versions(&f).await, before, "trial {trial}: a third run");
    }
    assert!(
        killed * 4 >= moments.len() * 3,
        "{killed} of {} runs were killed before they ended",
        moments.len()
    );
}

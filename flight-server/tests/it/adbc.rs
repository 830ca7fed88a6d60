//! The real Python ADBC Flight SQL driver against the server.

use assay_engine::query::QueryLimits;

use crate::kit::{ADMIN, READER, Server};

#[tokio::test]
async fn the_python_adbc_driver_works() {
    let server = Server::start(QueryLimits::default()).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/flight_adbc.py");
    let uri = format!("grpc://{}", server.addr);
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args([&uri, ADMIN.0, ADMIN.1, READER.0, READER.1])
        .output()
        .await
        .expect("python3 runs (scripts/setup.sh installs adbc-driver-flightsql)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

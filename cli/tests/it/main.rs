//! Integration tests: the real `assay` binary on real files and real Delta tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Instantiates each `async fn name(backend: Backend)` as three tests, `local::name`,
/// `s3::name` and `azure::name`: the lake on local disk, on a moto S3 server and on an
/// Azurite server, each started for the test on a free port and stopped after.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::kit::Backend::start("local")).await
            })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::kit::Backend::start("s3")).await
            })*
        }
        mod azure {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::kit::Backend::start("azure")).await
            })*
        }
    };
}

mod audits;
mod changes;
mod chaos;
mod cloud;
mod cluster;
mod console;
mod databases;
mod errors;
mod example;
mod incremental;
mod kit;
mod lifecycle;
mod loads;
mod recovery;
mod replicas;
mod schedules;
mod serve;
mod sources;
mod telemetry;
mod tls;
mod travel;
mod unity;

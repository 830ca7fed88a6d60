//! Flight SQL against a real server on a free port: arrow-flight's client and the Python
//! ADBC driver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adbc;
mod cloud;
mod errors;
mod kit;
mod rust_client;

//! Integration tests: the real `assay` binary on real files and real Delta tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod errors;
mod example;
mod kit;
mod recovery;
mod serve;

//! Integration tests: the real `assay` binary on real files and real Delta tables.

mod errors;
mod example;
mod kit;
mod recovery;

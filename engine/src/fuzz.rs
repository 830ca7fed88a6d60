//! Bounded property-based fuzzing (proptest) for the fuzz targets of the test suites:
//! `ASSAY_FUZZ_RUNS` sets how many cases a target tries, `ASSAY_FUZZ_SEED` which ones (a
//! fixed seed by default, so a CI run is repeatable). A failing case is shrunk to the
//! smallest input that still fails before it is reported.
//!
//! Compiled for tests and under the `fuzz` feature (the test suites of other crates).

use std::fmt::Debug;
use std::ops::Range;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// The default seed of every target's cases.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Cases a target tries: `ASSAY_FUZZ_RUNS`, else the target's default.
pub fn runs(default_cases: u32) -> u32 {
    env("ASSAY_FUZZ_RUNS").map_or(default_cases, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A runner of `cases` cases, seeded by `ASSAY_FUZZ_SEED`.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(env("ASSAY_FUZZ_SEED").unwrap_or(SEED)),
        // Nothing written next to the sources; a failure prints its (shrunk) input.
        failure_persistence: None,
        ..Config::default()
    })
}

/// Text of `len` pieces drawn from `alphabet`, joined by `sep`.
pub fn pieces(
    alphabet: &[&'static str],
    len: Range<usize>,
    sep: &'static str,
) -> BoxedStrategy<String> {
    proptest::collection::vec(proptest::sample::select(alphabet.to_vec()), len)
        .prop_map(move |v| v.join(sep))
        .boxed()
}

/// Runs `property` on the cases of `strategy`; the error names the smallest failing input.
///
/// # Errors
/// A case failed (or panicked): its shrunk input and the failure.
pub fn check<S>(
    default_cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Result<(), String>
where
    S: Strategy,
    S::Value: Debug,
{
    runner(runs(default_cases))
        .run(&strategy, property)
        .map_err(|e| e.to_string())
}

/// `n` cases of `strategy`, for targets that must await between cases (no shrinking).
pub fn cases<S: Strategy>(n: u32, strategy: S) -> Vec<S::Value> {
    let mut runner = runner(n);
    (0..n)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .collect()
}

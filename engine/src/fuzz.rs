//! Seeded random text for the bounded fuzz runs of the test suites: `ASSAY_FUZZ_RUNS` sets
//! how many cases a run tries, `ASSAY_FUZZ_SEED` which ones.

/// A xorshift generator with the run count of one fuzz test.
#[derive(Debug, Clone)]
pub struct Fuzz {
    state: u64,
    /// Cases to try (`ASSAY_FUZZ_RUNS`, else the test's default).
    pub runs: u64,
}

impl Fuzz {
    /// A generator for a test that tries `default_runs` cases unless told otherwise.
    pub fn new(default_runs: u64) -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Fuzz {
            state: env("ASSAY_FUZZ_SEED")
                .unwrap_or(0x9e37_79b9_7f4a_7c15)
                .max(1),
            runs: env("ASSAY_FUZZ_RUNS").unwrap_or(default_runs),
        }
    }

    /// The next random number.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Up to `max_pieces` pieces of `alphabet`, joined by `sep`.
    pub fn text(&mut self, alphabet: &[&str], max_pieces: u64, sep: &str) -> String {
        let n = self.below(max_pieces + 1);
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(sep)
    }
}

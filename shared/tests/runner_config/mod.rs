//! The proptest configuration the property tests share: run natively and on wasm32.

use proptest::test_runner::Config;

/// `cases` cases (callers ask for fewer on wasm32, where the runner is slower), and no failure
/// files (wasm32 has no filesystem).
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

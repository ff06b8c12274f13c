//! `ARCHITECTURE.md` stays true to the tree: every path it names (in backticks, with a `/`)
//! exists in the repository.

use std::path::Path;

/// The backticked spans of `text` that look like repository paths.
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            span.contains('/')
                && !span.contains(' ')
                && !span.starts_with('/')
                && !span.contains("://")
                && !span.contains('…')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace");
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(paths.len() > 30, "paths found: {paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| !root.join(path.trim_end_matches('/')).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing paths: {missing:?}"
    );
}

#[test]
fn the_check_reads_paths_and_skips_other_spans() {
    let text = "see `shared/src/key.rs`, `cargo test`, `/v1/keys`, `a/b c`, `edge/src/store/`";
    assert_eq!(named_paths(text), ["shared/src/key.rs", "edge/src/store/"]);
}

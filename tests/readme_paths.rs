//! The files README.md cites exist: every path in it that starts at a top-level folder of this
//! repository (`tests/…`, `cli/tests/…`, `python/tests/…`, `src/…`, `examples/…`, `scripts/…`,
//! `docs/…`, …) and names a `.rs`, `.py`, `.sh` or `.md` file. A newcomer looking up the test
//! behind a claim (the failure table's last column) found `tests/serve_load.rs` missing: it is
//! `cli/tests/serve_load.rs`. Bare file names (`mod.rs`) and paths outside the repository
//! (`../shared/…`, kernel documentation) are not checked.

use std::path::Path;

/// The top-level folders a cited path may start with.
const ROOTS: &[&str] = &[
    "src", "tests", "cli", "python", "examples", "benches", "scripts", "docs", "fuzz",
];

/// The extensions of the files checked.
const EXTENSIONS: &[&str] = &[".rs", ".py", ".sh", ".md"];

/// Every path in `text` that starts at one of [`ROOTS`] and ends in one of [`EXTENSIONS`]:
/// maximal runs of path characters (letters, digits, `_ . / -`), with a trailing `.` (end of
/// a sentence) dropped. A run preceded by `.` or `/` belongs to a longer path (`../x`) and
/// is skipped with it.
fn cited_paths(text: &str) -> Vec<&str> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut out = Vec::new();
    for token in text.split(|c: char| !is_path(c)) {
        let token = token.trim_end_matches('.');
        let rooted = ROOTS.iter().any(|r| {
            token
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if rooted && EXTENSIONS.iter().any(|e| token.ends_with(e)) {
            out.push(token);
        }
    }
    out
}

#[test]
fn the_scanner_finds_rooted_paths_only() {
    let text = "see `tests/serve_load.rs`, `cli/tests/cli_auth.rs` and python/tests/test_npy.py. \
                Not ../shared/cases/README.md, mod.rs, Documentation/x.rst or src/uring/.";
    assert_eq!(
        cited_paths(text),
        [
            "tests/serve_load.rs",
            "cli/tests/cli_auth.rs",
            "python/tests/test_npy.py"
        ]
    );
}

#[test]
fn every_path_the_readme_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let cited = cited_paths(&readme);
    // The README cites dozens (the failure table alone has more than 20): finding few means
    // the scanner broke, not that the README is clean.
    assert!(
        cited.len() >= 20,
        "only {} paths found: {cited:?}",
        cited.len()
    );
    let missing: Vec<&str> = cited
        .iter()
        .copied()
        .filter(|p| !root.join(p).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "README.md cites files that do not exist: {missing:?}"
    );
}

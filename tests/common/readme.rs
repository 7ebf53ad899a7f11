#![allow(dead_code)] // each test binary uses its own part of this module
//! The README's tables, read back so that tests can hold them to what they measured:
//! a row whose version or result no longer matches the program fails its test.
//!
//! Included with `#[path]` by the tests that use it.

use std::path::Path;

/// One table row: its cells, keyed by the table's header cells.
pub struct Row {
    pub header: Vec<String>,
    pub cells: Vec<String>,
}

impl Row {
    /// The cell under the first header cell that is one of `names`, or starts with
    /// one of them and a blank (`with libkeepalive (KEEPIDLE=1 …)`).
    pub fn cell(&self, names: &[&str]) -> &str {
        let index = self
            .header
            .iter()
            .position(|h| {
                names
                    .iter()
                    .any(|n| h == n || h.starts_with(&format!("{n} ")))
            })
            .unwrap_or_else(|| panic!("no column {names:?} in {:?}", self.header));
        &self.cells[index]
    }
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// Every row of every table in README.md.
pub fn rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let mut rows = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for line in readme.lines() {
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        match &header {
            None => header = Some(cells(line)),
            Some(_) if line.starts_with("|---") || line.starts_with("| ---") => {}
            Some(h) => rows.push(Row {
                header: h.clone(),
                cells: cells(line),
            }),
        }
    }
    rows
}

/// The rows whose last cell names `test` (as `` `file::name` ``).
pub fn rows_naming(test: &str) -> Vec<Row> {
    let name = format!("`{test}`");
    rows()
        .into_iter()
        .filter(|row| row.cells.last().is_some_and(|cell| cell == &name))
        .collect()
}

/// [`rows_naming`], at least one.
pub fn rows_for(test: &str) -> Vec<Row> {
    let found = rows_naming(test);
    assert!(!found.is_empty(), "README.md has no table row for `{test}`");
    found
}

/// Holds the Compatibility row of `test` to what the test measured: the version cell
/// must be `version`, the result cell must start with `result` and the "without the
/// library" cell with `without`.
pub fn check_compatibility(test: &str, version: &str, result: &str, without: &str) {
    for row in rows_for(test) {
        assert_eq!(
            row.cell(&["version"]),
            version,
            "README.md's version for {test} is stale"
        );
        for (column, measured) in [("result", result), ("without the library", without)] {
            let cell = row.cell(&[column]);
            assert!(
                cell.starts_with(measured),
                "README.md's {column} for {test} is stale:\n  README:   {cell}\n  measured: {measured}"
            );
        }
    }
}

#![allow(dead_code)] // each test binary uses its own part of this module
//! The tables of README.md and docs/*.md, read back so that tests can hold them to
//! what they measured: a row whose version or result no longer matches the program
//! fails its test, wherever the table stands.
//!
//! Included with `#[path]` by the tests that use it.

use std::path::Path;

/// One table row: its cells, keyed by the table's header cells.
pub struct Row {
    /// The document it stands in, relative to the repository (`docs/cost.md`).
    pub file: String,
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

/// README.md and every docs/*.md, relative to the repository, in a fixed order.
pub fn documents() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("a docs/ entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".to_string());
    docs
}

/// Every row of every table in README.md and docs/*.md.
pub fn rows() -> Vec<Row> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rows = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(root.join(&file))
            .unwrap_or_else(|e| panic!("read {file}: {e}"));
        let mut header: Option<Vec<String>> = None;
        for line in text.lines() {
            if !line.starts_with('|') {
                header = None;
                continue;
            }
            match &header {
                None => header = Some(cells(line)),
                Some(_) if line.starts_with("|---") || line.starts_with("| ---") => {}
                Some(h) => rows.push(Row {
                    file: file.clone(),
                    header: h.clone(),
                    cells: cells(line),
                }),
            }
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
    assert!(
        !found.is_empty(),
        "no table row in README.md or docs/*.md names `{test}`"
    );
    found
}

/// Holds the programs-table row of `test` to what the test measured: the version cell
/// must be `version`, the result cell must start with `result` and the "without the
/// library" cell with `without`.
pub fn check_compatibility(test: &str, version: &str, result: &str, without: &str) {
    for row in rows_for(test) {
        assert_eq!(
            row.cell(&["version"]),
            version,
            "{}: the version for {test} is stale",
            row.file
        );
        for (column, measured) in [("result", result), ("without the library", without)] {
            let cell = row.cell(&[column]);
            assert!(
                cell.starts_with(measured),
                "{}: the {column} for {test} is stale:\n  written:  {cell}\n  measured: {measured}",
                row.file
            );
        }
    }
}

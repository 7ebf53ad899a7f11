//! The documents hold together: every relative link in README.md, ARCHITECTURE.md and
//! docs/*.md reaches a file that exists and, where it names one, a heading in it;
//! every page under docs/ is linked from the README; the README stays short enough to
//! read in five minutes. The reference moved out of the README is only found through
//! these links, so a renamed file or heading must fail here rather than leave a reader
//! at a dead end.

#[path = "common/readme.rs"]
mod readme;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The most the README may weigh, in bytes (issue 17: a newcomer's five minutes).
const README_LIMIT: usize = 15_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documents whose links are walked, relative to the repository.
fn documents() -> Vec<String> {
    let mut documents = readme::documents();
    documents.push("ARCHITECTURE.md".to_string());
    documents
}

/// The text a reader sees as prose: fenced code blocks and inline code removed, so a
/// `[a](b)` inside an example is not taken for a link.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of the inline links `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    prose
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .collect()
}

/// The anchors GitHub gives the headings of `text`: lower case, blanks to `-`,
/// punctuation other than `-` and `_` dropped.
fn anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| {
            line.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// `path` with `.` and `..` resolved without touching the file system, so a link that
/// leaves the repository is seen as such.
fn normal(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(root().join(&document))
            .unwrap_or_else(|e| panic!("read {document}: {e}"));
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                Some(PathBuf::from(&document))
            } else {
                let dir = Path::new(&document).parent().unwrap_or(Path::new(""));
                normal(&dir.join(file))
            };
            let Some(path) = path.filter(|path| root().join(path).exists()) else {
                broken.push(format!("{document}: ({target}): no such file"));
                continue;
            };
            if anchor.is_empty() {
                continue;
            }
            let linked = std::fs::read_to_string(root().join(&path))
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            if !anchors(&linked).contains(anchor) {
                broken.push(format!(
                    "{document}: ({target}): no heading #{anchor} in {}",
                    path.display()
                ));
            }
        }
    }
    assert!(checked >= 10, "only {checked} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// A page under docs/ that the README does not link is a page nobody finds.
#[test]
fn the_readme_links_every_page_under_docs() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|target| target.split('#').next().unwrap_or("").to_string())
        .collect();
    for page in readme::documents().into_iter().skip(1) {
        assert!(linked.contains(&page), "README.md does not link {page}");
    }
    assert!(
        linked.contains("ARCHITECTURE.md"),
        "README.md does not link ARCHITECTURE.md"
    );
}

#[test]
fn the_readme_stays_short() {
    let size = std::fs::metadata(root().join("README.md"))
        .expect("stat README.md")
        .len() as usize;
    assert!(
        size <= README_LIMIT,
        "README.md is {size} bytes, more than {README_LIMIT}: move reference material to docs/"
    );
}

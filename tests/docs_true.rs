//! Keeps the operator documentation true to the code:
//!
//! - every message docs/troubleshooting.md quotes in a `### ` heading still exists in the
//!   source (its literal parts, between the `…` that stand for what varies);
//! - every repository path docs/ARCHITECTURE.md names in backticks exists;
//! - every relative Markdown link in README.md and docs/ points at a file that exists.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The program's source with Rust string continuations (`\` at the end of a line, then
/// the next line's indentation) joined, as the compiled strings read.
fn program_source() -> String {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    rust_files(&Path::new(ROOT).join("runtime/src"), &mut files);
    assert!(files.len() > 50, "source files not found under {ROOT}");
    let mut all = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(head) = line.strip_suffix('\\') {
                all.push_str(head);
                // The continuation drops the next line's leading whitespace.
                while let Some(next) = lines.peek() {
                    let t = next.trim_start();
                    lines.next();
                    if let Some(h) = t.strip_suffix('\\') {
                        all.push_str(h);
                    } else {
                        all.push_str(t);
                        break;
                    }
                }
            } else {
                all.push_str(line);
            }
            all.push('\n');
        }
    }
    all
}

/// The literal parts of a quoted message: split at `…`, trimmed of punctuation and
/// quotes; parts of fewer than four characters say nothing and are skipped.
fn literal_parts(quote: &str) -> Vec<String> {
    quote
        .split('…')
        .map(|p| {
            p.trim_matches(|c: char| c.is_whitespace() || ":;,.\"'()[]{}".contains(c))
                .to_owned()
        })
        .filter(|p| p.chars().count() >= 4)
        .collect()
}

fn troubleshooting_quotes() -> Vec<String> {
    read("docs/troubleshooting.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn troubleshooting_messages_exist_in_the_source() {
    let src = program_source();
    let quotes = troubleshooting_quotes();
    assert!(quotes.len() >= 25, "only {} quoted messages", quotes.len());
    let mut missing = Vec::new();
    for q in &quotes {
        let parts = literal_parts(q);
        assert!(!parts.is_empty(), "{q:?} has no literal part to check");
        for p in parts {
            if !src.contains(&p) {
                missing.push(format!("{p:?} (from {q:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md quotes messages the program no longer prints:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_quote_check_can_fail() {
    // The checker itself: a message that is not in the source is reported.
    let src = program_source();
    let parts = literal_parts("flux capacitor … overheated: …");
    assert_eq!(parts, ["flux capacitor", "overheated"]);
    assert!(parts.iter().any(|p| !src.contains(p.as_str())));
    // and continuation lines are joined: this message is split over two source lines
    assert!(src.contains(
        "No username/password/certificate supplied: GSSAPI (Kerberos) login is not supported by \
         koji-adjutant; set `cert`"
    ));
}

/// Backticked tokens that look like repository paths (`src/…`, `runtime/src/…`, …).
fn named_paths(text: &str) -> Vec<String> {
    const TOPS: &[&str] = &[
        "src/",
        "runtime/",
        "tests/",
        "testkit/",
        "benches/",
        "fuzz/",
        "config/",
        "docs/",
        "examples/",
        "scripts/",
        ".ci/",
    ];
    let mut out = Vec::new();
    for (i, chunk) in text.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let tok = chunk.trim();
        if tok.contains(char::is_whitespace) || tok.contains('<') || tok.contains('*') {
            continue;
        }
        if TOPS.iter().any(|t| tok.starts_with(t))
            || ["Cargo.toml", "Makefile", "README.md"].contains(&tok)
        {
            out.push(tok.trim_end_matches(['.', ',']).to_owned());
        }
    }
    out
}

#[test]
fn architecture_names_only_paths_that_exist() {
    let text = read("docs/ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(paths.len() >= 40, "only {} paths named", paths.len());
    let missing: Vec<_> = paths
        .iter()
        .filter(|p| !Path::new(ROOT).join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
    // Every module directory of both crates is on the map.
    for dir in ["src", "runtime/src"] {
        for e in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() && e.file_name() != "bin" {
                let rel = format!("{dir}/{}/", e.file_name().to_string_lossy());
                assert!(
                    paths.iter().any(|p| p == &rel),
                    "docs/ARCHITECTURE.md does not mention {rel}"
                );
            }
        }
    }
}

#[test]
fn path_extraction() {
    let p = named_paths("see `src/cli/` and `runtime/src/sys.rs`, not `cargo test` or `<root>/x`");
    assert_eq!(p, ["src/cli/", "runtime/src/sys.rs"]);
}

/// Relative Markdown link targets (`[text](target)`), without anchors.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        let target = target.split('#').next().unwrap_or("");
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn markdown_links_resolve() {
    let mut docs = vec![PathBuf::from("README.md")];
    for e in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p.strip_prefix(ROOT).unwrap().to_owned());
        }
    }
    let mut broken = Vec::new();
    for d in &docs {
        let text = read(&d.to_string_lossy());
        let base = Path::new(ROOT).join(d.parent().unwrap_or(Path::new("")));
        for l in links(&text) {
            if !base.join(&l).exists() {
                broken.push(format!("{}: {l}", d.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
    assert_eq!(
        links("[a](docs/x.md#y) [b](https://e.org) [c](../z)"),
        ["docs/x.md", "../z"]
    );
}

/// `docs/NAME.md, "Section"` references (in the program's messages, escaped quotes, and
/// in the docs): `(file, section)`.
fn section_refs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("docs/") {
        let rest = &text[i..];
        let Some(md) = rest.find(".md, ") else {
            continue;
        };
        let file = &rest[..md + 3];
        if file.contains(|c: char| c.is_whitespace() || c == '`') {
            continue;
        }
        let after = &rest[md + 5..];
        let (open, close) = if after.starts_with("\\\"") {
            ("\\\"", "\\\"")
        } else if after.starts_with('"') {
            ("\"", "\"")
        } else {
            continue;
        };
        let body = &after[open.len()..];
        if let Some(end) = body.find(close) {
            // a heading quoted across a line break reads as one line
            let section = body[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            out.push((file.to_owned(), section));
        }
    }
    out
}

#[test]
fn section_references_name_existing_headings() {
    let mut refs = section_refs(&program_source());
    let mut docs = vec!["README.md".to_owned()];
    for e in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p.strip_prefix(ROOT).unwrap().to_string_lossy().into_owned());
        }
    }
    for d in &docs {
        refs.extend(section_refs(&read(d)));
    }
    assert!(refs.len() >= 3, "{refs:?}");
    let mut broken = Vec::new();
    for (file, section) in &refs {
        let Ok(text) = std::fs::read_to_string(Path::new(ROOT).join(file)) else {
            broken.push(format!("{file} (no such file)"));
            continue;
        };
        // the heading, or the heading with a parenthesised remark after it
        let found = text.lines().any(|l| {
            let h = l.trim_start_matches('#').trim();
            l.starts_with('#')
                && (h == section.as_str()
                    || h.strip_prefix(section.as_str())
                        .is_some_and(|r| r.starts_with(" (")))
        });
        if !found {
            broken.push(format!("{file}, \"{section}\""));
        }
    }
    assert!(
        broken.is_empty(),
        "references to missing sections: {broken:?}"
    );
    assert_eq!(
        section_refs("see docs/x.md, \"Some part\" and docs/y.md, \\\"Other\\\"."),
        [
            ("docs/x.md".to_owned(), "Some part".to_owned()),
            ("docs/y.md".to_owned(), "Other".to_owned())
        ]
    );
}

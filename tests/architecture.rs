//! Keeps docs/architecture.md true: each room of `src/` uses only the rooms
//! its table allows, in the code that ships (test modules may use anything).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The rooms and what each may use, as docs/architecture.md lists them.
const RULES: [(&str, &[&str]); 9] = [
    ("proto", &[]),
    ("sys", &[]),
    ("metrics", &[]),
    ("model", &["metrics"]),
    ("collector", &["metrics", "model", "proto", "sys"]),
    ("scrape", &["collector", "metrics"]),
    (
        "http",
        &["scrape", "metrics", "diagnose", "collector", "sys"],
    ),
    ("diagnose", &["collector", "metrics", "model", "scrape"]),
    ("cli", &["collector"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of a room: `src/<room>.rs` and everything under
/// `src/<room>/`, but for test files.
fn files(room: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let single = src().join(format!("{room}.rs"));
    if single.is_file() {
        out.push(single);
    }
    let mut dirs = vec![src().join(room)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.map(|e| e.expect("directory entry").path()) {
            if e.is_dir() {
                dirs.push(e);
            } else if e.extension().is_some_and(|x| x == "rs")
                && e.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(e);
            }
        }
    }
    out.sort();
    out
}

/// The file's text up to its test module, if it has one.
fn shipped(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

/// The rooms named as `crate::<room>` in `text`, outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let room: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(room);
        }
    }
    out
}

#[test]
fn every_room_uses_only_what_docs_architecture_allows() {
    let mut broken = Vec::new();
    for (room, allowed) in RULES {
        let files = files(room);
        assert!(!files.is_empty(), "no files for the room {room}");
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read source");
            for used in uses(shipped(&text)) {
                if used != room && !allowed.contains(&used.as_str()) {
                    broken.push(format!("{} uses crate::{used}", f.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports that docs/architecture.md does not allow:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rule_reader_sees_imports_and_skips_comments_and_tests() {
    let text = "use crate::metrics::Desc;\n// crate::http in a comment\nlet x = crate::sys::fs::read(); // crate::cli\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n";
    let got: Vec<String> = uses(shipped(text)).into_iter().collect();
    assert_eq!(got, ["metrics", "sys"]);
}

#[test]
fn every_room_of_src_has_a_rule() {
    let known: BTreeSet<&str> = RULES
        .iter()
        .map(|(r, _)| *r)
        .chain(["lib", "main", "testing"])
        .collect();
    for e in std::fs::read_dir(src()).expect("src") {
        let p = e.expect("entry").path();
        let name = p.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            known.contains(name),
            "src/{name} is a room docs/architecture.md and this test do not know"
        );
    }
}

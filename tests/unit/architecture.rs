//! The shape of the code, held by tests: the modules of src/ import each other in one direction
//! only (the floors below, in the order of the data path), and every test that needs the real
//! Kafka test bed says so first (tests/support/bed.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its `#[cfg(test)] mod tests` (tests may reach anywhere).
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text)
}

/// The modules of src/, one floor each: a module may use the modules below it, never those above
/// (so no two modules can import each other). The order is the data path's, bottom up: the
/// protocol's vocabulary; what everything uses; the connections to brokers; what fairlead knows of the cluster; the
/// rewriting of answers; the routing of requests; a client connection; the accept loops; the
/// operations around them.
const FLOORS: &[&str] = &[
    "protocol",
    "capacity",
    "metrics",
    "codec",
    "ports",
    "security",
    "config",
    "upstream",
    "leadership",
    "cluster",
    "rewrite",
    "router",
    "connection",
    "listener",
    "admin",
    "server",
    "webhook",
    "testing",
];

fn floor(module: &str) -> usize {
    FLOORS
        .iter()
        .position(|f| *f == module)
        .unwrap_or_else(|| panic!("src/{module} is in no floor of tests/unit/architecture.rs"))
}

/// The top-level module a file of src/ belongs to (None: lib.rs, main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

#[test]
fn modules_import_only_from_the_floors_below() {
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in without_tests(&text).match_indices("crate::") {
            let used: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if used.is_empty() || used == m {
                continue;
            }
            if floor(&used) > floor(&m) {
                wrong
                    .entry(format!(
                        "{} ({m})",
                        f.strip_prefix(repo()).unwrap().display()
                    ))
                    .or_default()
                    .push(used);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from a higher floor (see FLOORS): {wrong:#?}"
    );
}

/// The protocol's vocabulary has one home, src/protocol.rs, on the lowest floor: it imports no
/// module of fairlead's, and no other file declares a constant or function it names (an error
/// code, an API set, `is_leadership_code`, `api_name`) again.
#[test]
fn the_protocol_vocabulary_is_declared_once_on_the_lowest_floor() {
    assert_eq!(FLOORS[0], "protocol");
    let src = repo().join("src");
    let vocabulary = std::fs::read_to_string(src.join("protocol.rs")).unwrap();
    let vocabulary = without_tests(&vocabulary);
    assert!(
        !vocabulary.contains("crate::"),
        "src/protocol.rs imports from fairlead's modules"
    );
    let names: Vec<&str> = vocabulary
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("pub const ")
                .or_else(|| l.strip_prefix("pub fn "))?;
            rest.split([':', '(']).next()
        })
        .collect();
    assert!(
        names.contains(&"NOT_LEADER_OR_FOLLOWER") && names.contains(&"ROUTED_APIS"),
        "{names:?}"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut again = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("protocol.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        for line in without_tests(&text).lines().map(str::trim_start) {
            let line = line.strip_prefix("pub ").unwrap_or(line);
            for name in &names {
                if line.starts_with(&format!("const {name}:"))
                    || line.starts_with(&format!("fn {name}("))
                {
                    let rel = f.strip_prefix(repo()).unwrap().display().to_string();
                    again.push(format!("{rel}: {name}"));
                }
            }
        }
    }
    assert!(
        again.is_empty(),
        "declared again outside src/protocol.rs (import it from there): {again:#?}"
    );
}

#[test]
fn every_cluster_test_skips_first_without_a_test_bed() {
    let mut files = Vec::new();
    rust_files(&repo().join("tests/cluster"), &mut files);
    assert!(!files.is_empty());
    let mut missing = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("#[test]") {
            let body = &text[i..];
            let open = body.find('{').unwrap();
            let first = body[open + 1..].trim_start();
            if !first.starts_with("if support::skip_without_testbed()")
                && !first.starts_with("if bed::skip_without_testbed()")
            {
                let name = body.lines().find(|l| l.starts_with("fn ")).unwrap_or("?");
                missing.push(format!("{}: {name}", f.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cluster tests that do not start with the test-bed guard: {missing:#?}"
    );
}

//! ARCHITECTURE.md's crate dependency diagram is the manifests' truth: the `crate-edges` block
//! under the diagram lists every normal (non-dev) dependency of a workspace crate on another
//! workspace crate, and nothing else. `cargo metadata` says what the manifests declare; the
//! test fails naming every edge one side has and the other lacks.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `(crate, crate it depends on)`.
type Edge = (String, String);

/// The fence that opens the machine-readable list of edges in ARCHITECTURE.md.
const FENCE: &str = "```crate-edges";

/// The workspace's crates and their normal and build dependencies on each other, from
/// `cargo metadata` (dev-dependencies are the tests' business, not the architecture's).
fn cargo_edges() -> (BTreeSet<String>, BTreeSet<Edge>) {
    // Cargo tells the tests it runs where it is; a test run by hand falls back to the cargo
    // that built it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    // With --no-deps, the packages are the workspace's members.
    let packages = meta["packages"].as_array().expect("packages");
    let crates: BTreeSet<String> =
        packages.iter().map(|p| p["name"].as_str().expect("package name").to_string()).collect();
    let mut edges = BTreeSet::new();
    for p in packages {
        let from = p["name"].as_str().expect("package name");
        for d in p["dependencies"].as_array().expect("dependencies") {
            let to = d["name"].as_str().expect("dependency name");
            // `kind` is null for normal dependencies, "build" or "dev" otherwise.
            if crates.contains(to) && d["kind"].as_str() != Some("dev") {
                edges.insert((from.to_string(), to.to_string()));
            }
        }
    }
    (crates, edges)
}

/// The edges of the `crate-edges` block in `doc`: one `a -> b` per line; blank lines and
/// lines starting with `#` are ignored. Anything else is an error, as is a missing or
/// unterminated block.
fn documented_edges(doc: &str) -> Result<BTreeSet<Edge>, Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != FENCE);
    if lines.next().is_none() {
        return Err(vec![format!("no {FENCE} block")]);
    }
    let (mut edges, mut errors) = (BTreeSet::new(), Vec::new());
    for line in lines {
        let line = line.trim();
        if line == "```" {
            return if errors.is_empty() { Ok(edges) } else { Err(errors) };
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once("->").map(|(a, b)| (a.trim(), b.trim())) {
            Some((a, b)) if is_crate_name(a) && is_crate_name(b) => {
                if !edges.insert((a.to_string(), b.to_string())) {
                    errors.push(format!("`{line}` is listed twice"));
                }
            }
            _ => errors.push(format!("`{line}` is not `<crate> -> <crate>`")),
        }
    }
    errors.push(format!("the {FENCE} block has no closing ```"));
    Err(errors)
}

fn is_crate_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[test]
fn the_documented_crate_dependencies_are_the_manifests() {
    let (crates, in_cargo) = cargo_edges();
    assert!(
        crates.contains("iobufferpro") && !in_cargo.is_empty(),
        "cargo metadata must show the workspace and its edges: {crates:?}"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&path).expect("read ARCHITECTURE.md");
    let documented = documented_edges(&doc)
        .unwrap_or_else(|errors| panic!("ARCHITECTURE.md: {}", errors.join("; ")));

    let mut problems = Vec::new();
    for (a, b) in &documented {
        for name in [a, b] {
            if !crates.contains(name) {
                problems
                    .push(format!("ARCHITECTURE.md names `{name}`, which is no workspace crate"));
            }
        }
    }
    for (a, b) in in_cargo.difference(&documented) {
        problems.push(format!("in Cargo, missing from ARCHITECTURE.md: {a} -> {b}"));
    }
    for (a, b) in documented.difference(&in_cargo) {
        problems.push(format!("in ARCHITECTURE.md, no longer in Cargo: {a} -> {b}"));
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's crate dependencies disagree with the manifests (update the diagram \
         and the {FENCE} block under it):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_edge_list_is_read_strictly() {
    let doc = "text\n```crate-edges\n# a comment\n\na -> b\n  c->d  \n```\nmore\n";
    let edges = documented_edges(doc).expect("valid block");
    let want: BTreeSet<Edge> =
        [("a", "b"), ("c", "d")].map(|(a, b)| (a.to_string(), b.to_string())).into();
    assert_eq!(edges, want);

    let errors = documented_edges("```crate-edges\na -> b\na, b -> c\na -> b\nd\n```\n")
        .expect_err("malformed lines");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(documented_edges("no block here").is_err());
    assert!(documented_edges("```crate-edges\na -> b\n").is_err(), "an unterminated block");
}

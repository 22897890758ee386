//! Embeds the manual: reads `docs/manual/SUMMARY.md` (mdBook's format: `- [Title](file.md)`,
//! one chapter per line, in reading order) and writes the list of chapters, each with its
//! Markdown as an `include_str!`, to `$OUT_DIR/chapters.rs`. A chapter file not in the summary,
//! or a summary entry without its file, fails the build: the manual cannot lose a page silently.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A chapter file's name: `name.md` (lowercase by the manual's convention).
fn is_markdown(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/manual");
    let dir = dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    println!("cargo:rerun-if-changed={}", dir.display());
    let summary_path = dir.join("SUMMARY.md");
    println!("cargo:rerun-if-changed={}", summary_path.display());
    let summary = std::fs::read_to_string(&summary_path)
        .unwrap_or_else(|e| panic!("{}: {e}", summary_path.display()));

    let mut listed: Vec<(String, String)> = Vec::new();
    for line in summary.lines().map(str::trim).filter(|l| l.starts_with("- [")) {
        let parsed = line
            .strip_prefix("- [")
            .and_then(|rest| rest.split_once("]("))
            .and_then(|(title, rest)| rest.strip_suffix(')').map(|file| (title, file)));
        let Some((title, file)) = parsed else {
            panic!("SUMMARY.md: `{line}` is not `- [Title](file.md)`");
        };
        assert!(
            !file.contains('/') && is_markdown(file) && file != "SUMMARY.md",
            "SUMMARY.md: `{file}` is not a chapter file of docs/manual"
        );
        assert!(!listed.iter().any(|(_, f)| f == file), "SUMMARY.md lists `{file}` twice");
        listed.push((title.to_string(), file.to_string()));
    }
    assert!(!listed.is_empty(), "SUMMARY.md lists no chapter");

    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_markdown(n) && n != "SUMMARY.md")
        .collect();
    on_disk.sort();
    for file in &on_disk {
        assert!(
            listed.iter().any(|(_, f)| f == file),
            "docs/manual/{file} is not listed in SUMMARY.md"
        );
    }

    let mut out = String::from("/// The chapters in reading order: (slug, title, Markdown).\n");
    out.push_str("pub(crate) const CHAPTERS: &[(&str, &str, &str)] = &[\n");
    for (title, file) in &listed {
        let path: PathBuf = dir.join(file);
        assert!(path.is_file(), "SUMMARY.md lists `{file}`, which is not in docs/manual");
        println!("cargo:rerun-if-changed={}", path.display());
        let slug = &file[..file.len() - 3];
        let _ = writeln!(
            out,
            "    ({slug:?}, {title:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let target =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("chapters.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
}

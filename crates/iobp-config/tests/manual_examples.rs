//! Every JSON example of the user manual (`docs/manual/*.md`, served at `/docs`) is valid as
//! what it shows: a whole configuration document, one channel pair, or one source or
//! destination — so an operator who copies one gets a working configuration, not an error.
//! The manual's contract: a `json` code block is one complete JSON value; fragments are `text`.

use std::path::PathBuf;

use iobp_config::{parse_document, parse_endpoint, parse_pair, parse_settings};

fn manual_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/manual")
}

/// The `json` code blocks of a Markdown text: (line of the fence, text).
fn json_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```json") => open = Some((i + 1, String::new())),
            Some(_) if fence.starts_with("```") => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "a ```json block is not closed");
    blocks
}

/// What a JSON example is, judged by its keys, and whether it parses as that.
fn check(text: &str) -> Result<&'static str, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not one JSON value: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let result = if obj.contains_key("channel_pairs") || obj.contains_key("settings") {
        parse_document(text).map(|_| "document")
    } else if obj.contains_key("source") && obj.contains_key("destination") {
        parse_pair(text).map(|_| "pair")
    } else if obj.contains_key("type") {
        parse_endpoint(text).map(|_| "endpoint")
    } else {
        parse_settings(text).map(|_| "settings")
    };
    result.map_err(|e| e.to_string())
}

#[test]
fn every_json_example_of_the_manual_is_a_valid_configuration() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manual_dir())
        .expect("docs/manual")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (line, block) in json_blocks(&text) {
            match check(&block) {
                Ok(kind) => checked.push(format!("{name}:{line} {kind}")),
                Err(e) => wrong.push(format!("{name}:{line}: {e}\n{block}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{} invalid example(s):\n{}", wrong.len(), wrong.join("\n"));
    // The manual shows at least a document, pairs and connectors.
    for kind in ["document", "pair", "endpoint"] {
        assert!(checked.iter().any(|c| c.ends_with(kind)), "no {kind} example: {checked:?}");
    }
}

#[test]
fn the_checker_tells_kinds_apart_and_refuses_wrong_examples() {
    assert_eq!(check(r#"{"channel_pairs": []}"#), Ok("document"));
    assert_eq!(check(r#"{"type": "udp", "host": "127.0.0.1", "port": 5000}"#), Ok("endpoint"));
    assert!(check(r#"{"type": "no_such_connector"}"#).is_err());
    assert!(check(r#""destination": {"type": "udp"}"#).is_err(), "a fragment");
    let blocks = json_blocks("a\n```json\n{}\n```\n```text\nx\n```\n  ```json\n[1]\n  ```\n");
    assert_eq!(blocks, [(2, "{}\n".to_string()), (8, "[1]\n".to_string())]);
}

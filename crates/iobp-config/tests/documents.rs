//! Every JSON example of the product documents (shared/seeds: sources and destinations pages)
//! loads as written, the README's example document is valid, and so is the manual's ASTM pair
//! (`docs/manual/field-protocols.md`).

use iobp_config::{EndpointSpec, FlowControl, Parity, parse_document, parse_endpoint};

/// The examples, copied verbatim from the documents.
const SOURCE_EXAMPLES: &[&str] = &[
    r#"{
  "type": "tcp_server",
  "host": "0.0.0.0",
  "port": 5000,
  "tls": {
    "enabled": true,
    "cert": "/path/to/cert.pem",
    "key": "/path/to/key.pem"
  }
}"#,
    r#"{
  "type": "tcp_client",
  "host": "192.168.1.100",
  "port": 6000,
  "tls": {
    "enabled": false
  }
}"#,
    r#"{
  "type": "serial",
  "port": "COM3",
  "baud_rate": 9600,
  "data_bits": 8,
  "parity": "None",
  "stop_bits": 1,
  "flow_control": "None"
}"#,
    r#"{
  "type": "remote_icombuffer",
  "url": "http://remote-server:8080",
  "channel_id": "channel-001",
  "auth": {
    "username": "relay_user",
    "password": "********"
  }
}"#,
    r#"{
  "type": "udp",
  "host": "0.0.0.0",
  "port": 514
}"#,
];

const DESTINATION_EXAMPLES: &[&str] = &[
    r#"{
  "type": "tcp_server",
  "host": "0.0.0.0",
  "port": 7000,
  "tls": {
    "enabled": false
  }
}"#,
    r#"{
  "type": "tcp_client",
  "host": "192.168.1.200",
  "port": 8000,
  "tls": {
    "enabled": true,
    "cert": "/path/to/cert.pem",
    "key": "/path/to/key.pem"
  }
}"#,
    r#"{
  "type": "serial",
  "port": "COM5",
  "baud_rate": 115200,
  "data_bits": 8,
  "parity": "None",
  "stop_bits": 1,
  "flow_control": "None"
}"#,
    r#"{
  "type": "remote_icombuffer",
  "url": "http://remote-server:8080",
  "channel_id": "channel-002",
  "auth": {
    "username": "relay_user",
    "password": "********"
  }
}"#,
    r#"{
  "type": "udp",
  "host": "192.168.1.50",
  "port": 514
}"#,
];

/// Wraps a source and a destination into a pair and validates it in a document.
fn pair_doc(source: &str, destination: &str, id: usize) -> String {
    format!(
        r#"{{"channel_pairs": [{{"id": "p{id}", "source": {source}, "destination": {destination}}}]}}"#
    )
}

#[test]
fn every_document_example_loads_as_written() {
    for (i, s) in SOURCE_EXAMPLES.iter().enumerate() {
        parse_endpoint(s).unwrap_or_else(|e| panic!("source example {i}: {e}"));
        // As a source, with the matching destination example.
        let doc = pair_doc(s, DESTINATION_EXAMPLES[i], i);
        parse_document(&doc).unwrap_or_else(|e| panic!("pair from examples {i}: {e}"));
    }
    for (i, d) in DESTINATION_EXAMPLES.iter().enumerate() {
        parse_endpoint(d).unwrap_or_else(|e| panic!("destination example {i}: {e}"));
    }
}

#[test]
fn examples_carry_their_settings() {
    let EndpointSpec::Serial(s) = parse_endpoint(SOURCE_EXAMPLES[2]).expect("serial") else {
        panic!("not serial")
    };
    assert_eq!((s.port.as_str(), s.baud_rate, s.data_bits, s.stop_bits), ("COM3", 9600, 8, 1));
    assert_eq!((s.parity, s.flow_control), (Parity::None, FlowControl::None));
    let EndpointSpec::TcpServer(t) = parse_endpoint(SOURCE_EXAMPLES[0]).expect("tcp") else {
        panic!("not tcp_server")
    };
    assert!(t.tls.enabled);
    assert_eq!(t.tls.cert.as_deref(), Some("/path/to/cert.pem"));
    let EndpointSpec::Remote(r) = parse_endpoint(DESTINATION_EXAMPLES[3]).expect("remote") else {
        panic!("not remote")
    };
    assert_eq!(r.channel_id, "channel-002");
    assert_eq!(r.auth.expect("auth").username, "relay_user");
}

#[test]
fn readme_example_is_valid() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```json").expect("README has a JSON example") + 7;
    let end = start + readme[start..].find("```").expect("closed");
    let doc = parse_document(&readme[start..end]).expect("README example parses");
    assert_eq!(doc.channel_pairs[0].id, "lab-1");
}

#[test]
fn round_trip_through_json_keeps_everything() {
    for (i, s) in SOURCE_EXAMPLES.iter().enumerate() {
        let doc = parse_document(&pair_doc(s, DESTINATION_EXAMPLES[i], i)).expect("valid");
        let json = serde_json::to_string_pretty(&doc).expect("serialise");
        assert_eq!(parse_document(&json).expect("reparse"), doc, "{json}");
    }
}

#[test]
fn the_manual_astm_example_is_a_valid_pair() {
    let chapter = include_str!("../../../docs/manual/field-protocols.md");
    let at = chapter.find(r#"{ "id": "chemistry""#).expect("the ASTM example");
    let end = at + chapter[at..].find("```").expect("closed");
    let pair = iobp_config::parse_pair(&chapter[at..end]).expect("the ASTM example parses");
    assert_eq!(pair.source.framing().map(iobp_config::FramingSpec::type_name), Some("astm"));
    assert_eq!(pair.destination.framing().map(iobp_config::FramingSpec::type_name), Some("astm"));
}

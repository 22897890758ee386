//! Invalid configuration is refused with errors that name the field and the reason.

use iobp_config::{
    AckSpec, ConfigDocument, FramingSpec, Settings, check_pair_among, check_pairs_in_order,
    parse_document, parse_pair,
};

fn paths(text: &str) -> Vec<String> {
    parse_document(text)
        .expect_err("must be refused")
        .problems
        .into_iter()
        .map(|p| p.path)
        .collect()
}

fn pair(id: &str, source: &str, destination: &str) -> String {
    format!(r#"{{"id": "{id}", "source": {source}, "destination": {destination}}}"#)
}

const TCP_5000: &str = r#"{"type": "tcp_server", "host": "0.0.0.0", "port": 5000}"#;
const CLIENT: &str = r#"{"type": "tcp_client", "host": "10.0.0.2", "port": 6000}"#;

#[test]
fn unknown_fields_and_wrong_types_name_the_path() {
    let e = parse_document(r#"{"channel_pairs": [{"id": "a", "source": {"type": "tcp_server", "host": "h", "prot": 1}, "destination": {"type": "udp", "host": "h", "port": 1}}]}"#)
        .expect_err("typo");
    assert_eq!(e.problems[0].path, "channel_pairs[0].source.prot");
    assert!(e.problems[0].message.contains("prot"), "{e}");
    let e = parse_document(r#"{"channel_pairs": [{"id": "a", "source": {"type": "tcp_server", "host": "h", "port": 70000}, "destination": {"type": "udp", "host": "h", "port": 1}}]}"#)
        .expect_err("range");
    assert_eq!(e.problems[0].path, "channel_pairs[0].source.port");
    let e = parse_document(r#"{"channel_pairs": [{"id": "a", "source": {"type": "carrier_pigeon"}, "destination": {"type": "udp", "host": "h", "port": 1}}]}"#)
        .expect_err("type");
    assert!(e.to_string().contains("carrier_pigeon"), "{e}");
    let e = parse_document("{ not json").expect_err("syntax");
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let doc = format!(
        r#"{{"settings": {{"max_storage_mb": 0, "ops_listen": "nowhere"}}, "channel_pairs": [{}]}}"#,
        pair(
            "bad id!",
            r#"{"type": "udp", "host": "", "port": 0}"#,
            r#"{"type": "tcp_client", "host": "h", "port": 1, "framing": {"type": "length_prefixed", "length_bytes": 3}}"#
        )
    );
    let p = paths(&doc);
    for want in [
        "settings.max_storage_mb",
        "settings.ops_listen",
        "channel_pairs[0].id",
        "channel_pairs[0].source.host",
        "channel_pairs[0].source.port",
        "channel_pairs[0].destination.framing.length_bytes",
    ] {
        assert!(p.iter().any(|x| x == want), "missing {want} in {p:?}");
    }
}

#[test]
fn two_pairs_on_one_port_are_refused() {
    let doc = format!(
        r#"{{"channel_pairs": [{}, {}]}}"#,
        pair("a", TCP_5000, CLIENT),
        pair("b", r#"{"type": "tcp_server", "host": "127.0.0.1", "port": 5000}"#, CLIENT)
    );
    let e = parse_document(&doc).expect_err("conflict");
    assert_eq!(e.problems[0].path, "channel_pairs[1].source.port");
    assert!(e.problems[0].message.contains("channel pair `a`"), "{e}");
    // UDP and TCP on the same number do not conflict; different explicit addresses do not.
    let ok = format!(
        r#"{{"channel_pairs": [{}, {}, {}]}}"#,
        pair("a", r#"{"type": "tcp_server", "host": "10.0.0.1", "port": 5000}"#, CLIENT),
        pair("b", r#"{"type": "tcp_server", "host": "10.0.0.2", "port": 5000}"#, CLIENT),
        pair("c", r#"{"type": "udp", "host": "0.0.0.0", "port": 5000}"#, CLIENT)
    );
    parse_document(&ok).expect("no conflict");
}

#[test]
fn portal_ports_and_duplicate_ids_are_refused() {
    let doc = format!(
        r#"{{"channel_pairs": [{}, {}]}}"#,
        pair("a", r#"{"type": "tcp_server", "host": "0.0.0.0", "port": 8080}"#, CLIENT),
        pair("a", TCP_5000, CLIENT)
    );
    let e = parse_document(&doc).expect_err("conflicts");
    let text = e.to_string();
    assert!(text.contains("Operations Portal"), "{text}");
    assert!(text.contains("duplicate id"), "{text}");
}

#[test]
fn serial_port_used_twice_is_refused() {
    let s = r#"{"type": "serial", "port": "/dev/ttyUSB0"}"#;
    let doc =
        format!(r#"{{"channel_pairs": [{}, {}]}}"#, pair("a", s, CLIENT), pair("b", CLIENT, s));
    assert_eq!(paths(&doc), vec!["channel_pairs[1].destination.port"]);
}

#[test]
fn rs485_settings_are_checked() {
    let ok = r#"{"type": "serial", "port": "/dev/ttyS1", "rs485": {"delay_before_send_ms": 2}}"#;
    let p = parse_pair(&pair("a", ok, CLIENT)).expect("rs485 defaults");
    let iobp_config::EndpointSpec::Serial(s) = &p.source else { panic!() };
    let r = s.rs485.expect("rs485");
    assert!(r.rts_on_send && !r.full_duplex && r.delay_before_send_ms == 2);
    for (src, field) in [
        (
            r#"{"type": "serial", "port": "/dev/ttyS1", "rs485": {"delay_after_send_ms": 5000}}"#,
            "source.rs485.delay_after_send_ms",
        ),
        (
            r#"{"type": "serial", "port": "/dev/ttyS1", "flow_control": "RTS/CTS", "rs485": {}}"#,
            "source.flow_control",
        ),
    ] {
        let e = parse_pair(&pair("a", src, CLIENT)).expect_err(field);
        assert_eq!(e.problems[0].path, field, "{e}");
    }
    let e = parse_pair(&pair(
        "a",
        r#"{"type": "serial", "port": "/dev/ttyS1", "rs485": {"rts_on_sned": true}}"#,
        CLIENT,
    ))
    .expect_err("typo");
    assert!(e.to_string().contains("rts_on_sned"), "{e}");
}

#[test]
fn remote_tls_settings_are_checked() {
    let ok = r#"{"type": "remote_icombuffer", "url": "https://plant:8080", "channel_id": "c",
                 "auth": {"username": "u", "password": "p"}, "tls": {"ca": "/etc/ca.pem"}}"#;
    parse_pair(&pair("a", CLIENT, ok)).expect("https with a CA");
    for (dst, field) in [
        (
            r#"{"type": "remote_icombuffer", "url": "http://plant:8080", "channel_id": "c",
                "auth": {"username": "u", "password": "p"}, "tls": {"ca": "/etc/ca.pem"}}"#,
            "destination.tls",
        ),
        (
            r#"{"type": "remote_icombuffer", "url": "https://plant", "channel_id": "c",
                "auth": {"username": "u", "password": "p"}, "tls": {"client_auth": "required"}}"#,
            "destination.tls.client_auth",
        ),
        (
            r#"{"type": "remote_icombuffer", "url": "https://plant", "channel_id": "c",
                "auth": {"username": "u", "password": "p"}, "tls": {"cert": "/c.pem"}}"#,
            "destination.tls.key",
        ),
    ] {
        let e = parse_pair(&pair("a", CLIENT, dst)).expect_err(field);
        assert_eq!(e.problems[0].path, field, "{e}");
    }
}

#[test]
fn ack_rules() {
    // Shorthand and full forms.
    let p = parse_pair(&pair("a", r#"{"type": "tcp_server", "host": "h", "port": 1, "framing": {"type": "mllp"}, "ack": "mllp"}"#, CLIENT)).expect("ok");
    let iobp_config::EndpointSpec::TcpServer(s) = &p.source else { panic!() };
    assert_eq!(s.ack, AckSpec::Mllp { timeout_ms: None });
    let p = parse_pair(&pair("a", r#"{"type": "tcp_server", "host": "h", "port": 1, "ack": {"type": "byte", "ack": 6, "nak": 21}}"#, CLIENT)).expect("ok");
    assert_eq!(p.source.ack().type_name(), "byte");
    // mllp ack without mllp framing; a timeout on a source; ack equal to nak; unknown ack.
    for (src, field) in [
        (r#"{"type": "tcp_server", "host": "h", "port": 1, "ack": "mllp"}"#, "source.ack"),
        (
            r#"{"type": "tcp_server", "host": "h", "port": 1, "ack": {"type": "byte", "timeout_ms": 5}}"#,
            "source.ack.timeout_ms",
        ),
        (
            r#"{"type": "tcp_server", "host": "h", "port": 1, "ack": {"type": "byte", "ack": 1, "nak": 1}}"#,
            "source.ack.nak",
        ),
    ] {
        let e = parse_pair(&pair("a", src, CLIENT)).expect_err(field);
        assert_eq!(e.problems[0].path, field, "{e}");
    }
    let e = parse_pair(&pair(
        "a",
        r#"{"type": "tcp_server", "host": "h", "port": 1, "ack": "sometimes"}"#,
        CLIENT,
    ))
    .expect_err("unknown");
    assert!(e.to_string().contains("sometimes"), "{e}");
}

#[test]
fn framing_bytes_as_string_or_array() {
    let p = parse_pair(&pair("a", r#"{"type": "tcp_server", "host": "h", "port": 1, "framing": {"type": "delimited", "start": [2, 255], "end": "\r\n"}}"#, CLIENT)).expect("ok");
    let Some(FramingSpec::Delimited { start, end, .. }) = p.source.framing() else { panic!() };
    assert_eq!((start.as_bytes(), end.as_bytes()), (&[2u8, 255][..], &b"\r\n"[..]));
    let json = serde_json::to_string(&p).expect("ser");
    assert!(json.contains("[2,255]") && json.contains(r#""end":"\r\n""#), "{json}");
}

#[test]
fn a_new_pair_is_checked_against_the_running_ones() {
    let running: ConfigDocument =
        parse_document(&format!(r#"{{"channel_pairs": [{}]}}"#, pair("a", TCP_5000, CLIENT)))
            .expect("ok");
    let clash = parse_pair(&pair("b", TCP_5000, CLIENT)).expect("alone it is fine");
    let e =
        check_pair_among(&clash, &running.channel_pairs, &Settings::default()).expect_err("clash");
    assert_eq!(e.problems[0].path, "source.port");
    // Replacing pair `a` itself with the same port is fine.
    let same =
        parse_pair(&pair("a", TCP_5000, r#"{"type": "udp", "host": "h", "port": 9}"#)).expect("ok");
    check_pair_among(&same, &running.channel_pairs, &Settings::default()).expect("replace");
}

#[test]
fn defaults_are_the_products() {
    let p = parse_pair(&pair("a", TCP_5000, CLIENT)).expect("ok");
    assert!(p.enabled && p.failback);
    assert_eq!((p.retry.initial_ms, p.retry.max_ms), (1000, 60_000));
    assert_eq!(p.source.framing().map(FramingSpec::max_message_bytes), Some(1024 * 1024));
    assert_eq!(p.display_name(), "a");
    assert_eq!(Settings::default().max_storage_mb, 1000);
}

#[test]
fn a_relaying_pair_takes_only_messages_a_relay_record_can_carry() {
    let relay = r#"{"type": "remote_icombuffer", "channel_id": "c", "url": "http://h:8080", "auth": {"username": "u", "password": "p"}}"#;
    let big = r#"{"type": "tcp_server", "host": "0.0.0.0", "port": 5000, "framing": {"type": "line", "max_message_bytes": 33554432}}"#;
    let doc = format!(r#"{{"channel_pairs": [{}]}}"#, pair("a", big, relay));
    let e = parse_document(&doc).expect_err("32 MiB messages cannot be relayed");
    assert_eq!(e.problems[0].path, "channel_pairs[0].source.framing.max_message_bytes");
    assert!(e.problems[0].message.contains("16 MiB"), "{e}");
    // The same as a backup destination; and fine where nothing is relayed.
    let doc = format!(
        r#"{{"channel_pairs": [{{"id": "a", "source": {big}, "destination": {CLIENT}, "failover": [{relay}]}}]}}"#
    );
    assert_eq!(paths(&doc), ["channel_pairs[0].source.framing.max_message_bytes"]);
    let doc = format!(r#"{{"channel_pairs": [{}]}}"#, pair("a", big, CLIENT));
    parse_document(&doc).expect("no relay, no limit beyond 64 MiB");
}

#[test]
fn stored_pairs_are_checked_in_order_and_the_first_of_a_conflict_wins() {
    let tcp = |port: u32| format!(r#"{{"type": "tcp_server", "host": "0.0.0.0", "port": {port}}}"#);
    let serial = r#"{"type": "serial", "port": "/dev/ttyUSB0"}"#;
    let mut specs: Vec<_> = (0..1000u32)
        .map(|i| parse_pair(&pair(&format!("p{i}"), &tcp(10_000 + i), CLIENT)).expect("pair"))
        .collect();
    let extra = [
        pair("late", &tcp(10_005), CLIENT), // p5's port
        pair("p7", &tcp(20_000), CLIENT),   // p7's id
        pair("portal", &tcp(8080), CLIENT), // the Operations Portal's port
        pair("s1", serial, CLIENT),         // first user of the serial port wins
        pair("s2", CLIENT, serial),
        pair("free", &tcp(20_001), CLIENT),
    ];
    specs.extend(extra.iter().map(|p| parse_pair(p).expect("pair")));
    let got = check_pairs_in_order(&specs, &Settings::default());
    assert!(got[..1000].iter().all(Result::is_ok));
    let outcome: Vec<Option<String>> =
        got[1000..].iter().map(|r| r.as_ref().err().map(ToString::to_string)).collect();
    assert!(outcome[0].as_deref().is_some_and(|e| e.contains("channel pair `p5`")), "{outcome:?}");
    assert!(outcome[1].as_deref().is_some_and(|e| e.contains("duplicate id")), "{outcome:?}");
    assert!(outcome[2].as_deref().is_some_and(|e| e.contains("Operations Portal")), "{outcome:?}");
    assert!(outcome[3].is_none(), "{outcome:?}");
    assert!(outcome[4].as_deref().is_some_and(|e| e.contains("channel pair `s1`")), "{outcome:?}");
    assert!(outcome[5].is_none(), "{outcome:?}");
    // A refused pair takes nothing: a later pair may use what it asked for.
    let again = parse_pair(&pair("after", &tcp(20_000), CLIENT)).expect("pair");
    specs.push(again);
    let got = check_pairs_in_order(&specs, &Settings::default());
    assert!(got[1006].is_ok(), "{:?}", got[1006]);
}

/// Port 0 is "any free port": both portals may ask for it (they get different ones), while
/// two equal fixed addresses are still refused.
#[test]
fn both_portals_may_listen_on_any_free_port_but_not_on_the_same_one() {
    let any = r#"{"settings": {"ops_listen": "127.0.0.1:0", "mgmt_listen": "127.0.0.1:0"}}"#;
    assert!(parse_document(any).is_ok(), "{:?}", parse_document(any).err());
    let same = r#"{"settings": {"ops_listen": "127.0.0.1:8080", "mgmt_listen": "127.0.0.1:8080"}}"#;
    assert_eq!(paths(same), ["settings.mgmt_listen"]);
}

#[test]
fn nats_sides_parse_with_defaults_and_round_trip() {
    let dst = r#"{"type": "nats", "servers": ["nats://10.0.0.9:4222", "tls://[::1]:4222"],
                  "subject": "plant.{pair}.out", "auth": {"username": "u", "password": "p"}}"#;
    let src = r#"{"type": "nats", "servers": ["nats://h"], "subject": "in.>", "stream": "IN",
                  "auth": {"token": "t"}, "ack_wait_s": 5}"#;
    let spec = parse_pair(&pair("a", src, dst)).expect("valid nats sides");
    let (iobp_config::EndpointSpec::Nats(s), iobp_config::EndpointSpec::Nats(d)) =
        (&spec.source, &spec.destination)
    else {
        panic!("both sides are nats: {spec:?}");
    };
    assert_eq!((d.in_flight(), s.ack_wait_s()), (256, 5));
    assert_eq!(s.consumer_name("a"), "iobp-a");
    assert_eq!((spec.source.type_name(), spec.source.framing()), ("nats", None));
    assert_eq!(*spec.destination.ack(), AckSpec::None);
    let json = serde_json::to_string(&spec).expect("serialise");
    assert_eq!(parse_pair(&json).expect("round trip"), spec);
    let e = parse_pair(&pair("a", src, r#"{"type": "nats", "servers": [], "subjct": "x"}"#))
        .expect_err("typo");
    assert!(e.to_string().contains("subjct"), "{e}");
}

#[test]
fn nats_settings_are_checked_with_their_paths() {
    let ok_dst = r#"{"type": "nats", "servers": ["nats://h:4222"], "subject": "s"}"#;
    let ok_src = r#"{"type": "nats", "servers": ["nats://h:4222"], "subject": "s", "stream": "S"}"#;
    parse_pair(&pair("a", ok_src, ok_dst)).expect("minimal nats sides");
    let dst_cases = [
        (r#"{"type": "nats", "servers": [], "subject": "s"}"#, "destination.servers"),
        (r#"{"type": "nats", "servers": ["http://h"], "subject": "s"}"#, "destination.servers[0]"),
        (
            r#"{"type": "nats", "servers": ["nats://u:p@h"], "subject": "s"}"#,
            "destination.servers[0]",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h:0"], "subject": "s"}"#,
            "destination.servers[0]",
        ),
        (r#"{"type": "nats", "servers": ["nats://h"], "subject": "a.*"}"#, "destination.subject"),
        (r#"{"type": "nats", "servers": ["nats://h"], "subject": "a..b"}"#, "destination.subject"),
        (r#"{"type": "nats", "servers": ["nats://h"], "subject": ""}"#, "destination.subject"),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "in_flight": 0}"#,
            "destination.in_flight",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "in_flight": 4097}"#,
            "destination.in_flight",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "ack_wait_s": 5}"#,
            "destination.ack_wait_s",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "consumer": "c"}"#,
            "destination.consumer",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "auth": {}}"#,
            "destination.auth",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "auth": {"token": "t", "creds_file": "/c"}}"#,
            "destination.auth",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "auth": {"password": "p"}}"#,
            "destination.auth.username",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "tls": {"cert": "/c.pem"}}"#,
            "destination.tls.key",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "tls": {"client_auth": "required"}}"#,
            "destination.tls.client_auth",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "tls": {"server_name": " "}}"#,
            "destination.tls.server_name",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "auth": {"creds_file": ""}}"#,
            "destination.auth.creds_file",
        ),
    ];
    for (dst, field) in dst_cases {
        let e = parse_pair(&pair("a", ok_src, dst)).expect_err(field);
        assert_eq!(e.problems[0].path, field, "{e}");
    }
    let src_cases = [
        (r#"{"type": "nats", "servers": ["nats://h"], "subject": "s"}"#, "source.stream"),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "stream": "a.b"}"#,
            "source.stream",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "a.>.b", "stream": "S"}"#,
            "source.subject",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "stream": "S", "in_flight": 5}"#,
            "source.in_flight",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "stream": "S", "ack_wait_s": 0}"#,
            "source.ack_wait_s",
        ),
        (
            r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "stream": "S", "consumer": "a b"}"#,
            "source.consumer",
        ),
    ];
    for (src, field) in src_cases {
        let e = parse_pair(&pair("a", src, ok_dst)).expect_err(field);
        assert_eq!(e.problems[0].path, field, "{e}");
    }
    // A creds file and a server name are taken (the engine checks the file at create).
    let creds = r#"{"type": "nats", "servers": ["tls://10.0.0.1"], "subject": "s", "auth": {"creds_file": "/etc/iobp/edge.creds"}, "tls": {"server_name": "nats.plant"}}"#;
    parse_pair(&pair("a", ok_src, creds)).expect("creds_file and tls.server_name");
    // Wildcards are whole tokens in a source's filter.
    let wild = r#"{"type": "nats", "servers": ["nats://h"], "subject": "a.*.c.>", "stream": "S"}"#;
    parse_pair(&pair("a", wild, ok_dst)).expect("wildcard filter");
}

#[test]
fn a_pair_id_that_breaks_a_nats_subject_or_consumer_name_is_refused_at_validation() {
    // The id replaces `{pair}` in a destination's subject: an id ending in `.` or holding `..`
    // makes an empty token, which JetStream would refuse only at run time, message by message.
    let dst = |subject: &str| {
        format!(r#"{{"type": "nats", "servers": ["nats://h"], "subject": "{subject}"}}"#)
    };
    for (id, subject) in
        [("a.", "plant.{pair}.results"), ("a..b", "plant.{pair}"), ("x.", "{pair}")]
    {
        let e = parse_pair(&pair(id, TCP_5000, &dst(subject))).expect_err(id);
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].path, "destination.subject", "{e}");
        assert!(e.problems[0].message.contains(&format!("pair id `{id}`")), "{e}");
    }
    // In a backup destination too.
    let json = format!(
        r#"{{"id": "a.", "source": {TCP_5000}, "destination": {CLIENT}, "failover": [{}]}}"#,
        dst("plant.{pair}")
    );
    let e = parse_pair(&json).expect_err("backup");
    assert_eq!(e.problems[0].path, "failover[0].subject", "{e}");
    // An id with inner dots makes more tokens, which is a valid subject.
    parse_pair(&pair("line.3", TCP_5000, &dst("plant.{pair}.results"))).expect("a.b ids");
    // The id is not used where the subject has no `{pair}`.
    parse_pair(&pair("a.", TCP_5000, &dst("plant.results"))).expect("no {pair}");
    // A source's default consumer is `iobp-<pair id>`; a durable name cannot hold `.`.
    let src = r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "stream": "S"}"#;
    let e = parse_pair(&pair("line.3", src, CLIENT)).expect_err("default consumer");
    assert_eq!(e.problems[0].path, "source.consumer", "{e}");
    assert!(e.problems[0].message.contains("iobp-line.3"), "{e}");
    let named = r#"{"type": "nats", "servers": ["nats://h"], "subject": "s", "stream": "S", "consumer": "line3"}"#;
    parse_pair(&pair("line.3", named, CLIENT)).expect("a named consumer");
}

#[test]
fn astm_sides_speak_the_protocol_themselves_so_ack_stays_none() {
    let ok = pair(
        "lab",
        r#"{"type": "serial", "port": "/dev/ttyUSB0", "baud_rate": 9600, "framing": {"type": "astm"}}"#,
        r#"{"type": "tcp_client", "host": "lis", "port": 7000, "framing": {"type": "astm", "max_message_bytes": 65536}}"#,
    );
    let spec = parse_pair(&ok).expect("valid");
    assert_eq!(spec.source.framing().map(FramingSpec::type_name), Some("astm"));
    assert_eq!(spec.destination.framing().map(FramingSpec::max_message_bytes), Some(65536));
    let doc = format!(
        r#"{{"channel_pairs": [{}]}}"#,
        pair(
            "lab",
            r#"{"type": "tcp_server", "host": "h", "port": 1, "framing": {"type": "astm"}, "ack": "byte"}"#,
            r#"{"type": "tcp_client", "host": "h", "port": 2, "framing": {"type": "astm", "max_message_bytes": 0}}"#,
        )
    );
    assert_eq!(
        paths(&doc),
        ["channel_pairs[0].source.ack", "channel_pairs[0].destination.framing.max_message_bytes"]
    );
}

fn modbus(transport: &str, polls: &str) -> String {
    format!(r#"{{"type": "modbus", "transport": {transport}, "polls": [{polls}]}}"#)
}

const MB_TCP: &str = r#"{"type": "tcp", "host": "10.0.0.9"}"#;
const MB_POLL: &str = r#"{"name": "tank", "unit": 1, "function": "holding_registers",
    "address": 100, "count": 4, "interval_ms": 1000}"#;

#[test]
fn a_modbus_source_parses_with_its_defaults() {
    let fields = r#"{"name": "tank", "unit": 1, "function": "holding_registers", "address": 100,
        "count": 4, "interval_ms": 1000, "fields": [
            {"name": "level", "offset": 0, "type": "f32", "word_order": "little", "scale": 0.1},
            {"name": "alarm", "offset": 2, "type": "bool"}]}"#;
    let p = parse_pair(&pair("mb", &modbus(MB_TCP, fields), CLIENT)).expect("valid");
    let iobp_config::EndpointSpec::Modbus(m) = &p.source else { panic!("modbus") };
    let iobp_config::ModbusTransport::Tcp(t) = &m.transport else { panic!("tcp") };
    assert_eq!((t.port, m.transport.timeout_ms()), (502, 1000));
    assert_eq!(m.polls[0].fields[0].word_order, iobp_config::WordOrder::Little);
    // It round-trips as written (an export imports as the same pair).
    let again = parse_pair(&serde_json::to_string(&p).expect("json")).expect("again");
    assert_eq!(again, p);
    let rtu = r#"{"type": "rtu", "port": "/dev/ttyUSB0", "baud_rate": 19200, "parity": "Even",
        "rs485": {"rts_on_send": true}}"#;
    parse_pair(&pair("rtu", &modbus(rtu, MB_POLL), CLIENT)).expect("rtu");
}

#[test]
fn modbus_settings_are_checked_with_field_paths() {
    let polls = r#"
        {"name": "ok", "unit": 1, "function": "coils", "address": 0, "count": 2000, "interval_ms": 10},
        {"name": "ok", "unit": 0, "function": "holding_registers", "address": 0, "count": 126, "interval_ms": 5},
        {"name": "far", "unit": 1, "function": "input_registers", "address": 65530, "count": 10, "interval_ms": 100},
        {"name": "f", "unit": 1, "function": "discrete_inputs", "address": 0, "count": 4, "interval_ms": 100,
         "fields": [{"name": "x", "offset": 0, "type": "u16"}, {"name": "x", "offset": 4, "type": "bool", "scale": 2}]},
        {"name": "g", "unit": 1, "function": "holding_registers", "address": 0, "count": 2, "interval_ms": 100,
         "fields": [{"name": "y", "offset": 1, "type": "f32"}]}"#;
    let rtu = r#"{"type": "rtu", "port": "/dev/ttyUSB0", "data_bits": 9, "timeout_ms": 5}"#;
    let p =
        paths(&format!(r#"{{"channel_pairs": [{}]}}"#, pair("mb", &modbus(rtu, polls), CLIENT)));
    for want in [
        "channel_pairs[0].source.transport.data_bits",
        "channel_pairs[0].source.transport.timeout_ms",
        "channel_pairs[0].source.polls[1].name",
        "channel_pairs[0].source.polls[1].unit",
        "channel_pairs[0].source.polls[1].count",
        "channel_pairs[0].source.polls[1].interval_ms",
        "channel_pairs[0].source.polls[2].count",
        "channel_pairs[0].source.polls[3].fields[0].type",
        "channel_pairs[0].source.polls[3].fields[1].name",
        "channel_pairs[0].source.polls[3].fields[1].offset",
        "channel_pairs[0].source.polls[3].fields[1].scale",
        "channel_pairs[0].source.polls[4].fields[0].offset",
    ] {
        assert!(p.iter().any(|x| x == want), "missing {want} in {p:?}");
    }
    assert!(!p.iter().any(|x| x.contains("polls[0]")), "polls[0] is valid: {p:?}");
    // Parse errors inside the transport and the polls name their path too.
    for (doc, want) in [
        (modbus(r#"{"type": "tcp", "host": "h", "prot": 1}"#, MB_POLL), "source.transport.prot"),
        (modbus(r#"{"type": "bacnet"}"#, MB_POLL), "source.transport"),
        (
            modbus(
                MB_TCP,
                r#"{"name": "a", "unit": 1, "function": "registers", "address": 0, "count": 1, "interval_ms": 10}"#,
            ),
            "source.polls[0].function",
        ),
    ] {
        let e = parse_pair(&pair("mb", &doc, CLIENT)).expect_err("refused");
        assert!(e.problems[0].path.starts_with(want), "{want}: {e}");
    }
}

#[test]
fn modbus_is_a_source_only_and_needs_polls_within_bounds() {
    let p = paths(&format!(
        r#"{{"channel_pairs": [{}]}}"#,
        pair("mb", TCP_5000, &modbus(MB_TCP, MB_POLL))
    ));
    assert_eq!(p, ["channel_pairs[0].destination.type"]);
    let e = parse_pair(&pair("mb", &modbus(MB_TCP, ""), CLIENT)).expect_err("no polls");
    assert_eq!(e.problems[0].path, "source.polls");
    let many = vec![MB_POLL; 257].join(",");
    let e = parse_pair(&pair("mb", &modbus(MB_TCP, &many), CLIENT)).expect_err("too many");
    assert!(
        e.problems.iter().any(|p| p.path == "source.polls" && p.message.contains("256")),
        "{e}"
    );
}

#[test]
fn a_modbus_rtu_port_counts_as_a_serial_port_in_use() {
    let rtu = r#"{"type": "rtu", "port": "/dev/ttyUSB0"}"#;
    let serial = r#"{"type": "serial", "port": "/dev/ttyUSB0"}"#;
    let doc = format!(
        r#"{{"channel_pairs": [{}, {}]}}"#,
        pair("a", &modbus(rtu, MB_POLL), CLIENT),
        pair("b", serial, CLIENT)
    );
    let p = paths(&doc);
    assert!(p.iter().any(|x| x.starts_with("channel_pairs[1].source.port")), "{p:?}");
}

#[test]
fn a_dead_letter_policy_takes_1_to_1000_refusals() {
    let with = |n: u32| {
        format!(
            r#"{{"channel_pairs": [{{"id": "p", "dead_letter": {{"after_rejections": {n}}}, "source": {TCP_5000}, "destination": {CLIENT}}}]}}"#
        )
    };
    parse_document(&with(3)).expect("valid");
    assert_eq!(paths(&with(0)), ["channel_pairs[0].dead_letter.after_rejections"]);
    assert_eq!(paths(&with(1001)), ["channel_pairs[0].dead_letter.after_rejections"]);
    let p = parse_pair(&pair("p", TCP_5000, CLIENT)).expect("valid");
    assert_eq!(p.dead_letter, None, "default: retry forever, strict FIFO");
}

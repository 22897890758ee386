//! JetStream streams as the tests see them: create one the way operators are told to
//! (file storage, a duplicate window), read back every message with its `Nats-Msg-Id`, and
//! check what a duplicate window must guarantee.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;

/// Creates stream `name` over `subjects`: file storage, duplicate window 2 minutes.
///
/// # Panics
/// When the server refuses.
pub async fn create_stream(js: &jetstream::Context, name: &str, subjects: &[&str]) {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(ToString::to_string).collect(),
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Every message in stream `name`: (`Nats-Msg-Id`, payload), in stream order.
///
/// # Panics
/// When the stream cannot be read within 10 s per message.
pub async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<(String, String)> {
    let mut stream = js.get_stream(name).await.expect("stream");
    let total = stream.info().await.expect("info").state.messages;
    let c = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("reading consumer");
    let mut msgs = c.messages().await.expect("messages");
    let mut out = Vec::new();
    while (out.len() as u64) < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .expect("the stream's messages come")
            .expect("more")
            .expect("a message");
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(ToString::to_string)
            .unwrap_or_default();
        out.push((id, String::from_utf8_lossy(&m.payload).into_owned()));
    }
    out
}

/// Asserts that every message has a `Nats-Msg-Id` and that no id appears twice (what the
/// duplicate window must ensure for re-sends).
///
/// # Panics
/// When one does.
pub fn assert_unique_ids(msgs: &[(String, String)]) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (id, _) in msgs {
        assert!(!id.is_empty(), "every message has a Nats-Msg-Id");
        *ids.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "ids stored twice: {twice:?}");
}

/// [`assert_unique_ids`], and no payload twice either (when what went in was unique).
///
/// # Panics
/// When an id or a payload appears twice.
pub fn assert_unique_ids_and_payloads(msgs: &[(String, String)]) {
    assert_unique_ids(msgs);
    let mut payloads: HashMap<&str, usize> = HashMap::new();
    for (_, p) in msgs {
        *payloads.entry(p).or_default() += 1;
    }
    let twice: Vec<_> = payloads.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "payloads stored twice: {twice:?}");
}

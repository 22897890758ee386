//! What applying a configuration document would change: settings field by field, pairs added,
//! removed, changed (field by field) or unchanged, and which pairs would restart. `config
//! diff` prints it without changing anything; `config import` prints it when it applies, and
//! `run --config` prints the changes (unchanged pairs only counted).
//!
//! Fields are named by their JSON path in the pair (`destination.port`, `failover[0].host`).
//! A field whose name holds `password` is never shown: only that it changed.

use std::fmt::Write as _;

use serde_json::Value;

use crate::{ChannelPairSpec, ConfigDocument, Settings};

/// How a document is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Pairs are created or replaced by id; the others are kept (`run --config`,
    /// `config import --merge`, the API).
    Merge,
    /// The document becomes the whole configuration: pairs not in it are deleted with their
    /// buffers (`config import`).
    Replace,
}

/// One field that changes.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Its JSON path (`destination.port`).
    pub path: String,
    /// Its value before (`None`: not set).
    pub before: Option<Value>,
    /// Its value after (`None`: not set any more).
    pub after: Option<Value>,
}

/// What happens to one pair.
#[derive(Debug, Clone, PartialEq)]
pub enum PairChange {
    /// New: created (and started if enabled).
    Added(String),
    /// Not in a replacing document: deleted with its buffer.
    Removed(String),
    /// Replaced: these fields change; it restarts (if enabled).
    Changed {
        /// The pair.
        id: String,
        /// What changes.
        fields: Vec<FieldChange>,
        /// Whether it runs after the change (a disabled pair is stopped, not restarted).
        enabled: bool,
    },
    /// The same configuration: it keeps running, connections and all.
    Unchanged(String),
    /// Not in a merged document: kept as it is.
    Kept(String),
}

/// Everything applying a document would change.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDiff {
    /// How the document is applied.
    pub mode: ApplyMode,
    /// Settings fields that change (none when the document has no settings).
    pub settings: Vec<FieldChange>,
    /// Every pair of the configuration before and after, in id order.
    pub pairs: Vec<PairChange>,
}

impl ConfigDiff {
    /// The changes from (`settings`, `pairs`) to what applying `doc` in `mode` makes of them.
    #[must_use]
    pub fn between(
        settings: &Settings,
        pairs: &[ChannelPairSpec],
        doc: &ConfigDocument,
        mode: ApplyMode,
    ) -> ConfigDiff {
        let settings = doc.settings.as_ref().map_or_else(Vec::new, |after| {
            let mut out = Vec::new();
            diff_values("", &to_value(settings), &to_value(after), &mut out);
            out
        });
        let mut out: Vec<PairChange> = Vec::new();
        for new in &doc.channel_pairs {
            let change = match pairs.iter().find(|p| p.id == new.id) {
                None => PairChange::Added(new.id.clone()),
                Some(old) if old == new => PairChange::Unchanged(new.id.clone()),
                Some(old) => {
                    let mut fields = Vec::new();
                    diff_values("", &to_value(old), &to_value(new), &mut fields);
                    PairChange::Changed { id: new.id.clone(), fields, enabled: new.enabled }
                }
            };
            out.push(change);
        }
        for old in pairs.iter().filter(|p| !doc.channel_pairs.iter().any(|n| n.id == p.id)) {
            out.push(match mode {
                ApplyMode::Merge => PairChange::Kept(old.id.clone()),
                ApplyMode::Replace => PairChange::Removed(old.id.clone()),
            });
        }
        out.sort_by(|a, b| a.id().cmp(b.id()));
        ConfigDiff { mode, settings, pairs: out }
    }

    /// Whether applying changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self
                .pairs
                .iter()
                .all(|p| matches!(p, PairChange::Unchanged(_) | PairChange::Kept(_)))
    }

    /// The pairs that would restart (changed and enabled).
    #[must_use]
    pub fn restarts(&self) -> Vec<&str> {
        self.pairs
            .iter()
            .filter_map(|p| match p {
                PairChange::Changed { id, enabled: true, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The summary operators read: one line per pair (and per changed field), then a count.
    #[must_use]
    pub fn render(&self) -> String {
        self.render_lines(true)
    }

    /// The summary without the pairs that stay as they are (only counted): what `run --config`
    /// prints at every start, where thousands of unchanged pairs would bury a change.
    #[must_use]
    pub fn render_changes(&self) -> String {
        self.render_lines(false)
    }

    fn render_lines(&self, all: bool) -> String {
        let mut s = String::new();
        if !self.settings.is_empty() {
            s.push_str("settings:\n");
            for f in &self.settings {
                let _ = writeln!(s, "    {}", f.describe());
            }
        }
        for p in &self.pairs {
            let _ = match p {
                PairChange::Added(id) => writeln!(s, "+ {id}: added"),
                PairChange::Removed(id) => {
                    writeln!(s, "- {id}: removed, with every message in its buffer")
                }
                PairChange::Changed { id, fields, enabled } => {
                    let what = if *enabled { "restarts" } else { "stops (disabled)" };
                    let _ = writeln!(s, "~ {id}: changed, {what}");
                    for f in fields {
                        let _ = writeln!(s, "    {}", f.describe());
                    }
                    Ok(())
                }
                PairChange::Unchanged(id) if all => {
                    writeln!(s, "= {id}: unchanged, keeps running")
                }
                PairChange::Kept(id) if all => writeln!(s, "  {id}: not in the document, kept"),
                PairChange::Unchanged(_) | PairChange::Kept(_) => Ok(()),
            };
        }
        let count = |f: fn(&PairChange) -> bool| self.pairs.iter().filter(|p| f(p)).count();
        let _ = write!(
            s,
            "{} added, {} changed ({} restart), {} removed, {} unchanged{}",
            count(|p| matches!(p, PairChange::Added(_))),
            count(|p| matches!(p, PairChange::Changed { .. })),
            self.restarts().len(),
            count(|p| matches!(p, PairChange::Removed(_))),
            count(|p| matches!(p, PairChange::Unchanged(_) | PairChange::Kept(_))),
            if self.settings.is_empty() { "" } else { "; settings change" },
        );
        s
    }
}

impl PairChange {
    /// The pair's id.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            PairChange::Added(id)
            | PairChange::Removed(id)
            | PairChange::Unchanged(id)
            | PairChange::Kept(id)
            | PairChange::Changed { id, .. } => id,
        }
    }
}

impl FieldChange {
    /// `destination.port: 6000 → 6001`; a password only says that it changes.
    #[must_use]
    pub fn describe(&self) -> String {
        let secret = self.path.rsplit(['.', '[']).next().is_some_and(|l| l.contains("password"));
        let show = |v: &Option<Value>| match v {
            None => "(not set)".to_string(),
            Some(_) if secret => crate::PASSWORD_MASK.to_string(),
            Some(v) => v.to_string(),
        };
        if secret && self.before.is_some() && self.after.is_some() {
            return format!("{}: changed (not shown)", self.path);
        }
        format!("{}: {} → {}", self.path, show(&self.before), show(&self.after))
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Adds the differences between `a` and `b` under `path`: objects key by key, arrays of the
/// same length element by element, anything else as a whole.
fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    if a == b {
        return;
    }
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff_values(&join(k), va, vb, out),
                    (va, vb) => out.push(FieldChange {
                        path: join(k),
                        before: va.cloned(),
                        after: vb.cloned(),
                    }),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => out.push(FieldChange {
            path: path.to_string(),
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_pair;

    fn pair(id: &str, port: u16, extra: &str) -> ChannelPairSpec {
        parse_pair(&format!(
            r#"{{"id": "{id}"{extra},
                "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {port}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "10.0.0.5", "port": 6000, "framing": {{"type": "line"}}}}}}"#
        ))
        .expect("pair")
    }

    #[test]
    fn pairs_are_added_changed_field_by_field_unchanged_kept_or_removed() {
        let before = vec![pair("a", 5001, ""), pair("b", 5002, ""), pair("c", 5003, "")];
        let mut changed = pair("b", 5002, "");
        changed.destination = pair("x", 5009, "").destination;
        if let crate::EndpointSpec::TcpClient(t) = &mut changed.destination {
            t.port = 6001;
        }
        let doc = ConfigDocument {
            settings: None,
            channel_pairs: vec![pair("a", 5001, ""), changed, pair("d", 5004, "")],
        };
        let d = ConfigDiff::between(&Settings::default(), &before, &doc, ApplyMode::Merge);
        assert_eq!(d.restarts(), ["b"]);
        let ids: Vec<(&str, &str)> = d
            .pairs
            .iter()
            .map(|p| {
                let kind = match p {
                    PairChange::Added(_) => "added",
                    PairChange::Removed(_) => "removed",
                    PairChange::Changed { .. } => "changed",
                    PairChange::Unchanged(_) => "unchanged",
                    PairChange::Kept(_) => "kept",
                };
                (p.id(), kind)
            })
            .collect();
        assert_eq!(ids, [("a", "unchanged"), ("b", "changed"), ("c", "kept"), ("d", "added")]);
        let text = d.render();
        assert!(
            text.contains("~ b: changed, restarts\n    destination.port: 6000 → 6001"),
            "{text}"
        );
        assert!(text.ends_with("1 added, 1 changed (1 restart), 0 removed, 2 unchanged"), "{text}");
        let short = d.render_changes();
        assert!(!short.contains("= a") && !short.contains("  c:"), "{short}");
        assert!(short.contains("~ b: changed") && short.contains("2 unchanged"), "{short}");
        // Replacing, the pair not in the document goes.
        let d = ConfigDiff::between(&Settings::default(), &before, &doc, ApplyMode::Replace);
        assert!(d.pairs.contains(&PairChange::Removed("c".into())));
        assert!(!d.is_empty());
        // The same document again changes nothing.
        let same = ConfigDocument { settings: None, channel_pairs: before.clone() };
        let d = ConfigDiff::between(&Settings::default(), &before, &same, ApplyMode::Replace);
        assert!(d.is_empty(), "{}", d.render());
    }

    #[test]
    fn settings_change_field_by_field_and_a_password_is_never_shown() {
        let doc = ConfigDocument {
            settings: Some(Settings { retention_hours: 48, ..Settings::default() }),
            channel_pairs: Vec::new(),
        };
        let d = ConfigDiff::between(&Settings::default(), &[], &doc, ApplyMode::Merge);
        assert_eq!(d.settings.len(), 1);
        assert_eq!(d.settings[0].describe(), "retention_hours: 24 → 48");
        let f = FieldChange {
            path: "source.auth.password".into(),
            before: Some(Value::from("old-secret")),
            after: Some(Value::from("new-secret")),
        };
        assert_eq!(f.describe(), "source.auth.password: changed (not shown)");
        let f = FieldChange { before: None, ..f };
        assert!(!f.describe().contains("secret"), "{}", f.describe());
    }
}

//! `config check`, `config export`, `config import`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use iobp_config::{ConfigDocument, parse_document};
use iobp_store::Store;

fn read_document(file: &Path) -> anyhow::Result<ConfigDocument> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    parse_document(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

pub fn check(file: &Path) -> anyhow::Result<()> {
    let doc = read_document(file)?;
    println!(
        "{}: valid ({} channel pair(s){})",
        file.display(),
        doc.channel_pairs.len(),
        if doc.settings.is_some() { ", settings" } else { "" }
    );
    Ok(())
}

pub fn export(data_dir: Option<PathBuf>, include_secrets: bool) -> anyhow::Result<()> {
    let dir = crate::data_dir::resolve(data_dir);
    if !dir.join(iobp_store::DB_FILE).exists() {
        bail!("no configuration in {} (nothing was ever stored there)", dir.display());
    }
    let store = Store::open(&dir)?;
    let mut doc = store.export()?;
    if include_secrets {
        eprintln!("warning: this export holds relay passwords in clear text: keep it private");
    } else {
        let masked = doc.mask_passwords();
        if masked > 0 {
            eprintln!(
                "{masked} relay password(s) shown as {}: importing this document on this data \
                 directory keeps the stored ones; use --include-secrets to carry them elsewhere",
                iobp_config::PASSWORD_MASK
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

pub fn import(file: &Path, data_dir: Option<PathBuf>, merge: bool) -> anyhow::Result<()> {
    let mut doc = read_document(file)?;
    let dir = crate::data_dir::resolve(data_dir);
    crate::data_dir::private_from_now_on();
    // A running instance keeps its configuration in memory and would not see (and could
    // overwrite) an import; refuse rather than surprise.
    let _lock = crate::data_dir::lock(&dir)?;
    let store = Store::open(&dir)?;
    // A redacted export keeps the passwords stored here; elsewhere they must be given.
    let problems = doc.restore_masked_passwords(&store.load_pairs()?.pairs);
    if !problems.is_empty() {
        let e = iobp_config::ConfigError { problems };
        bail!("{}: {e} (export with --include-secrets to carry passwords)", file.display());
    }
    let current = store.load_settings()?;
    let merged_pairs = if merge {
        let mut pairs = store.load_pairs()?.pairs;
        pairs.retain(|p| !doc.channel_pairs.iter().any(|d| d.id == p.id));
        pairs.extend(doc.channel_pairs.iter().cloned());
        pairs
    } else {
        doc.channel_pairs.clone()
    };
    // Validate the configuration as it will be after the import.
    let after = ConfigDocument { settings: doc.settings.clone(), channel_pairs: merged_pairs };
    after.validate(&current).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    store.import(&doc, !merge)?;
    println!(
        "imported {} channel pair(s){} into {}",
        doc.channel_pairs.len(),
        if doc.settings.is_some() { " and settings" } else { "" },
        dir.display()
    );
    Ok(())
}

//! `config check`, `config export`, `config import`, `config diff`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use iobp_config::{
    ApplyMode, ChannelPairSpec, ConfigDiff, ConfigDocument, Settings, parse_document,
};
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

/// The stored configuration is valid and the data directory's format readable (nothing is
/// written; a directory with nothing stored yet passes).
pub fn check_stored(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = crate::data_dir::resolve(data_dir);
    crate::data_dir::check_format(&dir)?;
    if !dir.join(iobp_store::DB_FILE).exists() {
        println!("{}: nothing stored yet", dir.display());
        return Ok(());
    }
    let store = Store::open(&dir)?;
    let settings = store.load_settings()?;
    let doc = ConfigDocument { settings: None, channel_pairs: store.load_pairs()?.pairs };
    doc.validate(&settings).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    println!("{}: valid ({} channel pair(s))", dir.display(), doc.channel_pairs.len());
    Ok(())
}

pub fn export(data_dir: Option<PathBuf>, include_secrets: bool) -> anyhow::Result<()> {
    let dir = crate::data_dir::resolve(data_dir);
    if !dir.join(iobp_store::DB_FILE).exists() {
        bail!("no configuration in {} (nothing was ever stored there)", dir.display());
    }
    crate::data_dir::check_format(&dir)?;
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
    let format = crate::data_dir::check_format(&dir)?;
    crate::data_dir::private_from_now_on();
    // A running instance keeps its configuration in memory and would not see (and could
    // overwrite) an import; refuse rather than surprise.
    let _lock = crate::data_dir::lock(&dir)?;
    let store = Store::open(&dir)?;
    // A directory this import creates is in this binary's format; an older one is left for
    // `run` to migrate and record once everything in it opened.
    if format == crate::data_dir::Format::Empty {
        crate::data_dir::record_format(&dir)?;
    }
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
    let mode = if merge { ApplyMode::Merge } else { ApplyMode::Replace };
    let stored = store.load_pairs()?.pairs;
    let diff = ConfigDiff::between(&current, &stored, &doc, mode);
    let removed: Vec<&str> = if merge {
        Vec::new()
    } else {
        stored
            .iter()
            .filter(|p| !doc.channel_pairs.iter().any(|d| d.id == p.id))
            .map(|p| p.id.as_str())
            .collect()
    };
    store.import(&doc, !merge)?;
    // The configuration first: should this fail half-way, a pair never loses its buffer while
    // it is still configured. What stays behind is named, to be removed by hand.
    for id in removed {
        iobp_engine::Engine::remove_buffers_offline(&dir, id).with_context(|| {
            format!("pair {id} was removed, but its buffer under {} was not", dir.display())
        })?;
    }
    println!("{}", diff.render());
    println!(
        "imported {} channel pair(s){} into {}",
        doc.channel_pairs.len(),
        if doc.settings.is_some() { " and settings" } else { "" },
        dir.display()
    );
    Ok(())
}

/// `config diff`: what applying a document would change, on a running instance (through its
/// API) or a data directory; changes nothing.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The JSON document.
    file: PathBuf,
    /// Compare with this data directory (the default, when no `--url` is given).
    #[arg(long, env = "IOBP_DATA_DIR", conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// Compare with a running instance: its Operations Portal, `http://HOST:PORT` or
    /// `https://HOST:PORT` (relay passwords are then not compared: the API never shows them).
    #[arg(long)]
    url: Option<String>,
    /// The user to log in as (any role may read the configuration).
    #[arg(long, default_value = "admin", requires = "url")]
    user: String,
    /// The environment variable holding the password.
    #[arg(long, default_value = "IOBP_PASSWORD", requires = "url")]
    password_env: String,
    /// HTTPS: trust this CA (PEM) instead of the system's roots.
    #[arg(long, requires = "url")]
    ca: Option<PathBuf>,
    /// As `config import` applies a document: pairs it does not mention are deleted (default:
    /// as `run --config` and `config import --merge`, which keep them).
    #[arg(long)]
    replace: bool,
}

pub(crate) fn diff(args: &DiffArgs) -> anyhow::Result<()> {
    let mut doc = read_document(&args.file)?;
    let (settings, pairs) = if let Some(url) = &args.url {
        let password = std::env::var(&args.password_env).with_context(|| {
            format!("set the password in the environment variable {}", args.password_env)
        })?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let current = rt.block_on(running_configuration(url, args, &password))?;
        // The API shows passwords masked: compare masked with masked.
        doc.mask_passwords();
        current
    } else {
        stored_configuration(args, &mut doc)?
    };
    let mode = if args.replace { ApplyMode::Replace } else { ApplyMode::Merge };
    let diff = ConfigDiff::between(&settings, &pairs, &doc, mode);
    // What the configuration would be after: it must be valid to be applied at all.
    let after = ConfigDocument {
        settings: doc.settings.clone(),
        channel_pairs: pairs
            .iter()
            .filter(|p| mode == ApplyMode::Merge && !doc.channel_pairs.iter().any(|d| d.id == p.id))
            .chain(&doc.channel_pairs)
            .cloned()
            .collect(),
    };
    after.validate(&settings).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    println!("{}", diff.render());
    Ok(())
}

/// The settings and pairs stored in the data directory; masked passwords of the document
/// take the stored ones, as an import would.
fn stored_configuration(
    args: &DiffArgs,
    doc: &mut ConfigDocument,
) -> anyhow::Result<(Settings, Vec<ChannelPairSpec>)> {
    let dir = crate::data_dir::resolve(args.data_dir.clone());
    if !dir.join(iobp_store::DB_FILE).exists() {
        bail!("no configuration in {} (nothing was ever stored there)", dir.display());
    }
    crate::data_dir::check_format(&dir)?;
    let store = Store::open(&dir)?;
    let pairs = store.load_pairs()?.pairs;
    let problems = doc.restore_masked_passwords(&pairs);
    if !problems.is_empty() {
        let e = iobp_config::ConfigError { problems };
        bail!("{}: {e}", args.file.display());
    }
    Ok((store.load_settings()?, pairs))
}

/// The settings and pairs of a running instance, read through its API.
async fn running_configuration(
    url: &str,
    args: &DiffArgs,
    password: &str,
) -> anyhow::Result<(Settings, Vec<ChannelPairSpec>)> {
    let portal = crate::api_client::Portal::parse(url, args.ca.as_deref())?;
    let session = portal.login(&args.user, password).await?;
    let s = session.call("GET", "/api/v1/settings", "").await?;
    let settings: Settings =
        serde_json::from_value(s["settings"].clone()).context("the instance's settings")?;
    let listed = session.call("GET", "/api/v1/pairs", "").await?;
    let mut pairs = Vec::new();
    for p in listed.as_array().context("the instance's pairs")? {
        let spec = iobp_config::parse_pair(&p["spec"].to_string())
            .map_err(|e| anyhow::anyhow!("pair {} of the instance: {e}", p["id"]))?;
        pairs.push(spec);
    }
    Ok((settings, pairs))
}

/// `backup DIR`: a consistent copy of the store (settings, pairs, users, audit trail) — taken
/// with `SQLite`'s online backup API, so the instance may keep running — as the data directory
/// `out` (the store and its format record; the buffers' messages are not copied).
pub fn backup(out: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = crate::data_dir::resolve(data_dir);
    if !dir.join(iobp_store::DB_FILE).exists() {
        bail!("no configuration in {} (nothing was ever stored there)", dir.display());
    }
    crate::data_dir::check_format(&dir)?;
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} is not empty: a backup goes into a new directory", out.display());
    }
    crate::data_dir::private_from_now_on();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let store = Store::open(&dir)?;
    let copy = out.join(iobp_store::DB_FILE);
    store.backup_to(&copy)?;
    crate::data_dir::record_format(out)?;
    let backed_up = Store::open(out)?;
    println!(
        "backed up {} channel pair(s) and {} user(s) from {} to {} (the buffers' messages are \
         not part of a backup)",
        backed_up.load_pairs()?.pairs.len(),
        backed_up.list_users()?.len(),
        dir.display(),
        copy.display()
    );
    Ok(())
}

/// `user reset-password [USER]`: a new random password for a user locked out (by default
/// `admin`), to be changed at the next login, printed once. The instance must be stopped: it
/// keeps sessions in memory, and the command's trust is that of reading the data directory.
pub fn reset_password(username: &str, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = crate::data_dir::resolve(data_dir);
    if !dir.join(iobp_store::DB_FILE).exists() {
        bail!("no users in {} (nothing was ever stored there)", dir.display());
    }
    crate::data_dir::check_format(&dir)?;
    crate::data_dir::private_from_now_on();
    let _lock = crate::data_dir::lock(&dir)?;
    let store = Store::open(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let passwords = iobp_web::Passwords::new();
    let password = runtime.block_on(iobp_web::reset_password(&store, &passwords, username))?;
    println!("new password for {username}: {password}");
    println!(
        "(shown once; it must be changed at the next login; every session of {username} was ended)"
    );
    Ok(())
}

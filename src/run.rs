//! `iobufferpro run`: start the engine with the stored configuration (plus `--config`),
//! serve the two portal ports, and shut down cleanly on SIGINT/SIGTERM (on Windows: Ctrl-C, or
//! the service manager's Stop or Shutdown): stop accepting, let running appends finish their
//! fdatasync, checkpoint every buffer, exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use iobp_config::{ConfigDocument, Settings, parse_document};
use iobp_engine::{Engine, EngineOptions};
use iobp_store::Store;

use iobp_web::{LogBuffer, Portal, WebShared, ensure_admin, router};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Data directory (buffers and the configuration database).
    #[arg(long, env = "IOBP_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A configuration document to apply at start: pairs are created or replaced by id,
    /// settings replaced; the result is stored.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Operations Portal address for this run (default: the stored setting, 0.0.0.0:8080).
    #[arg(long, env = "IOBP_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// Management Dashboard address for this run (default: the stored setting, 0.0.0.0:8081).
    #[arg(long, env = "IOBP_MGMT_LISTEN")]
    mgmt_listen: Option<SocketAddr>,
}

pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let nofile = raise_fd_limit();
    // Two workers: the work per message is small and a Raspberry Pi has few cores; fsyncs run
    // on each buffer's own writer thread, not here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("iobp-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(args, nofile))
}

fn init_logging(level: &str, buffer: &LogBuffer) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    // IOBP_LOG overrides the setting, in `target=level,...` form (e.g.
    // `info,iobp_engine=debug`), for this run: a changed `log_level` then changes nothing.
    let fixed = std::env::var("IOBP_LOG").ok().and_then(|s| s.parse::<Targets>().ok());
    if !buffer.set_level(level) {
        buffer.set_level("info");
    }
    let level_layer = fixed.is_none().then(|| buffer.level_layer());
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(buffer.layer())
        .with(fixed)
        .with(level_layer)
        .try_init();
}

async fn run(args: RunArgs, nofile: Option<u64>) -> anyhow::Result<()> {
    let dir = crate::data_dir::resolve(args.data_dir.clone());
    // A newer format is refused before anything here is touched.
    let format = crate::data_dir::check_format(&dir)?;
    crate::data_dir::private_from_now_on();
    let _lock = crate::data_dir::lock(&dir)?;
    let made_private = crate::data_dir::make_private(&dir)
        .with_context(|| format!("cannot restrict the permissions of {}", dir.display()))?;
    let store = Arc::new(Store::open(&dir)?);
    let (settings, doc) = load_configuration(&args, &store)?;
    let logs = LogBuffer::default();
    init_logging(&settings.log_level, &logs);
    if made_private > 0 {
        tracing::warn!(
            "{made_private} file(s) and director(ies) in {} were readable by other users; now \
             only this user can read them",
            dir.display()
        );
    }
    warn_about_ungranted_relay_users(&store);
    let ops: SocketAddr = match args.ops_listen {
        Some(a) => a,
        None => settings.ops_listen.parse().context("settings.ops_listen")?,
    };
    let mgmt: SocketAddr = match args.mgmt_listen {
        Some(a) => a,
        None => settings.mgmt_listen.parse().context("settings.mgmt_listen")?,
    };
    // The portals bind before the pairs start: an address with port 0 gets a free port, and
    // the pairs are checked against the ports actually taken (the banner prints them).
    let bind = |addr: SocketAddr, what: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the {what}"))
    };
    let ops_l = bind(ops, "Operations Portal").await?;
    let mgmt_l = bind(mgmt, "Management Dashboard").await?;
    let (ops, mgmt) = (ops_l.local_addr()?, mgmt_l.local_addr()?);
    let settings_tls = (settings.tls_cert.clone(), settings.tls_key.clone());
    let runtime_settings =
        Settings { ops_listen: ops.to_string(), mgmt_listen: mgmt.to_string(), ..settings };
    let engine = start_engine(&dir, runtime_settings, &store).await;
    if let Some(doc) = &doc
        && let Err(e) = engine.apply(doc).await
    {
        engine.shutdown().await;
        let file = args.config.unwrap_or_default();
        return Err(anyhow::anyhow!("applying {}: {e}", file.display()));
    }
    // Everything opened (the store migrated itself, the buffers recovered): the directory is
    // in this binary's format from now on.
    if format != crate::data_dir::Format::Current {
        crate::data_dir::record_format(&dir)?;
        if let crate::data_dir::Format::Older(old) = format {
            tracing::info!(
                "data directory {} upgraded from format {old} to {}",
                dir.display(),
                crate::data_dir::FORMAT
            );
        }
    }
    let limits = portal_limits(nofile);
    let web = WebShared::with_limits(engine.clone(), store.clone(), dir.clone(), logs, limits);
    match ensure_admin(&store, &web.passwords, &dir).await {
        Ok(Some(password)) => say(&format!(
            "First start: log in as `admin` with password `{password}` (also in {}, readable only by this user); you will be asked to change it.",
            dir.join(iobp_web::INITIAL_PASSWORD_FILE).display()
        )),
        Ok(None) => {}
        Err(e) => tracing::error!("could not create the first admin user: {e:?}"),
    }
    let tls = match (&settings_tls.0, &settings_tls.1) {
        (Some(cert), Some(key)) => {
            match iobp_tls::server_config(std::path::Path::new(cert), std::path::Path::new(key)) {
                Ok(c) => Some(c),
                Err(e) => {
                    engine.shutdown().await;
                    return Err(anyhow::anyhow!(
                        "HTTPS for the portals (settings tls_cert/tls_key): {e}"
                    ));
                }
            }
        }
        _ => None,
    };
    serve(&web, ops_l, mgmt_l, &dir, tls).await
}

/// Relay users reach only the channels granted to them (since schema 3); those without a
/// grant — typically all of them right after an upgrade — are named at every start, because
/// their remote instances are refused until an admin grants them channels.
fn warn_about_ungranted_relay_users(store: &Store) {
    let users = match store.list_users() {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("could not list users: {e}");
            return;
        }
    };
    for u in users.iter().filter(|u| u.role == iobp_store::Role::Relay) {
        if store.relay_grants(&u.username).is_ok_and(|g| g.is_empty()) {
            tracing::warn!(
                user = %u.username,
                "relay user `{}` has no relay grants, so other instances cannot relay with it: \
                 grant it channels on the Management Dashboard's Users page",
                u.username
            );
        }
    }
}

/// The stored settings, replaced by those of `--config` if it has any (and stored); the
/// `--config` document itself, validated.
fn load_configuration(
    args: &RunArgs,
    store: &Store,
) -> anyhow::Result<(Settings, Option<ConfigDocument>)> {
    let mut settings = store.load_settings()?;
    let Some(f) = &args.config else { return Ok((settings, None)) };
    let text =
        std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
    let mut doc = parse_document(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    doc.validate(&settings).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    // Masked passwords (a redacted export) keep the stored ones; a new link needs its own.
    let problems = doc.restore_masked_passwords(&store.load_pairs()?.pairs);
    if !problems.is_empty() {
        let e = iobp_config::ConfigError { problems };
        anyhow::bail!("{}: {e}", f.display());
    }
    let diff = iobp_config::ConfigDiff::between(
        &settings,
        &store.load_pairs()?.pairs,
        &doc,
        iobp_config::ApplyMode::Merge,
    );
    say(&format!("applying {}:\n{}", f.display(), diff.render_changes()));
    if let Some(s) = &doc.settings {
        // Check the portal certificate before storing settings that could not start.
        if let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) {
            iobp_tls::server_config(std::path::Path::new(cert), std::path::Path::new(key))
                .map_err(|e| anyhow::anyhow!("{}: settings tls_cert/tls_key: {e}", f.display()))?;
        }
        store.save_settings(s)?;
        settings = s.clone();
    }
    Ok((settings, Some(doc)))
}

/// Starts the engine with the stored pairs, reporting (not failing on) pairs it cannot start.
async fn start_engine(dir: &std::path::Path, settings: Settings, store: &Arc<Store>) -> Engine {
    let loaded = match store.load_pairs() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot read the stored channel pairs: {e}");
            iobp_store::LoadedPairs::default()
        }
    };
    for b in &loaded.broken {
        tracing::error!(
            pair = b.id,
            "stored channel pair cannot be read and is not started: {}",
            b.reason
        );
    }
    let opts = EngineOptions {
        data_dir: dir.to_path_buf(),
        settings,
        repository: store.clone(),
        log_fs: None,
    };
    let (engine, report) = Engine::start(opts, loaded.pairs).await;
    for (id, why) in &report.skipped {
        tracing::error!(pair = id, "not started: {why}");
    }
    for (id, what) in &report.recovered {
        tracing::warn!(pair = id, "buffer recovery: {what}");
    }
    engine
}

/// Serves both portals until SIGINT/SIGTERM (or a Windows service stop), then shuts everything
/// down cleanly.
async fn serve(
    web: &Arc<WebShared>,
    ops_l: tokio::net::TcpListener,
    mgmt_l: tokio::net::TcpListener,
    dir: &std::path::Path,
    tls: Option<Arc<iobp_tls::rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let engine = web.engine.clone();
    let (ops_addr, mgmt_addr) = (ops_l.local_addr()?, mgmt_l.local_addr()?);
    let stop = tokio::sync::watch::channel(false).0;
    let serve_one = |l: tokio::net::TcpListener, portal: Portal| {
        let app = router(web.clone(), portal, tls.is_some());
        let gate = web.connections(portal).clone();
        tokio::spawn(iobp_web::serve_portal(l, app, tls.clone(), gate, stop.subscribe()))
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ops_task = serve_one(ops_l, Portal::Ops);
    let mgmt_task = serve_one(mgmt_l, Portal::Mgmt);
    let housekeeping = tokio::spawn(housekeeping(web.clone()));
    web.set_ready(true);
    crate::service::ready(&engine);
    let telling = tokio::spawn(crate::service::keep_telling(engine.clone()));
    say(&format!(
        "ioBufferPro {} running: data {}, Operations Portal {scheme}://{ops_addr}, Management Dashboard {scheme}://{mgmt_addr}, {} channel pair(s)",
        env!("CARGO_PKG_VERSION"),
        dir.display(),
        engine.list().len()
    ));
    tracing::info!(data = %dir.display(), %ops_addr, %mgmt_addr, "ready");

    wait_for_signal().await;
    tracing::info!("shutting down: no new messages are accepted");
    crate::service::stopping();
    telling.abort();
    web.set_ready(false);
    housekeeping.abort();
    let _ = stop.send(true);
    engine.shutdown().await;
    let _ = tokio::join!(ops_task, mgmt_task);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Prints a line for the operator. Unlike `println!`, a closed stdout (nobody reading) is
/// ignored instead of crashing the service.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Portal connections closed after which freed memory is given back to the system.
const TRIM_AFTER_CLOSED: u64 = 128;

/// System readings for the dashboard every 2 s; memory freed by many closed portal
/// connections given back; expired sessions purged and the audit trail pruned every hour.
async fn housekeeping(web: Arc<WebShared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut n: u64 = 0;
    let closed = || web.ops_connections.closed() + web.mgmt_connections.closed();
    let mut trimmed_at = closed();
    loop {
        tick.tick().await;
        web.system.sample(&web.engine);
        if closed() >= trimmed_at + TRIM_AFTER_CLOSED {
            trimmed_at = closed();
            crate::release_freed_memory();
        }
        // Hourly, and once right after start.
        if n.is_multiple_of(1800) {
            let now = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(i64::MAX);
            if let Err(e) = web.store.purge_sessions(now) {
                tracing::warn!("purging expired sessions: {e}");
            }
            match web.store.prune_audit(now, iobp_store::AuditRetention::default()) {
                Ok(0) => {}
                Ok(k) => tracing::info!("audit trail: removed {k} entries past retention"),
                Err(e) => tracing::warn!("pruning the audit trail: {e}"),
            }
        }
        n += 1;
    }
}

/// Every connection and buffer segment is a file descriptor; the usual soft limit of 1024
/// would cap a busy instance far below its connection limits. Raise it to the hard limit.
/// Returns the limit in force (`None` where there is none to read).
pub(crate) fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("warning: cannot raise the open-file limit: {e}");
                rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// The portals' limits within the descriptor budget: both portals together take at most half
/// of the open-file limit, so a flood of connections at them can never take the descriptors
/// the channel pairs need (sockets, buffer segments).
fn portal_limits(nofile: Option<u64>) -> iobp_web::PortalLimits {
    let defaults = iobp_web::PortalLimits::default();
    let Some(nofile) = nofile else { return defaults };
    let l = defaults.within_fd_limit(nofile);
    tracing::info!(
        "open-file limit {nofile}: the portals hold at most {} connections each ({} per address), \
         {} together, leaving {} descriptors for the channel pairs; header-read timeout {} s, \
         idle timeout {} s; at most {} live event streams ({} per user)",
        l.per_portal,
        l.per_address,
        l.portal_descriptors(),
        nofile.saturating_sub(l.portal_descriptors() as u64),
        l.header_read_timeout.as_secs(),
        l.idle_timeout.as_secs(),
        l.streams,
        l.streams_per_user
    );
    l
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                // No Ctrl-C to wait for (a process without a console, such as a service): an
                // error here must not stop the instance the moment it is ready.
                std::future::pending::<()>().await;
            }
        };
        #[cfg(windows)]
        tokio::select! {
            () = ctrl_c => {}
            () = crate::service::windows::stop_requested() => {}
        }
        #[cfg(not(windows))]
        ctrl_c.await;
    }
}

//! The engine: the set of channel pairs and the operations the portals, the REST API and the
//! command line call. Every change is validated, then persisted (through the
//! [`ConfigRepository`]), then applied; a running pair is never replaced by one that failed
//! validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use iobp_config::{
    ChannelPairSpec, ConfigDocument, ConfigError, ConfigRepository, RepositoryError, Settings,
    check_pair_among,
};
use iobp_log::fs::FileSystem;
use iobp_log::{CommitGroup, GroupOptions, Log, LogOptions, StorageBudget};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::feed::LiveFeed;
use crate::relay::{HandOverError, RelayIo, RelayMode, RelayRefusal};
use crate::side::SideCtx;
use crate::stats::{Color, PairSnapshot, PairStats, Side};
use crate::trace::{PairTrace, TraceEvent, TraceKind, Tracer};

mod browse;
mod dead_letter;
mod reconcile;
mod replay;

/// Now, µs since the Unix epoch, as the buffer stamps records (tests of time selections).
#[cfg(test)]
pub(crate) fn browse_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub use browse::{
    BufferedMessage, MAX_PAGE, MessageMatch, MessagePage, MessageQuery, MessageState, SEARCH_SCAN,
    StorageFigures,
};
pub use reconcile::{Reconciliation, SETTLE as RECONCILIATION_SETTLE};
pub use replay::{
    MAX_REPLAY, REPLAY_PREVIEW, ReplayOutcome, ReplayPlan, ReplaySelection, Retention,
};

/// Errors of engine operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration was refused; nothing changed.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No pair with this id.
    #[error("no channel pair with id `{0}`")]
    NotFound(String),
    /// A pair with this id exists already.
    #[error("a channel pair with id `{0}` exists already")]
    AlreadyExists(String),
    /// The change could not be saved; nothing changed.
    #[error(transparent)]
    Persist(#[from] RepositoryError),
    /// The pair's buffer could not be opened or removed.
    #[error("buffer of `{id}`: {source}")]
    Buffer {
        /// The pair.
        id: String,
        /// What went wrong.
        #[source]
        source: iobp_log::Error,
    },
    /// The engine is shutting down.
    #[error("ioBufferPro is shutting down")]
    ShuttingDown,
    /// The message is not in the pair's buffer (never stored, or removed by retention).
    #[error("message {seq} is not in the buffer")]
    MessageNotFound {
        /// The pair.
        id: String,
        /// The message's sequence number.
        seq: u64,
    },
    /// Only delivered messages can be re-sent; this one will be delivered anyway.
    #[error("message {seq} is {}; only delivered (done) messages can be re-sent", state.as_str())]
    NotDelivered {
        /// The message's sequence number.
        seq: u64,
        /// Where it is.
        state: MessageState,
    },
    /// No such parked message.
    #[error("no parked message {parked} in `{id}`")]
    ParkedNotFound {
        /// The pair.
        id: String,
        /// The parked message's id.
        parked: u64,
    },
    /// A replay selects more messages than one replay takes.
    #[error("the selection holds {count} messages; a replay takes at most {max}: narrow it")]
    ReplayTooLarge {
        /// Messages selected.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A message's trace could not be read.
    #[error("the trace cannot be read: {0}")]
    Trace(String),
    /// The buffer (or the storage budget) has no room for the message now.
    #[error("cannot store the copy: {detail}")]
    BufferFull {
        /// The pair.
        id: String,
        /// Which limit, and how far.
        detail: String,
    },
}

/// How the engine is set up.
pub struct EngineOptions {
    /// The data directory; buffers live in `<data_dir>/logs/<pair id>/`.
    pub data_dir: PathBuf,
    /// System settings in force.
    pub settings: Settings,
    /// Where changes are persisted.
    pub repository: Arc<dyn ConfigRepository>,
    /// File system for the buffers (tests substitute a simulated one).
    pub log_fs: Option<Arc<dyn FileSystem>>,
}

/// What starting the engine found: pairs that could not be started are reported, not fatal.
#[derive(Debug, Default)]
pub struct StartReport {
    /// Pairs that were skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Buffers whose recovery found something worth telling an operator.
    pub recovered: Vec<(String, String)>,
    /// What the commit journal held at start and wrote back into the buffers (after a crash
    /// or power cut); `None` when it could not be read (every pair is then skipped).
    pub journal: Option<iobp_log::ReplayReport>,
}

struct Running {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

struct Entry {
    spec: ChannelPairSpec,
    log: Log,
    /// The pair's parked (dead-letter) messages: a log of its own under `parked/<id>/`,
    /// open while the pair has a dead-letter policy or holds parked messages. Pending =
    /// parked; Done = re-sent or discarded.
    parked: Option<Log>,
    stats: Arc<PairStats>,
    feed: Arc<LiveFeed>,
    /// What happened to each message (`trace/<id>-<buffer id>/`).
    trace: Arc<PairTrace>,
    running: Option<Running>,
    /// The buffer failed and reopening it did not succeed yet: when to try again.
    heal: Option<Heal>,
    /// The pair's accounting: the buffer's baseline for `stats`, which live as long as this
    /// entry (`reconcile.rs`).
    books: Arc<std::sync::Mutex<reconcile::Books>>,
}

/// Reopening a failed buffer, with backoff while the disk stays sick.
struct Heal {
    next_attempt: tokio::time::Instant,
    backoff: crate::backoff::Backoff,
    /// The buffer was reopened (and is in use again) at this time; a new failure soon after
    /// continues the backoff instead of starting over, so a disk that fails every write is
    /// not hammered.
    healed_at: Option<tokio::time::Instant>,
}

/// A buffer that worked this long after healing starts the backoff afresh on its next failure.
const HEAL_SETTLE: Duration = Duration::from_secs(60);

struct Inner {
    logs_dir: PathBuf,
    repo: Arc<dyn ConfigRepository>,
    budget: StorageBudget,
    settings: RwLock<Settings>,
    pairs: RwLock<BTreeMap<String, Entry>>,
    /// Serialises configuration changes (create, edit, start, stop, delete).
    admin: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
    log_fs: Option<Arc<dyn FileSystem>>,
    /// The commit thread, flusher and journal every buffer shares (`None`: the journal could
    /// not be replayed at start, and no buffer may open).
    group: Option<CommitGroup>,
    maintenance: std::sync::Mutex<Option<JoinHandle<()>>>,
    relay_hub: Arc<crate::relay::RelayHub>,
    /// Writes every pair's per-message trace.
    tracer: Arc<Tracer>,
}

/// The running set of channel pairs. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("logs_dir", &self.inner.logs_dir).finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Engine maps are updated in single assignments; a panic elsewhere leaves them valid.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const MIB: u64 = 1024 * 1024;

impl Engine {
    /// Removes pair `id`'s buffer and parked messages from `data_dir` while no engine runs on
    /// it: what a configuration import that removes the pair promises ("removed with its
    /// buffer"), so that a pair created later under the same id starts empty instead of
    /// delivering the old pair's messages. The caller holds the data directory's lock. Each
    /// directory is moved aside first (crash-safe: a crash leaves a `.deleted-` directory the
    /// next start clears, and a journal never replays into it), then removed. Returns whether
    /// anything was there. The trace goes at the next start, with every trace of a pair no
    /// longer configured.
    pub fn remove_buffers_offline(data_dir: &Path, id: &str) -> Result<bool, EngineError> {
        let fs: Arc<dyn iobp_log::fs::FileSystem> = Arc::new(iobp_log::fs::StdFs);
        let buffer = |source| EngineError::Buffer { id: id.to_string(), source };
        let mut found = false;
        for root in ["logs", "parked"] {
            if let Some(retired) =
                iobp_log::retire_closed(fs.clone(), &data_dir.join(root).join(id))
                    .map_err(buffer)?
            {
                found = true;
                retired.remove().map_err(buffer)?;
            }
        }
        Ok(found)
    }

    /// Starts the engine with the stored pairs: opens every buffer and starts the enabled
    /// pairs. Must be called inside a tokio runtime.
    pub async fn start(opts: EngineOptions, pairs: Vec<ChannelPairSpec>) -> (Engine, StartReport) {
        let logs_dir = opts.data_dir.join("logs");
        let log_fs = opts.log_fs.clone().unwrap_or_else(|| Arc::new(iobp_log::fs::StdFs));
        // Buffers whose deletion a crash interrupted go before anything opens or replays.
        if let Err(e) = iobp_log::remove_retired(&*log_fs, &logs_dir) {
            tracing::error!("could not clear deleted buffers: {e}");
        }
        // Parked (dead-letter) messages live beside the buffers, in logs of the same group.
        let parked_root = opts.data_dir.join("parked");
        if log_fs.dir_exists(&parked_root)
            && let Err(e) = iobp_log::remove_retired(&*log_fs, &parked_root)
        {
            tracing::error!("could not clear deleted parked messages: {e}");
        }
        let mut report = StartReport::default();
        let group_opts = GroupOptions { fs: log_fs, ..GroupOptions::default() };
        let journal_dir = opts.data_dir.join("journal");
        let (root, fs_dir) = (logs_dir.clone(), journal_dir.clone());
        // Replaying a journal reads and writes the disk: off the async workers.
        let opened = tokio::task::spawn_blocking(move || {
            CommitGroup::open(fs_dir, &[root, parked_root], group_opts)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let (group, journal_problem) = match opened {
            Ok((group, replay)) => {
                if replay.entries > 0 {
                    tracing::info!(
                        files = replay.files,
                        entries = replay.entries,
                        "commit journal written back into the buffers"
                    );
                }
                report.journal = Some(replay);
                (Some(group), None)
            }
            Err(e) => {
                // Opening a buffer without what the journal holds for it would let new
                // records take the place of acknowledged ones: none opens.
                tracing::error!(journal = %journal_dir.display(), "the commit journal cannot be read: {e}");
                (
                    None,
                    Some(format!(
                        "the commit journal in {} cannot be read: {e}",
                        journal_dir.display()
                    )),
                )
            }
        };
        let inner = Arc::new(Inner {
            logs_dir,
            repo: opts.repository,
            budget: StorageBudget::from_mb(opts.settings.max_storage_mb),
            settings: RwLock::new(opts.settings),
            pairs: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            log_fs: opts.log_fs,
            group,
            maintenance: std::sync::Mutex::new(None),
            relay_hub: Arc::default(),
            tracer: Tracer::start(opts.data_dir.join("trace")),
        });
        let engine = Engine { inner };
        engine.open_stored(pairs, journal_problem.as_deref(), &mut report).await;
        let ids: Vec<String> = read(&engine.inner.pairs).keys().cloned().collect();
        for id in ids {
            engine.start_runtime_because(&id, "the instance started");
        }
        let handle = tokio::spawn(maintenance(Arc::downgrade(&engine.inner)));
        *engine.inner.maintenance.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(handle);
        (engine, report)
    }

    /// Opens the buffers of the stored pairs (`journal_problem`: none may open) and reports
    /// what could not open or what recovery found; then clears traces no pair owns.
    async fn open_stored(
        &self,
        pairs: Vec<ChannelPairSpec>,
        journal_problem: Option<&str>,
        report: &mut StartReport,
    ) {
        // Each stored pair alone and against the ones before it, all at once: checking each
        // against a copy of all the others made a thousand pairs take seconds to start.
        let checks = iobp_config::check_pairs_in_order(&pairs, &self.settings());
        let configured: Vec<String> = pairs.iter().map(|p| p.id.clone()).collect();
        for (spec, check) in pairs.into_iter().zip(checks) {
            if let Some(why) = journal_problem {
                report.skipped.push((spec.id.clone(), why.to_string()));
                continue;
            }
            if let Err(e) = check {
                report.skipped.push((spec.id.clone(), e.to_string()));
                continue;
            }
            let parked = match self.open_parked(&spec).await {
                Ok(p) => p,
                Err(e) => {
                    report.skipped.push((spec.id.clone(), e.to_string()));
                    continue;
                }
            };
            match self.open_log(&spec).await {
                Ok(log) => {
                    let r = log.open_report();
                    if r.truncated_bytes > 0
                        || !r.quarantined.is_empty()
                        || !r.corruption.is_empty()
                    {
                        report.recovered.push((spec.id.clone(), format!("{r:?}")));
                    }
                    self.insert(spec, log, parked);
                }
                Err(e) => report.skipped.push((spec.id.clone(), e.to_string())),
            }
        }
        self.remove_stale_traces(&configured);
    }

    /// Removes the traces of pairs deleted (or of buffers created anew) while no engine ran.
    fn remove_stale_traces(&self, configured: &[String]) {
        let open: Vec<(String, PathBuf)> = read(&self.inner.pairs)
            .iter()
            .map(|(id, e)| (id.clone(), e.trace.dir().to_path_buf()))
            .collect();
        self.inner.tracer.remove_stale(configured, &open);
    }

    fn log_options(&self, spec: &ChannelPairSpec) -> LogOptions {
        let settings = self.settings();
        // Segments small enough that the limit always spans many of them: storage is freed
        // a segment at a time, and the active segment can never be freed.
        let limit = spec
            .max_storage_mb
            .unwrap_or(u64::MAX)
            .min(settings.max_storage_mb)
            .saturating_mul(MIB)
            // A small disk holds less than max_storage_mb: size segments by what it holds.
            .min(self.disk_size().unwrap_or(u64::MAX));
        let segment_bytes = (limit / 16).clamp(64 * 1024, 16 * MIB);
        let mut o = LogOptions {
            segment_bytes,
            // Framing enforces each pair's max_message_bytes; the buffer takes anything up to
            // its own hard limit.
            max_record_bytes: iobp_log::format::MAX_RECORD_PAYLOAD,
            queue_bytes: 1024 * 1024,
            retention: Duration::from_secs(settings.retention_hours * 3600),
            max_bytes: spec.max_storage_mb.map(|mb| mb.saturating_mul(MIB)),
            budget: Some(self.inner.budget.clone()),
            group: self.inner.group.clone(),
            ..LogOptions::default()
        };
        if let Some(fs) = &self.inner.log_fs {
            o.fs = fs.clone();
        }
        o
    }

    /// Size of the file system holding the buffers, where known.
    fn disk_size(&self) -> Option<u64> {
        let fs: Arc<dyn FileSystem> =
            self.inner.log_fs.clone().unwrap_or_else(|| Arc::new(iobp_log::fs::StdFs));
        let mut dir = self.inner.logs_dir.as_path();
        // The logs directory may not exist yet: ask for its nearest existing ancestor.
        while !fs.dir_exists(dir) {
            dir = dir.parent()?;
        }
        fs.space(dir).ok().flatten().map(|s| s.total)
    }

    fn log_dir(&self, id: &str) -> PathBuf {
        self.inner.logs_dir.join(id)
    }

    /// Where pair `id`'s parked messages live (beside `logs/`, so that no pair id can name
    /// it).
    fn parked_dir(&self, id: &str) -> PathBuf {
        self.inner.logs_dir.parent().unwrap_or(&self.inner.logs_dir).join("parked").join(id)
    }

    /// Opens the parked-message log of `spec` if it has a dead-letter policy or parked
    /// messages from before.
    async fn open_parked(&self, spec: &ChannelPairSpec) -> Result<Option<Log>, EngineError> {
        let dir = self.parked_dir(&spec.id);
        let fs: Arc<dyn FileSystem> =
            self.inner.log_fs.clone().unwrap_or_else(|| Arc::new(iobp_log::fs::StdFs));
        if spec.dead_letter.is_none() && !fs.dir_exists(&dir) {
            return Ok(None);
        }
        let mut opts = self.log_options(spec);
        // Parked messages are few; small segments free discarded ones sooner.
        opts.segment_bytes = 64 * 1024;
        opts.max_bytes = None;
        let id = spec.id.clone();
        blocking(move || Log::open(dir, opts))
            .await
            .map(Some)
            .map_err(|source| EngineError::Buffer { id, source })
    }

    async fn open_log(&self, spec: &ChannelPairSpec) -> Result<Log, EngineError> {
        let dir = self.log_dir(&spec.id);
        if self.inner.group.is_none() {
            return Err(EngineError::Buffer {
                id: spec.id.clone(),
                source: iobp_log::Error::Io {
                    op: "read the commit journal before opening",
                    path: dir,
                    source: std::io::Error::other("the commit journal could not be read at start"),
                },
            });
        }
        let opts = self.log_options(spec);
        let id = spec.id.clone();
        // Recovery reads from disk; keep it off the async workers.
        tokio::task::spawn_blocking(move || Log::open(dir, opts))
            .await
            .map_err(|e| EngineError::Buffer {
                id: id.clone(),
                source: iobp_log::Error::Io {
                    op: "open",
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                },
            })?
            .map_err(|source| EngineError::Buffer { id, source })
    }

    fn insert(&self, spec: ChannelPairSpec, log: Log, parked: Option<Log>) {
        let storage_limit = spec
            .max_storage_mb
            .unwrap_or(u64::MAX)
            .min(self.settings().max_storage_mb)
            .saturating_mul(MIB);
        let trace = self.inner.tracer.pair(&spec.id, log.id(), storage_limit);
        let stats = Arc::new(PairStats::default());
        stats.mark_stopped();
        if let Some(p) = &parked {
            match crate::parked::list(p) {
                Ok(l) => stats.parked.store(l.len() as u64, Ordering::Relaxed),
                Err(e) => tracing::error!(pair = spec.id, "reading its parked messages: {e}"),
            }
        }
        // The counters start now: the buffer as it is now is their baseline.
        let books = Arc::new(std::sync::Mutex::new(reconcile::Books::new(&log)));
        let entry = Entry {
            spec,
            log,
            parked,
            stats,
            feed: Arc::new(LiveFeed::default()),
            trace,
            running: None,
            heal: None,
            books,
        };
        write(&self.inner.pairs).insert(entry.spec.id.clone(), entry);
    }

    /// Starts the tasks of an enabled pair that is not running.
    fn start_runtime(&self, id: &str) {
        self.start_runtime_because(id, "the pair started");
    }

    /// Starts the tasks of an enabled pair that is not running; the trace of the messages
    /// that wait for delivery says `why`.
    fn start_runtime_because(&self, id: &str, why: &str) {
        let mut pairs = write(&self.inner.pairs);
        let Some(e) = pairs.get_mut(id) else { return };
        if e.running.is_some()
            || !e.spec.enabled
            || self.inner.shutting_down.load(Ordering::Acquire)
        {
            return;
        }
        let cancel = CancellationToken::new();
        let ctx = SideCtx {
            pair: Arc::from(id),
            log: e.log.clone(),
            stats: e.stats.clone(),
            feed: e.feed.clone(),
            cancel: cancel.clone(),
            retry: e.spec.retry,
            relay_hub: self.inner.relay_hub.clone(),
            parked: e.parked.clone().zip(e.spec.dead_letter.map(|d| d.after_rejections)),
            trace: e.trace.clone(),
            route: None,
        };
        // Delivery resumes with what is not Done: the trace of those messages says so.
        let ls = e.log.stats();
        if ls.durable_seq > ls.done_seq {
            let mut ev = TraceEvent::new(TraceKind::Started, ls.done_seq + 1, ls.durable_seq);
            ev.err = Some(why.to_string());
            e.trace.record(ev);
        }
        let spec = Arc::new(e.spec.clone());
        let src = supervise(ctx.clone(), Side::Source, spec.clone());
        let dst = supervise(ctx, Side::Destination, spec);
        e.running = Some(Running { cancel, tasks: vec![tokio::spawn(src), tokio::spawn(dst)] });
        tracing::info!(pair = id, "started");
    }

    /// Stops the tasks of a pair (buffered messages stay; in-flight ones return to Pending).
    async fn stop_runtime(&self, id: &str) {
        let running = {
            let mut pairs = write(&self.inner.pairs);
            pairs.get_mut(id).and_then(|e| e.running.take())
        };
        let Some(r) = running else { return };
        r.cancel.cancel();
        for t in r.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                tracing::error!(pair = id, "a task did not stop within 10 s; aborting it");
                abort.abort();
            }
        }
        if let Some(e) = read(&self.inner.pairs).get(id) {
            e.log.requeue_all();
            e.stats.mark_stopped();
        }
        tracing::info!(pair = id, "stopped");
    }

    /// The configured pairs, in id order.
    pub fn list(&self) -> Vec<ChannelPairSpec> {
        read(&self.inner.pairs).values().map(|e| e.spec.clone()).collect()
    }

    /// One pair's configuration.
    pub fn get(&self, id: &str) -> Option<ChannelPairSpec> {
        read(&self.inner.pairs).get(id).map(|e| e.spec.clone())
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        read(&self.inner.settings).clone()
    }

    fn check_open(&self) -> Result<(), EngineError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            Err(EngineError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Creates a pair: validated against the others, persisted, its buffer opened, and
    /// started if enabled.
    pub async fn create(&self, spec: ChannelPairSpec) -> Result<(), EngineError> {
        let _admin = self.inner.admin.lock().await;
        self.check_open()?;
        if read(&self.inner.pairs).contains_key(&spec.id) {
            return Err(EngineError::AlreadyExists(spec.id));
        }
        check_pair_among(&spec, &self.list(), &self.settings())?;
        check_framings(&spec)?;
        crate::tls::check_pair(&spec)?;
        let log = self.open_log(&spec).await?;
        let parked = self.open_parked(&spec).await?;
        self.inner.repo.save_pair(&spec)?;
        let id = spec.id.clone();
        self.insert(spec, log, parked);
        self.start_runtime(&id);
        Ok(())
    }

    /// Replaces a pair's configuration; the pair restarts with it and keeps its buffer. The
    /// same configuration again changes nothing (the pair is not restarted).
    pub async fn update(&self, spec: ChannelPairSpec) -> Result<(), EngineError> {
        let _admin = self.inner.admin.lock().await;
        self.check_open()?;
        if !read(&self.inner.pairs).contains_key(&spec.id) {
            return Err(EngineError::NotFound(spec.id));
        }
        check_pair_among(&spec, &self.list(), &self.settings())?;
        check_framings(&spec)?;
        crate::tls::check_pair(&spec)?;
        // Nothing changed (`run --config` applies its document at every start): the pair keeps
        // running and keeps its connections.
        if read(&self.inner.pairs).get(&spec.id).is_some_and(|e| e.spec == spec) {
            self.start_runtime(&spec.id);
            return Ok(());
        }
        let has_parked = read(&self.inner.pairs).get(&spec.id).is_some_and(|e| e.parked.is_some());
        let parked = if has_parked { None } else { self.open_parked(&spec).await? };
        self.inner.repo.save_pair(&spec)?;
        let id = spec.id.clone();
        self.stop_runtime(&id).await;
        if let Some(e) = write(&self.inner.pairs).get_mut(&id) {
            e.log.set_max_bytes(spec.max_storage_mb.map(|mb| mb.saturating_mul(MIB)));
            if e.parked.is_none() {
                e.parked = parked;
            }
            e.spec = spec;
        }
        self.start_runtime_because(&id, "the pair was edited");
        Ok(())
    }

    /// Creates the pair, or replaces it if its id exists.
    pub async fn upsert(&self, spec: ChannelPairSpec) -> Result<(), EngineError> {
        if self.get(&spec.id).is_some() { self.update(spec).await } else { self.create(spec).await }
    }

    /// Starts a stopped pair (and remembers that it should run).
    pub async fn start_pair(&self, id: &str) -> Result<(), EngineError> {
        self.set_enabled(id, true).await
    }

    /// Stops a pair; its buffered messages are kept and delivery resumes on start.
    pub async fn stop_pair(&self, id: &str) -> Result<(), EngineError> {
        self.set_enabled(id, false).await
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), EngineError> {
        let _admin = self.inner.admin.lock().await;
        self.check_open()?;
        let mut spec = self.get(id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if spec.enabled != enabled {
            spec.enabled = enabled;
            self.inner.repo.save_pair(&spec)?;
            if let Some(e) = write(&self.inner.pairs).get_mut(id) {
                e.spec.enabled = enabled;
            }
        }
        if enabled {
            self.start_runtime(id);
        } else {
            self.stop_runtime(id).await;
        }
        Ok(())
    }

    /// Deletes a pair with its configuration and every buffered message, for good.
    ///
    /// Crash safety: the buffer is first moved aside ([`iobp_log::Log::retire`]: removed at
    /// the next start if a crash interrupts), then the configuration row is deleted, then the
    /// buffer's directory.
    pub async fn delete(&self, id: &str) -> Result<(), EngineError> {
        let _admin = self.inner.admin.lock().await;
        self.check_open()?;
        if !read(&self.inner.pairs).contains_key(id) {
            return Err(EngineError::NotFound(id.to_string()));
        }
        self.stop_runtime(id).await;
        let Some(entry) = write(&self.inner.pairs).remove(id) else {
            return Err(EngineError::NotFound(id.to_string()));
        };
        entry.trace.forget();
        // Closing (a final checkpoint), the rename and the syncs are disk work: off the async
        // workers, which run every other pair. Once the buffer is moved aside no start opens
        // it again; a crash before it is removed leaves a directory the next start clears.
        let retired = blocking(move || entry.log.retire()).await;
        if let Some(parked) = entry.parked {
            match blocking(move || parked.retire()).await {
                Ok(r) => {
                    if let Err(e) = blocking(move || r.remove()).await {
                        tracing::error!(pair = id, "could not remove its parked messages: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!(pair = id, "could not move its parked messages aside: {e}");
                }
            }
        }
        self.inner.repo.delete_pair(id)?;
        match retired {
            Ok(retired) => {
                let path = retired.path().to_path_buf();
                if let Err(e) = blocking(move || retired.remove()).await {
                    tracing::error!(pair = id, "could not remove {}: {e}", path.display());
                }
            }
            Err(e) => {
                tracing::error!(pair = id, "could not move the buffer aside to delete it: {e}");
            }
        }
        tracing::info!(pair = id, "deleted with its buffer");
        Ok(())
    }

    /// Applies a configuration document: settings (if any) and every pair, created or
    /// replaced by id. The whole document is validated first; nothing changes if it fails.
    pub async fn apply(&self, doc: &ConfigDocument) -> Result<(), EngineError> {
        doc.validate(&self.settings())?;
        if let Some(s) = &doc.settings {
            self.update_settings(s.clone())?;
        }
        for spec in &doc.channel_pairs {
            self.upsert(spec.clone()).await?;
        }
        Ok(())
    }

    /// Applies new settings: storage limit and retention take effect at once; listen
    /// addresses at the next start. The caller persists them.
    pub fn update_settings(&self, s: Settings) -> Result<(), EngineError> {
        s.validate()?;
        self.inner.budget.set_limit(s.max_storage_mb.saturating_mul(MIB));
        for e in read(&self.inner.pairs).values() {
            e.log.set_retention(Duration::from_secs(s.retention_hours * 3600));
        }
        *write(&self.inner.settings) = s;
        Ok(())
    }

    /// Finds the running side that takes a relay connection for `channel`: for
    /// [`RelayMode::Push`] a `remote_icombuffer` source without `url` whose `channel_id` is
    /// `channel`, for [`RelayMode::Pull`] such a destination. The web layer calls this before
    /// it accepts the connection, so a refusal is an ordinary HTTP error.
    pub fn relay_check(&self, channel: &str, mode: RelayMode) -> Result<(), RelayRefusal> {
        let pairs = read(&self.inner.pairs);
        let takes = |spec: &ChannelPairSpec| {
            let side = match mode {
                RelayMode::Push => &spec.source,
                RelayMode::Pull => &spec.destination,
            };
            matches!(side, iobp_config::EndpointSpec::Remote(r) if r.url.is_none() && r.channel_id == channel)
        };
        if let Some(e) = pairs.values().find(|e| takes(&e.spec)) {
            return if e.running.is_some() && !self.inner.shutting_down.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err(RelayRefusal::Stopped(e.spec.id.clone()))
            };
        }
        let (side, what) = match mode {
            RelayMode::Push => ("source", "receive pushes"),
            RelayMode::Pull => ("destination", "serve pulls"),
        };
        Err(RelayRefusal::WrongSide(format!(
            "no channel pair here has a remote_icombuffer {side} without url and channel_id \
             `{channel}` to {what}"
        )))
    }

    /// Whether `channel` may take another relay session in `mode`: at most
    /// [`crate::relay::MAX_SESSIONS_PER_CHANNEL`] per channel and mode are open or waiting
    /// at once. [`Engine::relay_hand_over`] enforces it; the web layer may ask first, so that
    /// a refusal is an HTTP error rather than a connection closed after the upgrade.
    pub fn relay_room(&self, channel: &str, mode: RelayMode) -> Result<(), HandOverError> {
        self.inner.relay_hub.room(channel, mode)
    }

    /// Hands a relay connection (already upgraded by the web layer) to the side found by
    /// [`Engine::relay_check`], if its channel has room ([`Engine::relay_room`]); the
    /// connection counts for its channel until it is dropped.
    pub fn relay_hand_over(
        &self,
        channel: &str,
        mode: RelayMode,
        io: Box<dyn RelayIo>,
        peer: String,
    ) -> Result<(), HandOverError> {
        self.relay_check(channel, mode)?;
        let incoming = crate::relay::Incoming { io, peer: peer.into() };
        self.inner.relay_hub.hand_over(channel, mode, incoming)
    }

    /// A status snapshot of one pair.
    pub fn snapshot(&self, id: &str) -> Option<PairSnapshot> {
        let (spec, log, stats, running) = {
            let pairs = read(&self.inner.pairs);
            let e = pairs.get(id)?;
            (e.spec.clone(), e.log.clone(), e.stats.clone(), e.running.is_some())
        };
        Some(snapshot_of(&spec, &log, &stats, running, &self.inner.budget))
    }

    /// Status snapshots of every pair, in id order.
    pub fn snapshots(&self) -> Vec<PairSnapshot> {
        let ids: Vec<String> = read(&self.inner.pairs).keys().cloned().collect();
        ids.iter().filter_map(|id| self.snapshot(id)).collect()
    }

    /// Stops accepting, lets running appends finish their fdatasync, stops every pair and
    /// closes every buffer (flushing and checkpointing it).
    pub async fn shutdown(&self) {
        let _admin = self.inner.admin.lock().await;
        if self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(m) =
            self.inner.maintenance.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            m.abort();
        }
        let ids: Vec<String> = read(&self.inner.pairs).keys().cloned().collect();
        // Cancel everything first so all pairs wind down in parallel.
        for e in read(&self.inner.pairs).values() {
            if let Some(r) = &e.running {
                r.cancel.cancel();
            }
        }
        for id in &ids {
            self.stop_runtime(id).await;
        }
        let logs: Vec<Log> = read(&self.inner.pairs)
            .values()
            .flat_map(|e| std::iter::once(e.log.clone()).chain(e.parked.clone()))
            .collect();
        for log in logs {
            let dir = log.dir().to_path_buf();
            if let Err(e) = tokio::task::spawn_blocking(move || log.close()).await.unwrap_or(Ok(()))
            {
                tracing::error!("closing buffer {}: {e}", dir.display());
            }
        }
        // The last deliveries' trace, on disk before the process ends.
        let tracer = self.inner.tracer.clone();
        let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
        tracing::info!("all channel pairs stopped and buffers closed");
    }

    /// Heals a pair whose buffer failed (a write, fdatasync or directory sync error): stops
    /// its sides — sources answer what became durable and NAK the rest — then reopens the
    /// buffer, which trusts nothing past the last position it knew durable, and starts the
    /// pair again. If the disk is still sick, tries again later with backoff; the pair shows
    /// Red with the reason meanwhile. Called by maintenance.
    async fn recover_failed(&self, id: &str) {
        let _admin = self.inner.admin.lock().await;
        let now = tokio::time::Instant::now();
        let (old, due, first) = {
            let mut pairs = write(&self.inner.pairs);
            let Some(e) = pairs.get_mut(id) else { return };
            if e.heal.as_ref().is_some_and(|h| h.healed_at.is_some_and(|t| t + HEAL_SETTLE < now)) {
                // The last heal held long enough: this is a new episode.
                e.heal = None;
            }
            let first = e.heal.as_ref().is_none_or(|h| h.healed_at.is_some());
            let due = e.heal.as_ref().is_none_or(|h| h.next_attempt <= now);
            (e.log.clone(), due, first)
        };
        let Some(cause) = old.failure() else { return };
        if !due || self.inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let stats = read(&self.inner.pairs).get(id).map(|e| e.stats.clone());
        if first {
            tracing::error!(pair = id, "buffer failed ({cause}); healing: reopening it");
            if let Some(s) = &stats {
                s.error(id, Side::Source, format!("buffer failed ({cause}); reopening it"));
            }
        }
        self.stop_runtime(id).await;
        // The failed buffer's figures once its sides stopped: what the accounting carries
        // over to the reopened one.
        let before = old.stats();
        match blocking(move || old.reopen()).await {
            Ok(log) => {
                let r = log.open_report();
                tracing::warn!(
                    pair = id,
                    untrusted_bytes = r.untrusted_bytes,
                    truncated_bytes = r.truncated_bytes,
                    "buffer reopened after a failure; delivery resumes at {}",
                    r.resume_seq
                );
                if let Some(e) = write(&self.inner.pairs).get_mut(id) {
                    reconcile::lock(&e.books).reopened(&before, &log.stats());
                    e.log = log;
                    let retry = e.spec.retry;
                    let h = e.heal.get_or_insert_with(|| Heal {
                        next_attempt: now,
                        backoff: crate::backoff::Backoff::new(retry),
                        healed_at: None,
                    });
                    h.healed_at = Some(now);
                    // Should it fail again soon, the next attempt waits.
                    h.next_attempt = now + h.backoff.next_delay();
                }
                if let Some(s) = &stats {
                    s.heals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.start_runtime_because(id, "the buffer was reopened after a write failure");
            }
            Err(e) => {
                let retry = {
                    let mut pairs = write(&self.inner.pairs);
                    let Some(entry) = pairs.get_mut(id) else { return };
                    let retry = entry.spec.retry;
                    let h = entry.heal.get_or_insert_with(|| Heal {
                        next_attempt: now,
                        backoff: crate::backoff::Backoff::new(retry),
                        healed_at: None,
                    });
                    h.healed_at = None;
                    let d = h.backoff.next_delay();
                    h.next_attempt = now + d;
                    d
                };
                tracing::error!(
                    pair = id,
                    "cannot reopen the buffer: {e}; trying again in {retry:?}"
                );
                if let Some(s) = &stats {
                    s.error(
                        id,
                        Side::Source,
                        format!(
                            "cannot reopen the buffer: {e}; trying again in {} s",
                            retry.as_secs()
                        ),
                    );
                }
            }
        }
    }
}

/// Runs blocking disk work on the blocking pool, not on the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, iobp_log::Error> + Send + 'static,
) -> Result<T, iobp_log::Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(iobp_log::Error::Io {
            op: "run blocking task",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Framing rules only the codec knows (e.g. a start sequence that occurs inside the end
/// sequence), reported like every other validation problem.
fn check_framings(spec: &ChannelPairSpec) -> Result<(), ConfigError> {
    let sides = [("source", &spec.source), ("destination", &spec.destination)]
        .into_iter()
        .map(|(n, e)| (n.to_string(), e))
        .chain(spec.failover.iter().enumerate().map(|(i, e)| (format!("failover[{i}]"), e)));
    let problems: Vec<iobp_config::Problem> = sides
        .filter_map(|(name, e)| {
            let f = e.framing()?;
            crate::side::framing_of(f)?.validate().err().map(|err| iobp_config::Problem {
                path: format!("{name}.framing"),
                message: err.to_string(),
            })
        })
        .collect();
    if problems.is_empty() { Ok(()) } else { Err(ConfigError { problems }) }
}

/// Runs one side, restarting it (after a pause) if its task panics, until the pair stops.
async fn supervise(ctx: SideCtx, side: Side, spec: Arc<ChannelPairSpec>) {
    let mut backoff = crate::backoff::Backoff::new(ctx.retry);
    loop {
        let mut task = match side {
            Side::Source => tokio::spawn(crate::source::run(ctx.clone(), spec.source.clone())),
            Side::Destination => {
                tokio::spawn(crate::destination::run_pair(ctx.clone(), spec.clone()))
            }
        };
        let result = tokio::select! {
            r = &mut task => r,
            () = ctx.cancel.cancelled() => {
                // Give the side time to finish cleanly (acks of queued batches), then stop it.
                if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                    task.abort();
                }
                return;
            }
        };
        match result {
            Err(e) if e.is_panic() => {
                ctx.error(side, format!("{} task crashed; restarting it", side.as_str()));
                if side == Side::Destination {
                    ctx.log.requeue_all();
                }
                if !crate::side::pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
            // Finished (the pair is stopping) or cancelled.
            Ok(()) | Err(_) => return,
        }
    }
}

/// Every second: restart pairs whose buffer failed. Every minute: retention.
async fn maintenance(engine: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let Some(inner) = engine.upgrade() else { return };
        let engine = Engine { inner };
        let logs: Vec<(String, Log)> =
            read(&engine.inner.pairs).iter().map(|(id, e)| (id.clone(), e.log.clone())).collect();
        for (id, log) in &logs {
            if log.failure().is_some() {
                engine.recover_failed(id).await;
            }
        }
        // A reading a second: a pair that stays still is settled by the next one, so the
        // accounting's discrepancy is current even when nobody asks for it in between.
        let _ = engine.reconciliations();
        if n.is_multiple_of(60) {
            // Trace files about messages retention removed go with them.
            for e in read(&engine.inner.pairs).values() {
                e.trace.retain(e.log.stats().first_seq);
            }
            let parked: Vec<(String, Log)> = read(&engine.inner.pairs)
                .iter()
                .filter_map(|(id, e)| Some((id.clone(), e.parked.clone()?)))
                .collect();
            for (id, log) in logs.into_iter().chain(parked) {
                let r =
                    tokio::task::spawn_blocking(move || log.enforce_retention(SystemTime::now()))
                        .await;
                match r {
                    Ok(Ok(r)) if r.segments > 0 => {
                        tracing::debug!(
                            pair = id,
                            segments = r.segments,
                            bytes = r.bytes,
                            "retention"
                        );
                    }
                    Ok(Err(e)) => tracing::warn!(pair = id, "retention: {e}"),
                    _ => {}
                }
            }
        }
    }
}

fn lock_active_backup(stats: &PairStats) -> bool {
    crate::stats::lock_failover(stats).is_some_and(|f| f.active > 0)
}

fn snapshot_of(
    spec: &ChannelPairSpec,
    log: &Log,
    stats: &PairStats,
    running: bool,
    budget: &StorageBudget,
) -> PairSnapshot {
    use std::sync::atomic::Ordering::Relaxed;
    let ls = log.stats();
    let (source, destination) = stats.side_snapshots();
    let oldest = ls.oldest_pending_us.map(|us| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        now.saturating_sub(Duration::from_micros(us))
    });
    let pair_limit = spec.max_storage_mb.map(|mb| mb.saturating_mul(MIB));
    #[allow(clippy::cast_precision_loss)]
    let near_limit = budget.is_warning()
        || pair_limit.is_some_and(|l| ls.bytes as f64 >= l as f64 * iobp_log::WARNING_RATIO);
    let storage_alarm = storage_alarm(stats, &ls, pair_limit, budget);
    let buffer = if ls.failed.is_some() || storage_alarm.is_some() {
        Color::Red
    } else if near_limit
        || oldest.is_some_and(|a| a > Duration::from_secs(5))
        // Messages are waiting and cannot leave: the backlog can only grow.
        || (ls.pending > 0 && destination.color != Color::Green)
    {
        Color::Yellow
    } else if ls.pending + ls.in_flight > 0 {
        Color::Green
    } else {
        Color::White
    };
    let channel = if ls.failed.is_some() && spec.enabled {
        // Being healed (or waiting to be): its sides are stopped, but it is not "stopped".
        Color::Red
    } else if !running {
        Color::White
    } else if source.color == Color::Red || destination.color == Color::Red {
        Color::Red
    } else if source.color == Color::Yellow
        || destination.color == Color::Yellow
        // Degraded: delivering through a backup destination.
        || lock_active_backup(stats)
        // Messages are parked (dead-letter): someone must look at them.
        || stats.parked.load(Relaxed) > 0
    {
        Color::Yellow
    } else {
        Color::Green
    };
    PairSnapshot {
        id: spec.id.clone(),
        name: spec.display_name().to_string(),
        enabled: spec.enabled,
        source_type: spec.source.type_name(),
        destination_type: spec.destination.type_name(),
        source,
        destination,
        buffer,
        channel,
        received: stats.received.load(Relaxed),
        received_bytes: stats.received_bytes.load(Relaxed),
        sent: stats.sent.load(Relaxed),
        sent_bytes: stats.sent_bytes.load(Relaxed),
        pending: ls.pending,
        in_flight: ls.in_flight,
        done: ls.done,
        buffer_bytes: ls.bytes,
        refused: stats.refused.load(Relaxed),
        rejected: stats.rejected.load(Relaxed),
        errors: stats.errors.load(Relaxed),
        retries: stats.retries.load(Relaxed),
        connections_refused: stats.connections_refused.load(Relaxed),
        duplicates_dropped: stats.duplicates_dropped.load(Relaxed),
        modbus_poll_errors: stats.modbus_poll_errors.load(Relaxed),
        parked: stats.parked.load(Relaxed),
        failover: crate::stats::lock_failover(stats),
        oldest_pending_age: oldest,
        last_error: stats.last_error(),
        buffer_failure: ls.failed,
        buffer_heals: stats.heals.load(Relaxed),
        storage_alarm,
    }
}

/// The buffer refused data and storage is still (nearly) full: which limit, in words.
fn storage_alarm(
    stats: &PairStats,
    ls: &iobp_log::LogStats,
    pair_limit: Option<u64>,
    budget: &StorageBudget,
) -> Option<String> {
    use std::sync::atomic::Ordering::Relaxed;
    if !stats.full.load(Relaxed) {
        return None;
    }
    let held = "senders are held back (NAKed, or refused where they cannot be held); delivery goes \
                on and frees space";
    // Still full for the append that was refused (delivery frees space, and it clears).
    let need = stats.full_need.load(Relaxed).max(1);
    let near = |used: u64, limit: u64| used.saturating_add(need) > limit;
    let mib = |b: u64| b / MIB;
    if let Some(l) = pair_limit.filter(|&l| near(ls.bytes, l)) {
        return Some(format!("this pair's storage limit of {} MiB is reached: {held}", mib(l)));
    }
    let (used, limit) = (budget.used(), budget.effective_limit());
    if !near(used, limit) {
        return None;
    }
    Some(if budget.disk_bound() {
        format!(
            "the disk holding the buffers is full ({} MiB used, {} MiB usable): {held}",
            mib(used),
            mib(limit)
        )
    } else {
        format!("max_storage_mb ({} MiB) is reached: {held}", mib(limit))
    })
}

//! The service (SPEC §4): one worker thread per cache that owns its queue and does all
//! its checks and reconciles; one notify watcher per cache feeding that queue; and a
//! tokio runtime for the control socket, signals and systemd notifications.
//!
//! Watches come first, then scans: every directory gets its watch before it is listed,
//! on the first full scan and whenever one appears, so nothing created meanwhile is
//! missed. Lost events (overflow, watch limit, network filesystems) fall back to full
//! reconciles; a periodic one (`full_rescan`) is the last safety net.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::audit::AuditLog;
use crate::config::{CacheConfig, Config, DaemonConfig, LogFormat};
use crate::protocol::{self, CacheState, CacheStatus, Repairs, Reported, Request, Response, ScanInfo, Status};
use crate::walk::{Action, Reason, Scan, Tally};
use crate::watch::{self, Counters, Degradation, Handler, Queue, Waiters, Work};

/// How often a cache is fully reconciled when events cannot be trusted.
const DEGRADED_RESCAN: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How often `daemon.metrics_textfile` is rewritten.
const METRICS_INTERVAL: Duration = Duration::from_secs(15);
/// How often systemd's STATUS= line is refreshed (when it changed).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Startup(String),
}

/// Runs the service until SIGTERM or SIGINT. Configuration errors come back before
/// anything is started.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = Config::load(config_path)?;
    init_logging(config.daemon.log_format);
    // Everything that needs root's full power happens before the capabilities go:
    // binding the socket, the sentinel directory, missing cache roots.
    let listener = bind_socket(&config.daemon).map_err(DaemonError::Startup)?;
    let sentinel_root = sentinel_root(&config.daemon.socket);
    let cleanup = || {
        let _ = std::fs::remove_file(&config.daemon.socket);
        let _ = std::fs::remove_dir_all(&sentinel_root);
    };
    if let Err(e) = make_sentinel_root(&sentinel_root, config.daemon.user) {
        cleanup();
        return Err(DaemonError::Startup(e));
    }
    for cache in &config.caches {
        if let Err(e) = crate::repair::create_root(cache) {
            tracing::error!("{e}");
        }
    }
    let audit = match &config.daemon.audit_log {
        Some(path) => match AuditLog::open(path) {
            Ok(log) => Some(Arc::new(log)),
            Err(e) => {
                cleanup();
                return Err(DaemonError::Startup(e));
            }
        },
        None => None,
    };
    // Before any thread exists: capabilities are per thread, and threads started
    // later (tokio, rayon, notify) inherit the reduced set.
    if let Err(e) = crate::privilege::reduce(config.daemon.user) {
        cleanup();
        return Err(DaemonError::Startup(e));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Startup(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(config_path.to_owned(), config, listener, sentinel_root, audit))
}

/// `<socket>.sync`, fresh, private to the service's user.
fn make_sentinel_root(dir: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| match user {
            Some((uid, gid)) => std::os::unix::fs::chown(dir, Some(uid), Some(gid)),
            None => Ok(()),
        })
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CACHEKEEPER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Everything the control socket and the signal handlers reach.
struct Service {
    config_path: PathBuf,
    daemon: DaemonConfig,
    sentinel_root: PathBuf,
    started: Instant,
    caches: Mutex<Arc<Vec<Arc<CacheRuntime>>>>,
    next_token: AtomicU64,
    audit: Option<Arc<AuditLog>>,
}

async fn serve(
    config_path: PathBuf,
    config: Config,
    listener: std::os::unix::net::UnixListener,
    sentinel_root: PathBuf,
    audit: Option<Arc<AuditLog>>,
) -> Result<(), DaemonError> {
    let listener = UnixListener::from_std(listener).map_err(|e| DaemonError::Startup(e.to_string()))?;
    let service = Arc::new(Service {
        config_path,
        daemon: config.daemon.clone(),
        sentinel_root,
        started: Instant::now(),
        caches: Mutex::new(Arc::new(Vec::new())),
        next_token: AtomicU64::new(1),
        audit,
    });
    let accept = tokio::spawn(accept_loop(Arc::clone(&service), listener));

    let started = service.start_caches(&config.caches, &HashMap::new());
    let result = run_until_stopped(&service, started).await;

    accept.abort();
    let caches = service.snapshot();
    tokio::task::spawn_blocking(move || caches.iter().for_each(|c| c.stop())).await.ok();
    if let Err(e) = std::fs::remove_file(&service.daemon.socket) {
        tracing::warn!(
            "cannot remove {}: {e} (its directory must be writable by the service's user)",
            service.daemon.socket.display()
        );
    }
    let _ = std::fs::remove_dir_all(&service.sentinel_root);
    tracing::info!("stopped");
    result
}

async fn run_until_stopped(service: &Arc<Service>, started: Vec<oneshot::Receiver<()>>) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |kind| signal(kind).map_err(|e| DaemonError::Startup(format!("cannot handle signals: {e}")));
    let (mut hup, mut term, mut int) =
        (sig(SignalKind::hangup())?, sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);

    let initial = async {
        for rx in started {
            let _ = rx.await;
        }
    };
    tokio::select! {
        () = initial => {}
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    }
    let n = service.snapshot().len();
    tracing::info!("first full scan done; watching {n} cache(s)");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    // STATUS= for `systemctl status`: refreshed as states and counters change.
    {
        let service = Arc::clone(service);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATUS_INTERVAL);
            let mut last = String::new();
            loop {
                tick.tick().await;
                let line = status_line(&service.status());
                if line != last {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
                    last = line;
                }
            }
        });
    }
    if let Some(path) = service.daemon.metrics_textfile.clone() {
        let service = Arc::clone(service);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = write_atomically(&path, crate::metrics::render(&service.status()).as_bytes()) {
                    tracing::warn!("cannot write {}: {e}", path.display());
                }
            }
        });
    }
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) {
        let period = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Err(message) = service.reload().await {
                    tracing::error!("reload failed, keeping the running configuration: {message}");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    Ok(())
}

/// One line for systemd's STATUS=: how many caches are in which state, and repairs.
fn status_line(status: &Status) -> String {
    let count = |state: CacheState| status.caches.iter().filter(|c| c.state == state).count();
    let repairs: u64 = status.caches.iter().map(|c| c.repairs.entries).sum();
    let mut parts = vec![format!("{} cache(s): {} healthy", status.caches.len(), count(CacheState::Healthy))];
    for (state, name) in
        [(CacheState::Polling, "polling"), (CacheState::Degraded, "degraded"), (CacheState::Starting, "starting")]
    {
        if count(state) > 0 {
            parts.push(format!("{} {name}", count(state)));
        }
    }
    format!("{}; {repairs} repairs since start", parts.join(", "))
}

/// A file replaced whole, so that node_exporter never reads half of it.
fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, content)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

/// `<socket>.sync`: where `sync` creates its sentinel files, one directory per cache.
fn sentinel_root(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".sync");
    PathBuf::from(name)
}

/// Binds the control socket: refuses to start when another service answers there,
/// removes a stale socket file, and limits access to root and `socket_group`.
fn bind_socket(daemon: &DaemonConfig) -> Result<std::os::unix::net::UnixListener, String> {
    let path = &daemon.socket;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!("another cachekeeper is already running at {}", path.display()));
    }
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // A directory made for the socket belongs to the service's user, who must be
        // able to remove the socket on exit.
        if let Some((uid, gid)) = daemon.user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to uid {uid}: {e}", dir.display()))?;
        }
    }
    if let (Some((uid, _)), Some(dir)) = (daemon.user, path.parent()) {
        let writable = std::fs::metadata(dir).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == uid && m.mode() & 0o200 != 0
        });
        if !writable {
            tracing::warn!(
                "{} is not owned and writable by uid {uid} (daemon.user): the socket cannot be removed on exit",
                dir.display()
            );
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
    let mode = match daemon.socket_group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|e| format!("cannot give {} to group {gid}: {e}", path.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(listener)
}

async fn accept_loop(service: Arc<Service>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let service = Arc::clone(&service);
                tokio::spawn(async move { service.connection(stream).await });
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Service {
    fn snapshot(&self) -> Arc<Vec<Arc<CacheRuntime>>> {
        Arc::clone(&self.caches.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Starts a runtime per cache (keeping the counters of caches that were already
    /// running at the same path) and returns a receiver per first full scan.
    fn start_caches(
        &self,
        caches: &[CacheConfig],
        previous: &HashMap<PathBuf, Arc<Stats>>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut runtimes = Vec::new();
        let mut started = Vec::new();
        for (i, cache) in caches.iter().enumerate() {
            let stats = previous.get(&cache.path).cloned().unwrap_or_default();
            let (runtime, rx) = CacheRuntime::start(
                cache.clone(),
                self.sentinel_root.join(i.to_string()),
                stats,
                self.daemon.full_rescan,
                self.audit.clone(),
            );
            runtimes.push(runtime);
            started.push(rx);
        }
        *self.caches.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(runtimes);
        started
    }

    async fn reload(&self) -> Result<Vec<String>, String> {
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        if config.daemon.socket != self.daemon.socket || config.daemon.socket_group != self.daemon.socket_group {
            tracing::warn!("daemon.socket and daemon.socket_group take effect on restart");
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
        let old = self.snapshot();
        let previous: HashMap<PathBuf, Arc<Stats>> =
            old.iter().map(|c| (c.cache.path.clone(), Arc::clone(&c.stats))).collect();
        tokio::task::spawn_blocking(move || old.iter().for_each(|c| c.stop())).await.ok();
        let _ = self.start_caches(&config.caches, &previous);
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let paths: Vec<String> = config.caches.iter().map(|c| c.path.display().to_string()).collect();
        tracing::info!("configuration reloaded: {}", paths.join(", "));
        Ok(paths)
    }

    async fn connection(&self, mut stream: UnixStream) {
        let response = match self.read_request(&mut stream).await {
            Ok(request) => match self.authorize(&stream, &request) {
                Ok(()) => self.answer(request).await,
                Err(message) => Response::Denied { message },
            },
            Err(message) => Response::Failed { message },
        };
        let mut line = serde_json::to_vec(&response).unwrap_or_default();
        line.push(b'\n');
        let _ = stream.write_all(&line).await;
    }

    async fn read_request(&self, stream: &mut UnixStream) -> Result<Request, String> {
        let mut line = String::new();
        let mut reader = BufReader::new(stream).take(protocol::MAX_REQUEST as u64);
        match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await {
            Ok(Ok(_)) => serde_json::from_str(&line).map_err(|e| format!("bad request: {e}")),
            Ok(Err(e)) => Err(format!("cannot read the request: {e}")),
            Err(_) => Err("no request within 10 s".into()),
        }
    }

    /// Root and members of `daemon.socket_group` only (SO_PEERCRED).
    fn authorize(&self, stream: &UnixStream, request: &Request) -> Result<(), String> {
        let cred = stream.peer_cred().map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        if cred.uid() == 0 {
            return Ok(());
        }
        if let Some(group) = self.daemon.socket_group {
            let member = cred.gid() == group || peer_groups(cred.uid(), cred.gid(), cred.pid()).contains(&group);
            if member {
                return Ok(());
            }
            return Err(format!(
                "uid {} may not use cachekeeper ({request:?}): only root and members of group {group} (daemon.socket_group) may",
                cred.uid()
            ));
        }
        Err(format!(
            "uid {} may not use cachekeeper: only root may (set daemon.socket_group to allow a group)",
            cred.uid()
        ))
    }

    async fn answer(&self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(Box::new(self.status())),
            Request::Sync { timeout_ms } => {
                let deadline = Duration::from_millis(timeout_ms);
                match tokio::time::timeout(deadline, self.sync()).await {
                    Ok(Ok(())) => Response::Synced,
                    Ok(Err(message)) => Response::Failed { message },
                    Err(_) => Response::Failed { message: format!("not settled within {timeout_ms} ms") },
                }
            }
            Request::Rescan { path } => {
                let caches = self.snapshot();
                let chosen: Vec<Arc<CacheRuntime>> = match &path {
                    None => caches.iter().cloned().collect(),
                    Some(p) => caches.iter().filter(|c| c.cache.path == crate::config::clean(p)).cloned().collect(),
                };
                if chosen.is_empty() {
                    let p = path.unwrap_or_default();
                    return Response::Failed { message: format!("no configured cache at {p}") };
                }
                for c in &chosen {
                    if c.rescan().await.is_err() {
                        return Response::Failed { message: format!("{}: the worker stopped", c.cache.path.display()) };
                    }
                }
                Response::Rescanned { caches: chosen.iter().map(|c| c.cache.path.display().to_string()).collect() }
            }
            Request::Reload => match self.reload().await {
                Ok(caches) => Response::Reloaded { caches },
                Err(message) => Response::Failed { message },
            },
        }
    }

    /// Every event that happened before this call has been handled: a sentinel file
    /// goes through each cache's inotify queue behind them, then through its work
    /// queue. Caches whose events cannot be trusted are reconciled in full instead.
    async fn sync(&self) -> Result<(), String> {
        'again: loop {
            let caches = self.snapshot();
            for c in caches.iter() {
                let token = self.next_token.fetch_add(1, Relaxed);
                let mut settled = if c.watched() { c.barrier(token).await } else { Ok(()) };
                if settled.is_ok() && c.state() != CacheState::Healthy {
                    settled = c.rescan().await.map_err(|()| "the worker stopped".to_owned());
                }
                if let Err(e) = settled {
                    // A reload replaced this cache's runtime while we waited: start over
                    // on the new ones.
                    if c.stopped.load(Relaxed) {
                        continue 'again;
                    }
                    return Err(format!("{}: {e}", c.cache.path.display()));
                }
            }
            return Ok(());
        }
    }

    fn status(&self) -> Status {
        let caches: Vec<CacheStatus> = self.snapshot().iter().map(|c| c.status()).collect();
        Status {
            schema_version: protocol::SCHEMA_VERSION,
            healthy: Status::healthy(&caches),
            daemon: protocol::DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: std::process::id(),
                uptime_s: self.started.elapsed().as_secs(),
                uid: nix::unistd::geteuid().as_raw(),
                capabilities: crate::privilege::effective(),
                config: self.config_path.display().to_string(),
                inotify_watches: inotify_watches(),
            },
            caches,
        }
    }
}

/// inotify watches held by this process, from `/proc/self/fdinfo`.
fn inotify_watches() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else { return 0 };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .map(|text| text.lines().filter(|l| l.starts_with("inotify wd")).count() as u64)
        .sum()
}

/// Supplementary groups of the peer: those its process holds (`/proc/<pid>/status`),
/// or, where the unit hides other users' processes (`ProtectProc=invisible`), those
/// the group database gives its user.
fn peer_groups(uid: u32, gid: u32, pid: Option<i32>) -> Vec<u32> {
    let from_proc = pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok()).and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect::<Vec<u32>>())
    });
    if let Some(groups) = from_proc {
        return groups;
    }
    let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
    user.and_then(|u| {
        let name = std::ffi::CString::new(u.name).ok()?;
        nix::unistd::getgrouplist(&name, gid.into()).ok()
    })
    .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
    .unwrap_or_default()
}

/// Counters of a cache that survive a reload.
#[derive(Debug, Default)]
struct Stats {
    counters: Arc<Counters>,
    repairs: Tally,
    full_scans: AtomicU64,
    full_scan_ms: AtomicU64,
    last_scan: Mutex<Option<LastScan>>,
}

#[derive(Debug, Clone, Copy)]
struct LastScan {
    info: ScanInfo,
    reported: Reported,
}

/// One cache being kept: its worker thread, its watcher and its state.
struct CacheRuntime {
    cache: Arc<CacheConfig>,
    stats: Arc<Stats>,
    queue: Queue,
    sentinel: PathBuf,
    filesystem: String,
    polled: bool,
    /// An inotify watcher exists (it may not: not polled, yet inotify failed).
    watched: bool,
    waiters: Waiters,
    degraded: Degradation,
    scanned: Arc<AtomicBool>,
    stopped: AtomicBool,
    full_rescan: Duration,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CacheRuntime {
    fn start(
        cache: CacheConfig,
        sentinel: PathBuf,
        stats: Arc<Stats>,
        full_rescan: Duration,
        audit: Option<Arc<AuditLog>>,
    ) -> (Arc<CacheRuntime>, oneshot::Receiver<()>) {
        let cache = Arc::new(cache);
        let (filesystem, polled) = watch::filesystem(&cache.path);
        let (tx, rx) = std::sync::mpsc::channel();
        let queue = Queue::new(tx);
        let waiters: Waiters = Arc::default();
        let degraded: Degradation = Arc::default();
        let mut watcher = None;
        if polled {
            tracing::warn!(
                root = %cache.path.display(),
                "{filesystem} sends no events for other clients' writes: polling every {}s",
                POLL_INTERVAL.as_secs()
            );
        } else {
            let handler = Handler {
                root: cache.path.clone(),
                sentinel: sentinel.clone(),
                queue: queue.clone(),
                counters: Arc::clone(&stats.counters),
                waiters: Arc::clone(&waiters),
                degraded: Arc::clone(&degraded),
            };
            let made = std::fs::create_dir_all(&sentinel).map_err(notify::Error::io).and_then(|()| {
                let mut w = handler.watcher()?;
                w.watch(&sentinel, RecursiveMode::NonRecursive)?;
                Ok(w)
            });
            match made {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::error!(root = %cache.path.display(), "cannot watch, falling back to polling: {e}");
                    *degraded.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch::NO_INOTIFY_REASON.to_owned());
                }
            }
        }
        let (done_tx, done_rx) = oneshot::channel();
        queue.send(Work::Rescan { done: Some(done_tx) });
        let watched = watcher.is_some();
        let runtime = Arc::new(CacheRuntime {
            cache,
            stats,
            queue,
            sentinel,
            filesystem,
            polled,
            watched,
            waiters,
            degraded,
            scanned: Arc::new(AtomicBool::new(false)),
            stopped: AtomicBool::new(false),
            full_rescan,
            thread: Mutex::new(None),
        });
        let worker = Worker { runtime: Arc::clone(&runtime), watcher: Mutex::new(watcher), audit };
        let name = format!("ck-{}", runtime.cache.path.display());
        let handle = std::thread::Builder::new().name(name).spawn(move || worker.run(rx));
        match handle {
            Ok(h) => *runtime.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(h),
            Err(e) => tracing::error!("cannot start a worker thread: {e}"),
        }
        (runtime, done_rx)
    }

    fn watched(&self) -> bool {
        self.watched
    }

    fn state(&self) -> CacheState {
        if !self.scanned.load(Relaxed) {
            CacheState::Starting
        } else if self.degraded_reason().is_some() {
            CacheState::Degraded
        } else if self.polled {
            CacheState::Polling
        } else {
            CacheState::Healthy
        }
    }

    /// Why events cannot be trusted now, if they cannot.
    fn degraded_reason(&self) -> Option<String> {
        let set = self.degraded.lock().unwrap_or_else(|p| p.into_inner()).clone();
        set.or_else(|| self.stats.counters.overflowed_recently().then(|| watch::OVERFLOW_REASON.to_owned()))
    }

    async fn rescan(&self) -> Result<(), ()> {
        let (tx, rx) = oneshot::channel();
        if !self.queue.send(Work::Rescan { done: Some(tx) }) {
            return Err(());
        }
        rx.await.map_err(drop)
    }

    async fn barrier(&self, token: u64) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        {
            // Under the lock that stop() clears: a runtime being replaced by a reload
            // either refuses the waiter here or drops it there, never keeps it forever.
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if self.stopped.load(Relaxed) {
                return Err("the worker stopped".into());
            }
            waiters.insert(token, tx);
        }
        let marker = self.sentinel.join(token.to_string());
        let created = std::fs::File::create(&marker);
        let result = match created {
            Ok(_) => rx.await.map_err(|_| "the worker stopped".to_owned()),
            Err(e) => Err(format!("cannot create the sync marker {}: {e}", marker.display())),
        };
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
        let _ = std::fs::remove_file(&marker);
        result
    }

    fn set_degraded(&self, reason: Option<String>) {
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    fn stop(&self) {
        {
            // Waiters of a sync would otherwise wait for a worker that is gone.
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            self.stopped.store(true, Relaxed);
            waiters.clear();
        }
        self.queue.send(Work::Stop);
        if let Some(h) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }

    fn status(&self) -> CacheStatus {
        let last = *self.stats.last_scan.lock().unwrap_or_else(|p| p.into_inner());
        let r = &self.stats.repairs;
        let c = &self.stats.counters;
        let reason = self.degraded_reason().or_else(|| {
            self.polled.then(|| {
                format!(
                    "{} sends no events for other clients' writes: polled every {}s",
                    self.filesystem,
                    POLL_INTERVAL.as_secs()
                )
            })
        });
        CacheStatus {
            path: self.cache.path.display().to_string(),
            state: self.state(),
            reason,
            filesystem: self.filesystem.clone(),
            entries: last.map_or(0, |l| l.info.entries),
            repairs: Repairs {
                entries: r.changed.load(Relaxed),
                owner: r.owner.load(Relaxed),
                group: r.group.load(Relaxed),
                mode: r.mode.load(Relaxed),
                acl: r.acl.load(Relaxed),
            },
            reported: last.map(|l| l.reported).unwrap_or_default(),
            errors: c.errors.load(Relaxed) + r.failed.load(Relaxed),
            last_full_scan: last.map(|l| l.info),
            full_scans: self.stats.full_scans.load(Relaxed),
            full_scan_ms_total: self.stats.full_scan_ms.load(Relaxed),
            queue_depth: self.queue.depth(),
            events_received: c.events.load(Relaxed),
            overflows: c.overflows.load(Relaxed),
            inheritance: Some(crate::model::Inheritance::of(&self.cache.policy, r.no_acl.load(Relaxed))),
        }
    }
}

/// Work taken from the queue and not done yet: checks, each path once (deep if any
/// asked so), and whether a full reconcile is due, which makes them moot.
#[derive(Default)]
struct Pending {
    checks: Vec<(Vec<u8>, bool)>,
    index: HashMap<Vec<u8>, usize>,
    rescan: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Pending {
    fn check(&mut self, rel: Vec<u8>, deep: bool) {
        if self.rescan {
            return;
        }
        match self.index.get(&rel) {
            Some(&i) => self.checks[i].1 |= deep,
            None => {
                self.index.insert(rel.clone(), self.checks.len());
                self.checks.push((rel, deep));
            }
        }
    }

    fn rescan(&mut self, done: Option<oneshot::Sender<()>>) {
        self.rescan = true;
        self.checks.clear();
        self.index.clear();
        self.waiters.extend(done);
    }
}

/// The thread that does all of one cache's checks and reconciles, in queue order.
struct Worker {
    runtime: Arc<CacheRuntime>,
    watcher: Mutex<Option<RecommendedWatcher>>,
    audit: Option<Arc<AuditLog>>,
}

impl Worker {
    fn run(self, rx: Receiver<Work>) {
        let mut next_scan = Instant::now() + self.interval();
        loop {
            let wait = next_scan.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(work) => work,
                Err(RecvTimeoutError::Timeout) => {
                    self.full_scan();
                    next_scan = Instant::now() + self.interval();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < 65_536 {
                match rx.try_recv() {
                    Ok(work) => batch.push(work),
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            let mut pending = Pending::default();
            let mut stop = false;
            for work in batch {
                match work {
                    Work::Check { rel, deep } => pending.check(rel, deep),
                    Work::Rescan { done } => pending.rescan(done),
                    Work::Barrier(tx) => {
                        self.finish(&mut pending, &mut next_scan);
                        let _ = tx.send(());
                    }
                    Work::Stop => stop = true,
                }
            }
            self.finish(&mut pending, &mut next_scan);
            self.runtime.queue.taken(n);
            if stop {
                return;
            }
        }
    }

    /// Does the pending work: a due full reconcile (which covers every check queued
    /// before it), else each check once.
    fn finish(&self, pending: &mut Pending, next_scan: &mut Instant) {
        let Pending { checks, rescan, waiters, .. } = std::mem::take(pending);
        if rescan {
            self.full_scan();
            *next_scan = Instant::now() + self.interval();
            for tx in waiters {
                let _ = tx.send(());
            }
        }
        for (rel, deep) in checks {
            self.check(&rel, deep);
        }
    }

    fn interval(&self) -> Duration {
        let full = self.runtime.full_rescan;
        match self.runtime.state() {
            CacheState::Degraded => full.min(DEGRADED_RESCAN),
            CacheState::Polling => full.min(POLL_INTERVAL),
            _ => full,
        }
    }

    /// Adds a watch on a directory before it is listed. After the first refusal for
    /// the watch limit, the rest of the scan does not ask again.
    fn watch_hook<'a>(&'a self, limit: &'a AtomicBool) -> impl Fn(&[u8]) + Sync + 'a {
        move |rel: &[u8]| {
            if limit.load(Relaxed) {
                return;
            }
            let mut guard = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
            let Some(watcher) = guard.as_mut() else { return };
            let root = &self.runtime.cache.path;
            let path = if rel.is_empty() { root.clone() } else { root.join(OsStr::from_bytes(rel)) };
            match watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => {}
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    if !limit.swap(true, Relaxed) {
                        tracing::warn!(root = %self.runtime.cache.path.display(), "{}", watch::WATCH_LIMIT_REASON);
                    }
                }
                Err(e) => tracing::debug!(path = %path.display(), "cannot watch: {e}"),
            }
        }
    }

    /// Records each repair in `daemon.audit_log`, when one is configured.
    fn audit_hook(&self) -> Option<Box<crate::walk::AuditHook<'_>>> {
        let log = self.audit.as_ref()?;
        let root = &self.runtime.cache.path;
        Some(Box::new(move |rel: &[u8], d: &crate::model::Divergence| log.record(root, rel, d)))
    }

    fn check(&self, rel: &[u8], deep: bool) {
        let tally = Tally::default();
        let limit = AtomicBool::new(false);
        let hook = self.watch_hook(&limit);
        let cache = &self.runtime.cache;
        let audit = self.audit_hook();
        let scan = Scan { cache, action: Action::Repair, tally: &tally, watch: Some(&hook), audit: audit.as_deref() };
        if let Err(e) = scan.path(rel, deep) {
            tracing::warn!(root = %cache.path.display(), "cannot open the cache root: {e}");
            self.runtime.stats.counters.errors.fetch_add(1, Relaxed);
        }
        if limit.load(Relaxed) {
            self.runtime.set_degraded(Some(watch::WATCH_LIMIT_REASON.to_owned()));
        }
        self.runtime.stats.repairs.absorb(&tally);
    }

    fn full_scan(&self) {
        let cache = &self.runtime.cache;
        let tally = Tally::default();
        let limit = AtomicBool::new(false);
        let hook = self.watch_hook(&limit);
        let started = Instant::now();
        let watch: Option<&crate::walk::WatchHook<'_>> = if self.runtime.polled { None } else { Some(&hook) };
        let audit = self.audit_hook();
        let scan = Scan { cache, action: Action::Repair, tally: &tally, watch, audit: audit.as_deref() };
        let scanned = crate::repair::create_root(cache).map_err(io::Error::other).and_then(|()| scan.all());
        if let Err(e) = &scanned {
            tracing::error!(root = %cache.path.display(), "full scan failed: {e}");
            self.runtime.stats.counters.errors.fetch_add(1, Relaxed);
        }
        let took = started.elapsed();
        let reported = Reported {
            symlink: tally.reported(Reason::Symlink),
            hard_link: tally.reported(Reason::HardLink),
            special: tally.reported(Reason::Special),
            other_mount: tally.reported(Reason::OtherMount),
        };
        let entries = tally.entries.load(Relaxed);
        let finished_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let info = ScanInfo { finished_at, duration_ms: took.as_millis() as u64, entries };
        *self.runtime.stats.last_scan.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastScan { info, reported });
        self.runtime.stats.full_scans.fetch_add(1, Relaxed);
        self.runtime.stats.full_scan_ms.fetch_add(info.duration_ms, Relaxed);
        self.runtime.stats.repairs.absorb(&tally);
        // A full scan re-adds every watch, so after an overflow the cache is whole again;
        // what keeps it degraded is a root that cannot be opened, a watch limit that still
        // bites, or no inotify at all.
        let degraded = match &scanned {
            Err(e) => Some(format!("the cache root cannot be walked: {}", crate::sys::describe(e))),
            Ok(_) if limit.load(Relaxed) => Some(watch::WATCH_LIMIT_REASON.to_owned()),
            Ok(_) if !self.runtime.polled && !self.runtime.watched => Some(watch::NO_INOTIFY_REASON.to_owned()),
            Ok(_) => None,
        };
        self.runtime.set_degraded(degraded);
        self.runtime.scanned.store(true, Relaxed);
        tracing::info!(
            root = %cache.path.display(),
            "full scan: {entries} entries in {:.2}s, {} repaired",
            took.as_secs_f64(),
            tally.changed.load(Relaxed)
        );
    }
}

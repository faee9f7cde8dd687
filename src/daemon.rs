//! The service (SPEC §4): one worker thread per cache that owns its queue and does all
//! its checks and reconciles; one inotify instance per cache feeding that queue; and a
//! tokio runtime for the control socket, signals and systemd notifications.
//!
//! Watches come first, then scans: every directory gets its watch before it is listed,
//! on the first full scan and whenever one appears, so nothing created meanwhile is
//! missed. Lost events (overflow, watch limit, network filesystems) fall back to full
//! reconciles; a periodic one (`full_rescan`) is the last safety net.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::audit::AuditLog;
use crate::config::{CacheConfig, Config, DaemonConfig};
use crate::protocol::{self, CacheState, CacheStatus, Repairs, Reported, Request, Response, ScanInfo, Status};
use crate::root::{self, Origin, Root};
use crate::sidefile::{self, SafeDir};
use crate::sys;
use crate::walk::{Action, Reason, Scan, Tally};
use crate::watch::{self, Counters, Degradation, Degraded, Handler, Queue, Waiters, Work};

/// How often a cache is fully reconciled when events cannot be trusted.
const DEGRADED_RESCAN: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How soon a check that failed for a transient reason (EMFILE, ENFILE, ENOMEM) is
/// tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Findings of a full scan logged one per line; the rest are counted in one line.
const FINDINGS_LOGGED: usize = 20;
/// How often `daemon.metrics_textfile` is rewritten.
const METRICS_INTERVAL: Duration = Duration::from_secs(15);
/// How often systemd's STATUS= line is refreshed (when it changed).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Control connections served at once; past it a new one is closed at once. Each costs
/// a descriptor and a task, and a request takes milliseconds (a `sync` up to its timeout).
const MAX_CONNECTIONS: usize = 128;
/// Control connections of one uid at once (root and the service's own user aside):
/// a member holding idle connections cannot take the service's descriptors.
const MAX_CONNECTIONS_PER_UID: usize = 8;
/// How long a peer has to send its request, and to take the answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

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
    crate::logging::init_service(config.daemon.log_format);
    raise_nofile_limit();
    sys::few_arenas();
    // A stop asked for during startup waits until the handlers exist, so that it still
    // removes the socket; every thread started meanwhile keeps them blocked.
    stop_signals().thread_block().map_err(|e| DaemonError::Startup(format!("cannot block signals: {e}")))?;
    // Everything that needs root's full power happens before the capabilities go, and
    // every side file is checked before the first cache is touched: binding the socket,
    // the sentinel directory, the audit log, then missing cache roots and isolation.
    crate::privilege::check().map_err(DaemonError::Startup)?;
    let (listener, side) = SideFiles::open(&config.daemon).map_err(DaemonError::Startup)?;
    for cache in &config.caches {
        prepare_root(cache);
    }
    // Before any thread exists: capabilities are per thread, and threads started
    // later (tokio, rayon, inotify readers) inherit the reduced set.
    if let Err(e) = crate::privilege::reduce(config.daemon.user) {
        side.remove();
        return Err(DaemonError::Startup(e));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Startup(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(config_path.to_owned(), config, listener, side))
}

/// Raises the soft limit on open descriptors to the hard one: the default soft limit
/// (1024) is for programs that use `select`, and a walk, the watches and the control
/// connections all need descriptors.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
}

/// SIGHUP, SIGTERM and SIGINT: what the service handles.
fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal;
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    set
}

/// The service's own files: control socket, sync markers, audit log, metrics textfile,
/// each reached through a directory resolved and pinned by [`crate::sidefile`].
struct SideFiles {
    socket_dir: SafeDir,
    socket_name: OsString,
    sentinel_root: SafeDir,
    audit: Option<Arc<AuditLog>>,
    metrics: Option<(SafeDir, OsString)>,
}

impl SideFiles {
    fn open(daemon: &DaemonConfig) -> Result<(std::os::unix::net::UnixListener, SideFiles), String> {
        let trusted: Vec<u32> =
            [Some(nix::unistd::geteuid().as_raw()), daemon.user.map(|u| u.0)].into_iter().flatten().collect();
        let (listener, socket_dir, socket_name) = bind_socket(daemon, &trusted)?;
        let remove_socket = || {
            let _ = socket_dir.remove_file(&socket_name);
        };
        let mut sync_name = socket_name.clone();
        sync_name.push(".sync");
        let sentinel_root = match socket_dir.fresh_subdir(&sync_name, 0o700, daemon.user) {
            Ok(d) => d,
            Err(e) => {
                remove_socket();
                return Err(e);
            }
        };
        let audit = daemon.audit_log.as_deref().map(|p| AuditLog::open(p, &trusted)).transpose();
        let metrics = daemon
            .metrics_textfile
            .as_deref()
            .map(|p| {
                let (dir, name) = sidefile::split(p)?;
                Ok::<_, String>((
                    SafeDir::open(dir).map_err(|e| format!("daemon.metrics_textfile: {e}"))?,
                    name.to_owned(),
                ))
            })
            .transpose();
        match (audit, metrics) {
            (Ok(audit), Ok(metrics)) => Ok((
                listener,
                SideFiles { socket_dir, socket_name, sentinel_root, audit: audit.map(Arc::new), metrics },
            )),
            (Err(e), _) | (_, Err(e)) => {
                remove_socket();
                let _ = socket_dir.remove_subdir(&sync_name);
                Err(e)
            }
        }
    }

    /// On every way out: the socket and the sync markers go.
    fn remove(&self) {
        if let Err(e) = self.socket_dir.remove_file(&self.socket_name) {
            tracing::warn!("{e} (its directory must be writable by the service's user)");
        }
        if let Some(name) = self.sentinel_root.path().file_name() {
            let _ = self.socket_dir.remove_subdir(name);
        }
    }
}

/// Creates a missing root as the administrator configured it, and isolates it when the
/// service may: as root, in the host's own mount namespace (a mount made in a private
/// namespace, such as systemd's sandbox, would protect no one outside it).
fn prepare_root(cache: &CacheConfig) {
    let own = root::Ownership { parents: None, root: (cache.policy.owner, cache.policy.group), root_mode: 0o700 };
    if let Err(e) = root::create(&cache.path, &Origin::Admin, own) {
        tracing::error!("{e}");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    // Where PID 1's namespace cannot be read (a sandbox without CAP_SYS_PTRACE over it),
    // the mount is tried: a service without the power to mount fails cleanly.
    let private_namespace = match (std::fs::read_link("/proc/self/ns/mnt"), std::fs::read_link("/proc/1/ns/mnt")) {
        (Ok(mine), Ok(init)) => mine != init,
        _ => false,
    };
    match root::resolve(&cache.path, &Origin::Admin, cache.force) {
        Ok(pinned) if !root::isolation(&pinned).isolated() && private_namespace => tracing::info!(
            root = %cache.path.display(),
            "not isolating: the service runs in a mount namespace of its own; use the shipped mount unit or fstab"
        ),
        Ok(pinned) => match root::isolate(&pinned) {
            Ok(true) => {
                tracing::info!(root = %cache.path.display(), "{}", root::isolation(&pinned).describe(pinned.path()))
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        },
        Err(e) => tracing::error!("{e}"),
    }
}

/// Everything the control socket and the signal handlers reach.
struct Service {
    config_path: PathBuf,
    daemon: DaemonConfig,
    side: SideFiles,
    started: Instant,
    started_at: SystemTime,
    caches: Mutex<Arc<Vec<Arc<CacheRuntime>>>>,
    next_token: AtomicU64,
    /// One reload at a time: a second waits, so that no runtime is left running.
    reloading: tokio::sync::Mutex<()>,
    last_reload: Mutex<Option<protocol::ReloadResult>>,
    /// The configuration file as the running configuration was read from it.
    config_text: Mutex<Option<Vec<u8>>>,
    /// Open control connections, in all and by peer uid.
    connections: Mutex<(usize, HashMap<u32, usize>)>,
    /// Peers (uid) with a `reload` or `rescan` under way: one at a time each.
    busy: Mutex<HashSet<u32>>,
}

async fn serve(
    config_path: PathBuf,
    config: Config,
    listener: std::os::unix::net::UnixListener,
    side: SideFiles,
) -> Result<(), DaemonError> {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            side.remove();
            return Err(DaemonError::Startup(e.to_string()));
        }
    };
    let config_text = std::fs::read(&config_path).ok();
    let service = Arc::new(Service {
        config_path,
        daemon: config.daemon.clone(),
        side,
        started: Instant::now(),
        started_at: SystemTime::now(),
        caches: Mutex::new(Arc::new(Vec::new())),
        next_token: AtomicU64::new(1),
        reloading: tokio::sync::Mutex::new(()),
        last_reload: Mutex::new(None),
        config_text: Mutex::new(config_text),
        connections: Mutex::default(),
        busy: Mutex::default(),
    });
    // Caches first: a `sync` answered before they exist would settle on nothing.
    let started = service.start_caches(&config.caches, &HashMap::new());
    let accept = tokio::spawn(accept_loop(Arc::clone(&service), listener));
    let result = run_until_stopped(&service, started).await;

    accept.abort();
    let caches = service.snapshot();
    tokio::task::spawn_blocking(move || caches.iter().for_each(|c| c.stop())).await.ok();
    service.side.remove();
    tracing::info!("stopped");
    result
}

async fn run_until_stopped(service: &Arc<Service>, started: Vec<oneshot::Receiver<()>>) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |kind| signal(kind).map_err(|e| DaemonError::Startup(format!("cannot handle signals: {e}")));
    let (mut hup, mut term, mut int) =
        (sig(SignalKind::hangup())?, sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    // This is the main thread (block_on): a stop that came during startup arrives now.
    stop_signals().thread_unblock().map_err(|e| DaemonError::Startup(format!("cannot unblock signals: {e}")))?;

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
    if service.side.metrics.is_some() {
        let service = Arc::clone(service);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_INTERVAL);
            loop {
                tick.tick().await;
                let Some((dir, name)) = &service.side.metrics else { return };
                if let Err(e) = dir.replace(name, crate::metrics::render(&service.status()).as_bytes(), 0o644) {
                    tracing::warn!("{e}");
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
                let _ = service.reload().await;
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

/// Binds the control socket in its directory, resolved safely and writable only by root
/// and the service's user: refuses to start when another service answers there, removes
/// a stale socket file, and limits access to root and `socket_group`.
fn bind_socket(
    daemon: &DaemonConfig,
    trusted: &[u32],
) -> Result<(std::os::unix::net::UnixListener, SafeDir, OsString), String> {
    let (dir_path, name) = sidefile::split(&daemon.socket).map_err(|e| format!("daemon.socket: {e}"))?;
    // A directory made for the socket belongs to the service's user, who must be able to
    // remove the socket on exit; members must reach the socket inside it.
    let dir = SafeDir::create(dir_path, 0o755, daemon.user).map_err(|e| format!("daemon.socket: {e}"))?;
    dir.require_private(trusted).map_err(|e| format!("daemon.socket: {e}"))?;
    if let Some((uid, _)) = daemon.user {
        let writable = sys::stat_fd(dir.fd()).is_ok_and(|st| st.uid == uid && st.mode & 0o200 != 0);
        if !writable {
            tracing::warn!(
                "{} is not owned and writable by uid {uid} (daemon.user): the socket cannot be removed on exit",
                dir.path().display()
            );
        }
    }
    let shown = daemon.socket.display();
    let at = dir.proc_path(name);
    if std::os::unix::net::UnixStream::connect(&at).is_ok() {
        return Err(format!("another cachekeeper is already running at {shown}"));
    }
    dir.remove_file(name).map_err(|e| format!("cannot remove the stale socket: {e}"))?;
    let listener = std::os::unix::net::UnixListener::bind(&at)
        .map_err(|e| format!("cannot bind control socket {shown}: {}", sys::describe(&e)))?;
    let mode = if daemon.socket_group.is_some() { 0o660 } else { 0o600 };
    let access = dir.set_socket_access(name, daemon.socket_group, mode);
    if let Err(e) = access.and_then(|()| listener.set_nonblocking(true).map_err(|e| e.to_string())) {
        let _ = dir.remove_file(name);
        return Err(e);
    }
    Ok((listener, dir, name.to_owned()))
}

async fn accept_loop(service: Arc<Service>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Over a cap the connection is closed unanswered: the client sees the
                // service busy, and the service keeps its descriptors for the caches.
                let Some(slot) = ConnectionSlot::take(&service, &stream) else { continue };
                tokio::spawn(async move {
                    slot.service.connection(stream).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A control connection counted against the caps; released on drop.
struct ConnectionSlot {
    service: Arc<Service>,
    uid: Option<u32>,
}

impl ConnectionSlot {
    fn take(service: &Arc<Service>, stream: &UnixStream) -> Option<ConnectionSlot> {
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let trusted = |uid: u32| uid == 0 || uid == nix::unistd::geteuid().as_raw();
        let mut guard = service.connections.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_uid) = &mut *guard;
        if *total >= MAX_CONNECTIONS {
            return None;
        }
        let counted = uid.filter(|&u| !trusted(u));
        if let Some(u) = counted {
            let n = by_uid.entry(u).or_default();
            if *n >= MAX_CONNECTIONS_PER_UID {
                return None;
            }
            *n += 1;
        }
        *total += 1;
        Some(ConnectionSlot { service: Arc::clone(service), uid: counted })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut guard = self.service.connections.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_uid) = &mut *guard;
        *total -= 1;
        if let Some(u) = self.uid {
            if let Some(n) = by_uid.get_mut(&u) {
                *n -= 1;
                if *n == 0 {
                    by_uid.remove(&u);
                }
            }
        }
    }
}

/// A peer's `reload` or `rescan` under way; released on drop.
struct BusyPeer<'a> {
    busy: &'a Mutex<HashSet<u32>>,
    uid: u32,
}

impl Drop for BusyPeer<'_> {
    fn drop(&mut self) {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.uid);
    }
}

impl Service {
    /// One `reload` or `rescan` at a time per peer (root and the service's user aside):
    /// each restarts or walks whole caches, and a member must not queue hundreds.
    fn one_at_a_time(&self, uid: Option<u32>) -> Result<Option<BusyPeer<'_>>, String> {
        let Some(uid) = uid.filter(|&u| u != 0 && u != nix::unistd::geteuid().as_raw()) else { return Ok(None) };
        if !self.busy.lock().unwrap_or_else(|p| p.into_inner()).insert(uid) {
            return Err(format!(
                "uid {uid} already has a reload or rescan under way; run it again when that one is done"
            ));
        }
        Ok(Some(BusyPeer { busy: &self.busy, uid }))
    }

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
            // A cache that was kept before a reload is not "starting" again: its tree was
            // compliant a moment ago, and a readiness probe must not flap.
            let kept = previous.get(&cache.path).cloned();
            let scanned = kept.is_some();
            let stats = kept.unwrap_or_default();
            let sentinel = self.side.sentinel_root.fresh_subdir(OsStr::new(&i.to_string()), 0o700, None);
            let (runtime, rx) = CacheRuntime::start(
                cache.clone(),
                sentinel,
                stats,
                self.daemon.full_rescan,
                self.side.audit.clone(),
                scanned,
                (self.daemon.max_pending, self.daemon.max_watches),
            );
            runtimes.push(runtime);
            started.push(rx);
        }
        *self.caches.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(runtimes);
        started
    }

    /// Re-reads the configuration (serialised; the outcome is kept for `status`). A
    /// refusal is logged as an error whichever way the reload was asked for (SIGHUP, or
    /// `cachekeeperctl reload`, the unit's ExecReload=).
    async fn reload(&self) -> Result<Vec<String>, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let text = std::fs::read(&self.config_path).ok();
        let result = self.replace_runtimes().await;
        let message = match &result {
            Ok(paths) => paths.join(", "),
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                e.clone()
            }
        };
        if result.is_ok() {
            *self.config_text.lock().unwrap_or_else(|p| p.into_inner()) = text;
        }
        let outcome = protocol::ReloadResult { at: protocol::rfc3339(SystemTime::now()), ok: result.is_ok(), message };
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        result
    }

    async fn replace_runtimes(&self) -> Result<Vec<String>, String> {
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
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let response = match self.read_request(&mut stream).await {
            Ok(request) => match self.authorize(&stream, &request) {
                Ok(()) => self.answer(request, uid).await,
                Err(message) => Response::Denied { message },
            },
            Err(message) => Response::Failed { message },
        };
        let mut line = serde_json::to_vec(&response).unwrap_or_default();
        line.push(b'\n');
        // A peer that does not read its answer does not keep the connection.
        let _ = tokio::time::timeout(REQUEST_DEADLINE, stream.write_all(&line)).await;
    }

    async fn read_request(&self, stream: &mut UnixStream) -> Result<Request, String> {
        let mut line = String::new();
        let mut reader = BufReader::new(stream).take(protocol::MAX_REQUEST as u64);
        match tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)).await {
            Ok(Ok(_)) => serde_json::from_str(&line).map_err(|e| format!("bad request: {e}")),
            Ok(Err(e)) => Err(format!("cannot read the request: {e}")),
            Err(_) => Err("no request within 10 s".into()),
        }
    }

    /// Root and members of `daemon.socket_group` only (SO_PEERCRED).
    fn authorize(&self, stream: &UnixStream, request: &Request) -> Result<(), String> {
        let cred = stream.peer_cred().map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        // The service's own user too: the unit's ExecReload= runs cachekeeperctl as User=.
        if cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw() {
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

    async fn answer(&self, request: Request, uid: Option<u32>) -> Response {
        let _busy = match &request {
            Request::Reload | Request::Rescan { .. } => match self.one_at_a_time(uid) {
                Ok(busy) => busy,
                Err(message) => return Response::Failed { message },
            },
            Request::Status | Request::Sync { .. } => None,
        };
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
                let mut scans = Vec::new();
                for c in &chosen {
                    if let Err(e) = c.rescan().await {
                        return Response::Failed { message: format!("{}: {e}", c.cache.path.display()) };
                    }
                    let last = c.stats.last_scan.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    scans.extend(last.map(|l| l.info));
                }
                let caches = chosen.iter().map(|c| c.cache.path.display().to_string()).collect();
                Response::Rescanned { caches, scans }
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
                    settled = c.rescan().await;
                }
                if settled.is_ok() {
                    settled = c.require_repaired();
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
                user: crate::summary::Names::default().user(nix::unistd::geteuid().as_raw()),
                started: protocol::rfc3339(self.started_at),
                last_reload: self.last_reload.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                config_changed: std::fs::read(&self.config_path).ok()
                    != *self.config_text.lock().unwrap_or_else(|p| p.into_inner()),
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
    last_repair: Mutex<Option<protocol::LastRepair>>,
    /// Directories watched by the last full scan, and since.
    watches: AtomicU64,
}

#[derive(Debug, Clone)]
struct LastScan {
    info: ScanInfo,
    reported: Reported,
}

/// One cache being kept: its worker thread, its watcher and its state.
struct CacheRuntime {
    cache: Arc<CacheConfig>,
    stats: Arc<Stats>,
    queue: Queue,
    /// Where `sync` creates its marker files, watched by this cache's inotify instance.
    sentinel: Result<SafeDir, String>,
    filesystem: String,
    polled: bool,
    /// An inotify watcher exists (it may not: not polled, yet inotify failed).
    watched: bool,
    waiters: Waiters,
    degraded: Degradation,
    scanned: Arc<AtomicBool>,
    /// Why the last full reconcile could not walk the cache, if it could not: `rescan`
    /// and `sync` fail with it rather than report a reconcile that did not happen.
    scan_error: Mutex<Option<String>>,
    stopped: AtomicBool,
    full_rescan: Duration,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by the worker each time it looks at the pinned root.
    isolation: Mutex<Option<IsolationState>>,
    /// Entries that stay non-compliant, by path relative to the root, with the cause:
    /// rebuilt by each full scan, updated by each check of a path.
    unrepaired: Mutex<BTreeMap<Vec<u8>, String>>,
    /// Watches this cache may hold (`daemon.max_watches`).
    max_watches: u64,
}

/// What kept a walk from watching every directory it listed.
#[derive(Default)]
struct WatchTrouble {
    /// The kernel's limit (`fs.inotify.max_user_watches`) refused a watch.
    limit: AtomicBool,
    /// `daemon.max_watches` was reached.
    budget: AtomicBool,
    /// Directories refused for another reason (a path longer than PATH_MAX), and the first.
    unwatched: AtomicU64,
    first: Mutex<Option<String>>,
}

impl WatchTrouble {
    /// Why part of the cache is not watched, if it is not.
    fn reason(&self, max_watches: u64) -> Option<Degraded> {
        if self.limit.load(Relaxed) {
            return Some(Degraded::WatchLimit);
        }
        if self.budget.load(Relaxed) {
            return Some(Degraded::WatchBudget { max: max_watches });
        }
        let count = self.unwatched.load(Relaxed);
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (count > 0).then(|| Degraded::Unwatched { count, first: first.unwrap_or_default() })
    }
}

/// `daemon.max_watches`, or half of `fs.inotify.max_user_watches`: the kernel's budget is
/// per user, and the service's user (root, in a container) shares it with the host.
fn max_watches(configured: Option<u64>) -> u64 {
    configured.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(u64::MAX, |n| (n / 2).max(1))
    })
}

/// Whether hard links from outside can reach a cache, and whether that stops repairs.
#[derive(Debug, Clone)]
struct IsolationState {
    isolated: bool,
    description: String,
    /// Why files are not changed (the hard-link guard), if they are not.
    refused: Option<String>,
}

impl CacheRuntime {
    fn start(
        cache: CacheConfig,
        sentinel: Result<SafeDir, String>,
        stats: Arc<Stats>,
        full_rescan: Duration,
        audit: Option<Arc<AuditLog>>,
        scanned: bool,
        (max_pending, max_watches_configured): (usize, Option<u64>),
    ) -> (Arc<CacheRuntime>, oneshot::Receiver<()>) {
        let cache = Arc::new(cache);
        let (filesystem, polled) = watch::filesystem(&cache.path);
        let queue = Queue::new(max_pending);
        let waiters: Waiters = Arc::default();
        let degraded: Degradation = Arc::default();
        let mut watcher = None;
        let mut template = None;
        if polled {
            tracing::warn!(
                root = %cache.path.display(),
                "{filesystem} sends no events for other clients' writes: polling every {}s",
                POLL_INTERVAL.as_secs()
            );
        } else {
            let handler = Handler {
                root: cache.path.clone(),
                sentinel: sentinel.as_ref().map(|d| d.path().to_owned()).unwrap_or_default(),
                queue: queue.clone(),
                counters: Arc::clone(&stats.counters),
                waiters: Arc::clone(&waiters),
                degraded: Arc::clone(&degraded),
            };
            let made = match &sentinel {
                Ok(_) => handler.clone().start(),
                Err(e) => Err(std::io::Error::other(e.clone())),
            };
            template = Some(handler);
            match made {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::error!(root = %cache.path.display(), "cannot watch, falling back to polling: {e}");
                    *degraded.lock().unwrap_or_else(|p| p.into_inner()) = Some(Degraded::NoInotify);
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
            scanned: Arc::new(AtomicBool::new(scanned)),
            scan_error: Mutex::new(None),
            stopped: AtomicBool::new(false),
            full_rescan,
            thread: Mutex::new(None),
            isolation: Mutex::new(None),
            unrepaired: Mutex::default(),
            max_watches: max_watches(max_watches_configured),
        });
        let worker = Worker {
            runtime: Arc::clone(&runtime),
            watcher: Mutex::new(watcher),
            audit,
            root: Mutex::default(),
            retry: Mutex::default(),
            warned: Mutex::default(),
            handler: template,
            over_budget: AtomicBool::new(false),
        };
        let name = format!("ck-{}", runtime.cache.path.display());
        let handle = std::thread::Builder::new().name(name).spawn(move || worker.run());
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
    fn degraded_reason(&self) -> Option<Degraded> {
        let set = self.degraded.lock().unwrap_or_else(|p| p.into_inner()).clone();
        set.or_else(|| self.stats.counters.overflowed_recently().then_some(Degraded::Overflow))
            .or_else(|| self.unrepaired_reason())
    }

    /// Entries left non-compliant, if any are.
    fn unrepaired_reason(&self) -> Option<Degraded> {
        let map = self.unrepaired.lock().unwrap_or_else(|p| p.into_inner());
        let (rel, cause) = map.iter().next()?;
        let first = crate::names::display(&self.cache.path, rel);
        Some(Degraded::Unrepaired { count: map.len(), first, cause: cause.clone() })
    }

    /// `rescan` and `sync` fail while entries stay non-compliant.
    fn require_repaired(&self) -> Result<(), String> {
        match self.unrepaired_reason() {
            Some(why) => Err(why.to_string()),
            None => Ok(()),
        }
    }

    /// A full reconcile, waited for; fails when the worker is gone or the cache could
    /// not be walked.
    async fn rescan(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if !self.queue.send(Work::Rescan { done: Some(tx) }) {
            return Err("the worker stopped".into());
        }
        rx.await.map_err(|_| "the worker stopped".to_owned())?;
        match self.scan_error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(why) => Err(format!("not reconciled: {why}")),
            None => self.require_repaired(),
        }
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
        let marker = OsString::from(token.to_string());
        let created = self.sentinel.as_ref().map_err(String::clone).and_then(|dir| dir.create_file(&marker));
        let result = match created {
            Ok(()) => rx.await.map_err(|_| "the worker stopped".to_owned()),
            Err(e) => Err(format!("cannot create the sync marker: {e}")),
        };
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
        if let Ok(dir) = &self.sentinel {
            let _ = dir.remove_file(&marker);
        }
        result
    }

    fn set_degraded(&self, reason: Option<Degraded>) {
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
        let last = self.stats.last_scan.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let isolation = self.isolation.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let r = &self.stats.repairs;
        let c = &self.stats.counters;
        let unrepaired = self.unrepaired.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let reason = self.degraded_reason().map(|d| d.to_string()).or_else(|| {
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
            entries: last.as_ref().map_or(0, |l| l.info.entries),
            repairs: Repairs {
                entries: r.changed.load(Relaxed),
                owner: r.owner.load(Relaxed),
                group: r.group.load(Relaxed),
                mode: r.mode.load(Relaxed),
            },
            reported: last.as_ref().map(|l| l.reported).unwrap_or_default(),
            errors: c.errors.load(Relaxed) + r.failed.load(Relaxed),
            last_full_scan: last.map(|l| l.info),
            full_scans: self.stats.full_scans.load(Relaxed),
            full_scan_ms_total: self.stats.full_scan_ms.load(Relaxed),
            queue_depth: self.queue.depth(),
            events_received: c.events.load(Relaxed),
            overflows: c.overflows.load(Relaxed),
            isolated: isolation.as_ref().map(|i| i.isolated),
            isolation: isolation.map(|i| i.description),
            owner_model: Some(self.cache.policy),
            watches: self.stats.watches.load(Relaxed),
            last_repair: self.stats.last_repair.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            queue_collapses: self.queue.collapses(),
            unrepaired: unrepaired.len() as u64,
            unrepaired_entries: unrepaired
                .iter()
                .take(protocol::UNREPAIRED_SHOWN)
                .map(|(rel, cause)| protocol::Unrepaired {
                    path: crate::names::display(&self.cache.path, rel),
                    cause: cause.clone(),
                })
                .collect(),
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
    watcher: Mutex<Option<watch::DirWatcher>>,
    audit: Option<Arc<AuditLog>>,
    /// The pinned root; every scan and check starts from it.
    root: Mutex<Option<Arc<Root>>>,
    /// Paths whose check failed for a reason that passes (no descriptor or memory left
    /// for a moment): checked again after [`RETRY_AFTER`], never dropped.
    retry: Mutex<Option<(Instant, Vec<Vec<u8>>)>>,
    /// Entries already warned about in this scan cycle: each is warned once per full
    /// scan, not once per event or per rescan.
    warned: Mutex<HashSet<Vec<u8>>>,
    /// What makes this cache's watcher, to start afresh.
    handler: Option<Handler>,
    /// `max_watches` was reached: the next full scan starts with a new watcher, so that
    /// the watches it adds are all the cache holds (notify never drops a watch itself).
    over_budget: AtomicBool,
}

impl Worker {
    fn run(self) {
        // However the worker ends, its queue refuses work from then on and drops the
        // waiters, so that no `sync` or `rescan` waits for a worker that is gone.
        struct Close(Queue);
        impl Drop for Close {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let queue = Close(self.runtime.queue.clone());
        let mut next_scan = Instant::now() + self.interval();
        loop {
            let retry_at = self.retry.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|r| r.0);
            let wake = retry_at.map_or(next_scan, |r| r.min(next_scan));
            let Some(inbox) = queue.0.take(wake) else {
                if Instant::now() < next_scan {
                    self.retry_now(&mut next_scan);
                } else {
                    self.full_scan();
                    next_scan = Instant::now() + self.interval();
                }
                continue;
            };
            let mut pending = Pending::default();
            if inbox.rescan {
                pending.rescan(None);
            }
            pending.waiters = inbox.rescan_waiters;
            let mut checks: Vec<(Vec<u8>, bool)> = inbox.checks.into_iter().collect();
            // Parents before children: a deep check of a directory may cover its children.
            checks.sort_unstable();
            for (rel, deep) in checks {
                pending.check(rel, deep);
            }
            self.finish(&mut pending, &mut next_scan);
            if !inbox.barriers.is_empty() {
                // `sync` covers a root that was deleted or replaced (`go clean -modcache`)
                // even if its events were missed: reconcile the new one.
                if self.root_changed() {
                    pending.rescan(None);
                    self.finish(&mut pending, &mut next_scan);
                }
                for tx in inbox.barriers {
                    let _ = tx.send(());
                }
            }
            if inbox.stop {
                return;
            }
        }
    }

    /// Does the pending work: a due full reconcile (which covers every check queued
    /// before it), else each check once.
    fn finish(&self, pending: &mut Pending, next_scan: &mut Instant) {
        let Pending { checks, rescan, waiters, .. } = std::mem::take(pending);
        if rescan {
            // A full scan covers every retry queued before it.
            *self.retry.lock().unwrap_or_else(|p| p.into_inner()) = None;
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

    /// Checks again what failed for a transient reason; an empty path stands for the
    /// whole cache.
    fn retry_now(&self, next_scan: &mut Instant) {
        let Some((_, paths)) = self.retry.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let mut pending = Pending::default();
        for rel in paths {
            if rel.is_empty() {
                pending.rescan(None);
            } else {
                pending.check(rel, true);
            }
        }
        self.finish(&mut pending, next_scan);
    }

    /// Schedules `rel` (empty: the whole cache) to be checked again soon.
    fn defer(&self, rel: Vec<u8>) {
        let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
        let (_, paths) = retry.get_or_insert_with(|| (Instant::now() + RETRY_AFTER, Vec::new()));
        if !paths.contains(&rel) {
            paths.push(rel);
        }
    }

    /// Records what stays non-compliant after a walk: `scope` is the path a check
    /// covered (and whether it went deep), `None` for a full scan, which replaces all.
    fn record(&self, scope: Option<(&[u8], bool)>, notes: &[crate::walk::Note]) {
        let mut map = self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner());
        match scope {
            None => map.clear(),
            Some((rel, deep)) => map.retain(|k, _| {
                let below = rel.is_empty() || (k.starts_with(rel) && k.get(rel.len()) == Some(&b'/'));
                !(k.as_slice() == rel || (deep && below))
            }),
        }
        for note in notes {
            if let crate::walk::Finding::Failed(f) = &note.finding {
                if transient(f.errno) {
                    self.defer(note.rel.clone());
                }
                map.insert(note.rel.clone(), f.to_string());
            }
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
    /// the kernel's watch limit or `max_watches`, the rest of the walk does not ask
    /// again; any other refusal (a path longer than PATH_MAX) is counted, not hidden.
    fn watch_hook<'a>(&'a self, trouble: &'a WatchTrouble) -> impl Fn(&[u8], BorrowedFd<'_>) + Sync + 'a {
        move |rel: &[u8], dir: BorrowedFd<'_>| {
            if trouble.limit.load(Relaxed) || trouble.budget.load(Relaxed) {
                return;
            }
            let guard = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
            let Some(watcher) = guard.as_ref() else { return };
            let root = &self.runtime.cache.path;
            if watcher.watches() as u64 >= self.runtime.max_watches {
                self.over_budget.store(true, Relaxed);
                if !trouble.budget.swap(true, Relaxed) {
                    tracing::warn!(root = %root.display(), "{}", Degraded::WatchBudget { max: self.runtime.max_watches });
                }
                return;
            }
            match watcher.watch_dir(rel, dir) {
                Ok(()) => {
                    self.runtime.stats.watches.fetch_add(1, Relaxed);
                }
                Err(watch::WatchError::Limit) => {
                    if !trouble.limit.swap(true, Relaxed) {
                        tracing::warn!(root = %root.display(), "{}", watch::WATCH_LIMIT_REASON);
                    }
                }
                // Removed since it was listed: nothing to watch.
                Err(watch::WatchError::Gone) => {}
                Err(e) => {
                    let path = crate::names::display(root, rel);
                    tracing::debug!(path = %path, "cannot watch: {e}");
                    trouble.unwatched.fetch_add(1, Relaxed);
                    let mut first = trouble.first.lock().unwrap_or_else(|p| p.into_inner());
                    if first.is_none() {
                        *first = Some(format!("{path}: {e}"));
                    }
                }
            }
        }
    }

    /// What a walk left as it is or could not change: each entry once per scan cycle
    /// (a full scan starts a new one), so that a symlink or an entry that cannot be
    /// fixed does not log a line per event or per rescan. A full scan logs the first
    /// few and counts the rest; `status` lists them.
    fn log_findings(&self, notes: &[crate::walk::Note], full: bool) {
        let root = &self.runtime.cache.path;
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if full {
            warned.clear();
        }
        let mut logged = 0;
        let mut more = 0;
        for note in notes {
            let finding = &note.finding;
            if matches!(finding, crate::walk::Finding::Diverges(_)) || !warned.insert(note.rel.clone()) {
                continue;
            }
            if full && logged >= FINDINGS_LOGGED {
                more += 1;
                continue;
            }
            let path = crate::names::display(root, &note.rel);
            match finding {
                // A full scan counts these in its summary and in `status`.
                crate::walk::Finding::Reported(_) if full => continue,
                crate::walk::Finding::Reported(r) => tracing::warn!(path = %path, "left as it is: {}", r.explain()),
                crate::walk::Finding::Failed(f) => tracing::error!(path = %path, "{f}"),
                crate::walk::Finding::Diverges(_) => continue,
            }
            logged += 1;
        }
        if more > 0 {
            tracing::error!(
                root = %root.display(),
                "{more} more entries could not be checked or repaired; `cachekeeperctl status --json` lists them"
            );
        }
    }

    /// Records each repair as the cache's latest (for `status`) and in
    /// `daemon.audit_log`, when one is configured.
    fn audit_hook(&self) -> Box<crate::walk::AuditHook<'_>> {
        let root = &self.runtime.cache.path;
        Box::new(move |rel: &[u8], d: &crate::model::Divergence| {
            let repair = protocol::LastRepair {
                at: protocol::rfc3339(SystemTime::now()),
                path: crate::names::display(root, rel),
                change: d.to_string(),
            };
            *self.runtime.stats.last_repair.lock().unwrap_or_else(|p| p.into_inner()) = Some(repair);
            if let Some(log) = &self.audit {
                log.record(root, rel, d);
            }
        })
    }

    /// The pinned root, resolved anew (with every rule of [`root`]) when there is none yet
    /// or the pinned one was removed: Go's `go clean -modcache` deletes the root, and the
    /// next `go` command makes a new one. Never re-resolved for a scan otherwise.
    fn root(&self) -> Result<Arc<Root>, String> {
        let mut slot = self.root.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pinned) = slot.as_ref().filter(|r| !r.removed()) {
            return Ok(Arc::clone(pinned));
        }
        *slot = None;
        let cache = &self.runtime.cache;
        let own = root::Ownership { parents: None, root: (cache.policy.owner, cache.policy.group), root_mode: 0o700 };
        let unusable = |e: root::RootError| format!("{}: {e}", watch::UNWALKABLE_REASON);
        root::create(&cache.path, &Origin::Admin, own).map_err(unusable)?;
        let pinned = Arc::new(root::resolve(&cache.path, &Origin::Admin, cache.force).map_err(unusable)?);
        *slot = Some(Arc::clone(&pinned));
        Ok(pinned)
    }

    /// Replaces the watcher by a new one holding only its fixed watches; the full scan
    /// that follows adds the cache's, up to `max_watches`.
    fn renew_watcher(&self) {
        let Some(handler) = &self.handler else { return };
        match handler.clone().start() {
            Ok(w) => {
                *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
                // A `sync` marker created while the watchers changed hands may have no
                // event: its barrier follows this scan, which covers what came before.
                handler.release_waiters();
            }
            Err(e) => tracing::warn!(root = %self.runtime.cache.path.display(), "cannot renew the watcher: {e}"),
        }
    }

    /// The pinned root is gone or its path leads to another directory now (Go's `go
    /// clean -modcache` deletes it and the next `go` command makes a new one): forget
    /// it, so that the next scan resolves the path again with every rule of [`root`].
    fn root_changed(&self) -> bool {
        let mut slot = self.root.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pinned) = slot.as_ref() else { return true };
        let replaced = match std::fs::metadata(&self.runtime.cache.path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                m.ino() != pinned.stat().ino
            }
            Err(_) => true,
        };
        if replaced || pinned.removed() {
            *slot = None;
            return true;
        }
        false
    }

    /// Whether this cache's files may be changed, as of now (see [`root::hard_link_guard`]);
    /// recorded for `status`.
    fn guard(&self, pinned: &Root) -> Action {
        let isolation = root::isolation(pinned);
        let guard = root::hard_link_guard(&isolation, root::protected_hardlinks(), pinned.path());
        let action = if guard.is_ok() { Action::Repair } else { Action::Check };
        let mut description = isolation.describe(pinned.path());
        // systemd's sandbox makes every ReadWritePaths= directory a bind mount in the
        // unit's own namespace: there, "a mount of its own" says nothing about the host.
        if isolation.isolated() && std::env::var_os("INVOCATION_ID").is_some() {
            description += " (as the service's own mount namespace sees it; `cachekeeperctl doctor` on the host \
                            checks what its users see)";
        }
        *self.runtime.isolation.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(IsolationState { isolated: isolation.isolated(), description, refused: guard.err().map(|e| e.0) });
        action
    }

    fn check(&self, rel: &[u8], deep: bool) {
        // An event on the root itself comes through its parent's watch: it may have been
        // deleted and made anew, which only a full reconcile of the new one covers.
        if rel.is_empty() && self.root_changed() {
            return self.full_scan();
        }
        let tally = Tally::default();
        let trouble = WatchTrouble::default();
        let hook = self.watch_hook(&trouble);
        let cache = &self.runtime.cache;
        let audit = self.audit_hook();
        let pinned = match self.root() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}");
                self.runtime.stats.counters.errors.fetch_add(1, Relaxed);
                // Not dropped: a full reconcile follows, which says what is wrong.
                self.defer(Vec::new());
                return;
            }
        };
        let refused =
            self.runtime.isolation.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|i| i.refused.is_some());
        let action = if refused == Some(false) { Action::Repair } else { self.guard(&pinned) };
        let scan = Scan {
            cache,
            root: &pinned,
            action,
            tally: &tally,
            watch: Some(&hook),
            audit: Some(&*audit),
            log_repairs: true,
        };
        match scan.path(rel, deep) {
            Ok(notes) => {
                self.log_findings(&notes, false);
                self.record(Some((rel, deep)), &notes);
            }
            Err(e) => {
                tracing::warn!(root = %cache.path.display(), "cannot open the cache root: {}", sys::describe(&e));
                self.runtime.stats.counters.errors.fetch_add(1, Relaxed);
                // Out of descriptors or memory for a moment: the check is done later,
                // never dropped; `status` shows it as unrepaired meanwhile.
                let cause = format!("cannot open the cache root: {}", sys::describe(&e));
                self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner()).insert(rel.to_vec(), cause);
                self.defer(rel.to_vec());
            }
        }
        if let Some(reason) = trouble.reason(self.runtime.max_watches) {
            self.runtime.set_degraded(Some(reason));
        }
        self.runtime.stats.repairs.absorb(&tally);
    }

    fn full_scan(&self) {
        let cache = &self.runtime.cache;
        // Every watch is added again as the scan lists each directory.
        self.runtime.stats.watches.store(0, Relaxed);
        if self.over_budget.swap(false, Relaxed) {
            self.renew_watcher();
        }
        let tally = Tally::default();
        let trouble = WatchTrouble::default();
        let hook = self.watch_hook(&trouble);
        let started = Instant::now();
        let watch: Option<&crate::walk::WatchHook<'_>> = if self.runtime.polled { None } else { Some(&hook) };
        let audit = self.audit_hook();
        let mut refused = None;
        let scanned = self.root().and_then(|pinned| {
            let action = self.guard(&pinned);
            if action == Action::Check {
                refused = self
                    .runtime
                    .isolation
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .and_then(|i| i.refused.clone());
            }
            let scan =
                Scan { cache, root: &pinned, action, tally: &tally, watch, audit: Some(&*audit), log_repairs: false };
            scan.all().map_err(|e| {
                if transient(e.raw_os_error()) {
                    self.defer(Vec::new());
                }
                format!("{}: {}", watch::UNWALKABLE_REASON, sys::describe(&e))
            })
        });
        // Under systemd the usual cause is a cache the unit's sandbox hides: say so, and
        // give the drop-in, instead of leaving people to look for a read-only disk.
        let failure = scanned.as_ref().err().map(|why| match crate::sandbox::hidden(&cache.path) {
            Some(advice) => format!("{why}; {advice}"),
            None => why.clone(),
        });
        if let Ok(notes) = &scanned {
            self.log_findings(notes, true);
            self.record(None, notes);
        }
        if let Some(why) = &failure {
            tracing::error!(root = %cache.path.display(), "full scan failed: {why}");
            self.runtime.stats.counters.errors.fetch_add(1, Relaxed);
        }
        *self.runtime.scan_error.lock().unwrap_or_else(|p| p.into_inner()) = failure.clone();
        let took = started.elapsed();
        let reported = Reported {
            symlink: tally.reported(Reason::Symlink),
            hard_link: tally.reported(Reason::HardLink),
            special: tally.reported(Reason::Special),
            other_mount: tally.reported(Reason::OtherMount),
        };
        let entries = tally.entries.load(Relaxed);
        let finished_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let info = ScanInfo {
            finished_at,
            duration_ms: took.as_millis() as u64,
            entries,
            finished: protocol::rfc3339(SystemTime::now()),
            repaired: tally.changed.load(Relaxed),
        };
        let duration_ms = info.duration_ms;
        *self.runtime.stats.last_scan.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastScan { info, reported });
        self.runtime.stats.full_scans.fetch_add(1, Relaxed);
        self.runtime.stats.full_scan_ms.fetch_add(duration_ms, Relaxed);
        self.runtime.stats.repairs.absorb(&tally);
        // A full scan re-adds every watch, so after an overflow the cache is whole again;
        // what keeps it degraded is a root that cannot be opened, a watch limit that still
        // bites, or no inotify at all.
        let degraded = match &scanned {
            Err(_) => failure.map(Degraded::Unwalkable),
            Ok(_) if refused.is_some() => refused.map(Degraded::Refused),
            Ok(_) if trouble.reason(self.runtime.max_watches).is_some() => trouble.reason(self.runtime.max_watches),
            Ok(_) if !self.runtime.polled && !self.runtime.watched => Some(Degraded::NoInotify),
            Ok(_) => None,
        };
        self.runtime.set_degraded(degraded);
        self.runtime.scanned.store(true, Relaxed);
        sys::trim_memory();
        let left: Vec<String> = Reason::ALL
            .iter()
            .filter(|&&r| tally.reported(r) > 0)
            .map(|&r| format!("{} {}(s)", tally.reported(r), r.name()))
            .collect();
        let left = if left.is_empty() { String::new() } else { format!(", left as they are: {}", left.join(", ")) };
        let unrepaired = self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner()).len();
        tracing::info!(
            root = %cache.path.display(),
            "full scan: {entries} entries in {:.2}s, {} repaired, {unrepaired} unrepaired{left}",
            took.as_secs_f64(),
            tally.changed.load(Relaxed)
        );
    }
}

/// An error that passes: no descriptor or memory left for a moment. What failed for it
/// is tried again rather than dropped.
fn transient(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EAGAIN))
}

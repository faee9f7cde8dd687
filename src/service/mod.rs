//! The service (SPEC §4): one worker thread per cache, the one owner of everything the
//! cache keeps (counts, watches, root, unrepaired entries, `sync` waiters), fed by that
//! cache's inotify reader through one queue; and a tokio runtime for the control
//! socket, signals and systemd notifications, which reaches a worker only by messages
//! and reads only the view it publishes. Service-wide state is two registries behind a
//! lock each: what runs (the caches, the last reload) and who is connected.
//!
//! Watches come first, then scans: every directory gets its watch before it is listed,
//! on the first full scan and whenever one appears, so nothing created meanwhile is
//! missed. Lost events (overflow, watch limit, network filesystems) fall back to full
//! reconciles; a periodic one (`full_rescan`) is the last safety net.
//!
//! Here: startup, signals, timers and the side files. `watch` is the queue and the
//! mapping of events, `worker` the thread that owns a cache, `cache` the handle the
//! control socket holds and the view it reads, `control` the socket (caps, deadlines,
//! routing). It uses the engine for every change and `sys` for the system calls; the
//! clients reach it through `protocol` only.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UnixListener;
use tokio::sync::oneshot;

use crate::engine::root::{self, Origin};
use crate::engine::sidefile::{self, SafeDir, SideFileError};
use crate::policy::config::{CacheConfig, Config, DaemonConfig};
use crate::protocol::{self, CacheState, Status};
use crate::sys;
use audit::AuditLog;
use worker::Reconciled;

pub(crate) mod audit;
mod cache;
mod control;
mod unrepaired;
mod view;
pub(crate) mod watch;
mod worker;

use cache::CacheRuntime;
use control::{accept_loop, bind_socket, Paths};

/// How often a cache is fully reconciled when events cannot be trusted.
const DEGRADED_RESCAN: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How soon a check that failed for a transient reason (EMFILE, ENFILE, ENOMEM) is
/// tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest wait before unrepaired entries are tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Bytes of names remembered as warned about in one scan cycle.
const MAX_WARNED_BYTES: usize = 1 << 20;
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

/// Mount ids of the bind mounts this service made at start, which end with it.
static OWN_MOUNTS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::policy::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
}

/// Why the service could not start: each names the configuration key or the path, and
/// the cause; nothing has been changed in any cache.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartupError {
    /// A side file or its directory, by the configuration key that names it.
    #[error("{key}: {source}")]
    SideFile {
        key: &'static str,
        #[source]
        source: SideFileError,
    },
    #[error("another cachekeeper is already running at {}", .0.display())]
    AlreadyRunning(PathBuf),
    #[error("refusing to start: {} is {kind}, not a socket; cachekeeper never deletes it: move it away", .path.display())]
    NotASocket { path: PathBuf, kind: sys::Kind },
    #[error(transparent)]
    Io(#[from] crate::error::IoPathError),
    /// The capabilities it needs, or dropping the rest.
    #[error(transparent)]
    Privilege(#[from] crate::privilege::PrivilegeError),
    /// Something of the process itself: signals, threads, the runtime.
    #[error("cannot {action}: {source}")]
    Process {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StartupError {
    fn process(action: &'static str) -> impl FnOnce(std::io::Error) -> StartupError {
        move |source| StartupError::Process { action, source }
    }

    fn side(key: &'static str) -> impl Fn(SideFileError) -> StartupError {
        move |source| StartupError::SideFile { key, source }
    }
}

/// Runs the service until SIGTERM or SIGINT. Configuration errors come back before
/// anything is started.
pub(crate) fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = Config::load(config_path)?;
    // `status` names it absolute: the service may have been started from anywhere.
    let config_path = &std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    crate::logging::init_service(config.daemon.log_format);
    raise_nofile_limit();
    sys::few_arenas();
    // A stop asked for during startup waits until the handlers exist, so that it still
    // removes the socket; every thread started meanwhile keeps them blocked.
    stop_signals().thread_block().map_err(|e| StartupError::process("block signals")(e.into()))?;
    // Everything that needs root's full power happens before the capabilities go, and
    // every side file is checked before the first cache is touched: binding the socket,
    // the sentinel directory, the audit log, then missing cache roots and isolation.
    crate::privilege::check().map_err(StartupError::from)?;
    let (listener, side) = SideFiles::open(&config.daemon)?;
    let mounts: Vec<_> = config.caches.iter().filter_map(prepare_root).collect();
    let _ = OWN_MOUNTS.set(mounts.iter().map(|m| m.1).collect());
    if let Err(e) = sys::unmount_when_gone(mounts) {
        side.remove();
        return Err(StartupError::process("start the process that undoes its mounts on exit")(e).into());
    }
    // Before any thread exists: capabilities are per thread, and threads started
    // later (tokio, rayon, inotify readers) inherit the reduced set.
    if let Err(e) = crate::privilege::reduce(config.daemon.user) {
        side.remove();
        return Err(StartupError::from(e).into());
    }
    // The metrics textfile is rewritten by the service's user, with no power over file
    // permissions left: a directory it cannot write is a start-up error, not a warning
    // every 15 s under a healthy status.
    if let Some((dir, name)) = &side.metrics {
        if let Err(e) = dir.replace(name, b"# cachekeeper is starting\n", 0o644) {
            side.remove();
            return Err(StartupError::side("daemon.metrics_textfile")(e).into());
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            side.remove();
            return Err(StartupError::process("start the runtime")(e).into());
        }
    };
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
/// each reached through a directory resolved and pinned by [`crate::engine::sidefile`].
struct SideFiles {
    socket_dir: SafeDir,
    socket_name: OsString,
    sentinel_root: SafeDir,
    audit: Option<Arc<AuditLog>>,
    metrics: Option<(SafeDir, OsString)>,
}

impl SideFiles {
    fn open(daemon: &DaemonConfig) -> Result<(std::os::unix::net::UnixListener, SideFiles), StartupError> {
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
                return Err(StartupError::side("daemon.socket")(e));
            }
        };
        let audit = daemon
            .audit_log
            .as_deref()
            .map(|p| AuditLog::open(p, &trusted).map_err(StartupError::side("daemon.audit_log")))
            .transpose();
        let metrics = daemon
            .metrics_textfile
            .as_deref()
            .map(|p| {
                let (dir, name) = sidefile::split(p)?;
                let dir = SafeDir::open(dir)?;
                // Rewritten by rename every 15 s: whoever else could write the directory
                // could swap the name, as in the socket's and the audit log's.
                dir.require_private(&trusted).map_err(|e| e.of_file(p))?;
                dir.require_plain_or_absent(name)?;
                Ok((dir, name.to_owned()))
            })
            .transpose()
            .map_err(StartupError::side("daemon.metrics_textfile"));
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
/// namespace, such as systemd's sandbox, would protect no one outside it). Returns the
/// mount it made (path and mount id), which must end with the service.
fn prepare_root(cache: &CacheConfig) -> Option<(std::ffi::CString, u64)> {
    let own = root::Ownership::for_cache(&cache.policy, None);
    if let Err(e) = root::create(&cache.path, &Origin::Admin, own) {
        tracing::error!("{e}");
        return None;
    }
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    // Where PID 1's namespace cannot be read (a sandbox without CAP_SYS_PTRACE over it),
    // the namespace of whoever started the service stands for it (`unshare -m`); where
    // neither can, the mount is tried: a service without the power to mount fails cleanly.
    let host = std::fs::read_link("/proc/1/ns/mnt")
        .or_else(|_| std::fs::read_link(format!("/proc/{}/ns/mnt", nix::unistd::getppid())));
    let private_namespace = match (std::fs::read_link("/proc/self/ns/mnt"), host) {
        (Ok(mine), Ok(host)) => mine != host,
        _ => false,
    };
    let pinned = match root::resolve(&cache.path, &Origin::Admin, cache.force) {
        Ok(pinned) => pinned,
        Err(e) => {
            tracing::error!("{e}");
            return None;
        }
    };
    if !root::isolation(&pinned).isolated() && private_namespace {
        tracing::info!(
            root = %cache.path.display(),
            "not isolating: the service runs in a mount namespace of its own; use the shipped mount unit or fstab"
        );
        return None;
    }
    match root::isolate(&pinned) {
        Ok(Some(id)) => {
            tracing::info!(
                root = %pinned.path().display(),
                "isolated: bind-mounted {} on itself until the service stops",
                pinned.path().display()
            );
            let path = std::ffi::CString::new(pinned.path().as_os_str().as_encoded_bytes()).ok()?;
            Some((path, id))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// Everything the control socket and the signal handlers reach.
struct Service {
    config_path: PathBuf,
    daemon: DaemonConfig,
    side: SideFiles,
    started: Instant,
    started_at: SystemTime,
    next_token: AtomicU64,
    /// The registry of what runs: the caches and what the service says of itself.
    running: Mutex<Running>,
    /// The registry of who is connected.
    peers: Mutex<Peers>,
    /// Reloads go to one task, which does them one at a time, so that no runtime is
    /// left running.
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
}

/// What runs now, replaced as a whole by a reload.
#[derive(Default)]
struct Running {
    caches: Arc<Vec<Arc<CacheRuntime>>>,
    last_reload: Option<protocol::ReloadResult>,
    /// The configuration file as the running configuration was read from it.
    config_text: Option<Vec<u8>>,
    /// What keeps the service itself from its work (a side file it cannot write).
    trouble: Option<String>,
}

/// Open control connections, in all and by peer uid, and the peers (uid) with a
/// `reload` or `rescan` under way: one at a time each.
#[derive(Default)]
struct Peers {
    connections: usize,
    by_uid: HashMap<u32, usize>,
    busy: HashSet<u32>,
}

/// A reload (by an administrator or not), and where its outcome goes.
type ReloadRequest = (bool, oneshot::Sender<Result<Paths, crate::policy::config::ConfigError>>);

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
            return Err(StartupError::process("listen on the control socket")(e).into());
        }
    };
    let config_text = std::fs::read(&config_path).ok();
    let (reloads, mut reload_requests) = tokio::sync::mpsc::channel::<ReloadRequest>(8);
    let service = Arc::new(Service {
        config_path,
        daemon: config.daemon.clone(),
        side,
        started: Instant::now(),
        started_at: SystemTime::now(),
        next_token: AtomicU64::new(1),
        running: Mutex::new(Running { config_text, ..Running::default() }),
        peers: Mutex::default(),
        reloads,
    });
    {
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            while let Some((admin, outcome)) = reload_requests.recv().await {
                let _ = outcome.send(service.reload_now(admin).await);
            }
        });
    }
    // Caches first: a `sync` answered before they exist would settle on nothing.
    for cache in config.caches.iter().filter(|c| c.policy.owner.is_some() && crate::policy::config::is_build_cache(c)) {
        tracing::warn!(root = %cache.path.display(), "{}", crate::policy::config::GOCACHE_OWNER);
    }
    let started = service.start_caches(&config.caches, HashMap::new());
    tracing::info!("listening for cachekeeperctl on {}", service.daemon.socket.display());
    let accept = tokio::spawn(accept_loop(Arc::clone(&service), listener));
    let result = run_until_stopped(&service, started).await;

    accept.abort();
    service.stop_caches().await;
    service.side.remove();
    tracing::info!("stopped");
    result
}

async fn run_until_stopped(
    service: &Arc<Service>,
    started: Vec<oneshot::Receiver<Reconciled>>,
) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |kind| signal(kind).map_err(StartupError::process("handle signals"));
    let (mut hup, mut term, mut int) =
        (sig(SignalKind::hangup())?, sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    // This is the main thread (block_on): a stop that came during startup arrives now.
    stop_signals().thread_unblock().map_err(|e| StartupError::process("unblock signals")(e.into()))?;

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
                let line = status_line(&service.status_off_runtime().await);
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
                let text = crate::metrics::render(&service.status_off_runtime().await);
                let written = dir.replace(name, text.as_bytes(), 0o644);
                let failed = written.err().map(|e| format!("daemon.metrics_textfile: {e}"));
                let before = std::mem::replace(&mut service.running().trouble, failed.clone());
                // Said once when it starts failing, and once when it is fixed; `status`
                // shows it meanwhile.
                match (before, &failed) {
                    (None, Some(e)) => tracing::warn!("{e}"),
                    (Some(_), None) => tracing::info!("daemon.metrics_textfile is written again"),
                    _ => {}
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
                let _ = service.reload(true).await;
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

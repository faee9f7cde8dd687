//! The control socket: binding it safely, accepting within caps and deadlines, and
//! answering each request (status, sync, rescan, reload) by routing it to the caches.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::engine::sidefile::{self, SafeDir};
use crate::policy::config::{CacheConfig, Config, DaemonConfig};
use crate::protocol::{self, CacheState, CacheStatus, Request, Response, Status};
use crate::sys;

use super::cache::{CacheRuntime, Start, Unsettled};
use super::view::Kept;
use super::worker::Reconciled;
use super::{Peers, Running, Service, StartupError, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID, REQUEST_DEADLINE};

/// Binds the control socket in its directory, resolved safely and writable only by root
/// and the service's user: refuses to start when another service answers there or when
/// something other than a socket has the name, removes a stale socket, and limits access
/// to root and `socket_group`.
pub(super) fn bind_socket(
    daemon: &DaemonConfig,
    trusted: &[u32],
) -> Result<(std::os::unix::net::UnixListener, SafeDir, OsString), StartupError> {
    let key = StartupError::side("daemon.socket");
    let (dir_path, name) = sidefile::split(&daemon.socket).map_err(&key)?;
    // A directory made for the socket belongs to the service's user, who must be able to
    // remove the socket on exit; members must reach the socket inside it.
    let dir = SafeDir::create(dir_path, 0o755, daemon.user).map_err(&key)?;
    dir.require_private(trusted).map_err(&key)?;
    if let Some((uid, _)) = daemon.user {
        let writable = sys::stat_fd(dir.fd()).is_ok_and(|st| st.uid == uid && st.mode & 0o200 != 0);
        if !writable {
            tracing::warn!(
                "{} is not owned and writable by uid {uid} (daemon.user): the socket cannot be removed on exit",
                dir.path().display()
            );
        }
    }
    let at = dir.proc_path(name);
    // Only a socket no service answers is the service's own leftover to remove; anything
    // else at that name is someone's file, never deleted (SPEC §6, side files).
    match dir.kind(name).map_err(&key)? {
        None => {}
        Some(sys::Kind::Socket) => {
            if std::os::unix::net::UnixStream::connect(&at).is_ok() {
                return Err(StartupError::AlreadyRunning(daemon.socket.clone()));
            }
            dir.remove_file(name).map_err(&key)?;
        }
        Some(kind) => return Err(StartupError::NotASocket { path: daemon.socket.clone(), kind }),
    }
    let io = |action| move |e| StartupError::from(crate::error::IoPathError::new(action, &daemon.socket, e));
    let listener = std::os::unix::net::UnixListener::bind(&at).map_err(io("bind the control socket"))?;
    let mode = if daemon.socket_group.is_some() { 0o660 } else { 0o600 };
    let access = dir
        .set_socket_access(name, daemon.socket_group, mode)
        .map_err(&key)
        .and_then(|()| listener.set_nonblocking(true).map_err(io("set up the control socket")));
    if let Err(e) = access {
        let _ = dir.remove_file(name);
        return Err(e);
    }
    Ok((listener, dir, name.to_owned()))
}

/// Why a request is not answered as asked: each says so in one line to the peer.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("cannot read the peer's credentials: {0}")]
    NoCredentials(std::io::Error),
    #[error("uid {uid} may not use cachekeeper ({command}): only root and members of group {group} (daemon.socket_group) may")]
    NotMember { uid: u32, command: &'static str, group: u32 },
    #[error("uid {0} may not use cachekeeper: only root may (set daemon.socket_group to allow a group)")]
    RootOnly(u32),
    #[error("uid {0} already has a reload or rescan under way; run it again when that one is done")]
    Busy(u32),
    #[error("bad request: {0}")]
    Malformed(serde_json::Error),
    #[error("cannot read the request: {0}")]
    Unreadable(std::io::Error),
    #[error("no request within 10 s")]
    Silent,
}

/// Why a reload was not done.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unreloaded {
    #[error(transparent)]
    Config(crate::policy::config::ConfigError),
    #[error("the service is stopping")]
    Stopping,
}

/// The cache roots a reload started, as `status` and the log show them.
pub(super) type Paths = Vec<String>;

/// A cache whose `sync` or `rescan` could not be done, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", .path.display())]
pub(super) struct CacheUnsettled {
    pub(super) path: PathBuf,
    pub(super) reason: Unsettled,
}

pub(super) async fn accept_loop(service: Arc<Service>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Over a cap the connection is closed unanswered: the client sees the
                // service busy, and the service keeps its descriptors for the caches.
                let Some(slot) = ConnectionSlot::take(&service, &stream) else { continue };
                tokio::spawn(async move {
                    Service::connection(&slot.service, stream).await;
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
pub(super) struct ConnectionSlot {
    pub(super) service: Arc<Service>,
    pub(super) uid: Option<u32>,
}

impl ConnectionSlot {
    pub(super) fn take(service: &Arc<Service>, stream: &UnixStream) -> Option<ConnectionSlot> {
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let trusted = |uid: u32| uid == 0 || uid == nix::unistd::geteuid().as_raw();
        let mut peers = service.peers();
        if peers.connections >= MAX_CONNECTIONS {
            return None;
        }
        let counted = uid.filter(|&u| !trusted(u));
        if let Some(u) = counted {
            let n = peers.by_uid.entry(u).or_default();
            if *n >= MAX_CONNECTIONS_PER_UID {
                return None;
            }
            *n += 1;
        }
        peers.connections += 1;
        Some(ConnectionSlot { service: Arc::clone(service), uid: counted })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut peers = self.service.peers();
        peers.connections -= 1;
        if let Some(u) = self.uid {
            if let Some(n) = peers.by_uid.get_mut(&u) {
                *n -= 1;
                if *n == 0 {
                    peers.by_uid.remove(&u);
                }
            }
        }
    }
}

/// A peer's `reload` or `rescan` under way; released on drop.
pub(super) struct BusyPeer<'a> {
    pub(super) service: &'a Service,
    pub(super) uid: u32,
}

impl Drop for BusyPeer<'_> {
    fn drop(&mut self) {
        self.service.peers().busy.remove(&self.uid);
    }
}

impl Service {
    /// One `reload` or `rescan` at a time per peer (root and the service's user aside):
    /// each restarts or walks whole caches, and a member must not queue hundreds.
    pub(super) fn one_at_a_time(&self, uid: Option<u32>) -> Result<Option<BusyPeer<'_>>, Refused> {
        let Some(uid) = uid.filter(|&u| u != 0 && u != nix::unistd::geteuid().as_raw()) else { return Ok(None) };
        if !self.peers().busy.insert(uid) {
            return Err(Refused::Busy(uid));
        }
        Ok(Some(BusyPeer { service: self, uid }))
    }

    /// The registry of what runs. Held for a moment only, never across an `await`;
    /// nothing that panics runs under it, so a poisoned lock still holds a whole value.
    pub(super) fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry of who is connected, as [`Service::running`] is held.
    pub(super) fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn snapshot(&self) -> Arc<Vec<Arc<CacheRuntime>>> {
        Arc::clone(&self.running().caches)
    }

    /// Stops every cache's worker, all at once, and returns what each kept, by path.
    pub(super) async fn stop_caches(&self) -> HashMap<PathBuf, Kept> {
        let caches = self.snapshot();
        let stopping = caches.iter().map(|c| async move { (c.cache.path.clone(), c.stop().await) });
        let mut kept = HashMap::new();
        for stop in stopping.collect::<Vec<_>>() {
            let (path, k) = stop.await;
            kept.insert(path, k);
        }
        kept
    }

    /// Starts a runtime per cache (keeping the counters of caches that were already
    /// running at the same path) and returns a receiver per first full scan.
    pub(super) fn start_caches(
        &self,
        caches: &[CacheConfig],
        mut previous: HashMap<PathBuf, Kept>,
    ) -> Vec<oneshot::Receiver<Reconciled>> {
        let mut runtimes = Vec::new();
        let mut started = Vec::new();
        for (i, cache) in caches.iter().enumerate() {
            let sentinel =
                self.side.sentinel_root.fresh_subdir(OsStr::new(&i.to_string()), 0o700, None).map_err(Arc::new);
            let (runtime, rx) = CacheRuntime::start(Start {
                cache: cache.clone(),
                sentinel,
                // A cache that was kept before a reload is not "starting" again: its tree
                // was compliant a moment ago, and a readiness probe must not flap.
                kept: previous.remove(&cache.path),
                full_rescan: self.daemon.full_rescan,
                audit: self.side.audit.clone(),
                max_pending: self.daemon.max_pending,
                max_watches: self.daemon.max_watches,
            });
            runtimes.push(runtime);
            started.push(rx);
        }
        self.running().caches = Arc::new(runtimes);
        started
    }

    /// Re-reads the configuration (serialised; the outcome is kept for `status`). A
    /// refusal is logged as an error whichever way the reload was asked for (SIGHUP, or
    /// `cachekeeperctl reload`, the unit's ExecReload=).
    pub(super) async fn reload(&self, admin: bool) -> Result<Paths, Unreloaded> {
        let (tx, rx) = oneshot::channel();
        if self.reloads.send((admin, tx)).await.is_err() {
            return Err(Unreloaded::Stopping);
        }
        rx.await.map_err(|_| Unreloaded::Stopping)?.map_err(Unreloaded::Config)
    }

    /// A reload, by the one task that does them.
    pub(super) async fn reload_now(&self, admin: bool) -> Result<Paths, crate::policy::config::ConfigError> {
        let text = std::fs::read(&self.config_path).ok();
        let result = self.replace_runtimes(admin).await;
        let message = match &result {
            Ok(paths) => paths.join(", "),
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                e.to_string()
            }
        };
        let outcome = protocol::ReloadResult { at: protocol::rfc3339(SystemTime::now()), ok: result.is_ok(), message };
        let mut running = self.running();
        if result.is_ok() {
            running.config_text = text;
        }
        running.last_reload = Some(outcome);
        result
    }

    /// With `admin`, the roots the old workers refused as replaced are accepted.
    async fn replace_runtimes(&self, admin: bool) -> Result<Paths, crate::policy::config::ConfigError> {
        let config = Config::load(&self.config_path)?;
        if config.daemon.socket != self.daemon.socket || config.daemon.socket_group != self.daemon.socket_group {
            tracing::warn!("daemon.socket and daemon.socket_group take effect on restart");
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
        let mut previous = self.stop_caches().await;
        if admin {
            previous.values_mut().for_each(|k| k.root_memory.accept_any());
        }
        let _ = self.start_caches(&config.caches, previous);
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let paths: Paths = config.caches.iter().map(|c| c.path.display().to_string()).collect();
        tracing::info!("configuration reloaded: {}", paths.join(", "));
        Ok(paths)
    }

    pub(super) async fn connection(service: &Arc<Service>, mut stream: UnixStream) {
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let response = match service.read_request(&mut stream).await {
            Ok(request) => match service.authorize(&stream, &request).await {
                Ok(()) => service.answer(request, uid).await,
                Err(refused) => Response::Denied { message: refused.to_string() },
            },
            Err(refused) => Response::Failed { message: refused.to_string() },
        };
        let mut line = serde_json::to_vec(&response).unwrap_or_default();
        line.push(b'\n');
        // A peer that does not read its answer does not keep the connection.
        let _ = tokio::time::timeout(REQUEST_DEADLINE, stream.write_all(&line)).await;
    }

    pub(super) async fn read_request(&self, stream: &mut UnixStream) -> Result<Request, Refused> {
        let mut line = String::new();
        let mut reader = BufReader::new(stream).take(protocol::MAX_REQUEST as u64);
        match tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)).await {
            Ok(Ok(_)) => serde_json::from_str(&line).map_err(Refused::Malformed),
            Ok(Err(e)) => Err(Refused::Unreadable(e)),
            Err(_) => Err(Refused::Silent),
        }
    }

    /// Root and members of `daemon.socket_group` only (SO_PEERCRED; tokio asks getpeereid on macOS).
    pub(super) async fn authorize(&self, stream: &UnixStream, request: &Request) -> Result<(), Refused> {
        let cred = stream.peer_cred().map_err(Refused::NoCredentials)?;
        // The service's own user too: the unit's ExecReload= runs cachekeeperctl as User=.
        if cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw() {
            return Ok(());
        }
        if let Some(group) = self.daemon.socket_group {
            // /proc and the group database may block: not on the runtime's threads.
            let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
            let groups = tokio::task::spawn_blocking(move || peer_groups(uid, gid, pid)).await.unwrap_or_default();
            let member = cred.gid() == group || groups.contains(&group);
            if member {
                return Ok(());
            }
            return Err(Refused::NotMember { uid: cred.uid(), command: request.command(), group });
        }
        Err(Refused::RootOnly(cred.uid()))
    }

    pub(super) async fn answer(self: &Arc<Self>, request: Request, uid: Option<u32>) -> Response {
        let _busy = match &request {
            Request::Reload | Request::Rescan { .. } => match self.one_at_a_time(uid) {
                Ok(busy) => busy,
                Err(refused) => return Response::Failed { message: refused.to_string() },
            },
            Request::Status | Request::Sync { .. } => None,
        };
        match request {
            Request::Status => Response::Status(Box::new(self.status_off_runtime().await)),
            Request::Sync { timeout_ms } => {
                let deadline = Duration::from_millis(timeout_ms);
                match tokio::time::timeout(deadline, self.sync()).await {
                    Ok(Ok(())) => Response::Synced { leftovers: self.leftovers(&self.snapshot(), uid) },
                    Ok(Err(unsettled)) => Response::Failed { message: unsettled.to_string() },
                    Err(_) => Response::Failed { message: format!("not settled within {timeout_ms} ms") },
                }
            }
            Request::Rescan { path } => {
                let caches = self.snapshot();
                let chosen: Vec<Arc<CacheRuntime>> = match &path {
                    None => caches.iter().cloned().collect(),
                    Some(p) => {
                        caches.iter().filter(|c| c.cache.path == crate::policy::config::clean(p)).cloned().collect()
                    }
                };
                if chosen.is_empty() {
                    let p = path.unwrap_or_default();
                    return Response::Failed { message: format!("no configured cache at {p}") };
                }
                let mut scans = Vec::new();
                for c in &chosen {
                    // An administrator's rescan accepts a root the service refused as replaced.
                    match c.rescan(admin(uid)).await {
                        Ok(info) => scans.extend(info),
                        Err(e) => return Response::Failed { message: format!("{}: {e}", c.cache.path.display()) },
                    }
                }
                let caches = chosen.iter().map(|c| c.cache.path.display().to_string()).collect();
                Response::Rescanned { caches, scans, leftovers: self.leftovers(&chosen, uid) }
            }
            Request::Reload => match self.reload(admin(uid)).await {
                Ok(caches) => Response::Reloaded { caches },
                Err(e) => Response::Failed { message: e.to_string() },
            },
        }
    }

    /// Every event that happened before this call has been handled: a sentinel file
    /// goes through each cache's inotify queue behind them, then through its work
    /// queue. Caches whose events cannot be trusted are reconciled in full instead.
    pub(super) async fn sync(&self) -> Result<(), CacheUnsettled> {
        'again: loop {
            let caches = self.snapshot();
            for c in caches.iter() {
                let token = self.next_token.fetch_add(1, Relaxed);
                let mut settled = if c.watched() { c.barrier(token).await } else { Ok(()) };
                if settled.is_ok() && c.state() != CacheState::Healthy {
                    settled = c.rescan(false).await.map(|_| ());
                }
                if let Err(e) = settled {
                    // A reload replaced this cache's runtime while we waited: start over
                    // on the new ones.
                    if c.stopped.load(Relaxed) {
                        continue 'again;
                    }
                    return Err(CacheUnsettled { path: c.cache.path.clone(), reason: e });
                }
            }
            return Ok(());
        }
    }

    /// What stays unrepaired in `caches`, told apart by whether `uid` owns it.
    fn leftovers(&self, caches: &[Arc<CacheRuntime>], uid: Option<u32>) -> Vec<protocol::Leftover> {
        caches.iter().filter_map(|c| c.leftover(uid)).collect()
    }

    /// `status` reads /proc, the user database and the configuration file: on a
    /// blocking thread, not on one of the runtime's two.
    pub(super) async fn status_off_runtime(self: &Arc<Self>) -> Status {
        let service = Arc::clone(self);
        match tokio::task::spawn_blocking(move || service.status()).await {
            Ok(status) => status,
            Err(_) => self.status(),
        }
    }

    pub(super) fn status(&self) -> Status {
        let (caches, trouble, last_reload, config_text) = {
            let running = self.running();
            let caches = Arc::clone(&running.caches);
            (caches, running.trouble.clone(), running.last_reload.clone(), running.config_text.clone())
        };
        let caches: Vec<CacheStatus> = caches.iter().map(|c| c.status()).collect();
        Status {
            schema_version: protocol::SCHEMA_VERSION,
            healthy: Status::healthy(&caches) && trouble.is_none(),
            daemon: protocol::DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: std::process::id(),
                uptime_s: self.started.elapsed().as_secs(),
                uid: nix::unistd::geteuid().as_raw(),
                capabilities: crate::privilege::effective(),
                config: self.config_path.display().to_string(),
                socket: self.daemon.socket.display().to_string(),
                trouble,
                inotify_watches: inotify_watches(),
                user: crate::policy::names::Names::default().user(nix::unistd::geteuid().as_raw()),
                started: protocol::rfc3339(self.started_at),
                last_reload,
                config_changed: std::fs::read(&self.config_path).ok() != config_text,
            },
            caches,
        }
    }
}

/// Root and the service's own user: the administrators, whose `rescan` or `reload`
/// accepts a root the service refused. Members of `daemon.socket_group` may ask for
/// both too, but cannot make it accept what they may have moved there.
pub(super) fn admin(uid: Option<u32>) -> bool {
    uid.is_some_and(|u| u == 0 || u == nix::unistd::geteuid().as_raw())
}

/// inotify watches held by this process, from `/proc/self/fdinfo`.
pub(super) fn inotify_watches() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else { return 0 };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .map(|text| text.lines().filter(|l| l.starts_with("inotify wd")).count() as u64)
        .sum()
}

/// Supplementary groups of the peer: those its process holds (`/proc/<pid>/status`),
/// or, where the unit hides other users' processes (`ProtectProc=invisible`), those
/// the group database gives its user.
pub(super) fn peer_groups(uid: u32, gid: u32, pid: Option<i32>) -> Vec<u32> {
    let from_proc = pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok()).and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect::<Vec<u32>>())
    });
    if let Some(groups) = from_proc {
        return groups;
    }
    let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
    user.and_then(|u| std::ffi::CString::new(u.name).ok())
        .map(|name| crate::sys::group_list(&name, gid))
        .unwrap_or_default()
}

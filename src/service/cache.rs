//! One cache being kept: its runtime (queue, watcher, state shared with `status`), its
//! counters that survive a reload, and what `status` says about it.

use super::*;

/// Why a `sync` or `rescan` of one cache was not done.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum Unsettled {
    /// Its worker is gone (a reload replaced it, or the service stops).
    #[error("the worker stopped")]
    Stopped,
    #[error("cannot create the sync marker: {0}")]
    Marker(Arc<SideFileError>),
    /// The full reconcile could not walk the cache; the reason says why.
    #[error("not reconciled: {0}")]
    NotReconciled(String),
}

/// Counters of a cache that survive a reload.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) counters: Arc<Counters>,
    pub(super) repairs: Tally,
    pub(super) full_scans: AtomicU64,
    pub(super) full_scan_ms: AtomicU64,
    pub(super) last_scan: Mutex<Option<LastScan>>,
    pub(super) last_repair: Mutex<Option<protocol::LastRepair>>,
    /// Directories watched by the last full scan, and since.
    pub(super) watches: AtomicU64,
    pub(super) root_memory: Mutex<RootMemory>,
}

/// What a cache's worker knew of its root, kept across reloads: a member's `reload` must
/// not make the service accept a root it refused (SPEC §4, root re-creation).
#[derive(Debug, Default)]
pub(super) struct RootMemory {
    /// The root last pinned.
    pub(super) former: Option<root::Former>,
    /// Why the directory now at the root's path is refused, until an administrator
    /// accepts it (`rescan` or `reload` by root or the service's user).
    pub(super) refused: Option<root::RootError>,
}

impl RootMemory {
    /// An administrator vouches for whatever is at the root's path now.
    pub(super) fn accept_any(&mut self) {
        *self = RootMemory::default();
    }
}

#[derive(Debug, Clone)]
pub(super) struct LastScan {
    pub(super) info: ScanInfo,
    pub(super) reported: Reported,
}

/// One cache being kept: its worker thread, its watcher and its state.
pub(super) struct CacheRuntime {
    pub(super) cache: Arc<CacheConfig>,
    pub(super) stats: Arc<Stats>,
    pub(super) queue: Queue,
    /// Where `sync` creates its marker files, watched by this cache's inotify instance.
    pub(super) sentinel: Result<SafeDir, Arc<SideFileError>>,
    pub(super) filesystem: String,
    pub(super) polled: bool,
    /// An inotify watcher exists (it may not: not polled, yet inotify failed).
    pub(super) watched: bool,
    pub(super) waiters: Waiters,
    pub(super) degraded: Degradation,
    pub(super) scanned: Arc<AtomicBool>,
    /// Why the last full reconcile could not walk the cache, if it could not: `rescan`
    /// and `sync` fail with it rather than report a reconcile that did not happen.
    pub(super) scan_error: Mutex<Option<String>>,
    pub(super) stopped: AtomicBool,
    pub(super) full_rescan: Duration,
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by the worker each time it looks at the pinned root.
    pub(super) isolation: Mutex<Option<IsolationState>>,
    /// Entries that stay non-compliant, bounded: rebuilt by each full scan, updated by
    /// each check of a path.
    pub(super) unrepaired: Mutex<unrepaired::Unrepaired>,
    /// Watches this cache may hold (`daemon.max_watches`).
    pub(super) max_watches: u64,
}

/// What kept a walk from watching every directory it listed.
#[derive(Default)]
pub(super) struct WatchTrouble {
    /// The kernel's limit (`fs.inotify.max_user_watches`) refused a watch.
    pub(super) limit: AtomicBool,
    /// `daemon.max_watches` was reached.
    pub(super) budget: AtomicBool,
    /// Directories refused for another reason (a path longer than PATH_MAX), and the first.
    pub(super) unwatched: AtomicU64,
    pub(super) first: Mutex<Option<String>>,
}

impl WatchTrouble {
    /// Why part of the cache is not watched, if it is not.
    pub(super) fn reason(&self, max_watches: u64) -> Option<Degraded> {
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
pub(super) fn max_watches(configured: Option<u64>) -> u64 {
    configured.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(u64::MAX, |n| (n / 2).max(1))
    })
}

/// Whether hard links from outside can reach a cache, and whether that stops repairs.
#[derive(Debug, Clone)]
pub(super) struct IsolationState {
    pub(super) isolated: bool,
    pub(super) description: String,
    /// Why files are not changed (the hard-link guard), if they are not.
    pub(super) refused: Option<String>,
}

impl CacheRuntime {
    pub(super) fn start(
        cache: CacheConfig,
        sentinel: Result<SafeDir, Arc<SideFileError>>,
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
            };
            let made = match &sentinel {
                Ok(_) => handler.clone().start(),
                Err(e) => Err(std::io::Error::other(e.to_string())),
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
            backoff_ms: AtomicU64::new(RETRY_AFTER.as_millis() as u64),
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

    pub(super) fn watched(&self) -> bool {
        self.watched
    }

    pub(super) fn state(&self) -> CacheState {
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

    /// Why events cannot be trusted now, if they cannot: causes of the whole cache only.
    /// An entry that cannot be repaired is that entry's (SPEC §4): listed, retried, and
    /// told to whoever owns it, but it degrades nobody else's cache.
    pub(super) fn degraded_reason(&self) -> Option<Degraded> {
        let set = self.degraded.lock().unwrap_or_else(|p| p.into_inner()).clone();
        set.or_else(|| self.stats.counters.overflowed_recently().then_some(Degraded::Overflow))
    }

    /// What stays unrepaired after a `sync` or `rescan`, and how much of it `uid` owns.
    pub(super) fn leftover(&self, uid: Option<u32>) -> Option<protocol::Leftover> {
        let map = self.unrepaired.lock().unwrap_or_else(|p| p.into_inner());
        (!map.is_empty()).then(|| protocol::Leftover {
            cache: self.cache.path.display().to_string(),
            unrepaired: map.count(),
            yours: uid.map_or(0, |u| map.owned_by(u)),
            first: self.shown(&map),
        })
    }

    /// The first unrepaired entries, as `status` lists them.
    fn shown(&self, map: &unrepaired::Unrepaired) -> Vec<protocol::Unrepaired> {
        map.first(protocol::UNREPAIRED_SHOWN)
            .map(|(rel, e)| protocol::Unrepaired {
                path: crate::names::display(&self.cache.path, rel),
                cause: e.cause.clone(),
                owner: e.owner,
            })
            .collect()
    }

    /// A full reconcile, waited for; fails when the worker is gone or the cache could
    /// not be walked.
    pub(super) async fn rescan(&self) -> Result<(), Unsettled> {
        let (tx, rx) = oneshot::channel();
        if !self.queue.send(Work::Rescan { done: Some(tx) }) {
            return Err(Unsettled::Stopped);
        }
        rx.await.map_err(|_| Unsettled::Stopped)?;
        match self.scan_error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(why) => Err(Unsettled::NotReconciled(why)),
            None => Ok(()),
        }
    }

    pub(super) async fn barrier(&self, token: u64) -> Result<(), Unsettled> {
        let (tx, rx) = oneshot::channel();
        {
            // Under the lock that stop() clears: a runtime being replaced by a reload
            // either refuses the waiter here or drops it there, never keeps it forever.
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if self.stopped.load(Relaxed) {
                return Err(Unsettled::Stopped);
            }
            waiters.insert(token, tx);
        }
        let marker = OsString::from(token.to_string());
        let created = match &self.sentinel {
            Ok(dir) => dir.create_file(&marker).map_err(|e| Unsettled::Marker(Arc::new(e))),
            Err(e) => Err(Unsettled::Marker(Arc::clone(e))),
        };
        let result = match created {
            Ok(()) => rx.await.map_err(|_| Unsettled::Stopped),
            Err(e) => Err(e),
        };
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
        if let Ok(dir) = &self.sentinel {
            let _ = dir.remove_file(&marker);
        }
        result
    }

    pub(super) fn set_degraded(&self, reason: Option<Degraded>) {
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    pub(super) fn stop(&self) {
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

    pub(super) fn status(&self) -> CacheStatus {
        let last = self.stats.last_scan.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let isolation = self.isolation.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let r = &self.stats.repairs;
        let c = &self.stats.counters;
        let (unrepaired, unrepaired_entries) = {
            let map = self.unrepaired.lock().unwrap_or_else(|p| p.into_inner());
            (map.count(), self.shown(&map))
        };
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
                acl: r.acl.load(Relaxed),
            },
            reported: last.as_ref().map(|l| l.reported).unwrap_or_default(),
            // Cache-wide errors only: an entry that stays unrepaired is retried with
            // back-off, and counted once, in `unrepaired`, not once per attempt.
            errors: c.errors.load(Relaxed),
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
            inheritance: Some(crate::model::Inheritance::of(&self.cache.policy, r.no_acl.load(Relaxed))),
            queue_collapses: self.queue.collapses(),
            unrepaired,
            unrepaired_entries,
        }
    }
}

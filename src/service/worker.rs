//! A cache's worker thread: it takes the pending work, checks paths, runs full
//! reconciles, keeps the watches, and records what stays unrepaired.

use super::*;

/// Work taken from the queue and not done yet: checks, each path once (deep if any
/// asked so), and whether a full reconcile is due, which makes them moot.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) checks: Vec<(Vec<u8>, bool)>,
    pub(super) index: HashMap<Vec<u8>, usize>,
    pub(super) rescan: bool,
    pub(super) waiters: Vec<oneshot::Sender<()>>,
}

impl Pending {
    pub(super) fn check(&mut self, rel: Vec<u8>, deep: bool) {
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

    pub(super) fn rescan(&mut self, done: Option<oneshot::Sender<()>>) {
        self.rescan = true;
        self.checks.clear();
        self.index.clear();
        self.waiters.extend(done);
    }
}

/// The thread that does all of one cache's checks and reconciles, in queue order.
pub(super) struct Worker {
    pub(super) runtime: Arc<CacheRuntime>,
    pub(super) watcher: Mutex<Option<watch::DirWatcher>>,
    pub(super) audit: Option<Arc<AuditLog>>,
    /// The pinned root; every scan and check starts from it.
    pub(super) root: Mutex<Option<Arc<Root>>>,
    /// Paths to check again and when: those whose check failed for a reason that passes
    /// (no descriptor or memory left for a moment) after [`RETRY_AFTER`], never dropped;
    /// those left unrepaired after the back-off. Past [`unrepaired::MAX_ENTRIES`] paths
    /// it becomes one full reconcile (the empty path).
    pub(super) retry: Mutex<Option<(Instant, BTreeSet<Vec<u8>>)>>,
    /// How long until unrepaired entries are tried again: doubled by each retry that
    /// leaves some, back to [`RETRY_AFTER`] once none are left.
    pub(super) backoff_ms: AtomicU64,
    /// Entries already warned about in this scan cycle (each is warned once per full
    /// scan, not once per event or per rescan), and the bytes their names take: past
    /// [`MAX_WARNED_BYTES`] the rest are counted, not remembered.
    pub(super) warned: Mutex<(HashSet<Vec<u8>>, usize)>,
    /// What makes this cache's watcher, to start afresh.
    pub(super) handler: Option<Handler>,
    /// `max_watches` was reached: the next full scan starts with a new watcher, so that
    /// the watches it adds are all the cache holds (notify never drops a watch itself).
    pub(super) over_budget: AtomicBool,
}

impl Worker {
    pub(super) fn run(self) {
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
                // A toolchain's download completing is when Go's first-use steps may be
                // done for every member ([`crate::walk`]). Its last event is the chmod
                // of the tree's root (`makeDirsReadOnly` goes children first, after the
                // .partial is gone; cmd/go/internal/modfetch/fetch.go), or, under
                // -modcacherw, the .ziphash of a download made anew.
                let deep = deep || crate::model::toolchain_root(&rel).is_some();
                if let Some(tree) = crate::model::toolchain_of_download(&rel) {
                    pending.check(tree, true);
                }
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
    pub(super) fn finish(&self, pending: &mut Pending, next_scan: &mut Instant) {
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
        if !checks.is_empty() {
            self.check(&checks);
        }
    }

    /// Checks again what failed for a transient reason; an empty path stands for the
    /// whole cache.
    pub(super) fn retry_now(&self, next_scan: &mut Instant) {
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
        let left = !self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        let backoff = Duration::from_millis(self.backoff_ms.load(Relaxed));
        let next = if left { (backoff * 2).min(MAX_BACKOFF) } else { RETRY_AFTER };
        self.backoff_ms.store(next.as_millis() as u64, Relaxed);
    }

    /// Schedules `rel` (empty: the whole cache) to be checked again within `after`.
    pub(super) fn defer(&self, rel: Vec<u8>, after: Duration) {
        let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
        let at = Instant::now() + after;
        let (when, paths) = retry.get_or_insert_with(|| (at, BTreeSet::new()));
        *when = (*when).min(at);
        if paths.len() >= unrepaired::MAX_ENTRIES {
            paths.clear();
            paths.insert(Vec::new());
        } else if !paths.contains(&Vec::new()) {
            paths.insert(rel);
        }
    }

    /// Records what stays non-compliant after a walk: `scope` is the path a check
    /// covered (and whether it went deep), `None` for a full scan, which replaces all.
    pub(super) fn interval(&self) -> Duration {
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
    pub(super) fn watch_hook<'a>(&'a self, trouble: &'a WatchTrouble) -> impl Fn(&[u8], BorrowedFd<'_>) + Sync + 'a {
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

    /// Records each repair as the cache's latest (for `status`) and in
    /// `daemon.audit_log`, when one is configured.
    pub(super) fn audit_hook(&self) -> Box<crate::walk::AuditHook<'_>> {
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
    /// A directory that took the old root's place is judged by [`root::accept_successor`].
    pub(super) fn root(&self) -> Result<Arc<Root>, RootTrouble> {
        let mut slot = self.root.lock().unwrap_or_else(|p| p.into_inner());
        let mut memory = self.runtime.stats.root_memory.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pinned) = slot.as_ref().filter(|r| !r.removed()) {
            memory.former = Some(root::Former::of(pinned));
            return Ok(Arc::clone(pinned));
        }
        *slot = None;
        if let Some(why) = &memory.refused {
            return Err(RootTrouble::Replaced(why.clone()));
        }
        let cache = &self.runtime.cache;
        let own = root::Ownership::for_cache(&cache.policy, None);
        root::create(&cache.path, &Origin::Admin, own).map_err(RootTrouble::Unusable)?;
        let pinned = Arc::new(root::resolve(&cache.path, &Origin::Admin, cache.force).map_err(RootTrouble::Unusable)?);
        if let Some(former) = &memory.former {
            if let Err(e) = root::accept_successor(&pinned, former, &cache.policy) {
                tracing::warn!(root = %cache.path.display(), "{e}");
                memory.refused = Some(e.clone());
                return Err(RootTrouble::Replaced(e));
            }
        }
        memory.former = Some(root::Former::of(&pinned));
        *slot = Some(Arc::clone(&pinned));
        Ok(pinned)
    }

    /// Replaces the watcher by a new one holding only its fixed watches; the full scan
    /// that follows adds the cache's, up to `max_watches`.
    pub(super) fn renew_watcher(&self) {
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
    pub(super) fn root_changed(&self) -> bool {
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
    pub(super) fn guard(&self, pinned: &Root) -> Action {
        let isolation = root::isolation(pinned);
        let guard = root::hard_link_guard(&isolation, root::protected_hardlinks(), pinned.path());
        let action = if guard.is_ok() { Action::Repair } else { Action::Check };
        let mut description = isolation.describe(pinned.path());
        if isolation.isolated() {
            let own = pinned.stat().mnt_id.is_some_and(|id| OWN_MOUNTS.get().is_some_and(|m| m.contains(&id)));
            description += if own {
                " until the service stops (the service's own bind mount)"
            } else {
                " (a mount that outlives the service: fstab, a mount unit or `cachekeeper --init --isolate`)"
            };
        }
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

    /// Checks `checks` (sorted by path) in one walk.
    pub(super) fn check(&self, checks: &[(Vec<u8>, bool)]) {
        // An event on the root itself comes through its parent's watch: it may have been
        // deleted and made anew, which only a full reconcile of the new one covers.
        if checks.iter().any(|(rel, _)| rel.is_empty()) && self.root_changed() {
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
                self.defer(Vec::new(), RETRY_AFTER);
                return;
            }
        };
        let refused =
            self.runtime.isolation.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|i| i.refused.is_some());
        let action = if refused == Some(false) { Action::Repair } else { self.guard(&pinned) };
        {
            let mut map = self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner());
            checks.iter().for_each(|(rel, deep)| map.forget(rel, *deep));
        }
        let findings = Findings::new(self, false);
        let take = |note| findings.take(note);
        let scan = Scan {
            cache,
            root: &pinned,
            action,
            tally: &tally,
            watch: Some(&hook),
            audit: Some(&*audit),
            findings: Some(&take),
            stop: Some(&self.runtime.stopped),
            hold_root: false,
            log_repairs: true,
        };
        match scan.paths(checks) {
            Ok(_) => findings.finish(),
            Err(e) => {
                tracing::warn!(root = %cache.path.display(), "cannot open the cache root: {}", sys::describe(&e));
                self.runtime.stats.counters.errors.fetch_add(1, Relaxed);
                // Out of descriptors or memory for a moment: the check is done later,
                // never dropped; `status` shows it as unrepaired meanwhile.
                let cause = format!("cannot open the cache root: {}", sys::describe(&e));
                for (rel, _) in checks {
                    let entry = unrepaired::Entry { cause: cause.clone(), owner: None };
                    self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner()).insert(rel.clone(), entry);
                    self.defer(rel.clone(), RETRY_AFTER);
                }
            }
        }
        if let Some(reason) = trouble.reason(self.runtime.max_watches) {
            self.runtime.set_degraded(Some(reason));
        }
        self.runtime.stats.repairs.absorb(&tally);
    }

    pub(super) fn full_scan(&self) {
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
        let findings = Findings::new(self, true);
        let take = |note| findings.take(note);
        let scanned = self.root().map_err(|e| e.to_string()).and_then(|pinned| {
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
            let scan = Scan {
                cache,
                root: &pinned,
                action,
                tally: &tally,
                watch,
                audit: Some(&*audit),
                findings: Some(&take),
                stop: Some(&self.runtime.stopped),
                hold_root: false,
                log_repairs: false,
            };
            scan.all().map_err(|e| {
                if transient(e.raw_os_error()) {
                    self.defer(Vec::new(), RETRY_AFTER);
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
        if scanned.is_ok() {
            findings.finish();
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
        let unrepaired = self.runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner()).count();
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
pub(super) fn transient(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EAGAIN))
}

/// What one walk finds, taken as the walk makes it (the walk keeps none of it): a
/// failure goes to the cache's bounded unrepaired set, and each finding is logged once
/// per scan cycle (a full scan starts a new one), so that a symlink or an entry that
/// cannot be fixed does not log a line per event or per rescan. A full scan logs the
/// first few and counts the rest; `status` lists them.
struct Findings<'w> {
    worker: &'w Worker,
    full: bool,
    /// A full scan builds the set anew, to replace the old one when it is done.
    fresh: Mutex<unrepaired::Unrepaired>,
    logged: std::sync::atomic::AtomicUsize,
    more: AtomicU64,
}

impl<'w> Findings<'w> {
    fn new(worker: &'w Worker, full: bool) -> Findings<'w> {
        if full {
            *worker.warned.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
        }
        Findings { worker, full, fresh: Mutex::default(), logged: Default::default(), more: AtomicU64::new(0) }
    }

    fn take(&self, note: crate::walk::Note) {
        use crate::walk::Finding;
        self.log(&note);
        if let Finding::Failed(f) = &note.finding {
            if transient(f.errno) {
                self.worker.defer(note.rel.clone(), RETRY_AFTER);
            }
            let entry = unrepaired::Entry { cause: f.to_string(), owner: f.owner };
            let set = if self.full { &self.fresh } else { &self.worker.runtime.unrepaired };
            set.lock().unwrap_or_else(|p| p.into_inner()).insert(note.rel, entry);
        }
    }

    fn log(&self, note: &crate::walk::Note) {
        use crate::walk::Finding;
        if matches!(note.finding, Finding::Diverges(_)) {
            return;
        }
        {
            let mut guard = self.worker.warned.lock().unwrap_or_else(|p| p.into_inner());
            let (warned, bytes) = &mut *guard;
            if warned.contains(&note.rel) {
                return;
            }
            if *bytes + note.rel.len() > MAX_WARNED_BYTES {
                self.more.fetch_add(1, Relaxed);
                return;
            }
            *bytes += note.rel.len() + 32;
            warned.insert(note.rel.clone());
        }
        if self.full && matches!(note.finding, Finding::Reported(_)) {
            // A full scan counts what it leaves as it is in its summary and in `status`.
            return;
        }
        if self.full && self.logged.fetch_add(1, Relaxed) >= FINDINGS_LOGGED {
            self.more.fetch_add(1, Relaxed);
            return;
        }
        let path = crate::names::display(&self.worker.runtime.cache.path, &note.rel);
        match &note.finding {
            // git makes symlinks and hard links in its clones as it works (packs, locks);
            // they are counted, not warned about.
            Finding::Reported(r) if crate::model::place_of(&note.rel) == crate::model::Place::Vcs => {
                tracing::debug!(path = %path, "left as it is: {}", r.explain())
            }
            Finding::Reported(r) => tracing::warn!(path = %path, "left as it is: {}", r.explain()),
            Finding::Failed(f) => tracing::error!(path = %path, "{f}"),
            Finding::Diverges(_) => {}
        }
    }

    /// The walk is over: a full scan's set replaces the old one, what stays unrepaired
    /// is tried again after the back-off, and what was not logged is counted.
    fn finish(self) {
        let runtime = &self.worker.runtime;
        let again: Vec<Vec<u8>> = {
            let mut map = runtime.unrepaired.lock().unwrap_or_else(|p| p.into_inner());
            if self.full {
                *map = self.fresh.into_inner().unwrap_or_else(|p| p.into_inner());
            }
            map.paths().cloned().collect()
        };
        let after = Duration::from_millis(self.worker.backoff_ms.load(Relaxed));
        for rel in again {
            self.worker.defer(rel, after);
        }
        let more = self.more.load(Relaxed);
        if more > 0 {
            tracing::error!(
                root = %runtime.cache.path.display(),
                "{more} more entries could not be checked or repaired; `{} status --json` lists them",
                crate::hint::command("cachekeeperctl")
            );
        }
    }
}

/// Why the worker has no root to walk: a cause of the whole cache.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum RootTrouble {
    /// The path is not a root the rules accept, or cannot be made or opened.
    #[error("{reason}: {0}", reason = watch::UNWALKABLE_REASON)]
    Unusable(root::RootError),
    /// Another directory took the root's place: refused until an administrator accepts it.
    #[error("{0}")]
    Replaced(root::RootError),
}

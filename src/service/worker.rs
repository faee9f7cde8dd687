//! A cache's worker thread, the one owner of the cache's state. It takes messages from
//! its queue (events, `sync` waiters, rescans, stop), checks paths, runs full
//! reconciles, keeps the watches and what stays unrepaired, and publishes a [`View`]
//! after each step for `status`, `sync` and `rescan` to read. Nothing here is shared:
//! a walk's visitor runs on the walk's threads and sends what it finds back here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;
use tokio::sync::watch as latest;

use crate::engine::root::{self, Origin, Root};
use crate::engine::walk::{Action, Scan, Tally};
use crate::policy::config::CacheConfig;
use crate::protocol::{self, CacheState, ScanInfo};
use crate::sys;

use super::audit::AuditLog;
use super::view::{IsolationState, LastScan, Leftovers, View};
use super::watch::{self, Degraded, DirWatcher, Inbox, Queue, Seen, Work};
use super::{
    unrepaired, DEGRADED_RESCAN, FINDINGS_LOGGED, MAX_BACKOFF, MAX_WARNED_BYTES, OWN_MOUNTS, POLL_INTERVAL, RETRY_AFTER,
};

/// Work taken from the queue and not done yet: each path once (deep if any asked so),
/// parents before children, or a full reconcile, which makes them moot.
#[derive(Default)]
struct Pending {
    checks: BTreeMap<Vec<u8>, bool>,
    rescan: bool,
    waiters: Vec<oneshot::Sender<Reconciled>>,
}

impl Pending {
    fn check(&mut self, rel: Vec<u8>, deep: bool) {
        if !self.rescan {
            *self.checks.entry(rel).or_default() |= deep;
        }
    }

    fn rescan(&mut self, done: Option<oneshot::Sender<Reconciled>>) {
        self.rescan = true;
        self.checks.clear();
        self.waiters.extend(done);
    }
}

/// What a worker is made of, from [`super::cache::CacheRuntime::start`].
pub(super) struct Setup {
    pub(super) cache: Arc<CacheConfig>,
    pub(super) inbox: Inbox,
    /// For a new watcher.
    pub(super) queue: Queue,
    /// The directory of this cache's `sync` markers.
    pub(super) sentinel: Option<PathBuf>,
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) audit: Option<Arc<AuditLog>>,
    pub(super) full_rescan: Duration,
    pub(super) max_watches: u64,
    pub(super) polled: bool,
    pub(super) watcher: Option<DirWatcher>,
}

/// The thread that does all of one cache's checks and reconciles, in queue order.
pub(super) struct Worker {
    setup: Setup,
    state: State,
    /// The previous watcher's generation and fixed watches: a `sync` marker it read
    /// before it was replaced still counts.
    #[cfg(target_os = "linux")]
    retired: Option<(u64, watch::Fixed)>,
    /// Dropped last: `stop` waits for it to go.
    publish: latest::Sender<Arc<View>>,
}

/// Everything of the cache that changes, owned by the worker alone.
struct State {
    /// What the next published view shows, but for the unrepaired entries.
    view: View,
    /// The directories watched now, by watch descriptor (none where one stream watches
    /// the whole tree).
    watched: watch::Watched,
    /// The pinned root; every scan and check starts from it.
    root: Option<Arc<Root>>,
    /// `sync`s waiting for their marker, by token.
    waiters: HashMap<u64, oneshot::Sender<()>>,
    /// `max_watches` was reached: the next full scan starts with a new watcher, so that
    /// the watches it adds are all the cache holds (a watch is never dropped otherwise).
    over_budget: bool,
    record: Record,
}

/// What walks found that lasts beyond them: the entries that stay unrepaired, when to
/// try them again, and which findings were already logged.
struct Record {
    unrepaired: unrepaired::Unrepaired,
    /// Paths to check again and when: those whose check failed for a reason that passes
    /// (no descriptor or memory left for a moment) after [`RETRY_AFTER`], never dropped;
    /// those left unrepaired after the back-off. Past [`unrepaired::MAX_ENTRIES`] paths
    /// it becomes one full reconcile (the empty path).
    retry: Option<(Instant, BTreeSet<Vec<u8>>)>,
    /// How long until unrepaired entries are tried again: doubled by each retry that
    /// leaves some, back to [`RETRY_AFTER`] once none are left.
    backoff: Duration,
    /// Entries already warned about in this scan cycle (each is warned once per full
    /// scan, not once per event or per rescan), and the bytes their names take: past
    /// [`MAX_WARNED_BYTES`] the rest are counted, not remembered.
    warned: HashSet<Vec<u8>>,
    warned_bytes: usize,
}

impl Record {
    /// Schedules `rel` (empty: the whole cache) to be checked again within `after`.
    fn defer(&mut self, rel: Vec<u8>, after: Duration) {
        let at = Instant::now() + after;
        let (when, paths) = self.retry.get_or_insert_with(|| (at, BTreeSet::new()));
        *when = (*when).min(at);
        if paths.len() >= unrepaired::MAX_ENTRIES {
            paths.clear();
            paths.insert(Vec::new());
        } else if !paths.contains(&Vec::new()) {
            paths.insert(rel);
        }
    }
}

/// What the service's visitor sends the worker from a walk's threads.
enum Walked {
    Watched(i32, Box<[u8]>),
    /// A directory that could not be watched for a reason of its own, in words.
    Unwatched(String),
    Repaired(Vec<u8>, crate::policy::model::Divergence),
    Found(crate::engine::walk::Note),
}

/// What kept a walk from watching every directory it listed.
#[derive(Default)]
struct Trouble {
    /// The kernel's limit (`fs.inotify.max_user_watches`) refused a watch.
    limit: AtomicBool,
    /// `daemon.max_watches` was reached.
    budget: AtomicBool,
}

/// The service's visitor, on the walk's threads: it watches each directory before it is
/// listed (within the budget), writes the audit log, and sends the rest to the worker.
struct Visitor<'a> {
    tx: std::sync::mpsc::Sender<Walked>,
    watcher: Option<&'a DirWatcher>,
    /// Watches held now: those before the walk, and those it added.
    watches: AtomicU64,
    known: &'a watch::Watched,
    max_watches: u64,
    trouble: &'a Trouble,
    root: &'a Path,
    audit: Option<&'a AuditLog>,
    /// A check logs each repair; a full scan logs a summary.
    live: bool,
}

impl crate::engine::walk::Visit for Visitor<'_> {
    /// After the first refusal for the kernel's watch limit or `max_watches`, the rest of
    /// the walk does not ask again; any other refusal (a path longer than PATH_MAX) is
    /// counted, not hidden.
    fn listing(&self, rel: &[u8], dir: BorrowedFd<'_>) {
        let trouble = self.trouble;
        let Some(watcher) = self.watcher else { return };
        if trouble.limit.load(Relaxed) || trouble.budget.load(Relaxed) {
            return;
        }
        // A slot is taken before the watch is added, so that the walk's threads together
        // never pass the budget; a watch the cache held already gives its slot back.
        if self.watches.fetch_add(1, Relaxed) >= self.max_watches {
            self.watches.fetch_sub(1, Relaxed);
            if !trouble.budget.swap(true, Relaxed) {
                tracing::warn!(root = %self.root.display(), "{}", Degraded::WatchBudget { max: self.max_watches });
            }
            return;
        }
        let added = watcher.watch_dir(dir);
        if !matches!(added, Ok(Some(wd)) if !self.known.contains_key(&wd)) {
            self.watches.fetch_sub(1, Relaxed);
        }
        match added {
            Ok(Some(wd)) => {
                let _ = self.tx.send(Walked::Watched(wd, rel.into()));
            }
            Ok(_) => {}
            Err(watch::WatchError::Limit) => {
                if !trouble.limit.swap(true, Relaxed) {
                    tracing::warn!(root = %self.root.display(), "{}", watch::WATCH_LIMIT_REASON);
                }
            }
            // Removed since it was listed: nothing to watch.
            Err(watch::WatchError::Gone) => {}
            Err(e) => {
                let path = crate::policy::names::display(self.root, rel);
                tracing::debug!(path = %path, "cannot watch: {e}");
                let _ = self.tx.send(Walked::Unwatched(format!("{path}: {e}")));
            }
        }
    }

    fn repaired(&self, rel: &[u8], d: &crate::policy::model::Divergence) {
        let path = crate::policy::names::display(self.root, rel);
        if self.live {
            tracing::info!(path = %path, "repaired: {d}");
        } else {
            tracing::debug!(path = %path, "repaired: {d}");
        }
        if let Some(log) = self.audit {
            log.record(self.root, rel, d);
        }
        let _ = self.tx.send(Walked::Repaired(rel.to_vec(), *d));
    }

    fn found(&self, note: crate::engine::walk::Note) {
        let _ = self.tx.send(Walked::Found(note));
    }
}

/// What one walk did.
struct Outcome {
    result: std::io::Result<()>,
    tally: Tally,
    /// Why part of the cache is not watched, if it is not.
    unwatched: Option<Degraded>,
}

impl Worker {
    pub(super) fn new(setup: Setup, view: View, publish: latest::Sender<Arc<View>>) -> Worker {
        let state = State {
            view,
            watched: watch::Watched::new(),
            root: None,
            waiters: HashMap::new(),
            over_budget: false,
            record: Record {
                unrepaired: Default::default(),
                retry: None,
                backoff: RETRY_AFTER,
                warned: HashSet::new(),
                warned_bytes: 0,
            },
        };
        Worker {
            setup,
            state,
            #[cfg(target_os = "linux")]
            retired: None,
            publish,
        }
    }

    pub(super) fn run(mut self) {
        let mut next_scan = Instant::now() + self.interval();
        loop {
            let retry_at = self.state.record.retry.as_ref().map(|r| r.0);
            let wake = retry_at.map_or(next_scan, |r| r.min(next_scan));
            let Some(batch) = self.setup.inbox.take(wake) else {
                if Instant::now() < next_scan {
                    self.retry_now(&mut next_scan);
                } else {
                    let _ = self.full_scan();
                    next_scan = Instant::now() + self.interval();
                }
                self.publish();
                continue;
            };
            let mut pending = Pending::default();
            let mut barriers = Vec::new();
            let mut stop = false;
            for work in batch {
                match work {
                    #[cfg(target_os = "linux")]
                    Work::Events { generation, events } => {
                        self.events(generation, &events, &mut pending, &mut barriers)
                    }
                    #[cfg(not(target_os = "linux"))]
                    Work::Seen(seen) => seen.into_iter().for_each(|s| self.apply(s, &mut pending, &mut barriers)),
                    Work::Collapsed => pending.rescan(None),
                    Work::Await { token, done } => {
                        self.state.waiters.insert(token, done);
                    }
                    Work::Rescan { done, accept } => {
                        if accept {
                            self.state.view.kept.root_memory.accept_any();
                        }
                        pending.rescan(done);
                    }
                    Work::Stop => stop = true,
                }
            }
            if self.setup.inbox.over(pending.checks.len()) {
                pending.rescan(None);
            }
            // A `sync` whose marker could not be made has gone.
            self.state.waiters.retain(|_, tx| !tx.is_closed());
            self.finish(&mut pending, &mut next_scan);
            // `sync` covers a root that was deleted or replaced (`go clean -modcache`)
            // even if its events were missed: reconcile the new one.
            if !barriers.is_empty() && self.root_changed() {
                pending.rescan(None);
                self.finish(&mut pending, &mut next_scan);
            }
            // A `sync` reads what is left from the view next: publish first.
            self.publish();
            for tx in barriers {
                let _ = tx.send(());
            }
            if stop {
                return;
            }
        }
    }

    /// inotify's events, mapped with the watches of the watcher that read them; of a
    /// watcher since replaced, only what needs no watch table counts (its descriptors
    /// mean nothing now).
    #[cfg(target_os = "linux")]
    fn events(
        &mut self,
        generation: u64,
        events: &[watch::RawEvent],
        pending: &mut Pending,
        barriers: &mut Vec<oneshot::Sender<()>>,
    ) {
        let current = self.setup.watcher.as_ref().filter(|w| w.generation() == generation).map(|w| w.fixed().clone());
        let retired = self.retired.as_ref().filter(|(g, _)| *g == generation).map(|(_, f)| f.clone());
        let empty = watch::Watched::new();
        for e in events {
            let seen = match (&current, &retired) {
                (Some(fixed), _) => watch::seen(e, fixed, &self.state.watched),
                (None, Some(fixed)) => match watch::seen(e, fixed, &empty) {
                    Seen::Dropped(_) => Seen::Nothing,
                    seen => seen,
                },
                (None, None) => Seen::Nothing,
            };
            self.apply(seen, pending, barriers);
        }
    }

    /// One event's work: a check (with, for a toolchain's download, the toolchain's tree),
    /// a full reconcile, a `sync`'s barrier, or a watch forgotten.
    fn apply(&mut self, seen: Seen, pending: &mut Pending, barriers: &mut Vec<oneshot::Sender<()>>) {
        let root = &self.setup.cache.path;
        let counts = &mut self.state.view.kept.counts;
        match seen {
            Seen::Check { rel, deep } => {
                counts.events += 1;
                // A toolchain's download completing is when Go's first-use steps may be
                // done for every member ([`crate::engine::walk`]). Its last event is the chmod
                // of the tree's root (`makeDirsReadOnly` goes children first, after the
                // .partial is gone; cmd/go/internal/modfetch/fetch.go), or, under
                // -modcacherw, the .ziphash of a download made anew.
                let deep = deep || crate::policy::model::toolchain_root(&rel).is_some();
                if let Some(tree) = crate::policy::model::toolchain_of_download(&rel) {
                    pending.check(tree, true);
                }
                pending.check(rel, deep);
            }
            Seen::Lost => {
                counts.overflows += 1;
                self.state.view.kept.last_overflow = Some(Instant::now());
                tracing::warn!(root = %root.display(), "{}", watch::OVERFLOW_REASON);
                pending.rescan(None);
                // The markers of pending syncs may be among the lost events. The
                // reconcile covers everything that happened before them, so their
                // barriers can follow it.
                barriers.extend(self.state.waiters.drain().map(|(_, tx)| tx));
            }
            #[cfg(any(test, not(target_os = "linux")))]
            Seen::Failed(e) => {
                counts.errors += 1;
                tracing::warn!(root = %root.display(), "watch error: {e}");
                pending.rescan(None);
            }
            Seen::Marker(token) => barriers.extend(self.state.waiters.remove(&token)),
            #[cfg(target_os = "linux")]
            Seen::Dropped(wd) => {
                self.state.watched.remove(&wd);
            }
            Seen::Nothing => {}
        }
    }

    /// The view as it stands, for `status` and the control socket.
    fn publish(&self) {
        let mut view = self.state.view.clone();
        let map = &self.state.record.unrepaired;
        view.unrepaired = Leftovers {
            count: map.count(),
            first: map
                .first(protocol::UNREPAIRED_SHOWN)
                .map(|(rel, e)| protocol::Unrepaired {
                    path: crate::policy::names::display(&self.setup.cache.path, rel),
                    cause: e.cause.clone(),
                    owner: e.owner,
                })
                .collect(),
            by_owner: map.by_owner(),
        };
        self.publish.send_replace(Arc::new(view));
    }

    /// Does the pending work: a due full reconcile (which covers every check queued
    /// before it), else each check once.
    fn finish(&mut self, pending: &mut Pending, next_scan: &mut Instant) {
        let Pending { checks, rescan, waiters } = std::mem::take(pending);
        if rescan {
            // A full scan covers every retry queued before it.
            self.state.record.retry = None;
            let reconciled = self.full_scan();
            *next_scan = Instant::now() + self.interval();
            // Whoever waits reads the view next: it must show this reconcile.
            self.publish();
            for tx in waiters {
                let _ = tx.send(reconciled.clone());
            }
        }
        if !checks.is_empty() {
            let checks: Vec<(Vec<u8>, bool)> = checks.into_iter().collect();
            self.check(&checks);
        }
    }

    /// Checks again what failed for a transient reason; an empty path stands for the
    /// whole cache.
    fn retry_now(&mut self, next_scan: &mut Instant) {
        let Some((_, paths)) = self.state.record.retry.take() else { return };
        let mut pending = Pending::default();
        for rel in paths {
            if rel.is_empty() {
                pending.rescan(None);
            } else {
                pending.check(rel, true);
            }
        }
        self.finish(&mut pending, next_scan);
        let record = &mut self.state.record;
        record.backoff = if record.unrepaired.is_empty() { RETRY_AFTER } else { (record.backoff * 2).min(MAX_BACKOFF) };
    }

    fn interval(&self) -> Duration {
        let full = self.setup.full_rescan;
        match self.state.view.state(self.setup.polled) {
            CacheState::Degraded => full.min(DEGRADED_RESCAN),
            CacheState::Polling => full.min(POLL_INTERVAL),
            _ => full,
        }
    }

    /// The pinned root, resolved anew (with every rule of [`root`]) when there is none yet
    /// or the pinned one was removed: Go's `go clean -modcache` deletes the root, and the
    /// next `go` command makes a new one. Never re-resolved for a scan otherwise.
    /// A directory that took the old root's place is judged by [`root::accept_successor`].
    fn root(&mut self) -> Result<Arc<Root>, RootTrouble> {
        let memory = &mut self.state.view.kept.root_memory;
        if let Some(pinned) = self.state.root.as_ref().filter(|r| !r.removed()) {
            memory.former = Some(root::Former::of(pinned));
            return Ok(Arc::clone(pinned));
        }
        self.state.root = None;
        if let Some(why) = &memory.refused {
            return Err(RootTrouble::Replaced(why.clone()));
        }
        let cache = &self.setup.cache;
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
        self.state.root = Some(Arc::clone(&pinned));
        Ok(pinned)
    }

    /// Replaces the watcher by a new one holding only its fixed watches; the full scan
    /// that follows adds the cache's, up to `max_watches`. The new one watches the
    /// sentinel directory before the old one goes, so no `sync` marker is missed.
    fn renew_watcher(&mut self) {
        let (Some(old), Some(sentinel)) = (&self.setup.watcher, &self.setup.sentinel) else { return };
        let generation = old.generation() + 1;
        match DirWatcher::start(&self.setup.cache.path, sentinel, self.setup.queue.clone(), generation) {
            Ok(w) => {
                let old = self.setup.watcher.replace(w);
                self.state.watched.clear();
                #[cfg(target_os = "linux")]
                {
                    self.retired = old.map(|o| (o.generation(), o.fixed().clone()));
                }
                #[cfg(not(target_os = "linux"))]
                drop(old);
            }
            Err(e) => tracing::warn!(root = %self.setup.cache.path.display(), "cannot renew the watcher: {e}"),
        }
    }

    /// The pinned root is gone or its path leads to another directory now (Go's `go
    /// clean -modcache` deletes it and the next `go` command makes a new one): forget
    /// it, so that the next scan resolves the path again with every rule of [`root`].
    fn root_changed(&mut self) -> bool {
        let Some(pinned) = self.state.root.as_ref() else { return true };
        let replaced = match std::fs::metadata(&self.setup.cache.path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                m.ino() != pinned.stat().ino
            }
            Err(_) => true,
        };
        if replaced || pinned.removed() {
            self.state.root = None;
            return true;
        }
        false
    }

    /// Whether this cache's files may be changed, as of now (see [`root::hard_link_guard`]);
    /// recorded for `status`.
    fn guard(&mut self, pinned: &Root) -> Action {
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
        self.state.view.isolation =
            Some(IsolationState { isolated: isolation.isolated(), description, refused: guard.err().map(|e| e.0) });
        action
    }

    /// One walk with the service's visitor, from the root (`checks`: `None`) or of the
    /// paths given (sorted). The walk runs on rayon's threads while this thread takes
    /// what its visitor sends, so that the worker stays the one owner of the cache's
    /// state and holds no more of the findings than their bounds allow.
    fn walk(&mut self, pinned: &Root, action: Action, checks: Option<&[(Vec<u8>, bool)]>) -> Outcome {
        let full = checks.is_none();
        let Worker { setup, state, .. } = self;
        let tally = Tally::default();
        let trouble = Trouble::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let held = state.watched.len() as u64;
        let visitor = Visitor {
            tx,
            watcher: setup.watcher.as_ref().filter(|_| !setup.polled),
            watches: AtomicU64::new(held),
            known: &state.watched,
            max_watches: setup.max_watches,
            trouble: &trouble,
            root: &setup.cache.path,
            audit: setup.audit.as_deref(),
            live: !full,
        };
        let mut findings = Findings::new(full, &mut state.record);
        let counts = &mut state.view.kept.counts;
        let mut watched = Vec::new();
        let (mut unwatched, mut first_unwatched) = (0, None);
        let mut last_repair = None;
        let mut result = Ok(());
        let walking = &mut result;
        let (cache, tally_ref, stop) = (&*setup.cache, &tally, &*setup.stopped);
        rayon::in_place_scope(|s| {
            s.spawn(move |_| {
                let scan = Scan {
                    cache,
                    root: pinned,
                    action,
                    tally: tally_ref,
                    visit: &visitor,
                    stop: Some(stop),
                    hold_root: false,
                };
                *walking = match checks {
                    Some(checks) => scan.paths(checks),
                    None => scan.all(),
                };
                // The visitor goes with the walk, and with it the last sender.
                drop(visitor);
            });
            for walked in rx {
                match walked {
                    Walked::Watched(wd, rel) => {
                        counts.watches += 1;
                        watched.push((wd, rel));
                    }
                    Walked::Unwatched(why) => {
                        unwatched += 1;
                        first_unwatched.get_or_insert(why);
                    }
                    Walked::Repaired(rel, d) => last_repair = Some((rel, d, SystemTime::now())),
                    Walked::Found(note) => findings.take(note, &setup.cache.path),
                }
            }
        });
        state.watched.extend(watched);
        if result.is_ok() {
            findings.finish(&setup.cache.path);
        }
        if let Some((rel, d, at)) = last_repair {
            state.view.kept.last_repair = Some(protocol::LastRepair {
                at: protocol::rfc3339(at),
                path: crate::policy::names::display(&setup.cache.path, &rel),
                change: d.to_string(),
            });
        }
        state.view.kept.counts.absorb(&tally);
        state.over_budget |= trouble.budget.load(Relaxed);
        let unwatched = if trouble.limit.load(Relaxed) {
            Some(Degraded::WatchLimit)
        } else if trouble.budget.load(Relaxed) {
            Some(Degraded::WatchBudget { max: setup.max_watches })
        } else {
            first_unwatched.map(|first| Degraded::Unwatched { count: unwatched, first })
        };
        Outcome { result, tally, unwatched }
    }

    /// Checks `checks` (sorted by path) in one walk.
    fn check(&mut self, checks: &[(Vec<u8>, bool)]) {
        // An event on the root itself comes through its parent's watch: it may have been
        // deleted and made anew, which only a full reconcile of the new one covers.
        if checks.iter().any(|(rel, _)| rel.is_empty()) && self.root_changed() {
            let _ = self.full_scan();
            return;
        }
        let pinned = match self.root() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}");
                self.state.view.kept.counts.errors += 1;
                // Not dropped: a full reconcile follows, which says what is wrong.
                self.state.record.defer(Vec::new(), RETRY_AFTER);
                return;
            }
        };
        let refused = self.state.view.isolation.as_ref().map(|i| i.refused.is_some());
        let action = if refused == Some(false) { Action::Repair } else { self.guard(&pinned) };
        checks.iter().for_each(|(rel, deep)| self.state.record.unrepaired.forget(rel, *deep));
        let outcome = self.walk(&pinned, action, Some(checks));
        if let Err(e) = &outcome.result {
            let cause = format!("cannot open the cache root: {}", sys::describe(e));
            tracing::warn!(root = %self.setup.cache.path.display(), "{cause}");
            self.state.view.kept.counts.errors += 1;
            // Out of descriptors or memory for a moment: the check is done later,
            // never dropped; `status` shows it as unrepaired meanwhile.
            let record = &mut self.state.record;
            for (rel, _) in checks {
                record.unrepaired.insert(rel.clone(), unrepaired::Entry { cause: cause.clone(), owner: None });
                record.defer(rel.clone(), RETRY_AFTER);
            }
        }
        if let Some(reason) = outcome.unwatched {
            self.state.view.degraded = Some(reason);
        }
    }

    /// A full reconcile: what it found, or why it could not walk the cache.
    fn full_scan(&mut self) -> Reconciled {
        let cache = Arc::clone(&self.setup.cache);
        // Every watch is added again as the scan lists each directory.
        self.state.view.kept.counts.watches = 0;
        if std::mem::take(&mut self.state.over_budget) {
            self.renew_watcher();
        }
        let started = Instant::now();
        let mut refused = None;
        let mut outcome = None;
        let scanned = self.root().map_err(NotWalked::Root).and_then(|pinned| {
            let action = self.guard(&pinned);
            if action == Action::Check {
                refused = self.state.view.isolation.as_ref().and_then(|i| i.refused.clone());
            }
            let mut walked = self.walk(&pinned, action, None);
            let result = std::mem::replace(&mut walked.result, Ok(())).map_err(|e| {
                if transient(e.raw_os_error()) {
                    self.state.record.defer(Vec::new(), RETRY_AFTER);
                }
                NotWalked::Walk(Arc::new(e))
            });
            outcome = Some(walked);
            result
        });
        // Under systemd the usual cause is a cache the unit's sandbox hides: say so, and
        // give the drop-in, instead of leaving people to look for a read-only disk.
        let failure = scanned.err().map(|cause| NotReconciled { cause, advice: crate::sandbox::hidden(&cache.path) });
        let counts = &mut self.state.view.kept.counts;
        if let Some(why) = &failure {
            tracing::error!(root = %cache.path.display(), "full scan failed: {why}");
            counts.errors += 1;
        }
        let unwatched = outcome.as_mut().and_then(|o| o.unwatched.take());
        let tally = outcome.as_ref().map(|o| &o.tally);
        let count = |f: fn(&Tally) -> u64| tally.map_or(0, f);
        let reported = tally.map(Tally::reported_all).unwrap_or_default();
        let took = started.elapsed();
        let (entries, repaired) = (count(|t| t.entries.load(Relaxed)), count(|t| t.changed.load(Relaxed)));
        let info = ScanInfo {
            finished_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            duration_ms: took.as_millis() as u64,
            entries,
            finished: protocol::rfc3339(SystemTime::now()),
            repaired,
        };
        counts.full_scans += 1;
        counts.full_scan_ms += info.duration_ms;
        self.state.view.kept.last_scan = Some(LastScan { info: info.clone(), reported });
        // A full scan re-adds every watch, so after an overflow the cache is whole again;
        // what keeps it degraded is a root that cannot be opened, a watch limit that still
        // bites, or no inotify at all.
        self.state.view.degraded = match &failure {
            Some(why) => Some(Degraded::Unwalkable(why.to_string())),
            None if refused.is_some() => refused.map(Degraded::Refused),
            None if unwatched.is_some() => unwatched,
            None if !self.setup.polled && self.setup.watcher.is_none() => Some(Degraded::NoInotify),
            None => None,
        };
        self.state.view.scanned = true;
        sys::trim_memory();
        let left: Vec<String> = reported
            .by_reason()
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(r, n)| format!("{n} {}(s)", r.name()))
            .collect();
        let left = if left.is_empty() { String::new() } else { format!(", left as they are: {}", left.join(", ")) };
        tracing::info!(
            root = %cache.path.display(),
            "full scan: {entries} entries in {:.2}s, {repaired} repaired, {} unrepaired{left}",
            took.as_secs_f64(),
            self.state.record.unrepaired.count(),
        );
        match failure {
            Some(why) => Err(why),
            None => Ok(Some(info)),
        }
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
struct Findings<'r> {
    record: &'r mut Record,
    full: bool,
    /// A full scan builds the set anew, to replace the old one when it is done.
    fresh: unrepaired::Unrepaired,
    logged: usize,
    more: u64,
}

impl<'r> Findings<'r> {
    fn new(full: bool, record: &'r mut Record) -> Findings<'r> {
        if full {
            record.warned.clear();
            record.warned_bytes = 0;
        }
        Findings { record, full, fresh: Default::default(), logged: 0, more: 0 }
    }

    fn take(&mut self, note: crate::engine::walk::Note, root: &Path) {
        use crate::engine::walk::Finding;
        self.log(&note, root);
        if let Finding::Failed(f) = &note.finding {
            if transient(f.errno) {
                self.record.defer(note.rel.clone(), RETRY_AFTER);
            }
            let entry = unrepaired::Entry { cause: f.to_string(), owner: f.owner };
            let set = if self.full { &mut self.fresh } else { &mut self.record.unrepaired };
            set.insert(note.rel, entry);
        }
    }

    fn log(&mut self, note: &crate::engine::walk::Note, root: &Path) {
        use crate::engine::walk::Finding;
        if matches!(note.finding, Finding::Diverges(_)) {
            return;
        }
        let record = &mut *self.record;
        if record.warned.contains(&note.rel) {
            return;
        }
        if record.warned_bytes + note.rel.len() > MAX_WARNED_BYTES {
            self.more += 1;
            return;
        }
        record.warned_bytes += note.rel.len() + 32;
        record.warned.insert(note.rel.clone());
        if self.full && matches!(note.finding, Finding::Reported(_)) {
            // A full scan counts what it leaves as it is in its summary and in `status`.
            return;
        }
        if self.full {
            self.logged += 1;
            if self.logged > FINDINGS_LOGGED {
                self.more += 1;
                return;
            }
        }
        let path = crate::policy::names::display(root, &note.rel);
        match &note.finding {
            // git makes symlinks and hard links in its clones as it works (packs, locks);
            // they are counted, not warned about.
            Finding::Reported(r) if crate::policy::model::place_of(&note.rel) == crate::policy::model::Place::Vcs => {
                tracing::debug!(path = %path, "left as it is: {}", r.explain())
            }
            Finding::Reported(r) => tracing::warn!(path = %path, "left as it is: {}", r.explain()),
            Finding::Failed(f) => tracing::error!(path = %path, "{f}"),
            Finding::Diverges(_) => {}
        }
    }

    /// The walk is over: a full scan's set replaces the old one, what stays unrepaired
    /// is tried again after the back-off, and what was not logged is counted.
    fn finish(self, root: &Path) {
        let Findings { record, full, fresh, more, .. } = self;
        if full {
            record.unrepaired = fresh;
        }
        let again: Vec<Vec<u8>> = record.unrepaired.paths().cloned().collect();
        let after = record.backoff;
        for rel in again {
            record.defer(rel, after);
        }
        if more > 0 {
            tracing::error!(
                root = %root.display(),
                "{more} more entries could not be checked or repaired; `{} status --json` lists them",
                crate::policy::hint::command("cachekeeperctl")
            );
        }
    }
}

/// What a full reconcile answers whoever asked for it: what it found, or why it could
/// not walk the cache.
pub(crate) type Reconciled = Result<Option<ScanInfo>, NotReconciled>;

/// Why a full reconcile could not walk the cache, and, under systemd, the drop-in that
/// lets the unit's sandbox show it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cause}{}", .advice.as_ref().map(|a| format!("; {a}")).unwrap_or_default())]
pub(crate) struct NotReconciled {
    pub(crate) cause: NotWalked,
    pub(crate) advice: Option<String>,
}

/// What stopped a full reconcile.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NotWalked {
    #[error(transparent)]
    Root(RootTrouble),
    #[error("{reason}: {}", sys::describe(.0), reason = watch::UNWALKABLE_REASON)]
    Walk(Arc<std::io::Error>),
}

/// Why the worker has no root to walk: a cause of the whole cache.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RootTrouble {
    /// The path is not a root the rules accept, or cannot be made or opened.
    #[error("{reason}: {0}", reason = watch::UNWALKABLE_REASON)]
    Unusable(root::RootError),
    /// Another directory took the root's place: refused until an administrator accepts it.
    #[error("{0}")]
    Replaced(root::RootError),
}

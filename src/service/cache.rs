//! One cache being kept, as the control socket sees it: a handle that sends its worker
//! messages and reads the view the worker publishes ([`super::view`]), with no lock on
//! either side. What survives a reload travels in that view from the old worker to the
//! new one.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::sync::watch as latest;

use crate::engine::sidefile::{SafeDir, SideFileError};
use crate::policy::config::CacheConfig;
use crate::protocol::{self, CacheState, CacheStatus, ScanInfo};
use crate::sys;

use super::audit::AuditLog;
use super::view::{Kept, View};
use super::watch::{self, Degraded, DirWatcher, Queue, Work};
use super::worker::{self, Worker};
use super::worker::{NotReconciled, Reconciled};
use super::POLL_INTERVAL;

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
    NotReconciled(NotReconciled),
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

/// How a cache is watched, decided once at start.
#[derive(Debug, Clone)]
pub(super) struct Watching {
    pub(super) filesystem: String,
    /// The filesystem sends no events for other clients' writes: polled instead.
    pub(super) polled: bool,
}

/// One cache being kept: the handle through which the control socket reaches its worker.
pub(super) struct CacheRuntime {
    pub(super) cache: Arc<CacheConfig>,
    queue: Queue,
    view: latest::Receiver<Arc<View>>,
    /// Where `sync` creates its marker files, watched by this cache's inotify instance.
    sentinel: Result<SafeDir, Arc<SideFileError>>,
    watching: Watching,
    /// An inotify watcher exists (it may not: not polled, yet inotify failed).
    watched: bool,
    /// Set when the runtime stops: a walk under way ends early.
    pub(super) stopped: Arc<AtomicBool>,
}

/// What a cache's worker starts with.
pub(super) struct Start {
    pub(super) cache: CacheConfig,
    pub(super) sentinel: Result<SafeDir, Arc<SideFileError>>,
    /// What the worker that kept this cache before a reload left.
    pub(super) kept: Option<Kept>,
    pub(super) full_rescan: Duration,
    pub(super) audit: Option<Arc<AuditLog>>,
    pub(super) max_pending: usize,
    pub(super) max_watches: Option<u64>,
}

impl CacheRuntime {
    /// Starts the worker; the receiver is told when its first full reconcile is done.
    pub(super) fn start(start: Start) -> (Arc<CacheRuntime>, oneshot::Receiver<Reconciled>) {
        let Start { cache, sentinel, kept, full_rescan, audit, max_pending, max_watches: watch_budget } = start;
        let cache = Arc::new(cache);
        let (filesystem, polled) = sys::filesystem(&cache.path);
        let (queue, inbox) = watch::queue(max_pending);
        let mut degraded = None;
        let mut watcher = None;
        if polled {
            tracing::warn!(
                root = %cache.path.display(),
                "{filesystem} sends no events for other clients' writes: polling every {}s",
                POLL_INTERVAL.as_secs()
            );
        } else {
            let made = match &sentinel {
                Ok(dir) => DirWatcher::start(&cache.path, dir.path(), queue.clone(), 0),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            match made {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::error!(root = %cache.path.display(), "cannot watch, falling back to polling: {e}");
                    degraded = Some(Degraded::NoInotify);
                }
            }
        }
        let scanned = kept.is_some();
        let view = View { kept: kept.unwrap_or_default(), scanned, degraded, ..View::default() };
        let (publish, view_rx) = latest::channel(Arc::new(view.clone()));
        let (done_tx, done_rx) = oneshot::channel();
        queue.send(Work::Rescan { done: Some(done_tx), accept: false });
        let watching = Watching { filesystem, polled };
        let stopped = Arc::new(AtomicBool::new(false));
        let runtime = Arc::new(CacheRuntime {
            cache: Arc::clone(&cache),
            queue: queue.clone(),
            view: view_rx,
            sentinel,
            watched: watcher.is_some(),
            watching: watching.clone(),
            stopped: Arc::clone(&stopped),
        });
        let worker = Worker::new(
            worker::Setup {
                cache,
                inbox,
                queue,
                sentinel: runtime.sentinel.as_ref().ok().map(|d| d.path().to_owned()),
                stopped,
                audit,
                full_rescan,
                max_watches: max_watches(watch_budget),
                polled,
                watcher,
            },
            view,
            publish,
        );
        let name = format!("ck-{}", runtime.cache.path.display());
        if let Err(e) = std::thread::Builder::new().name(name).spawn(move || worker.run()) {
            tracing::error!("cannot start a worker thread: {e}");
        }
        (runtime, done_rx)
    }

    pub(super) fn watched(&self) -> bool {
        self.watched
    }

    /// The worker's latest view.
    pub(super) fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.borrow())
    }

    pub(super) fn state(&self) -> CacheState {
        self.view().state(self.watching.polled)
    }

    /// What stays unrepaired after a `sync` or `rescan`, and how much of it `uid` owns.
    pub(super) fn leftover(&self, uid: Option<u32>) -> Option<protocol::Leftover> {
        let view = self.view();
        let left = &view.unrepaired;
        (left.count > 0).then(|| protocol::Leftover {
            cache: self.cache.path.display().to_string(),
            unrepaired: left.count,
            yours: uid.map_or(0, |u| left.by_owner.get(&Some(u)).copied().unwrap_or(0)),
            first: left.first.clone(),
        })
    }

    /// A full reconcile, waited for; `accept`: an administrator accepts the directory now
    /// at the root's path. Fails when the worker is gone or the cache could not be walked.
    pub(super) async fn rescan(&self, accept: bool) -> Result<Option<ScanInfo>, Unsettled> {
        let (tx, rx) = oneshot::channel();
        if !self.queue.send(Work::Rescan { done: Some(tx), accept }) {
            return Err(Unsettled::Stopped);
        }
        rx.await.map_err(|_| Unsettled::Stopped)?.map_err(Unsettled::NotReconciled)
    }

    /// Every event that happened before this call has been handled: the marker file
    /// `token` goes through the cache's events behind them.
    pub(super) async fn barrier(&self, token: u64) -> Result<(), Unsettled> {
        let dir = self.sentinel.as_ref().map_err(|e| Unsettled::Marker(Arc::clone(e)))?;
        let (tx, rx) = oneshot::channel();
        // Before the marker exists: the worker knows the waiter when its event comes.
        if self.stopped.load(Relaxed) || !self.queue.send(Work::Await { token, done: tx }) {
            return Err(Unsettled::Stopped);
        }
        let marker = OsString::from(token.to_string());
        let result = match dir.create_file(&marker) {
            Ok(()) => rx.await.map_err(|_| Unsettled::Stopped),
            Err(e) => Err(Unsettled::Marker(Arc::new(e))),
        };
        let _ = dir.remove_file(&marker);
        result
    }

    /// Stops the worker and waits until it is gone; its last view holds what it kept.
    pub(super) async fn stop(&self) -> Kept {
        self.stopped.store(true, Relaxed);
        self.queue.send(Work::Stop);
        let mut view = self.view.clone();
        // The worker drops its end last, after its last view and its watcher.
        while view.changed().await.is_ok() {}
        let kept = view.borrow().kept.clone();
        kept
    }

    pub(super) fn status(&self) -> CacheStatus {
        let view = self.view();
        let kept = &view.kept;
        let last = kept.last_scan.as_ref();
        let polled = self.watching.polled;
        let degraded = view.degraded();
        let reason = degraded.as_ref().map(|d| d.to_string()).or_else(|| {
            polled.then(|| {
                format!(
                    "{} sends no events for other clients' writes: polled every {}s",
                    self.watching.filesystem,
                    POLL_INTERVAL.as_secs()
                )
            })
        });
        let reason_code = degraded.map(|d| d.code()).or(polled.then_some(protocol::ReasonCode::Polled));
        let isolation = view.isolation.as_ref();
        CacheStatus {
            path: self.cache.path.display().to_string(),
            state: view.state(polled),
            reason,
            reason_code,
            filesystem: self.watching.filesystem.clone(),
            entries: last.map_or(0, |l| l.info.entries),
            repairs: kept.counts.repairs,
            reported: last.map(|l| l.reported).unwrap_or_default(),
            // Cache-wide errors only: an entry that stays unrepaired is retried with
            // back-off, and counted once, in `unrepaired`, not once per attempt.
            errors: kept.counts.errors,
            last_full_scan: last.map(|l| l.info.clone()),
            full_scans: kept.counts.full_scans,
            full_scan_ms_total: kept.counts.full_scan_ms,
            queue_depth: self.queue.depth(),
            events_received: kept.counts.events,
            overflows: kept.counts.overflows,
            isolated: isolation.map(|i| i.isolated),
            isolation: isolation.map(|i| i.description.clone()),
            owner_model: Some(self.cache.policy),
            watches: kept.counts.watches,
            last_repair: kept.last_repair.clone(),
            inheritance: Some(crate::policy::model::Inheritance::of(&self.cache.policy, kept.counts.no_acl)),
            queue_collapses: self.queue.collapses(),
            unrepaired: view.unrepaired.count,
            unrepaired_entries: view.unrepaired.first.clone(),
        }
    }
}

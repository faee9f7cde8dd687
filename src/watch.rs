//! notify → work for a cache's worker: which paths to check, when a full reconcile is
//! needed, and when a `sync` barrier has passed. Also: which filesystems send no events
//! for other clients' writes, so that they are polled instead.
//!
//! Events are hints, not a record: the worker checks the current state of each path,
//! and every way events get lost (overflow, watch limit, network filesystems) falls back
//! to a full reconcile.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{Config, EventKindMask, RecommendedWatcher, Watcher};

/// What a cache's worker is asked to do, in order.
#[derive(Debug)]
pub enum Work {
    /// Check the entry at `rel`, and everything below it with `deep`.
    Check {
        rel: Vec<u8>,
        deep: bool,
    },
    /// Every item queued before this one has been handled: tell the waiter.
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// Full reconcile; tell the waiter, if any, when done.
    Rescan {
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Stop,
}

/// Sends work to a worker and keeps its queue depth.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: Sender<Work>,
    depth: Arc<AtomicU64>,
}

impl Queue {
    pub fn new(tx: Sender<Work>) -> Queue {
        Queue { tx, depth: Arc::new(AtomicU64::new(0)) }
    }

    /// False when the worker is gone.
    pub fn send(&self, work: Work) -> bool {
        self.depth.fetch_add(1, Relaxed);
        let sent = self.tx.send(work).is_ok();
        if !sent {
            self.depth.fetch_sub(1, Relaxed);
        }
        sent
    }

    pub fn taken(&self, n: u64) {
        self.depth.fetch_sub(n, Relaxed);
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Relaxed)
    }
}

#[cfg(not(target_os = "macos"))]
pub const OVERFLOW_REASON: &str = "the inotify event queue overflowed within the last 10 minutes and events \
     were lost; full reconciles cover them (raise the sysctl fs.inotify.max_queued_events)";
/// FSEvents says it dropped events with `MustScanSubDirs`, which notify turns into the
/// same rescan notice as an inotify overflow.
#[cfg(target_os = "macos")]
pub const OVERFLOW_REASON: &str = "FSEvents dropped events within the last 10 minutes (MustScanSubDirs); \
     full reconciles cover them";
/// How long a cache stays degraded after an overflow: the queue is too small for its
/// load, and the operator should hear of it even though the reconcile repaired all.
pub const OVERFLOW_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);
pub const NO_INOTIFY_REASON: &str = "inotify is not available (raise the sysctl fs.inotify.max_user_instances?): \
     the cache is reconciled every minute instead";
/// The start of the reason of a cache whose full reconcile could not walk it; the cause
/// (and, under systemd, the sandbox's drop-in) follows.
pub const UNWALKABLE_REASON: &str = "the cache root cannot be walked";
pub const WATCH_LIMIT_REASON: &str = "the inotify watch limit is reached, so part of the cache is not watched \
     and is covered by periodic full reconciles (raise the sysctl fs.inotify.max_user_watches)";

/// Shared between the notify thread (which fills it) and the service.
#[derive(Debug, Default)]
pub struct Counters {
    pub events: AtomicU64,
    pub overflows: AtomicU64,
    pub errors: AtomicU64,
    pub last_overflow: Mutex<Option<std::time::Instant>>,
}

impl Counters {
    /// An overflow happened within [`OVERFLOW_MEMORY`].
    pub fn overflowed_recently(&self) -> bool {
        self.last_overflow.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() < OVERFLOW_MEMORY)
    }
}

/// Waiters of `sync`, by token; a token is the name of a file created in the sentinel
/// directory, watched by the same inotify instance as the cache.
pub type Waiters = Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>>;

/// Why the cache is degraded, set by the notify thread on overflow.
pub type Degradation = Arc<Mutex<Option<String>>>;

/// The inotify mask: creations and renames (new entries), attribute changes (someone
/// chmods or chowns) and removals/renames away (so notify forgets moved watches). No
/// open, access or close events: `go build` reading thousands of cached files must not
/// flood the queue (notify 8 always asked for IN_OPEN; notify 9 lets us leave it out).
pub fn watcher_config() -> Config {
    Config::default().with_event_kinds(
        EventKindMask::CREATE | EventKindMask::REMOVE | EventKindMask::MODIFY_META | EventKindMask::MODIFY_NAME,
    )
}

#[derive(Debug)]
pub struct Handler {
    pub root: PathBuf,
    pub sentinel: PathBuf,
    pub queue: Queue,
    pub counters: Arc<Counters>,
    pub waiters: Waiters,
    pub degraded: Degradation,
}

impl Handler {
    pub fn watcher(self) -> notify::Result<RecommendedWatcher> {
        RecommendedWatcher::new(move |res| self.handle(res), watcher_config())
    }

    fn handle(&self, res: notify::Result<notify::Event>) {
        let event = match res {
            Ok(event) => event,
            Err(e) => {
                self.counters.errors.fetch_add(1, Relaxed);
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = Some(WATCH_LIMIT_REASON.to_owned());
                    self.queue.send(Work::Rescan { done: None });
                } else {
                    tracing::warn!(root = %self.root.display(), "watch error: {e}");
                }
                return;
            }
        };
        if event.need_rescan() {
            self.counters.overflows.fetch_add(1, Relaxed);
            *self.counters.last_overflow.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            tracing::warn!(root = %self.root.display(), "{OVERFLOW_REASON}");
            self.queue.send(Work::Rescan { done: None });
            // The sentinel events of pending syncs may be among the lost ones. The
            // reconcile just queued covers everything that happened before them, so
            // their barriers can follow it.
            let waiting: Vec<_> = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
            for (_, tx) in waiting {
                self.queue.send(Work::Barrier(tx));
            }
            return;
        }
        let deep = match event.kind {
            // A new or moved-in directory may already hold entries created before its
            // watch existed: check everything below it.
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => true,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => true,
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) | EventKind::Access(_) => return,
            EventKind::Modify(_) | EventKind::Any | EventKind::Other => false,
        };
        // A rename within the tree carries (from, to): only `to` exists now.
        let paths = match event.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => &event.paths[event.paths.len().min(1)..],
            _ => &event.paths[..],
        };
        for path in paths {
            if let Ok(name) = path.strip_prefix(&self.sentinel) {
                if matches!(event.kind, EventKind::Create(_)) {
                    self.barrier(name);
                }
            } else if let Ok(rel) = path.strip_prefix(&self.root) {
                self.counters.events.fetch_add(1, Relaxed);
                self.queue.send(Work::Check { rel: rel.as_os_str().as_bytes().to_vec(), deep });
            }
        }
    }

    /// The sentinel file of a `sync` appeared: every event before it has been queued.
    fn barrier(&self, name: &Path) {
        let Some(token) = name.to_str().and_then(|s| s.parse::<u64>().ok()) else { return };
        let waiter = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
        if let Some(tx) = waiter {
            self.queue.send(Work::Barrier(tx));
        }
    }
}

/// The filesystem of `path`, and whether it must be polled: network and FUSE
/// filesystems send no inotify events for writes made by other clients.
#[cfg(target_os = "macos")]
pub fn filesystem(path: &Path) -> (String, bool) {
    let Ok(st) = nix::sys::statfs::statfs(path) else { return ("unknown".into(), false) };
    // macOS names the filesystem (f_fstypename); FSEvents, like inotify, sees only the
    // writes made through this kernel.
    let name = st.filesystem_type_name().to_owned();
    let network = matches!(name.as_str(), "nfs" | "smbfs" | "afpfs" | "webdav" | "macfuse" | "osxfuse" | "fuse");
    (name, network)
}

/// The filesystem of `path`, and whether it must be polled: network and FUSE
/// filesystems send no inotify events for writes made by other clients.
#[cfg(not(target_os = "macos"))]
pub fn filesystem(path: &Path) -> (String, bool) {
    let Ok(st) = nix::sys::statfs::statfs(path) else { return ("unknown".into(), false) };
    // The magic numbers of statfs(2).
    let (name, network) = match st.filesystem_type().0 as u64 {
        0xEF53 => ("ext4", false),
        0x5846_5342 => ("xfs", false),
        0x9123_683E => ("btrfs", false),
        0x0102_1994 => ("tmpfs", false),
        0x794C_7630 => ("overlayfs", false),
        0x2FC1_2FC1 => ("zfs", false),
        0xF2F5_2010 => ("f2fs", false),
        0x6969 => ("nfs", true),
        0x517B => ("smb", true),
        0xFE53_4D42 => ("smb2", true),
        0xFF53_4D42 => ("cifs", true),
        0x6573_5546 => ("fuse", true),
        0x00C3_6400 => ("ceph", true),
        0x0102_1997 => ("9p", true),
        0x5346_414F => ("afs", true),
        0x0BD0_0BD0 => ("lustre", true),
        0x4750_4653 => ("gpfs", true),
        other => return (format!("0x{other:x}"), false),
    };
    (name.to_owned(), network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag};

    fn handler() -> (Handler, std::sync::mpsc::Receiver<Work>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = Handler {
            root: PathBuf::from("/c/mod"),
            sentinel: PathBuf::from("/run/ck.sync"),
            queue: Queue::new(tx),
            counters: Arc::default(),
            waiters: Arc::default(),
            degraded: Arc::default(),
        };
        (h, rx)
    }

    /// FSEvents' `MustScanSubDirs` arrives as a rescan notice *with* a path (an inotify
    /// overflow has none): both take the full reconcile, never a check of that path.
    #[test]
    fn a_rescan_notice_with_or_without_a_path_is_a_full_reconcile() {
        for paths in [vec![], vec![PathBuf::from("/c/mod/cache/download")], vec![PathBuf::from("/")]] {
            let (h, rx) = handler();
            let mut event = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
            event.paths = paths;
            h.handle(Ok(event));
            assert!(matches!(rx.try_recv(), Ok(Work::Rescan { done: None })));
            assert!(rx.try_recv().is_err(), "nothing but the reconcile");
            assert_eq!(h.counters.overflows.load(Relaxed), 1);
        }
        let (h, rx) = handler();
        h.handle(Ok(notify::Event::new(EventKind::Create(CreateKind::File)).add_path("/c/mod/x".into())));
        assert!(matches!(rx.try_recv(), Ok(Work::Check { rel, deep: true }) if rel == b"x"));
    }
}

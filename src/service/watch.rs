//! inotify → work for a cache's worker: which paths to check, when a full reconcile is
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
use std::sync::{Arc, Condvar, Mutex};

#[cfg(target_os = "linux")]
use nix::errno::Errno;
#[cfg(target_os = "linux")]
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

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

/// A cache's pending work: a bounded, coalescing set shared by the notify thread (which
/// fills it) and the cache's worker (which empties it). A path is pending once (deep if
/// any event asked so); past `max` paths, or `max` × 128 bytes of them, they collapse
/// into one full reconcile, as for an inotify overflow, so that a flood of events costs
/// a bounded amount of memory whatever its size or depth.
#[derive(Debug, Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    inbox: Mutex<Inbox>,
    ready: Condvar,
    max: usize,
    collapses: AtomicU64,
}

/// What the worker takes in one go.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Paths to check, and whether to go deep.
    pub checks: HashMap<Vec<u8>, bool>,
    bytes: usize,
    /// A full reconcile is due: it covers every check queued with it.
    pub rescan: bool,
    /// Told when that reconcile is done.
    pub rescan_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Told once everything taken with them is done.
    pub barriers: Vec<tokio::sync::oneshot::Sender<()>>,
    pub stop: bool,
    /// The worker is gone: nothing is taken any more.
    closed: bool,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.checks.is_empty() && !self.rescan && self.barriers.is_empty() && !self.stop
    }
}

impl Queue {
    pub fn new(max: usize) -> Queue {
        Queue {
            shared: Arc::new(Shared {
                inbox: Mutex::default(),
                ready: Condvar::new(),
                max: max.max(1),
                collapses: AtomicU64::new(0),
            }),
        }
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when the worker is gone.
    pub fn send(&self, work: Work) -> bool {
        let mut inbox = self.inbox();
        if inbox.closed {
            return false;
        }
        match work {
            Work::Check { rel, deep } => {
                if inbox.rescan {
                    // The reconcile still to come covers it.
                } else if let Some(d) = inbox.checks.get_mut(&rel) {
                    *d |= deep;
                } else if inbox.checks.len() >= self.shared.max || inbox.bytes > self.shared.max * 128 {
                    let n = inbox.checks.len();
                    inbox.checks = HashMap::new();
                    inbox.bytes = 0;
                    inbox.rescan = true;
                    self.shared.collapses.fetch_add(1, Relaxed);
                    tracing::warn!(
                        "{n} paths pending (daemon.max_pending is {}): they become one full reconcile",
                        self.shared.max
                    );
                } else {
                    inbox.bytes += rel.len();
                    inbox.checks.insert(rel, deep);
                }
            }
            Work::Barrier(tx) => inbox.barriers.push(tx),
            Work::Rescan { done } => {
                inbox.rescan = true;
                inbox.checks = HashMap::new();
                inbox.bytes = 0;
                inbox.rescan_waiters.extend(done);
            }
            Work::Stop => inbox.stop = true,
        }
        drop(inbox);
        self.shared.ready.notify_one();
        true
    }

    /// Everything pending, once there is something or `until` has come (`None`).
    pub fn take(&self, until: std::time::Instant) -> Option<Inbox> {
        let mut inbox = self.inbox();
        while inbox.is_empty() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            inbox = self.shared.ready.wait_timeout(inbox, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Some(std::mem::take(&mut *inbox))
    }

    /// The worker is gone: refuse further work, and drop the waiters, whose `sync` or
    /// `rescan` then fails instead of waiting forever.
    pub fn close(&self) {
        let mut inbox = self.inbox();
        *inbox = Inbox::default();
        inbox.closed = true;
    }

    /// Paths pending now (a due reconcile counts as one).
    pub fn depth(&self) -> u64 {
        let inbox = self.inbox();
        inbox.checks.len() as u64 + u64::from(inbox.rescan)
    }

    /// How often the pending paths collapsed into a full reconcile.
    pub fn collapses(&self) -> u64 {
        self.shared.collapses.load(Relaxed)
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

/// Why the cache is degraded, set by the worker after each walk and by the notify
/// thread when the kernel refuses a watch.
pub type Degradation = Arc<Mutex<Option<Degraded>>>;

/// Why a cache's events cannot be trusted, or its tree is not whole: `Display` says
/// what happened and what to do about it (it is `status`'s `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Degraded {
    /// inotify's queue overflowed within [`OVERFLOW_MEMORY`].
    Overflow,
    /// No inotify instance could be made.
    NoInotify,
    /// The root cannot be resolved or walked; the message names the cause (and, under
    /// systemd, the sandbox's drop-in).
    Unwalkable(String),
    /// `fs.inotify.max_user_watches` refused a watch.
    WatchLimit,
    /// `daemon.max_watches` was reached.
    WatchBudget { max: u64 },
    /// Directories whose watch failed for another reason (a path longer than PATH_MAX).
    Unwatched { count: u64, first: String },
    /// The hard-link guard stops every change; the message says which setting.
    Refused(String),
}

impl std::fmt::Display for Degraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: u64, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        match self {
            Degraded::Overflow => f.write_str(OVERFLOW_REASON),
            Degraded::NoInotify => f.write_str(NO_INOTIFY_REASON),
            Degraded::Unwalkable(why) | Degraded::Refused(why) => f.write_str(why),
            Degraded::WatchLimit => f.write_str(WATCH_LIMIT_REASON),
            Degraded::WatchBudget { max } => write!(
                f,
                "the cache has more directories than daemon.max_watches ({max}): the rest is not watched and is \
                 covered by reconciles every minute (raise daemon.max_watches, and fs.inotify.max_user_watches with it)"
            ),
            Degraded::Unwatched { count, first } => write!(
                f,
                "{count} director{} cannot be watched (first: {first}), so changes there are covered by reconciles \
                 every minute only",
                plural(*count, "y", "ies")
            ),
        }
    }
}

/// Why a directory could not be watched.
#[derive(Debug)]
pub enum WatchError {
    /// `fs.inotify.max_user_watches` is used up.
    Limit,
    /// It was removed meanwhile.
    Gone,
    Other(std::io::Error),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Limit => f.write_str("the inotify watch limit is reached"),
            WatchError::Gone => f.write_str("it was removed"),
            WatchError::Other(e) => write!(f, "{}", crate::sys::describe(e)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Handler {
    pub root: PathBuf,
    pub sentinel: PathBuf,
    pub queue: Queue,
    pub counters: Arc<Counters>,
    pub waiters: Waiters,
}

impl Handler {
    /// Every `sync` waiting for its marker: its barrier follows the work already queued
    /// (after an overflow or a new watcher, the marker's event may be lost).
    pub fn release_waiters(&self) {
        let waiting: Vec<_> = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        for (_, tx) in waiting {
            self.queue.send(Work::Barrier(tx));
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

/// Linux: inotify, a watch per directory added through the walk's own descriptor.
#[cfg(target_os = "linux")]
mod inotify_watcher {
    use super::*;

    /// What a cache directory's watch asks for: creations and renames in (new entries) and
    /// attribute changes (someone chmods or chowns). No open, access or close events: `go
    /// build` reading thousands of cached files must not flood the queue. The events of a
    /// directory about itself come to its parent's watch too, by name.
    const CACHE_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
        .union(AddWatchFlags::IN_MOVED_TO)
        .union(AddWatchFlags::IN_ATTRIB)
        .union(AddWatchFlags::IN_ONLYDIR);

    /// Watched directories by watch descriptor: their path relative to the root. A watch is
    /// added through the descriptor the walk holds (`/proc/self/fd/N`), never by path, so a
    /// swapped symlink cannot redirect it and depth does not matter; one short path per
    /// directory is all it costs.
    type Table = Arc<Mutex<HashMap<WatchDescriptor, Box<[u8]>>>>;

    /// One cache's inotify instance, read by a thread of its own that turns events into work.
    #[derive(Debug)]
    pub struct DirWatcher {
        inotify: Arc<Inotify>,
        table: Table,
        /// Dropping it wakes the reader, which then ends.
        wake: Option<std::os::fd::OwnedFd>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl DirWatcher {
        /// Watches the directory open as `dir`, whose path relative to the root is `rel`.
        pub fn watch_dir(&self, rel: &[u8], dir: std::os::fd::BorrowedFd<'_>) -> Result<(), WatchError> {
            let Some(path) = crate::sys::proc_path(dir) else {
                return Err(WatchError::Other(std::io::Error::other("no /proc to name the directory by")));
            };
            match self.inotify.add_watch(&path, CACHE_MASK) {
                Ok(wd) => {
                    self.table.lock().unwrap_or_else(|p| p.into_inner()).insert(wd, rel.into());
                    Ok(())
                }
                Err(Errno::ENOSPC) => Err(WatchError::Limit),
                Err(Errno::ENOENT) => Err(WatchError::Gone),
                Err(e) => Err(WatchError::Other(e.into())),
            }
        }

        /// Directories watched now (the kernel drops the watch of a removed one).
        pub fn watches(&self) -> usize {
            self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
        }
    }

    impl Drop for DirWatcher {
        fn drop(&mut self) {
            drop(self.wake.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// The watches the reader treats apart from the cache's directories.
    struct Fixed {
        sentinel: WatchDescriptor,
        /// The root's parent, and the root's name in it.
        parent: Option<(WatchDescriptor, std::ffi::OsString)>,
    }

    impl Handler {
        /// A new watcher with its fixed watches: the sentinel directory of `sync`, and the
        /// root's parent for the root's own name (`go clean -modcache` deletes the root and
        /// the next `go` command creates it again, which the root's own watch cannot see;
        /// events for other names there are ignored).
        pub fn start(self) -> std::io::Result<DirWatcher> {
            let inotify = Arc::new(Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?);
            let sentinel = inotify.add_watch(&self.sentinel, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR)?;
            let parent = match (self.root.parent(), self.root.file_name()) {
                (Some(parent), Some(name)) => {
                    let mask = AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_ATTRIB
                        | AddWatchFlags::IN_ONLYDIR;
                    match inotify.add_watch(parent, mask) {
                        Ok(wd) => Some((wd, name.to_owned())),
                        Err(e) => {
                            tracing::warn!(
                                root = %self.root.display(),
                                "cannot watch the root's parent, so a deleted root is noticed by the next sync or \
                                 reconcile only: {e}"
                            );
                            None
                        }
                    }
                }
                _ => None,
            };
            let (wake_read, wake) = nix::unistd::pipe()?;
            let table: Table = Arc::default();
            let fixed = Fixed { sentinel, parent };
            let thread = {
                let (inotify, table) = (Arc::clone(&inotify), Arc::clone(&table));
                std::thread::Builder::new()
                    .name("ck-inotify".into())
                    .spawn(move || self.read(&inotify, &table, &fixed, wake_read))?
            };
            Ok(DirWatcher { inotify, table, wake: Some(wake), thread: Some(thread) })
        }

        /// Reads events until the watcher is dropped.
        fn read(&self, inotify: &Inotify, table: &Table, fixed: &Fixed, wake: std::os::fd::OwnedFd) {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            loop {
                let mut fds =
                    [PollFd::new(inotify.as_fd(), PollFlags::POLLIN), PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!(root = %self.root.display(), "cannot wait for inotify events: {e}");
                        return;
                    }
                }
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    return;
                }
                match inotify.read_events() {
                    Ok(events) => {
                        for e in events {
                            self.handle(e, table, fixed);
                        }
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(e) => {
                        tracing::error!(root = %self.root.display(), "cannot read inotify events: {e}");
                        return;
                    }
                }
            }
        }

        /// One event → work: a path to check (deep for a new or moved-in entry, which may
        /// be a directory filled before its watch existed), a full reconcile after an
        /// overflow, or a `sync` barrier.
        fn handle(&self, e: nix::sys::inotify::InotifyEvent, table: &Table, fixed: &Fixed) {
            if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                self.counters.overflows.fetch_add(1, Relaxed);
                *self.counters.last_overflow.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now());
                tracing::warn!(root = %self.root.display(), "{OVERFLOW_REASON}");
                self.queue.send(Work::Rescan { done: None });
                // The sentinel events of pending syncs may be among the lost ones. The
                // reconcile just queued covers everything that happened before them, so
                // their barriers can follow it.
                self.release_waiters();
                return;
            }
            if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                table.lock().unwrap_or_else(|p| p.into_inner()).remove(&e.wd);
                return;
            }
            // A directory's events about itself also reach its parent's watch, by name.
            let Some(name) = e.name else { return };
            let deep = e.mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
            if e.wd == fixed.sentinel {
                if e.mask.contains(AddWatchFlags::IN_CREATE) {
                    self.barrier(Path::new(&name));
                }
                return;
            }
            if let Some((wd, root_name)) = &fixed.parent {
                if e.wd == *wd {
                    if name == *root_name {
                        self.counters.events.fetch_add(1, Relaxed);
                        self.queue.send(Work::Check { rel: Vec::new(), deep });
                    }
                    return;
                }
            }
            let dir = table.lock().unwrap_or_else(|p| p.into_inner()).get(&e.wd).map(|d| d.to_vec());
            let Some(dir) = dir else { return };
            self.counters.events.fetch_add(1, Relaxed);
            self.queue.send(Work::Check { rel: crate::names::join(&dir, name.as_bytes()), deep });
        }
    }
}
#[cfg(target_os = "linux")]
pub use inotify_watcher::DirWatcher;

/// Elsewhere (macOS): FSEvents through notify, one stream for the whole tree from the
/// root, so a directory needs no watch of its own.
#[cfg(not(target_os = "linux"))]
mod fsevents_watcher {
    use super::*;
    use notify::{RecursiveMode, Watcher};

    #[derive(Debug)]
    pub struct DirWatcher {
        _watcher: notify::RecommendedWatcher,
    }

    impl DirWatcher {
        /// The stream already covers every directory below the root.
        pub fn watch_dir(&self, _rel: &[u8], _dir: std::os::fd::BorrowedFd<'_>) -> Result<(), WatchError> {
            Ok(())
        }

        /// One stream, whatever the number of directories.
        pub fn watches(&self) -> usize {
            1
        }
    }

    impl Handler {
        /// A stream on the sentinel directory of `sync` and one on the whole tree; notify
        /// asks FSEvents for file-level events and for the root itself (WatchRoot), so a
        /// deleted or re-created root is seen too.
        pub fn start(self) -> std::io::Result<DirWatcher> {
            let (root, sentinel) = (self.root.clone(), self.sentinel.clone());
            let mut watcher =
                notify::RecommendedWatcher::new(move |res| self.handle_notify(res), notify::Config::default())
                    .map_err(std::io::Error::other)?;
            watcher.watch(&sentinel, RecursiveMode::NonRecursive).map_err(std::io::Error::other)?;
            watcher.watch(&root, RecursiveMode::Recursive).map_err(std::io::Error::other)?;
            Ok(DirWatcher { _watcher: watcher })
        }
    }
}
#[cfg(not(target_os = "linux"))]
pub use fsevents_watcher::DirWatcher;

#[cfg(any(test, not(target_os = "linux")))]
impl Handler {
    /// A notify event → work, as the inotify reader does it: FSEvents' `MustScanSubDirs`
    /// (events dropped, a path given) and an overflow (no path) both take the full
    /// reconcile; a new or moved-in entry is checked deep, a changed one alone.
    fn handle_notify(&self, res: notify::Result<notify::Event>) {
        use notify::event::{EventKind, ModifyKind, RenameMode};
        let event = match res {
            Ok(event) => event,
            Err(e) => {
                self.counters.errors.fetch_add(1, Relaxed);
                tracing::warn!(root = %self.root.display(), "watch error: {e}");
                self.queue.send(Work::Rescan { done: None });
                return;
            }
        };
        if event.need_rescan() {
            self.counters.overflows.fetch_add(1, Relaxed);
            *self.counters.last_overflow.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            tracing::warn!(root = %self.root.display(), "{OVERFLOW_REASON}");
            self.queue.send(Work::Rescan { done: None });
            self.release_waiters();
            return;
        }
        let deep = match event.kind {
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
    use notify::event::{CreateKind, EventKind, Flag};

    fn handler() -> Handler {
        Handler {
            root: PathBuf::from("/c/mod"),
            sentinel: PathBuf::from("/run/ck.sync"),
            queue: Queue::new(1000),
            counters: Arc::default(),
            waiters: Arc::default(),
        }
    }

    fn taken(h: &Handler) -> Inbox {
        h.queue.take(std::time::Instant::now()).unwrap_or_default()
    }

    /// FSEvents' `MustScanSubDirs` arrives as a rescan notice *with* a path (an inotify
    /// overflow has none): both take the full reconcile, never a check of that path.
    #[test]
    fn a_rescan_notice_with_or_without_a_path_is_a_full_reconcile() {
        for paths in [vec![], vec![PathBuf::from("/c/mod/cache/download")], vec![PathBuf::from("/")]] {
            let h = handler();
            let mut event = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
            event.paths = paths;
            h.handle_notify(Ok(event));
            let inbox = taken(&h);
            assert!(inbox.rescan && inbox.checks.is_empty(), "nothing but the reconcile: {inbox:?}");
            assert_eq!(h.counters.overflows.load(Relaxed), 1);
        }
        let h = handler();
        h.handle_notify(Ok(notify::Event::new(EventKind::Create(CreateKind::File)).add_path("/c/mod/x".into())));
        let inbox = taken(&h);
        assert_eq!(inbox.checks.get(b"x".as_slice()), Some(&true), "{inbox:?}");
    }
}

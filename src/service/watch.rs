//! A cache's watcher and queue. The kernel's events (read by a thread of the watcher's
//! own) and the control socket's requests reach the cache's worker as messages on one
//! queue, in the order they happened; the worker owns everything else. Which paths an
//! event asks to check is a pure function of the event ([`seen`]), applied by the worker
//! with the table of watched directories it keeps. Also: which filesystems send no
//! events for other clients' writes, so that they are polled instead.
//!
//! Events are hints, not a record: the worker checks the current state of each path,
//! and every way events get lost (overflow, watch limit, network filesystems) falls back
//! to a full reconcile.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use tokio::sync::oneshot;

use super::worker::Reconciled;

#[cfg(target_os = "linux")]
use nix::errno::Errno;
#[cfg(target_os = "linux")]
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// A message to a cache's worker; it handles them in order.
#[derive(Debug)]
pub(crate) enum Work {
    /// Events as inotify gave them, read from the watcher of `generation`: the worker
    /// ignores those of a watcher it has replaced (watch descriptors start anew).
    #[cfg(target_os = "linux")]
    Events {
        generation: u64,
        events: Vec<RawEvent>,
    },
    /// Events already mapped (FSEvents names paths, not watches).
    #[cfg(not(target_os = "linux"))]
    Seen(Vec<Seen>),
    /// More events came than `daemon.max_pending` while the worker was busy: they were
    /// dropped, and one full reconcile covers them.
    Collapsed,
    /// A `sync` waits: tell `done` once marker `token` came through the events, and
    /// everything before it is handled.
    Await {
        token: u64,
        done: oneshot::Sender<()>,
    },
    /// A full reconcile, answered to `done`. With `accept`, an administrator vouches for
    /// the directory now at the root's path (SPEC §4, root re-creation).
    Rescan {
        done: Option<oneshot::Sender<Reconciled>>,
        accept: bool,
    },
    Stop,
}

/// A cache's queue, the sending end (its watcher and its runtime hold one). Events are
/// counted until the worker takes them; past `max` they collapse into one full
/// reconcile, as an inotify overflow does, so that a flood of events costs a bounded
/// amount of memory however fast it comes.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    tx: mpsc::Sender<Work>,
    gauge: Arc<Gauge>,
}

#[derive(Debug)]
struct Gauge {
    /// Events sent and not taken yet.
    pending: AtomicUsize,
    max: usize,
    /// Events are dropped until the worker takes the [`Work::Collapsed`] that says so.
    collapsed: AtomicBool,
    collapses: AtomicU64,
}

/// The worker's end of its queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: mpsc::Receiver<Work>,
    gauge: Arc<Gauge>,
}

/// A new queue of at most `max` pending events.
pub(crate) fn queue(max: usize) -> (Queue, Inbox) {
    let (tx, rx) = mpsc::channel();
    let gauge = Arc::new(Gauge {
        pending: AtomicUsize::new(0),
        max: max.max(1),
        collapsed: AtomicBool::new(false),
        collapses: AtomicU64::new(0),
    });
    (Queue { tx, gauge: Arc::clone(&gauge) }, Inbox { rx, gauge })
}

impl Queue {
    /// False when the worker is gone.
    pub(crate) fn send(&self, work: Work) -> bool {
        let events = match &work {
            #[cfg(target_os = "linux")]
            Work::Events { events, .. } => events.len(),
            #[cfg(not(target_os = "linux"))]
            Work::Seen(seen) => seen.len(),
            _ => 0,
        };
        self.gauge.pending.fetch_add(events, Relaxed);
        self.tx.send(work).is_ok()
    }

    /// Whether `n` more events may wait: not while a collapse is pending (the reconcile
    /// to come covers them), nor past `max`, which starts one. A watcher told no keeps
    /// only the markers of `sync`, which no reconcile stands for.
    pub(crate) fn admit(&self, n: usize) -> bool {
        let g = &self.gauge;
        if g.collapsed.load(Relaxed) {
            return false;
        }
        if g.pending.load(Relaxed) + n <= g.max {
            return true;
        }
        if !g.collapsed.swap(true, Relaxed) {
            g.collapses.fetch_add(1, Relaxed);
            tracing::warn!("more than {} events pending (daemon.max_pending): they become one full reconcile", g.max);
            self.send(Work::Collapsed);
        }
        false
    }

    /// Events pending now (a due collapse counts as one).
    pub(crate) fn depth(&self) -> u64 {
        self.gauge.pending.load(Relaxed) as u64 + u64::from(self.gauge.collapsed.load(Relaxed))
    }

    /// How often pending events collapsed into a full reconcile.
    pub(crate) fn collapses(&self) -> u64 {
        self.gauge.collapses.load(Relaxed)
    }
}

impl Inbox {
    /// Everything queued, once there is something or `until` has come (`None`). A queue
    /// whose senders are all gone says `Stop`.
    pub(crate) fn take(&self, until: Instant) -> Option<Vec<Work>> {
        let first = match self.rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(work) => work,
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Work::Stop,
        };
        let mut all = vec![first];
        all.extend(self.rx.try_iter());
        for work in &all {
            match work {
                #[cfg(target_os = "linux")]
                Work::Events { events, .. } => {
                    self.gauge.pending.fetch_sub(events.len(), Relaxed);
                }
                #[cfg(not(target_os = "linux"))]
                Work::Seen(seen) => {
                    self.gauge.pending.fetch_sub(seen.len(), Relaxed);
                }
                Work::Collapsed => self.gauge.collapsed.store(false, Relaxed),
                _ => {}
            }
        }
        Some(all)
    }

    /// Pending paths the worker took passed `max` too: counted as a collapse.
    pub(crate) fn over(&self, paths: usize) -> bool {
        let over = paths > self.gauge.max;
        if over {
            self.gauge.collapses.fetch_add(1, Relaxed);
            tracing::warn!(
                "{paths} paths pending (daemon.max_pending is {}): they become one full reconcile",
                self.gauge.max
            );
        }
        over
    }
}

/// One event, as what the worker does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Check the entry at `rel`, and with `deep` everything below it: a new or moved-in
    /// entry may be a directory filled before its watch existed.
    Check { rel: Vec<u8>, deep: bool },
    /// Events were lost (inotify's queue overflowed, FSEvents' `MustScanSubDirs`): a
    /// full reconcile, and every `sync` waiting follows it.
    Lost,
    /// The watcher failed: a full reconcile, counted as an error.
    #[cfg(any(test, not(target_os = "linux")))]
    Failed(String),
    /// The marker of the `sync` `token` appeared: every event before it has come.
    Marker(u64),
    /// The kernel dropped watch `wd` (its directory is gone).
    #[cfg(target_os = "linux")]
    Dropped(i32),
    /// Nothing to do: another name in the root's parent, a watch no longer known.
    Nothing,
}

/// The name of a `sync` marker, as its token.
fn token(name: &std::ffi::OsStr) -> Option<u64> {
    name.to_str().and_then(|s| s.parse().ok())
}

/// An inotify event as read: the watch, what happened, and the name in the directory.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub wd: i32,
    pub mask: AddWatchFlags,
    pub name: Option<std::ffi::OsString>,
}

/// The watches a watcher holds besides the cache's directories: the sentinel directory
/// of `sync`, and the root's parent with the root's name in it.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    pub sentinel: i32,
    pub parent: Option<(i32, std::ffi::OsString)>,
}

/// The cache's watched directories by watch descriptor: their path relative to the
/// root. A watch is added through the descriptor the walk holds, never by path, so a
/// swapped symlink cannot redirect it; one short path per directory is all it costs.
pub(crate) type Watched = std::collections::HashMap<i32, Box<[u8]>>;

/// One inotify event → what to do. A directory's events about itself reach its
/// parent's watch too, by name, so an event with no name is nothing to check; a new or
/// moved-in entry is checked deep; an event in the root's parent matters only for the
/// root's own name (`go clean -modcache` deletes the root and the next `go` command
/// makes it again, which the root's own watch cannot see).
#[cfg(target_os = "linux")]
pub(crate) fn seen(e: &RawEvent, fixed: &Fixed, watched: &Watched) -> Seen {
    if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
        return Seen::Lost;
    }
    if e.mask.contains(AddWatchFlags::IN_IGNORED) {
        return Seen::Dropped(e.wd);
    }
    let Some(name) = &e.name else { return Seen::Nothing };
    if e.wd == fixed.sentinel {
        return match token(name) {
            Some(t) if e.mask.contains(AddWatchFlags::IN_CREATE) => Seen::Marker(t),
            _ => Seen::Nothing,
        };
    }
    let deep = e.mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
    if let Some((wd, root_name)) = &fixed.parent {
        if e.wd == *wd {
            return if name == root_name { Seen::Check { rel: Vec::new(), deep } } else { Seen::Nothing };
        }
    }
    use std::os::unix::ffi::OsStrExt;
    match watched.get(&e.wd) {
        Some(dir) => Seen::Check { rel: crate::policy::names::join(dir, name.as_bytes()), deep },
        None => Seen::Nothing,
    }
}

/// A notify event → what to do, as [`seen`] does for inotify: FSEvents'
/// `MustScanSubDirs` (events dropped, a path given) and an overflow (no path) both take
/// the full reconcile; a new or moved-in entry is checked deep, a changed one alone.
#[cfg(any(test, not(target_os = "linux")))]
pub fn seen_by_notify(res: notify::Result<notify::Event>, root: &Path, sentinel: &Path) -> Vec<Seen> {
    use notify::event::{EventKind, ModifyKind, RenameMode};
    use std::os::unix::ffi::OsStrExt;
    let event = match res {
        Ok(event) => event,
        Err(e) => return vec![Seen::Failed(e.to_string())],
    };
    if event.need_rescan() {
        return vec![Seen::Lost];
    }
    let deep = match event.kind {
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => true,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) | EventKind::Access(_) => return Vec::new(),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => false,
    };
    // A rename within the tree carries (from, to): only `to` exists now.
    let paths = match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => &event.paths[event.paths.len().min(1)..],
        _ => &event.paths[..],
    };
    let created = matches!(event.kind, EventKind::Create(_));
    paths
        .iter()
        .map(|path| match (path.strip_prefix(sentinel), path.strip_prefix(root)) {
            (Ok(name), _) => match token(name.as_os_str()) {
                Some(t) if created => Seen::Marker(t),
                _ => Seen::Nothing,
            },
            (_, Ok(rel)) => Seen::Check { rel: rel.as_os_str().as_bytes().to_vec(), deep },
            _ => Seen::Nothing,
        })
        .collect()
}

#[cfg(not(target_os = "macos"))]
pub(crate) const OVERFLOW_REASON: &str = "the inotify event queue overflowed within the last 10 minutes and events \
     were lost; full reconciles cover them (raise the sysctl fs.inotify.max_queued_events)";
/// FSEvents says it dropped events with `MustScanSubDirs`, which notify turns into the
/// same rescan notice as an inotify overflow.
#[cfg(target_os = "macos")]
pub const OVERFLOW_REASON: &str = "FSEvents dropped events within the last 10 minutes (MustScanSubDirs); \
     full reconciles cover them";
/// How long a cache stays degraded after an overflow: the queue is too small for its
/// load, and the operator should hear of it even though the reconcile repaired all.
pub(crate) const OVERFLOW_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);
pub(crate) const NO_INOTIFY_REASON: &str =
    "inotify is not available (raise the sysctl fs.inotify.max_user_instances?): \
     the cache is reconciled every minute instead";
/// The start of the reason of a cache whose full reconcile could not walk it; the cause
/// (and, under systemd, the sandbox's drop-in) follows.
pub(crate) const UNWALKABLE_REASON: &str = "the cache root cannot be walked";
pub(crate) const WATCH_LIMIT_REASON: &str = "the inotify watch limit is reached, so part of the cache is not watched \
     and is covered by periodic full reconciles (raise the sysctl fs.inotify.max_user_watches)";

/// Why a cache's events cannot be trusted, or its tree is not whole: `Display` says
/// what happened and what to do about it (it is `status`'s `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Degraded {
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

impl Degraded {
    pub(crate) fn code(&self) -> crate::protocol::ReasonCode {
        use crate::protocol::ReasonCode;
        match self {
            Degraded::Overflow => ReasonCode::Overflow,
            Degraded::NoInotify => ReasonCode::NoInotify,
            Degraded::Unwalkable(_) => ReasonCode::Unwalkable,
            Degraded::WatchLimit => ReasonCode::WatchLimit,
            Degraded::WatchBudget { .. } => ReasonCode::WatchBudget,
            Degraded::Unwatched { .. } => ReasonCode::Unwatched,
            Degraded::Refused(_) => ReasonCode::Refused,
        }
    }
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

/// Why a directory could not be watched. Only inotify refuses one: FSEvents watches the
/// whole tree with one stream.
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum WatchError {
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

/// Linux: inotify, a watch per directory added through the walk's own descriptor.
#[cfg(target_os = "linux")]
mod inotify_watcher {
    use super::*;

    use std::os::fd::OwnedFd;

    /// What a cache directory's watch asks for: creations and renames in (new entries) and
    /// attribute changes (someone chmods or chowns). No open, access or close events: `go
    /// build` reading thousands of cached files must not flood the queue. The events of a
    /// directory about itself come to its parent's watch too, by name.
    const CACHE_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
        .union(AddWatchFlags::IN_MOVED_TO)
        .union(AddWatchFlags::IN_ATTRIB)
        .union(AddWatchFlags::IN_ONLYDIR);

    /// One cache's inotify instance, read by a thread of its own that sends the events,
    /// as read, to the cache's queue.
    #[derive(Debug)]
    pub(crate) struct DirWatcher {
        inotify: Arc<Inotify>,
        fixed: Fixed,
        generation: u64,
        /// Dropping it wakes the reader, which then ends.
        wake: Option<OwnedFd>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl DirWatcher {
        /// A new watcher with its fixed watches: the sentinel directory of `sync`, and the
        /// root's parent for the root's own name (events for other names there are
        /// ignored).
        pub(crate) fn start(
            root: &Path,
            sentinel: &Path,
            queue: Queue,
            generation: u64,
        ) -> std::io::Result<DirWatcher> {
            let inotify = Arc::new(Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?);
            let sentinel = inotify.add_watch(sentinel, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR)?;
            let parent = match (root.parent(), root.file_name()) {
                (Some(parent), Some(name)) => match inotify.add_watch(parent, CACHE_MASK) {
                    Ok(wd) => Some((wd.as_raw(), name.to_owned())),
                    Err(e) => {
                        tracing::warn!(
                            root = %root.display(),
                            "cannot watch the root's parent, so a deleted root is noticed by the next sync or \
                             reconcile only: {e}"
                        );
                        None
                    }
                },
                _ => None,
            };
            let (wake_read, wake) = nix::unistd::pipe()?;
            let fixed = Fixed { sentinel: sentinel.as_raw(), parent };
            let thread = {
                let (inotify, root, id) = (Arc::clone(&inotify), root.to_owned(), (generation, fixed.sentinel));
                std::thread::Builder::new()
                    .name("ck-inotify".into())
                    .spawn(move || read(&inotify, &root, &queue, id, wake_read))?
            };
            Ok(DirWatcher { inotify, fixed, generation, wake: Some(wake), thread: Some(thread) })
        }

        /// Watches the directory open as `dir`; its watch descriptor.
        pub(crate) fn watch_dir(&self, dir: std::os::fd::BorrowedFd<'_>) -> Result<Option<i32>, WatchError> {
            let Some(path) = crate::sys::proc_path(dir) else {
                return Err(WatchError::Other(std::io::Error::other("no /proc to name the directory by")));
            };
            match self.inotify.add_watch(&path, CACHE_MASK) {
                Ok(wd) => Ok(Some(wd.as_raw())),
                Err(Errno::ENOSPC) => Err(WatchError::Limit),
                Err(Errno::ENOENT) => Err(WatchError::Gone),
                Err(e) => Err(WatchError::Other(e.into())),
            }
        }

        pub(crate) fn fixed(&self) -> &Fixed {
            &self.fixed
        }

        pub(crate) fn generation(&self) -> u64 {
            self.generation
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

    /// Reads events until the watcher is dropped or the worker is gone.
    fn read(inotify: &Inotify, root: &Path, queue: &Queue, (generation, sentinel): (u64, i32), wake: OwnedFd) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let mut fds =
                [PollFd::new(inotify.as_fd(), PollFlags::POLLIN), PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(root = %root.display(), "cannot wait for inotify events: {e}");
                    return;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
            match inotify.read_events() {
                Ok(events) => {
                    let mut events: Vec<RawEvent> = events
                        .into_iter()
                        .map(|e| RawEvent { wd: e.wd.as_raw(), mask: e.mask, name: e.name })
                        .collect();
                    if !queue.admit(events.len()) {
                        events.retain(|e| e.wd == sentinel);
                    }
                    if !events.is_empty() && !queue.send(Work::Events { generation, events }) {
                        return;
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!(root = %root.display(), "cannot read inotify events: {e}");
                    return;
                }
            }
        }
    }
}
#[cfg(target_os = "linux")]
pub(crate) use inotify_watcher::DirWatcher;

/// Elsewhere (macOS): FSEvents through notify, one stream for the whole tree from the
/// root, so a directory needs no watch of its own.
#[cfg(not(target_os = "linux"))]
mod fsevents_watcher {
    use super::*;
    use notify::{RecursiveMode, Watcher};

    #[derive(Debug)]
    pub struct DirWatcher {
        _watcher: notify::RecommendedWatcher,
        generation: u64,
    }

    impl DirWatcher {
        /// A stream on the sentinel directory of `sync` and one on the whole tree; notify
        /// asks FSEvents for file-level events and for the root itself (WatchRoot), so a
        /// deleted or re-created root is seen too.
        pub fn start(root: &Path, sentinel: &Path, queue: Queue, generation: u64) -> std::io::Result<DirWatcher> {
            let (root, sentinel) = (root.to_owned(), sentinel.to_owned());
            let (r, s) = (root.clone(), sentinel.clone());
            let handle = move |res| {
                let mut seen = seen_by_notify(res, &r, &s);
                if !queue.admit(seen.len()) {
                    seen.retain(|s| matches!(s, Seen::Marker(_)));
                }
                if !seen.is_empty() {
                    queue.send(Work::Seen(seen));
                }
            };
            let mut watcher =
                notify::RecommendedWatcher::new(handle, notify::Config::default()).map_err(std::io::Error::other)?;
            watcher.watch(&sentinel, RecursiveMode::NonRecursive).map_err(std::io::Error::other)?;
            watcher.watch(&root, RecursiveMode::Recursive).map_err(std::io::Error::other)?;
            Ok(DirWatcher { _watcher: watcher, generation })
        }

        /// The stream already covers every directory below the root.
        pub fn watch_dir(&self, _dir: std::os::fd::BorrowedFd<'_>) -> Result<Option<i32>, WatchError> {
            Ok(None)
        }

        pub fn generation(&self) -> u64 {
            self.generation
        }
    }
}
#[cfg(not(target_os = "linux"))]
pub use fsevents_watcher::DirWatcher;

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, EventKind, Flag};
    use std::path::PathBuf;

    /// FSEvents' `MustScanSubDirs` arrives as a rescan notice *with* a path (an inotify
    /// overflow has none): both take the full reconcile, never a check of that path.
    #[test]
    fn a_rescan_notice_with_or_without_a_path_is_a_full_reconcile() {
        let (root, sentinel) = (Path::new("/c/mod"), Path::new("/run/ck.sync"));
        for paths in [vec![], vec![PathBuf::from("/c/mod/cache/download")], vec![PathBuf::from("/")]] {
            let mut event = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
            event.paths = paths;
            assert_eq!(seen_by_notify(Ok(event), root, sentinel), [Seen::Lost]);
        }
        let created = notify::Event::new(EventKind::Create(CreateKind::File));
        assert_eq!(
            seen_by_notify(Ok(created.clone().add_path("/c/mod/x".into())), root, sentinel),
            [Seen::Check { rel: b"x".to_vec(), deep: true }]
        );
        assert_eq!(seen_by_notify(Ok(created.add_path("/run/ck.sync/7".into())), root, sentinel), [Seen::Marker(7)]);
    }

    #[cfg(target_os = "linux")]
    mod inotify {
        use super::*;
        use nix::sys::inotify::AddWatchFlags as F;

        const SENTINEL: i32 = 1;
        const PARENT: i32 = 2;
        const DOWNLOAD: i32 = 3;

        fn fixed() -> Fixed {
            Fixed { sentinel: SENTINEL, parent: Some((PARENT, "mod".into())) }
        }

        fn watched() -> Watched {
            [(DOWNLOAD, b"cache/download".to_vec().into_boxed_slice())].into_iter().collect()
        }

        fn event(wd: i32, mask: F, name: Option<&str>) -> Seen {
            seen(&RawEvent { wd, mask, name: name.map(Into::into) }, &fixed(), &watched())
        }

        fn check(rel: &str, deep: bool) -> Seen {
            Seen::Check { rel: rel.as_bytes().to_vec(), deep }
        }

        #[test]
        fn an_overflow_is_a_full_reconcile_whatever_its_watch() {
            assert_eq!(event(-1, F::IN_Q_OVERFLOW, None), Seen::Lost);
        }

        #[test]
        fn a_dropped_watch_is_forgotten() {
            assert_eq!(event(DOWNLOAD, F::IN_IGNORED, None), Seen::Dropped(DOWNLOAD));
        }

        #[test]
        fn a_new_or_moved_in_entry_is_checked_deep_and_a_changed_one_alone() {
            assert_eq!(event(DOWNLOAD, F::IN_CREATE, Some("x")), check("cache/download/x", true));
            assert_eq!(event(DOWNLOAD, F::IN_CREATE | F::IN_ISDIR, Some("d")), check("cache/download/d", true));
            assert_eq!(event(DOWNLOAD, F::IN_MOVED_TO, Some("y")), check("cache/download/y", true));
            assert_eq!(event(DOWNLOAD, F::IN_ATTRIB, Some("z")), check("cache/download/z", false));
        }

        /// Watches do not ask for IN_MOVED_FROM; were one to come, its check finds the
        /// name gone. The pair's other half, IN_MOVED_TO, is checked deep.
        #[test]
        fn the_two_halves_of_a_rename() {
            assert_eq!(event(DOWNLOAD, F::IN_MOVED_FROM, Some("a")), check("cache/download/a", false));
            assert_eq!(event(DOWNLOAD, F::IN_MOVED_TO, Some("b")), check("cache/download/b", true));
        }

        #[test]
        fn an_event_of_a_directory_about_itself_is_nothing_to_check() {
            assert_eq!(event(DOWNLOAD, F::IN_ATTRIB | F::IN_ISDIR, None), Seen::Nothing);
            assert_eq!(event(DOWNLOAD, F::IN_DELETE_SELF, None), Seen::Nothing);
        }

        #[test]
        fn the_roots_parent_matters_for_the_roots_name_only() {
            assert_eq!(event(PARENT, F::IN_CREATE | F::IN_ISDIR, Some("mod")), check("", true));
            assert_eq!(event(PARENT, F::IN_ATTRIB | F::IN_ISDIR, Some("mod")), check("", false));
            assert_eq!(event(PARENT, F::IN_CREATE, Some("other")), Seen::Nothing);
        }

        #[test]
        fn a_sync_marker_is_a_barrier_and_nothing_else_there_is() {
            assert_eq!(event(SENTINEL, F::IN_CREATE, Some("42")), Seen::Marker(42));
            assert_eq!(event(SENTINEL, F::IN_CREATE, Some("x")), Seen::Nothing);
            assert_eq!(event(SENTINEL, F::IN_ATTRIB, Some("42")), Seen::Nothing);
        }

        #[test]
        fn an_event_of_a_watch_no_longer_known_is_nothing() {
            assert_eq!(event(99, F::IN_CREATE, Some("x")), Seen::Nothing);
        }
    }

    #[test]
    fn events_past_max_pending_collapse_into_one_reconcile_until_the_worker_takes_it() {
        let (q, inbox) = queue(4);
        #[cfg(target_os = "linux")]
        let batch = |n: usize| Work::Events {
            generation: 0,
            events: vec![RawEvent { wd: 1, mask: AddWatchFlags::IN_ATTRIB, name: None }; n],
        };
        #[cfg(not(target_os = "linux"))]
        let batch = |n: usize| Work::Seen(vec![Seen::Nothing; n]);
        assert!(q.admit(3) && q.send(batch(3)));
        assert!(!q.admit(2), "5 events would pass 4");
        assert!(!q.admit(1), "none while the collapse is pending");
        assert_eq!((q.depth(), q.collapses()), (4, 1));
        let taken = inbox.take(Instant::now()).unwrap();
        assert_eq!(taken.len(), 2, "the first batch and the collapse: {taken:?}");
        assert!(matches!(taken[1], Work::Collapsed));
        assert_eq!(q.depth(), 0);
        assert!(q.admit(1) && q.send(batch(1)));
        assert_eq!(inbox.take(Instant::now()).unwrap().len(), 1);
        assert!(inbox.take(Instant::now()).is_none());
    }
}

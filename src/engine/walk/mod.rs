//! The descriptor-based walk of one cache (SPEC §6). It starts from the pinned root
//! ([`crate::engine::root`]), never from a path. Each directory is opened relative
//! to its parent's descriptor with `O_DIRECTORY | O_NOFOLLOW` and checked through that
//! descriptor; each other entry is classified with one `statx(AT_SYMLINK_NOFOLLOW)` and,
//! only when it diverges, pinned with `O_PATH` and re-checked before [`repair`] acts on
//! it. Full path strings exist only for globs and messages, never for a syscall.
//!
//! Directories are independent tasks on a rayon scope, so the walk uses every core.
//! A pending task holds only a shared handle on its parent's descriptor, so the number
//! of open descriptors follows the depth of the walk, not the width of the tree.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::root::Root;
use crate::policy::acl::{self, Acl};
use crate::policy::config::CacheConfig;
use crate::policy::model::{self, Attrs, Divergence, Kind, Place};
use crate::policy::names;
use crate::sys::{self, FileType, Stat, TypeHint};

/// Change what diverges, or only list it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Repair,
    Check,
}

/// Why an entry is left as it is (SPEC §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Symlink,
    HardLink,
    Special,
    OtherMount,
}

impl Reason {
    pub const ALL: [Reason; 4] = [Reason::Symlink, Reason::HardLink, Reason::Special, Reason::OtherMount];

    /// The snake_case key used in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Reason::Symlink => "symlink",
            Reason::HardLink => "hard_link",
            Reason::Special => "special",
            Reason::OtherMount => "other_mount",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::Symlink => "symlink",
            Reason::HardLink => "hard link",
            Reason::Special => "special file",
            Reason::OtherMount => "other mount",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Reason::Symlink => "symbolic link, never followed",
            Reason::HardLink => "file with several hard links, whose other names may be outside the cache",
            Reason::Special => "FIFO, socket or device",
            Reason::OtherMount => "on another mount than the cache root, not crossed",
        }
    }
}

/// Something the walk has to say about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finding {
    Reported(Reason),
    Diverges(Divergence),
    Failed(Failure),
}

/// What the walk could not do to an entry, and the error number, so that callers can
/// group failures by cause (no root, a read-only filesystem) instead of listing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// "cannot repair (owner 0→1001)", "cannot list directory", ...
    pub what: String,
    pub errno: Option<i32>,
    /// The error in words.
    pub cause: String,
    /// The entry's owner, where the walk knew it: `sync` tells a caller whether what
    /// is left unrepaired is theirs.
    pub owner: Option<u32>,
}

impl Failure {
    fn new(what: impl Into<String>, e: &io::Error) -> Failure {
        Failure { what: what.into(), errno: e.raw_os_error(), cause: sys::describe(e), owner: None }
    }

    fn of(self, uid: u32) -> Failure {
        Failure { owner: Some(uid), ..self }
    }

    fn raced(what: &str) -> Failure {
        Failure { what: what.into(), errno: None, cause: "it changed during the walk".into(), owner: None }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.cause)
    }
}

/// A finding and the path, relative to the cache root, it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Note {
    pub rel: Vec<u8>,
    pub finding: Finding,
}

/// Changes made: entries changed, and the changes by kind. The one type every report
/// uses (the one-shot summary, `status`, the metrics): a new kind is a field here, its
/// entry in [`Repairs::kinds`], and its counter in [`Tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Repairs {
    pub entries: u64,
    pub owner: u64,
    pub group: u64,
    pub mode: u64,
    /// ACL changes; added within schema version 1.
    #[serde(default)]
    pub acl: u64,
}

impl Repairs {
    /// The changes by kind, by their key in JSON and the metrics.
    pub fn kinds(&self) -> [(&'static str, u64); 4] {
        [("owner", self.owner), ("group", self.group), ("mode", self.mode), ("acl", self.acl)]
    }

    pub fn add(&mut self, other: &Repairs) {
        let Repairs { entries, owner, group, mode, acl } = other;
        for (mine, theirs) in [
            (&mut self.entries, entries),
            (&mut self.owner, owner),
            (&mut self.group, group),
            (&mut self.mode, mode),
            (&mut self.acl, acl),
        ] {
            *mine += theirs;
        }
    }
}

/// `12 (owner 3, group 12, mode 0, acl 1)`.
impl std::fmt::Display for Repairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<String> = self.kinds().iter().map(|(k, n)| format!("{k} {n}")).collect();
        write!(f, "{} ({})", self.entries, kinds.join(", "))
    }
}

/// Entries left as they are, by [`Reason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Reported {
    pub symlink: u64,
    pub hard_link: u64,
    pub special: u64,
    pub other_mount: u64,
}

impl Reported {
    pub fn of(&self, reason: Reason) -> u64 {
        match reason {
            Reason::Symlink => self.symlink,
            Reason::HardLink => self.hard_link,
            Reason::Special => self.special,
            Reason::OtherMount => self.other_mount,
        }
    }

    /// Each reason and its count, in [`Reason::ALL`]'s order.
    pub fn by_reason(&self) -> [(Reason, u64); 4] {
        Reason::ALL.map(|r| (r, self.of(r)))
    }
}

/// Live counters of a walk; readable from another thread for progress.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub entries: AtomicU64,
    pub changed: AtomicU64,
    pub owner: AtomicU64,
    pub group: AtomicU64,
    pub mode: AtomicU64,
    /// Entries whose ACLs changed (an access ACL removed, a default ACL set).
    pub acl: AtomicU64,
    /// The filesystem answered `EOPNOTSUPP` for POSIX ACLs: the cache is repair only.
    pub no_acl: AtomicBool,
    /// Directories that should carry the model's default ACL and carry none, and those
    /// that carry one (the model's or another): all absent and none present is what an
    /// image layer or a copy without ACLs leaves, one finding rather than one per directory.
    pub default_acl_absent: AtomicU64,
    pub default_acl_present: AtomicU64,
    pub diverging: AtomicU64,
    pub excluded: AtomicU64,
    pub failed: AtomicU64,
    reported: [AtomicU64; 4],
}

impl Tally {
    pub(crate) fn reported(&self, reason: Reason) -> u64 {
        self.reported[reason as usize].load(Relaxed)
    }

    /// The changes made so far.
    pub(crate) fn repairs(&self) -> Repairs {
        Repairs {
            entries: self.changed.load(Relaxed),
            owner: self.owner.load(Relaxed),
            group: self.group.load(Relaxed),
            mode: self.mode.load(Relaxed),
            acl: self.acl.load(Relaxed),
        }
    }

    /// The entries left as they are so far.
    pub(crate) fn reported_all(&self) -> Reported {
        let [symlink, hard_link, special, other_mount] = Reason::ALL.map(|r| self.reported(r));
        Reported { symlink, hard_link, special, other_mount }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// What a walk tells its caller as it goes, from any of its threads. The walk keeps
/// none of it and logs none of it: the one-shot's summary, the service's worker and the
/// tests are visitors, each keeping (within its own bounds) what it needs, however many
/// entries a tree's users make unrepairable.
pub(crate) trait Visit: Sync {
    /// The directory open as `dir` is about to be listed: a watch added now, through the
    /// descriptor and never by path, misses nothing created while it is listed.
    fn listing(&self, _rel: &[u8], _dir: BorrowedFd<'_>) {}
    /// A change took: the relative path and what changed.
    fn repaired(&self, _rel: &[u8], _d: &Divergence) {}
    /// An entry left as it is, diverging (a check), or that could not be made compliant.
    fn found(&self, note: Note);
}

/// Collects the findings, to be read sorted by path once the walk is over.
#[derive(Debug, Default)]
pub(crate) struct Collect(Mutex<Vec<Note>>);

impl Visit for Collect {
    fn found(&self, note: Note) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(note);
    }
}

impl Collect {
    pub(crate) fn into_notes(self) -> Vec<Note> {
        let mut notes = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        notes.sort_by(|a, b| a.rel.cmp(&b.rel));
        notes
    }
}

/// One walk over a cache, whole or from one path.
#[derive(Clone, Copy)]
pub(crate) struct Scan<'a> {
    pub cache: &'a CacheConfig,
    pub root: &'a Root,
    pub action: Action,
    pub tally: &'a Tally,
    /// Told of each directory listed, each change and each finding.
    pub visit: &'a dyn Visit,
    /// Set when the walk is to end early (the service stops): what is left is not
    /// visited, so that a stop does not wait for a walk of the whole tree.
    pub stop: Option<&'a AtomicBool>,
    /// A one-shot `--init`: the root is left as it is when anything below it could not be
    /// made compliant, so that a root that looks done (what the kubelet's `OnRootMismatch`
    /// looks at) means a tree that is. The service repairs the root regardless: one
    /// entry's failure is that entry's.
    pub hold_root: bool,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan").field("cache", &self.cache.path).field("action", &self.action).finish()
    }
}

impl<'a> Scan<'a> {
    fn walker(&self, root: Stat) -> Walker<'a> {
        // Default ACLs are POSIX ACLs, which only Linux has: elsewhere a cache that asks
        // for inheritance is `repair only` (reported as such), never a failure.
        let default_acl = self.cache.policy.default_acl().filter(|_| cfg!(target_os = "linux"));
        if default_acl.is_none() && self.cache.policy.default_acl().is_some() {
            self.tally.no_acl.store(true, Relaxed);
        }
        Walker {
            cache: self.cache,
            action: self.action,
            root,
            tally: self.tally,
            visit: self.visit,
            stop: self.stop,
            default_acl,
            every_acl: true,
            pinned_root: self.root,
            go_mods: Mutex::new(Vec::new()),
        }
    }

    /// The pinned root, opened anew so that this walk lists it with its own offset.
    fn open_root(&self) -> io::Result<(OwnedFd, Stat)> {
        let root = self.root.reopen()?;
        let st = sys::stat_fd(root.as_fd())?;
        Ok((root, st))
    }

    /// The whole tree, from the root.
    ///
    /// A repair changes the root last, and only when everything below it complies, as
    /// the kubelet's `OnRootMismatch` expects of a volume: it looks at the root alone to
    /// decide that a tree is done, so an interrupted or failed run must never leave a
    /// root that looks done over a tree that is not.
    pub(crate) fn all(&self) -> io::Result<()> {
        let (root, st) = self.open_root()?;
        let walker = Walker { every_acl: false, ..self.walker(st) };
        if self.action == Action::Check {
            rayon::scope(|s| walker.directory(s, root, st, Vec::new(), true));
            return Ok(());
        }
        let kept = root.try_clone()?;
        rayon::scope(|s| walker.list(s, root, Vec::new()));
        let st = sys::stat_fd(kept.as_fd())?;
        let failed = self.tally.failed.load(Relaxed);
        if failed == 0 || !self.hold_root {
            walker.check_directory(kept.as_fd(), &st, &[]);
        } else {
            Tally::bump(&self.tally.entries);
            let d = walker.divergence(Kind::Dir, &st, model::place_of(&[]));
            if let Some(d) = d.filter(|_| walker.classify(&st).is_ok()) {
                walker.fail(
                    Vec::new(),
                    Failure {
                        what: format!("left as it is ({d})"),
                        errno: None,
                        cause: format!(
                            "{} below it could not be made compliant, and the root changes last so that it never \
                             looks done over a tree that is not",
                            if failed == 1 { "1 entry".to_owned() } else { format!("{failed} entries") }
                        ),
                        owner: Some(d.from.uid),
                    },
                );
            }
        }
        Ok(())
    }

    /// Several entries at once, sorted by path: the
    /// directories on the way are opened once for every path below them, so a batch of
    /// events in one deep directory costs its depth once, not once per event.
    pub(crate) fn paths(&self, checks: &[(Vec<u8>, bool)]) -> io::Result<()> {
        let (root, root_st) = self.open_root()?;
        let root = Arc::new(root);
        let walker = self.walker(root_st);
        // The directories open from the root down, by name: a prefix of the next path.
        let mut chain: Vec<(&[u8], Arc<OwnedFd>)> = Vec::new();
        rayon::scope(|s| {
            for (rel, deep) in checks {
                if rel.is_empty() {
                    if let Ok(fd) = self.root.reopen() {
                        walker.directory(s, fd, root_st, Vec::new(), *deep);
                    }
                    continue;
                }
                let components: Vec<&[u8]> = rel.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
                let Some((name, parents)) = components.split_last() else { continue };
                let mut prefix = Vec::new();
                let skipped = components.iter().any(|c| {
                    prefix = names::join(&prefix, c);
                    self.cache.exclude.matches(&prefix) || *c == b"." || *c == b".."
                });
                if skipped {
                    continue;
                }
                let kept = chain.iter().zip(parents.iter()).take_while(|((open, _), want)| open == *want).count();
                chain.truncate(kept);
                // A component that cannot be opened without following a symlink, or
                // that is gone, ends the path: it is not an entry of this cache now.
                let opened = parents[kept..].iter().all(|c| {
                    let dir = chain.last().map_or(&root, |(_, fd)| fd);
                    let next = CString::new(*c).ok().and_then(|c| sys::open_dir_at(dir.as_fd(), &c).ok());
                    next.map(|fd| chain.push((c, Arc::new(fd)))).is_some()
                });
                if !opened {
                    continue;
                }
                let parent = Arc::clone(chain.last().map_or(&root, |(_, fd)| fd));
                match sys::stat_fd(parent.as_fd()) {
                    Ok(st) if st.same_mount(&root_st) => {}
                    _ => continue,
                }
                let Ok(name) = CString::new(*name) else { continue };
                match sys::stat_at(parent.as_fd(), &name) {
                    Ok(st) if st.file_type == FileType::Dir => {
                        walker.open_directory(s, parent, &name, rel.clone(), *deep)
                    }
                    Ok(st) => walker.leaf(parent.as_fd(), &name, names::parent(rel), st),
                    Err(_) => {}
                }
            }
        });
        Ok(())
    }
}

mod acls;
mod first_use;
mod repair;

struct Walker<'a> {
    cache: &'a CacheConfig,
    action: Action,
    root: Stat,
    tally: &'a Tally,
    visit: &'a dyn Visit,
    stop: Option<&'a AtomicBool>,
    /// The model's default ACL for directories, `None` when it leaves them alone.
    default_acl: Option<Acl>,
    /// Read every entry's access ACL (a path the service was told changed), not only
    /// those that could grant more than the mode shows ([`acl::could_grant_more`]).
    every_acl: bool,
    /// The cache root, for the toolchain download's completion markers.
    pinned_root: &'a Root,
    /// The `_go.mod` files seen in toolchain trees, for their first-use copy.
    go_mods: Mutex<Vec<Vec<u8>>>,
}

fn attrs(st: &Stat) -> Attrs {
    Attrs { uid: st.uid, gid: st.gid, mode: st.mode }
}

/// The entry disappeared while we looked: Go deletes `.partial` markers, temp files
/// and whole trees (`go clean`) while others work. Not an error.
fn vanished(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

impl<'s> Walker<'s> {
    /// A directory opened as `fd`, whose `statx` is `st`: check it, then (with `list`)
    /// its children.
    fn directory<'a>(&'a self, s: &rayon::Scope<'a>, fd: OwnedFd, st: Stat, rel: Vec<u8>, list: bool) {
        if self.check_directory(fd.as_fd(), &st, &rel) && list {
            self.list(s, fd, rel);
        }
    }

    /// Checks (and for a repair, settles) the directory opened as `fd`. False when it is
    /// only reported: it is not to be entered.
    fn check_directory(&self, fd: BorrowedFd<'_>, st: &Stat, rel: &[u8]) -> bool {
        Tally::bump(&self.tally.entries);
        if let Err(reason) = self.classify(st) {
            self.report(rel.to_vec(), reason);
            return false;
        }
        // The directory's own descriptor is open for reading: its xattrs are read and
        // set through it (SPEC §6: never by path).
        let place = model::place_of(rel);
        let d = self.divergence(Kind::Dir, st, place);
        // A default ACL decides what entries created in the directory get; where the
        // group cannot create entries (Go's read-only trees) it is neither required nor
        // set, which spares a full walk one xattr read per read-only directory.
        let creatable = d.as_ref().map_or(st.mode, |d| d.to.mode) & 0o020 != 0;
        let acls = self.dir_acls(fd, rel, self.wants_acl(st, d.as_ref()), creatable);
        if let Some(d) = Divergence::with_acl(d, attrs(st), acls.0, acls.1) {
            self.settle(fd, rel, d, place);
        }
        true
    }

    /// Walks the children of the directory opened as `fd` (after its watch, if any).
    fn list<'a>(&'a self, s: &rayon::Scope<'a>, fd: OwnedFd, rel: Vec<u8>) {
        self.visit.listing(&rel, fd.as_fd());
        let fd = Arc::new(fd);
        if let (Action::Repair, Some(version)) = (self.action, model::toolchain_root(&rel)) {
            // Go's first-use steps come after everything else in the tree, as in Go:
            // the tree is walked to the end first, then `bin/go` and `src/go.mod`.
            let listed =
                rayon::scope(|inner| sys::read_dir(fd.as_fd(), |name, hint| self.visit(inner, &fd, &rel, name, hint)));
            match listed {
                Err(e) if !vanished(&e) => self.fail(rel, Failure::new("cannot list directory", &e)),
                Err(_) => {}
                Ok(()) => self.first_use(fd.as_fd(), &rel, version),
            }
            return;
        }
        let listed = sys::read_dir(fd.as_fd(), |name, hint| self.visit(s, &fd, &rel, name, hint));
        match listed {
            Err(e) if !vanished(&e) => self.fail(rel, Failure::new("cannot list directory", &e)),
            _ => {}
        }
    }

    fn visit<'a>(
        &'a self,
        s: &rayon::Scope<'a>,
        parent: &Arc<OwnedFd>,
        parent_rel: &[u8],
        name: &CStr,
        hint: TypeHint,
    ) {
        if self.stop.is_some_and(|stop| stop.load(Relaxed)) {
            return;
        }
        // The relative path costs an allocation: the common case, a compliant file in
        // a cache without excludes, never builds it.
        let rel = || names::join(parent_rel, name.to_bytes());
        if !self.cache.exclude.is_empty() && self.cache.exclude.matches(&rel()) {
            return Tally::bump(&self.tally.excluded);
        }
        if hint == TypeHint::Dir {
            return self.spawn_directory(s, parent, name.to_owned(), rel());
        }
        match sys::stat_at(parent.as_fd(), name) {
            Ok(st) if st.file_type == FileType::Dir => self.spawn_directory(s, parent, name.to_owned(), rel()),
            Ok(st) => self.leaf(parent.as_fd(), name, parent_rel, st),
            Err(e) if vanished(&e) => {}
            Err(e) => self.fail(rel(), Failure::new("cannot stat", &e)),
        }
    }

    fn spawn_directory<'a>(&'a self, s: &rayon::Scope<'a>, parent: &Arc<OwnedFd>, name: CString, rel: Vec<u8>) {
        let parent = Arc::clone(parent);
        s.spawn(move |s| self.open_directory(s, parent, &name, rel, true));
    }

    /// Opens a child directory without following a symlink, then walks it. The parent's
    /// descriptor is released as soon as the child's own is open.
    fn open_directory<'a>(&'a self, s: &rayon::Scope<'a>, parent: Arc<OwnedFd>, name: &CStr, rel: Vec<u8>, list: bool) {
        let opened = sys::open_dir_at(parent.as_fd(), name);
        let fd = match opened {
            Ok(fd) => fd,
            // Not a directory (any more): a symlink (ELOOP) or a file (ENOTDIR) took its place.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return match sys::stat_at(parent.as_fd(), name) {
                    Ok(st) if st.file_type != FileType::Dir => self.leaf(parent.as_fd(), name, names::parent(&rel), st),
                    Ok(_) => self.fail(rel, Failure::raced("directory replaced")),
                    Err(e) if vanished(&e) => {}
                    Err(e) => self.fail(rel, Failure::new("cannot stat", &e)),
                };
            }
            // Without CAP_DAC_READ_SEARCH a directory lacking u+r cannot be listed until
            // it is repaired: repair it through a pin, then open it through that pin.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && self.action == Action::Repair => {
                match self.unlock_directory(parent.as_fd(), name, &rel) {
                    Ok(Some(fd)) => fd,
                    Ok(None) => return,
                    Err(e) => return self.fail(rel, Failure::new("cannot open directory", &e)),
                }
            }
            Err(e) if vanished(&e) => return,
            Err(e) => return self.fail(rel, Failure::new("cannot open directory", &e)),
        };
        drop(parent);
        match sys::stat_fd(fd.as_fd()) {
            Ok(st) => self.directory(s, fd, st, rel, list),
            Err(e) => self.fail(rel, Failure::new("cannot stat", &e)),
        }
    }

    /// Any entry but a directory, as `statx` saw it a moment ago through `parent`,
    /// whose path relative to the root is `parent_rel`.
    fn leaf(&self, parent: BorrowedFd<'_>, name: &CStr, parent_rel: &[u8], st: Stat) {
        Tally::bump(&self.tally.entries);
        let rel = || names::join(parent_rel, name.to_bytes());
        let kind = match self.classify(&st) {
            Ok(kind) => kind,
            Err(reason) => return self.report(rel(), reason),
        };
        let place = match model::place(parent_rel, name.to_bytes()) {
            // `bin/go` is made executable by [`Walker::first_use`], after the rest.
            Place::ToolGo if self.action == Action::Repair => Place::Plain,
            place => place,
        };
        if kind == Kind::File && name.to_bytes() == b"_go.mod" && parent_rel.starts_with(model::TOOLCHAIN_MODULE) {
            self.go_mods.lock().unwrap_or_else(|p| p.into_inner()).push(rel());
        }
        // The common case: already compliant, one statx and (where ACLs exist) one
        // xattr read of the name, and nothing more.
        let d = self.divergence(kind, &st, place);
        let drop_acl = self.wants_acl(&st, d.as_ref())
            && self.access_acl_diverges(&rel, |buf| sys::get_xattr_at(parent, name, acl::ACCESS, buf));
        let Some(d) = Divergence::with_acl(d, attrs(&st), drop_acl, false) else { return };
        if self.action == Action::Check {
            return self.diverges(rel(), d);
        }
        let pin = match sys::pin_at(parent, name) {
            Ok(pin) => pin,
            Err(e) if vanished(&e) => return,
            Err(e) if sys::not_pinnable(&e) => {
                // The portable engine pins only files and directories: what took the
                // name since the look is classified anew by name and reported.
                return match sys::stat_at(parent, name).map(|st| self.classify(&st)) {
                    Ok(Err(reason)) => self.report(rel(), reason),
                    Ok(Ok(_)) => self.fail(rel(), Failure::raced("replaced while pinned")),
                    Err(e) if vanished(&e) => {}
                    Err(e) => self.fail(rel(), Failure::new("cannot stat", &e)),
                };
            }
            Err(e) => return self.fail(rel(), Failure::new("cannot pin", &e)),
        };
        let pinned = match sys::stat_fd(pin.as_fd()) {
            Ok(p) => p,
            Err(e) => return self.fail(rel(), Failure::new("cannot stat", &e)),
        };
        // The name may now lead to another inode, or the same one may have gained a
        // hard link: decide again on what is pinned, the only thing we will touch.
        if pinned != st {
            let kind = match self.classify(&pinned) {
                Ok(Kind::Dir) => return self.fail(rel(), Failure::raced("replaced by a directory")),
                Ok(kind) => kind,
                Err(reason) => return self.report(rel(), reason),
            };
            let d = self.divergence(kind, &pinned, place);
            let drop_acl = self.wants_acl(&pinned, d.as_ref())
                && self
                    .access_acl_diverges(&rel, |buf| acls::read_into(sys::get_xattr_fd(pin.as_fd(), acl::ACCESS), buf));
            if let Some(d) = Divergence::with_acl(d, attrs(&pinned), drop_acl, false) {
                self.settle(pin.as_fd(), &rel(), d, place);
            }
            return;
        }
        self.settle(pin.as_fd(), &rel(), d, place);
    }

    /// The model's kind for an entry, or why it is only reported.
    fn classify(&self, st: &Stat) -> Result<Kind, Reason> {
        if !st.same_mount(&self.root) {
            return Err(Reason::OtherMount);
        }
        match st.file_type {
            FileType::Dir => Ok(Kind::Dir),
            FileType::File if st.nlink > 1 => Err(Reason::HardLink),
            FileType::File => Ok(Kind::File),
            FileType::Symlink => Err(Reason::Symlink),
            FileType::Special => Err(Reason::Special),
        }
    }

    fn divergence(&self, kind: Kind, st: &Stat, place: Place) -> Option<Divergence> {
        let now = attrs(st);
        Divergence::between(now, self.cache.policy.target_at(kind, now, place))
    }
}

#[cfg(test)]
mod tests {
    //! The races of SPEC §6, made deterministic: the swap happens exactly between the
    //! walk's look at a name and its next step. (tests/repair.rs races a real swapper.)

    use super::*;
    use crate::policy::config::Excludes;
    use crate::policy::model::{Model, Other, Policy};
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// A cache at `<tmp>/mod` with a private model for the current user, so that the
    /// test needs no root: only modes change.
    fn setup() -> (tempfile::TempDir, CacheConfig, Root) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("mod")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside/dir")).unwrap();
        for f in ["outside/secret", "outside/dir/inner"] {
            std::fs::write(tmp.path().join(f), b"x").unwrap();
            std::fs::set_permissions(tmp.path().join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let cache = CacheConfig {
            path: tmp.path().join("mod"),
            policy: Policy {
                owner: Some(nix::unistd::getuid().as_raw()),
                group: None,
                model: Model::Private,
                other: Other::Read,
                writable: false,
                inherit: crate::policy::model::Inherit::None,
            },
            exclude: Excludes::none(),
            force: false,
        };
        let root = crate::engine::root::resolve(&cache.path, &crate::engine::root::Origin::Admin, true).unwrap();
        (tmp, cache, root)
    }

    /// Findings are dropped: these tests look at the tree and the tally.
    struct Ignore;
    impl Visit for Ignore {
        fn found(&self, _: Note) {}
    }

    /// A repairing scan, as the unit tests drive it.
    fn plain<'a>(cache: &'a CacheConfig, root: &'a Root, tally: &'a Tally) -> Scan<'a> {
        Scan { cache, root, action: Action::Repair, tally, visit: &Ignore, stop: None, hold_root: false }
    }

    fn walker<'a>(cache: &'a CacheConfig, root: &'a Root, tally: &'a Tally) -> Walker<'a> {
        plain(cache, root, tally).walker(*root.stat())
    }

    fn write_private(p: &Path) {
        std::fs::write(p, b"x").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_its_statx_is_reported_not_followed() {
        let (tmp, cache, root) = setup();
        let f = cache.path.join("f");
        write_private(&f);
        let st = sys::stat_at(root.fd(), c"f").unwrap();
        std::fs::rename(&f, cache.path.join("f.away")).unwrap();
        symlink(tmp.path().join("outside/secret"), &f).unwrap();

        let tally = Tally::default();
        walker(&cache, &root, &tally).leaf(root.fd(), c"f", b"", st);
        assert_eq!(mode_of(&tmp.path().join("outside/secret")), 0o600, "the symlink's target was changed");
        assert_eq!(tally.reported(Reason::Symlink), 1);
        assert_eq!(tally.changed.load(Relaxed), 0);
    }

    /// The Linux engine pins the FIFO without opening it; the portable one opens it
    /// non-blocking, sees it is no file and closes it unchanged. Neither blocks, and
    /// both report it.
    #[test]
    fn a_file_swapped_for_a_fifo_after_its_statx_is_reported_and_never_blocks() {
        let (_tmp, cache, root) = setup();
        let f = cache.path.join("f");
        write_private(&f);
        let st = sys::stat_at(root.fd(), c"f").unwrap();
        std::fs::remove_file(&f).unwrap();
        nix::unistd::mkfifo(&f, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

        let tally = Tally::default();
        walker(&cache, &root, &tally).leaf(root.fd(), c"f", b"", st);
        assert_eq!(tally.reported(Reason::Special), 1);
        assert_eq!(tally.changed.load(Relaxed), 0);
        assert_eq!(mode_of(&f), 0o600);
    }

    #[test]
    fn a_file_that_gains_a_hard_link_after_its_statx_is_left_alone() {
        let (tmp, cache, root) = setup();
        let f = cache.path.join("f");
        write_private(&f);
        let st = sys::stat_at(root.fd(), c"f").unwrap();
        std::fs::hard_link(&f, tmp.path().join("outside/link")).unwrap();

        let tally = Tally::default();
        walker(&cache, &root, &tally).leaf(root.fd(), c"f", b"", st);
        assert_eq!(mode_of(&f), 0o600);
        assert_eq!(tally.reported(Reason::HardLink), 1);
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_before_it_is_opened_is_not_entered() {
        let (tmp, cache, root) = setup();
        symlink(tmp.path().join("outside/dir"), cache.path.join("d")).unwrap();
        let tally = Tally::default();
        let w = walker(&cache, &root, &tally);
        let root = Arc::new(root.reopen().unwrap());
        // The walk saw `d` as a directory (d_type), and now it is a symlink.
        rayon::scope(|s| w.open_directory(s, Arc::clone(&root), c"d", b"d".to_vec(), true));
        assert_eq!(mode_of(&tmp.path().join("outside/dir/inner")), 0o600);
        assert_eq!(tally.reported(Reason::Symlink), 1);
        assert_eq!(tally.changed.load(Relaxed), 0);
    }

    #[test]
    fn a_batch_of_paths_opens_shared_directories_once_and_follows_no_symlink() {
        let (tmp, cache, root) = setup();
        for f in ["a/b/c/f1", "a/b/c/f2", "a/b/g"] {
            std::fs::create_dir_all(cache.path.join(f).parent().unwrap()).unwrap();
            write_private(&cache.path.join(f));
        }
        symlink(tmp.path().join("outside/dir"), cache.path.join("s")).unwrap();
        let tally = Tally::default();
        // Findings go to the visitor as they are made; the walk keeps none of them.
        let taken = Collect::default();
        let scan = Scan { visit: &taken, ..plain(&cache, &root, &tally) };
        let checks: Vec<(Vec<u8>, bool)> =
            ["a/b/c/f1", "a/b/c/f2", "a/b/g", "s", "s/inner"].iter().map(|p| (p.as_bytes().to_vec(), false)).collect();
        scan.paths(&checks).unwrap();
        let taken = taken.into_notes();
        assert_eq!(taken, [Note { rel: b"s".to_vec(), finding: Finding::Reported(Reason::Symlink) }]);
        for f in ["a/b/c/f1", "a/b/c/f2", "a/b/g"] {
            assert_ne!(mode_of(&cache.path.join(f)), 0o600, "{f} was not checked");
        }
        assert_eq!(mode_of(&tmp.path().join("outside/dir/inner")), 0o600, "a symlinked component was followed");
    }

    const TOOLCHAIN: &str = "golang.org/toolchain@v0.0.1-go1.99.0.linux-amd64";

    /// A toolchain tree as Go extracts it: files 0444, directories 0555, the download's
    /// `.ziphash` written and, with `partial`, its `.partial` still there.
    fn toolchain(cache: &CacheConfig, partial: bool) -> std::path::PathBuf {
        let at = cache.path.join("cache/download/golang.org/toolchain/@v");
        std::fs::create_dir_all(&at).unwrap();
        let version = TOOLCHAIN.split('@').nth(1).unwrap();
        std::fs::write(at.join(format!("{version}.ziphash")), b"h1:x").unwrap();
        if partial {
            std::fs::write(at.join(format!("{version}.partial")), b"").unwrap();
        }
        let tree = cache.path.join(TOOLCHAIN);
        for (f, body) in [
            ("bin/go", "go"),
            ("bin/gofmt", "gofmt"),
            ("pkg/tool/linux_amd64/compile", "compile"),
            ("src/_go.mod", "module std\n"),
            ("src/cmd/_go.mod", "module cmd\n"),
            ("src/fmt/print.go", "package fmt\n"),
        ] {
            std::fs::create_dir_all(tree.join(f).parent().unwrap()).unwrap();
            std::fs::write(tree.join(f), body).unwrap();
            std::fs::set_permissions(tree.join(f), std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        for d in ["bin", "pkg/tool/linux_amd64", "pkg/tool", "pkg", "src/cmd", "src/fmt", "src", ""] {
            std::fs::set_permissions(tree.join(d), std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        tree
    }

    fn scan_all(cache: &CacheConfig, root: &Root) -> Tally {
        let tally = Tally::default();
        plain(cache, root, &tally).all().unwrap();
        tally
    }

    #[test]
    fn a_complete_toolchain_gets_gos_first_use_steps_with_bin_go_and_src_go_mod_last() {
        let (_tmp, cache, root) = setup();
        let tree = toolchain(&cache, false);
        let tally = scan_all(&cache, &root);
        assert_eq!(tally.failed.load(Relaxed), 0);
        for f in ["bin/go", "bin/gofmt", "pkg/tool/linux_amd64/compile"] {
            assert_eq!(mode_of(&tree.join(f)), 0o555, "{f}");
        }
        assert_eq!(mode_of(&tree.join("src/fmt/print.go")), 0o444, "only pkg/tool and bin are Go's commands");
        for d in ["src", "src/cmd"] {
            assert_eq!(
                std::fs::read(tree.join(d).join("go.mod")).unwrap(),
                std::fs::read(tree.join(d).join("_go.mod")).unwrap()
            );
            assert_eq!(mode_of(&tree.join(d).join("go.mod")), 0o444);
            assert_eq!(mode_of(&tree.join(d)), 0o555, "{d} is read-only again");
            assert!(
                sys::get_xattr_path(&CString::new(tree.join(d).as_os_str().as_encoded_bytes()).unwrap(), acl::ACCESS)
                    .is_ok_and(|a| a.is_none()),
                "{d} kept an access ACL"
            );
        }
        // A second walk finds nothing left to do.
        assert_eq!(scan_all(&cache, &root).changed.load(Relaxed), 0);
    }

    #[test]
    fn a_toolchain_still_being_extracted_gets_no_bin_go_nor_go_mod() {
        let (_tmp, cache, root) = setup();
        let tree = toolchain(&cache, true);
        scan_all(&cache, &root);
        // bin/go's execute bit tells go commands the first-use steps are done, and
        // src/go.mod that the copies are: neither before the download is complete.
        assert_eq!(mode_of(&tree.join("bin/go")), 0o444);
        assert!(!tree.join("src/go.mod").exists() && !tree.join("src/cmd/go.mod").exists());
        assert_eq!(mode_of(&tree.join("pkg/tool/linux_amd64/compile")), 0o555, "harmless before: Go's own chmod");
    }

    #[test]
    fn bin_go_waits_for_every_other_command() {
        let (_tmp, cache, root) = setup();
        let tree = toolchain(&cache, false);
        // A command the walk cannot make executable (here: a symlink, left as it is).
        std::fs::set_permissions(tree.join("pkg/tool/linux_amd64"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(tree.join("pkg/tool/linux_amd64/vet"), b"vet").unwrap();
        std::fs::set_permissions(tree.join("pkg/tool/linux_amd64/vet"), std::fs::Permissions::from_mode(0o444))
            .unwrap();
        std::fs::hard_link(tree.join("pkg/tool/linux_amd64/vet"), cache.path.join("vet-link")).unwrap();
        scan_all(&cache, &root);
        assert_eq!(mode_of(&tree.join("bin/go")), 0o444, "bin/go became executable before pkg/tool/…/vet");
    }

    #[test]
    fn an_entry_deleted_during_the_walk_is_neither_an_error_nor_counted_as_changed() {
        let (_tmp, cache, root) = setup();
        let f = cache.path.join("gone");
        write_private(&f);
        let st = sys::stat_at(root.fd(), c"gone").unwrap();
        std::fs::remove_file(&f).unwrap();
        let tally = Tally::default();
        walker(&cache, &root, &tally).leaf(root.fd(), c"gone", b"", st);
        assert_eq!(tally.failed.load(Relaxed), 0);
        assert_eq!(tally.changed.load(Relaxed), 0);
    }
}

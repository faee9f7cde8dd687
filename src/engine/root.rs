//! The cache root (SPEC §6): resolved once, component by component from `/`, and pinned.
//! A configured root is a path only until it is resolved; every scan and every check
//! starts from the descriptor held here, never from the path string again.
//!
//! The resolution is systemd's `CHASE_SAFE` (the fix for CVE-2018-6954): a symlink is
//! followed only when root owns it and the directory it sits in, and below a directory
//! owned by a non-root user every component must belong to that same user — whoever owns
//! a directory can swap what is in it. Then the physical path is checked for what may be
//! a cache at all: never a system tree, a home directory, or (unless forced) a non-empty
//! directory that does not look like a Go cache.
//!
//! Hard links are the one thing a walk cannot refuse race-free (while a name is being
//! unlinked the kernel reports nlink 1), so a root can be isolated: a bind mount of its
//! parent on itself makes `link(2)` and `rename(2)` into it from elsewhere fail with
//! `EXDEV`.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::sys::{self, FileType, Stat};

/// Why a root cannot be used: one line naming the path and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RootError(pub String);

fn refuse(message: impl Into<String>) -> RootError {
    RootError(message.into())
}

/// Where a root's path comes from, which decides what its resolution may follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The administrator's configuration or command line: root's own symlinks in
    /// root's own directories are followed.
    Admin,
    /// Values a `sudo` caller controls (their environment, their `go env` file): the
    /// root must lie beneath this home, reached from it without following any symlink.
    Home(PathBuf),
}

/// A resolved, pinned cache root.
#[derive(Debug)]
pub(crate) struct Root {
    /// Open for listing (`O_RDONLY | O_DIRECTORY`).
    fd: OwnedFd,
    st: Stat,
    /// The physical path the resolution reached, for messages and checks.
    path: PathBuf,
}

impl Root {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn stat(&self) -> &Stat {
        &self.st
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new open file description of the root, with its own offset for listing.
    pub(crate) fn reopen(&self) -> io::Result<OwnedFd> {
        sys::open_dir_at(self.fd(), c".")
    }

    /// The pinned directory was removed (Go's `go clean -modcache` deletes the root):
    /// a new one must be resolved, with the same rules.
    pub(crate) fn removed(&self) -> bool {
        sys::stat_fd(self.fd()).map_or(true, |st| st.nlink == 0)
    }
}

/// One directory reached by the resolution.
struct Step {
    fd: OwnedFd,
    st: Stat,
    name: OsString,
}

/// A resolution in progress: the directories from `/` to where it stands.
struct Chase {
    stack: Vec<Step>,
    /// `..` may not climb above this many steps (a home, for [`Origin::Home`]).
    floor: usize,
    follow: bool,
}

/// Stopped at a name that does not exist: what exists, and what is left to create.
struct Missing {
    chase: Chase,
    rest: Vec<OsString>,
}

enum Stop {
    Missing(Missing),
    Refused(RootError),
}

impl From<RootError> for Stop {
    fn from(e: RootError) -> Stop {
        Stop::Refused(e)
    }
}

/// Symlinks followed in one resolution before it is refused, as the kernel's `ELOOP`.
const MAX_SYMLINKS: usize = 40;

impl Chase {
    fn from_slash() -> Result<Chase, RootError> {
        let fd = sys::open_slash().map_err(|e| refuse(format!("cannot open /: {}", sys::describe(&e))))?;
        let st = sys::stat_fd(fd.as_fd()).map_err(|e| refuse(format!("cannot stat /: {}", sys::describe(&e))))?;
        Ok(Chase { stack: vec![Step { fd, st, name: OsString::new() }], floor: 1, follow: true })
    }

    fn path(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        for step in &self.stack[1..] {
            p.push(&step.name);
        }
        p
    }

    fn here(&self) -> &Step {
        self.stack.last().expect("the stack always holds /")
    }

    /// Walks `components` from where the chase stands.
    fn walk(mut self, components: impl IntoIterator<Item = OsString>) -> Result<Chase, Stop> {
        let mut todo: VecDeque<OsString> = components.into_iter().collect();
        let mut followed = 0;
        while let Some(name) = todo.pop_front() {
            let bytes = name.as_bytes();
            if bytes.is_empty() || bytes == b"." {
                continue;
            }
            if bytes == b".." {
                if self.stack.len() > self.floor {
                    self.stack.pop();
                } else if self.floor > 1 {
                    return Err(refuse(format!("`..` leads out of {}", self.path().display())).into());
                }
                continue;
            }
            let shown = self.path().join(&name);
            let shown = shown.display();
            let c = CString::new(bytes).map_err(|_| refuse(format!("`{shown}` contains a NUL byte")))?;
            let st = match sys::stat_at(self.here().fd.as_fd(), &c) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let rest = std::iter::once(name).chain(todo).collect();
                    return Err(Stop::Missing(Missing { chase: self, rest }));
                }
                Err(e) => return Err(refuse(format!("cannot resolve {shown}: {}", sys::describe(&e))).into()),
            };
            let parent_uid = self.here().st.uid;
            match st.file_type {
                FileType::Symlink => {
                    if !self.follow {
                        return Err(refuse(format!(
                            "refusing {shown}: it is a symlink, and a path from the caller's environment or `go env` \
                             file is followed without symlinks (pass --path to name the cache yourself)"
                        ))
                        .into());
                    }
                    if st.uid != 0 || parent_uid != 0 {
                        return Err(refuse(format!(
                            "refusing {shown}: it is a symlink owned by uid {} in a directory owned by uid {parent_uid}; \
                             only root's symlinks in root's directories are followed (name the real directory)",
                            st.uid
                        ))
                        .into());
                    }
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(refuse(format!("refusing {shown}: too many levels of symlinks")).into());
                    }
                    let target = sys::read_link_at(self.here().fd.as_fd(), &c)
                        .map_err(|e| refuse(format!("cannot read the symlink {shown}: {}", sys::describe(&e))))?;
                    if target.first() == Some(&b'/') {
                        self.stack.truncate(1);
                    }
                    for part in target.split(|&b| b == b'/').rev() {
                        todo.push_front(OsString::from_vec(part.to_vec()));
                    }
                }
                FileType::Dir => {
                    let fd = sys::pin_dir_at(self.here().fd.as_fd(), &c)
                        .map_err(|e| refuse(format!("cannot open {shown}: {}", sys::describe(&e))))?;
                    let pinned = sys::stat_fd(fd.as_fd())
                        .map_err(|e| refuse(format!("cannot stat {shown}: {}", sys::describe(&e))))?;
                    if !pinned.same_inode(&st) {
                        return Err(
                            refuse(format!("refusing {shown}: it was replaced while it was being resolved")).into()
                        );
                    }
                    if unsafe_transition(parent_uid, pinned.uid) {
                        return Err(refuse(format!(
                            "refusing {shown}: it belongs to uid {} but lies in a directory of uid {parent_uid}, who could \
                             swap it for anything (below a user's directory every component must be that user's)",
                            pinned.uid
                        ))
                        .into());
                    }
                    self.stack.push(Step { fd, st: pinned, name });
                }
                _ => return Err(refuse(format!("refusing {shown}: it is not a directory")).into()),
            }
        }
        Ok(self)
    }
}

/// systemd's `uid_unsafe_transition`: from a directory of root anything may be entered;
/// from a user's directory only what that user owns.
pub(crate) fn unsafe_transition(parent_uid: u32, child_uid: u32) -> bool {
    parent_uid != 0 && parent_uid != child_uid
}

/// A path's names from `/` down, `..` kept: [`Chase::walk`] decides what it may climb.
type Names = Vec<OsString>;

fn components(path: &Path) -> Result<Names, RootError> {
    if !path.is_absolute() {
        return Err(refuse(format!("`{}` is not an absolute path", path.display())));
    }
    Ok(path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect())
}

/// Resolves `path` as `origin` allows, to the directory it names now.
fn chase(path: &Path, origin: &Origin) -> Result<Chase, Stop> {
    let start = Chase::from_slash()?;
    match origin {
        Origin::Admin => start.walk(components(path)?),
        Origin::Home(home) => {
            let rel = path.strip_prefix(home).map_err(|_| {
                refuse(format!(
                    "under sudo the cache must lie beneath your home {}; {} does not (pass --path to name it yourself)",
                    home.display(),
                    path.display()
                ))
            })?;
            let mut at_home = start.walk(components(home)?)?;
            at_home.floor = at_home.stack.len();
            at_home.follow = false;
            at_home.walk(rel.components().map(|c| c.as_os_str().to_owned()))
        }
    }
}

fn missing(path: &Path) -> RootError {
    refuse(format!("cannot open cache root {}: No such file or directory", path.display()))
}

/// Resolves a configured root safely, checks what it is, and pins it.
pub(crate) fn resolve(path: &Path, origin: &Origin, force: bool) -> Result<Root, RootError> {
    let chased = match chase(path, origin) {
        Ok(c) => c,
        Err(Stop::Missing(_)) => return Err(missing(path)),
        Err(Stop::Refused(e)) => return Err(e),
    };
    let physical = chased.path();
    refuse_by_structure(&physical, &Homes::load())?;
    let fd = sys::open_dir_at(chased.here().fd.as_fd(), c".")
        .map_err(|e| refuse(format!("cannot open cache root {}: {}", physical.display(), sys::describe(&e))))?;
    let st = sys::stat_fd(fd.as_fd())
        .map_err(|e| refuse(format!("cannot stat cache root {}: {}", physical.display(), sys::describe(&e))))?;
    if !st.same_inode(&chased.here().st) {
        return Err(refuse(format!("refusing {}: it was replaced while it was being opened", physical.display())));
    }
    let root = Root { fd, st, path: physical };
    if !force {
        check_shape(&root)?;
    }
    Ok(root)
}

/// What the service knew of a root it had pinned, to judge a directory that later
/// takes its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Former {
    pub dev: (u32, u32),
    pub ino: u64,
    pub uid: u32,
    /// The last time the service found it in place.
    pub seen: std::time::SystemTime,
}

impl Former {
    pub(crate) fn of(root: &Root) -> Former {
        Former { dev: root.st.dev, ino: root.st.ino, uid: root.st.uid, seen: std::time::SystemTime::now() }
    }
}

/// Whether a directory owned by `uid`:`gid` was made by the model's owner or a member of
/// its group (its group is the cache's, as a member's or the setgid parent's gives it,
/// or the group database lists its owner); with neither configured, by the owner of
/// the root it replaces.
fn may_make_root((uid, dir_gid): (u32, u32), policy: &crate::policy::model::Policy, former: &Former) -> bool {
    if policy.owner.is_none() && policy.group.is_none() {
        return uid == former.uid;
    }
    if policy.owner == Some(uid) || policy.group == Some(dir_gid) {
        return true;
    }
    let Some(gid) = policy.group else { return false };
    let Ok(Some(user)) = nix::unistd::User::from_uid(uid.into()) else { return false };
    user.gid.as_raw() == gid
        || nix::unistd::Group::from_gid(gid.into()).ok().flatten().is_some_and(|g| g.mem.contains(&user.name))
}

/// A directory found at a root's path after the pinned root went away (SPEC §4) is
/// accepted only when Go or cachekeeper could have made it there for this cache: the
/// same directory, or on the same filesystem and either empty, or made after the old
/// root was last seen, by the owner or a member. An existing tree renamed into the
/// root's name (another team's cache beside it) is refused.
pub(crate) fn accept_successor(
    new: &Root,
    former: &Former,
    policy: &crate::policy::model::Policy,
) -> Result<(), RootError> {
    if new.st.dev == former.dev && new.st.ino == former.ino {
        return Ok(());
    }
    let refused = |why: &str| {
        refuse(format!(
            "root replaced — refusing: {} is now another directory ({why}), not one Go or cachekeeper would have made \
             there; nothing in it is changed until an administrator runs `{} rescan` (or `reload`)",
            new.path.display(),
            crate::policy::hint::sudo("cachekeeperctl")
        ))
    };
    if new.st.dev != former.dev {
        return Err(refused("on another filesystem"));
    }
    let listing =
        new.reopen().map_err(|e| refuse(format!("cannot list {}: {}", new.path.display(), sys::describe(&e))))?;
    let mut empty = true;
    sys::read_dir(listing.as_fd(), |_, _| empty = false)
        .map_err(|e| refuse(format!("cannot list {}: {}", new.path.display(), sys::describe(&e))))?;
    if empty {
        return Ok(());
    }
    // Go's `go clean -modcache` followed by a download: a new root, filled at once.
    let made_since = sys::birth_time(new.fd()).is_some_and(|born| born >= former.seen);
    match (made_since, may_make_root((new.st.uid, new.st.gid), policy, former)) {
        (true, true) => Ok(()),
        (true, false) => Err(refused(&format!("made by uid {}, neither the owner nor a member", new.st.uid))),
        (false, _) => Err(refused("not empty, and older than the root it replaced")),
    }
}

/// Who owns what `create` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    /// Missing parents (`None`: whoever creates them).
    pub parents: Option<(u32, u32)>,
    /// The root itself: the cache's owner and group, where configured.
    pub root: (Option<u32>, Option<u32>),
    /// The root's mode until someone sets it: a cache root stays private (`0700`) until
    /// the walk gives it the model's mode.
    pub root_mode: u32,
    /// The group and mode of the root's parent, when it is created and must be the
    /// group's (see [`Ownership::for_cache`]).
    pub root_parent: Option<(u32, u32)>,
}

impl Ownership {
    /// What `--init` and the service give the directories they create for a cache.
    /// `go clean -modcache` removes the root itself, which needs write access to its
    /// parent: with `writable = true` (members may empty the cache) a parent created
    /// here is the group's too — setgid, group-writable, and not sticky, or a member
    /// could not remove a root another one created. The service makes the root again.
    pub(crate) fn for_cache(policy: &crate::policy::model::Policy, parents: Option<(u32, u32)>) -> Ownership {
        use crate::policy::model::{Model, Other, S_ISGID};
        let shared_and_writable = policy.writable && policy.model == Model::Shared;
        let other = if policy.other == Other::None { 0 } else { 0o005 };
        Ownership {
            parents,
            root: (policy.owner, policy.group),
            root_mode: 0o700,
            root_parent: policy.group.filter(|_| shared_and_writable).map(|gid| (gid, S_ISGID | 0o770 | other)),
        }
    }
}

/// Creates a missing root (SPEC §3): each missing directory with `mkdirat` relative to a
/// parent the resolution verified; parents `0755` with `own.parents`, the root alone with
/// the cache's owner and group. Returns what it created, outermost first.
pub(crate) fn create(path: &Path, origin: &Origin, own: Ownership) -> Result<Vec<PathBuf>, RootError> {
    make_dirs(path, origin, own, |target| refuse_by_structure(target, &Homes::load()))
}

/// A directory for the service's own files (socket, logs): resolved by the same rules as
/// a root, but not judged as a cache. Returns an `O_PATH` pin and its physical path.
pub(crate) fn open_dir(path: &Path) -> Result<(OwnedFd, Stat, PathBuf), RootError> {
    match chase(path, &Origin::Admin) {
        Ok(c) => {
            let physical = c.path();
            let step = c.stack.into_iter().last().expect("the stack always holds /");
            Ok((step.fd, step.st, physical))
        }
        Err(Stop::Missing(_)) => Err(refuse(format!("{} does not exist", path.display()))),
        Err(Stop::Refused(e)) => Err(e),
    }
}

/// Creates what is missing of `path` (see [`create`]), once `check` accepts the path
/// it will have.
pub(crate) fn make_dirs(
    path: &Path,
    origin: &Origin,
    own: Ownership,
    check: impl Fn(&Path) -> Result<(), RootError>,
) -> Result<Vec<PathBuf>, RootError> {
    let Missing { mut chase, rest } = match chase(path, origin) {
        Ok(_) => return Ok(Vec::new()),
        Err(Stop::Missing(m)) => m,
        Err(Stop::Refused(e)) => return Err(e),
    };
    let rest: Vec<OsString> = rest.into_iter().filter(|n| n.as_bytes() != b"." && !n.is_empty()).collect();
    if rest.iter().any(|n| n.as_bytes() == b"..") {
        return Err(refuse(format!("cannot create {}: `..` follows a directory that does not exist", path.display())));
    }
    // Everything is checked before the first directory is made.
    let target = rest.iter().fold(chase.path(), |p, n| p.join(n));
    check(&target)?;
    let mut owner_of_parent = chase.here().st.uid;
    for (i, name) in rest.iter().enumerate() {
        let is_root = i + 1 == rest.len();
        let uid = if is_root { own.root.0 } else { own.parents.map(|p| p.0) };
        let uid = uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        if unsafe_transition(owner_of_parent, uid) {
            return Err(refuse(format!(
                "refusing to create {}: it would belong to uid {uid} inside a directory of uid {owner_of_parent}",
                chase.path().join(name).display()
            )));
        }
        owner_of_parent = uid;
    }
    let mut created = Vec::new();
    for (i, name) in rest.iter().enumerate() {
        let is_root = i + 1 == rest.len();
        let shown = chase.path().join(name);
        let fail =
            |what: &str, e: io::Error| refuse(format!("cannot {what} {}: {}", shown.display(), sys::describe(&e)));
        let c =
            CString::new(name.as_bytes()).map_err(|_| refuse(format!("`{}` contains a NUL byte", shown.display())))?;
        let mode = if is_root { own.root_mode } else { 0o755 };
        match sys::mkdir_at(chase.here().fd.as_fd(), &c, mode) {
            Ok(()) => created.push(shown.clone()),
            // Made meanwhile by someone else (Go itself, a second --init): resolve it as
            // any existing directory, with every check.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(fail("create", e)),
        }
        let chase_next = chase.walk([name.clone()]).map_err(|stop| match stop {
            Stop::Missing(_) => refuse(format!("{} vanished as it was created", shown.display())),
            Stop::Refused(e) => e,
        })?;
        chase = chase_next;
        if created.last() != Some(&shown) {
            continue;
        }
        let fd = chase.here().fd.as_fd();
        let parent_of_root = (i + 2 == rest.len()).then_some(own.root_parent).flatten();
        let (uid, gid, mode) = match (is_root, parent_of_root) {
            (true, _) => (own.root.0, own.root.1, mode),
            (false, Some((gid, group_mode))) => (own.parents.map(|p| p.0), Some(gid), group_mode),
            (false, None) => (own.parents.map(|p| p.0), own.parents.map(|p| p.1), mode),
        };
        if uid.is_some() || gid.is_some() {
            sys::chown_fd(fd, uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX)).map_err(|e| fail("give away", e))?;
        }
        // The umask must not leave a parent that others cannot traverse.
        sys::chmod_fd(fd, mode).map_err(|e| fail("set the mode of", e))?;
        let st = sys::stat_fd(fd).map_err(|e| fail("stat", e))?;
        chase.stack.last_mut().expect("just pushed").st = st;
    }
    Ok(created)
}

/// Home directories: each user's own, and the stricter rule for people's homes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Homes {
    /// Every home in the password database: never a cache root itself.
    all: Vec<PathBuf>,
    /// Homes of people (login uids, and the caller's): below them only Go-cache-shaped
    /// paths may be roots.
    people: Vec<PathBuf>,
}

impl Homes {
    pub(crate) fn load() -> Homes {
        let mut homes = Homes::default();
        for (uid, dir) in sys::passwd_homes() {
            let dir: PathBuf = dir.components().collect();
            if dir == Path::new("/") || dir.as_os_str().is_empty() {
                continue;
            }
            // Debian's login range (UID_MIN..=UID_MAX of login.defs), and root.
            if (1000..=60000).contains(&uid) || uid == 0 {
                homes.people.push(dir.clone());
            }
            homes.all.push(dir);
        }
        let caller = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        homes.people.extend(caller.map(|h| h.components().collect::<PathBuf>()).filter(|h| h != Path::new("/")));
        homes
    }

    #[cfg(test)]
    fn of(all: &[&str], people: &[&str]) -> Homes {
        Homes { all: all.iter().map(PathBuf::from).collect(), people: people.iter().map(PathBuf::from).collect() }
    }
}

/// Trees no cache may be in or under: the model would make their files group- and
/// world-readable and strip setuid (`/usr/bin/sudo`!).
const SYSTEM_TREES: &[&str] = &[
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/root",
    "/var/lib",
    "/var/log",
    "/run",
    "/System",
    "/private/etc",
    "/private/var/db",
    "/private/var/root",
];

/// Directories that hold many unrelated things: never a cache themselves.
const SHARED_TOPS: &[&str] = &[
    "/home",
    "/tmp",
    "/var",
    "/var/tmp",
    "/var/cache",
    "/srv",
    "/opt",
    "/mnt",
    "/media",
    "/Users",
    "/Library",
    "/Applications",
    "/Volumes",
    "/private",
    "/private/tmp",
    "/private/var",
];

/// Where the service keeps its own runtime files; a cache for tests or a tmpfs-backed
/// service may live strictly below it.
const OWN_RUNTIME: &str = "/run/cachekeeper";

/// What may be a root, judged on the physical path (SPEC §3).
pub(crate) fn refuse_by_structure(path: &Path, homes: &Homes) -> Result<(), RootError> {
    let shown = path.display();
    if path == Path::new("/") {
        return Err(refuse("refusing to manage `/`: give the Go module cache itself"));
    }
    let under_own_runtime = path.starts_with(OWN_RUNTIME) && path != Path::new(OWN_RUNTIME);
    let first = path.components().nth(1).map(|c| c.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    if !under_own_runtime && (SYSTEM_TREES.iter().any(|t| path.starts_with(t)) || first.starts_with(b"lib")) {
        return Err(refuse(format!("refusing to manage `{shown}`: it is in a system directory, not a Go cache")));
    }
    if SHARED_TOPS.iter().any(|t| path == Path::new(t)) {
        return Err(refuse(format!(
            "refusing to manage `{shown}`: it holds more than a Go cache; give the cache itself"
        )));
    }
    if homes.all.iter().chain(&homes.people).any(|h| h == path) {
        return Err(refuse(format!(
            "refusing to manage `{shown}`: it is a home directory, not a Go module cache (the default cache is `{}`)",
            path.join("go/pkg/mod").display()
        )));
    }
    if let Some(home) = homes.people.iter().find(|h| path.starts_with(h)) {
        if !go_cache_shaped(path) {
            return Err(refuse(format!(
                "refusing to manage `{shown}`: inside the home {} only a Go cache may be managed (a path ending in \
                 pkg/mod or go-build, or named like gomodcache or gocache)",
                home.display()
            )));
        }
    }
    Ok(())
}

/// A path a Go cache has: `…/pkg/mod` (GOPATH's module cache), `…/go-build` (the default
/// GOCACHE), or a name that says so (`.gomodcache`, `gocache`, `go-mod-cache`, …).
pub(crate) fn go_cache_shaped(path: &Path) -> bool {
    let mut names = path.components().rev().map(|c| c.as_os_str().as_bytes().to_ascii_lowercase());
    let last = names.next().unwrap_or_default();
    if last == b"mod" && names.next().as_deref() == Some(b"pkg".as_slice()) {
        return true;
    }
    let squashed: Vec<u8> = last.into_iter().filter(u8::is_ascii_alphanumeric).collect();
    [b"gobuild".as_slice(), b"gocache", b"modcache", b"gomod"]
        .iter()
        .any(|k| squashed.windows(k.len()).any(|w| w == *k))
}

/// A non-empty root must look like a Go cache: a module cache has `cache/download/` or `cache/vcs/`, a
/// build cache `README` and `trim.txt`. Anything else is refused unless forced.
fn check_shape(root: &Root) -> Result<(), RootError> {
    let fd = root.fd();
    let is =
        |dir: BorrowedFd<'_>, name: &CStr, kind: FileType| sys::stat_at(dir, name).is_ok_and(|s| s.file_type == kind);
    // `cache/vcs` alone: a cache used so far only for private modules fetched with
    // GOPROXY=direct (cmd/go/internal/modfetch/codehost `WorkDir`).
    let module_cache = sys::pin_dir_at(fd, c"cache")
        .is_ok_and(|cache| is(cache.as_fd(), c"download", FileType::Dir) || is(cache.as_fd(), c"vcs", FileType::Dir));
    let build_cache = is(fd, c"README", FileType::File) && is(fd, c"trim.txt", FileType::File);
    if module_cache || build_cache {
        return Ok(());
    }
    let listing =
        root.reopen().map_err(|e| refuse(format!("cannot list {}: {}", root.path.display(), sys::describe(&e))))?;
    let mut first: Option<Vec<u8>> = None;
    sys::read_dir(listing.as_fd(), |name, _| {
        first.get_or_insert_with(|| name.to_bytes().to_vec());
    })
    .map_err(|e| refuse(format!("cannot list {}: {}", root.path.display(), sys::describe(&e))))?;
    match first {
        None => Ok(()),
        Some(name) => Err(refuse(format!(
            "refusing to manage `{}`: it is not empty (it holds `{}`) and does not look like a Go cache (no \
             cache/download/ or cache/vcs/, nor README and trim.txt); give --force (force = true) if it really is one",
            root.path.display(),
            crate::policy::names::Escaped(&name)
        ))),
    }
}

/// Whether links from elsewhere can reach a root (SPEC §6, hard links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// The root is a mount of its own: `link(2)` and `rename(2)` from anywhere else fail
    /// with `EXDEV`.
    Root,
    /// Its parent is a mount of its own but the root is not: everything else below the
    /// parent shares the root's mount, and a member who can write there can link a file
    /// from there into the cache. Not a guard.
    Parent,
    /// It shares its mount with the rest of that filesystem.
    None,
}

impl Isolation {
    /// Only exactly the root on a mount of its own stops links from outside.
    pub(crate) fn isolated(&self) -> bool {
        matches!(self, Isolation::Root)
    }

    pub(crate) fn describe(&self, root: &Path) -> String {
        let parent = root.parent().unwrap_or(root).display();
        let root = root.display();
        match self {
            Isolation::Root => format!("isolated: {root} is a mount of its own"),
            Isolation::None if !cfg!(target_os = "linux") => format!(
                "not isolated: files elsewhere on its filesystem can be hard-linked in (there are no bind mounts \
                 here; a volume of its own for {root} isolates it)"
            ),
            Isolation::Parent => format!(
                "not isolated: {parent} is a mount of its own but {root} is not, so files elsewhere in {parent} can \
                 be hard-linked in (`{} --init --isolate --path {root}` bind-mounts it on itself)",
                crate::policy::hint::sudo("cachekeeper")
            ),
            Isolation::None => format!(
                "not isolated: files elsewhere on its filesystem can be hard-linked in (`{} --init --isolate --path \
                 {root}` bind-mounts it on itself)",
                crate::policy::hint::sudo("cachekeeper")
            ),
        }
    }
}

fn other_mount(a: &Stat, b: &Stat) -> bool {
    a.dev != b.dev || matches!((a.mnt_id, b.mnt_id), (Some(x), Some(y)) if x != y)
}

/// Is the root a mount of its own (or only its parent)?
pub(crate) fn isolation(root: &Root) -> Isolation {
    let Ok(parent) = sys::pin_dir_at(root.fd(), c"..") else { return Isolation::None };
    let Ok(parent_st) = sys::stat_fd(parent.as_fd()) else { return Isolation::None };
    if other_mount(&root.st, &parent_st) {
        return Isolation::Root;
    }
    let Ok(grand) = sys::pin_dir_at(parent.as_fd(), c"..").and_then(|g| sys::stat_fd(g.as_fd())) else {
        return Isolation::None;
    };
    // `..` of `/` is `/` itself.
    if !grand.same_inode(&parent_st) && other_mount(&parent_st, &grand) {
        return Isolation::Parent;
    }
    Isolation::None
}

/// Bind-mounts exactly the root on itself, unless it already is a mount: its parent's
/// other children are not inside the boundary (a member who can write beside the root
/// could link from there). The price: `go clean -modcache` empties the cache but cannot
/// remove a mount point, and says `unlinkat <root>: device or resource busy`. Needs
/// `CAP_SYS_ADMIN` in the initial mount namespace. Returns the new mount's id, `None`
/// when the root already was a mount (nothing is stacked on it).
pub(crate) fn isolate(root: &Root) -> Result<Option<u64>, RootError> {
    if isolation(root).isolated() {
        return Ok(None);
    }
    sys::bind_onto_itself(root.fd()).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EPERM) { " (a bind mount needs root)" } else { "" };
        refuse(format!("cannot isolate {}: {}{hint}", root.path.display(), sys::describe(&e)))
    })?;
    // The pinned descriptor still stands on the mount below; the new one is reached by path.
    let (fd, _, _) = open_dir(&root.path)?;
    let st = sys::stat_fd(fd.as_fd()).map_err(|e| refuse(format!("cannot stat {}: {e}", root.path.display())))?;
    Ok(Some(st.mnt_id.unwrap_or(0)))
}

/// `fs.protected_hardlinks`: `Some(true)` when users cannot link files they do not own.
pub(crate) fn protected_hardlinks() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").ok().map(|v| v.trim() != "0")
}

/// Files may be changed in a cache only when no link from outside can be in it unnoticed:
/// the cache is isolated, or the kernel stops users linking files they do not own. (With
/// the sysctl on, a member can still link files they may write, which the isolation
/// alone stops; both are reported.)
pub(crate) fn hard_link_guard(isolation: &Isolation, protected: Option<bool>, root: &Path) -> Result<(), RootError> {
    if isolation.isolated() || protected != Some(false) {
        return Ok(());
    }
    Err(refuse(format!(
        "refusing to change files in {0}: fs.protected_hardlinks is 0 and the cache is not isolated, so a group member \
         could hard-link any file of the system into it; run `{1} --init --isolate --path {0}` (or bind-mount {0} on \
         itself), or `sudo sysctl fs.protected_hardlinks=1`",
        root.display(),
        crate::policy::hint::sudo("cachekeeper")
    )))
}

/// The `go env` file (`$HOME/.config/go/env`) of a sudo caller, read from a descriptor of
/// their home without following symlinks: its contents are the caller's, not trusted.
pub(crate) fn read_home_file(home: &Path, rel: &[&CStr]) -> Option<String> {
    let mut dir = match chase(home, &Origin::Admin) {
        Ok(c) => c.stack.into_iter().last()?.fd,
        Err(_) => return None,
    };
    let (file, dirs) = rel.split_last()?;
    for name in dirs {
        dir = sys::pin_dir_at(dir.as_fd(), name).ok()?;
    }
    let bytes = sys::read_small_file_at(dir.as_fd(), file, 64 * 1024).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_may_be_a_root() {
        let homes =
            Homes::of(&["/home/alice", "/home/bob", "/var/cache/man", "/nonexistent"], &["/home/alice", "/home/bob"]);
        let refused = [
            "/",
            "/etc",
            "/etc/ssh",
            "/usr/bin",
            "/usr/lib",
            "/usr/local/go/pkg/mod",
            "/lib",
            "/lib64/x",
            "/libx32",
            "/bin",
            "/sbin/x",
            "/boot/efi",
            "/dev/shm/mod",
            "/proc/self",
            "/sys/fs",
            "/root",
            "/root/.ssh",
            "/root/go/pkg/mod",
            "/var/lib",
            "/var/lib/dpkg",
            "/var/log",
            "/var/log/journal",
            "/run",
            "/run/user/1000/mod",
            "/run/cachekeeper",
            "/home",
            "/home/alice",
            "/home/bob",
            "/home/alice/.ssh",
            "/home/alice/src/project",
            "/home/alice/go",
            "/home/alice/go/pkg",
            "/var/cache/man",
            "/tmp",
            "/var",
            "/var/cache",
            "/srv",
        ];
        for p in refused {
            assert!(refuse_by_structure(Path::new(p), &homes).is_err(), "{p} was accepted");
        }
        let accepted = [
            "/var/cache/go/mod",
            "/var/cache/go/build",
            "/srv/go/mod",
            "/tmp/ck/mod",
            "/opt/ci/cache",
            "/home/alice/go/pkg/mod",
            "/home/alice/.cache/go-build",
            "/home/alice/work/gopath/pkg/mod",
            "/home/alice/.gomodcache",
            "/home/bob/Go-Mod-Cache",
            "/run/cachekeeper/test/mod",
            "/var/cache/gomod",
        ];
        for p in accepted {
            assert_eq!(refuse_by_structure(Path::new(p), &homes), Ok(()), "{p} was refused");
        }
    }

    #[test]
    fn messages_name_the_path_and_the_reason_on_one_line() {
        let homes = Homes::of(&["/home/alice"], &["/home/alice"]);
        for (p, want) in [
            ("/etc/ssh", "system directory"),
            ("/home/alice", "home directory"),
            ("/home/alice/src", "only a Go cache"),
            ("/tmp", "holds more than a Go cache"),
        ] {
            let e = refuse_by_structure(Path::new(p), &homes).unwrap_err().0;
            assert!(e.contains(p) && e.contains(want) && !e.contains('\n'), "{p}: {e}");
        }
    }

    #[test]
    fn go_cache_shapes() {
        for p in ["/a/pkg/mod", "/a/go-build", "/a/.gomodcache", "/a/GOCACHE", "/a/go_mod_cache", "/a/gobuild"] {
            assert!(go_cache_shaped(Path::new(p)), "{p}");
        }
        for p in ["/a/mod", "/a/pkg", "/a/.ssh", "/a/cache", "/a/go", "/a/src/mod"] {
            assert!(!go_cache_shaped(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn unsafe_transitions() {
        assert!(!unsafe_transition(0, 1000));
        assert!(!unsafe_transition(1000, 1000));
        assert!(unsafe_transition(1000, 0));
        assert!(unsafe_transition(1000, 1001));
    }

    #[test]
    fn the_hard_link_guard_refuses_only_an_unisolated_cache_without_the_sysctl() {
        let root = Path::new("/var/cache/go/mod");
        assert!(hard_link_guard(&Isolation::None, Some(false), root).is_err());
        let e = hard_link_guard(&Isolation::None, Some(false), root).unwrap_err().0;
        assert!(e.contains("fs.protected_hardlinks") && e.contains("--isolate") && e.contains("/var/cache/go"), "{e}");
        assert!(hard_link_guard(&Isolation::None, Some(true), root).is_ok());
        assert!(hard_link_guard(&Isolation::Parent, Some(false), root).is_err(), "a parent mount is no guard");
        assert!(hard_link_guard(&Isolation::Root, Some(false), root).is_ok());
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::Builder::new().prefix("ck-root-").tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("mod/cache/download")).unwrap();
        t
    }

    #[test]
    fn spellings_resolve_to_the_same_directory() {
        let t = tree();
        let base = t.path().display().to_string();
        let want = resolve(&t.path().join("mod"), &Origin::Admin, false).unwrap();
        for spelled in
            [format!("{base}/mod/"), format!("{base}//mod"), format!("{base}/./mod"), format!("{base}/mod/cache/..")]
        {
            let got = resolve(Path::new(&spelled), &Origin::Admin, false).unwrap();
            assert!(got.stat().same_inode(want.stat()), "{spelled}");
            assert_eq!(got.path(), want.path(), "{spelled}");
        }
    }

    #[test]
    fn a_non_empty_directory_that_is_no_go_cache_needs_force() {
        let t = tempfile::Builder::new().prefix("ck-root-").tempdir().unwrap();
        let dir = t.path().join("data");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(resolve(&dir, &Origin::Admin, false).is_ok(), "an empty directory may become a cache");
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let e = resolve(&dir, &Origin::Admin, false).unwrap_err().0;
        assert!(e.contains("notes.txt") && e.contains("--force"), "{e}");
        assert!(resolve(&dir, &Origin::Admin, true).is_ok());
        std::fs::write(dir.join("README"), b"x").unwrap();
        std::fs::write(dir.join("trim.txt"), b"x").unwrap();
        assert!(resolve(&dir, &Origin::Admin, false).is_ok(), "a build cache");
    }

    /// Issue 21: a module cache that has only fetched private modules with
    /// GOPROXY=direct holds `cache/vcs` and no `cache/download`.
    #[test]
    fn a_cache_holding_only_vcs_clones_is_go_shaped() {
        let t = tempfile::Builder::new().prefix("ck-root-").tempdir().unwrap();
        let dir = t.path().join("data");
        std::fs::create_dir_all(dir.join("cache/vcs/0123abcd")).unwrap();
        assert!(resolve(&dir, &Origin::Admin, false).is_ok(), "cache/vcs alone is a module cache");
    }

    #[test]
    fn a_path_from_the_callers_environment_follows_no_symlink() {
        let t = tree();
        std::os::unix::fs::symlink(t.path().join("mod"), t.path().join("link")).unwrap();
        let home = Origin::Home(t.path().to_owned());
        assert!(resolve(&t.path().join("mod"), &home, false).is_ok());
        let e = resolve(&t.path().join("link"), &home, false).unwrap_err().0;
        assert!(e.contains("symlink"), "{e}");
        let e = resolve(&t.path().join("mod/../../x"), &home, false).unwrap_err().0;
        assert!(e.contains("leads out of"), "{e}");
        let e = resolve(Path::new("/var/cache/go/mod"), &home, false).unwrap_err().0;
        assert!(e.contains("beneath your home"), "{e}");
    }
}

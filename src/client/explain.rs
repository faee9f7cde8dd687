//! `cachekeeperctl explain`: why a user may not do something at a path. Walks every
//! component from `/`, says which one denies which access (search, read, write, create
//! an entry) and why (owner, group or other bits, a missing group membership, an ACL, a
//! read-only filesystem), and whether a configured owner model would fix it. Needs no
//! running service.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::policy::acl::{self, Acl, GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ};
use crate::policy::config::{CacheConfig, Config};
use crate::policy::model::{Attrs, Kind};

/// Who asks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Who {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Who {
    /// The calling process's own credentials.
    pub(crate) fn caller() -> Who {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let mut groups = crate::sys::own_groups();
        groups.push(gid);
        Who { name: user_name(uid), uid, gid, groups }
    }

    /// A user by name or uid, with the groups the group database gives it.
    pub(crate) fn lookup(spec: &str) -> Result<Who, crate::policy::config::ValueError> {
        let (uid, gid) = crate::policy::config::resolve_user(spec)?;
        let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
        let mut groups = vec![gid];
        if let Some(u) = &user {
            if let Ok(name) = CString::new(u.name.clone()) {
                groups.extend(crate::sys::group_list(&name, gid));
            }
        }
        Ok(Who { name: user_name(uid), uid, gid, groups })
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

pub(crate) fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(gid.into()) {
        Ok(Some(g)) => g.name,
        _ => format!("gid {gid}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Access {
    Search,
    Read,
    Write,
    /// Create (or remove) an entry in a directory: write and search on it.
    Create,
}

impl Access {
    fn bits(self) -> u32 {
        match self {
            Access::Search => 0o1,
            Access::Read => 0o4,
            Access::Write => 0o2,
            Access::Create => 0o3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Access::Search => "search",
            Access::Read => "read",
            Access::Write => "write",
            Access::Create => "create entries",
        }
    }
}

/// One component of the path and what the user may do there.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub path: String,
    pub exists: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub mode: Option<String>,
    pub checks: Vec<Check>,
    /// For the directory explained: its default ACL (what new entries in it inherit),
    /// `"none"` when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_acl: Option<String>,
}

impl Step {
    /// A component that does not exist (yet): the user is to create it.
    fn missing(path: &Path) -> Step {
        Step {
            path: path.display().to_string(),
            exists: false,
            owner: None,
            group: None,
            mode: None,
            checks: Vec::new(),
            default_acl: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub access: Access,
    pub allowed: bool,
    pub why: String,
    /// When denied: what the configured owner model would do about it.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Explanation {
    pub schema_version: u32,
    pub user: Who,
    pub path: String,
    /// The access judged at the path itself, and why that one.
    pub access: Vec<Access>,
    pub because: String,
    pub steps: Vec<Step>,
    pub allowed: bool,
    /// In a clone of `cache/vcs` that git refuses for the user: why, and the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
}

/// What the go command needs at `path`, judged by where it lies in a Go cache
/// (go-modcache.md): extracted module trees are read-only on purpose, so only reading
/// them matters; below `cache/download` Go creates files and takes write locks.
pub(crate) fn go_needs(path: &Path, is_dir: bool, caches: &[CacheConfig]) -> (Vec<Access>, String) {
    use Access::*;
    let rel = match caches.iter().find(|c| path.starts_with(&c.path)) {
        Some(c) => path.strip_prefix(&c.path).ok().map(Path::to_path_buf),
        None => {
            let names: Vec<_> = path.components().collect();
            let at = names.windows(2).position(|w| w[0].as_os_str() == "pkg" && w[1].as_os_str() == "mod");
            at.map(|i| names[i + 2..].iter().collect::<PathBuf>())
        }
    };
    let Some(rel) = rel else {
        let all = if is_dir { vec![Search, Read, Create] } else { vec![Read, Write] };
        return (all, "no Go module cache contains it: every access is judged".into());
    };
    let names: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let name = names.last().map(String::as_str).unwrap_or("");
    let in_download = names.len() >= 2 && names[0] == "cache" && names[1] == "download";
    let say = |a: Vec<Access>, why: &str| (a, why.to_owned());
    if names.is_empty() {
        return say(vec![Search, Create], "the cache root: Go creates cache/ and module directories in it");
    }
    if names[0] == "cache" {
        return match (is_dir, name) {
            (true, _) => {
                say(vec![Search, Create], "a directory of Go's download cache: Go creates files and locks in it")
            }
            (false, "lock") => say(vec![Write], "Go's cache lock: opened for writing to take the lock"),
            (false, n) if n.ends_with(".lock") || n == "list" || n.ends_with(".ziphash") => {
                say(vec![Write], "a lock, version list or zip hash: Go opens it for writing")
            }
            (false, _) if in_download => say(vec![Read], "a downloaded file: Go reads it (and replaces it by rename)"),
            (false, _) => say(vec![Read, Write], "a file of Go's VCS cache: Go reads and writes it"),
        };
    }
    if names.iter().any(|n| n.contains('@')) {
        let what = if is_dir { vec![Search, Read] } else { vec![Read] };
        return say(
            what,
            "part of an extracted module tree, which Go keeps read-only on purpose: only reading matters",
        );
    }
    if is_dir {
        return say(vec![Search, Create], "a module path directory: Go creates module directories in it");
    }
    say(vec![Read], "a file in the module cache: Go reads it")
}

/// What the kernel decides for `who` and `access` on an entry, and why.
fn decide(who: &Who, meta: &std::fs::Metadata, path: &Path, access: Access) -> (bool, String) {
    let wants_write = access.bits() & 0o2 != 0;
    if wants_write && crate::sys::read_only(path) {
        return (false, "the filesystem is mounted read-only".into());
    }
    if who.uid == 0 {
        return (true, "root may (CAP_DAC_OVERRIDE)".into());
    }
    let mode = meta.mode();
    let need = access.bits();
    // macOS: a `deny` entry of the extended ACL is checked before the mode bits.
    let denied =
        CString::new(path.as_os_str().as_bytes()).ok().and_then(|c| crate::sys::ext_acl_path(&c).ok().flatten());
    if let Some(ace) = denied.as_deref().map(crate::policy::ext_acl::denies).unwrap_or_default().into_iter().find(|a| {
        crate::policy::ext_acl::blocks(a, who.uid, &who.groups) && crate::policy::ext_acl::takes_away(a, need)
    }) {
        return (
            false,
            format!("the extended ACL has `{}`, which applies to you (cachekeeper --init removes it)", ace.describe()),
        );
    }
    if let Some(acl) = access_acl(path) {
        return acl.decide(who, meta.uid(), meta.gid(), need);
    }
    let (class, bits) = if who.uid == meta.uid() {
        ("the owner", (mode >> 6) & 7)
    } else if who.in_group(meta.gid()) {
        ("a member of its group", (mode >> 3) & 7)
    } else {
        ("other", mode & 7)
    };
    let allowed = bits & need == need;
    let mut why = format!("you are {class} here, and {class} has {}", rwx(bits));
    if !allowed && class == "other" && ((mode >> 3) & 7) & need == need {
        let group = group_name(meta.gid());
        let how = match nix::unistd::Group::from_gid(meta.gid().into()) {
            Ok(Some(g)) => format!("usermod -aG {} {}", g.name, who.name),
            _ => format!("add {} to gid {}", who.name, meta.gid()),
        };
        why += &format!("; members of group {group} may: you are not in that group ({how}, then log in again)");
    }
    (allowed, why)
}

fn rwx(bits: u32) -> String {
    let f = |b: u32, c: char| if bits & b != 0 { c } else { '-' };
    format!("{}{}{}", f(4, 'r'), f(2, 'w'), f(1, 'x'))
}

/// The POSIX ACL xattr `attr` of `path` (following symlinks, as access does). Explain
/// only reads, and what it reads is the caller's own path, as the kernel would see it.
fn read_acl(path: &Path, attr: &std::ffi::CStr) -> Option<Acl> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let bytes = crate::sys::get_xattr_path(&c, attr).ok()??;
    Acl::decode(&bytes).ok()
}

fn access_acl(path: &Path) -> Option<Acl> {
    read_acl(path, acl::ACCESS)
}

/// What the POSIX.1e access check makes of an access ACL.
trait Decide {
    fn decide(&self, who: &Who, owner: u32, group: u32, need: u32) -> (bool, String);
}

impl Decide for Acl {
    /// The POSIX.1e access check (acl(5), "Access check algorithm").
    fn decide(&self, who: &Who, owner: u32, group: u32, need: u32) -> (bool, String) {
        let perm = |tag: u16| self.entries.iter().find(|e| e.tag == tag).map(|e| u32::from(e.perm));
        let mask = perm(MASK).unwrap_or(7);
        let hint = "an ACL applies (see getfacl)";
        if who.uid == owner {
            let p = perm(USER_OBJ).unwrap_or(0);
            return (p & need == need, format!("{hint}: you are the owner, whose entry has {}", rwx(p)));
        }
        if let Some(e) = self.entries.iter().find(|e| e.tag == USER && e.id == who.uid) {
            let p = u32::from(e.perm) & mask;
            return (p & need == need, format!("{hint}: your own entry has {} after the mask", rwx(p)));
        }
        let groups: Vec<u32> = self
            .entries
            .iter()
            .filter(|e| (e.tag == GROUP_OBJ && who.in_group(group)) || (e.tag == GROUP && who.in_group(e.id)))
            .map(|e| u32::from(e.perm) & mask)
            .collect();
        if !groups.is_empty() {
            let allowed = groups.iter().any(|p| p & need == need);
            let best = groups.iter().fold(0, |a, p| a | p);
            return (allowed, format!("{hint}: your groups' entries give at most {} after the mask", rwx(best)));
        }
        let p = perm(OTHER).unwrap_or(0);
        (p & need == need, format!("{hint}: you match no entry, and other has {}", rwx(p)))
    }
}

/// What the configured owner model would make of a denying entry, and whether that
/// would allow the access.
fn fix(who: &Who, path: &Path, meta: &std::fs::Metadata, access: Access, caches: &[CacheConfig]) -> String {
    let Some(cache) = caches.iter().find(|c| path.starts_with(&c.path)) else {
        let above = caches.iter().any(|c| c.path.starts_with(path));
        return if above {
            format!("{} is above every configured cache: its owner model does not reach it", path.display())
        } else {
            "no configured cache contains it".into()
        };
    };
    if crate::sys::read_only(path) {
        return "no owner model can help: remount the filesystem read-write".into();
    }
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let now = Attrs { uid: meta.uid(), gid: meta.gid(), mode: meta.mode() & 0o7777 };
    let to = cache.policy.target(kind, now);
    let bits = if who.uid == to.uid {
        (to.mode >> 6) & 7
    } else if who.in_group(to.gid) {
        (to.mode >> 3) & 7
    } else {
        to.mode & 7
    };
    let after = format!("{}:{} {:04o}", user_name(to.uid), group_name(to.gid), to.mode);
    let root = cache.path.display();
    if to == now {
        format!("it already complies with the owner model of {root}, which does not give you this")
    } else if bits & access.bits() == access.bits() {
        format!("the owner model of {root} fixes it: it becomes {after} (cachekeeper --init, or the service)")
    } else if to.gid != who.gid && !who.in_group(to.gid) && cache.policy.group.is_some() {
        format!("the owner model of {root} makes it {after}, which helps only members of group {}", group_name(to.gid))
    } else {
        format!("the owner model of {root} makes it {after}, which still does not give you this")
    }
}

/// Explains what `who` may do on each component of `path`: search on the way, and at
/// the path itself `access`, or without it what Go needs there. `caches` are the
/// configured caches, for what Go needs and for the fixes.
pub(crate) fn explain(who: &Who, path: &Path, caches: &[CacheConfig], access: Option<Access>) -> Explanation {
    let found = std::fs::metadata(path);
    let is_dir = found.as_ref().is_ok_and(|m| m.is_dir());
    let (at_path, because) = match (access, found.is_ok()) {
        (_, false) => (Vec::new(), "it does not exist yet: what matters is creating it in the directory above".into()),
        (Some(a), true) => (vec![a], format!("asked for {}", a.name())),
        (None, true) => go_needs(path, is_dir, caches),
    };
    let mut steps = Vec::new();
    let mut allowed = true;
    let mut prefix = PathBuf::new();
    let components: Vec<_> = path.components().collect();
    for (i, c) in components.iter().enumerate() {
        prefix.push(c);
        let last = i + 1 == components.len();
        let meta = std::fs::metadata(&prefix);
        let Ok(meta) = meta else {
            steps.push(Step::missing(&prefix));
            break;
        };
        let next_missing = !last && std::fs::metadata(prefix.join(components[i + 1])).is_err();
        let wanted: Vec<Access> = if last {
            at_path.clone()
        } else if next_missing {
            // The next component is to be created here (Go's MkdirAll).
            vec![Access::Search, Access::Create]
        } else {
            vec![Access::Search]
        };
        let checks: Vec<Check> = wanted
            .into_iter()
            .map(|access| {
                let (ok, why) = decide(who, &meta, &prefix, access);
                let fix = (!ok).then(|| fix(who, &prefix, &meta, access, caches));
                allowed &= ok;
                Check { access, allowed: ok, why, fix }
            })
            .collect();
        steps.push(Step {
            path: prefix.display().to_string(),
            exists: true,
            owner: Some(meta.uid()),
            group: Some(meta.gid()),
            mode: Some(format!("{:04o}", meta.mode() & 0o7777)),
            checks,
            default_acl: (last && meta.is_dir())
                .then(|| read_acl(&prefix, acl::DEFAULT).map_or_else(|| "none".to_owned(), |a| a.text())),
        });
        if next_missing {
            steps.push(Step::missing(&prefix.join(components[i + 1])));
            break;
        }
    }
    let git = crate::client::gofidelity::explain_clone(who.uid, path, caches);
    Explanation {
        schema_version: 1,
        user: who.clone(),
        path: path.display().to_string(),
        access: at_path,
        because,
        steps,
        // Go 1.21 and later are not stopped by git's ownership check (GIT_DIR).
        allowed: allowed && (git.is_none() || crate::client::gofidelity::go_sets_git_dir()),
        git,
    }
}

/// The human form.
pub(crate) fn render(e: &Explanation) -> String {
    let who = if e.user.name == format!("uid {}", e.user.uid) {
        e.user.name.clone()
    } else {
        format!("{} (uid {})", e.user.name, e.user.uid)
    };
    // The answer first: the verdict, then the first denial and its fix; the walk from /
    // after it, for whoever wants to see why.
    let denied = e.steps.iter().find_map(|s| s.checks.iter().find(|c| !c.allowed).map(|c| (s, c)));
    let mut out = match denied {
        None if e.allowed => format!("{who} at {}: allowed\n", e.path),
        None => format!("{who} at {}: DENIED\n", e.path),
        Some((s, c)) => {
            let mut head = format!("{who} at {}: DENIED: {} at {}: {}\n", e.path, c.access.name(), s.path, c.why);
            if let Some(fix) = &c.fix {
                head += &format!("  fix: {fix}\n");
            }
            head
        }
    };
    // git's own word on a clone of cache/vcs, which the mode bits do not show.
    if let Some(git) = &e.git {
        out += &format!("  git: {git}\n");
    }
    let wanted: Vec<&str> = e.access.iter().map(|a| a.name()).collect();
    if wanted.is_empty() {
        out += &format!("  judged: {}\n", e.because);
    } else {
        out += &format!("  judged: {} ({})\n", wanted.join(", "), e.because);
    }
    out += "component by component:\n";
    for s in &e.steps {
        if !s.exists {
            out += &format!("  {}  does not exist (to be created)\n", s.path);
            continue;
        }
        let owner = s.owner.map_or(String::new(), user_name);
        let group = s.group.map_or(String::new(), group_name);
        out += &format!("  {}  {owner}:{group} {}\n", s.path, s.mode.as_deref().unwrap_or(""));
        match s.default_acl.as_deref() {
            Some("none") => {
                out += "    new entries: no default ACL here, they get the creator's umask until repaired\n"
            }
            Some(acl) => {
                out += &format!("    new entries: inherit the default ACL {acl}, whatever the creator's umask\n")
            }
            None => {}
        }
        for c in &s.checks {
            let verdict = if c.allowed { "ok" } else { "DENIED" };
            out += &format!("    {} {verdict}: {}\n", c.access.name(), c.why);
            if let Some(fix) = &c.fix {
                out += &format!("      fix: {fix}\n");
            }
        }
    }
    out
}

/// The caches of the configuration: the one given must be readable; the default one may
/// be absent (explain works without one).
pub(crate) fn configured_caches(path: Option<&Path>) -> Result<Vec<CacheConfig>, crate::policy::config::ConfigError> {
    let file = crate::policy::config::path_or_default(path);
    match Config::load(&file) {
        Ok(c) => Ok(c.caches),
        Err(crate::policy::config::ConfigError::Read { source, .. })
            if path.is_none() && source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

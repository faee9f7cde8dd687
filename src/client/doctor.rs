//! `cachekeeperctl doctor`: a checklist of everything that keeps a shared cache
//! usable, one verdict a line, with what to do about each problem. Exit 1 when any
//! line fails.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::policy::config::{CacheConfig, Config};
use crate::policy::model::{Attrs, Kind};
use crate::protocol::{CacheState, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Line {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Default)]
struct List(Vec<Line>);

impl List {
    fn add(&mut self, check: impl Into<String>, verdict: Verdict, detail: impl Into<String>) {
        self.0.push(Line { check: check.into(), verdict, detail: detail.into() });
    }
}

/// What doctor looks at besides the machine itself.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    pub config: &'a Path,
    /// The configuration was named (`--config`, `$CACHEKEEPER_CONFIG`), not the default.
    pub named: bool,
    /// The service's status, or why it could not be had.
    pub status: Result<Status, Unanswered>,
    /// The caller's own module cache, as `cachekeeper --init` with no flags keeps it:
    /// what doctor checks where no service is configured.
    pub own_cache: Option<Result<CacheConfig, crate::oneshot::cli::Usage>>,
}

/// Why the service gave no status: the advice depends on it and on who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unanswered {
    NotRunning(String),
    /// The caller is neither root nor a member of `daemon.socket_group`.
    NotAllowed(String),
    Failed(String),
}

pub(crate) fn run(inputs: &Inputs<'_>) -> Vec<Line> {
    let mut l = List::default();
    // No configuration at all: a person checking their own cache, not a build host.
    if !inputs.named && !inputs.config.exists() {
        return own_cache(&mut l, inputs);
    }
    let caches = match Config::load(inputs.config) {
        Ok(c) => {
            l.add(
                "configuration",
                Verdict::Ok,
                format!("{} reads, {} cache(s)", inputs.config.display(), c.caches.len()),
            );
            c.caches
        }
        Err(e) => {
            l.add("configuration", Verdict::Fail, e.to_string());
            Vec::new()
        }
    };
    service(&mut l, &inputs.status);
    for cache in &caches {
        // When the service cannot walk this cache (its sandbox hides it, say), its reason
        // replaces advice that cannot help: a rescan.
        let unwalkable = inputs.status.as_ref().ok().and_then(|s| {
            let path = cache.path.display().to_string();
            let c = s.caches.iter().find(|c| c.path == path)?;
            (c.reason_code == Some(crate::protocol::ReasonCode::Unwalkable)).then(|| c.reason.clone()).flatten()
        });
        root(&mut l, cache, unwalkable.as_deref());
        filesystem(&mut l, &cache.path);
        inheritance(&mut l, cache);
        deny_entries(&mut l, cache);
        if let Some(gid) = cache.policy.group {
            membership(&mut l, cache, gid);
        }
        go_subtrees(&mut l, cache);
    }
    watches(&mut l, &caches);
    hardlinks(&mut l);
    go_env(&mut l, &caches);
    umask(&mut l, &caches);
    l.0
}

/// Without a configuration: the caller's own cache, checked as `cachekeeper --init` would
/// keep it (the private model, the caller the owner), and no service to ask.
fn own_cache(l: &mut List, inputs: &Inputs<'_>) -> Vec<Line> {
    let cache = match &inputs.own_cache {
        Some(Ok(c)) => c.clone(),
        Some(Err(e)) => {
            l.add("configuration", Verdict::Fail, format!("no {}, and {e}", inputs.config.display()));
            return std::mem::take(&mut l.0);
        }
        None => {
            l.add("configuration", Verdict::Fail, format!("no {}", inputs.config.display()));
            return std::mem::take(&mut l.0);
        }
    };
    l.add(
        "configuration",
        Verdict::Info,
        format!(
            "no {} (no service is set up here): checking your own Go module cache {} as `{} --init` keeps it",
            inputs.config.display(),
            cache.path.display(),
            crate::policy::hint::command("cachekeeper")
        ),
    );
    if cache.path.exists() {
        root(l, &cache, None);
        filesystem(l, &cache.path);
    } else {
        l.add(
            format!("root {}", cache.path.display()),
            Verdict::Info,
            "does not exist yet: Go (or `cachekeeper --init`) makes it at the first download",
        );
    }
    go_env(l, std::slice::from_ref(&cache));
    std::mem::take(&mut l.0)
}

fn service(l: &mut List, status: &Result<Status, Unanswered>) {
    let root = nix::unistd::geteuid().is_root();
    let status = match status {
        Ok(s) => s,
        Err(Unanswered::NotRunning(e)) if root => {
            return l.add("service", Verdict::Fail, format!("{e}: start it (systemctl start cachekeeper)"))
        }
        Err(Unanswered::NotRunning(e)) => {
            return l.add(
                "service",
                Verdict::Fail,
                format!("{e}: ask an administrator to start it (sudo systemctl start cachekeeper)"),
            )
        }
        // Starting the service would not help: it runs, and does not answer this caller.
        Err(Unanswered::NotAllowed(e)) => {
            return l.add(
                "service",
                Verdict::Warn,
                format!(
                    "{e}; the checks below need no service. To ask it, be added to daemon.socket_group (an \
                     administrator), or run `{} doctor`",
                    crate::policy::hint::sudo("cachekeeperctl")
                ),
            )
        }
        Err(Unanswered::Failed(e)) => return l.add("service", Verdict::Fail, e.clone()),
    };
    let needed = ["cap_chown", "cap_dac_read_search", "cap_fowner", "cap_fsetid"];
    let missing: Vec<&str> =
        needed.iter().copied().filter(|c| !status.daemon.capabilities.iter().any(|h| h == c)).collect();
    if missing.is_empty() {
        l.add(
            "service",
            Verdict::Ok,
            format!("running, pid {}, uid {}, holds {}", status.daemon.pid, status.daemon.uid, needed.join(",")),
        );
    } else {
        l.add("service", Verdict::Fail, format!("running but lacks {}: repairs will fail", missing.join(",")));
    }
    for c in &status.caches {
        match c.state {
            CacheState::Healthy => {}
            CacheState::Polling | CacheState::Starting => l.add(
                format!("service: {}", c.path),
                Verdict::Info,
                c.reason.clone().unwrap_or_else(|| "starting".into()),
            ),
            CacheState::Degraded => {
                l.add(format!("service: {}", c.path), Verdict::Warn, c.reason.clone().unwrap_or_default())
            }
        }
    }
}

/// The root as the service resolves it (every rule of [`crate::engine::root`]), whether it
/// complies (and if not, why the service cannot repair it), and whether hard links
/// from elsewhere can reach it.
fn root(l: &mut List, cache: &CacheConfig, unwalkable: Option<&str>) {
    let name = format!("root {}", cache.path.display());
    let pinned = match crate::engine::root::resolve(&cache.path, &crate::engine::root::Origin::Admin, cache.force) {
        Ok(r) => r,
        Err(e) if e.0.contains("No such file") => {
            return l.add(name, Verdict::Fail, format!("{e}: run cachekeeper --init to create it"));
        }
        Err(e) => return l.add(name, Verdict::Fail, e.0),
    };
    let st = pinned.stat();
    let now = Attrs { uid: st.uid, gid: st.gid, mode: st.mode };
    let to = cache.policy.target(Kind::Dir, now);
    let mut names = crate::policy::names::Names::default();
    let mut show = |a: Attrs| format!("{}:{} {:04o}", names.user(a.uid), names.group(a.gid), a.mode);
    if to == now {
        l.add(name, Verdict::Ok, format!("{} complies", show(now)));
    } else if let Some(why) = unwalkable {
        l.add(
            name,
            Verdict::Fail,
            format!("{} should be {}, and the service cannot repair it: {why}", show(now), show(to)),
        );
    } else {
        l.add(
            name,
            Verdict::Fail,
            format!("{} should be {}: run cachekeeper --init or cachekeeperctl rescan", show(now), show(to)),
        );
    }
    let name = format!("isolation {}", cache.path.display());
    let isolation = crate::engine::root::isolation(&pinned);
    let described = isolation.describe(pinned.path());
    match crate::engine::root::hard_link_guard(&isolation, crate::engine::root::protected_hardlinks(), pinned.path()) {
        Err(e) => l.add(name, Verdict::Fail, e.0),
        Ok(()) if isolation.isolated() => l.add(name, Verdict::Ok, described),
        Ok(()) => l.add(
            name,
            Verdict::Warn,
            format!(
                "{described}; a member can still link in files they may write (see docs/security.md, Threat model)"
            ),
        ),
    }
}

/// Mount options of the mount that holds `path`, from /proc/self/mountinfo.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        let (mount_point, options) = (fields.get(4)?, fields.get(5)?);
        let fstype = fields.get(dash + 1)?;
        let super_options = fields.get(dash + 3).copied().unwrap_or("");
        if path.starts_with(mount_point) && best.as_ref().is_none_or(|b| mount_point.len() >= b.0) {
            best = Some((mount_point.len(), fstype.to_string(), format!("{options},{super_options}")));
        }
    }
    best.map(|(_, t, o)| (t, o))
}

fn filesystem(l: &mut List, path: &Path) {
    let name = format!("filesystem {}", path.display());
    if std::fs::symlink_metadata(path).is_err() {
        // Not "[ok] unknown": say where it will be, once created.
        let parent = path.ancestors().find(|p| std::fs::symlink_metadata(p).is_ok()).unwrap_or(Path::new("/"));
        let (fs, _) = crate::sys::filesystem(parent);
        return l.add(
            name,
            Verdict::Info,
            format!(
                "the root does not exist, so it cannot be checked; its nearest existing parent {} is on {fs}",
                parent.display()
            ),
        );
    }
    let (fs, network) = crate::sys::filesystem(path);
    let ro = crate::sys::read_only(path);
    let mount = mount_of(path);
    if ro {
        l.add(name, Verdict::Fail, format!("{fs} is mounted read-only: nothing can be repaired or downloaded"));
    } else if let Some((t, opts)) = mount.as_ref().filter(|(t, _)| t == "drvfs" || t == "9p") {
        if opts.split(',').any(|o| o == "metadata") {
            l.add(name, Verdict::Ok, format!("{t} with metadata"));
        } else {
            l.add(
                name,
                Verdict::Fail,
                format!("{t} without the metadata option: chown and chmod cannot work (remount with -o metadata, or keep the cache on the Linux filesystem)"),
            );
        }
    } else if network {
        l.add(name, Verdict::Info, format!("{fs} sends no events for other clients' writes: the service polls it"));
    } else {
        l.add(name, Verdict::Ok, fs);
    }
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn count_dirs(root: &Path, limit: u64) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        n += 1;
        if n >= limit {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    n
}

fn watches(l: &mut List, caches: &[CacheConfig]) {
    let Some(max) = read_number("/proc/sys/fs/inotify/max_user_watches") else {
        return l.add("inotify watches", Verdict::Info, "fs.inotify.max_user_watches is not readable here");
    };
    let dirs: u64 = caches.iter().map(|c| count_dirs(&c.path, max + 1)).sum();
    if dirs > max {
        l.add("inotify watches", Verdict::Fail, format!("{dirs}+ directories but fs.inotify.max_user_watches = {max}: raise it (sysctl -w fs.inotify.max_user_watches={})", dirs * 2));
    } else if dirs * 10 > max * 8 {
        l.add(
            "inotify watches",
            Verdict::Warn,
            format!(
                "{dirs} directories use most of fs.inotify.max_user_watches = {max}: raise it before the cache grows"
            ),
        );
    } else {
        l.add("inotify watches", Verdict::Ok, format!("{dirs} directories, fs.inotify.max_user_watches = {max}"));
    }
}

fn hardlinks(l: &mut List) {
    match read_number("/proc/sys/fs/protected_hardlinks") {
        Some(1) => l.add("fs.protected_hardlinks", Verdict::Ok, "1: users cannot hard-link files they do not own"),
        Some(v) => l.add(
            "fs.protected_hardlinks",
            Verdict::Warn,
            format!("{v}: any user can hard-link others' files into a cache; cachekeeper changes no file in a cache that is not isolated until this is 1"),
        ),
        None => l.add("fs.protected_hardlinks", Verdict::Info, "not readable here"),
    }
}

fn go_env(l: &mut List, caches: &[CacheConfig]) {
    let out = crate::client::gofidelity::go().args(["env", "GOMODCACHE", "GOFLAGS"]).output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        return l.add("go env", Verdict::Info, "go is not installed here");
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let gomodcache = PathBuf::from(lines.next().unwrap_or("").trim());
    let goflags = lines.next().unwrap_or("").trim().to_owned();
    if caches.iter().any(|c| c.path == crate::policy::config::clean(&gomodcache)) {
        l.add("go env GOMODCACHE", Verdict::Ok, format!("{} is a configured cache", gomodcache.display()));
    } else {
        l.add(
            "go env GOMODCACHE",
            Verdict::Warn,
            format!(
                "{} is not a configured cache: set GOMODCACHE (go env -w GOMODCACHE=...) to the shared one",
                gomodcache.display()
            ),
        );
    }
    if goflags.split_whitespace().any(|f| f == "-modcacherw") {
        l.add(
            "GOFLAGS",
            Verdict::Info,
            "-modcacherw: Go leaves module directories writable; the owner model keeps the owner's w as it is",
        );
    }
}

/// Whether new entries of a cache get the group's access from the kernel at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inherits {
    /// The root carries the model's default ACL.
    Yes,
    /// `inherit = "acl"`, but the root has no (or another) default ACL yet.
    NotYet,
    /// The filesystem has no POSIX ACLs.
    Unsupported,
    /// `inherit = "none"`.
    Off,
}

fn inherits(cache: &CacheConfig) -> Inherits {
    let Some(wanted) = cache.policy.default_acl() else { return Inherits::Off };
    let Ok(path) = std::ffi::CString::new(cache.path.as_os_str().as_encoded_bytes()) else { return Inherits::NotYet };
    match crate::sys::get_xattr_path(&path, crate::policy::acl::DEFAULT) {
        Ok(Some(b)) if crate::policy::acl::Acl::decode(&b).as_ref() == Ok(&wanted) => Inherits::Yes,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Inherits::Unsupported,
        _ => Inherits::NotYet,
    }
}

/// macOS: the `deny` entries of the cache root's extended ACL (SPEC §1: each is a
/// divergence), named as `ls -le` shows them. Nothing to say elsewhere.
fn deny_entries(l: &mut List, cache: &CacheConfig) {
    let Ok(path) = std::ffi::CString::new(cache.path.as_os_str().as_encoded_bytes()) else { return };
    let Ok(Some(text)) = crate::sys::ext_acl_path(&path) else { return };
    let denies = crate::policy::ext_acl::denies(&text);
    if !denies.is_empty() {
        let named: Vec<String> = denies.iter().map(crate::policy::ext_acl::Ace::describe).collect();
        l.add(
            format!("extended ACL {}", cache.path.display()),
            Verdict::Warn,
            format!("{}: blocks members; cachekeeper --init removes deny entries", named.join("; ")),
        );
    }
}

const UMASK_ADVICE: &str = "members need umask 002 (in ~/.profile, or UMask=0002 in a systemd unit) so that what they create is group-writable at once";

fn inheritance(l: &mut List, cache: &CacheConfig) {
    let name = format!("inheritance {}", cache.path.display());
    let shared = cache.policy.model == crate::policy::model::Model::Shared;
    match inherits(cache) {
        Inherits::Yes => {
            let acl = cache.policy.default_acl().map(|a| a.text()).unwrap_or_default();
            l.add(
                name,
                Verdict::Ok,
                format!("default ACL {acl}: new entries are group-usable at creation, whatever the umask"),
            )
        }
        Inherits::NotYet => l.add(
            name,
            Verdict::Warn,
            "the root has no default ACL yet: run cachekeeper --init or cachekeeperctl rescan".to_owned(),
        ),
        Inherits::Unsupported => l.add(
            name,
            Verdict::Warn,
            format!("repair only: the filesystem has no POSIX ACLs, so new entries wait for a repair; {UMASK_ADVICE}"),
        ),
        Inherits::Off if shared => {
            l.add(name, Verdict::Info, format!("inherit = \"none\": new entries wait for a repair; {UMASK_ADVICE}"))
        }
        Inherits::Off => l.add(name, Verdict::Ok, "none (private model)".to_owned()),
    }
}

fn umask(l: &mut List, caches: &[CacheConfig]) {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    let mask = old.bits() as u32;
    // Caches where the creator's umask decides what the group gets until a repair.
    let exposed: Vec<String> = caches
        .iter()
        .filter(|c| c.policy.model == crate::policy::model::Model::Shared && inherits(c) != Inherits::Yes)
        .map(|c| c.path.display().to_string())
        .collect();
    if mask & 0o070 != 0 && !exposed.is_empty() {
        l.add(
            "umask",
            Verdict::Warn,
            format!(
                "{mask:04o} takes the group's access away from what you create in {} (no inherited ACLs there), and \
                 another member who opens it before the repair fails: set umask 002",
                exposed.join(", ")
            ),
        );
    } else if mask & 0o070 != 0 {
        l.add("umask", Verdict::Ok, format!("{mask:04o}: does not matter where default ACLs apply"));
    } else {
        l.add("umask", Verdict::Ok, format!("{mask:04o}"));
    }
}

fn membership(l: &mut List, cache: &CacheConfig, gid: u32) {
    let uid = nix::unistd::getuid().as_raw();
    let member = uid == 0 || nix::unistd::getgid().as_raw() == gid || crate::sys::own_groups().contains(&gid);
    let group = crate::client::explain::group_name(gid);
    let name = format!("group of {}", cache.path.display());
    if uid == 0 {
        l.add(name, Verdict::Ok, format!("{group}; you are root"));
    } else if member {
        l.add(name, Verdict::Ok, format!("you are in {group}"));
    } else {
        l.add(
            name,
            Verdict::Fail,
            format!("you are not in {group}: you cannot add modules (usermod -aG {group} $USER, then log in again)"),
        );
    }
}

/// Go's own rules in the cache: git's ownership check on the clones of `cache/vcs`, and
/// what `owner` means for a GOCACHE ([`crate::client::gofidelity`]).
fn go_subtrees(l: &mut List, cache: &CacheConfig) {
    use crate::client::gofidelity as go;
    let refused = go::refused_clones(&cache.path);
    if let Some(advice) = go::refused_clones_advice(&cache.path, &refused) {
        // Only go commands before 1.21 run git where its ownership check applies.
        let verdict = if go::go_sets_git_dir() { Verdict::Warn } else { Verdict::Fail };
        l.add(format!("git clones {}", cache.path.display()), verdict, advice);
    }
    if crate::policy::config::is_build_cache(cache) {
        let name = format!("GOCACHE {}", cache.path.display());
        match cache.policy.owner {
            Some(_) => l.add(name, Verdict::Warn, crate::policy::config::GOCACHE_OWNER),
            None => l.add(name, Verdict::Info, go::GOCACHE_FRESHNESS),
        }
    }
}

/// The human form: one line a check.
pub(crate) fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        let tag = match line.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Info => "info",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        out += &format!("[{tag}] {}: {}\n", line.check, line.detail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn status(path: &Path, (code, reason): (&str, &str)) -> Status {
        let cache = serde_json::json!({
            "path": path, "state": "degraded", "reason": reason, "reason_code": code, "filesystem": "ext4", "entries": 0,
            "repairs": {"entries": 0, "owner": 0, "group": 0, "mode": 0},
            "reported": {"symlink": 0, "hard_link": 0, "special": 0, "other_mount": 0},
            "errors": 1, "last_full_scan": null, "full_scans": 1, "full_scan_ms_total": 0,
            "queue_depth": 0, "events_received": 0, "overflows": 0
        });
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "healthy": false,
            "daemon": {"version": "0", "pid": 1, "uptime_s": 0, "uid": 0, "capabilities": [],
                       "config": "", "inotify_watches": 0},
            "caches": [cache]
        }))
        .unwrap()
    }

    fn root_line(dir: &Path, reason: (&str, &str)) -> Line {
        let cfg = dir.join("ck.toml");
        let root = dir.join("mod");
        std::fs::write(&cfg, format!("[[cache]]\npath = \"{}\"\n", root.display())).unwrap();
        let inputs = Inputs { config: &cfg, named: true, status: Ok(status(&root, reason)), own_cache: None };
        run(&inputs).into_iter().find(|l| l.check.starts_with("root ")).unwrap()
    }

    /// Regression: for a cache the service could not read (its sandbox hid it), doctor
    /// advised a rescan, which cannot help.
    #[test]
    fn a_root_the_service_cannot_walk_gets_the_services_reason_not_a_rescan() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mod")).unwrap();
        std::fs::set_permissions(dir.path().join("mod"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = "the cache root cannot be walked: Read-only file system; add ReadWritePaths=-X";
        let line = root_line(dir.path(), ("unwalkable", why));
        assert_eq!(line.verdict, Verdict::Fail);
        assert!(line.detail.ends_with(&format!("the service cannot repair it: {why}")), "{}", line.detail);
        assert!(!line.detail.contains("rescan"), "{}", line.detail);
        // Degraded for another reason: the usual advice stands, whatever the words say.
        let line = root_line(dir.path(), ("overflow", why));
        assert!(line.detail.contains("cachekeeperctl rescan"), "{}", line.detail);
    }
}

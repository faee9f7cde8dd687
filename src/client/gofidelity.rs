//! What Go's own tools decide in a shared cache, checked as the calling user for
//! `doctor` and `explain`: whether git accepts the clones of `cache/vcs` (git's
//! "dubious ownership" check, CVE-2022-24765), and what a GOCACHE's owner means for
//! Go's freshness marks. Runs as the caller, never privileged; changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::policy::config::CacheConfig;

/// Clones asked about per cache: git's answer depends only on the owner and the
/// `safe.directory` settings, so a few stand for the rest.
const CLONES_ASKED: usize = 8;

/// A clone of `cache/vcs` that git refuses to work in for the calling user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusedClone {
    pub path: PathBuf,
    pub owner: u32,
}

/// git's version as (major, minor), from `git --version`.
pub(crate) fn git_version() -> Option<(u32, u32)> {
    let out = Command::new("git").arg("--version").stdin(Stdio::null()).output().ok()?;
    parse_git_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_git_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The clones below `<cache>/cache/vcs` that git refuses for the calling user: those
/// owned by another uid that no `safe.directory` entry covers. git itself is asked
/// (`git -C CLONE rev-parse --git-dir`), so every git's rules apply as they are:
/// before 2.35.2 there is no check; `safe.directory` with a trailing `/*` is a prefix
/// match only from git 2.46.
pub(crate) fn refused_clones(cache: &Path) -> Vec<RefusedClone> {
    let me = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(cache.join("cache/vcs")) else { return Vec::new() };
    let mut candidates: Vec<(PathBuf, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            use std::os::unix::fs::MetadataExt;
            (meta.is_dir() && meta.uid() != me).then(|| (e.path(), meta.uid()))
        })
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .take(CLONES_ASKED)
        .filter(|(path, _)| git_refuses(path))
        .map(|(path, owner)| RefusedClone { path, owner })
        .collect()
}

/// Whether git stops at `clone` with "dubious ownership".
fn git_refuses(clone: &Path) -> bool {
    let child = Command::new("git")
        .arg("-C")
        .arg(clone)
        .args(["rev-parse", "--git-dir"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    err.contains("dubious ownership")
}

/// Whether the `go` command on the caller's PATH runs git with `GIT_DIR` set, which
/// git's ownership check does not apply to: Go 1.21 and later
/// (cmd/go/internal/modfetch/codehost/codehost.go, `RunWithStdin`: "manually supply
/// GIT_DIR so Git works with safe.bareRepository=explicit"; present in 1.21's and
/// 1.23's source, absent from 1.19's). Older go commands, or none found: false.
pub(crate) fn go_sets_git_dir() -> bool {
    let out = go().arg("env").arg("GOVERSION").env("GOTOOLCHAIN", "local").output();
    let version = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    go_minor(&version).is_some_and(|m| m >= 21)
}

/// The `go` command on the caller's PATH, run where the caller is; from `/` when the
/// caller may not look at the directory they are in, where go refuses to start ("cannot
/// determine current directory"), which would read as no go at all.
pub(crate) fn go() -> Command {
    let mut cmd = Command::new("go");
    cmd.stdin(Stdio::null());
    if std::fs::metadata(".").is_err() {
        cmd.current_dir("/");
    }
    cmd
}

fn go_minor(version: &str) -> Option<u32> {
    version.strip_prefix("go1.")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `'text'` for a POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The command that makes git accept every clone of the cache for every user: the
/// `/*` prefix form where git has it (2.46+), else one entry per refused clone.
pub(crate) fn safe_directory_fix(cache: &Path, refused: &[RefusedClone], git: Option<(u32, u32)>) -> String {
    let add = |p: &str| format!("git config --system --add safe.directory {}", quoted(p));
    if git.is_some_and(|v| v >= (2, 46)) {
        return add(&format!("{}/cache/vcs/*", cache.display()));
    }
    let each: Vec<String> = refused.iter().map(|r| add(&r.path.display().to_string())).collect();
    each.join(" && ")
}

/// What to know before the fix: git before 2.46 matches `safe.directory` exactly.
fn fix_note(git: Option<(u32, u32)>) -> &'static str {
    if git.is_some_and(|v| v >= (2, 46)) {
        ""
    } else {
        " (this git has no `/*` prefix form of safe.directory, which came in git 2.46: each new clone needs its own entry)"
    }
}

/// Who a refused clone stops: every go command before 1.21, and git itself.
const STOPS: &str = "go commands before 1.21 cannot fetch private modules through it (Go 1.21 and later set \
     GIT_DIR, which git does not check)";

/// One line for doctor: which clones git refuses for the caller, and the fix.
pub(crate) fn refused_clones_advice(cache: &Path, refused: &[RefusedClone]) -> Option<String> {
    let first = refused.first()?;
    let more = if refused.len() > 1 { format!(" and {} more", refused.len() - 1) } else { String::new() };
    Some(format!(
        "git refuses {}{more} (\"dubious ownership\": owned by uid {}, you are uid {}): {STOPS}; cachekeeper never \
         changes owners in cache/vcs{}. Fix: {}",
        first.path.display(),
        first.owner,
        nix::unistd::geteuid().as_raw(),
        fix_note(git_version()),
        safe_directory_fix(cache, refused, git_version())
    ))
}

/// The clone of `cache/vcs` that `path` is or lies in, with its owner.
fn clone_of(path: &Path, caches: &[CacheConfig]) -> Option<(PathBuf, PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    caches.iter().find_map(|c| {
        let vcs = c.path.join("cache/vcs");
        let rest = path.strip_prefix(&vcs).ok()?;
        let clone = vcs.join(rest.components().next()?);
        let meta = std::fs::symlink_metadata(&clone).ok()?;
        meta.is_dir().then(|| (c.path.clone(), clone, meta.uid()))
    })
}

/// Whether git refuses `clone` (owned by `owner`) for `uid`: git itself when `uid` is
/// the caller; otherwise git's rules applied to the system-wide `safe.directory`
/// entries (another user's own ~/.gitconfig is theirs to read, not ours).
fn refused_for(uid: u32, clone: &Path, owner: u32) -> bool {
    if owner == uid {
        return false;
    }
    if uid == nix::unistd::geteuid().as_raw() {
        return git_refuses(clone);
    }
    let git = git_version();
    // The ownership check exists from git 2.35.2 (CVE-2022-24765).
    if git.is_some_and(|v| v < (2, 35)) {
        return false;
    }
    let out =
        Command::new("git").args(["config", "--system", "--get-all", "safe.directory"]).stdin(Stdio::null()).output();
    let entries = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    !entries.lines().any(|e| {
        let clone = clone.to_string_lossy();
        e == "*"
            || e == clone
            || git.is_some_and(|v| v >= (2, 46))
                && e.strip_suffix('*').is_some_and(|prefix| prefix.ends_with('/') && clone.starts_with(prefix))
    })
}

/// For `explain`: when `path` is in a clone of `cache/vcs` that git refuses for `uid`,
/// what git says and the fix.
pub(crate) fn explain_clone(uid: u32, path: &Path, caches: &[CacheConfig]) -> Option<String> {
    let (cache, clone, owner) = clone_of(path, caches)?;
    if !refused_for(uid, &clone, owner) {
        return None;
    }
    let refused = [RefusedClone { path: clone.clone(), owner }];
    Some(format!(
        "git refuses {} for uid {uid} (\"dubious ownership\": owned by uid {owner}): {STOPS}; cachekeeper never \
         changes owners in cache/vcs{}. Fix: {}",
        clone.display(),
        fix_note(git_version()),
        safe_directory_fix(&cache, &refused, git_version())
    ))
}

/// The caveat of a shared GOCACHE without `owner`.
pub(crate) const GOCACHE_FRESHNESS: &str =
    "entries used only by members other than their creator are not marked as used \
     (Go sets the mtime with explicit times, which only the owner may do) and are trimmed 5 days after their \
     creator last used them, then rebuilt on demand: costs a rebuild, never a failure";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        assert_eq!(go_minor("go1.21.13"), Some(21));
        assert_eq!(go_minor("go1.19.8"), Some(19));
        assert_eq!(go_minor("go1.22rc1"), Some(22));
        assert_eq!(go_minor(""), None);
    }

    #[test]
    fn git_versions() {
        assert_eq!(parse_git_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse_git_version("git version 2.39.5"), Some((2, 39)));
        assert_eq!(parse_git_version("git version 2.30.1.windows.1"), Some((2, 30)));
        assert_eq!(parse_git_version("hub version 2"), None);
    }

    #[test]
    fn the_fix_uses_the_prefix_form_only_where_git_has_it() {
        let cache = Path::new("/var/cache/go/mod");
        let refused = [RefusedClone { path: cache.join("cache/vcs/abc"), owner: 1101 }];
        assert_eq!(
            safe_directory_fix(cache, &refused, Some((2, 46))),
            "git config --system --add safe.directory '/var/cache/go/mod/cache/vcs/*'"
        );
        let old = safe_directory_fix(cache, &refused, Some((2, 39)));
        assert_eq!(old, "git config --system --add safe.directory '/var/cache/go/mod/cache/vcs/abc'");
        let odd = safe_directory_fix(Path::new("/c/it's"), &[], Some((2, 47)));
        assert_eq!(odd, r"git config --system --add safe.directory '/c/it'\''s/cache/vcs/*'");
    }
}

//! Configuration (SPEC §2): TOML text → a validated [`Config`] with users and groups
//! resolved to ids, paths absolute and globs compiled. Every error is one line that
//! names the file, the line and the key.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::Spanned;

use crate::policy::model::{Inherit, Model, Other, Policy};

pub const DEFAULT_PATH: &str = "/etc/cachekeeper/config.toml";
pub const DEFAULT_SOCKET: &str = "/run/cachekeeper/control.sock";

/// The configuration file: `given`, else `$CACHEKEEPER_CONFIG`, else [`DEFAULT_PATH`].
pub fn path_or_default(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CACHEKEEPER_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// The whole configuration file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub caches: Vec<CacheConfig>,
    pub daemon: DaemonConfig,
}

/// One `[[cache]]`: a root and the owner model it is kept to.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub path: PathBuf,
    pub policy: Policy,
    pub exclude: Excludes,
    /// Accept a non-empty root that does not look like a Go cache.
    pub force: bool,
}

/// `[daemon]`, validated.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub socket_group: Option<u32>,
    /// uid and primary gid of `daemon.user`.
    pub user: Option<(u32, u32)>,
    pub full_rescan: Duration,
    pub log_format: LogFormat,
    pub metrics_textfile: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    /// Paths a cache's worker holds pending at most; past it, the pending checks become
    /// one full reconcile of the cache.
    pub max_pending: usize,
    /// inotify watches per cache; `None`: half of `fs.inotify.max_user_watches`.
    pub max_watches: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// The `exclude` globs of a cache, matched against paths relative to its root.
#[derive(Debug, Clone)]
pub struct Excludes {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Excludes {
    /// `*` does not cross `/`; `**` does. Patterns are always relative to the root, so a
    /// leading `/` (the gitignore way of anchoring) is dropped rather than matching nothing.
    pub fn new(patterns: &[String]) -> Result<Self, ValueError> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_start_matches('/');
            let bad = |e: globset::Error| ValueError::BadGlob { pattern: p.to_owned(), reason: e.kind().to_string() };
            builder.add(GlobBuilder::new(p).literal_separator(true).build().map_err(bad)?);
        }
        let set = builder
            .build()
            .map_err(|e| ValueError::BadGlob { pattern: patterns.join(", "), reason: e.kind().to_string() })?;
        Ok(Excludes { patterns: patterns.to_vec(), set })
    }

    pub fn none() -> Self {
        Excludes { patterns: Vec::new(), set: GlobSet::empty() }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn matches(&self, rel: &[u8]) -> bool {
        !self.patterns.is_empty() && self.set.is_match(Path::new(OsStr::from_bytes(rel)))
    }
}

/// A configuration problem: where it is and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid { file: PathBuf, line: usize, key: String, message: String },
}

/// Why one value of the configuration or the command line is refused: a phrase that the
/// caller puts after the key or the flag (`--owner: user `bob` does not exist`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
    /// A path that may never be a cache (`/`, `/etc`, a home directory, ...).
    #[error(transparent)]
    NotARoot(#[from] crate::engine::root::RootError),
    #[error("`{0}` is not a count of at least 1")]
    NotACount(i64),
    #[error("expected a {what} name or a {id}, found {found}")]
    WrongType { what: &'static str, id: &'static str, found: &'static str },
    #[error("{0} is not a valid id")]
    BadId(i64),
    #[error("{what} `{name}` does not exist")]
    Unknown { what: &'static str, name: String },
    #[error("cannot look up {what} `{name}`: {errno}")]
    Lookup { what: &'static str, name: String, errno: nix::errno::Errno },
    #[error("`{0}` is not a duration; write it like 500ms, 30s, 5m or 6h")]
    NotADuration(String),
    #[error("`{0}` is shorter than a second; a full reconcile period is minutes or hours (6h by default)")]
    TooShort(String),
    #[error("invalid glob `{pattern}`: {reason}")]
    BadGlob { pattern: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cache: Vec<Spanned<RawCache>>,
    daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    path: Spanned<String>,
    owner: Option<Spanned<toml::Value>>,
    group: Option<Spanned<toml::Value>>,
    model: Option<Model>,
    other: Option<Other>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    writable: bool,
    #[serde(default)]
    force: bool,
    inherit: Option<Inherit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<Spanned<String>>,
    socket_group: Option<Spanned<toml::Value>>,
    user: Option<Spanned<toml::Value>>,
    full_rescan: Option<Spanned<String>>,
    log_format: Option<LogFormat>,
    metrics_textfile: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    max_pending: Option<Spanned<i64>>,
    max_watches: Option<Spanned<i64>>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(path, &text)
    }

    /// Validates `text`; `file` is only used to name it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = |offset: usize, key: &str, message: &dyn std::fmt::Display| ConfigError::Invalid {
            file: file.to_owned(),
            line: line_of(text, offset),
            key: key.to_owned(),
            message: message.to_string(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, &key_at(text, offset), &first_line(e.message()))
        })?;
        if raw.cache.is_empty() {
            return Err(at(0, "cache", &"no [[cache]] table: at least one cache must be configured"));
        }
        let mut caches: Vec<CacheConfig> = Vec::new();
        for spanned in &raw.cache {
            let c = spanned.get_ref();
            let path_at = c.path.span().start;
            let path = cache_root(c.path.get_ref()).map_err(|m| at(path_at, "cache.path", &m))?;
            if let Some(other) = caches.iter().find(|o| o.path.starts_with(&path) || path.starts_with(&o.path)) {
                let message = if other.path == path {
                    format!("`{}` is listed twice: give each cache one [[cache]] table", path.display())
                } else {
                    format!(
                        "`{}` overlaps the cache at `{}`: caches must not nest",
                        path.display(),
                        other.path.display()
                    )
                };
                return Err(at(path_at, "cache.path", &message));
            }
            let owner = match &c.owner {
                Some(v) => Some(user_id(v.get_ref()).map_err(|m| at(v.span().start, "cache.owner", &m))?.0),
                None => None,
            };
            let group = match &c.group {
                Some(v) => Some(group_id(v.get_ref()).map_err(|m| at(v.span().start, "cache.group", &m))?),
                None => None,
            };
            let patterns: Vec<String> = c.exclude.iter().map(|p| p.get_ref().clone()).collect();
            let exclude = Excludes::new(&patterns).map_err(|m| {
                let offset = c.exclude.first().map_or(spanned.span().start, |p| p.span().start);
                at(offset, "cache.exclude", &m)
            })?;
            let model = c.model.unwrap_or(Policy::default_model(group));
            caches.push(CacheConfig {
                path,
                policy: Policy {
                    owner,
                    group,
                    model,
                    other: c.other.unwrap_or(Other::Read),
                    writable: c.writable,
                    inherit: c.inherit.unwrap_or(Inherit::default_for(model)),
                },
                exclude,
                force: c.force,
            });
        }
        let daemon = match raw.daemon {
            None => DaemonConfig::default(),
            Some(d) => {
                let absolute = |v: &Spanned<String>, key: &str| {
                    let p = PathBuf::from(v.get_ref());
                    if p.is_absolute() {
                        Ok(p)
                    } else {
                        Err(at(v.span().start, key, &ValueError::NotAbsolute(v.get_ref().clone())))
                    }
                };
                DaemonConfig {
                    socket: match &d.socket {
                        Some(s) => absolute(s, "daemon.socket")?,
                        None => PathBuf::from(DEFAULT_SOCKET),
                    },
                    socket_group: match &d.socket_group {
                        Some(v) => {
                            Some(group_id(v.get_ref()).map_err(|m| at(v.span().start, "daemon.socket_group", &m))?)
                        }
                        None => None,
                    },
                    user: match &d.user {
                        Some(v) => Some(user_id(v.get_ref()).map_err(|m| at(v.span().start, "daemon.user", &m))?),
                        None => None,
                    },
                    full_rescan: match &d.full_rescan {
                        Some(v) => parse_duration(v.get_ref())
                            .and_then(|p| at_least_a_second(v.get_ref(), p))
                            .map_err(|m| at(v.span().start, "daemon.full_rescan", &m))?,
                        None => DaemonConfig::default().full_rescan,
                    },
                    log_format: d.log_format.unwrap_or(LogFormat::Text),
                    metrics_textfile: d
                        .metrics_textfile
                        .as_ref()
                        .map(|v| absolute(v, "daemon.metrics_textfile"))
                        .transpose()?,
                    audit_log: d.audit_log.as_ref().map(|v| absolute(v, "daemon.audit_log")).transpose()?,
                    max_pending: match &d.max_pending {
                        Some(v) => {
                            positive(*v.get_ref()).map_err(|m| at(v.span().start, "daemon.max_pending", &m))? as usize
                        }
                        None => DaemonConfig::default().max_pending,
                    },
                    max_watches: d
                        .max_watches
                        .as_ref()
                        .map(|v| positive(*v.get_ref()).map_err(|m| at(v.span().start, "daemon.max_watches", &m)))
                        .transpose()?,
                }
            }
        };
        Ok(Config { caches, daemon })
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_group: None,
            user: None,
            full_rescan: Duration::from_secs(6 * 3600),
            log_format: LogFormat::Text,
            metrics_textfile: None,
            audit_log: None,
            // A pending path costs its length and a few dozen bytes: 65,536 of them stay
            // within a few MiB even for deep paths, against the 32 MiB target.
            max_pending: 65_536,
            max_watches: None,
        }
    }
}

/// A count that must be at least 1.
fn positive(n: i64) -> Result<u64, ValueError> {
    u64::try_from(n).ok().filter(|&n| n >= 1).ok_or(ValueError::NotACount(n))
}

/// Validates the spelling of a cache root: absolute, normalised (`//`, `/./`, `..`,
/// trailing slashes), and not a path that may never be a cache (`/`, `/etc`, a home
/// directory, ...). The same rules are applied again to the physical path when the root
/// is resolved (`engine::root`); this early check names the file and line.
/// Names are bytes: a root given on the command line need not be UTF-8.
pub fn cache_root(path: impl AsRef<Path>) -> Result<PathBuf, ValueError> {
    let p = path.as_ref();
    if !p.is_absolute() {
        return Err(ValueError::NotAbsolute(crate::policy::names::Escaped(p.as_os_str().as_bytes()).to_string()));
    }
    let clean = clean(p);
    crate::engine::root::refuse_by_structure(&clean, &crate::engine::root::Homes::load())?;
    Ok(clean)
}

/// `path` without repeated or trailing slashes and `.` components, with `..` taken
/// lexically, for comparisons and messages.
pub fn clean(path: impl AsRef<Path>) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.as_ref().components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The invoking user under `sudo`: `SUDO_UID` and `SUDO_GID`, when running as root.
pub fn sudo_ids() -> Option<(u32, u32)> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    Some((uid, gid))
}

/// A user given by name or number → (uid, primary gid). A number needs no passwd
/// entry; its primary gid is then the same number.
pub fn user_id(v: &toml::Value) -> Result<(u32, u32), ValueError> {
    match v {
        toml::Value::Integer(n) => id_number(*n).map(|uid| (uid, uid)),
        toml::Value::String(s) => resolve_user(s),
        other => Err(ValueError::WrongType { what: "user", id: "uid", found: other.type_str() }),
    }
}

/// A group given by name or number → gid.
pub fn group_id(v: &toml::Value) -> Result<u32, ValueError> {
    match v {
        toml::Value::Integer(n) => id_number(*n),
        toml::Value::String(s) => resolve_group(s),
        other => Err(ValueError::WrongType { what: "group", id: "gid", found: other.type_str() }),
    }
}

fn id_number(n: i64) -> Result<u32, ValueError> {
    // u32::MAX is "leave unchanged" to chown(2), so it cannot name anyone.
    u32::try_from(n).ok().filter(|&id| id != u32::MAX).ok_or(ValueError::BadId(n))
}

/// `name` or a decimal uid → (uid, primary gid).
pub fn resolve_user(s: &str) -> Result<(u32, u32), ValueError> {
    if let Ok(n) = s.parse::<i64>() {
        return id_number(n).map(|uid| (uid, uid));
    }
    match nix::unistd::User::from_name(s) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(ValueError::Unknown { what: "user", name: s.to_owned() }),
        Err(errno) => Err(ValueError::Lookup { what: "user", name: s.to_owned(), errno }),
    }
}

/// `name` or a decimal gid → gid.
pub fn resolve_group(s: &str) -> Result<u32, ValueError> {
    if let Ok(n) = s.parse::<i64>() {
        return id_number(n);
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ValueError::Unknown { what: "group", name: s.to_owned() }),
        Err(errno) => Err(ValueError::Lookup { what: "group", name: s.to_owned(), errno }),
    }
}

/// `500ms`, `30s`, `5m`, `6h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || ValueError::NotADuration(s.to_owned());
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 3600 * 1000,
        "d" => 24 * 3600 * 1000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms).map(Duration::from_millis).ok_or_else(bad)
}

/// A period (`full_rescan`) shorter than a second would have the service do nothing but
/// reconcile.
fn at_least_a_second(text: &str, period: Duration) -> Result<Duration, ValueError> {
    if period < Duration::from_secs(1) {
        return Err(ValueError::TooShort(text.to_owned()));
    }
    Ok(period)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// The dotted key a parse error at `offset` is about: the nearest `key =` at or above
/// it, prefixed by the table it sits in.
fn key_at(text: &str, offset: usize) -> String {
    // A span inside a multi-byte character must not panic: back up to its start.
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let upto = &text[..offset];
    let line_end = text[upto.len()..].find('\n').map_or(text.len(), |i| upto.len() + i);
    let mut key: Option<String> = None;
    for line in text[..line_end].lines().rev() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('[') {
            let table = table.trim_start_matches('[').trim_end_matches(']').trim();
            return match key {
                Some(k) => format!("{table}.{k}"),
                None => table.to_owned(),
            };
        }
        if key.is_none() {
            if let Some((k, _)) = line.split_once('=') {
                key = Some(k.trim().trim_matches('"').to_owned());
            }
        }
    }
    key.unwrap_or_else(|| "(top level)".to_owned())
}

/// Whether `cache` is a build cache (GOCACHE): Go's `README` and `trim.txt`, or a
/// name that says so.
pub(crate) fn is_build_cache(cache: &CacheConfig) -> bool {
    let p = &cache.path;
    (p.join("README").is_file() && p.join("trim.txt").is_file())
        || p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy().to_ascii_lowercase();
            n == "go-build" || n.contains("gocache") || n.contains("go-cache")
        })
}

/// Why `owner` does not suit a GOCACHE. Go marks an entry used by setting its mtime
/// with explicit times, at most hourly (cmd/go/internal/cache/cache.go, `used`:
/// `os.Chtimes`), which only the file's owner may do; errors are ignored. Entries
/// not marked for 5 days (`trimLimit`) are deleted by the daily trim. With `owner`
/// set, every entry becomes that user's, so no member's use keeps any entry alive.
pub(crate) const GOCACHE_OWNER: &str =
    "`owner` on a GOCACHE makes every entry that user's, and Go marks an entry as used \
     (its mtime, at most hourly) only where the user owns it: entries other members use are trimmed 5 days after \
     they were written, however often they use them; for a cache shared by members leave `owner` unset (each entry \
     stays its creator's) and set `group`";

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration, or its error as the one line people see.
    fn parse(text: &str) -> Result<Config, Message> {
        Config::parse(Path::new("/etc/ck.toml"), text).map_err(|e| Message(e.to_string()))
    }

    /// An error's line, for tests that read it as people do.
    #[derive(Debug)]
    struct Message(String);

    impl std::ops::Deref for Message {
        type Target = str;
        fn deref(&self) -> &str {
            &self.0
        }
    }

    impl std::fmt::Display for Message {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    #[test]
    fn a_full_configuration_is_accepted() {
        let c = parse(
            r#"
[[cache]]
path = "/var/cache/go/mod"
owner = 1001
group = "0"
other = "none"
exclude = ["cache/vcs/**"]
writable = true

[[cache]]
path = "/var/cache/go/build"

[daemon]
socket = "/run/ck.sock"
socket_group = 0
user = "root"
full_rescan = "30m"
log_format = "json"
metrics_textfile = "/var/lib/ck.prom"
audit_log = "/var/log/ck.jsonl"
"#,
        )
        .unwrap();
        assert_eq!(c.caches.len(), 2);
        let p = c.caches[0].policy;
        assert_eq!(
            (p.owner, p.group, p.model, p.other, p.writable),
            (Some(1001), Some(0), Model::Shared, Other::None, true)
        );
        assert!(c.caches[0].exclude.matches(b"cache/vcs/abc/objects"));
        let anchored = Excludes::new(&["/cache/vcs/**".to_owned()]).unwrap();
        assert!(anchored.matches(b"cache/vcs/abc"), "a leading / anchors at the root, as in .gitignore");
        assert!(!c.caches[0].exclude.matches(b"cache/download/x"));
        assert_eq!(c.caches[1].policy.model, Model::Private);
        assert_eq!(c.caches[0].policy.inherit, Inherit::Acl, "shared inherits by default");
        assert_eq!(c.caches[1].policy.inherit, Inherit::None, "private does not");
        assert_eq!(c.daemon.full_rescan, Duration::from_secs(1800));
        assert_eq!(c.daemon.user, Some((0, 0)));
        assert_eq!(c.daemon.log_format, LogFormat::Json);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("[[cache]]\npath = \"/c\"\ncolour = 1\n", "/etc/ck.toml:3: cache.colour: unknown field `colour`"),
            ("[[cache]]\npath = \"relative\"\n", "/etc/ck.toml:2: cache.path: `relative` is not an absolute path"),
            (
                "[[cache]]\npath = \"/c\"\nowner = \"no-such-user-ck\"\n",
                "/etc/ck.toml:3: cache.owner: user `no-such-user-ck` does not exist",
            ),
            (
                "[[cache]]\npath = \"/c\"\ngroup = \"no-such-group-ck\"\n",
                "/etc/ck.toml:3: cache.group: group `no-such-group-ck` does not exist",
            ),
            ("[[cache]]\npath = \"/c\"\nmodel = \"open\"\n", "/etc/ck.toml:3: cache.model: unknown variant `open`"),
            ("[[cache]]\npath = \"/c\"\ninherit = \"yes\"\n", "/etc/ck.toml:3: cache.inherit: unknown variant `yes`"),
            ("[[cache]]\npath = \"/c\"\nowner = -3\n", "/etc/ck.toml:3: cache.owner: -3 is not a valid id"),
            ("[[cache]]\npath = \"/c\"\nexclude = [\"a[\"]\n", "/etc/ck.toml:3: cache.exclude: invalid glob `a[`"),
            (
                "[[cache]]\npath = \"/c\"\n[daemon]\nfull_rescan = \"6 hours\"\n",
                "/etc/ck.toml:4: daemon.full_rescan: `6 hours` is not a duration",
            ),
            (
                "[[cache]]\npath = \"/c\"\n[daemon]\nfull_rescan = \"0s\"\n",
                "/etc/ck.toml:4: daemon.full_rescan: `0s` is shorter than a second",
            ),
            (
                "[[cache]]\npath = \"/c\"\n[daemon]\nfull_rescan = \"500ms\"\n",
                "/etc/ck.toml:4: daemon.full_rescan: `500ms` is shorter than a second",
            ),
            (
                "[[cache]]\npath = \"/c\"\n[daemon]\nmax_pending = 0\n",
                "/etc/ck.toml:4: daemon.max_pending: `0` is not a count of at least 1",
            ),
            (
                "[[cache]]\npath = \"/c\"\n[daemon]\nmax_watches = -5\n",
                "/etc/ck.toml:4: daemon.max_watches: `-5` is not a count of at least 1",
            ),
            (
                "[[cache]]\npath = \"/c\"\n[daemon]\nverbose = true\n",
                "/etc/ck.toml:4: daemon.verbose: unknown field `verbose`",
            ),
            (
                "[[cache]]\npath = \"/c\"\nwritable = \"yes\"\n",
                "/etc/ck.toml:3: cache.writable: invalid type: string \"yes\", expected a boolean",
            ),
            ("[[cache]]\npath = \"/\"\n", "/etc/ck.toml:2: cache.path: refusing to manage `/`"),
            (
                "[[cache]]\npath = \"/a/b\"\n[[cache]]\npath = \"/a\"\n",
                "/etc/ck.toml:4: cache.path: `/a` overlaps the cache at `/a/b`",
            ),
            (
                "[[cache]]\npath = \"/a/b\"\n[[cache]]\npath = \"/a/b/\"\n",
                "/etc/ck.toml:4: cache.path: `/a/b` is listed twice",
            ),
            ("[[cache]]\npath = \"/c\"\npath = \"/d\"\n", "/etc/ck.toml:3: cache.path: duplicate key"),
            ("[daemon]\n", "/etc/ck.toml:1: cache: no [[cache]] table"),
            (
                "[[cache]]\npath = \"/c\"\nowner = \"ünknöwn-üser\"\n",
                "/etc/ck.toml:3: cache.owner: user `ünknöwn-üser`",
            ),
            ("[[cache]]\npath = \"/c\"\n€ = 1\n", "/etc/ck.toml:3: "),
            ("[[cache]]\nowner = 1\n", "/etc/ck.toml:1: cache: missing field `path`"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "for {text:?}\n got: {got}\nwant: {want}…");
            assert!(!got.contains('\n'), "multi-line error: {got:?}");
        }
    }

    #[test]
    fn no_edit_of_a_valid_file_makes_the_parser_panic() {
        let good = "[[cache]]\npath = \"/var/cache/go/mod\"\nowner = 1001\ngroup = \"0\"\nexclude = [\"a/**\"]\n\
                    [daemon]\nfull_rescan = \"6h\"\nlog_format = \"json\"\n";
        let boundaries: Vec<usize> = (0..=good.len()).filter(|&i| good.is_char_boundary(i)).collect();
        for &at in &boundaries {
            for insert in ["\"", "[", "]", "=", "\n", "é", "€", "\u{0}", "#", "-1", "'''", "ü = 1\n"] {
                let text = format!("{}{insert}{}", &good[..at], &good[at..]);
                if let Err(e) = Config::parse(Path::new("/f.toml"), &text) {
                    assert!(!e.to_string().contains('\n'), "multi-line error for {text:?}: {e}");
                }
            }
            let _ = Config::parse(Path::new("/f.toml"), &good[..at]);
        }
    }

    #[test]
    fn inherit_is_explicit_or_follows_the_model() {
        let c = parse("[[cache]]\npath = \"/c\"\ngroup = 0\ninherit = \"none\"\n").unwrap();
        assert_eq!(c.caches[0].policy.inherit, Inherit::None);
        // A private cache may ask for it: new entries are then group-readable at once.
        let c = parse("[[cache]]\npath = \"/c\"\nmodel = \"private\"\ninherit = \"acl\"\n").unwrap();
        assert_eq!(c.caches[0].policy.inherit, Inherit::Acl);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        for bad in ["", "6", "h", "1.5h", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn system_directories_are_refused() {
        for p in ["/", "/usr", "/etc", "/var/lib", "/home"] {
            assert!(cache_root(p).unwrap_err().to_string().contains("refusing"), "{p}");
        }
        assert!(cache_root("/usr/../etc").is_err());
        assert_eq!(cache_root("/var/cache/go/mod/").unwrap(), PathBuf::from("/var/cache/go/mod"));
    }
}

//! The control protocol between `cachekeeperctl` and the service: one JSON object per
//! line over the Unix socket, one request and one response per connection. Plain data;
//! no I/O.

use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Longest request line the service reads; anything longer is refused.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(crate) enum Request {
    Status,
    /// Returns once every event that happened before the request has been handled.
    Sync {
        timeout_ms: u64,
    },
    /// Full reconcile of the cache at `path`, or of all caches, and wait for it.
    Rescan {
        path: Option<String>,
    },
    Reload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Response {
    Status(Box<Status>),
    Synced {
        /// Caches where entries stay unrepaired; the request itself succeeded.
        #[serde(default)]
        leftovers: Vec<Leftover>,
    },
    Rescanned {
        caches: Vec<String>,
        /// What each reconcile found, in the order of `caches`.
        #[serde(default)]
        scans: Vec<ScanInfo>,
        /// Caches where entries stay unrepaired.
        #[serde(default)]
        leftovers: Vec<Leftover>,
    },
    Reloaded {
        caches: Vec<String>,
    },
    /// The request was understood but could not be done (exit 1).
    Failed {
        message: String,
    },
    /// The peer may not use the service (exit 4).
    Denied {
        message: String,
    },
}

impl Response {
    /// Its name on the wire, for messages about an answer that was not expected.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Response::Status(_) => "status",
            Response::Synced { .. } => "synced",
            Response::Rescanned { .. } => "rescanned",
            Response::Reloaded { .. } => "reloaded",
            Response::Failed { .. } => "failed",
            Response::Denied { .. } => "denied",
        }
    }
}

impl Request {
    /// Its command name, as `cachekeeperctl` spells it.
    pub(crate) fn command(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Sync { .. } => "sync",
            Request::Rescan { .. } => "rescan",
            Request::Reload => "reload",
        }
    }
}

/// `cachekeeperctl status --json`, schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub schema_version: u32,
    /// Every cache is `healthy` (or `polling`, which is healthy for a network filesystem).
    pub healthy: bool,
    pub daemon: DaemonStatus,
    pub caches: Vec<CacheStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_s: u64,
    pub uid: u32,
    /// Effective capabilities, lower-case (`cap_chown`, ...).
    pub capabilities: Vec<String>,
    pub config: String,
    /// The control socket it listens on. Added within schema version 1.
    #[serde(default)]
    pub socket: String,
    /// What keeps the service itself from its work (a side file it cannot write); the
    /// service is then not healthy. Absent when there is nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trouble: Option<String>,
    /// inotify watches the service holds, over all caches.
    pub inotify_watches: u64,
    /// The service's user, by name where it has one.
    #[serde(default)]
    pub user: String,
    /// When the service started (RFC 3339).
    #[serde(default)]
    pub started: String,
    /// The last reload (`reload`, SIGHUP): when, and whether the configuration was taken.
    #[serde(default)]
    pub last_reload: Option<ReloadResult>,
    /// The configuration file differs from the one the service runs: a reload is due.
    #[serde(default)]
    pub config_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// RFC 3339.
    pub at: String,
    pub ok: bool,
    /// The caches now kept, or why the configuration was refused.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRepair {
    /// RFC 3339.
    pub at: String,
    pub path: String,
    /// `owner 0→1001, mode 0600→0664`.
    pub change: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheState {
    /// The first full scan has not finished.
    Starting,
    /// Watched; every event is handled.
    Healthy,
    /// Events may have been lost (queue overflow) or part of the tree is not watched
    /// (watch limit): periodic full reconciles cover it; `reason` says what to do.
    Degraded,
    /// A filesystem that sends no events for other clients' writes: polled.
    Polling,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheStatus {
    pub path: String,
    pub state: CacheState,
    /// Why the cache is not healthy, in words.
    pub reason: Option<String>,
    /// The same as a code, for programs (`doctor` decides on it, never on the words);
    /// added within schema version 1.
    #[serde(default)]
    pub reason_code: Option<ReasonCode>,
    pub filesystem: String,
    /// Entries seen by the last full scan.
    pub entries: u64,
    pub repairs: Repairs,
    /// Reported entries (left as they are) by reason, as of the last full scan.
    pub reported: Reported,
    pub errors: u64,
    pub last_full_scan: Option<ScanInfo>,
    /// Full reconciles since start, and the time they took.
    pub full_scans: u64,
    pub full_scan_ms_total: u64,
    pub queue_depth: u64,
    pub events_received: u64,
    pub overflows: u64,
    /// The root (or its parent) is a mount of its own, so no file from elsewhere can be
    /// hard-linked in; `null` until the root has been resolved.
    #[serde(default)]
    pub isolated: Option<bool>,
    /// What `isolated` means for this cache, in words.
    #[serde(default)]
    pub isolation: Option<String>,
    /// The owner model the cache is kept to.
    #[serde(default)]
    pub owner_model: Option<crate::policy::model::Policy>,
    /// Directories watched: those the last full scan watched, and those added since.
    #[serde(default)]
    pub watches: u64,
    /// The latest repair.
    #[serde(default)]
    pub last_repair: Option<LastRepair>,
    /// How new entries become usable by the group: `acl` (default ACLs, at creation),
    /// `none` (by repair, as configured) or `repair_only` (the filesystem has no POSIX
    /// ACLs). Added within schema version 1; absent from older services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inheritance: Option<crate::policy::model::Inheritance>,
    /// Entries that stay non-compliant because a check or repair failed. Each is that
    /// entry's problem, retried with back-off: the cache is not `degraded` for it, and
    /// `sync` and `rescan` exit 4 only for a caller who owns one of them.
    #[serde(default)]
    pub unrepaired: u64,
    /// The first of them (at most [`UNREPAIRED_SHOWN`]), by path.
    #[serde(default)]
    pub unrepaired_entries: Vec<Unrepaired>,
    /// How often the pending paths passed `daemon.max_pending` and became one full
    /// reconcile instead.
    #[serde(default)]
    pub queue_collapses: u64,
}

/// How many unrepaired entries `status` lists; `unrepaired` counts them all.
pub(crate) const UNREPAIRED_SHOWN: usize = 10;

/// An entry the service could not bring to its model, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrepaired {
    pub path: String,
    /// What failed and the error: `cannot repair (mode 0600→0664): Operation not permitted`.
    pub cause: String,
    /// The entry's owner (uid), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

/// What a `sync` or `rescan` left unrepaired in one cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Leftover {
    pub cache: String,
    pub unrepaired: u64,
    /// Those the caller owns.
    pub yours: u64,
    /// The first of them, by path.
    pub first: Vec<Unrepaired>,
}

/// Why a cache is not healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Events were lost within the last 10 minutes.
    Overflow,
    NoInotify,
    /// The root cannot be resolved or walked.
    Unwalkable,
    WatchLimit,
    WatchBudget,
    Unwatched,
    /// The hard-link guard stops every change.
    Refused,
    /// The filesystem sends no events for other clients' writes: polled.
    Polled,
}

/// The walk's counts, as the one-shot summary, `status` and the metrics show them.
pub(crate) use crate::engine::walk::{Repairs, Reported};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanInfo {
    /// Unix time, seconds.
    pub finished_at: u64,
    pub duration_ms: u64,
    pub entries: u64,
    /// The same time, RFC 3339.
    #[serde(default)]
    pub finished: String,
    /// Entries this scan repaired.
    #[serde(default)]
    pub repaired: u64,
}

impl Status {
    pub fn healthy(caches: &[CacheStatus]) -> bool {
        caches.iter().all(|c| matches!(c.state, CacheState::Healthy | CacheState::Polling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_command() {
        let r: Request = serde_json::from_str(r#"{"command":"sync","timeout_ms":500}"#).unwrap();
        assert_eq!(r, Request::Sync { timeout_ms: 500 });
        assert_eq!(serde_json::to_string(&Request::Status).unwrap(), r#"{"command":"status"}"#);
        assert_eq!(
            serde_json::to_string(&Request::Rescan { path: None }).unwrap(),
            r#"{"command":"rescan","path":null}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"command":"format_disk"}"#).is_err());
    }

    #[test]
    fn responses_are_tagged_by_result() {
        let r = Response::Denied { message: "no".into() };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"result":"denied","message":"no"}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), r);
    }
}

/// A time as JSON: RFC 3339 in UTC with milliseconds (`2026-11-23T01:02:03.456Z`), the
/// one convention of every JSON output (status keeps its unix-second fields as well).
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod time_tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_395_215)), "2026-11-23T00:53:35.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(4_107_542_399)), "2100-02-28T23:59:59.000Z");
    }
}

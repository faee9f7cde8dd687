//! What `--init` and `--check` print: a one-screen summary per cache, or one JSON
//! object (`schema_version` 1) for scripts.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use crate::engine::walk::{Action, Failure, Finding, Note, Reason, Repairs, Tally};
use crate::policy::config::CacheConfig;
use crate::policy::model::{Divergence, Inherit, Inheritance, Policy};
use crate::policy::names::{self, Escaped, Names};

pub(crate) const SCHEMA_VERSION: u32 = 1;

/// One change the walk made: the relative path and what changed.
pub(crate) type Repaired = (Vec<u8>, Divergence);

/// The outcome of one walk over one cache.
#[derive(Debug)]
pub(crate) struct CacheSummary {
    pub path: PathBuf,
    pub policy: Policy,
    pub action: Action,
    pub entries: u64,
    pub changed: Repairs,
    pub diverging: u64,
    pub reported: Vec<(Reason, u64)>,
    pub excluded: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub notes: Vec<Note>,
    /// Every repair, by path (relative to the root), when they were collected (`-v`).
    pub repairs: Vec<Repaired>,
    /// Directories `--init` created for the root.
    pub created: Vec<PathBuf>,
    pub compliant: bool,
    /// How new entries get group access: at creation, or only by repair.
    pub inheritance: Inheritance,
    /// The mount point, when the cache lies on a read-only mount: said once, not per entry.
    pub read_only_at: Option<PathBuf>,
    /// A check found no default ACL on any directory that should carry one: how many.
    pub default_acls_absent: Option<u64>,
}

impl CacheSummary {
    pub(crate) fn new(cache: &CacheConfig, action: Action, t: &Tally, notes: Vec<Note>, elapsed: Duration) -> Self {
        let failed = t.failed.load(Relaxed);
        let diverging = t.diverging.load(Relaxed);
        CacheSummary {
            path: cache.path.clone(),
            policy: cache.policy,
            action,
            entries: t.entries.load(Relaxed),
            changed: t.repairs(),
            diverging,
            reported: t.reported_all().by_reason().to_vec(),
            excluded: t.excluded.load(Relaxed),
            failed,
            elapsed,
            notes,
            repairs: Vec::new(),
            created: Vec::new(),
            compliant: failed == 0 && diverging == 0,
            inheritance: Inheritance::of(&cache.policy, t.no_acl.load(Relaxed)),
            read_only_at: crate::sys::read_only(&cache.path)
                .then(|| crate::sandbox::mount_point(&cache.path).unwrap_or_else(|| cache.path.clone())),
            default_acls_absent: {
                let (absent, present) = (t.default_acl_absent.load(Relaxed), t.default_acl_present.load(Relaxed));
                (action == Action::Check && absent > 0 && present == 0).then_some(absent)
            },
        }
    }

    fn total_reported(&self) -> u64 {
        self.reported.iter().map(|(_, n)| n).sum()
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `1 entry`, `2 entries`.
pub(crate) fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".to_owned()
    } else {
        format!("{n} entries")
    }
}

/// Failures that share a cause, and what to do about it.
struct Cause {
    why: String,
    paths: Vec<Vec<u8>>,
}

/// The cause of a failure in words a user can act on.
fn cause(f: &Failure, root: &std::path::Path) -> String {
    match f.errno {
        Some(libc::EPERM) if !nix::unistd::geteuid().is_root() => format!(
            "belong to other users, and only root may change them: run `{}`",
            crate::policy::hint::rerun_with_sudo(true)
        ),
        Some(libc::EPERM) => {
            "were refused by the kernel although this runs as root (an immutable attribute? see lsattr)".into()
        }
        Some(libc::EROFS) => read_only(root),
        Some(libc::EACCES) if !nix::unistd::geteuid().is_root() => {
            format!("could not be read (permission denied): run `{}`", crate::policy::hint::rerun_with_sudo(false))
        }
        _ => format!("failed: {f}"),
    }
}

/// What to say of a cache on a read-only mount: the mount point to remount, which is
/// rarely the root itself.
fn read_only(root: &std::path::Path) -> String {
    match crate::sandbox::mount_point(root) {
        Some(point) => format!(
            "are on a filesystem mounted read-only at {0}: remount it read-write (`sudo mount -o remount,rw {0}`), \
             or repair the cache where it is written",
            point.display()
        ),
        None => format!("are on a read-only filesystem: remount the filesystem of {} read-write", root.display()),
    }
}

/// How many example paths a summary line shows without `-v`.
const EXAMPLES: usize = 3;

/// Divergent entries one per line (for `--check`; with `verbose` also every repair,
/// reported entry and failure, sorted by path), then a few lines per cache.
pub(crate) fn write_text(out: &mut impl Write, summaries: &[CacheSummary], verbose: bool) -> io::Result<()> {
    let mut names = Names::default();
    for s in summaries {
        if verbose {
            for (rel, d) in &s.repairs {
                writeln!(out, "{}: {}", names::display(&s.path, rel), names.divergence(d))?;
            }
        }
        for note in &s.notes {
            match &note.finding {
                // Folded into the one finding below.
                Finding::Diverges(d) if !verbose && s.default_acls_absent.is_some() && only_default_acl(d) => {}
                Finding::Diverges(d) => {
                    writeln!(out, "{}: {}", names::display(&s.path, &note.rel), names.divergence(d))?
                }
                Finding::Reported(r) if verbose => {
                    writeln!(out, "{}: left as it is: {}", names::display(&s.path, &note.rel), r.explain())?
                }
                _ => {}
            }
        }
        if let Some(n) = s.default_acls_absent {
            writeln!(
                out,
                "{}: default ACLs absent (image layer dropped them): none of the {} that should carry the model's \
                 default ACL has one, as a container image layer or a copy without ACLs (tar without --acls) leaves \
                 a tree; until `cachekeeper --init` sets them again, new entries get the creator's umask",
                names::display(&s.path, b""),
                if n == 1 { "1 directory".to_owned() } else { format!("{n} directories") }
            )?;
        }
        let verdict = match (s.compliant, s.action) {
            (true, _) => "compliant".to_owned(),
            (false, Action::Check) if s.failed == 0 => format!("{} diverge from the owner model", entries(s.diverging)),
            (false, Action::Check) => format!("{} diverge, {} could not be checked", entries(s.diverging), s.failed),
            (false, Action::Repair) => format!("{} could not be made compliant", entries(s.failed)),
        };
        // The first line says which model was applied: `--owner U:G` alone is private,
        // and a reader should not have to guess (SPEC §3).
        writeln!(out, "{}: {verdict} ({})", names::display(&s.path, b""), model_line(&mut names, &s.policy))?;
        for dir in &s.created {
            writeln!(out, "  created    {}", dir.display())?;
        }
        writeln!(out, "  entries    {} in {}", s.entries, seconds(s.elapsed))?;
        if s.action == Action::Repair {
            writeln!(out, "  changed    {}", s.changed)?;
        }
        if let Some(point) = &s.read_only_at {
            let what =
                if s.action == Action::Check { "--init could change nothing here" } else { "nothing could change" };
            writeln!(out, "  read-only  mounted read-only at {}: {what}", point.display())?;
        }
        writeln!(out, "  inherit    {}", s.inheritance.describe(&s.policy))?;
        let reasons: Vec<String> =
            s.reported.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{} {n}", r.name())).collect();
        if reasons.is_empty() {
            writeln!(out, "  reported   0")?;
        } else {
            writeln!(out, "  reported   {} ({}), left as they are", s.total_reported(), reasons.join(", "))?;
        }
        if s.excluded > 0 {
            writeln!(out, "  excluded   {}", s.excluded)?;
        }
        if s.failed > 0 {
            let mut causes: BTreeMap<String, Cause> = BTreeMap::new();
            for note in &s.notes {
                if let Finding::Failed(f) = &note.finding {
                    let why = cause(f, &s.path);
                    causes.entry(why.clone()).or_insert(Cause { why, paths: Vec::new() }).paths.push(note.rel.clone());
                }
            }
            writeln!(out, "  failed     {}", s.failed)?;
            let mut causes: Vec<Cause> = causes.into_values().collect();
            causes.sort_by_key(|c| std::cmp::Reverse(c.paths.len()));
            for c in causes {
                let n = c.paths.len();
                let shown = if verbose { n } else { n.min(EXAMPLES) };
                let listed: Vec<String> = c.paths[..shown].iter().map(|p| Escaped(p).to_string()).collect();
                let more =
                    if shown < n { format!(" and {} more (-v lists them all)", n - shown) } else { String::new() };
                writeln!(out, "    {} {}", entries(n as u64), c.why)?;
                writeln!(out, "      {}{more}", listed.join(", "))?;
            }
        }
    }
    Ok(())
}

/// The entry's attributes comply; only the directory's default ACL is missing.
fn only_default_acl(d: &Divergence) -> bool {
    d.from == d.to && d.set_default_acl && !d.drop_access_acl
}

/// `model private, owner alice, group unchanged`.
fn model_line(names: &mut Names, p: &Policy) -> String {
    let model = if p.model == crate::policy::model::Model::Shared { "shared" } else { "private" };
    let owner = p.owner.map_or("unchanged".to_owned(), |u| names.user(u));
    let group = p.group.map_or("unchanged".to_owned(), |g| names.group(g));
    format!("model {model}, owner {owner}, group {group}")
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema_version: u32,
    mode: &'static str,
    compliant: bool,
    caches: Vec<JsonCache<'a>>,
}

#[derive(Serialize)]
struct JsonCache<'a> {
    path: String,
    owner: Option<u32>,
    group: Option<u32>,
    model: crate::policy::model::Model,
    other: crate::policy::model::Other,
    writable: bool,
    inherit: Inherit,
    inheritance: Inheritance,
    /// A check found no default ACL on any directory that should carry one (an image
    /// layer or a copy without ACLs): how many directories lack it.
    #[serde(skip_serializing_if = "Option::is_none")]
    default_acls_absent: Option<u64>,
    compliant: bool,
    entries: u64,
    changed: &'a Repairs,
    diverging: u64,
    reported: serde_json::Map<String, serde_json::Value>,
    excluded: u64,
    failed: u64,
    duration_ms: u128,
    findings: Vec<JsonFinding>,
}

#[derive(Serialize)]
struct JsonFinding {
    path: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<crate::policy::model::Attrs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<crate::policy::model::Attrs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// ACL changes (`access_acl`, `default_acl`) the entry needs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    acl: Vec<&'static str>,
}

/// The whole run as one JSON object on one line.
pub(crate) fn write_json(out: &mut impl Write, action: Action, summaries: &[CacheSummary]) -> io::Result<()> {
    let caches = summaries
        .iter()
        .map(|s| JsonCache {
            path: Escaped(s.path.as_os_str().as_encoded_bytes()).to_string(),
            owner: s.policy.owner,
            group: s.policy.group,
            model: s.policy.model,
            other: s.policy.other,
            writable: s.policy.writable,
            inherit: s.policy.inherit,
            inheritance: s.inheritance,
            default_acls_absent: s.default_acls_absent,
            compliant: s.compliant,
            entries: s.entries,
            changed: &s.changed,
            diverging: s.diverging,
            reported: s.reported.iter().map(|(r, n)| (r.key().to_owned(), (*n).into())).collect(),
            excluded: s.excluded,
            failed: s.failed,
            duration_ms: s.elapsed.as_millis(),
            findings: s
                .notes
                .iter()
                .map(|n| {
                    let path = Escaped(&n.rel).to_string();
                    match &n.finding {
                        Finding::Reported(r) => JsonFinding {
                            path,
                            kind: "reported",
                            reason: Some(*r),
                            from: None,
                            to: None,
                            error: None,
                            acl: Vec::new(),
                        },
                        Finding::Diverges(d) => JsonFinding {
                            path,
                            kind: "diverges",
                            reason: None,
                            from: Some(d.from),
                            to: Some(d.to),
                            error: None,
                            acl: [(d.drop_access_acl, "access_acl"), (d.set_default_acl, "default_acl")]
                                .into_iter()
                                .filter_map(|(on, k)| on.then_some(k))
                                .collect(),
                        },
                        Finding::Failed(e) => JsonFinding {
                            path,
                            kind: "failed",
                            reason: None,
                            from: None,
                            to: None,
                            error: Some(e.to_string()),
                            acl: Vec::new(),
                        },
                    }
                })
                .collect(),
        })
        .collect();
    let report = JsonReport {
        schema_version: SCHEMA_VERSION,
        mode: if action == Action::Repair { "init" } else { "check" },
        compliant: summaries.iter().all(|s| s.compliant),
        caches,
    };
    serde_json::to_writer(&mut *out, &report).map_err(io::Error::other)?;
    writeln!(out)
}

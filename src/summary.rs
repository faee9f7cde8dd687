//! What `--init` and `--check` print: a one-screen summary per cache, or one JSON
//! object (`schema_version` 1) for scripts.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use crate::config::CacheConfig;
use crate::model::{Inherit, Inheritance, Policy};
use crate::names::{self, Escaped};
use crate::walk::{Action, Finding, Note, Reason, Tally};

pub const SCHEMA_VERSION: u32 = 1;

/// The outcome of one walk over one cache.
#[derive(Debug)]
pub struct CacheSummary {
    pub path: PathBuf,
    pub policy: Policy,
    pub action: Action,
    pub entries: u64,
    pub changed: Changed,
    pub diverging: u64,
    pub reported: Vec<(Reason, u64)>,
    pub excluded: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub notes: Vec<Note>,
    pub compliant: bool,
    /// How new entries get group access: at creation, or only by repair.
    pub inheritance: Inheritance,
}

#[derive(Debug, Serialize)]
pub struct Changed {
    pub entries: u64,
    pub owner: u64,
    pub group: u64,
    pub mode: u64,
    pub acl: u64,
}

impl CacheSummary {
    pub fn new(cache: &CacheConfig, action: Action, t: &Tally, notes: Vec<Note>, elapsed: Duration) -> Self {
        let failed = t.failed.load(Relaxed);
        let diverging = t.diverging.load(Relaxed);
        CacheSummary {
            path: cache.path.clone(),
            policy: cache.policy,
            action,
            entries: t.entries.load(Relaxed),
            changed: Changed {
                entries: t.changed.load(Relaxed),
                owner: t.owner.load(Relaxed),
                group: t.group.load(Relaxed),
                mode: t.mode.load(Relaxed),
                acl: t.acl.load(Relaxed),
            },
            diverging,
            reported: Reason::ALL.iter().map(|&r| (r, t.reported(r))).collect(),
            excluded: t.excluded.load(Relaxed),
            failed,
            elapsed,
            notes,
            compliant: failed == 0 && diverging == 0,
            inheritance: Inheritance::of(&cache.policy, t.no_acl.load(Relaxed)),
        }
    }

    fn total_reported(&self) -> u64 {
        self.reported.iter().map(|(_, n)| n).sum()
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Divergent entries one per line (for `--check`), then a few lines per cache.
pub fn write_text(out: &mut impl Write, summaries: &[CacheSummary]) -> io::Result<()> {
    for s in summaries {
        for note in &s.notes {
            if let Finding::Diverges(d) = &note.finding {
                writeln!(out, "{}: {d}", names::display(&s.path, &note.rel))?;
            }
        }
        let verdict = match (s.compliant, s.action) {
            (true, _) => "compliant".to_owned(),
            (false, Action::Check) if s.failed == 0 => format!("{} entries diverge from the owner model", s.diverging),
            (false, Action::Check) => format!("{} entries diverge, {} could not be checked", s.diverging, s.failed),
            (false, Action::Repair) => format!("{} entries could not be made compliant", s.failed),
        };
        writeln!(out, "{}: {verdict}", names::display(&s.path, b""))?;
        writeln!(out, "  entries    {} in {}", s.entries, seconds(s.elapsed))?;
        if s.action == Action::Repair {
            let c = &s.changed;
            writeln!(
                out,
                "  changed    {} (owner {}, group {}, mode {}, acl {})",
                c.entries, c.owner, c.group, c.mode, c.acl
            )?;
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
            writeln!(out, "  failed     {} (see the errors above)", s.failed)?;
        }
    }
    Ok(())
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
    model: crate::model::Model,
    other: crate::model::Other,
    writable: bool,
    inherit: Inherit,
    inheritance: Inheritance,
    compliant: bool,
    entries: u64,
    changed: &'a Changed,
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
    from: Option<crate::model::Attrs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<crate::model::Attrs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// ACL changes (`access_acl`, `default_acl`) the entry needs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    acl: Vec<&'static str>,
}

/// The whole run as one JSON object on one line.
pub fn write_json(out: &mut impl Write, action: Action, summaries: &[CacheSummary]) -> io::Result<()> {
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
                            error: Some(e.clone()),
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

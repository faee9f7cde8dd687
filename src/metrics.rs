//! The service's state in the Prometheus text exposition format, for
//! `cachekeeperctl metrics` and `daemon.metrics_textfile` (node_exporter's textfile
//! collector) — no TCP port in a privileged daemon. Pure: renders a [`Status`].

use std::fmt::Write;

use crate::protocol::{CacheState, CacheStatus, Status};

/// A label value with `\\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub(crate) fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let d = &status.daemon;
    family("cachekeeper_up", "gauge", "1 when the service answers.", vec![(String::new(), "1".into())]);
    family(
        "cachekeeper_uptime_seconds",
        "gauge",
        "Seconds since the service started.",
        vec![(String::new(), d.uptime_s.to_string())],
    );
    family(
        "cachekeeper_inotify_watches",
        "gauge",
        "inotify watches the service holds.",
        vec![(String::new(), d.inotify_watches.to_string())],
    );
    let caches: Vec<(String, &crate::protocol::CacheStatus)> =
        status.caches.iter().map(|c| (format!("cache=\"{}\"", label(&c.path)), c)).collect();
    let per = |f: &dyn Fn(&crate::protocol::CacheStatus) -> String| -> Vec<(String, String)> {
        caches.iter().map(|(l, c)| (l.clone(), f(c))).collect()
    };
    family(
        "cachekeeper_cache_healthy",
        "gauge",
        "1 when the cache is healthy or polled, 0 when starting or degraded.",
        per(&|c| u8::from(matches!(c.state, CacheState::Healthy | CacheState::Polling)).to_string()),
    );
    let mut repairs = Vec::new();
    for (l, c) in &caches {
        for (kind, n) in std::iter::once(("entries", c.repairs.entries)).chain(c.repairs.kinds()) {
            repairs.push((format!("{l},kind=\"{kind}\""), n.to_string()));
        }
    }
    family("cachekeeper_repairs_total", "counter", "Repairs since start: entries, and changes by kind.", repairs);
    let mut reported = Vec::new();
    for (l, c) in &caches {
        for (reason, n) in c.reported.by_reason() {
            reported.push((format!("{l},reason=\"{}\"", reason.key()), n.to_string()));
        }
    }
    family(
        "cachekeeper_reported_entries",
        "gauge",
        "Entries left as they are, by reason, at the last full scan.",
        reported,
    );
    type Sample = fn(&CacheStatus) -> String;
    let per_cache: [(&str, &str, &str, Sample); 10] = [
        ("cachekeeper_entries", "gauge", "Entries seen by the last full scan.", |c| c.entries.to_string()),
        ("cachekeeper_events_total", "counter", "Filesystem events received.", |c| c.events_received.to_string()),
        ("cachekeeper_overflows_total", "counter", "inotify queue overflows.", |c| c.overflows.to_string()),
        (
            "cachekeeper_errors_total",
            "counter",
            "Cache-wide errors (a root that could not be opened or walked); entries left unrepaired are \
             cachekeeper_unrepaired_entries.",
            |c| c.errors.to_string(),
        ),
        (
            "cachekeeper_unrepaired_entries",
            "gauge",
            "Entries that stay non-compliant (each retried with back-off).",
            |c| c.unrepaired.to_string(),
        ),
        ("cachekeeper_queue_depth", "gauge", "Work items waiting.", |c| c.queue_depth.to_string()),
        ("cachekeeper_full_scans_total", "counter", "Full reconciles since start.", |c| c.full_scans.to_string()),
        ("cachekeeper_full_scan_seconds_total", "counter", "Time spent in full reconciles since start.", |c| {
            format!("{:.3}", c.full_scan_ms_total as f64 / 1000.0)
        }),
        ("cachekeeper_last_full_scan_duration_seconds", "gauge", "How long the last full reconcile took.", |c| {
            format!("{:.3}", c.last_full_scan.as_ref().map_or(0, |s| s.duration_ms) as f64 / 1000.0)
        }),
        (
            "cachekeeper_last_full_scan_timestamp_seconds",
            "gauge",
            "When the last full reconcile finished (unix time).",
            |c| c.last_full_scan.as_ref().map_or(0, |s| s.finished_at).to_string(),
        ),
    ];
    for (name, kind, help, sample) in per_cache {
        family(name, kind, help, per(&sample));
    }
    out
}

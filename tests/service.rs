//! The service under the ways events get lost (SPEC §4): after `cachekeeperctl sync`,
//! every entry complies. Real daemons on real temp trees; needs root (CI is root).

mod common;

use std::path::{Path, PathBuf};

use common::*;

const OWNER: u32 = 1001;
const GROUP: u32 = 3200;
const MEMBER: u32 = 1002;

/// A shared cache owned by 1001 with group 3200, writable by group members.
fn shared_cache(root: &Path) -> String {
    format!("[[cache]]\npath = \"{}\"\nowner = {OWNER}\ngroup = {GROUP}\n", root.display())
}

fn start(t: &Tree) -> Daemon {
    Daemon::start(&t.base, &shared_cache(&t.root), "")
}

/// A group member (not the owner) runs `script` in the cache root with umask 077.
fn as_member(t: &Tree, script: &str) {
    sh_as(MEMBER, &[GROUP], &t.root, &format!("umask 077; {script}"));
}

#[test]
fn root_recursive_create_race_mkdir_p_then_files_100_times() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    as_member(&t, "i=0; while [ $i -lt 100 ]; do mkdir -p a$i/b/c && echo x > a$i/b/c/f.go && echo y > a$i/t.go; i=$((i+1)); done");
    d.sync();
    d.assert_compliant();
    assert_eq!(meta(&t.path("a99/b/c/f.go")).mode, 0o664);
}

#[test]
fn root_burst_of_10k_files_by_another_uid_with_umask_077() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    as_member(&t, "for d in 0 1 2 3 4 5 6 7 8 9; do mkdir burst$d; i=0; while [ $i -lt 1000 ]; do : > burst$d/f$i; i=$((i+1)); done; done");
    d.sync();
    d.assert_compliant();
    let s = d.status();
    assert!(s["caches"][0]["repairs"]["entries"].as_u64().unwrap() >= 10_010, "{s}");
}

#[test]
fn root_a_prepared_tree_renamed_into_the_root() {
    let (_lock, t) = root_tree();
    // Unisolated: into an isolated root nothing can be renamed from outside (EXDEV).
    let d = Daemon::start_with(&t.base, &shared_cache(&t.root), "", own_mount_namespace);
    let prepared = t.base.join("prepared");
    for i in 0..20 {
        write(&prepared.join(format!("m@v1.0.0/pkg{i}/sub/f.go")), 0o600);
    }
    mkdir(&prepared.join("m@v1.0.0/empty"), 0o700);
    std::fs::rename(&prepared, t.path("moved-in")).unwrap();
    // And a directory renamed within the tree, then written inside.
    std::fs::rename(t.path("moved-in/m@v1.0.0/pkg0"), t.path("renamed")).unwrap();
    write(&t.path("renamed/after-rename.go"), 0o600);
    d.sync();
    d.assert_compliant();
}

#[test]
fn root_deletion_during_the_initial_scan() {
    let (_lock, t) = root_tree();
    for dir in 0..40 {
        for f in 0..100 {
            write(&t.path(&format!("d{dir}/sub/f{f}")), 0o600);
        }
    }
    let root = t.root.clone();
    let deleter = std::thread::spawn(move || {
        for dir in (0..40).step_by(2) {
            let _ = std::fs::remove_dir_all(root.join(format!("d{dir}")));
        }
    });
    let d = start(&t);
    deleter.join().unwrap();
    d.sync();
    d.assert_compliant();
    let s = d.status();
    assert_eq!(s["caches"][0]["errors"], 0, "a vanished entry is not an error: {s}\n{}", d.log());
}

#[test]
fn root_forced_overflow_falls_back_to_a_full_reconcile() {
    require_root();
    let _lock = sysctl_lock(true);
    // Read when the inotify instance is created: set before the service starts.
    let sysctl = Sysctl::set("fs.inotify.max_queued_events", "16");
    let t = Tree::new();
    let d = start(&t);
    drop(sysctl);
    // Stalled, so that the 16-event queue cannot be drained while the storm goes on.
    let pid = nix::unistd::Pid::from_raw(d.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    as_member(&t, "mkdir storm; i=0; while [ $i -lt 2000 ]; do : > storm/f$i; i=$((i+1)); done");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    d.sync();
    d.assert_compliant();
    let s = d.status();
    let cache = &s["caches"][0];
    assert!(cache["overflows"].as_u64().unwrap() >= 1, "{s}");
    // Repaired, but the queue is too small for the load: status says so, with the sysctl.
    assert_eq!(cache["state"], "degraded", "{s}");
    assert!(cache["reason"].as_str().unwrap().contains("fs.inotify.max_queued_events"), "{s}");
    assert_eq!(code(&d.ctl(&["status"])), 1);
    assert!(d.log().contains("fs.inotify.max_queued_events"), "the warning names the sysctl:\n{}", d.log());
}

fn inotify_watches() -> usize {
    let mut n = 0;
    for proc_entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fdinfo")) else { continue };
        for fd in fds.flatten() {
            if let Ok(text) = std::fs::read_to_string(fd.path()) {
                n += text.lines().filter(|l| l.starts_with("inotify wd")).count();
            }
        }
    }
    n
}

#[test]
fn root_watch_limit_degrades_to_periodic_reconciles() {
    require_root();
    let _lock = sysctl_lock(true);
    let t = Tree::new();
    let d = start(&t);
    let _sysctl = Sysctl::set("fs.inotify.max_user_watches", &(inotify_watches() + 5).to_string());
    as_member(&t, "i=0; while [ $i -lt 30 ]; do mkdir -p w$i/inner; : > w$i/inner/f; i=$((i+1)); done");
    d.sync();
    d.assert_compliant();
    let s = d.status();
    let cache = &s["caches"][0];
    assert_eq!(cache["state"], "degraded", "{s}");
    assert!(cache["reason"].as_str().unwrap().contains("fs.inotify.max_user_watches"), "{s}");
    let out = d.ctl(&["status"]);
    assert_eq!(code(&out), 1, "status exits 1 when degraded");
    // Files created in the unwatched part later are still repaired by sync's reconcile.
    as_member(&t, ": > w29/inner/later");
    d.sync();
    d.assert_compliant();
}

#[test]
fn root_stalled_daemon_then_a_burst() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    let pid = nix::unistd::Pid::from_raw(d.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    as_member(&t, "i=0; while [ $i -lt 3000 ]; do mkdir -p s$((i % 30))/x; : > s$((i % 30))/x/f$i; i=$((i+1)); done");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    d.sync();
    d.assert_compliant();
}

#[test]
fn root_own_repairs_do_not_loop() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    as_member(&t, "mkdir a; : > a/f");
    d.sync();
    let first = d.status()["caches"][0]["repairs"]["entries"].as_u64().unwrap();
    // The repairs' own IN_ATTRIB events are handled by now; nothing more is repaired.
    d.sync();
    d.sync();
    let s = d.status();
    assert_eq!(s["caches"][0]["repairs"]["entries"].as_u64().unwrap(), first, "{s}");
    assert_eq!(s["caches"][0]["queue_depth"], 0, "{s}");
}

#[test]
fn root_sigterm_stops_cleanly_and_removes_the_socket() {
    let (_lock, t) = root_tree();
    let mut d = start(&t);
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(!d.socket.exists(), "socket left behind");
    let out = d.ctl(&["status"]);
    assert_eq!(code(&out), 3);
}

#[test]
fn root_sighup_and_reload_reread_the_configuration() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    // A broken configuration is refused and the running one kept.
    let good = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, good.replace("owner = 1001", "owner = 1001\ncolour = 1")).unwrap();
    let out = d.ctl(&["reload"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("cache.colour"), "{}", stderr(&out));
    assert_eq!(code(&d.ctl(&["status"])), 0, "still running after a refused reload");
    // A new owner, applied by SIGHUP.
    std::fs::write(&d.config, good.replace("owner = 1001", "owner = 1005")).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid()), nix::sys::signal::Signal::SIGHUP).unwrap();
    write(&t.path("after-reload"), 0o600);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while meta(&t.root).uid != 1005 {
        assert!(std::time::Instant::now() < deadline, "SIGHUP did not reload:\n{}", d.log());
        d.sync();
    }
    d.sync();
    d.assert_compliant();
    assert_eq!(meta(&t.path("after-reload")).uid, 1005);
}

#[test]
fn root_status_json_matches_the_golden_shape() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    let s = d.status();
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/status.json")).expect("tests/golden/status.json");
    assert_eq!(shape(&s), golden, "status --json changed shape; update docs and schema_version:\n{s:#}");
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["caches"][0]["state"], "healthy");
    assert_eq!(s["caches"][0]["path"], t.root_str());
    assert_eq!(code(&d.ctl(&["status"])), 0);
    let human = stdout(&d.ctl(&["status"]));
    assert!(human.contains(&format!("{}: healthy", t.root_str())), "{human}");
    // What a newcomer asks first: which model, isolated or not, which config and socket.
    assert!(human.contains("  model      shared: owner "), "{human}");
    assert!(human.contains(&format!("  isolation  isolated: {} is a mount of its own", t.root_str())), "{human}");
    let config = std::path::absolute(&d.config).unwrap();
    assert!(human.contains(&format!("config {}, socket {}", config.display(), d.socket.display())), "{human}");
    assert!(d.log().contains(&format!("listening for cachekeeperctl on {}", d.socket.display())), "{}", d.log());

    // For a sysadmin: who runs it, since when, what it keeps to, what it did last.
    assert_eq!(s["daemon"]["user"], "root");
    assert!(s["daemon"]["started"].as_str().unwrap().ends_with('Z'), "{s}");
    assert_eq!(s["caches"][0]["owner_model"]["owner"], OWNER);
    assert_eq!(s["caches"][0]["owner_model"]["model"], "shared");
    assert!(s["caches"][0]["watches"].as_u64().unwrap() >= 3, "the root, cache and cache/download: {s}");
    assert!(s["caches"][0]["last_repair"]["path"].as_str().unwrap().starts_with(t.root_str()), "{s}");
    assert_eq!(s["daemon"]["config_changed"], false);
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, format!("{text}\n# edited\n")).unwrap();
    assert_eq!(d.status()["daemon"]["config_changed"], true, "the file on disk differs from the running one");

    // A reload does not make a kept cache "starting", nor the service unhealthy.
    for i in 0..3000 {
        write(&t.path(&format!("many/f{i}")), 0o644);
    }
    d.sync();
    assert_eq!(code(&d.ctl(&["reload"])), 0);
    let after = d.ctl(&["status", "--json"]);
    assert_eq!(code(&after), 0, "{}", stdout(&after));
    let s: serde_json::Value = serde_json::from_str(&stdout(&after)).unwrap();
    assert_eq!(s["caches"][0]["state"], "healthy", "{s}");
    assert_eq!(s["daemon"]["last_reload"]["ok"], true, "{s}");
    assert_eq!(s["daemon"]["config_changed"], false, "{s}");
}

/// Every leaf replaced by its JSON type, so that the golden file pins keys and types.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

#[test]
fn root_a_uid_outside_socket_group_is_refused() {
    let (_lock, t) = root_tree();
    let d = Daemon::start(&t.base, &shared_cache(&t.root), "socket_group = 3300");
    let socket_meta = meta(&d.socket);
    assert_eq!((socket_meta.gid, socket_meta.mode), (3300, 0o660));
    let ctl_as = |uid: u32, groups: &[u32]| {
        let mut cmd = setpriv(uid, groups);
        cmd.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket).arg("status");
        run(cmd, std::time::Duration::from_secs(30))
    };
    let member = ctl_as(1006, &[3300]);
    assert_eq!(code(&member), 0, "{}", stderr(&member));
    let outsider = ctl_as(1005, &[]);
    assert_eq!(code(&outsider), 4);
    assert!(stderr(&outsider).contains("permission denied"), "{}", stderr(&outsider));
    // Even with the socket opened up, the service checks the peer's credentials.
    chmod(&d.socket, 0o666);
    let outsider = ctl_as(1005, &[]);
    assert_eq!(code(&outsider), 4);
    assert!(stderr(&outsider).contains("uid 1005 may not use cachekeeper"), "{}", stderr(&outsider));
}

#[test]
fn root_a_second_service_on_the_same_socket_refuses_to_start() {
    let (_lock, t) = root_tree();
    let d = start(&t);
    let out = cachekeeper(&["--config", d.config.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    assert_eq!(code(&d.ctl(&["status"])), 0);
}

#[test]
fn root_audit_log_and_metrics() {
    let (_lock, t) = root_tree();
    let audit = t.base.join("audit.jsonl");
    let textfile = t.base.join("cachekeeper.prom");
    let extra = format!("audit_log = \"{}\"\nmetrics_textfile = \"{}\"", audit.display(), textfile.display());
    let d = Daemon::start(&t.base, &shared_cache(&t.root), &extra);
    as_member(&t, "mkdir audited; : > audited/f");
    d.sync();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let f = format!("{}/audited/f", t.root_str());
    let record =
        lines.iter().find(|r| r["path"] == f.as_str()).unwrap_or_else(|| panic!("no record for {f}: {lines:?}"));
    // The default ACL gave the member's file the group's access when it was created,
    // umask 077 notwithstanding: what is left for the repair is the owner.
    assert_eq!(record["before"], serde_json::json!({"uid": MEMBER, "gid": GROUP, "mode": "0664"}));
    assert_eq!(record["after"], serde_json::json!({"uid": OWNER, "gid": GROUP, "mode": "0664"}));
    assert_eq!(record["creator_uid"], MEMBER);
    // RFC 3339, like every time in JSON.
    let time = record["time"].as_str().unwrap();
    assert!(time.len() == 24 && time.starts_with("20") && time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");

    let out = d.ctl(&["metrics"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert_prometheus(&text);
    let cache = format!("cache=\"{}\"", t.root_str());
    assert!(text.contains(&format!("cachekeeper_repairs_total{{{cache},kind=\"entries\"}} ")), "{text}");
    assert!(text.contains(&format!("cachekeeper_full_scans_total{{{cache}}} 1\n")), "{text}");
    assert!(text.contains("cachekeeper_inotify_watches "), "{text}");
    // The textfile is written right after the first scan, then every 15 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !textfile.exists() {
        assert!(std::time::Instant::now() < deadline, "no metrics textfile");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_prometheus(&std::fs::read_to_string(&textfile).unwrap());
}

/// The text exposition format, checked with the reference parser (prometheus_client).
fn assert_prometheus(text: &str) {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
assert len(families) >= 10, len(families)
print(sum(len(f.samples) for f in families))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client: .ci/run installs it)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not Prometheus text: {}\n{text}", stderr(&out));
}

#[test]
fn root_without_inotify_instances_the_cache_is_reconciled_instead() {
    require_root();
    let _lock = sysctl_lock(true);
    let t = Tree::new();
    let sysctl = Sysctl::set("fs.inotify.max_user_instances", "0");
    let d = start(&t);
    drop(sysctl);
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "degraded", "{s}");
    assert!(s["caches"][0]["reason"].as_str().unwrap().contains("fs.inotify.max_user_instances"), "{s}");
    as_member(&t, "mkdir unwatched; : > unwatched/f");
    // No events: sync reconciles instead.
    d.sync();
    d.assert_compliant();
}

#[test]
fn root_a_root_that_cannot_be_walked_shows_as_degraded() {
    let (_lock, t) = root_tree();
    write(&t.base.join("a-file"), 0o644);
    let caches = format!("[[cache]]\npath = \"{}\"\n", t.base.join("a-file/mod").display());
    let d = Daemon::start_unsynced(&t.base, &caches, "", |cmd| cmd);
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "degraded", "{s}");
    assert!(s["caches"][0]["reason"].as_str().unwrap().contains("cannot"), "{s}");
    assert_eq!(code(&d.ctl(&["status"])), 1);
}

/// Regression: `rescan` said "reconciled" and exited 0, and `sync` exited 0, for a cache
/// the service could not read at all.
#[test]
fn root_rescan_and_sync_fail_on_a_cache_that_cannot_be_walked() {
    let (_lock, t) = root_tree();
    write(&t.base.join("a-file"), 0o644);
    let root = t.base.join("a-file/mod");
    let caches = format!("[[cache]]\npath = \"{}\"\n", root.display());
    let d = Daemon::start_unsynced(&t.base, &caches, "", |cmd| cmd);
    for args in [vec!["rescan"], vec!["rescan", root.to_str().unwrap()], vec!["sync", "--timeout", "30s"]] {
        let out = d.ctl(&args);
        assert_eq!(code(&out), 1, "{args:?}: {}{}", stdout(&out), stderr(&out));
        assert!(!stdout(&out).contains("reconciled"), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("not reconciled: the cache root cannot be walked"), "{args:?}: {}", stderr(&out));
    }
}

/// Under systemd (INVOCATION_ID), a cache the unit's sandbox makes read-only is
/// degraded with the drop-in that fixes it, not just "Read-only file system". The
/// sandbox is imitated with a read-only bind mount in a mount namespace of its own.
#[test]
fn root_a_cache_hidden_by_the_sandbox_names_the_drop_in() {
    let (_lock, t) = root_tree();
    let hidden = t.base.join("srv");
    mkdir(&hidden, 0o755);
    let root = hidden.join("go/mod");
    let caches = format!("[[cache]]\npath = \"{}\"\n", root.display());
    let d = Daemon::start_unsynced(&t.base, &caches, "", |cmd| {
        let mut sh = std::process::Command::new("unshare");
        sh.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$@\"")
            .arg(&hidden)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef");
        sh
    });
    let s = d.status();
    let reason = s["caches"][0]["reason"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s["caches"][0]["state"], "degraded", "{s}");
    assert!(reason.contains(&format!("ReadWritePaths=-{}", root.display())), "{reason}");
    assert!(reason.contains("systemctl restart cachekeeper"), "{reason}");
    let out = d.ctl(&["rescan"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains("ReadWritePaths="), "{}", stderr(&out));
}

#[cfg(target_os = "linux")]
#[test]
fn root_a_fuse_root_is_polled_and_synced_by_reconciling() {
    let (_lock, t) = root_tree();
    let backing = t.base.join("backing");
    mkdir(&backing, 0o755);
    // A FUSE mount point must be empty; the cache's shape moves to the backing tree.
    std::fs::remove_dir_all(t.root.join("cache")).unwrap();
    mkdir(&backing.join("cache/download"), 0o755);
    let _fuse = Fuse::bind(&backing, &t.root);
    let d = start(&t);
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "polling", "{s}");
    assert_eq!(s["caches"][0]["filesystem"], "fuse", "{s}");
    assert!(s["caches"][0]["reason"].as_str().unwrap().contains("polled"), "{s}");
    assert_eq!(code(&d.ctl(&["status"])), 0, "polling is healthy");
    // Written behind the mount's back, as another NFS client would: no event at all.
    write(&backing.join("from-elsewhere/f.go"), 0o600);
    d.sync();
    d.assert_compliant();
    assert_eq!(meta(&backing.join("from-elsewhere/f.go")).uid, OWNER);
}

#[test]
fn root_systemd_notifications_and_json_logs() {
    let (_lock, t) = root_tree();
    // What systemd listens on for a Type=notify service with WatchdogSec=.
    let notify_path = t.base.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut d = Daemon::start_with(&t.base, &shared_cache(&t.root), "log_format = \"json\"", |service| {
        // systemd names the main process in WATCHDOG_PID: exec keeps the shell's pid.
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
            .arg(service.get_program())
            .args(service.get_args())
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000");
        cmd
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("STATUS=1 cache(s): 1 healthy"))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = notify.recv(&mut buf).unwrap_or_else(|e| panic!("no notification ({e}); got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    as_member(&t, ": > logged");
    d.sync();
    assert_eq!(d.stop().code(), Some(0));
    let mut stopping = false;
    while let Ok(n) = notify.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1");
    // log_format = "json": one object a line; a repair names its path and what changed.
    let log = d.log();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let path = format!("{}/logged", t.root_str());
    let repair = lines.iter().find(|l| l["fields"]["path"] == path.as_str()).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(repair["level"], "INFO");
    assert!(repair["fields"]["message"].as_str().unwrap().contains("owner 1002→1001"), "{repair}");
}

/// An immutable file (`chattr +i`) stands for any entry the service cannot change;
/// the flag is cleared on drop so that the temp tree can be removed.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let out = std::process::Command::new("chattr").arg("+i").arg(path).output().expect("chattr (e2fsprogs)");
        assert!(out.status.success(), "chattr +i {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        Immutable(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// `cachekeeperctl` as `uid` with `groups`, on the service's socket.
fn ctl_as(d: &Daemon, uid: u32, groups: &[u32], args: &[&str]) -> std::process::Output {
    let mut cmd = setpriv(uid, groups);
    cmd.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket).args(args);
    run(cmd, std::time::Duration::from_secs(120))
}

/// An entry that cannot be repaired is that entry's problem: listed with its owner,
/// retried, told to its owner by `sync`/`rescan` (exit 5), but the cache stays healthy
/// and everyone else's `sync` succeeds.
#[test]
fn root_an_entry_that_cannot_be_repaired_is_listed_and_told_to_its_owner_only() {
    let (_lock, t) = root_tree();
    let stuck = t.path("stuck/f.go");
    write(&stuck, 0o600);
    let immutable = Immutable::set(&stuck);
    let d = Daemon::start_unsynced(&t.base, &shared_cache(&t.root), &format!("socket_group = {GROUP}"), |cmd| cmd);
    let s = d.status();
    let cache = &s["caches"][0];
    assert_eq!(cache["state"], "healthy", "{s}");
    assert_eq!(cache["unrepaired"], 1, "{s}");
    assert_eq!(cache["unrepaired_entries"][0]["path"], stuck.to_str().unwrap(), "{s}");
    assert_eq!(cache["unrepaired_entries"][0]["owner"], 0, "{s}");
    assert!(cache["unrepaired_entries"][0]["cause"].as_str().unwrap().contains("cannot repair"), "{s}");
    let text = d.ctl(&["status"]);
    assert_eq!(code(&text), 0);
    assert!(stdout(&text).contains(&format!("{} [uid 0]: cannot repair", stuck.display())), "{}", stdout(&text));
    // Root owns the stuck file: its rescan and sync did the work and say what is left.
    let rescan = d.ctl(&["rescan"]);
    assert_eq!(code(&rescan), 5, "rescan must not say all is well: {}", stdout(&rescan));
    assert!(stderr(&rescan).contains("could not be repaired, all of them yours"), "{}", stderr(&rescan));
    assert_eq!(code(&d.ctl(&["sync", "--timeout", "60s"])), 5);
    // A member who owns none of it is not held back.
    let member = ctl_as(&d, MEMBER, &[GROUP], &["sync", "--timeout", "60s"]);
    assert_eq!(code(&member), 0, "{}", stderr(&member));
    assert!(stderr(&member).contains("none of them yours"), "{}", stderr(&member));
    // Once the entry can be changed, the next reconcile repairs it and the cache is whole.
    drop(immutable);
    assert_eq!(code(&d.ctl(&["rescan"])), 0);
    d.sync();
    d.assert_compliant();
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "healthy", "{s}");
    assert_eq!(s["caches"][0]["unrepaired"], 0, "{s}");
}

/// Regression: `sync` and `rescan` were answered before the worker published what their
/// work found, so the answer could tell what was left before it: a rescan right after an
/// entry became repairable still reported it (exit 5) about one time in ten, and a sync
/// could miss an entry it had just failed to repair. Thirty rounds, a fresh entry each.
#[test]
fn root_sync_and_rescan_answer_with_what_their_own_work_found() {
    let (_lock, t) = root_tree();
    // Unisolated, so that a tree made outside can be moved in.
    let d = Daemon::start_with(&t.base, &shared_cache(&t.root), "", own_mount_namespace);
    for i in 0..30 {
        let outside = t.base.join(format!("made{i}"));
        write(&outside.join("f.go"), 0o600);
        let made = Immutable::set(&outside.join("f.go"));
        let inside = t.root.join(format!("d{i}"));
        std::fs::rename(&outside, &inside).unwrap();
        std::mem::forget(made);
        let immutable = Immutable(inside.join("f.go"));
        assert_eq!(code(&d.ctl(&["sync", "--timeout", "60s"])), 5, "round {i}: the sync must tell what it left");
        drop(immutable);
        let rescan = d.ctl(&["rescan"]);
        assert_eq!(code(&rescan), 0, "round {i}: the rescan repaired it: {}", stderr(&rescan));
    }
    d.assert_compliant();
}

/// Regression: a member removed the default ACL from a directory they own and filled its
/// extended-attribute space, so that the service's ACL write failed with ENOSPC on every
/// pass: the whole cache went `degraded` and every user's `sync` and `rescan` failed.
#[test]
fn root_a_members_full_xattr_space_degrades_nothing_and_blocks_no_one_elses_sync() {
    let (_lock, t) = root_tree();
    // No owner: each member keeps what they create, as on a build host's shared cache.
    let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {GROUP}\n", t.root.display());
    let d = Daemon::start(&t.base, &caches, &format!("socket_group = {GROUP}"));
    const ATTACKER: u32 = 1003;
    sh_as(ATTACKER, &[GROUP], &t.root, "mkdir mine");
    d.sync();
    // Fill the directory's xattr space (one block on ext4) with the member's own
    // attributes, then take its default ACL away and fill the room it leaves before the
    // service can put it back (tried until that race is won).
    let fill = r#"i=0; while setfattr -n user.pad$i -v "$(head -c 900 /dev/zero | tr '\0' a)" mine 2>/dev/null; do i=$((i+1)); done
        for n in $(seq 1 200); do
            setfacl -k mine
            j=0; while setfattr -n user.q$n.$j -v a mine 2>/dev/null; do j=$((j+1)); done
            if [ -z "$(getfacl -d -c mine 2>/dev/null)" ]; then echo staged; exit 0; fi
        done
        echo not staged"#;
    let out = sh_as(ATTACKER, &[GROUP], &t.root, fill);
    assert!(
        stdout(&out).contains("staged") && !stdout(&out).contains("not staged"),
        "the directory's xattr space could not be filled on this filesystem: the attack cannot be staged here"
    );
    let rescan = ctl_as(&d, MEMBER, &[GROUP], &["rescan"]);
    assert_eq!(code(&rescan), 0, "another member's rescan failed: {}", stderr(&rescan));
    let sync = ctl_as(&d, MEMBER, &[GROUP], &["sync", "--timeout", "60s"]);
    assert_eq!(code(&sync), 0, "another member's sync failed: {}", stderr(&sync));
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "healthy", "{s}");
    assert_eq!(s["caches"][0]["unrepaired_entries"][0]["path"], t.path("mine").to_str().unwrap(), "{s}");
    assert_eq!(s["caches"][0]["unrepaired_entries"][0]["owner"], ATTACKER, "{s}");
    // The attacker is told: their own entry is left.
    let theirs = ctl_as(&d, ATTACKER, &[GROUP], &["sync", "--timeout", "60s"]);
    assert_eq!(code(&theirs), 5, "{}", stderr(&theirs));
    // The rest of the cache is still kept: a new file of the member's is repaired.
    as_member(&t, ": > later.go");
    let sync = ctl_as(&d, MEMBER, &[GROUP], &["sync", "--timeout", "60s"]);
    assert_eq!(code(&sync), 0, "{}", stderr(&sync));
    assert_eq!(meta(&t.path("later.go")).mode & 0o070, 0o060, "the cache is no longer kept");
}

#[test]
fn root_full_scans_log_a_summary_not_a_line_per_entry() {
    let (_lock, t) = root_tree();
    for i in 0..200 {
        write(&t.path(&format!("pre/f{i}")), 0o600);
    }
    for i in 0..30 {
        std::os::unix::fs::symlink("f0", t.path(&format!("pre/l{i}"))).unwrap();
    }
    let d = start(&t);
    for _ in 0..3 {
        assert_eq!(code(&d.ctl(&["rescan"])), 0);
    }
    as_member(&t, ": > live.go");
    d.sync();
    let log = d.log();
    let lines_about = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines_about("pre/f"), 0, "a line per repaired entry of a full scan:\n{log}");
    assert_eq!(lines_about("pre/l"), 0, "a line per symlink and rescan:\n{log}");
    assert!(log.lines().any(|l| l.contains("full scan:") && l.contains("30 symlink(s)")), "no summary:\n{log}");
    assert_eq!(lines_about("live.go"), 1, "a live repair has its line:\n{log}");
}

#[test]
fn root_a_log_write_error_stops_nothing() {
    let (_lock, t) = root_tree();
    // stderr is a pipe whose reader is gone: every log line fails with EPIPE.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let d = Daemon::start_with_stderr(&t.base, &shared_cache(&t.root), "", std::process::Stdio::from(writer));
    as_member(&t, "mkdir -p a/b && : > a/b/f.go");
    d.sync();
    d.assert_compliant();
    assert_eq!(d.status()["caches"][0]["state"], "healthy");
}

#[test]
fn root_go_clean_modcache_deletes_the_root_and_go_makes_it_again() {
    let (_lock, t) = root_tree();
    // Unisolated: an isolated root is a mount point, which cannot be removed.
    let d = Daemon::start_with(&t.base, &shared_cache(&t.root), "", own_mount_namespace);
    as_member(&t, "mkdir -p cache/download/m/@v && : > cache/download/m/@v/list");
    d.sync();
    // `sudo go clean -modcache` removes the root; the next `sudo go` command makes it
    // again, root-owned 0755.
    std::fs::remove_dir_all(&t.root).unwrap();
    mkdir(&t.root, 0o755);
    d.sync();
    let m = meta(&t.root);
    assert_eq!((m.uid, m.gid), (OWNER, GROUP), "the new root was not reconciled:\n{}", d.log());
    // A member's next download works, and the new root is watched: what it writes is repaired.
    as_member(&t, "mkdir -p cache/download/n/@v && : > cache/download/n/@v/list");
    d.sync();
    d.assert_compliant();
}

/// Regression: with the root's parent writable by members, a member renamed the root
/// away and another team's root-owned, Go-shaped cache into its name; the service
/// accepted it and gave its secrets to the group. A directory that takes the root's place
/// must be one Go or cachekeeper would make there: the moved-in tree is refused, changed
/// in nothing, and shown as such, until an administrator's rescan accepts it.
#[test]
fn root_a_sibling_cache_swapped_into_the_roots_name_is_refused() {
    let (_lock, t) = root_tree();
    mkdir(&t.base.join("parent"), 0o2775);
    chown(&t.base.join("parent"), 0, GROUP);
    let root = t.base.join("parent/mod");
    mkdir(&root.join("cache/download"), 0o2775);
    let teamb = t.base.join("parent/teamb");
    mkdir(&teamb.join("cache/download/secret"), 0o750);
    write(&teamb.join("cache/download/secret/key"), 0o640);
    let watched = [teamb.join("cache/download/secret"), teamb.join("cache/download/secret/key")];
    let before: Vec<Meta> = watched.iter().map(|p| meta(p)).collect();
    let caches = format!("[[cache]]\npath = \"{}\"\nowner = {OWNER}\ngroup = {GROUP}\n", root.display());
    // Unisolated, as under systemd without the mount unit: the root can be renamed.
    let d = Daemon::start_with(&t.base, &caches, &format!("socket_group = {GROUP}"), own_mount_namespace);
    sh_as(MEMBER, &[GROUP], &t.base.join("parent"), "mv mod mod.old && mv teamb mod");
    let member = {
        let mut cmd = setpriv(MEMBER, &[GROUP]);
        cmd.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket).args(["rescan"]);
        run(cmd, std::time::Duration::from_secs(60))
    };
    assert_eq!(code(&member), 1, "a member's rescan must not accept the swapped root: {}", stderr(&member));
    let _ = d.ctl(&["sync", "--timeout", "30s"]);
    let moved: Vec<PathBuf> = watched.iter().map(|p| root.join(p.strip_prefix(&teamb).unwrap())).collect();
    let after: Vec<Meta> = moved.iter().map(|p| meta(p)).collect();
    assert_eq!(after, before, "the moved-in tree was changed:\n{}", d.log());
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "degraded", "{s}");
    assert!(s["caches"][0]["reason"].as_str().unwrap_or_default().contains("root replaced — refusing"), "{s}");
    // An administrator vouches for it: then it is the cache.
    let rescan = d.ctl(&["rescan"]);
    assert_eq!(code(&rescan), 0, "{}", stderr(&rescan));
    assert_eq!(meta(&moved[1]).uid, OWNER);
}

/// After `go clean -modcache` a member's next `go` command makes the root again and
/// fills it at once: a new root made after the old one vanished, by a member, is the
/// cache's, even when the service first sees it full.
#[test]
fn root_a_root_made_again_and_filled_by_a_member_is_accepted() {
    let (_lock, t) = root_tree();
    // Members may make the root again, as `writable = true` allows.
    chmod(&t.base, 0o2775);
    chown(&t.base, 0, GROUP);
    let d = Daemon::start_with(&t.base, &shared_cache(&t.root), "", own_mount_namespace);
    std::fs::remove_dir_all(&t.root).unwrap();
    sh_as(MEMBER, &[GROUP], &t.base, "umask 077; mkdir -p mod/cache/download/m/@v && : > mod/cache/download/m/@v/list");
    d.sync();
    d.assert_compliant();
    assert_eq!(d.status()["caches"][0]["state"], "healthy");
}

/// Threads of the cache workers and inotify instances held by process `pid`.
fn runtimes_of(pid: i32) -> (usize, usize) {
    let task = std::path::PathBuf::from(format!("/proc/{pid}/task"));
    let workers = std::fs::read_dir(&task)
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("ck-")))
        .count();
    let inotify = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify")))
        .count();
    (workers, inotify)
}

#[test]
fn root_80_concurrent_reloads_by_a_member_leave_no_runtime_behind() {
    let (_lock, t) = root_tree();
    let d = Daemon::start(&t.base, &shared_cache(&t.root), &format!("socket_group = {GROUP}"));
    let before = runtimes_of(d.pid());
    let reloads: Vec<_> = (0..80)
        .map(|_| {
            let mut cmd = setpriv(MEMBER, &[GROUP]);
            cmd.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket).arg("reload");
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut r in reloads {
        r.wait().unwrap();
    }
    d.sync();
    assert_eq!(runtimes_of(d.pid()), before, "(worker threads, inotify instances) before and after:\n{}", d.log());
    as_member(&t, ": > after-reloads.go");
    d.sync();
    d.assert_compliant();
}

/// Holds `n` connections to the control socket as a member until dropped; a connect
/// that does not complete within 5 s ends the attempt (the listener no longer accepts).
struct IdleConnections(std::process::Child);

impl IdleConnections {
    fn open(socket: &Path, n: usize) -> IdleConnections {
        use std::io::BufRead;
        let script = r#"
            use IO::Socket::UNIX;
            my ($path, $n) = @ARGV; my @held; $| = 1;
            for (1..$n) {
                my $s = eval { local $SIG{ALRM} = sub { die "timeout\n" }; alarm 5;
                    my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path); alarm 0; $c };
                last unless $s;
                push @held, $s;
            }
            print scalar(@held), "\n";
            <STDIN>;
        "#;
        let mut cmd = setpriv(MEMBER, &[GROUP]);
        cmd.args(["perl", "-e", script]).arg(socket).arg(n.to_string());
        let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.trim().parse::<usize>().is_ok(), "perl: {line}");
        IdleConnections(child)
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

#[test]
fn root_idle_connections_of_a_member_do_not_starve_checks() {
    let (_lock, t) = root_tree();
    // The default soft limit of a service started by init.
    let d = Daemon::start_with(&t.base, &shared_cache(&t.root), &format!("socket_group = {GROUP}"), |cmd| {
        let mut limited = std::process::Command::new("prlimit");
        limited.arg("--nofile=1024:8192").arg("--").arg(cmd.get_program()).args(cmd.get_args());
        limited
    });
    let held = IdleConnections::open(&d.socket, 1100);
    as_member(&t, "mkdir held && : > held/f.go");
    // Checked while the connections are held.
    let out = d.ctl(&["sync", "--timeout", "60s"]);
    drop(held);
    assert_eq!(code(&out), 0, "sync while a member holds idle connections: {}\n{}", stderr(&out), d.log());
    d.sync();
    d.assert_compliant();
}

#[test]
fn root_a_flood_of_events_past_max_pending_becomes_one_reconcile() {
    let (_lock, t) = root_tree();
    let d = Daemon::start(&t.base, &shared_cache(&t.root), "max_pending = 8");
    // Stalled, so that the events of 500 new files all wait for the worker at once.
    let pid = nix::unistd::Pid::from_raw(d.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    as_member(&t, "i=0; while [ $i -lt 500 ]; do : > f$i.go; i=$((i+1)); done");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    d.sync();
    d.assert_compliant();
    let s = d.status();
    assert!(s["caches"][0]["queue_collapses"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["caches"][0]["queue_depth"], 0, "{s}");
}

#[test]
fn root_max_watches_caps_the_watches_of_a_cache() {
    let (_lock, t) = root_tree();
    let d = Daemon::start(&t.base, &shared_cache(&t.root), "max_watches = 10");
    as_member(&t, "i=0; while [ $i -lt 30 ]; do mkdir -p w$i/inner; : > w$i/inner/f; i=$((i+1)); done");
    d.sync();
    d.assert_compliant();
    let s = d.status();
    let cache = &s["caches"][0];
    assert_eq!(cache["state"], "degraded", "{s}");
    assert!(cache["reason"].as_str().unwrap().contains("daemon.max_watches"), "{s}");
    // The cache's own watches, the sync markers' directory and the root's parent.
    assert!(s["daemon"]["inotify_watches"].as_u64().unwrap() <= 12, "{s}");
    // What appears in the unwatched part is repaired by sync's reconcile.
    as_member(&t, ": > w29/inner/later");
    d.sync();
    d.assert_compliant();
}

#[test]
fn root_directories_deeper_than_path_max_are_watched() {
    let (_lock, t) = root_tree();
    // Unisolated, so that a tree made outside can be moved in.
    let d = Daemon::start_with(&t.base, &shared_cache(&t.root), "", own_mount_namespace);
    // 25 levels of 200-byte names: the deepest paths are longer than PATH_MAX (4096).
    // Made outside the cache, each level relative to the one before, then moved in.
    let mut dir = std::fs::File::open(&t.base).unwrap();
    for name in std::iter::once("deep".to_owned()).chain(std::iter::repeat_n("d".repeat(200), 25)) {
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o700);
        nix::sys::stat::mkdirat(&dir, name.as_str(), mode).unwrap();
        let flags = nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_NOFOLLOW;
        dir = nix::fcntl::openat(&dir, name.as_str(), flags, mode).unwrap().into();
    }
    let create = nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY;
    drop(nix::fcntl::openat(&dir, "f.go", create, mode_600()).unwrap());
    std::fs::rename(t.base.join("deep"), t.path("deep")).unwrap();
    d.sync();
    d.assert_compliant();
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "healthy", "{s}");
    let scans = s["caches"][0]["full_scans"].clone();
    // A file made at the bottom now is repaired through the deepest directory's watch:
    // a healthy cache's sync does not reconcile.
    drop(nix::fcntl::openat(&dir, "later.go", create, mode_600()).unwrap());
    d.sync();
    d.assert_compliant();
    let s = d.status();
    assert_eq!(s["caches"][0]["state"], "healthy", "{s}");
    assert_eq!(s["caches"][0]["full_scans"], scans, "{s}");
}

fn mode_600() -> nix::sys::stat::Mode {
    nix::sys::stat::Mode::from_bits_truncate(0o600)
}

/// The one line of `out`'s stderr that has every one of `words`.
fn one_line_with(out: &std::process::Output, words: &[&str]) {
    let err = stderr(out);
    assert!(err.lines().any(|l| words.iter().all(|w| l.contains(w))), "no line with all of {words:?} in:\n{err}");
}

/// Regression: a FIFO at `daemon.audit_log` hung the start forever (the open waited for a
/// reader), with SIGTERM blocked for the start-up.
#[test]
fn root_a_fifo_at_the_audit_log_path_fails_the_start_at_once() {
    use std::os::unix::fs::FileTypeExt;
    let (_lock, t) = root_tree();
    let audit = t.base.join("audit.jsonl");
    nix::unistd::mkfifo(&audit, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    Daemon::write_config(&t.base, &shared_cache(&t.root), &format!("audit_log = \"{}\"", audit.display()));
    let out = refused_start(&t.base);
    one_line_with(&out, &["daemon.audit_log", audit.to_str().unwrap(), "is a FIFO, not a plain file"]);
    assert!(std::fs::symlink_metadata(&audit).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    assert!(!t.base.join("run/ck.sock").exists(), "the socket outlived the failed start");
}

/// A `root:GROUP 2775` directory: every member of the group could swap the audit log's
/// name between the service's look and its open, or the metrics textfile's, which is
/// rewritten by rename every 15 s.
#[test]
fn root_a_group_writable_directory_for_the_audit_log_or_the_metrics_is_refused() {
    require_root();
    let _lock = sysctl_lock(false);
    for key in ["audit_log", "metrics_textfile"] {
        let t = Tree::new();
        let dir = t.base.join("side");
        mkdir(&dir, 0o755);
        chown(&dir, 0, GROUP);
        chmod(&dir, 0o2775);
        let file = dir.join("side-file");
        Daemon::write_config(&t.base, &shared_cache(&t.root), &format!("{key} = \"{}\"", file.display()));
        let out = refused_start(&t.base);
        one_line_with(
            &out,
            &[&format!("daemon.{key}"), file.to_str().unwrap(), "writable by its group or by everyone (2775)"],
        );
        assert!(!file.exists(), "{key} was created in a directory the group can write");
    }
}

/// Regression: whatever had the socket's name was deleted at start, a regular file too.
#[test]
fn root_a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let (_lock, t) = root_tree();
    let socket = Daemon::write_config(&t.base, &shared_cache(&t.root), "");
    std::fs::write(&socket, b"not a socket\n").unwrap();
    let out = refused_start(&t.base);
    one_line_with(
        &out,
        &[
            &format!("refusing to start: {} is a regular file, not a socket", socket.display()),
            "never deletes it: move it away",
        ],
    );
    assert_eq!(std::fs::read(&socket).unwrap(), b"not a socket\n");
}

/// A socket left by a service that died without removing it is the one thing at the
/// socket's path that is removed: no one answers there.
#[test]
fn root_a_stale_socket_is_replaced() {
    let (_lock, t) = root_tree();
    let socket = Daemon::write_config(&t.base, &shared_cache(&t.root), "");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let d = Daemon::start(&t.base, &shared_cache(&t.root), "");
    assert_eq!(code(&d.ctl(&["status"])), 0);
}

/// SIGTERM during the first full scan of a large cache stops the service at once: the
/// walk ends early rather than being waited for (SPEC §4: in-flight repairs finish, not
/// the whole reconcile).
#[test]
fn root_sigterm_during_the_first_full_scan_ends_the_walk() {
    let (_lock, t) = root_tree();
    let backing = t.base.join("backing");
    let total = 60_000;
    for d in 0..200 {
        for f in 0..total / 200 {
            write(&backing.join(format!("cache/download/d{d}/f{f}")), 0o600);
        }
    }
    std::fs::remove_dir_all(t.root.join("cache")).unwrap();
    // Seen through FUSE, the walk takes seconds.
    let _fuse = Fuse::bind(&backing, &t.root);
    let socket = Daemon::write_config(&t.base, &shared_cache(&t.root), "");
    let mut child = std::process::Command::new(bin("cachekeeper"))
        .arg("--config")
        .arg(t.base.join("ck.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the service ended before it was ready");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let seen: u64 = log
        .lines()
        .find_map(|l| l.split("full scan: ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no full scan line: {log}"));
    assert!(
        seen < total,
        "the first scan went on to the end ({seen} entries) after SIGTERM (or, if it took well under a second, \
         finished before the signal came: then make the tree larger)\n{log}"
    );
}

/// An entry that could not be repaired is tried again by itself, with back-off (1 s, 2 s,
/// ... up to 5 min), not only at the next full reconcile hours later: once it can be
/// changed, it is repaired without anyone asking.
#[test]
fn root_an_unrepaired_entry_is_retried_by_itself() {
    let (_lock, t) = root_tree();
    let stuck = t.path("stuck/f.go");
    write(&stuck, 0o600);
    let immutable = Immutable::set(&stuck);
    let d = Daemon::start_unsynced(&t.base, &shared_cache(&t.root), "", |cmd| cmd);
    assert_eq!(d.status()["caches"][0]["unrepaired"], 1);
    drop(immutable);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.status()["caches"][0]["unrepaired"] != 0 {
        assert!(std::time::Instant::now() < deadline, "not retried within 30 s:\n{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(meta(&stuck).uid, OWNER);
}

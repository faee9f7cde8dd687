//! Least privilege (SPEC §5): the service keeps exactly CAP_CHOWN, CAP_DAC_READ_SEARCH,
//! CAP_FOWNER and CAP_FSETID, and still repairs. Read from /proc/<pid>/status of the
//! real binary. Needs root (CI is root).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// CAP_CHOWN (0), CAP_DAC_READ_SEARCH (2), CAP_FOWNER (3), CAP_FSETID (4).
const FOUR: u64 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 4;
const FOUR_NAMES: &str = "chown,dac_read_search,fowner,fsetid";
const SERVICE_USER: u32 = 1010;

fn caches(root: &Path) -> String {
    format!("[[cache]]\npath = \"{}\"\nowner = 1001\ngroup = 3200\n", root.display())
}

fn status_field(pid: i32, task: Option<&str>, field: &str) -> String {
    let path = match task {
        Some(t) => format!("/proc/{pid}/task/{t}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in status"))
        .trim()
        .to_owned()
}

fn cap_mask(pid: i32, task: Option<&str>, field: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, task, field), 16).unwrap()
}

/// Every thread: exactly the four, nothing inheritable or ambient, no_new_privs; and
/// the uid expected.
fn assert_reduced(pid: i32, uid: u32, bounding: u64) {
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(tasks.len() > 1, "the service runs several threads");
    for t in &tasks {
        let t = Some(t.as_str());
        assert_eq!(cap_mask(pid, t, "CapEff"), FOUR, "CapEff of thread {t:?}");
        assert_eq!(cap_mask(pid, t, "CapPrm"), FOUR, "CapPrm of thread {t:?}");
        assert_eq!(cap_mask(pid, t, "CapBnd"), bounding, "CapBnd of thread {t:?}");
        assert_eq!(cap_mask(pid, t, "CapInh"), 0, "CapInh of thread {t:?}");
        assert_eq!(cap_mask(pid, t, "CapAmb"), 0, "CapAmb of thread {t:?}");
        assert_eq!(status_field(pid, t, "NoNewPrivs"), "1");
    }
    let uids = status_field(pid, None, "Uid");
    assert_eq!(uids.split_whitespace().collect::<Vec<_>>(), vec![uid.to_string(); 4], "Uid: {uids}");
}

/// A root-owned file made with umask 077 needs chown and chmod: both must still work.
fn assert_still_repairs(t: &Tree, d: &Daemon) {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::fs::create_dir(t.path("new-dir")).unwrap();
    std::fs::write(t.path("new-dir/f.go"), b"package x\n").unwrap();
    nix::sys::stat::umask(old);
    d.sync();
    let m = meta(&t.path("new-dir/f.go"));
    assert_eq!((m.uid, m.gid, m.mode), (1001, 3200, 0o664), "{}", d.log());
    let m = meta(&t.path("new-dir"));
    assert_eq!((m.uid, m.gid, m.mode), (1001, 3200, 0o2775), "{}", d.log());
    d.assert_compliant();
    let caps = d.status()["daemon"]["capabilities"].clone();
    assert_eq!(caps, serde_json::json!(["cap_chown", "cap_dac_read_search", "cap_fowner", "cap_fsetid"]));
}

#[test]
fn root_with_daemon_user_switches_user_and_keeps_exactly_four_capabilities() {
    let (_lock, t) = root_tree();
    mkdir(&t.base.join("run"), 0o755);
    chown(&t.base.join("run"), SERVICE_USER, SERVICE_USER);
    let mut d = Daemon::start(&t.base, &caches(&t.root), &format!("user = {SERVICE_USER}"));
    assert_reduced(d.pid(), SERVICE_USER, FOUR);
    assert_still_repairs(&t, &d);
    assert_eq!(d.stop().code(), Some(0), "{}", d.log());
    assert!(!d.socket.exists(), "the service's user removes its socket on exit");
}

fn like_systemd(ambient: &str) -> impl FnOnce(Command) -> Command + '_ {
    move |service: Command| {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={SERVICE_USER}"))
            .arg(format!("--regid={SERVICE_USER}"))
            .arg("--clear-groups")
            .arg(format!("--inh-caps=-all,{ambient}"))
            .arg(format!("--ambient-caps=-all,{ambient}"))
            .arg(format!("--bounding-set=-all,{ambient}"))
            .arg("--")
            .arg(service.get_program())
            .args(service.get_args());
        cmd
    }
}

fn plus(names: &str) -> String {
    names.split(',').map(|n| format!("+{n}")).collect::<Vec<_>>().join(",")
}

#[test]
fn root_started_like_systemd_with_ambient_capabilities() {
    let (_lock, t) = root_tree();
    mkdir(&t.base.join("run"), 0o755);
    chown(&t.base.join("run"), SERVICE_USER, SERVICE_USER);
    let ambient = plus(FOUR_NAMES);
    let d = Daemon::start_with(&t.base, &caches(&t.root), "", like_systemd(&ambient));
    assert_reduced(d.pid(), SERVICE_USER, FOUR);
    assert_still_repairs(&t, &d);
}

#[test]
fn root_started_like_systemd_without_one_capability_refuses_to_start() {
    require_root();
    let t = Tree::new();
    mkdir(&t.base.join("run"), 0o755);
    chown(&t.base.join("run"), SERVICE_USER, SERVICE_USER);
    Daemon::write_config(&t.base, &caches(&t.root), "");
    let ambient = plus("chown,dac_read_search,fowner");
    let mut service = Command::new(bin("cachekeeper"));
    service.arg("--config").arg(t.base.join("ck.toml"));
    let out = run(like_systemd(&ambient)(service), std::time::Duration::from_secs(60));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("CAP_FSETID") && err.contains("AmbientCapabilities="), "{err}");
    assert!(!t.base.join("run/ck.sock").exists(), "no socket left behind");
}

#[test]
fn root_without_daemon_user_stays_uid_0_with_four_capabilities() {
    let (_lock, t) = root_tree();
    let d = Daemon::start(&t.base, &caches(&t.root), "");
    assert_reduced(d.pid(), 0, FOUR);
    assert_still_repairs(&t, &d);
}

#[test]
fn root_a_socket_directory_the_service_creates_belongs_to_daemon_user() {
    let (_lock, t) = root_tree();
    // A socket directory that does not exist yet: the service creates it.
    let socket_dir = t.base.join("fresh-run");
    let socket = socket_dir.join("ck.sock");
    let text = format!("{}[daemon]\nuser = {SERVICE_USER}\nsocket = \"{}\"\n", caches(&t.root), socket.display());
    std::fs::write(t.base.join("ck.toml"), text).unwrap();
    let mut service = Command::new(bin("cachekeeper"));
    service.arg("--config").arg(t.base.join("ck.toml")).stderr(std::process::Stdio::null());
    let mut child = service.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "no socket");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(meta(&socket_dir).uid, SERVICE_USER);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!socket.exists(), "the service's user removed its socket");
}

/// Regression: the service started although its user could not write the metrics
/// directory, then warned every 15 s while `status` and `doctor` said healthy. Now start
/// fails at once with one line naming the key and the path.
#[test]
fn root_a_metrics_directory_the_service_user_cannot_write_fails_the_start() {
    let (_lock, t) = root_tree();
    mkdir(&t.base.join("run"), 0o755);
    chown(&t.base.join("run"), SERVICE_USER, SERVICE_USER);
    // Private (root's, 0755), so it passes the side-file rule, but not the user's.
    let metrics = t.base.join("metrics");
    mkdir(&metrics, 0o755);
    let prom = metrics.join("ck.prom");
    Daemon::write_config(
        &t.base,
        &caches(&t.root),
        &format!("user = {SERVICE_USER}\nmetrics_textfile = \"{}\"", prom.display()),
    );
    let out = refused_start(&t.base);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("daemon.metrics_textfile")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&prom.display().to_string()) && line.contains("ermission denied"), "{err}");
    assert!(!t.base.join("run/ck.sock").exists(), "the socket is left behind");
}

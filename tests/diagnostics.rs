//! `cachekeeperctl explain` and `doctor` on constructed trees, as root and as other
//! uids (setpriv). Needs root (CI is root).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// `cachekeeperctl ARGS`, with no configuration unless ARGS name one.
fn ctl(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.args(args).env("CACHEKEEPER_CONFIG", "/nonexistent/config.toml");
    run(cmd, Duration::from_secs(60))
}

fn ctl_as(uid: u32, groups: &[u32], args: &[&str]) -> Output {
    let mut cmd = setpriv(uid, groups);
    cmd.arg(bin("cachekeeperctl")).args(args).env("CACHEKEEPER_CONFIG", "/nonexistent/config.toml");
    run(cmd, Duration::from_secs(60))
}

/// The explanation's line for `path` and the indented lines under it.
fn section(text: &str, path: &Path) -> String {
    let head = format!("  {}  ", path.display());
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&head));
    let mut out = lines.next().unwrap_or_else(|| panic!("no line for {}:\n{text}", path.display())).to_owned();
    for l in lines.take_while(|l| l.starts_with("    ")) {
        out += "\n";
        out += l;
    }
    out
}

fn config(t: &Tree, extra: &str) -> String {
    let file = t.base.join("ck.toml");
    std::fs::write(&file, format!("[[cache]]\npath = \"{}\"\n{extra}\n", t.root_str())).unwrap();
    file.to_str().unwrap().to_owned()
}

#[test]
fn root_explain_names_the_directory_whose_other_bits_deny_create() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("cache/download"), 0o755);
    let target = t.path("cache/download/example.com");
    let cfg = config(&t, "owner = 1001");
    for out in [
        ctl(&["explain", "--user", "1001", "--config", &cfg, target.to_str().unwrap()]),
        ctl_as(1001, &[], &["explain", "--config", &cfg, target.to_str().unwrap()]),
    ] {
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let text = stdout(&out);
        let s = section(&text, &t.path("cache/download"));
        assert!(s.contains("create entries DENIED: you are other here, and other has r-x"), "{s}");
        assert!(s.contains("fix: the owner model of") && s.contains("fixes it"), "{s}");
        assert!(text.contains(&format!("{}  does not exist (to be created)", target.display())), "{text}");
        // Regression: the verdict came last, after some 30 lines; it comes first now,
        // with the denial and its fix.
        let mut head = text.lines();
        let first = head.next().unwrap_or_default();
        assert!(first.contains("DENIED: create entries at ") && first.contains("other has r-x"), "{text}");
        assert!(head.next().unwrap_or_default().starts_with("  fix: the owner model of"), "{text}");
    }
    // Root may.
    let out = ctl(&["explain", "--config", &cfg, target.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn root_explain_names_a_missing_group_membership() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("shared"), 0o775);
    chown(&t.path("shared"), 0, 3300);
    let file = t.path("shared/f");
    let out = ctl_as(1001, &[], &["explain", file.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let s = section(&stdout(&out), &t.path("shared"));
    assert!(s.contains("members of group gid 3300 may: you are not in that group"), "{s}");
    assert!(s.contains("fix: no configured cache contains it"), "{s}");
    let out = ctl_as(1001, &[3300], &["explain", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "a member may: {}", stdout(&out));
    assert!(stdout(&out).contains("you are a member of its group here"), "{}", stdout(&out));
}

#[cfg(target_os = "linux")]
#[test]
fn root_explain_names_a_read_only_filesystem() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("ro"), 0o777);
    let target = t.path("ro");
    nix::mount::mount(Some(&target), &target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    let _unmount = scopeguard(&target);
    nix::mount::mount(
        None::<&str>,
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let out = ctl(&["explain", target.join("new").to_str().unwrap()]);
    assert_eq!(code(&out), 1, "even root cannot write there: {}", stdout(&out));
    let s = section(&stdout(&out), &target);
    assert!(s.contains("create entries DENIED: the filesystem is mounted read-only"), "{s}");
}

#[cfg(target_os = "linux")]
fn scopeguard(p: &Path) -> MountGuard {
    MountGuard(p.to_owned())
}

#[cfg(target_os = "linux")]
/// `system.posix_acl_access` in its xattr form: version 2, then (tag, perm, id).
fn set_acl(path: &Path, entries: &[(u16, u16, u32)]) {
    let mut value = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        value.extend(tag.to_le_bytes());
        value.extend(perm.to_le_bytes());
        value.extend(id.to_le_bytes());
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(c.as_ptr(), c"system.posix_acl_access".as_ptr(), value.as_ptr().cast(), value.len(), 0)
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}

#[cfg(target_os = "linux")]
#[test]
fn root_explain_follows_an_acl() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("acl"), 0o755);
    const UNDEFINED: u32 = u32::MAX;
    // user::rwx, user:1001:rwx, group::r-x, mask::rwx, other::r-x
    set_acl(
        &t.path("acl"),
        &[(0x01, 7, UNDEFINED), (0x02, 7, 1001), (0x04, 5, UNDEFINED), (0x10, 7, UNDEFINED), (0x20, 5, UNDEFINED)],
    );
    let target = t.path("acl/new");
    let out = ctl_as(1001, &[], &["explain", target.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "uid 1001's ACL entry allows it: {}", stdout(&out));
    assert!(stdout(&out).contains("an ACL applies (see getfacl): your own entry has rwx"), "{}", stdout(&out));
    let out = ctl_as(1002, &[], &["explain", target.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("you match no entry, and other has r-x"), "{}", stdout(&out));
}

fn doctor(t: &Tree, d: Option<&Daemon>, cfg: &str) -> Output {
    let socket = d.map_or_else(|| t.base.join("none.sock"), |d| d.socket.clone());
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.arg("--socket").arg(socket).args(["doctor", "--config", cfg]).env("GOMODCACHE", t.root_str());
    run(cmd, Duration::from_secs(60))
}

/// Regression: a member who ran doctor from a directory they may not look at was told
/// "go is not installed here" (and, for git clones, judged as under a go before 1.21):
/// go refuses to start there ("cannot determine current directory").
#[test]
fn root_doctor_finds_go_from_a_directory_the_caller_cannot_look_at() {
    let (_lock, t) = root_tree();
    let has_go = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("go").is_file());
    assert!(has_go, "this test needs go on PATH (.ci/run installs golang-go)");
    let cfg = t.base.join("ck.toml");
    std::fs::write(&cfg, format!("[[cache]]\npath = \"{}\"\n", t.root_str())).unwrap();
    let hidden = t.base.join("hidden");
    mkdir(&hidden, 0o700);
    let mut cmd = setpriv(1001, &[]);
    cmd.arg(bin("cachekeeperctl")).args(["--socket", "/nonexistent", "doctor", "--config"]).arg(&cfg);
    cmd.current_dir(&hidden).env("HOME", &t.base);
    let text = stdout(&run(cmd, Duration::from_secs(60)));
    let go = line(&text, "go env");
    assert!(!go.contains("not installed"), "{text}");
}

fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines().find(|l| l.contains(&format!("] {check}"))).unwrap_or_else(|| panic!("no {check} line:\n{text}"))
}

#[cfg(target_os = "linux")]
#[test]
fn root_doctor_passes_on_a_healthy_setup_and_names_each_broken_condition() {
    let (_lock, t) = root_tree();
    let caches = format!("[[cache]]\npath = \"{}\"\ngroup = 3200\n", t.root_str());
    let mut d = Daemon::start(&t.base, &caches, "");
    let cfg = d.config.to_str().unwrap().to_owned();
    let out = doctor(&t, Some(&d), &cfg);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(line(&text, "service").starts_with("[ok  ]"), "{text}");
    assert!(line(&text, "root ").starts_with("[ok  ]"), "{text}");
    // The service, as root, made the cache's parent a mount of its own.
    assert!(
        line(&text, "isolation ").starts_with("[ok  ]") && line(&text, "isolation ").contains("isolated"),
        "{text}"
    );
    let out = cachekeeperctl_json(&t, &d, &cfg);
    assert_eq!(out["schema_version"], 1);

    // The service stops.
    d.stop();
    let out = doctor(&t, None, &cfg);
    assert_eq!(code(&out), 1);
    assert!(line(&stdout(&out), "service").starts_with("[FAIL]"), "{}", stdout(&out));

    // The root diverges.
    chmod(&t.root, 0o700);
    let text = stdout(&doctor(&t, None, &cfg));
    assert!(line(&text, "root ").starts_with("[FAIL]") && line(&text, "root ").contains("should be"), "{text}");

    // A user outside the cache's group.
    let mut cmd = setpriv(1001, &[]);
    cmd.arg(bin("cachekeeperctl")).args(["--socket", "/nonexistent", "doctor", "--config", &cfg]);
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(code(&out), 1);
    assert!(line(&stdout(&out), "group of").contains("you are not in gid 3200"), "{}", stdout(&out));

    // A read-only filesystem.
    nix::mount::mount(Some(&t.root), &t.root, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    let _unmount = scopeguard(&t.root);
    nix::mount::mount(
        None::<&str>,
        &t.root,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let text = stdout(&doctor(&t, None, &cfg));
    assert!(
        line(&text, "filesystem").starts_with("[FAIL]") && line(&text, "filesystem").contains("read-only"),
        "{text}"
    );

    // A broken configuration.
    std::fs::write(t.base.join("bad.toml"), "[[cache]]\npath = 1\n").unwrap();
    let text = stdout(&doctor(&t, None, t.base.join("bad.toml").to_str().unwrap()));
    assert!(line(&text, "configuration").starts_with("[FAIL]"), "{text}");
}

#[cfg(target_os = "linux")]
fn cachekeeperctl_json(t: &Tree, d: &Daemon, cfg: &str) -> serde_json::Value {
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.arg("--socket").arg(&d.socket).args(["doctor", "--json", "--config", cfg]).env("GOMODCACHE", t.root_str());
    serde_json::from_str(&stdout(&run(cmd, Duration::from_secs(60)))).unwrap()
}

#[test]
fn root_doctor_warns_when_hardlinks_are_unprotected() {
    require_root();
    let _lock = sysctl_lock(true);
    let t = Tree::new();
    let cfg = config(&t, "");
    let _sysctl = Sysctl::set("fs.protected_hardlinks", "0");
    let text = stdout(&doctor(&t, None, &cfg));
    assert!(line(&text, "fs.protected_hardlinks").starts_with("[WARN]"), "{text}");
    // Not isolated and unprotected: doctor fails the cache, and --init changes nothing.
    assert!(line(&text, "isolation ").starts_with("[FAIL]"), "{text}");
    write(&t.path("f"), 0o600);
    let before = meta(&t.path("f"));
    let mut cmd = std::process::Command::new(bin("cachekeeper"));
    cmd.args(["--init", "--owner", "0", "--path", t.root_str()]);
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("fs.protected_hardlinks is 0") && err.contains("--isolate") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(meta(&t.path("f")), before);
}

/// Regression: doctor said `[ok] filesystem ...: unknown` for a root that does not exist.
#[test]
fn root_doctor_on_a_missing_root_names_the_parent_filesystem_instead_of_ok_unknown() {
    require_root();
    let t = Tree::new();
    let missing = t.base.join("not/yet/mod");
    let cfg = t.base.join("missing.toml");
    std::fs::write(&cfg, format!("[[cache]]\npath = \"{}\"\n", missing.display())).unwrap();
    let text = stdout(&doctor(&t, None, cfg.to_str().unwrap()));
    let fs = line(&text, "filesystem");
    assert!(!fs.starts_with("[ok  ]") && !fs.contains("unknown"), "{text}");
    assert!(fs.contains("does not exist") && fs.contains(&t.base.display().to_string()), "{text}");
}

#[test]
fn root_explain_says_what_new_entries_in_a_directory_inherit() {
    require_root();
    let t = Tree::new();
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", "0", "--group", "3200"], &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let out = ctl(&["explain", t.root_str()]);
    let s = section(&stdout(&out), &t.root);
    assert!(
        s.contains("new entries: inherit the default ACL u::rwx,g::rwx,o::r-x, whatever the creator's umask"),
        "{s}"
    );
    let out = ctl(&["explain", "--json", t.root_str()]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["default_acl"], "u::rwx,g::rwx,o::r-x", "{json}");

    let out = ctl(&["explain", t.base.to_str().unwrap()]);
    let s = section(&stdout(&out), &t.base);
    assert!(s.contains("new entries: no default ACL here"), "{s}");
}

/// A user pastes the line Go printed: explain finds the path and the access in it and
/// answers as for that path; a line about something else says so in one line.
#[test]
fn root_explain_takes_a_pasted_go_error_line() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("cache/download"), 0o755);
    let cfg = config(&t, "group = 3600");
    let line = format!(
        "go: example.com/lib@v1.1.0: mkdir {}: permission denied",
        t.path("cache/download/example.com").display()
    );
    let out = ctl_as(1001, &[3600], &["explain", "--config", &cfg, &line]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("from the error line: ") && first.contains("Go could not create it (mkdir)"), "{text}");
    let verdict = text.lines().nth(1).unwrap_or_default();
    assert!(verdict.contains(&format!("DENIED: create entries at {}", t.path("cache/download").display())), "{text}");
    let unlink = format!("go: unlinkat {}: permission denied", t.path("cache/lock").display());
    let out = ctl_as(1001, &[3600], &["explain", "--config", &cfg, &unlink]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("DENIED: create entries at {}:", t.path("cache").display())),
        "{}",
        stdout(&out)
    );

    let network =
        "go: example.com/x@v1.0.0: Get \"https://proxy.example/x\": dial tcp: lookup proxy.example: no such host";
    let out = ctl(&["explain", network]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("network error") && stdout(&out).contains("cannot fix it"), "{}", stdout(&out));
}

/// Regression: doctor told a user outside daemon.socket_group to start a service that was
/// running; it tells them what would let them ask it, and still checks what needs no
/// service.
#[test]
fn root_doctor_tells_a_non_member_what_lets_them_ask_the_service() {
    let (_lock, t) = root_tree();
    let cfg = config(&t, "group = 3200");
    let d = Daemon::start(&t.base, &std::fs::read_to_string(&cfg).unwrap(), "socket_group = 3300");
    let mut cmd = setpriv(1001, &[3200]);
    cmd.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket).args(["doctor", "--config", &cfg]);
    let text = stdout(&run(cmd, Duration::from_secs(60)));
    let service = line(&text, "service");
    assert!(!service.contains("start it"), "a running service is not to be started: {text}");
    assert!(service.starts_with("[WARN]") && service.contains("daemon.socket_group"), "{text}");
    assert!(line(&text, "root ").starts_with("[ok  ]"), "the rest is still checked: {text}");
}

/// Regression: with no configuration doctor's output was meaningless; it checks the
/// caller's own cache, as `cachekeeper --init` keeps it.
#[test]
fn root_doctor_without_a_configuration_checks_the_callers_own_cache() {
    require_root();
    assert!(
        !Path::new("/etc/cachekeeper/config.toml").exists(),
        "this machine has /etc/cachekeeper/config.toml: the case without a configuration cannot be made here"
    );
    let _lock = sysctl_lock(false);
    let t = Tree::new();
    let home = t.base.join("home");
    mkdir(&home.join("go/pkg/mod/cache/download"), 0o755);
    for p in [home.clone(), home.join("go"), home.join("go/pkg"), home.join("go/pkg/mod")] {
        chown(&p, 1001, 1001);
    }
    chown(&home.join("go/pkg/mod/cache"), 1001, 1001);
    chown(&home.join("go/pkg/mod/cache/download"), 1001, 1001);
    let mut cmd = setpriv(1001, &[]);
    cmd.arg(bin("cachekeeperctl"))
        .args(["--socket", "/nonexistent", "doctor"])
        .env_remove("CACHEKEEPER_CONFIG")
        .env_remove("GOMODCACHE")
        .env_remove("GOPATH")
        .env("HOME", &home);
    let out = run(cmd, Duration::from_secs(60));
    let text = stdout(&out);
    let root = home.join("go/pkg/mod");
    assert!(
        line(&text, "configuration").contains(&format!("checking your own Go module cache {}", root.display())),
        "{text}"
    );
    assert!(line(&text, &format!("root {}", root.display())).starts_with("[ok  ]"), "{text}");
    assert!(!text.contains("systemctl"), "no service to start for one's own cache: {text}");
    assert_eq!(code(&out), 0, "{text}");
}

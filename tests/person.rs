//! What a person meets (the output of --init, --check, --help, explain and status): no
//! colour off a terminal, one line per cause with the fix instead of a line per entry,
//! names instead of numbers, verdicts for what Go needs, and errors that blame the
//! right source.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `cmd` under a pseudo-terminal (util-linux `script`), its output as the terminal saw it.
fn on_a_terminal(cmd: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", cmd, "/dev/null"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(c, Duration::from_secs(60));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An SGR (colour) sequence: ESC [ digits and semicolons, then `m`. The progress line's
/// erase (ESC [ K) is not colour.
fn has_colour(s: &str) -> bool {
    s.match_indices("\x1b[").any(|(i, _)| {
        let rest = &s[i + 2..];
        let params = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b';').count();
        rest.as_bytes().get(params) == Some(&b'm')
    })
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let t = Tree::new();
    std::os::unix::fs::symlink("/etc", t.path("link")).unwrap();
    let uid = nix::unistd::getuid().as_raw().to_string();
    // -vv: the walk's debug line for the symlink, which carries a coloured level on a terminal.
    let out = cachekeeper(&["--check", "-vv", "--path", t.root_str(), "--owner", &uid], &[]);
    assert!(!stderr(&out).is_empty(), "no log lines to judge");
    assert!(!has_colour(&stderr(&out)), "colour in a pipe: {:?}", stderr(&out));
    let cmd = format!("{} --check -vv --path {} --owner {uid}", bin("cachekeeper").display(), t.root_str());
    assert!(has_colour(&on_a_terminal(&cmd, &[])), "a terminal gets colour");
    assert!(!has_colour(&on_a_terminal(&cmd, &[("NO_COLOR", "1")])), "NO_COLOR is honoured");
}

/// A 300-entry tree whose files belong to someone else.
fn others_tree() -> Tree {
    let t = Tree::new();
    for i in 0..300 {
        write(&t.path(&format!("d/f{i:03}")), 0o600);
    }
    t
}

#[test]
fn root_forgetting_sudo_gives_one_line_with_the_fix_not_one_per_entry() {
    require_root();
    let t = others_tree();
    for p in [t.root.clone(), t.path("cache"), t.path("cache/download"), t.path("d")] {
        chown(&p, 1101, 1101);
    }
    let mut cmd = setpriv(1101, &[]);
    cmd.arg(bin("cachekeeper")).args(["--init", "--path", t.root_str()]).env("HOME", "/nonexistent");
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let said = "300 entries belong to other users, and only root may change them: run `sudo ";
    assert!(text.contains(said), "{text}");
    assert!(text.contains("d/f000, d/f001, d/f002 and 297 more (-v lists them all)"), "{text}");
    assert!(text.lines().count() <= 10, "{text}");
    assert!(stderr(&out).is_empty(), "a line per entry: {}", stderr(&out));
    // Regression: the hint said `sudo cachekeeper --init`, which a binary built in
    // target/ (on no one's PATH, least of all sudo's) does not answer to. The hint, run
    // as printed (as root, the part after `sudo`, with sudo's own search path), fixes it.
    let hint = text.split(said).nth(1).and_then(|rest| rest.split('`').next()).unwrap();
    let mut fix = Command::new("sh");
    // What sudo itself sets: its search path and who ran it.
    fix.args(["-c", hint]).env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    fix.env("SUDO_UID", "1101").env("SUDO_GID", "1101").env("SUDO_USER", "nobody-1101");
    let out = run(fix, Duration::from_secs(60));
    assert_eq!(code(&out), 0, "`sudo {hint}`: {}{}", stdout(&out), stderr(&out));
    assert_eq!(meta(&t.path("d/f000")).uid, 1101, "the hint did not repair the cache: `sudo {hint}`");
}

#[cfg(target_os = "linux")]
#[test]
fn root_a_read_only_filesystem_gives_one_line_with_the_fix() {
    require_root();
    let t = others_tree();
    // The read-only mount is the root's parent: that is what must be remounted.
    nix::mount::mount(Some(&t.base), &t.base, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    let flags = nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
    nix::mount::mount(None::<&str>, &t.base, None::<&str>, flags, None::<&str>).unwrap();
    let _unmount = MountGuard(t.base.clone());
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", "1102"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    // Regression: it said "remount <root>", which is not a mount point.
    let said = format!(
        "are on a filesystem mounted read-only at {0}: remount it read-write (`sudo mount -o remount,rw {0}`)",
        t.base.display()
    );
    assert!(text.contains(&said), "{text}");
    assert!(text.lines().count() <= 11, "{text}");
    assert!(stderr(&out).is_empty(), "a line per entry: {}", stderr(&out));
    // Regression: --check listed every entry and never said why none could be repaired.
    let out = cachekeeper(&["--check", "--path", t.root_str(), "--owner", "1102"], &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    let line = format!("  read-only  mounted read-only at {}: --init could change nothing here", t.base.display());
    assert_eq!(text.lines().filter(|l| *l == line).count(), 1, "{text}");
}

#[test]
fn init_says_what_it_created_and_counts_in_words() {
    let t = Tree::new();
    let root = t.base.join("new/go/pkg/mod");
    let uid = nix::unistd::getuid().as_raw().to_string();
    let out = cachekeeper(&["--init", "--path", root.to_str().unwrap(), "--owner", &uid], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for dir in ["new", "new/go", "new/go/pkg", "new/go/pkg/mod"] {
        assert!(stdout(&out).contains(&format!("  created    {}\n", t.base.join(dir).display())), "{}", stdout(&out));
    }
    write(&t.path("one"), 0o600);
    let out = cachekeeper(&["--check", "--path", t.root_str(), "--owner", &uid], &[]);
    assert!(
        stdout(&out).contains(": 1 entry diverges") || stdout(&out).contains(": 1 entry diverge"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("1 entries"), "{}", stdout(&out));
}

#[test]
fn help_says_the_service_runs_without_a_mode_and_lists_exit_codes() {
    for args in [&["--help"][..], &["help"]] {
        let out = cachekeeper(args, &[]);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("Without --init or --check, cachekeeper runs the service"), "{text}");
        assert!(text.contains("Exit codes:") && text.contains("Examples:"), "{text}");
    }
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.args(["status", "--help"]);
    let text = stdout(&run(cmd, Duration::from_secs(60)));
    assert!(text.contains("3 not running") && text.contains("4 not permitted"), "{text}");
}

#[test]
fn a_bad_default_path_names_where_it_came_from() {
    let out = cachekeeper(&["--check", "--owner", "0"], &[("GOMODCACHE", "rel/mod"), ("HOME", "/nonexistent")]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("GOMODCACHE") && err.contains("rel/mod") && !err.contains("--path:"), "{err}");
}

#[test]
fn an_excluded_glob_may_start_with_a_slash() {
    let t = Tree::new();
    write(&t.path("cache/vcs/x/f"), 0o600);
    let uid = nix::unistd::getuid().as_raw().to_string();
    let out = cachekeeper(&["--check", "--path", t.root_str(), "--owner", &uid, "--exclude", "/cache/vcs/**"], &[]);
    assert_eq!(code(&out), 0, "the anchored glob excluded nothing: {}", stdout(&out));
}

#[test]
fn root_explain_judges_what_go_needs_unless_asked_for_an_access() {
    require_root();
    let t = Tree::new();
    let module = t.path("example.com/a@v1.0.0");
    write(&module.join("a.go"), 0o444);
    chmod(&module, 0o555);
    mkdir(&t.path("cache/download/example.com/a/@v"), 0o755);
    let caches = format!("[[cache]]\npath = \"{}\"\n", t.root_str());
    std::fs::write(t.base.join("ck.toml"), caches).unwrap();
    let cfg = t.base.join("ck.toml");
    let explain = |args: &[&str]| {
        let mut cmd = setpriv(1103, &[]);
        cmd.arg(bin("cachekeeperctl")).arg("--config").arg(&cfg).arg("explain").args(args);
        run(cmd, Duration::from_secs(60))
    };
    // A file of an extracted module tree: Go only reads it; read-only is right.
    let file = module.join("a.go");
    let out = explain(&[file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("judged: read (part of an extracted module tree"), "{}", stdout(&out));
    let out = explain(&["--access", "write", file.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    // A directory of the download cache: Go creates entries there.
    let dir = t.path("cache/download/example.com/a/@v");
    let out = explain(&["--json", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["access"], serde_json::json!(["search", "create"]));
    // A configuration that was asked for but cannot be read is an error, not ignored.
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.args(["explain", "--config", "/nonexistent/ck.toml", dir.to_str().unwrap()]);
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("/nonexistent/ck.toml"), "{}", stderr(&out));
}

#[test]
fn root_cachekeeperctl_finds_the_socket_in_the_configuration() {
    let (_lock, t) = root_tree();
    let d = Daemon::start(&t.base, &format!("[[cache]]\npath = \"{}\"\nowner = 0\n", t.root_str()), "");
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.arg("--config").arg(&d.config).arg("status").env_remove("CACHEKEEPER_SOCKET");
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let mut cmd = Command::new(bin("cachekeeperctl"));
    cmd.args(["doctor", "--config"]).arg(&d.config).env_remove("CACHEKEEPER_SOCKET");
    let text = stdout(&run(cmd, Duration::from_secs(60)));
    assert!(text.lines().any(|l| l.starts_with("[ok  ] service")), "{text}");
    let rescan = d.ctl(&["rescan"]);
    assert!(stdout(&rescan).contains("reconciled, ") && stdout(&rescan).contains("repaired in"), "{}", stdout(&rescan));
}

/// A `\r` that does not end a line (a pty writes `\r\n` for each newline), or an
/// escape sequence: what a `docker build` log or a dumb terminal shows as garbage.
fn rewrites_in_place(s: &str) -> bool {
    s.contains('\x1b') || s.match_indices('\r').any(|(i, _)| s.as_bytes().get(i + 1) != Some(&b'\n'))
}

/// Regression: the live count wrote `\r\e[K` with `TERM=dumb` and with `NO_COLOR`.
#[test]
fn root_progress_is_live_only_on_a_capable_terminal_and_plain_elsewhere() {
    require_root();
    let t = Tree::new();
    // 60,000 compliant entries seen through bindfs (a FUSE filesystem, which .ci/run
    // installs): a walk of more than the half second before a live line shows.
    let backing = t.base.join("backing");
    for d in 0..200 {
        for f in 0..300 {
            write(&backing.join(format!("cache/download/d{d}/f{f}")), 0o644);
        }
    }
    let view = t.base.join("view");
    mkdir(&view, 0o755);
    let _fuse = Fuse::bind(&backing, &view);
    let cmd = format!("{} --check --path {} --owner 0", bin("cachekeeper").display(), view.display());
    // The control: this walk is long enough for the live line on a capable terminal.
    let live = on_a_terminal(&cmd, &[("TERM", "xterm"), ("NO_COLOR", "")]);
    assert!(live.contains("\r\x1b[Kcachekeeper: "), "no live line: make the tree larger: {live:?}");
    for env in [[("TERM", "dumb"), ("NO_COLOR", "")], [("TERM", "xterm"), ("NO_COLOR", "1")]] {
        let out = on_a_terminal(&cmd, &env);
        assert!(!rewrites_in_place(&out), "{env:?}: {out:?}");
        assert!(out.contains("compliant"), "{env:?}: no summary: {out:?}");
    }
    let piped = cachekeeper(&["--check", "--path", view.to_str().unwrap(), "--owner", "0"], &[]);
    assert!(!rewrites_in_place(&stderr(&piped)) && !rewrites_in_place(&stdout(&piped)), "{}", stderr(&piped));
}

#[test]
fn ctrl_c_ends_the_progress_line_and_says_how_far_it_got() {
    let t = Tree::new();
    for d in 0..200 {
        let dir = t.path(&format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
            std::fs::set_permissions(dir.join(format!("f{f}")), std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
    }
    let uid = nix::unistd::getuid().as_raw().to_string();
    let mut child = Command::new(bin("cachekeeper"))
        .args(["--init", "--path", t.root_str(), "--owner", &uid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted as soon as it has begun to change entries.
    let first = t.path("d0/f0");
    let deadline = Instant::now() + Duration::from_secs(60);
    while meta(&first).mode == 0o600 && meta(&t.path("d199/f499")).mode == 0o600 {
        assert!(Instant::now() < deadline, "the walk never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let _ = child.wait();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(0) {
        panic!("the walk of 100,000 entries finished before the interrupt; make the tree larger");
    }
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted (SIGINT) after") && err.contains("run it again to finish"), "{err}");
}

#[test]
fn root_a_service_that_cannot_start_has_changed_nothing() {
    require_root();
    let t = Tree::new();
    let root = t.base.join("not-yet/mod");
    let caches = format!("[[cache]]\npath = \"{}\"\nowner = 0\n", root.display());
    let extra = format!("audit_log = \"{}\"\n", t.base.join("no-such-dir/audit.jsonl").display());
    Daemon::write_config(&t.base, &caches, &extra);
    let mut cmd = Command::new(bin("cachekeeper"));
    cmd.arg("--config").arg(t.base.join("ck.toml"));
    let out = run(cmd, Duration::from_secs(60));
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("daemon.audit_log"), "{}", stderr(&out));
    assert!(!t.base.join("not-yet").exists(), "the cache root was created by a service that did not start");
    assert!(!t.base.join("run/ck.sock").exists(), "the socket was left behind");
}

#[test]
fn root_sudo_says_whose_cache_and_which_model_it_applies() {
    require_root();
    let t = Tree::new();
    let home = t.base.join("dave");
    for d in ["", "go", "go/pkg", "go/pkg/mod", "go/pkg/mod/cache", "go/pkg/mod/cache/download"] {
        mkdir(&home.join(d), 0o755);
        chown(&home.join(d), 1111, 1111);
    }
    let user = TempUser::new(1111, &home);
    let out = cachekeeper(&["--init"], &[("SUDO_UID", "1111"), ("SUDO_GID", "1111")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    let want = format!("for {name} (who ran sudo): owner {name}, group 1111, model private", name = user.name);
    assert_eq!(first, want);
}

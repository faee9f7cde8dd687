//! The command line contract (SPEC §3): exit codes, one-line errors, and that a bad
//! configuration or bad flags change nothing on disk.

mod common;

use common::*;

/// A tree with divergent entries, to show that a rejected run changes none of them.
fn divergent_tree() -> (Tree, Vec<(std::path::PathBuf, Meta)>) {
    let t = Tree::new();
    write(&t.path("cache/download/x/@v/list"), 0o600);
    mkdir(&t.path("x@v1.0.0"), 0o700);
    let snapshot = ["", "cache", "cache/download/x/@v/list", "x@v1.0.0"]
        .iter()
        .map(|r| {
            let p = if r.is_empty() { t.root.clone() } else { t.path(r) };
            let m = meta(&p);
            (p, m)
        })
        .collect();
    (t, snapshot)
}

fn assert_unchanged(snapshot: &[(std::path::PathBuf, Meta)]) {
    for (p, m) in snapshot {
        assert_eq!(meta(p), *m, "{} changed although the run was rejected", p.display());
    }
}

fn assert_one_line_error(out: &std::process::Output, expect: &[&str]) {
    assert_eq!(code(out), 2, "stderr: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    for e in expect {
        assert!(err.contains(e), "{err:?} does not mention {e:?}");
    }
}

#[test]
fn bad_configuration_files_exit_2_with_one_line_and_change_nothing() {
    let (t, snapshot) = divergent_tree();
    let root = t.root_str();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("[[cache]]\npath = \"{root}\"\nowner = 0\ncolour = \"red\"\n"),
            vec![":4:", "cache.colour", "unknown field"],
        ),
        (
            format!("[[cache]]\npath = \"{root}\"\nowner = \"no-such-user-ck\"\n"),
            vec![":3:", "cache.owner", "no-such-user-ck"],
        ),
        (format!("[[cache]]\npath = \"{root}\"\ngroup = \"no-such-group-ck\"\n"), vec![":3:", "cache.group"]),
        (format!("[[cache]]\npath = \"{root}\"\nmodel = \"everyone\"\n"), vec![":3:", "cache.model", "everyone"]),
        (format!("[[cache]]\npath = \"{root}\"\nother = \"write\"\n"), vec![":3:", "cache.other"]),
        (format!("[[cache]]\npath = \"{root}\"\nexclude = [\"[\"]\n"), vec![":3:", "cache.exclude", "glob"]),
        (
            format!("[[cache]]\npath = \"{root}\"\n[daemon]\nfull_rescan = \"often\"\n"),
            vec![":4:", "daemon.full_rescan"],
        ),
        ("[[cache]]\npath = \"mod\"\n".to_owned(), vec![":2:", "cache.path", "absolute"]),
        (format!("[[cache]]\npath = \"{root}\"\nowner = 0\n[[cache\n"), vec![":4:"]),
        ("".to_owned(), vec![":1:", "cache"]),
    ];
    for (text, expect) in cases {
        let file = t.base.join("config.toml");
        std::fs::write(&file, &text).unwrap();
        let out = cachekeeper(&["--init", "--config", file.to_str().unwrap()], &[]);
        let mut expect = expect.clone();
        let file_str = file.to_str().unwrap().to_owned();
        expect.push(&file_str);
        assert_one_line_error(&out, &expect);
        assert_unchanged(&snapshot);
        // The environment variable names the file as well.
        let out = cachekeeper(&["--check"], &[("CACHEKEEPER_CONFIG", &file_str)]);
        assert_one_line_error(&out, &expect);
    }
    let out = cachekeeper(&["--init", "--config", "/nonexistent/ck.toml"], &[]);
    assert_one_line_error(&out, &["/nonexistent/ck.toml", "No such file"]);
}

#[test]
fn bad_flags_exit_2_with_one_line_and_change_nothing() {
    let (t, snapshot) = divergent_tree();
    let root = t.root_str();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--init", "--path", root, "--owner", "no-such-user-ck"],
            vec!["--owner", "no-such-user-ck", "does not exist"],
        ),
        (vec!["--init", "--path", root, "--group", "no-such-group-ck"], vec!["--group", "no-such-group-ck"]),
        (vec!["--init", "--path", root, "--owner", "1:2", "--group", "3"], vec!["different groups"]),
        (vec!["--init", "--path", "relative/mod", "--owner", "1"], vec!["--path", "relative/mod", "absolute"]),
        (vec!["--init", "--path", "/", "--owner", "1"], vec!["refusing", "`/`"]),
        (vec!["--init", "--path", "/etc", "--owner", "1"], vec!["refusing", "/etc"]),
        (vec!["--init", "--path", root, "--exclude", "a[", "--owner", "1"], vec!["--exclude", "a["]),
        (vec!["--init", "--path", root, "--config", "/etc/x.toml"], vec!["either --config"]),
        (vec!["--init", "--path", root, "--owner", "4294967295"], vec!["not a valid id"]),
        (vec!["--check", "--path", "/nonexistent-ck/mod"], vec!["/nonexistent-ck/mod", "No such file"]),
    ];
    for (args, expect) in cases {
        let out = cachekeeper(&args, &[]);
        assert_one_line_error(&out, &expect);
        assert_unchanged(&snapshot);
    }
    // Without a mode flag it is the service, which needs its configuration.
    let out = cachekeeper(&[], &[("CACHEKEEPER_CONFIG", "/nonexistent-ck/config.toml")]);
    assert_one_line_error(&out, &["/nonexistent-ck/config.toml", "No such file"]);
    let out = cachekeeper(&["--path", root], &[]);
    assert_one_line_error(&out, &["--init or --check"]);
    // clap's own usage errors add a usage block after the error line.
    for (args, expect) in [
        (vec!["--init", "--model", "open", "--path", root], "invalid value 'open' for '--model"),
        (vec!["--init", "--check", "--path", root], "cannot be used with"),
    ] {
        let out = cachekeeper(&args, &[]);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
        assert_unchanged(&snapshot);
    }
}

#[test]
fn home_directory_is_refused_as_a_cache() {
    let t = Tree::new();
    let home = t.base.join("home");
    mkdir(&home, 0o755);
    let out =
        cachekeeper(&["--init", "--path", home.to_str().unwrap(), "--owner", "0"], &[("HOME", home.to_str().unwrap())]);
    assert_one_line_error(&out, &["refusing", "home directory", "go/pkg/mod"]);
}

#[test]
fn check_json_is_one_stable_object() {
    let t = Tree::new();
    write(&t.path("f"), 0o600);
    let uid = nix::unistd::getuid().as_raw().to_string();
    let out = cachekeeper(&["--check", "--json", "--path", t.root_str(), "--owner", &uid, "--model", "private"], &[]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["mode"], "check");
    assert_eq!(v["compliant"], false);
    let c = &v["caches"][0];
    assert_eq!(c["path"], t.root_str());
    assert_eq!(c["diverging"], 1);
    assert_eq!(c["findings"][0]["path"], "f");
    assert_eq!(c["findings"][0]["kind"], "diverges");
    // Modes are octal strings, as in every JSON output.
    assert_eq!(c["findings"][0]["from"]["mode"], "0600");
    assert_eq!(c["findings"][0]["to"]["mode"], "0644");
    for key in ["entries", "changed", "reported", "excluded", "failed", "duration_ms", "model", "other"] {
        assert!(c.get(key).is_some(), "missing {key}: {c}");
    }
}

#[test]
fn init_text_summary_fits_one_screen() {
    let t = Tree::new();
    for i in 0..20 {
        write(&t.path(&format!("d/f{i}")), 0o600);
    }
    let uid = nix::unistd::getuid().as_raw().to_string();
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", &uid], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    // The first line names the model applied.
    assert!(text.starts_with(&format!("{}: compliant (model private, ", t.root_str())), "{text}");
    // 20 files, `d`, the root, and `cache/download` of a Go-shaped tree.
    assert!(text.contains("entries    24 in "), "{text}");
    assert!(text.contains("changed    20 (owner 0, group 0, mode 20, acl 0)"), "{text}");
    assert!(text.lines().count() <= 10, "{text}");
    assert!(!text.contains('\r'), "no progress indicator when stdout is not a terminal");
}

#[test]
fn cachekeeperctl_says_not_running_with_exit_3() {
    let t = Tree::new();
    let sock = t.base.join("control.sock");
    let mut cmd = std::process::Command::new(bin("cachekeeperctl"));
    cmd.args(["--socket", sock.to_str().unwrap(), "status"]);
    let out = run(cmd, std::time::Duration::from_secs(30));
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    // The example names a group that need not exist here; validate it with a numeric one.
    let text = text.replace("group = \"gobuild\"", "group = 0");
    let config = cachekeeper::config::Config::parse(&file, &text).unwrap();
    assert_eq!(config.caches[0].path, std::path::Path::new("/var/cache/go/mod"));
    // Every key of SPEC §2 is in the example, commented or not.
    for key in [
        "path",
        "owner",
        "group",
        "model",
        "other",
        "exclude",
        "writable",
        "socket",
        "socket_group",
        "user",
        "full_rescan",
        "log_format",
        "metrics_textfile",
        "audit_log",
    ] {
        assert!(text.contains(&format!("\n{key} =")) || text.contains(&format!("\n#{key} =")), "{key} is missing");
    }
}

/// Issue #20: `--owner U:G` alone silently selected the shared model (group-writable
/// files, setgid directories). SPEC §3: `--owner USER[:GROUP]` alone is private; only
/// `--group` or `--model shared` select shared.
#[test]
fn root_owner_with_a_group_alone_selects_the_private_model() {
    require_root();
    let t = Tree::new();
    write(&t.path("f"), 0o600);
    mkdir(&t.path("d"), 0o700);
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", "1001:1002"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert!(first.contains("model private, owner 1001, group 1002"), "{first}");
    assert_eq!(meta(&t.path("f")).mode, 0o644, "private: the group only reads");
    assert_eq!(meta(&t.path("d")).mode, 0o755, "private: no setgid, no group write");
    assert_eq!((meta(&t.path("f")).uid, meta(&t.path("f")).gid), (1001, 1002));
    // --group makes it shared.
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", "1001", "--group", "1002"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).lines().next().unwrap_or_default().contains("model shared"), "{}", stdout(&out));
    assert_eq!(meta(&t.path("f")).mode, 0o664);
    assert_eq!(meta(&t.path("d")).mode, 0o2775);
}

/// Issue #20: the kubelet's `OnRootMismatch` (and a person) takes a root with the right
/// owner and mode as a sign that the tree below is done. `--init` changed the root first,
/// so a run killed a moment later left a root that looked done over a tree that was not.
#[test]
fn root_init_changes_the_root_last_so_a_killed_run_never_leaves_it_looking_done() {
    require_root();
    let t = Tree::new();
    for d in 0..800 {
        for f in 0..10 {
            write(&t.path(&format!("d{d}/f{f}")), 0o600);
        }
    }
    let mut cmd = std::process::Command::new(bin("cachekeeper"));
    cmd.args(["--init", "--path", t.root_str(), "--owner", "61001"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Killed the moment the root looks done (or when it finishes).
    loop {
        if meta(&t.root).uid == 61001 {
            let _ = child.kill();
            break;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break;
        }
    }
    let _ = child.wait();
    assert_eq!(meta(&t.root).uid, 61001, "the run finished without changing the root");
    let mut left = 0;
    for d in 0..800 {
        for f in 0..10 {
            left += usize::from(meta(&t.path(&format!("d{d}/f{f}"))).uid != 61001);
        }
    }
    assert_eq!(left, 0, "the root looked done with {left} files below it still root's");
}

/// Issue #20: an image layer (or a tar without --acls) drops every default ACL of a
/// shared cache. `--check` listed one divergence per directory; it is one finding, with
/// its cause, when no directory that should carry the model's default ACL has one.
#[test]
fn root_check_reports_default_acls_dropped_by_an_image_layer_as_one_finding() {
    require_root();
    let t = Tree::new();
    for d in ["a", "b", "c/d"] {
        write(&t.path(&format!("{d}/f")), 0o644);
    }
    let flags = ["--path", t.root_str(), "--owner", "61001", "--group", "61002"];
    let out = cachekeeper(&[&["--init"][..], &flags].concat(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stripped = std::process::Command::new("setfacl").args(["-R", "-k"]).arg(&t.root).status().unwrap();
    assert!(stripped.success(), "setfacl -R -k");
    let out = cachekeeper(&[&["--check"][..], &flags].concat(), &[]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    let finding = "default ACLs absent (image layer dropped them)";
    assert_eq!(text.matches(finding).count(), 1, "{text}");
    let per_dir = text.lines().filter(|l| l.starts_with(&format!("{}/", t.root_str()))).count();
    assert_eq!(per_dir, 0, "one finding, not one line per directory: {text}");
    // One directory with a default ACL: not an image layer's doing, so listed as it is.
    let one = std::process::Command::new("setfacl").args(["-d", "-m", "g::rwx"]).arg(t.path("a")).status().unwrap();
    assert!(one.success());
    let out = cachekeeper(&[&["--check"][..], &flags].concat(), &[]);
    assert!(!stdout(&out).contains(finding), "{}", stdout(&out));
    assert!(stdout(&out).lines().filter(|l| l.starts_with(&format!("{}/", t.root_str()))).count() >= 3);
}

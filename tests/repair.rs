//! `cachekeeper --init` / `--check` on real temp trees, with numeric uids and gids
//! that need no passwd entry. Every test here needs root (CI runs as root).

mod common;

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

fn init(tree: &Tree, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--init", "--path", tree.root_str()];
    args.extend_from_slice(extra);
    cachekeeper(&args, &[])
}

fn check(tree: &Tree, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--check", "--path", tree.root_str()];
    args.extend_from_slice(extra);
    cachekeeper(&args, &[])
}

fn assert_ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

fn assert_attrs(path: &Path, uid: u32, gid: u32, mode: u32) {
    let m = meta(path);
    assert_eq!((m.uid, m.gid, m.mode), (uid, gid, mode), "{}: got {}:{} {:04o}", path.display(), m.uid, m.gid, m.mode);
}

#[test]
fn root_init_fixes_every_kind_of_divergence() {
    require_root();
    let t = Tree::new();
    // A root-owned Go-shaped cache, as `sudo go mod download` leaves it.
    mkdir(&t.path("cache/download/example.com/a/@v"), 0o755);
    write(&t.path("cache/download/example.com/a/@v/v1.0.0.zip"), 0o644);
    write(&t.path("cache/download/example.com/a/@v/v1.0.0.lock"), 0o600);
    mkdir(&t.path("example.com/a@v1.0.0/sub"), 0o555);
    write(&t.path("example.com/a@v1.0.0/sub/a.go"), 0o444);
    chmod(&t.path("example.com/a@v1.0.0"), 0o555);
    mkdir(&t.path("private"), 0o700);
    write(&t.path("private/tool"), 0o4755);
    write(&t.path("private/sgid"), 0o2644);
    mkdir(&t.path("sticky"), 0o1777);
    // Already owned by someone else: only the group and the mode change.
    write(&t.path("other-owner"), 0o640);
    chown(&t.path("other-owner"), 1001, 77);

    let out = check(&t, &["--owner", "1001", "--group", "2001"]);
    assert_eq!(code(&out), 1, "check must report divergence: {}", stdout(&out));
    assert!(
        stdout(&out).contains("private/tool: owner root→1001, group root→2001, mode 4755→0775"),
        "{}",
        stdout(&out)
    );

    assert_ok(&init(&t, &["--owner", "1001", "--group", "2001"]));
    for (rel, mode) in [
        ("", 0o2775),
        ("cache/download/example.com/a/@v", 0o2775),
        ("cache/download/example.com/a/@v/v1.0.0.zip", 0o664),
        ("cache/download/example.com/a/@v/v1.0.0.lock", 0o664),
        // Go's read-only module trees stay read-only.
        ("example.com/a@v1.0.0", 0o2555),
        ("example.com/a@v1.0.0/sub", 0o2555),
        ("example.com/a@v1.0.0/sub/a.go", 0o444),
        ("private", 0o2775),
        ("private/tool", 0o775),
        ("private/sgid", 0o664),
        ("sticky", 0o2775),
        ("other-owner", 0o664),
    ] {
        assert_attrs(&t.path(rel), 1001, 2001, mode);
    }
    assert_ok(&check(&t, &["--owner", "1001", "--group", "2001"]));
}

#[test]
fn root_private_model_other_none_and_writable() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("m@v1/d"), 0o555);
    write(&t.path("m@v1/d/f.go"), 0o444);
    write(&t.path("list"), 0o600);
    assert_ok(&init(&t, &["--owner", "1001", "--model", "private", "--other", "none", "--writable"]));
    assert_attrs(&t.path("m@v1/d"), 1001, 0, 0o750);
    assert_attrs(&t.path("m@v1/d/f.go"), 1001, 0, 0o440);
    assert_attrs(&t.path("list"), 1001, 0, 0o640);
    assert_attrs(&t.root, 1001, 0, 0o750);
}

#[test]
fn root_compliant_entries_are_not_touched() {
    require_root();
    let t = Tree::new();
    for i in 0..50 {
        write(&t.path(&format!("d{}/f{i}", i % 5)), 0o644);
    }
    assert_ok(&init(&t, &["--owner", "1001", "--group", "1001"]));
    // A divergent control entry shows that the clock moves enough for a change to show.
    let control = t.path("d0/control");
    write(&control, 0o600);
    let control_before = meta(&control);
    let all: Vec<PathBuf> = walk(&t.root).into_iter().filter(|p| *p != control).collect();
    let before: Vec<Meta> = all.iter().map(|p| meta(p)).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_ok(&init(&t, &["--owner", "1001", "--group", "1001"]));
    assert_ne!(meta(&control).ctime, control_before.ctime, "the control entry was repaired");
    for (p, b) in all.iter().zip(&before) {
        assert_eq!(meta(p), *b, "{} was touched although compliant", p.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn root_hostile_tree_changes_nothing_outside() {
    require_root();
    let t = Tree::new();
    let outside = t.base.join("outside");
    write(&outside.join("secret"), 0o600);
    write(&outside.join("dir/inner"), 0o600);
    chmod(&outside.join("dir"), 0o700);
    let outside_entries = [outside.join("secret"), outside.join("dir"), outside.join("dir/inner")];

    symlink("../outside/secret", t.path("rel-file-link")).unwrap();
    symlink("../outside/dir", t.path("rel-dir-link")).unwrap();
    symlink(outside.join("secret"), t.path("abs-link")).unwrap();
    std::fs::hard_link(outside.join("secret"), t.path("hard-link")).unwrap();
    nix::unistd::mkfifo(&t.path("fifo"), Mode::from_bits_truncate(0o666)).unwrap();
    nix::sys::stat::mknod(
        &t.path("null-dev"),
        nix::sys::stat::SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        libc::makedev(1, 3),
    )
    .unwrap();
    write(&t.path("setuid"), 0o4755);
    write(&t.path("setgid"), 0o2755);
    let newline = t.path("new\nline");
    write(&newline, 0o600);
    let invalid = t.root.join(OsStr::from_bytes(b"bad-\xff-utf8"));
    write(&invalid, 0o600);
    let reported = ["rel-file-link", "rel-dir-link", "abs-link", "hard-link", "fifo", "null-dev"];
    let reported_before: Vec<Meta> = reported.iter().map(|r| meta(&t.path(r))).collect();
    let outside_before: Vec<Meta> = outside_entries.iter().map(|p| meta(p)).collect();

    let out = init(&t, &["--owner", "1001", "--group", "1001", "--json"]);
    assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let reported_counts = &json["caches"][0]["reported"];
    assert_eq!(reported_counts["symlink"], 3, "{json}");
    assert_eq!(reported_counts["hard_link"], 1, "{json}");
    assert_eq!(reported_counts["special"], 2, "{json}");

    for (p, b) in outside_entries.iter().zip(&outside_before) {
        assert_eq!(meta(p), *b, "{} outside the tree changed", p.display());
    }
    for (r, b) in reported.iter().zip(&reported_before) {
        assert_eq!(meta(&t.path(r)), *b, "{r} was changed although it must only be reported");
    }
    assert_attrs(&t.path("setuid"), 1001, 1001, 0o775);
    assert_attrs(&t.path("setgid"), 1001, 1001, 0o775);
    assert_attrs(&newline, 1001, 1001, 0o664);
    assert_attrs(&invalid, 1001, 1001, 0o664);
    // Names are escaped in logs: a repair logged at debug level (-vv) names the entry.
    chmod(&newline, 0o600);
    let out = init(&t, &["--owner", "1001:1001", "-vv"]);
    assert!(stderr(&out).contains("new\\nline"), "the repair was not logged: {}", stderr(&out));
    assert!(!stderr(&out).contains("new\nline"), "a raw newline in a log line: {}", stderr(&out));
}

#[test]
fn root_names_are_escaped_in_check_output() {
    require_root();
    let t = Tree::new();
    write(&t.path("evil\nname"), 0o600);
    write(&t.root.join(OsStr::from_bytes(b"x\xfe")), 0o600);
    let out = check(&t, &["--owner", "1001"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(text.contains("evil\\nname: owner root→1001"), "{text}");
    assert!(text.contains("x\\xfe: owner root→1001"), "{text}");
}

/// Descends `depth` levels of `name` with descriptors only (the full path is longer
/// than PATH_MAX, so no path-based call could reach the bottom).
fn open_deep(root: &Path, name: &str, depth: usize, create: bool) -> OwnedFd {
    let mut fd: OwnedFd = nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        if create {
            nix::sys::stat::mkdirat(fd.as_fd(), name, Mode::from_bits_truncate(0o700)).unwrap();
        }
        fd = nix::fcntl::openat(
            fd.as_fd(),
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .unwrap();
    }
    fd
}

#[test]
fn root_tree_deeper_than_path_max_is_repaired() {
    require_root();
    let t = Tree::new();
    let (name, depth) = ("deep-directory", 400); // 15 bytes a level: 6000 bytes > PATH_MAX
    let bottom = open_deep(&t.root, name, depth, true);
    let f = nix::fcntl::openat(
        bottom.as_fd(),
        "leaf.go",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    drop(f);
    drop(bottom);

    assert_ok(&init(&t, &["--owner", "1001", "--group", "1001"]));
    let bottom = open_deep(&t.root, name, depth, false);
    let st = nix::sys::stat::fstatat(bottom.as_fd(), "leaf.go", AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
    assert_eq!((st.st_uid, st.st_gid, st.st_mode & 0o7777), (1001, 1001, 0o664));
    let st = nix::sys::stat::fstat(bottom.as_fd()).unwrap();
    assert_eq!((st.st_uid, st.st_mode & 0o7777), (1001, 0o2775));
    assert_ok(&check(&t, &["--owner", "1001", "--group", "1001"]));
}

#[cfg(target_os = "linux")]
#[test]
fn root_bind_mount_inside_the_tree_is_not_crossed() {
    require_root();
    assert!(
        !portable_engine(),
        "the portable engine has no mount ids, and bind mounts exist only on Linux, where the Linux engine runs: \
         this test is for that engine (CI's portable run leaves it out by name)"
    );
    let t = Tree::new();
    let outside = t.base.join("outside");
    write(&outside.join("f"), 0o600);
    let before = meta(&outside.join("f"));
    let before_dir = meta(&outside);
    mkdir(&t.path("mnt"), 0o755);
    nix::mount::mount(Some(&outside), &t.path("mnt"), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .expect("bind mount (needs root and mount permission)");
    let _guard = MountGuard(t.path("mnt"));
    let out = init(&t, &["--owner", "1001", "--group", "1001", "--json"]);
    assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["caches"][0]["reported"]["other_mount"], 1, "{json}");
    assert_eq!(meta(&outside.join("f")), before);
    assert_eq!(meta(&outside), before_dir);
}

#[test]
fn root_directory_swapped_for_a_symlink_during_init_changes_nothing_outside() {
    require_root();
    let t = Tree::new();
    let outside = t.base.join("outside");
    for i in 0..300 {
        write(&outside.join(format!("f{i}")), 0o600);
        write(&t.path(&format!("d/f{i}")), 0o600);
        write(&t.path(&format!("d/sub/f{i}")), 0o600);
    }
    const BAIT: usize = 200;
    for i in 0..BAIT {
        write(&t.path(&format!("bait/f{i}")), 0o600);
    }
    let outside_entries = walk(&outside);
    let before: Vec<Meta> = outside_entries.iter().map(|p| meta(p)).collect();

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let (d, away, sub, sub_away) = (t.path("d"), t.path("d.away"), t.path("d/sub"), t.path("d/sub.away"));
            let pause = std::time::Duration::from_micros(200);
            while !stop.load(Ordering::Relaxed) {
                // Files that flip between themselves and a symlink to a file outside, so
                // that some flip between the walk's statx and its pin.
                for i in 0..BAIT {
                    let (f, away) = (t.path(&format!("bait/f{i}")), t.path(&format!("bait/f{i}.away")));
                    let _ = std::fs::rename(&f, &away);
                    let _ = symlink(outside.join(format!("f{i}")), &f);
                }
                for i in 0..BAIT {
                    let (f, away) = (t.path(&format!("bait/f{i}")), t.path(&format!("bait/f{i}.away")));
                    let _ = std::fs::remove_file(&f);
                    let _ = std::fs::rename(&away, &f);
                }
                // The directory itself, and one inside it, each spend about half the time
                // as a symlink to the outside directory.
                let _ = std::fs::rename(&d, &away);
                let _ = symlink(&outside, &d);
                std::thread::sleep(pause);
                let _ = std::fs::remove_file(&d);
                let _ = std::fs::rename(&away, &d);
                std::thread::sleep(pause);
                let _ = std::fs::rename(&sub, &sub_away);
                let _ = symlink(&outside, &sub);
                std::thread::sleep(pause);
                let _ = std::fs::remove_file(&sub);
                let _ = std::fs::rename(&sub_away, &sub);
                std::thread::sleep(pause);
            }
        });
        for i in 0..100 {
            let owner = if i % 2 == 0 { "1001:1001" } else { "1002:1002" };
            let out = init(&t, &["--owner", owner]);
            assert!(matches!(code(&out), 0 | 1), "{}", stderr(&out));
            assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        }
        stop.store(true, Ordering::Relaxed);
    });
    for (p, b) in outside_entries.iter().zip(&before) {
        assert_eq!(meta(p), *b, "{} outside the tree changed", p.display());
    }
    // Once the swapping stops, one more run makes the tree compliant.
    assert_ok(&init(&t, &["--owner", "1001", "--group", "1001"]));
    assert_ok(&check(&t, &["--owner", "1001", "--group", "1001"]));
}

#[test]
fn root_exclude_globs_leave_paths_alone() {
    require_root();
    let t = Tree::new();
    write(&t.path("cache/vcs/abc/config"), 0o600);
    write(&t.path("cache/download/x/@v/list"), 0o600);
    let before = meta(&t.path("cache/vcs/abc/config"));
    let out = init(&t, &["--owner", "1001", "--exclude", "cache/vcs/**"]);
    assert_ok(&out);
    assert_eq!(meta(&t.path("cache/vcs/abc/config")), before);
    assert_attrs(&t.path("cache/download/x/@v/list"), 1001, 0, 0o644);
    assert_attrs(&t.path("cache/vcs"), 1001, 0, 0o755);
    assert!(stdout(&out).contains("excluded   1"), "{}", stdout(&out));
}

#[test]
fn root_sudo_defaults_to_the_invoking_user_and_go_default_path() {
    require_root();
    let t = Tree::new();
    let home = t.base.join("home");
    let cache = home.join("go/pkg/mod");
    // The classic: the cache is the user's, `sudo go mod download` left root's files in it.
    for d in [&home, &home.join("go"), &home.join("go/pkg"), &cache] {
        mkdir(d, 0o755);
        chown(d, 1001, 1002);
    }
    write(&cache.join("cache/download/x/@v/v1.0.0.mod"), 0o644);
    let _user = TempUser::new(1001, &home);
    let gopath = home.join("go");
    let out =
        cachekeeper(&["--init"], &[("SUDO_UID", "1001"), ("SUDO_GID", "1002"), ("GOPATH", gopath.to_str().unwrap())]);
    assert_ok(&out);
    assert_attrs(&cache.join("cache/download/x/@v/v1.0.0.mod"), 1001, 1002, 0o644);
    assert_attrs(&cache, 1001, 1002, 0o755);
    // GOMODCACHE wins over GOPATH, inside the caller's home.
    let other = home.join(".gomodcache");
    mkdir(&other, 0o755);
    chown(&other, 1001, 1002);
    write(&other.join("cache/download/f"), 0o600);
    let out = cachekeeper(
        &["--init"],
        &[
            ("SUDO_UID", "1001"),
            ("SUDO_GID", "1002"),
            ("GOMODCACHE", other.to_str().unwrap()),
            ("GOPATH", "/nonexistent"),
        ],
    );
    assert_ok(&out);
    assert_attrs(&other.join("cache/download/f"), 1001, 1002, 0o644);
}

#[test]
fn root_init_creates_a_missing_root_and_parents_for_the_owner() {
    require_root();
    let t = Tree::new();
    let root = t.base.join("new/go/pkg/mod");
    let out = cachekeeper(&["--init", "--path", root.to_str().unwrap(), "--owner", "1001", "--group", "1001"], &[]);
    assert_ok(&out);
    assert_attrs(&root, 1001, 1001, 0o2775);
    // Missing parents are root's: only the root itself is the cache's.
    for parent in ["new", "new/go", "new/go/pkg"] {
        assert_attrs(&t.base.join(parent), 0, 0, 0o755);
    }
    // --check never creates anything.
    let missing = t.base.join("absent");
    let out = cachekeeper(&["--check", "--path", missing.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!missing.exists());
}

#[test]
fn root_an_unprivileged_user_repairs_its_own_cache_and_names_what_it_cannot() {
    require_root();
    let t = Tree::new();
    write(&t.path("mine/f"), 0o600);
    mkdir(&t.path("mine/ro@v1"), 0o500);
    write(&t.path("theirs"), 0o600);
    for p in [
        t.root.clone(),
        t.path("cache"),
        t.path("cache/download"),
        t.path("mine"),
        t.path("mine/f"),
        t.path("mine/ro@v1"),
    ] {
        chown(&p, 1001, 1001);
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=1001", "--regid=1001", "--clear-groups", "--"])
        .arg(bin("cachekeeper"))
        .args(["--init", "--path", t.root_str()])
        .env_clear()
        .env("HOME", "/nonexistent");
    pass_engine(&mut cmd);
    let out = run(cmd, std::time::Duration::from_secs(60));
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert_attrs(&t.path("mine/f"), 1001, 1001, 0o644);
    assert_attrs(&t.path("mine/ro@v1"), 1001, 1001, 0o555);
    assert_attrs(&t.path("theirs"), 0, 0, 0o600);
    // One line names the cause and the fix, with the entry as an example; no line per entry.
    let text = stdout(&out);
    assert!(text.contains("1 entry could not be made compliant"), "{text}");
    // The Linux engine pins without opening (O_PATH) and the chown fails; the portable
    // engine must open the entry to pin it, which an unreadable file of another user
    // refuses: the same entry, named with the cause it met first.
    let cause = if portable_engine() {
        format!(
            "1 entry could not be read (permission denied): run `sudo {} --init --path",
            bin("cachekeeper").display()
        )
    } else {
        format!(
            "1 entry belong to other users, and only root may change them: run `sudo {} --init --path",
            bin("cachekeeper").display()
        )
    };
    assert!(text.contains(&cause), "{text}");
    assert!(text.contains("      theirs\n"), "{text}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn root_a_cache_root_whose_name_is_not_utf8() {
    require_root();
    let t = Tree::new();
    let root = t.base.join(OsStr::from_bytes(b"mod-\xff"));
    write(&root.join("f"), 0o600);
    let mut cmd = std::process::Command::new(bin("cachekeeper"));
    cmd.args(["--init", "--force", "--owner", "1001", "--path"]).arg(&root);
    let out = run(cmd, std::time::Duration::from_secs(60));
    assert_ok(&out);
    assert_attrs(&root.join("f"), 1001, 0, 0o644);
    assert!(stdout(&out).contains("mod-\\xff: compliant"), "{}", stdout(&out));
}

/// The raw value of xattr `name` of `path` (not following symlinks), or `None`.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("getfattr")
        .args(["--absolute-names", "--only-values", "-h", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (package attr)");
    out.status.success().then_some(out.stdout)
}

fn setfacl(args: &[&str], path: &Path) {
    let out = std::process::Command::new("setfacl").args(args).arg(path).output().expect("setfacl (package acl)");
    assert!(out.status.success(), "setfacl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `u::rwx,g::rwx,o::r-x` as the kernel stores it.
const DEFAULT_ACL_775: [u8; 28] =
    [2, 0, 0, 0, 1, 0, 7, 0, 255, 255, 255, 255, 4, 0, 7, 0, 255, 255, 255, 255, 32, 0, 5, 0, 255, 255, 255, 255];

#[test]
fn root_access_acls_that_grant_more_go_and_directories_get_the_default_acl() {
    require_root();
    let t = Tree::new();
    mkdir(&t.path("d"), 0o755);
    write(&t.path("d/named"), 0o664);
    setfacl(&["-m", "u:4242:rwx"], &t.path("d/named"));
    // The owning group's entry below the mask the mode shows: members get less than 0664 says.
    write(&t.path("d/group-below-mask"), 0o664);
    setfacl(&["-n", "-m", "g::r--,m::rw-"], &t.path("d/group-below-mask"));
    write(&t.path("d/plain"), 0o664);
    let shared = ["--owner", "0", "--group", "3000"];
    for p in ["", "d", "d/named", "d/group-below-mask", "d/plain"] {
        chown(&t.path(p), 0, 3000);
    }
    chmod(&t.root, 0o2775);
    chmod(&t.path("d"), 0o2775);

    let out = check(&t, &shared);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    // No directory has a default ACL yet: one finding, not a line per directory whose
    // only divergence it is (the root and d); cache/ also diverges otherwise.
    assert_eq!(text.matches("default ACLs absent (image layer dropped them)").count(), 1, "{text}");
    assert!(!text.lines().any(|l| l.starts_with(&format!("{}: ", t.path("d").display()))), "{text}");
    for (p, what) in [
        ("cache", "default ACL→the model's"),
        ("d/named", "access ACL→none"),
        ("d/group-below-mask", "access ACL→none"),
    ] {
        let start = format!("{}: ", t.path(p).display()).replace("/mod/:", "/mod:");
        assert!(text.lines().any(|l| l.starts_with(&start) && l.ends_with(what)), "no `{start}…{what}` in:\n{text}");
    }
    assert!(!text.contains("d/plain"), "{text}");

    let out = init(&t, &shared);
    assert_ok(&out);
    // With the Go-shaped tree's `cache` and `cache/download`, which take the group, the
    // setgid bit and the default ACL too.
    assert!(stdout(&out).contains("changed    6 (owner 0, group 2, mode 3, acl 6)"), "{}", stdout(&out));
    for p in ["d/named", "d/group-below-mask"] {
        assert_eq!(xattr(&t.path(p), "system.posix_acl_access"), None, "{p} kept its access ACL");
        assert_attrs(&t.path(p), 0, 3000, 0o664);
    }
    for p in ["", "d"] {
        assert_eq!(xattr(&t.path(p), "system.posix_acl_default").as_deref(), Some(&DEFAULT_ACL_775[..]), "{p}");
    }
    assert_ok(&check(&t, &shared));

    // What anyone creates now is the group's at once, whatever the umask; and what Go
    // makes read-only stays read-only.
    let script = "umask 077 && : > d/new && mkdir d/newdir && : > d/ro && chmod 0444 d/ro && mkdir d/rodir && chmod 0555 d/rodir";
    let out = std::process::Command::new("sh").args(["-c", script]).current_dir(&t.root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_attrs(&t.path("d/new"), 0, 3000, 0o664);
    assert_attrs(&t.path("d/newdir"), 0, 3000, 0o2775);
    assert_attrs(&t.path("d/ro"), 0, 3000, 0o444);
    assert_attrs(&t.path("d/rodir"), 0, 3000, 0o2555);
    assert_eq!(xattr(&t.path("d/new"), "system.posix_acl_access"), None, "a minimal default ACL adds no access ACL");
    assert_ok(&check(&t, &shared));

    // inherit = none: default ACLs are neither required nor removed.
    let out = check(&t, &["--owner", "0", "--group", "3000", "--inherit", "none"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("inherit    none: new entries wait for a repair"), "{}", stdout(&out));
}

/// Issue 11: `--check --path <shared cache> --group G` run by root reported every entry
/// divergent, and `--init` in the same form chowned everything to root.
#[test]
fn root_without_owner_a_shared_cache_of_another_user_is_not_chowned_to_the_invoker() {
    require_root();
    let t = Tree::new();
    write(&t.path("cache/download/x/@v/list"), 0o664);
    write(&t.path("x@v1.0.0/go.mod"), 0o444);
    for p in ["", "cache", "cache/download", "cache/download/x", "cache/download/x/@v", "cache/download/x/@v/list"] {
        chown(&t.path(p), 1001, 3000);
    }
    for p in ["x@v1.0.0", "x@v1.0.0/go.mod"] {
        chown(&t.path(p), 1001, 3000);
    }
    for action in [check as fn(&Tree, &[&str]) -> std::process::Output, init] {
        let out = action(&t, &["--group", "3000"]);
        assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("belongs to uid 1001 throughout") && err.contains("--owner 1001"), "{err}");
        assert!(err.contains("--config"), "{err}");
    }
    assert_eq!(meta(&t.path("x@v1.0.0/go.mod")).uid, 1001, "nothing was chowned");
    assert_ok(&init(&t, &["--owner", "1001", "--group", "3000"]));
    assert_attrs(&t.path("x@v1.0.0/go.mod"), 1001, 3000, 0o444);
}

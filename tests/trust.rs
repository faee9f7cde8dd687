//! The trust boundary (SPEC §6): no name a group member controls — the cache root itself,
//! the caller's environment under sudo, a hard link, a side file — may lead a privileged
//! change outside the cache. Each test is an attack by an unprivileged user, bounded in
//! time, against a root-owned canary outside the cache that must keep its owner, group,
//! mode, change time and content. Each failed on the code before the root was pinned
//! (see the commit that added this file).

mod common;

use common::*;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Something outside every cache that no attack may change.
struct Canary {
    paths: Vec<PathBuf>,
    before: Vec<(Meta, Vec<u8>)>,
}

impl Canary {
    /// A root-owned `0700` directory holding a root-owned `0600` file.
    fn new(dir: &Path) -> Canary {
        mkdir(dir, 0o700);
        write(&dir.join("secret"), 0o600);
        Canary::of(&[dir.to_owned(), dir.join("secret")])
    }

    fn of(paths: &[PathBuf]) -> Canary {
        let before = paths.iter().map(|p| (meta(p), content(p))).collect();
        Canary { paths: paths.to_vec(), before }
    }

    fn assert_intact(&self, context: &str) {
        for (p, before) in self.paths.iter().zip(&self.before) {
            assert_eq!(&(meta(p), content(p)), before, "{context}: {} outside the cache was changed", p.display());
        }
    }
}

fn content(p: &Path) -> Vec<u8> {
    if p.is_dir() {
        Vec::new()
    } else {
        std::fs::read(p).unwrap()
    }
}

/// `cachekeeper ARGS` as root; the run must end on its own within a minute.
fn init(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    cachekeeper(args, env)
}

/// Starts the service on `config` and waits up to 10 s for it to exit by itself; a
/// service that keeps running is killed and `None` comes back.
fn service_exit(config: &Path) -> Option<std::process::Output> {
    let mut child = Command::new(bin("cachekeeper"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn root_a_cache_root_swapped_for_a_symlink_by_its_owner_leads_nowhere() {
    let (_lock, t) = root_tree();
    let canary = Canary::new(&t.base.join("root-only"));
    // The owner's own tree, as in /home/alice/go/pkg/mod: every component is theirs.
    let home = t.base.join("alice");
    let root = home.join("go/pkg/mod");
    for d in [&home, &home.join("go"), &home.join("go/pkg"), &root, &root.join("cache"), &root.join("cache/download")] {
        mkdir(d, 0o755);
        chown(d, 1041, 1041);
    }
    let caches = format!("[[cache]]\npath = \"{}\"\nowner = 1041\ngroup = 3410\n", root.display());
    // Unisolated (as under systemd without a mount unit): an isolated root cannot be
    // renamed at all.
    let d = Daemon::start_with(&t.base, &caches, "", own_mount_namespace);

    // The owner renames the root away and puts a symlink to the canary in its place,
    // then makes the service look: events in the tree and rescans by an operator.
    let target = t.base.join("root-only");
    let script = format!(
        "mv mod mod.away && ln -s {} mod && touch mod.away/cache/x && mkdir -p mod.away/cache/new",
        target.display()
    );
    sh_as(1041, &[], &home.join("go/pkg"), &script);
    for _ in 0..5 {
        d.ctl(&["rescan"]);
        // The root was replaced: the service resolves the path again, refuses the
        // symlink, and says so instead of settling.
        let out = d.ctl(&["sync", "--timeout", "60s"]);
        assert_eq!(code(&out), 1, "{}", stdout(&out));
        assert!(stderr(&out).contains("symlink owned by uid 1041"), "{}", stderr(&out));
    }
    canary.assert_intact("a rescan after the root was swapped");

    // The one-shot follows no such symlink either, spelled directly or as the root.
    for path in [root.clone(), home.join("go/pkg/mod/")] {
        let out = init(&["--init", "--path", path.to_str().unwrap(), "--owner", "1041"], &[]);
        assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("symlink owned by uid 1041") && err.lines().count() == 1, "{err}");
    }
    canary.assert_intact("--init on a symlinked root");

    // A root-owned directory reached through a user's directory is refused too: the
    // user could have put anything there.
    let theirs = t.base.join("bob");
    mkdir(&theirs, 0o755);
    chown(&theirs, 1042, 1042);
    mkdir(&theirs.join("gomodcache"), 0o755);
    let out = init(&["--init", "--path", theirs.join("gomodcache").to_str().unwrap(), "--owner", "1042"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("belongs to uid 0 but lies in a directory of uid 1042"), "{}", stderr(&out));
}

#[test]
fn root_sudo_never_takes_the_cache_from_outside_the_callers_home() {
    let (_lock, t) = root_tree();
    let canary = Canary::new(&t.base.join("root-only"));
    let home = t.base.join("carol");
    for d in [&home, &home.join(".config"), &home.join(".config/go"), &home.join("go"), &home.join("go/pkg")] {
        mkdir(d, 0o755);
        chown(d, 1051, 1051);
    }
    let _user = TempUser::new(1051, &home);
    let sudo = [("SUDO_UID", "1051"), ("SUDO_GID", "1051")];
    let victim = t.base.join("root-only");

    // 1. Through the environment.
    let mut env = sudo.to_vec();
    env.push(("GOMODCACHE", victim.to_str().unwrap()));
    let out = init(&["--init"], &env);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("beneath your home"), "{}", stderr(&out));
    canary.assert_intact("GOMODCACHE outside the home");

    // 2. Through the caller's `go env -w` file.
    let env_file = home.join(".config/go/env");
    std::fs::write(&env_file, format!("GOMODCACHE={}\n", victim.display())).unwrap();
    chown(&env_file, 1051, 1051);
    let out = init(&["--init"], &sudo);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    canary.assert_intact("the go env file");
    std::fs::remove_file(&env_file).unwrap();

    // 3. Through a symlinked ~/go/pkg/mod.
    symlink(&victim, home.join("go/pkg/mod")).unwrap();
    let out = init(&["--init"], &sudo);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    canary.assert_intact("a symlinked ~/go/pkg/mod");

    // 4. A go env file that is itself a symlink to a file of root's is not read.
    symlink(t.base.join("root-only/secret"), &env_file).unwrap();
    std::fs::remove_file(home.join("go/pkg/mod")).unwrap();
    let out = init(&["--check"], &sudo);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("go/pkg/mod"), "the default path, not the linked file: {}", stderr(&out));
    canary.assert_intact("a symlinked go env file");
}

#[test]
fn root_system_directories_homes_and_symlinked_spellings_are_refused() {
    let (_lock, t) = root_tree();
    let alice = t.base.join("alice-home");
    mkdir(&alice, 0o755);
    chown(&alice, 1061, 1061);
    let _user = TempUser::new(1061, &alice);
    symlink("/etc", t.base.join("etc-link")).unwrap();
    let mut refused: Vec<String> =
        ["/etc/ssh", "/usr/bin", "/usr/lib", "/var/lib/dpkg", "/var/log", "/etc", "/usr/../etc", "/var/cache/../lib/"]
            .iter()
            .map(|p| p.to_string())
            .collect();
    refused.push(alice.display().to_string());
    refused.push(t.base.join("etc-link").display().to_string());
    refused.push(t.base.join("etc-link/ssh").display().to_string());
    // --check only: a mistake here must never change the host.
    for path in &refused {
        if !Path::new(path).exists() {
            continue;
        }
        let out = init(&["--check", "--path", path, "--owner", "1061"], &[]);
        assert_eq!(code(&out), 2, "{path} was accepted: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("refusing") && err.lines().count() == 1, "{path}: {err}");
    }
    // A directory that is no Go cache needs --force.
    let data = t.base.join("data");
    write(&data.join("notes.txt"), 0o644);
    let out = init(&["--check", "--path", data.to_str().unwrap(), "--owner", "0"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = init(&["--check", "--force", "--path", data.to_str().unwrap(), "--owner", "0"], &[]);
    assert!(matches!(code(&out), 0 | 1), "{}", stderr(&out));
}

/// Links a file from outside into the cache under a name the service repairs, and
/// unlinks it again, as fast as it can: while a name is being unlinked the kernel
/// reports nlink 1, so only isolation keeps the service off the outside inode.
const LINK_RACE: &str = r#"
import errno, os, sys, time
os.chdir(sys.argv[1])
outside, end = sys.argv[2], time.time() + float(sys.argv[3])
linked = refused = 0
while time.time() < end:
    with open("a", "w") as f:
        f.write("x")
    try:
        os.link(outside, "b")
        linked += 1
        os.rename("b", "a")
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        refused += 1
    try:
        os.unlink("a")
    except FileNotFoundError:
        pass
print(linked, refused)
"#;

#[test]
fn root_no_hard_link_from_outside_enters_a_cache_the_service_keeps() {
    let (_lock, t) = root_tree();
    // The cache and its parent (which the service isolates) inside the temp tree; the
    // canary elsewhere on the same filesystem: another user's file the member may write,
    // which fs.protected_hardlinks=1 lets them link.
    let root = t.base.join("caches/mod");
    mkdir(&root.join("cache/download/race"), 0o2775);
    chown(&root.join("cache/download/race"), 1071, 3710);
    let outside = tempfile::Builder::new().prefix("ck-outside-").tempdir().unwrap();
    let victim = outside.path().join("theirs");
    write(&victim, 0o666);
    chown(&victim, 1072, 1072);
    let canary = Canary::of(std::slice::from_ref(&victim));
    let caches = format!("[[cache]]\npath = \"{}\"\nowner = 1071\ngroup = 3710\n", root.display());
    let d = Daemon::start(&t.base, &caches, "");
    let s = d.status();
    assert_eq!(s["caches"][0]["isolated"], true, "the service isolates its cache when it may: {s}");

    let mut attack = setpriv(1073, &[3710]);
    // Debian's python3, which every user may run (.ci/run installs it).
    attack.args(["/usr/bin/python3", "-c", LINK_RACE]).arg(root.join("cache/download/race")).arg(&victim).arg("5");
    let attacker = attack.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        d.ctl(&["rescan"]);
    }
    let out = attacker.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counts = String::from_utf8_lossy(&out.stdout);
    let (linked, refused) = counts.trim().split_once(' ').unwrap();
    d.sync();
    canary.assert_intact("a hard-link race against the service");
    assert_eq!(linked, "0", "a file from outside was linked into the cache ({refused} refused)");
    assert_ne!(refused, "0", "the attack never ran");
}

#[test]
fn root_init_isolate_stops_hard_links_and_says_so() {
    let (_lock, t) = root_tree();
    let root = t.base.join("caches/mod");
    mkdir(&root.join("cache/download"), 0o755);
    let outside = t.base.join("outside-file");
    write(&outside, 0o644);
    // Not isolated yet: a link from elsewhere on the filesystem works.
    std::fs::hard_link(&outside, root.join("before")).unwrap();
    std::fs::remove_file(root.join("before")).unwrap();
    let out = init(&["--init", "--isolate", "--path", root.to_str().unwrap(), "--owner", "0"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("isolated") && stderr(&out).contains("fstab"), "{}", stderr(&out));
    let e = std::fs::hard_link(&outside, root.join("after")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
    // Run again: no second mount is stacked on the first.
    let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap().matches(t.base.to_str().unwrap()).count();
    let before = mounts();
    let out = init(&["--init", "--isolate", "--path", root.to_str().unwrap(), "--owner", "0"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mounts(), before);
}

/// Regression: isolation bind-mounted the root's parent, so a member who could write
/// beside the root linked another user's file from there into the cache. The mount is
/// exactly the root now: a link from a sibling fails like one from anywhere else.
#[test]
fn root_isolation_is_exactly_the_root_so_nothing_beside_it_links_in() {
    let (_lock, t) = root_tree();
    let root = t.base.join("caches/mod");
    mkdir(&root.join("cache/download"), 0o755);
    let sibling = t.base.join("caches/teamb");
    write(&sibling.join("theirs"), 0o666);
    let out = init(&["--init", "--isolate", "--path", root.to_str().unwrap(), "--owner", "0"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mounts_under(&t.base), vec![root.clone()], "the mount is the root, and only the root");
    let e = std::fs::hard_link(sibling.join("theirs"), root.join("cache/download/theirs")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "a sibling's file was linked into the cache: {e}");
    assert!(stderr(&out).contains(&format!("isolated {}", root.display())), "{}", stderr(&out));
}

/// Regression: `--check --isolate` was accepted and mounted; a check changes nothing.
#[test]
fn root_check_with_isolate_is_refused_and_mounts_nothing() {
    require_root();
    let t = Tree::new();
    let out = init(&["--check", "--isolate", "--path", t.root_str(), "--owner", "0"], &[]);
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--isolate"), "{}", stderr(&out));
    assert_eq!(mounts_under(&t.base), Vec::<PathBuf>::new());
}

/// Waits up to 10 s for the mounts at or below `dir` to be `want`.
fn wait_mounts(dir: &Path, want: usize, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while mounts_under(dir).len() != want {
        assert!(Instant::now() < deadline, "{context}: mounts below {}: {:?}", dir.display(), mounts_under(dir));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: a service started as root left its bind mount behind when it stopped, and
/// each start stacked another. Its mount ends with it: on SIGTERM, and on SIGKILL too.
#[test]
fn root_the_services_mount_ends_with_it_and_is_never_stacked() {
    let (_lock, t) = root_tree();
    let caches = format!("[[cache]]\npath = \"{}\"\nowner = 0\ngroup = 0\n", t.root.display());
    let mut d = Daemon::start(&t.base, &caches, "");
    assert_eq!(mounts_under(&t.base), vec![t.root.clone()], "the service isolates exactly its root");
    let s = d.status();
    assert_eq!(s["caches"][0]["isolated"], true, "{s}");
    let said = s["caches"][0]["isolation"].as_str().unwrap_or_default().to_owned();
    assert!(said.contains(t.root_str()) && said.contains("until the service stops"), "{said}");
    assert!(d.stop().success());
    wait_mounts(&t.base, 0, "after SIGTERM");

    let d = Daemon::start(&t.base, &caches, "");
    assert_eq!(mounts_under(&t.base).len(), 1, "a restart stacks no second mount");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid()), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_mounts(&t.base, 0, "after SIGKILL");
}

#[test]
fn root_side_files_in_a_members_directory_never_reach_outside() {
    let (_lock, t) = root_tree();
    write(&t.path("divergent"), 0o600);
    let rc = t.base.join("root-rc");
    write(&rc, 0o600);
    let canary = Canary::of(std::slice::from_ref(&rc));
    // A member owns the directories the audit log and the metrics go to, and plants
    // symlinks where the service writes (the metrics' old temporary name included).
    let logs = t.base.join("member-logs");
    mkdir(&logs, 0o777);
    chown(&logs, 1081, 1081);
    sh_as(1081, &[], &logs, &format!("ln -s {rc} audit.jsonl", rc = rc.display()));
    let metrics = t.base.join("member-metrics");
    mkdir(&metrics, 0o777);
    chown(&metrics, 1081, 1081);
    let plant = format!("ln -s {rc} ck.prom.tmp && ln -s {rc} .ck.prom.tmp", rc = rc.display());
    sh_as(1081, &[], &metrics, &plant);

    let caches = format!("[[cache]]\npath = \"{}\"\nowner = 0\n", t.root_str());
    let audit = format!("audit_log = \"{}\"\n", logs.join("audit.jsonl").display());
    Daemon::write_config(&t.base, &caches, &audit);
    match service_exit(&t.base.join("ck.toml")) {
        Some(out) => {
            let err = stderr(&out);
            assert!(err.contains("daemon.audit_log") && err.contains("audit.jsonl"), "{err}");
        }
        None => panic!("the service started with an audit log that is a member's symlink"),
    }
    canary.assert_intact("the audit log");

    // A directory a member owns is refused outright, as the socket's is: whoever can
    // write there can swap a name between the service's look and its write.
    let extra = format!("metrics_textfile = \"{}\"\n", metrics.join("ck.prom").display());
    Daemon::write_config(&t.base, &caches, &extra);
    match service_exit(&t.base.join("ck.toml")) {
        Some(out) => {
            let err = stderr(&out);
            assert!(err.contains("daemon.metrics_textfile") && err.contains("uid 1081"), "{err}");
        }
        None => panic!("the service started with its metrics textfile in a member's directory"),
    }
    assert!(!metrics.join("ck.prom").exists());
    canary.assert_intact("the metrics textfile");
}

#[test]
fn root_a_socket_directory_a_member_can_write_is_refused() {
    let (_lock, t) = root_tree();
    let rc = t.base.join("root-rc");
    write(&rc, 0o600);
    let canary = Canary::of(std::slice::from_ref(&rc));
    let run = t.base.join("run");
    mkdir(&run, 0o755);
    chown(&run, 1091, 1091);
    let caches = format!("[[cache]]\npath = \"{}\"\nowner = 0\n", t.root_str());
    let socket = Daemon::write_config(&t.base, &caches, "");
    if let Some(out) = service_exit(&t.base.join("ck.toml")) {
        let err = stderr(&out);
        assert!(err.contains("daemon.socket") && err.contains("uid 1091"), "{err}");
        canary.assert_intact("the socket directory");
        return;
    }
    // Had it started: the member swaps the sync marker directory for one of theirs whose
    // marker names lead to the canary, and every `sync` truncates it.
    let mut d = Daemon::start(&t.base, &caches, "");
    let mine = t.base.join("member-sync");
    mkdir(&mine.join("0"), 0o777);
    let mut plant = format!("mv {s}.sync {s}.away && ln -s {m} {s}.sync", s = socket.display(), m = mine.display());
    for token in 1..50 {
        plant.push_str(&format!(" && ln -s {} {}/0/{token}", rc.display(), mine.display()));
    }
    sh_as(1091, &[], &run, &plant);
    for _ in 0..5 {
        d.ctl(&["sync", "--timeout", "1s"]);
    }
    d.stop();
    canary.assert_intact("sync markers in a member's directory");
    panic!("the service started with its socket in a directory uid 1091 can write");
}

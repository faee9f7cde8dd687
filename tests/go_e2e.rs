//! End to end with the real Go toolchain (Debian's `golang-go`) and a `file://`
//! GOPROXY generated here: the Dockerfile case (root downloads, uid 1001 builds) and
//! the shared case (two uids in one group add modules to one cache). Needs root.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const MODULES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const VERSIONS: [&str; 2] = ["v1.0.0", "v1.1.0"];

fn go_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("go")).find(|p| p.is_file()));
    found.expect("the end-to-end tests need the Go toolchain: `apt-get install golang-go` (.ci/run installs it)")
}

/// A `file://` module proxy with small compilable modules, two versions each.
fn write_proxy(dir: &Path) {
    write_modules(dir, &MODULES);
}

/// Adds modules `example.com/<name>` in `VERSIONS` to the proxy at `dir`.
fn write_modules<S: AsRef<str>>(dir: &Path, names: &[S]) {
    for m in names {
        let m = m.as_ref();
        let at = dir.join(format!("example.com/{m}/@v"));
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join("list"), VERSIONS.join("\n") + "\n").unwrap();
        for v in VERSIONS {
            let gomod = format!("module example.com/{m}\n\ngo 1.19\n");
            let source = format!("package {m}\n\nfunc Name() string {{ return \"{m} {v}\" }}\n");
            std::fs::write(
                at.join(format!("{v}.info")),
                format!("{{\"Version\":\"{v}\",\"Time\":\"2024-01-01T00:00:00Z\"}}"),
            )
            .unwrap();
            std::fs::write(at.join(format!("{v}.mod")), &gomod).unwrap();
            let zip_file = std::fs::File::create(at.join(format!("{v}.zip"))).unwrap();
            let mut zip = zip::ZipWriter::new(zip_file);
            let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            for (name, body) in [("go.mod", &gomod), (&format!("{m}.go") as &str, &source)] {
                zip.start_file(format!("example.com/{m}@{v}/{name}"), options).unwrap();
                zip.write_all(body.as_bytes()).unwrap();
            }
            zip.finish().unwrap();
        }
    }
}

/// A main package that imports `deps` (module, version), owned by `uid`.
fn write_project(dir: &Path, uid: u32, deps: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut gomod = String::from("module example.com/app\n\ngo 1.19\n\nrequire (\n");
    let mut main = String::from("package main\n\nimport (\n\t\"fmt\"\n");
    for (m, v) in deps {
        gomod += &format!("\texample.com/{m} {v}\n");
        main += &format!("\t\"example.com/{m}\"\n");
    }
    gomod += ")\n";
    main += ")\n\nfunc main() {\n";
    for (m, _) in deps {
        main += &format!("\tfmt.Println({m}.Name())\n");
    }
    main += "}\n";
    std::fs::write(dir.join("go.mod"), gomod).unwrap();
    std::fs::write(dir.join("main.go"), main).unwrap();
    for p in [dir.to_owned(), dir.join("go.mod"), dir.join("main.go")] {
        chown(&p, uid, uid);
    }
}

/// A temp tree with a generated proxy and an empty module cache.
struct Go {
    t: Tree,
    proxy: PathBuf,
    modcache: PathBuf,
    /// The go command the members run.
    bin: PathBuf,
}

impl Go {
    fn new() -> Go {
        let t = Tree::new();
        let proxy = t.base.join("proxy");
        write_proxy(&proxy);
        let modcache = t.base.join("gomodcache");
        Go { t, proxy, modcache, bin: go_binary() }
    }

    /// A project in `name` that needs `deps`, owned by `uid`.
    fn project(&self, name: &str, uid: u32, deps: &[(&str, &str)]) -> PathBuf {
        let dir = self.t.base.join(name);
        write_project(&dir, uid, deps);
        dir
    }

    /// `go build` in `project` as `uid` (root when 0) with the extra `groups`, each
    /// user with its own HOME and GOCACHE, all sharing the one module cache.
    fn build(&self, project: &Path, uid: u32, groups: &[u32]) -> Output {
        let home = self.t.base.join(format!("home-{uid}"));
        if !home.exists() {
            mkdir(&home, 0o755);
            chown(&home, uid, uid);
        }
        let mut cmd = if uid == 0 {
            Command::new(go_binary())
        } else {
            let mut c = setpriv(uid, groups);
            c.arg(go_binary());
            c
        };
        cmd.args(["build", "-o", "/dev/null", "."])
            .current_dir(project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("GOPATH", home.join("go"))
            .env("GOMODCACHE", &self.modcache)
            .env("GOCACHE", home.join("gocache"))
            .env("GOPROXY", format!("file://{}", self.proxy.display()))
            .env("GOSUMDB", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0");
        // umask 022, as in a Dockerfile RUN or a login shell: new entries are not
        // group-writable until cachekeeper makes them so.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let out = run(cmd, Duration::from_secs(300));
        nix::sys::stat::umask(old);
        out
    }
}

fn assert_built(out: &Output, who: &str) {
    assert_eq!(code(out), 0, "{who}: go build failed:\n{}", stderr(out));
}

fn init(modcache: &Path, flags: &[&str]) {
    let mut args = vec!["--init", "--path", modcache.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = cachekeeper(&args, &[]);
    assert_eq!(code(&out), 0, "cachekeeper --init failed:\n{}{}", stdout(&out), stderr(&out));
}

/// Go's extracted module trees of `names` (any version) stay read-only: no write bit on
/// their directories or files.
fn assert_read_only_trees(modcache: &Path, names: &[impl AsRef<str>]) {
    let mut seen = 0;
    for m in names.iter().map(AsRef::as_ref) {
        for v in VERSIONS {
            let tree = modcache.join(format!("example.com/{m}@{v}"));
            if !tree.exists() {
                continue;
            }
            for p in [tree.clone(), tree.join("go.mod"), tree.join(format!("{m}.go"))] {
                let mode = meta(&p).mode;
                assert_eq!(mode & 0o222, 0, "{} is writable ({mode:04o})", p.display());
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no extracted module tree found");
}

#[test]
fn root_dockerfile_case_root_downloads_then_uid_1001_builds() {
    require_root();
    let go = Go::new();
    let modcache = go.modcache.clone();

    // RUN go mod download (as root), as in a Dockerfile before USER 1001.
    let p_root = go.project("p-root", 0, &[("alpha", "v1.0.0"), ("beta", "v1.0.0")]);
    assert_built(&go.build(&p_root, 0, &[]), "root");

    // USER 1001 needs a module that is not in the cache yet.
    let p_user = go.project("p-1001", 1001, &[("alpha", "v1.0.0"), ("gamma", "v1.0.0")]);
    let denied = go.build(&p_user, 1001, &[]);
    assert_ne!(code(&denied), 0, "uid 1001 should not be able to write into a root-owned cache");
    assert!(stderr(&denied).contains("permission denied"), "{}", stderr(&denied));

    init(&modcache, &["--owner", "1001:1001", "--model", "private"]);
    assert_built(&go.build(&p_user, 1001, &[]), "uid 1001 after --init");
    assert_read_only_trees(&modcache, &MODULES);
}

#[test]
fn root_shared_case_two_uids_in_one_group_add_modules() {
    require_root();
    let go = Go::new();
    let modcache = go.modcache.clone();
    let (group, a, b) = (3100, 1101, 1102);
    // Without inherited ACLs: the repair-only behaviour, where what a member creates
    // waits for a repair (filesystems without POSIX ACLs, `inherit = "none"`).
    let flags = ["--group", "3100", "--model", "shared", "--inherit", "none"];

    let p_root = go.project("p-root", 0, &[("alpha", "v1.0.0"), ("beta", "v1.0.0")]);
    assert_built(&go.build(&p_root, 0, &[]), "root");
    init(&modcache, &flags);

    // A adds a new module.
    let p_a = go.project("p-a", a, &[("alpha", "v1.0.0"), ("gamma", "v1.0.0")]);
    assert_built(&go.build(&p_a, a, &[group]), "uid A");

    // B needs a new version inside A's directories (cache/download/example.com/gamma/@v).
    // Without cachekeeper that fails: A's umask left them 0755.
    let p_b = go.project("p-b", b, &[("gamma", "v1.1.0"), ("delta", "v1.0.0")]);
    let denied = go.build(&p_b, b, &[group]);
    assert_ne!(code(&denied), 0, "B wrote into A's 0755 directories");
    assert!(stderr(&denied).contains("permission denied"), "{}", stderr(&denied));

    init(&modcache, &flags);
    assert_built(&go.build(&p_b, b, &[group]), "uid B after --init");
    init(&modcache, &flags);

    // And A again, with a version B's run created the directories for.
    let p_a2 = go.project("p-a2", a, &[("delta", "v1.1.0"), ("beta", "v1.1.0")]);
    assert_built(&go.build(&p_a2, a, &[group]), "uid A, second project");
    init(&modcache, &flags);

    assert_read_only_trees(&modcache, &MODULES);
    let mut check = vec!["--check", "--path", modcache.to_str().unwrap()];
    check.extend_from_slice(&flags);
    let out = cachekeeper(&check, &[]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let gamma = meta(&modcache.join("cache/download/example.com/gamma/@v"));
    assert_eq!((gamma.gid, gamma.mode), (group, 0o2775));
}

#[test]
fn root_service_keeps_a_shared_cache_usable_between_uids() {
    require_root();
    let _lock = sysctl_lock(false);
    let go = Go::new();
    let modcache = go.modcache.clone();
    let (group, a, b) = (3100, 1101, 1102);
    let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {group}\nmodel = \"shared\"\n", modcache.display());
    let d = Daemon::start(&go.t.base, &caches, "");

    let p_root = go.project("p-root", 0, &[("alpha", "v1.0.0"), ("beta", "v1.0.0")]);
    assert_built(&go.build(&p_root, 0, &[]), "root");
    d.sync();

    let p_a = go.project("p-a", a, &[("alpha", "v1.0.0"), ("gamma", "v1.0.0")]);
    assert_built(&go.build(&p_a, a, &[group]), "uid A");
    d.sync();

    // A new version inside A's directories, and a new module.
    let p_b = go.project("p-b", b, &[("gamma", "v1.1.0"), ("delta", "v1.0.0")]);
    assert_built(&go.build(&p_b, b, &[group]), "uid B");
    d.sync();

    let p_a2 = go.project("p-a2", a, &[("delta", "v1.1.0"), ("beta", "v1.1.0")]);
    assert_built(&go.build(&p_a2, a, &[group]), "uid A, second project");
    d.sync();

    d.assert_compliant();
    assert_read_only_trees(&modcache, &MODULES);
    let gamma = meta(&modcache.join("cache/download/example.com/gamma/@v"));
    assert_eq!((gamma.gid, gamma.mode & 0o2070), (group, 0o2070));
}

const GROUP: u32 = 3100;

/// Runs `cmds` at the same moment, each bounded by `limit`, and returns their outputs.
fn run_together(cmds: Vec<Command>, limit: Duration) -> Vec<Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = cmds.into_iter().map(|cmd| s.spawn(move || run(cmd, limit))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

impl Go {
    /// `go ARGS` in `dir` as `uid` in group `GROUP`, with `umask`, sharing the module
    /// cache and, when given, the build cache `gocache` (else a private one in HOME).
    fn go_as(&self, uid: u32, umask: u32, dir: &Path, args: &[&str], gocache: Option<&Path>) -> Command {
        let home = self.t.base.join(format!("home-{uid}"));
        if !home.exists() {
            mkdir(&home, 0o755);
            chown(&home, uid, uid);
        }
        let mut cmd = setpriv(uid, &[GROUP]);
        cmd.args(["sh", "-c", &format!("umask {umask:03o} && exec \"$0\" \"$@\"")]).arg(&self.bin).args(args);
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("GOPATH", home.join("go"))
            .env("GOMODCACHE", &self.modcache)
            .env("GOCACHE", gocache.map_or_else(|| home.join("gocache"), Path::to_path_buf))
            .env("GOPROXY", format!("file://{}", self.proxy.display()))
            .env("GOSUMDB", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0");
        cmd
    }

    /// Round `r`: two members download overlapping module sets at once.
    fn download_round(&self, r: usize, umasks: [u32; 2]) -> Vec<(String, Output)> {
        let m = |name: &str, v: &str| format!("example.com/r{r}{name}@{v}");
        let sets = [
            vec![m("a", "v1.0.0"), m("b", "v1.0.0"), m("c", "v1.0.0"), m("b", "v1.1.0")],
            vec![m("b", "v1.0.0"), m("c", "v1.0.0"), m("d", "v1.0.0"), m("c", "v1.1.0")],
        ];
        let who = [(1101, umasks[0]), (1102, umasks[1])];
        let cmds = who
            .iter()
            .zip(&sets)
            .map(|(&(uid, umask), set)| {
                let mut args = vec!["mod", "download"];
                args.extend(set.iter().map(String::as_str));
                let home = self.t.base.join(format!("home-{uid}"));
                mkdir(&home, 0o755);
                chown(&home, uid, uid);
                self.go_as(uid, umask, &home, &args, None)
            })
            .collect();
        let labels = who.map(|(uid, umask)| format!("round {r}, uid {uid} (umask {umask:03o}), go mod download"));
        labels.into_iter().zip(run_together(cmds, Duration::from_secs(120))).collect()
    }
}

/// Modules for `rounds` rounds: `r<i>a` .. `r<i>d`, so that every round downloads anew.
fn round_modules(rounds: usize) -> Vec<String> {
    (0..rounds).flat_map(|r| ["a", "b", "c", "d"].map(|m| format!("r{r}{m}"))).collect()
}

/// The failed commands among `outs`, with their errors, one block each.
fn failures(outs: &[(String, Output)]) -> Vec<String> {
    outs.iter().filter(|(_, o)| code(o) != 0).map(|(label, o)| format!("{label}:\n{}", stderr(o))).collect()
}

/// Issue 11: two members' concurrent `go mod download`s used to fail in 8-10 of 10
/// rounds with the service healthy (`open …/@v/v1.0.0.lock: permission denied`): any
/// repair after the fact loses against a second user who opens a file microseconds after
/// the first created it. Default ACLs make new entries group-usable at creation.
#[test]
fn root_two_members_download_overlapping_modules_at_once_with_umask_022_and_077() {
    require_root();
    let _lock = sysctl_lock(false);
    let go = Go::new();
    let rounds = 10;
    let names = round_modules(rounds);
    write_modules(&go.proxy, &names);
    let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {GROUP}\n", go.modcache.display());
    let d = Daemon::start(&go.t.base, &caches, "");

    let mut failed = Vec::new();
    for r in 0..rounds {
        failed.extend(failures(&go.download_round(r, [0o022, 0o077])));
    }
    d.sync();
    assert!(failed.is_empty(), "{} of {} go commands failed:\n{}", failed.len(), 2 * rounds, failed.join("\n"));
    d.assert_compliant();
    assert_read_only_trees(&go.modcache, &names);
    let status = d.status();
    assert_eq!(status["caches"][0]["inheritance"], "acl", "{status}");
}

/// Issue 11, the build cache: concurrent `go build`s of the same packages as different
/// members, with umask 022 and 077, sharing one GOCACHE (`open …/gocache/…-d: permission
/// denied`, then a misleading `package fmt is not in std`). A GOCACHE needs no rules of
/// its own: Go writes its entries 0666 & ~umask and its directories 0777 & ~umask, so
/// the shared model and its default ACL cover it.
#[test]
fn root_four_members_build_at_once_sharing_a_gocache() {
    require_root();
    let _lock = sysctl_lock(false);
    let go = Go::new();
    let rounds = 3;
    let names = round_modules(rounds);
    write_modules(&go.proxy, &names);
    let gocache = go.t.base.join("gocache");
    let caches = format!(
        "[[cache]]\npath = \"{}\"\ngroup = {GROUP}\n\n[[cache]]\npath = \"{}\"\ngroup = {GROUP}\n",
        go.modcache.display(),
        gocache.display()
    );
    let d = Daemon::start(&go.t.base, &caches, "");

    let mut failed = Vec::new();
    for r in 0..rounds {
        let members = [(1101, 0o022), (1102, 0o077), (1103, 0o022), (1104, 0o077)];
        let mut cmds = Vec::new();
        let mut labels = Vec::new();
        for (i, &(uid, umask)) in members.iter().enumerate() {
            // Every project needs the round's modules but one: the same packages are
            // compiled and cached by several members at once.
            let deps: Vec<(String, &str)> = ["a", "b", "c", "d"]
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, m)| (format!("r{r}{m}"), "v1.0.0"))
                .collect();
            let deps: Vec<(&str, &str)> = deps.iter().map(|(m, v)| (m.as_str(), *v)).collect();
            let dir = go.project(&format!("p-{r}-{uid}"), uid, &deps);
            let mut cmd = go.go_as(uid, umask, &dir, &["build", "-o", "/dev/null", "."], Some(&gocache));
            cmd.env("GOFLAGS", "-mod=mod");
            cmds.push(cmd);
            labels.push(format!("round {r}, uid {uid} (umask {umask:03o}), go build"));
        }
        let outs: Vec<(String, Output)> =
            labels.into_iter().zip(run_together(cmds, Duration::from_secs(180))).collect();
        failed.extend(failures(&outs));
    }
    d.sync();
    assert!(failed.is_empty(), "{} of {} go builds failed:\n{}", failed.len(), 4 * rounds, failed.join("\n"));
    d.assert_compliant();
    assert!(gocache.join("trim.txt").exists(), "Go did not use the shared GOCACHE");
    let status = d.status();
    assert_eq!(status["caches"][1]["inheritance"], "acl", "{status}");
}

#[cfg(target_os = "linux")]
/// Where the filesystem has no POSIX ACLs (ramfs has no xattrs at all), the cache is
/// repair only: `--init`, `status` and `doctor` say so, doctor tells a member with umask
/// 022 to set 002, and with that umask concurrent downloads work.
#[test]
fn root_a_cache_on_a_filesystem_without_acls_is_repair_only_and_doctor_says_which_umask() {
    require_root();
    let _lock = sysctl_lock(false);
    let go = Go::new();
    let mount = go.t.base.join("ramfs");
    mkdir(&mount, 0o755);
    nix::mount::mount(Some("ramfs"), &mount, Some("ramfs"), nix::mount::MsFlags::empty(), Some("mode=755")).unwrap();
    let _unmount = MountGuard(mount.clone());
    let go = Go { modcache: mount.join("gomodcache"), ..go };
    let rounds = 3;
    let names = round_modules(rounds);
    write_modules(&go.proxy, &names);
    let root = go.modcache.to_str().unwrap();

    let out = cachekeeper(&["--init", "--path", root, "--group", "3100"], &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("inherit    repair only: the filesystem has no POSIX ACLs"), "{}", stdout(&out));
    assert!(stdout(&out).contains("umask 002"), "{}", stdout(&out));
    let out = cachekeeper(&["--check", "--json", "--path", root, "--group", "3100"], &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["caches"][0]["inheritance"], "repair_only", "{json}");

    let caches = format!("[[cache]]\npath = \"{root}\"\ngroup = {GROUP}\n");
    let d = Daemon::start(&go.t.base, &caches, "");
    let status = d.status();
    assert_eq!(status["caches"][0]["inheritance"], "repair_only", "{status}");
    let text = stdout(&d.ctl(&["status"]));
    assert!(text.contains("repair only"), "{text}");

    // doctor, run with a umask that takes w from the group.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 022 && exec \"$0\" \"$@\""]).arg(bin("cachekeeperctl"));
    cmd.arg("--socket").arg(&d.socket).args(["doctor", "--config", d.config.to_str().unwrap()]);
    let text = stdout(&run(cmd, Duration::from_secs(60)));
    let line = |check: &str| {
        text.lines()
            .find(|l| l.contains(&format!("] {check}")))
            .unwrap_or_else(|| panic!("no {check}:\n{text}"))
            .to_owned()
    };
    let inheritance = line("inheritance");
    assert!(inheritance.starts_with("[WARN]") && inheritance.contains("repair only"), "{text}");
    let umask = line("umask");
    assert!(umask.starts_with("[WARN]") && umask.contains("0022") && umask.contains("set umask 002"), "{text}");

    // The documented way to live with it: members use umask 002.
    let mut failed = Vec::new();
    for r in 0..rounds {
        failed.extend(failures(&go.download_round(r, [0o002, 0o002])));
    }
    d.sync();
    assert!(failed.is_empty(), "with umask 002 {} go commands failed:\n{}", failed.len(), failed.join("\n"));
    d.assert_compliant();
}

/// `go clean -modcache` by a member removes the root too, which needs write access to
/// the root's parent. With `writable = true` the parent cachekeeper creates is the
/// group's (setgid, group-writable, not sticky), and the service creates the root again.
/// That is so where the root is not isolated (here: the service in a mount namespace of
/// its own, as under systemd without the mount unit).
#[test]
fn root_go_clean_modcache_by_a_member_with_writable_true() {
    require_root();
    let _lock = sysctl_lock(false);
    let go = Go::new();
    let go = Go { modcache: go.t.base.join("shared/gomodcache"), ..go };
    let names = round_modules(1);
    write_modules(&go.proxy, &names);
    let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {GROUP}\nwritable = true\n", go.modcache.display());
    let d = Daemon::start_with(&go.t.base, &caches, "", own_mount_namespace);
    let parent = meta(&go.t.base.join("shared"));
    assert_eq!((parent.gid, parent.mode), (GROUP, 0o2775), "the parent cachekeeper created");

    assert!(failures(&go.download_round(0, [0o022, 0o077])).is_empty());
    d.sync();
    d.assert_compliant();

    let home = go.t.base.join("home-1102");
    let out = run(go.go_as(1102, 0o022, &home, &["clean", "-modcache"], None), Duration::from_secs(120));
    assert_eq!(code(&out), 0, "go clean -modcache by a member: {}", stderr(&out));
    // Removed with all it held: gone, or already made anew (empty) by the service, which
    // keeps the cache. (The inode number says nothing: ext4 reuses a freed one at once.)
    let left: Vec<_> =
        std::fs::read_dir(&go.modcache).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "go clean -modcache left {left:?} in the root");

    let out = d.ctl(&["rescan"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let root = meta(&go.modcache);
    assert_eq!((root.gid, root.mode), (GROUP, 0o2775), "the service created the root again");
    assert!(failures(&go.download_round(0, [0o077, 0o022])).is_empty());
    d.sync();
    d.assert_compliant();
}

/// An isolated root is a mount point, which no one can remove: `go clean -modcache` by a
/// member empties the cache, then says `unlinkat <root>: device or resource busy` (exit
/// 1). The price of isolation, documented in the README; the cache stays usable and kept.
#[test]
fn root_go_clean_modcache_on_an_isolated_root_empties_it_and_says_busy() {
    require_root();
    let _lock = sysctl_lock(false);
    let go = Go::new();
    let go = Go { modcache: go.t.base.join("shared/gomodcache"), ..go };
    let names = round_modules(1);
    write_modules(&go.proxy, &names);
    let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {GROUP}\nwritable = true\n", go.modcache.display());
    let d = Daemon::start(&go.t.base, &caches, "");
    assert_eq!(d.status()["caches"][0]["isolated"], true);
    assert!(failures(&go.download_round(0, [0o022, 0o077])).is_empty());
    d.sync();

    let home = go.t.base.join("home-1102");
    let out = run(go.go_as(1102, 0o022, &home, &["clean", "-modcache"], None), Duration::from_secs(120));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("device or resource busy"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&go.modcache).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "go clean -modcache left {left:?} in the root");
    d.sync();
    d.assert_compliant();
    assert!(failures(&go.download_round(0, [0o077, 0o022])).is_empty());
    d.sync();
    d.assert_compliant();
}

/// Every Go installed: Debian's default `go` and each `/usr/lib/go-1.N` (.ci/run adds
/// bookworm-backports' 1.21 to 1.23), as (minor version, go command), oldest first.
fn installed_gos() -> Vec<(u32, PathBuf)> {
    let mut found = vec![go_binary()];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        found.extend(dirs.flatten().map(|d| d.path().join("bin/go")).filter(|p| p.is_file()));
    }
    let mut gos: Vec<(u32, PathBuf)> = Vec::new();
    for bin in found {
        let Ok(real) = std::fs::canonicalize(&bin) else { continue };
        if gos.iter().any(|(_, b)| std::fs::canonicalize(b).ok().as_ref() == Some(&real)) {
            continue;
        }
        let out = Command::new(&bin).arg("version").env("GOTOOLCHAIN", "local").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "go version go1.21.13 linux/amd64"
        let minor = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.strip_prefix("go1."))
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next().and_then(|m| m.parse().ok()));
        if let Some(minor) = minor {
            gos.push((minor, bin));
        }
    }
    gos.sort();
    gos
}

/// Tags of the private module's git repository: each round fetches a tag the clone in
/// `cache/vcs` has not seen, so that Go runs `git fetch` in it.
const PRIVATE: &str = "git.example/private/lib.git";

/// A private module served by git only: a bare repository reached through
/// `url.<file://…>.insteadOf` (Go runs `git ls-remote https://git.example/…`, and git
/// rewrites it), with `GOPRIVATE` and `GOPROXY=direct`, as a company's git server is.
struct Private {
    work: PathBuf,
    bare: PathBuf,
    /// git's system configuration for every process of the test (`GIT_CONFIG_SYSTEM`):
    /// where the fix `doctor` prints goes, without touching the machine's /etc/gitconfig.
    system: PathBuf,
}

impl Private {
    fn new(base: &Path) -> Private {
        let p =
            Private { work: base.join("private-src"), bare: base.join("private.git"), system: base.join("gitconfig") };
        // The served repository is root's, and git's ownership check applies to it too
        // (git upload-pack): the test's server is trusted.
        std::fs::write(&p.system, format!("[safe]\n\tdirectory = {}\n", p.bare.display())).unwrap();
        chmod(&p.system, 0o644);
        git(&base.to_path_buf(), &["init", "-q", "-b", "main", p.work.to_str().unwrap()]);
        std::fs::write(p.work.join("go.mod"), format!("module {PRIVATE}\n\ngo 1.19\n")).unwrap();
        p.tag("v1.0.0");
        git(&base.to_path_buf(), &["clone", "-q", "--bare", p.work.to_str().unwrap(), p.bare.to_str().unwrap()]);
        p
    }

    /// A new version, pushed to the served repository.
    fn tag(&self, v: &str) {
        std::fs::write(self.work.join("lib.go"), format!("package lib\n\nfunc Name() string {{ return \"{v}\" }}\n"))
            .unwrap();
        git(&self.work, &["add", "."]);
        git(&self.work, &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", v]);
        git(&self.work, &["tag", v]);
        if self.bare.exists() {
            git(&self.work, &["push", "-q", self.bare.to_str().unwrap(), "main", v]);
        }
    }

    /// The environment of a member fetching it.
    fn env(&self, cmd: &mut Command) {
        cmd.env("GOPRIVATE", "git.example")
            .env("GOPROXY", "direct")
            .env("GIT_CONFIG_SYSTEM", &self.system)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", format!("url.file://{}.insteadOf", self.bare.display()))
            .env("GIT_CONFIG_VALUE_0", "https://git.example/private/lib");
    }
}

fn git(dir: &PathBuf, args: &[&str]) {
    let out = run(
        {
            let mut c = Command::new("git");
            c.args(args).current_dir(dir).env("GIT_CONFIG_NOSYSTEM", "1");
            c
        },
        Duration::from_secs(60),
    );
    assert_eq!(code(&out), 0, "git {args:?}: {}", stderr(&out));
}

impl Go {
    /// `go mod download PRIVATE@v` as `uid`.
    fn fetch_private(&self, private: &Private, uid: u32, v: &str) -> Command {
        let home = self.t.base.join(format!("home-{uid}"));
        let at = format!("{PRIVATE}@{v}");
        let mut cmd = self.go_as(uid, 0o022, &self.t.base, &["mod", "download", &at], None);
        private.env(&mut cmd);
        cmd.current_dir(home);
        cmd
    }

    /// The clones of `cache/vcs` and everything in them, with their owners.
    fn vcs_owners(&self) -> Vec<(PathBuf, u32)> {
        fn walk(p: &Path, out: &mut Vec<(PathBuf, u32)>) {
            out.push((p.to_owned(), std::os::unix::fs::MetadataExt::uid(&std::fs::symlink_metadata(p).unwrap())));
            if std::fs::symlink_metadata(p).unwrap().is_dir() {
                for e in std::fs::read_dir(p).unwrap().flatten() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.modcache.join("cache/vcs")).unwrap().flatten() {
            walk(&e.path(), &mut out);
        }
        out
    }
}

fn assert_ok(out: &Output, who: &str) {
    assert_eq!(code(out), 0, "{who} failed:\n{}", stderr(out));
}

/// Issue 21: with `owner` in the configuration (the README's old sample) the service
/// chowned a member's new clone in `cache/vcs` to that owner, and the member's next
/// fetch of a private module failed: `fatal: detected dubious ownership in repository`.
/// Ownership in cache/vcs is never changed: the member goes on fetching, while the rest
/// of the cache still takes the configured owner.
#[test]
fn root_vcs_clone_of_a_members_private_module_keeps_its_owner_when_the_config_has_owner() {
    require_root();
    let _lock = sysctl_lock(false);
    for (minor, go_command) in installed_gos() {
        let go = Go { bin: go_command, ..Go::new() };
        let private = Private::new(&go.t.base);
        let (owner, a) = (1100, 1101);
        let caches = format!("[[cache]]\npath = \"{}\"\nowner = {owner}\ngroup = {GROUP}\n", go.modcache.display());
        let d = Daemon::start(&go.t.base, &caches, "");

        assert_ok(&run(go.fetch_private(&private, a, "v1.0.0"), Duration::from_secs(120)), "first fetch");
        d.sync();
        for v in ["v1.1.0", "v1.2.0"] {
            private.tag(v);
            let out = run(go.fetch_private(&private, a, v), Duration::from_secs(120));
            assert_ok(&out, &format!("go1.{minor}: uid {a} fetching {v} through its own clone after a sync"));
            d.sync();
        }
        let others: Vec<_> = go.vcs_owners().into_iter().filter(|(_, uid)| *uid != a).collect();
        assert!(others.is_empty(), "go1.{minor}: entries of cache/vcs changed owner: {others:?}");
        let info = meta(&go.modcache.join(format!("cache/download/{PRIVATE}/@v/v1.0.0.info")));
        assert_eq!((info.uid, info.gid), (owner, GROUP), "go1.{minor}: the rest of the cache takes the owner");
        d.assert_compliant();
    }
}

/// Issue 21: git refuses a clone owned by another uid ("dubious ownership"), and
/// cachekeeper must not chown the clone to make it work. Go before 1.21 then fails to
/// fetch through another member's clone; Go 1.21 and later run git with GIT_DIR set,
/// which git does not check. `doctor` and `explain`, run as that member, name the clone
/// and print the exact fix (a failure for Go before 1.21, a warning after); once it is
/// applied, both members fetch new versions one after the other and at the same time,
/// and the clone keeps its first owner.
#[test]
fn root_vcs_two_members_fetch_a_private_module_once_the_fix_doctor_prints_is_applied() {
    require_root();
    let _lock = sysctl_lock(false);
    for (minor, go_command) in installed_gos() {
        let go = Go { bin: go_command, ..Go::new() };
        let private = Private::new(&go.t.base);
        let (a, b) = (1101, 1102);
        let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {GROUP}\n", go.modcache.display());
        let d = Daemon::start(&go.t.base, &caches, "");

        assert_ok(&run(go.fetch_private(&private, a, "v1.0.0"), Duration::from_secs(120)), "uid A's first fetch");
        d.sync();
        private.tag("v1.1.0");
        let stopped = minor < 21;
        if stopped {
            let refused = run(go.fetch_private(&private, b, "v1.1.0"), Duration::from_secs(120));
            assert_ne!(code(&refused), 0, "go1.{minor}: git accepted another uid's clone without safe.directory");
            // git treats a clone it distrusts as no repository at all: Go's error names
            // the clone and "'origin' does not appear to be a git repository", not the
            // cause, which is why doctor and explain name it.
            assert!(stderr(&refused).contains("cache/vcs/"), "go1.{minor}: {}", stderr(&refused));
        }
        // doctor and explain judge by the go command on the member's PATH: this one,
        // alone in a directory of its own, so that git stays the machine's first.
        let gobin = go.t.base.join("gobin");
        mkdir(&gobin, 0o755);
        std::os::unix::fs::symlink(&go.bin, gobin.join("go")).unwrap();
        let path = format!("{}:{}", gobin.display(), std::env::var("PATH").unwrap_or_default());

        // doctor, as B, with B's git configuration.
        let mut doctor = setpriv(b, &[GROUP]);
        doctor.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket);
        doctor.args(["doctor", "--config", d.config.to_str().unwrap()]).env("GIT_CONFIG_SYSTEM", &private.system);
        doctor.env("PATH", &path);
        let text = stdout(&run(doctor, Duration::from_secs(60)));
        let line = text.lines().find(|l| l.contains("] git clones")).unwrap_or_else(|| panic!("no git line:\n{text}"));
        let verdict = if stopped { "[FAIL]" } else { "[WARN]" };
        assert!(line.starts_with(verdict) && line.contains("dubious ownership"), "go1.{minor}: {text}");
        let fix = line.split("Fix: ").nth(1).unwrap_or_else(|| panic!("no fix: {line}")).trim().to_owned();
        // git 2.46 and later take a `/*` prefix; before, each clone is named.
        let git = String::from_utf8_lossy(&Command::new("git").arg("--version").output().unwrap().stdout).into_owned();
        let git: Vec<u32> =
            git.trim().trim_start_matches("git version ").split('.').filter_map(|p| p.parse().ok()).collect();
        let named = if git[..2] >= [2, 46][..] { "*".to_owned() } else { clone_name(&go.modcache) };
        let want = format!("git config --system --add safe.directory '{}/cache/vcs/{named}'", go.modcache.display());
        assert_eq!(fix, want, "go1.{minor}, git {git:?}");

        // explain, as B, on the clone.
        let clone = std::fs::read_dir(go.modcache.join("cache/vcs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .unwrap();
        let mut explain = setpriv(b, &[GROUP]);
        explain.arg(bin("cachekeeperctl")).args(["explain", "--config", d.config.to_str().unwrap()]);
        explain.arg(clone.join("HEAD")).env("GIT_CONFIG_SYSTEM", &private.system).env("PATH", &path);
        let out = run(explain, Duration::from_secs(60));
        assert_eq!(code(&out), if stopped { 1 } else { 0 }, "go1.{minor}: {}", stdout(&out));
        assert!(stdout(&out).contains("  git: git refuses") && stdout(&out).contains(&fix), "{}", stdout(&out));

        // The admin applies the fix exactly as printed.
        let mut admin = Command::new("sh");
        admin.args(["-c", &fix]).env("GIT_CONFIG_SYSTEM", &private.system);
        assert_ok(&run(admin, Duration::from_secs(60)), "the printed fix");

        assert_ok(&run(go.fetch_private(&private, b, "v1.1.0"), Duration::from_secs(120)), "uid B after the fix");
        d.sync();
        for r in 0..3 {
            let (va, vb) = (format!("v1.{}.0", 2 + 2 * r), format!("v1.{}.0", 3 + 2 * r));
            private.tag(&va);
            private.tag(&vb);
            let outs = run_together(
                vec![go.fetch_private(&private, a, &va), go.fetch_private(&private, b, &vb)],
                Duration::from_secs(120),
            );
            for (out, who) in outs.iter().zip(["A", "B"]) {
                assert_ok(out, &format!("go1.{minor}: round {r}, uid {who} fetching at the same time"));
            }
        }
        d.sync();
        let clone_owner = meta(&clone).uid;
        assert_eq!(clone_owner, a, "go1.{minor}: the clone changed owner");
        let mut doctor = setpriv(b, &[GROUP]);
        doctor.arg(bin("cachekeeperctl")).arg("--socket").arg(&d.socket);
        doctor.args(["doctor", "--config", d.config.to_str().unwrap()]).env("GIT_CONFIG_SYSTEM", &private.system);
        let text = stdout(&run(doctor, Duration::from_secs(60)));
        assert!(!text.contains("] git clones"), "doctor still complains after the fix:\n{text}");
        d.assert_compliant();
    }
}

/// The name of the one clone in `cache/vcs`.
fn clone_name(modcache: &Path) -> String {
    let clones: Vec<String> = std::fs::read_dir(modcache.join("cache/vcs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(clones.len(), 1, "{clones:?}");
    clones[0].clone()
}

/// The version of the toolchain the fake `golang.org/toolchain` module carries.
const FAKE_TOOLCHAIN: &str = "go1.99.0";

/// Adds to the proxy at `dir` a `golang.org/toolchain` module laid out like Go's
/// (cmd/distpack): `bin/go` and `bin/gofmt`, `pkg/tool/linux_amd64/*`, and the
/// `go.mod` files renamed `_go.mod` (golang/go#60847). Module zips carry no modes:
/// Go extracts every file 0444, and its first use makes the commands executable.
/// `bin/go` is a script that says which toolchain it is.
fn write_fake_toolchain(dir: &Path) -> String {
    let version = format!("v0.0.1-{FAKE_TOOLCHAIN}.linux-amd64");
    let at = dir.join("golang.org/toolchain/@v");
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join("list"), format!("{version}\n")).unwrap();
    std::fs::write(
        at.join(format!("{version}.info")),
        format!("{{\"Version\":\"{version}\",\"Time\":\"2024-01-01T00:00:00Z\"}}"),
    )
    .unwrap();
    std::fs::write(at.join(format!("{version}.mod")), "module golang.org/toolchain\n").unwrap();
    let zip_file = std::fs::File::create(at.join(format!("{version}.zip"))).unwrap();
    let mut zip = zip::ZipWriter::new(zip_file);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let files = [
        ("bin/go", format!("#!/bin/sh\necho \"fake toolchain {FAKE_TOOLCHAIN}: $*\"\n")),
        ("bin/gofmt", "#!/bin/sh\nexit 0\n".to_owned()),
        ("pkg/tool/linux_amd64/compile", "#!/bin/sh\nexit 0\n".to_owned()),
        ("pkg/tool/linux_amd64/link", "#!/bin/sh\nexit 0\n".to_owned()),
        ("src/_go.mod", "module std\n\ngo 1.99\n".to_owned()),
        ("src/cmd/_go.mod", "module cmd\n\ngo 1.99\n".to_owned()),
        ("src/fmt/print.go", "package fmt\n".to_owned()),
        ("VERSION", format!("{FAKE_TOOLCHAIN}\n")),
    ];
    for (name, body) in files {
        zip.start_file(format!("golang.org/toolchain@{version}/{name}"), options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    version
}

/// Modes and owners of every entry below `dir`.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        let m = meta(&p);
        out.push((p.clone(), m.uid, m.mode));
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Issue 21: a toolchain one member downloaded (`go mod download golang.org/toolchain@…`,
/// or a first use cut short) left Go's first-use steps to the next user: the execute
/// bits on `pkg/tool` and `bin` and the `_go.mod` → `go.mod` copies, which only the
/// owner may do, so another member's `GOTOOLCHAIN=go1.X` failed with `chmod …:
/// operation not permitted`. The service does them for the tree's owner: the other
/// member's first use runs the toolchain and finds nothing left to change.
#[test]
fn root_a_toolchain_one_member_downloaded_runs_for_another_with_nothing_left_to_chmod() {
    require_root();
    let _lock = sysctl_lock(false);
    let gos: Vec<_> = installed_gos().into_iter().filter(|(minor, _)| *minor >= 21).collect();
    assert!(!gos.is_empty(), "no Go 1.21 or later installed (toolchain switching): .ci/run installs golang-1.21-go");
    for (minor, go_command) in gos {
        let go = Go { bin: go_command, ..Go::new() };
        let version = write_fake_toolchain(&go.proxy);
        let (a, b) = (1101, 1102);
        let caches = format!("[[cache]]\npath = \"{}\"\ngroup = {GROUP}\n", go.modcache.display());
        let d = Daemon::start(&go.t.base, &caches, "");

        let home_a = go.t.base.join(format!("home-{a}"));
        mkdir(&home_a, 0o755);
        chown(&home_a, a, a);
        let module = format!("golang.org/toolchain@{version}");
        let mut download = go.go_as(a, 0o022, &home_a, &["mod", "download", &module], None);
        download.current_dir(&home_a);
        assert_ok(&run(download, Duration::from_secs(120)), &format!("go1.{minor}: uid A downloading the toolchain"));
        d.sync();

        let tree = go.modcache.join(&module);
        let before = snapshot(&tree);
        let home_b = go.t.base.join(format!("home-{b}"));
        mkdir(&home_b, 0o755);
        chown(&home_b, b, b);
        let mut use_it = go.go_as(b, 0o022, &home_b, &["version"], None);
        use_it.current_dir(&home_b).env("GOTOOLCHAIN", FAKE_TOOLCHAIN);
        let out = run(use_it, Duration::from_secs(120));
        assert_ok(&out, &format!("go1.{minor}: uid B's first use of uid A's toolchain; service log:\n{}", d.log()));
        assert!(stdout(&out).contains(&format!("fake toolchain {FAKE_TOOLCHAIN}: version")), "{}", stdout(&out));
        assert_eq!(snapshot(&tree), before, "go1.{minor}: uid B's first use changed the tree");

        for f in ["bin/go", "bin/gofmt", "pkg/tool/linux_amd64/compile", "pkg/tool/linux_amd64/link"] {
            let m = meta(&tree.join(f));
            assert_eq!((m.uid, m.mode & 0o111), (a, 0o111), "go1.{minor}: {f}");
        }
        for dir in ["src", "src/cmd"] {
            let copy = tree.join(dir).join("go.mod");
            assert_eq!(
                std::fs::read(&copy).unwrap(),
                std::fs::read(tree.join(dir).join("_go.mod")).unwrap(),
                "go1.{minor}: {}",
                copy.display()
            );
            let m = meta(&copy);
            assert_eq!((m.uid, m.mode & 0o222), (a, 0), "go1.{minor}: {} is uid A's and read-only", copy.display());
            assert!(!tree.join(dir).join(".go.mod.cachekeeper").exists());
        }
        assert_eq!(meta(&tree.join("src")).mode & 0o222, 0, "go1.{minor}: src/ is read-only again");
        let acl =
            Command::new("getfacl").args(["--access", "--omit-header", "-n"]).arg(tree.join("src")).output().unwrap();
        let acl = String::from_utf8_lossy(&acl.stdout).into_owned();
        assert!(
            !acl.lines().any(|l| l.starts_with("user:") && !l.starts_with("user::")),
            "go1.{minor}: src/ kept the service's ACL entry:\n{acl}"
        );
        d.assert_compliant();
    }
}

/// Issue 21: `owner` on a GOCACHE makes every entry that user's, and Go marks an entry
/// as used (its mtime) only where the user owns it, so entries other members use are
/// trimmed after 5 days: doctor warns about it, and without `owner` states the caveat.
#[test]
fn doctor_warns_about_owner_on_a_gocache_and_states_the_freshness_caveat() {
    let t = Tree::new();
    let gocache = t.base.join("gocache");
    std::fs::create_dir_all(&gocache).unwrap();
    std::fs::write(gocache.join("README"), "This directory holds cached build artifacts from the Go build system.\n")
        .unwrap();
    std::fs::write(gocache.join("trim.txt"), "1700000000\n").unwrap();
    let me = nix::unistd::getuid().as_raw();
    for (owner, verdict, words) in
        [(format!("owner = {me}\n"), "[WARN]", "trimmed 5 days after"), (String::new(), "[info]", "not marked as used")]
    {
        let config = t.base.join("ck.toml");
        std::fs::write(&config, format!("[[cache]]\npath = \"{}\"\n{owner}", gocache.display())).unwrap();
        let mut cmd = Command::new(bin("cachekeeperctl"));
        cmd.arg("--socket").arg(t.base.join("none.sock")).args(["doctor", "--config", config.to_str().unwrap()]);
        let text = stdout(&run(cmd, Duration::from_secs(60)));
        let line = text.lines().find(|l| l.contains("] GOCACHE")).unwrap_or_else(|| panic!("no GOCACHE line:\n{text}"));
        assert!(line.starts_with(verdict) && line.contains(words), "{owner:?}:\n{text}");
    }
}

/// The kubelet's volume ownership change, as Kubernetes' `SetVolumeOwnership`
/// (pkg/volume/volume_linux.go) does it for a pod with `fsGroup`: with `OnRootMismatch`
/// nothing happens when the root's group is fsGroup, its mode has the group's rwx and it
/// is setgid (`requiresPermissionChange`); otherwise (and always with `Always`) every
/// entry is lchowned to fsGroup and given `g+rw`, directories also `g+x` and setgid
/// (`changeFilePermission`, symlinks keep their mode). Returns the entries it walked.
fn kubelet_volume_ownership(root: &Path, fs_group: u32, on_root_mismatch: bool) -> usize {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let st = std::fs::metadata(root).unwrap();
    let superset = st.mode() & 0o770 == 0o770 && st.mode() & 0o2000 != 0;
    if on_root_mismatch && st.gid() == fs_group && superset {
        return 0;
    }
    let mut walked = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        std::os::unix::fs::lchown(&p, None, Some(fs_group)).unwrap();
        walked += 1;
        if m.file_type().is_symlink() {
            continue;
        }
        let mut mask = 0o660;
        if m.is_dir() {
            mask |= 0o2110;
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode((m.mode() & 0o7777) | mask)).unwrap();
    }
    walked
}

/// A setting of the shipped init-container manifest, as `key: value` on a line.
fn manifest_setting(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.trim().strip_prefix(&format!("{key}:")).map(|v| v.trim().to_owned()))
}

/// Issue 20: with the shipped Kubernetes manifest, pod after pod, Go's extracted module
/// files stay read-only and a warm start costs the kubelet nothing. The manifest is read
/// for its fsGroup, its fsGroupChangePolicy (the kubelet's default is `Always`) and its
/// init container's command, which runs as printed but for the cache's path.
#[test]
fn root_pod_starts_with_the_shipped_manifest_keep_gos_module_files_read_only() {
    require_root();
    let _lock = sysctl_lock(false);
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes/init-container.yaml"))
            .unwrap();
    let fs_group: u32 = manifest_setting(&manifest, "fsGroup").unwrap().parse().unwrap();
    let on_root_mismatch = manifest_setting(&manifest, "fsGroupChangePolicy").as_deref() == Some("OnRootMismatch");
    let command = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: [\"cachekeeper\""))
        .expect("the init container runs cachekeeper");
    let mut args: Vec<String> = command
        .trim_end_matches(']')
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    let go = Go::new();
    let at = args.iter().position(|a| a == "--path").expect("the init container names the cache with --path");
    args[at + 1] = go.modcache.to_str().unwrap().to_owned();
    write_modules(&go.proxy, &round_modules(3));
    mkdir(&go.modcache, 0o755);

    let mut walked = Vec::new();
    for pod in 0..3 {
        // The kubelet prepares the volume, the init container runs, then the build
        // container (uid 1001, fsGroup as its group) downloads new modules.
        walked.push(kubelet_volume_ownership(&go.modcache, fs_group, on_root_mismatch));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cachekeeper(&args, &[]);
        assert_eq!(code(&out), 0, "pod {pod}: the init container: {}{}", stdout(&out), stderr(&out));
        let module = format!("example.com/r{pod}a@v1.0.0");
        let home = go.t.base.join("home-1001");
        mkdir(&home, 0o755);
        chown(&home, 1001, 1001);
        let mut build = go.go_as(1001, 0o022, &home, &["mod", "download", &module], None);
        build.env("GOFLAGS", "");
        let out = run(build, Duration::from_secs(120));
        assert_eq!(code(&out), 0, "pod {pod}: the build container: {}", stderr(&out));
        let writable = writable_module_files(&go.modcache);
        assert!(writable.is_empty(), "pod {pod}: Go's module files made writable: {writable:?}");
    }
    assert!(walked[0] > 0 || !on_root_mismatch, "the first start prepares a new volume");
    assert_eq!(&walked[1..], [0, 0], "warm starts walked the volume: {walked:?}");
}

/// Files of extracted module trees (a path component with `@`, outside cache/) that
/// anyone may write: Go makes them 0444 on purpose.
fn writable_module_files(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            if p.strip_prefix(root).is_ok_and(|r| r.starts_with("cache")) {
                continue;
            }
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.to_string_lossy().contains('@') && m.mode() & 0o222 != 0 {
            found.push(p);
        }
    }
    found
}

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
    for m in MODULES {
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
}

impl Go {
    fn new() -> Go {
        let t = Tree::new();
        let proxy = t.base.join("proxy");
        write_proxy(&proxy);
        let modcache = t.base.join("gomodcache");
        Go { t, proxy, modcache }
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

/// Go's extracted module trees stay read-only: no write bit on their directories or files.
fn assert_read_only_trees(modcache: &Path) {
    let mut seen = 0;
    for m in MODULES {
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

    init(&modcache, &["--owner", "1001:1001"]);
    assert_built(&go.build(&p_user, 1001, &[]), "uid 1001 after --init");
    assert_read_only_trees(&modcache);
}

#[test]
fn root_shared_case_two_uids_in_one_group_add_modules() {
    require_root();
    let go = Go::new();
    let modcache = go.modcache.clone();
    let (group, a, b) = (3100, 1101, 1102);
    let flags = ["--group", "3100", "--model", "shared"];

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

    assert_read_only_trees(&modcache);
    let out =
        cachekeeper(&["--check", "--path", modcache.to_str().unwrap(), "--group", "3100", "--model", "shared"], &[]);
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
    assert_read_only_trees(&modcache);
    let gamma = meta(&modcache.join("cache/download/example.com/gamma/@v"));
    assert_eq!((gamma.gid, gamma.mode & 0o2070), (group, 0o2070));
}

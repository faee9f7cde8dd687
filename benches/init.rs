//! `cargo bench --bench init` (as root): cachekeeper against the shell recipes it
//! replaces, on a generated Go-shaped cache of about 100k entries.
//!
//! * repair: `cachekeeper --init --owner 1001:1001 --model shared` against
//!   `chown -R 1001:1001 D && chmod -R g=u,o=u,o-w D && find D -type d -exec chmod g+s {} +`
//!   (the same end state), alternating runs on freshly generated root-owned trees;
//! * check: on the compliant tree, `cachekeeper --check` against `find D -printf '%U %G %m\n'`.
//!
//! Prints the median of each and the ratio cachekeeper / baseline (targets: ≤ 0.5 and ≤ 0.7).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;

const DEFAULT_RUNS: usize = 5;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list here.
    }
    assert!(nix::unistd::geteuid().is_root(), "the benchmark chowns to uid 1001: run it as root");
    let env = |key: &str, default: usize| std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (modules, runs) = (env("CK_BENCH_MODULES", 960), env("CK_BENCH_RUNS", DEFAULT_RUNS));
    let work = tempfile::Builder::new().prefix("ck-bench-").tempdir().unwrap();
    let entries = generate(&work.path().join("count"), modules);
    println!("tree: {entries} entries ({modules} modules, 2 versions each), {runs} alternating runs each");
    let ck = PathBuf::from(env!("CARGO_BIN_EXE_cachekeeper"));

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..runs {
        let d = work.path().join(format!("run-{i}-ck"));
        generate(&d, modules);
        ours.push(time(
            Command::new(&ck).args(["--init", "--owner", "1001:1001", "--model", "shared", "--path"]).arg(&d),
        ));
        let d2 = work.path().join(format!("run-{i}-sh"));
        generate(&d2, modules);
        let script =
            "chown -R 1001:1001 \"$1\" && chmod -R g=u,o=u,o-w \"$1\" && find \"$1\" -type d -exec chmod g+s {} +";
        settle();
        theirs.push(time(Command::new("sh").args(["-c", script, "sh"]).arg(&d2)));
        same_end_state(&d, &d2);
        std::fs::remove_dir_all(&d2).unwrap();
        if i + 1 < runs {
            std::fs::remove_dir_all(&d).unwrap();
        }
    }
    report("repair: cachekeeper --init vs chown -R && chmod -R && find -exec chmod g+s", &mut ours, &mut theirs, 0.5);

    let compliant = work.path().join(format!("run-{}-ck", runs - 1));
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        ours.push(time(
            Command::new(&ck).args(["--check", "--owner", "1001:1001", "--model", "shared", "--path"]).arg(&compliant),
        ));
        theirs.push(time(Command::new("find").arg(&compliant).args(["-printf", "%U %G %m\n"])));
    }
    report("check: cachekeeper --check vs find -printf '%U %G %m'", &mut ours, &mut theirs, 0.7);
}

fn report(what: &str, ours: &mut [Duration], theirs: &mut [Duration], target: f64) {
    let (a, b) = (median(ours), median(theirs));
    let ratio = a.as_secs_f64() / b.as_secs_f64();
    let verdict = if ratio <= target { "meets" } else { "MISSES" };
    println!(
        "{what}\n  cachekeeper {:.3} s, baseline {:.3} s, ratio {ratio:.2} ({verdict} target ≤ {target})",
        a.as_secs_f64(),
        b.as_secs_f64()
    );
}

fn median(d: &mut [Duration]) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn time(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let status = cmd.stdout(Stdio::null()).status().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    took
}

/// Settles dirty metadata so that writeback of the fresh tree does not land inside a
/// timed run.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Both end states must match, or the comparison means nothing.
fn same_end_state(a: &Path, b: &Path) {
    let list = |d: &Path| {
        let out = Command::new("find").arg(".").args(["-printf", "%p %U %G %m\n"]).current_dir(d).output().unwrap();
        let mut lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert!(list(a) == list(b), "cachekeeper and the shell recipe reached different end states");
}

/// A Go-shaped cache: per module, `cache/download/<path>/@v` with the files Go writes
/// (0755 dirs, 0644 files) and two extracted trees (0555 dirs, 0444 files).
fn generate(root: &Path, modules: usize) -> usize {
    let mut n = 0;
    let dir = |p: &Path, mode: u32, n: &mut usize| {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        *n += 1;
    };
    let file = |p: &Path, mode: u32, n: &mut usize| {
        std::fs::write(p, b"x").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        *n += 1;
    };
    for m in 0..modules {
        let path = format!("github.com/org{}/module{m}", m % 40);
        let at = root.join("cache/download").join(&path).join("@v");
        dir(&at, 0o755, &mut n);
        for f in ["list", "list.lock"] {
            file(&at.join(f), 0o644, &mut n);
        }
        for v in ["v1.0.0", "v1.1.0"] {
            for ext in ["info", "mod", "zip", "ziphash", "lock"] {
                file(&at.join(format!("{v}.{ext}")), 0o644, &mut n);
            }
            let tree = root.join(format!("{path}@{v}"));
            for sub in ["", "internal", "cmd/tool", "pkg/a", "pkg/b"] {
                let d = tree.join(sub);
                std::fs::create_dir_all(&d).unwrap();
                for f in 0..8 {
                    file(&d.join(format!("file{f}.go")), 0o444, &mut n);
                }
            }
            // Go makes the extracted tree read-only once it is complete, children first.
            for sub in ["pkg/b", "pkg/a", "pkg", "cmd/tool", "cmd", "internal", ""] {
                dir(&tree.join(sub), 0o555, &mut n);
            }
        }
    }
    n
}

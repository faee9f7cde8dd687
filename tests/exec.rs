//! Exec mode (SPEC §3, issue #20): `cachekeeper --init [flags] -- CMD [ARGS...]`, a
//! container entrypoint that repairs the cache, becomes its owner and replaces itself
//! with CMD. Run for real as root on temp caches. Linux only: exec mode switches users
//! for container entrypoints, and the tests use PID namespaces and bind mounts.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// uid and gid that no passwd or group entry names on a test machine.
const UID: &str = "61001";
const GID: &str = "61002";

fn hex_field(status: &str, key: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn root_exec_mode_drops_to_the_owner_without_capabilities_and_passes_the_exit_status() {
    require_root();
    let t = Tree::new();
    write(&t.path("cache/download/f"), 0o600);
    let script = "id -u; id -g; id -G; cat /proc/self/status; echo HOME=$HOME; echo GOCACHE=$GOCACHE; exit 7";
    let out = cachekeeper(
        &["--init", "--path", t.root_str(), "--owner", &format!("{UID}:{GID}"), "--", "sh", "-c", script],
        &[("HOME", "/root")],
    );
    assert_eq!(code(&out), 7, "the command's exit status passes through: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..3], [UID, GID, GID], "uid, gid and groups of the cache's owner: {text}");
    for cap in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(hex_field(&text, cap), 0, "{cap} must be empty: {text}");
    }
    // No passwd entry: HOME is `/` rather than root's, and GOCACHE is Go's default made explicit.
    assert!(text.contains("\nHOME=/\n"), "{text}");
    assert!(text.contains("\nGOCACHE=/.cache/go-build\n"), "{text}");
    // stdout is the command's: the summary went to stderr, and it names the model.
    assert!(!text.contains("compliant"), "{text}");
    assert!(stderr(&out).contains("compliant (model private, owner 61001, group 61002)"), "{}", stderr(&out));
    assert_eq!((meta(&t.path("cache/download/f")).uid, meta(&t.path("cache/download/f")).mode), (61001, 0o644));
}

#[test]
fn root_exec_mode_keeps_a_set_home_and_gocache_and_reports_a_missing_command() {
    require_root();
    let t = Tree::new();
    let gocache = t.base.join("gocache");
    let out = cachekeeper(
        &["--init", "--path", t.root_str(), "--owner", UID, "--", "sh", "-c", "echo $HOME $GOCACHE"],
        &[("HOME", "/somewhere"), ("GOCACHE", gocache.to_str().unwrap())],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("/somewhere {}", gocache.display()));
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", UID, "--", "no-such-command-here"], &[]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("cachekeeper: cannot run no-such-command-here: "), "{}", stderr(&out));
}

#[test]
fn exec_mode_goes_with_init_only() {
    let t = Tree::new();
    let out = cachekeeper(&["--check", "--path", t.root_str(), "--", "true"], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// As PID 1 of a PID namespace (a container started without `--init`), the command must
/// still get SIGTERM (the kernel drops signals an init has no handler for), and its exit
/// status must still be the container's.
#[test]
fn root_exec_mode_as_pid_1_forwards_sigterm_and_passes_the_status() {
    require_root();
    let t = Tree::new();
    let script = "trap 'echo got TERM; exit 42' TERM; echo ready $$; while :; do sleep 0.1; done";
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(bin("cachekeeper"))
        .args(["--init", "--path", t.root_str(), "--owner", UID, "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("unshare (util-linux)");
    let unshare = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(ready.starts_with("ready "), "{ready:?}");
    assert_ne!(ready, "ready 1", "the command is not PID 1: cachekeeper stays as its init");
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let init: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM to the PID 1 cachekeeper did not reach the command");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("got TERM"));
    assert_eq!(status.code(), Some(42), "the command's status is the container's");
}

/// Issue #20: a host user's cache bind-mounted into a container and given to the
/// container's uid changes owner on the host too; `--init` says so before it does it.
#[test]
fn root_init_warns_before_giving_a_bind_mounted_cache_of_another_uid_away() {
    require_root();
    let t = Tree::new();
    let host = t.base.join("host-cache");
    std::fs::create_dir_all(host.join("cache/download")).unwrap();
    write(&host.join("cache/download/f"), 0o644);
    for p in [host.clone(), host.join("cache"), host.join("cache/download"), host.join("cache/download/f")] {
        chown(&p, 61005, 61005);
    }
    nix::mount::mount(Some(&host), &t.root, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    let _unmount = MountGuard(t.root.clone());
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", UID], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(warning.contains("warning:") && warning.contains("owned by 61005"), "{warning}");
    assert!(warning.contains("--owner 61005"), "{warning}");
    // Its own owner, or a cache that is no mount, gets no warning.
    let out = cachekeeper(&["--init", "--path", t.root_str(), "--owner", UID], &[]);
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
}

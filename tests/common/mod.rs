//! Helpers shared by the integration tests: run the real binaries on real temp trees.
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Tests that chown, mknod, mount or switch users need root; CI runs as root. Outside
/// root they fail loudly rather than pass by doing nothing.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it chowns to other uids, creates devices or mounts); CI runs it as root"
    );
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "cachekeeper" => PathBuf::from(env!("CARGO_BIN_EXE_cachekeeper")),
        "cachekeeperctl" => PathBuf::from(env!("CARGO_BIN_EXE_cachekeeperctl")),
        other => panic!("unknown binary {other}"),
    }
}

/// `cachekeeper ARGS` with a clean environment apart from `env`, killed (and the test
/// failed) if it runs longer than a minute: nothing may ever hang.
pub fn cachekeeper(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("cachekeeper"));
    cmd.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, Duration::from_secs(60))
}

pub fn run(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} hung for {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited by signal")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir whose `mod` subdirectory is the cache; the rest is "outside".
pub struct Tree {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::Builder::new().prefix("ck-test-").tempdir().unwrap();
        let base = dir.path().to_owned();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = base.join("mod");
        std::fs::create_dir(&root).unwrap();
        Tree { _dir: dir, base, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn root_str(&self) -> &str {
        self.root.to_str().unwrap()
    }
}

/// Owner, group, mode bits and change time of an entry, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub ctime: (i64, i64),
}

pub fn meta(path: &Path) -> Meta {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Meta { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o7777, ctime: (m.ctime(), m.ctime_nsec()) }
}

pub fn write(path: &Path, mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, b"package x\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

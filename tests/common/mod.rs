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
    // A test that lowers fs.protected_hardlinks makes --init refuse caches that are not
    // isolated: no --init runs while it holds the sysctl lock.
    let _lock = args.contains(&"--init").then(|| sysctl_lock(false));
    let mut cmd = Command::new(bin("cachekeeper"));
    cmd.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    pass_engine(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, Duration::from_secs(60))
}

/// CI runs the repair tests a second time with `CACHEKEEPER_ENGINE=portable` (the
/// engine macOS uses, see `src/sys`): a cleared environment keeps that choice.
pub fn pass_engine(cmd: &mut Command) {
    if let Some(engine) = std::env::var_os("CACHEKEEPER_ENGINE") {
        cmd.env("CACHEKEEPER_ENGINE", engine);
    }
}

/// The tests run against the portable engine (`CACHEKEEPER_ENGINE=portable`).
pub fn portable_engine() -> bool {
    std::env::var_os("CACHEKEEPER_ENGINE").is_some_and(|e| e == "portable")
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
        // Shaped like a Go module cache, which a non-empty root must be unless forced.
        std::fs::create_dir_all(root.join("cache/download")).unwrap();
        Tree { _dir: dir, base, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn root_str(&self) -> &str {
        self.root.to_str().unwrap()
    }
}

impl Drop for Tree {
    /// A service run as root isolates its caches (a bind mount of each root on itself),
    /// and tests mount below `base`: undo it all, or the temp dir cannot be removed.
    fn drop(&mut self) {
        unmount_all(&self.base);
    }
}

/// Mount points at or below `dir` in this mount namespace, as many times as each is
/// stacked, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// Detaches every mount at or below `dir`: the one guard every test's mounts go through
/// (a [`Tree`] and [`MountGuard`] call it on drop, so a failing test leaves none behind).
pub fn unmount_all(dir: &Path) {
    #[cfg(target_os = "linux")]
    for point in mounts_under(dir) {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
    #[cfg(not(target_os = "linux"))]
    while nix::mount::unmount(dir, nix::mount::MntFlags::MNT_FORCE).is_ok() {}
}

/// `backing` seen at `point` through bindfs, a FUSE filesystem (.ci/run installs it):
/// a filesystem that sends no inotify events for others' writes, and a slow one.
/// Unmounted on drop, FUSE's own way first so that bindfs exits.
pub struct Fuse(PathBuf);

impl Fuse {
    pub fn bind(backing: &Path, point: &Path) -> Fuse {
        let mounted = Command::new("bindfs")
            .arg(backing)
            .arg(point)
            .status()
            .expect("bindfs, a FUSE filesystem standing in for a network one (.ci/run installs it)");
        assert!(mounted.success(), "bindfs {} {}", backing.display(), point.display());
        Fuse(point.to_owned())
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.0).status();
        unmount_all(&self.0);
    }
}

/// Unmounts everything at or below a directory when dropped.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        unmount_all(&self.0);
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

/// A running `cachekeeper` service on a temp config; killed on drop if still running.
pub struct Daemon {
    child: Option<std::process::Child>,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Writes `caches` plus a `[daemon]` table (with `daemon_extra` lines) into
    /// `base/ck.toml`, starts the service and waits until its first full scan is done.
    pub fn start(base: &Path, caches: &str, daemon_extra: &str) -> Daemon {
        Daemon::start_with(base, caches, daemon_extra, |cmd| cmd)
    }

    pub fn start_with(base: &Path, caches: &str, daemon_extra: &str, wrap: impl FnOnce(Command) -> Command) -> Daemon {
        let d = Daemon::spawn(base, caches, daemon_extra, wrap, None);
        d.sync();
        d
    }

    /// Like `start`, with the service's stderr going to `stderr` instead of the log.
    pub fn start_with_stderr(base: &Path, caches: &str, daemon_extra: &str, stderr: Stdio) -> Daemon {
        let d = Daemon::spawn(base, caches, daemon_extra, |cmd| cmd, Some(stderr));
        d.sync();
        d
    }

    /// Starts the service and waits for its control socket.
    fn spawn(
        base: &Path,
        caches: &str,
        daemon_extra: &str,
        wrap: impl FnOnce(Command) -> Command,
        stderr: Option<Stdio>,
    ) -> Daemon {
        let socket = Daemon::write_config(base, caches, daemon_extra);
        let config = base.join("ck.toml");
        let log = base.join("ck.log");
        let mut cmd = Command::new(bin("cachekeeper"));
        cmd.arg("--config").arg(&config);
        let mut cmd = wrap(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.unwrap_or_else(|| std::fs::File::create(&log).unwrap().into()))
            .spawn()
            .expect("start cachekeeper");
        let mut d = Daemon { child: Some(child), config, socket, log };
        d.wait_socket();
        d
    }

    /// `base/ck.toml` with `caches` and a `[daemon]` table whose socket is in `base/run`
    /// (created here; a test that runs the service as another user chowns it).
    pub fn write_config(base: &Path, caches: &str, daemon_extra: &str) -> PathBuf {
        let run = base.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let socket = run.join("ck.sock");
        let text = format!("{caches}\n[daemon]\nsocket = \"{}\"\n{daemon_extra}\n", socket.display());
        std::fs::write(base.join("ck.toml"), text).unwrap();
        socket
    }

    /// Like `start`, for a cache whose first full scan fails: `sync` would fail too, so
    /// this waits for the socket and for every cache to leave `starting`.
    pub fn start_unsynced(
        base: &Path,
        caches: &str,
        daemon_extra: &str,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Daemon {
        let d = Daemon::spawn(base, caches, daemon_extra, wrap, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = d.ctl(&["status", "--json"]);
            let s: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
            let caches = s["caches"].as_array().cloned().unwrap_or_default();
            if !caches.is_empty() && caches.iter().all(|c| c["state"] != "starting") {
                return d;
            }
            assert!(Instant::now() < deadline, "the first full scan did not end in 60 s:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cachekeeper exited with {status} before it was ready:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no control socket after 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("cachekeeperctl"));
        cmd.arg("--socket").arg(&self.socket).args(args);
        run(cmd, Duration::from_secs(300))
    }

    pub fn sync(&self) {
        let out = self.ctl(&["sync", "--timeout", "240s"]);
        assert_eq!(code(&out), 0, "sync failed: {}{}\nlog:\n{}", stdout(&out), stderr(&out), self.log());
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        assert!(matches!(code(&out), 0 | 1), "status: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `cachekeeper --check` with the service's own configuration: every cache complies.
    pub fn assert_compliant(&self) {
        let out = cachekeeper(&["--check", "--config", self.config.to_str().unwrap()], &[]);
        assert_eq!(code(&out), 0, "not compliant after sync:\n{}\nservice log:\n{}", stdout(&out), self.log());
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cachekeeper did not stop within 60 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wraps the service's command so that it runs in a mount namespace of its own, as
/// under systemd: it then makes no mount on the host, so its cache root stays a plain
/// directory that can be removed and renamed, as an unisolated cache's is.
pub fn own_mount_namespace(cmd: Command) -> Command {
    let mut unshare = Command::new("unshare");
    unshare.args(["--mount", "--propagation", "private", "--"]).arg(cmd.get_program()).args(cmd.get_args());
    unshare
}

/// Runs the service on `base/ck.toml`, which must refuse to start: its exit status and
/// stderr. Killed, and the test failed, if it is still running after 10 s — whether it
/// hangs or started after all.
pub fn refused_start(base: &Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin("cachekeeper"));
    cmd.arg("--config").arg(base.join("ck.toml"));
    pass_engine(&mut cmd);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the service was still running (or hanging) after 10 s; stderr:\n{}", stderr(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.status.code().is_some(), "killed by a signal: {:?}\n{}", out.status, stderr(&out));
    out
}

/// `setpriv` set up to run the next arguments as `uid` (gid `uid`) with `groups`.
pub fn setpriv(uid: u32, groups: &[u32]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", g.join(",")));
    }
    cmd.arg("--");
    cmd
}

/// Runs a shell script as `uid` (with `groups`) in `dir`.
pub fn sh_as(uid: u32, groups: &[u32], dir: &Path, script: &str) -> Output {
    let mut cmd = setpriv(uid, groups);
    cmd.args(["sh", "-ec", script]).current_dir(dir);
    let out = run(cmd, Duration::from_secs(300));
    assert_eq!(code(&out), 0, "script as uid {uid} failed: {}", stderr(&out));
    out
}

/// The start of a test that runs as root over a tree of its own, service or not: root
/// is required, the sysctl lock is taken shared (hold it for the whole test), and the
/// tree is fresh.
pub fn root_tree() -> (nix::fcntl::Flock<std::fs::File>, Tree) {
    require_root();
    (sysctl_lock(false), Tree::new())
}

/// Tests that change inotify sysctls take this exclusively; every other service test
/// takes it shared, so that no service runs under a lowered limit it did not ask for.
pub fn sysctl_lock(exclusive: bool) -> nix::fcntl::Flock<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("cachekeeper-tests-sysctl.lock"))
        .unwrap();
    let arg = if exclusive { nix::fcntl::FlockArg::LockExclusive } else { nix::fcntl::FlockArg::LockShared };
    nix::fcntl::Flock::lock(file, arg).map_err(|(_, e)| e).unwrap()
}

/// Sets a sysctl and restores the old value on drop.
pub struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    pub fn set(name: &str, value: &str) -> Sysctl {
        let path = PathBuf::from("/proc/sys").join(name.replace('.', "/"));
        let old = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("cannot set {name}: {e}"));
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, self.old.trim());
    }
}

/// A user in the password database for the length of a test: the sudo rules look the
/// caller's home up there. Removed on drop.
pub struct TempUser {
    pub name: String,
}

impl TempUser {
    pub fn new(uid: u32, home: &Path) -> TempUser {
        let name = format!("ck-test-{uid}");
        let _ = Command::new("userdel").arg(&name).stderr(Stdio::null()).status();
        // useradd locks the password database; tests running at the same time retry.
        for _ in 0..50 {
            let out = Command::new("useradd")
                .args(["-M", "-N", "-o", "-u", &uid.to_string(), "-d"])
                .arg(home)
                .arg(&name)
                .output()
                .expect("useradd (Debian's passwd package)");
            if out.status.success() {
                return TempUser { name };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot create user {name} with useradd");
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            if Command::new("userdel").arg(&self.name).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

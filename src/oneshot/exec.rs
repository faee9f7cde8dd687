//! Exec mode, for container entrypoints (SPEC §3): `cachekeeper --init [flags] -- CMD
//! [ARGS...]` brings the cache to its model, then becomes the cache's owner (`setgroups`,
//! `setgid`, `setuid`; no capability survives) and replaces itself with CMD, as gosu,
//! su-exec and fixuid do. CMD then is the container's process: signals reach it
//! directly and its exit status is the container's.
//!
//! As PID 1 (`podman run` or `docker run` without `--init`) an exec'd CMD would be the
//! namespace's init: the kernel drops every signal it has no handler for (a `go build`
//! would ignore `podman stop`'s SIGTERM until the 10 s SIGKILL) and orphans are never
//! reaped. So as PID 1, cachekeeper stays as a minimal init instead, like tini: it runs
//! itself again as its only child (which does the init and the exec), forwards every
//! signal a supervisor sends, reaps every orphan, and exits with the child's status.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
#[cfg(target_os = "linux")]
use nix::unistd::Gid;
use nix::unistd::{Pid, Uid, User};

use crate::policy::config::CacheConfig;
#[cfg(target_os = "linux")]
use crate::privilege::PrivilegeError;

/// Why CMD cannot be run as the cache's owner: one line for stderr, and exit 126 (the
/// configuration ones are usage errors, exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error("`--` runs CMD as the cache's owner, and {} has none configured: set `owner` (or pass --owner)", .0.display())]
    NoOwner(PathBuf),
    #[error("`--` runs CMD as the cache's owner: every cache of the configuration must name the same owner and group")]
    OwnersDiffer,
    #[error(
        "`--` switches to uid {uid} and gid {gid}, which needs root (running as uid {running_as}): run it as root, \
         or as that uid already"
    )]
    NeedsRoot { uid: u32, gid: u32, running_as: u32 },
    /// Clearing the capability sets CMD could inherit failed.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    /// `setgroups`, `setgid` or `setuid` failed.
    #[cfg(target_os = "linux")]
    #[error("cannot switch to uid {uid} gid {gid}: {call}: {errno}")]
    Switch { uid: u32, gid: u32, call: &'static str, errno: nix::errno::Errno },
    #[cfg(target_os = "linux")]
    #[error("cannot switch to uid {0}: the switch did not take")]
    DidNotTake(u32),
    #[cfg(target_os = "linux")]
    #[error("uid {uid} still holds {set:?} capabilities: not running CMD")]
    CapabilitiesLeft { uid: u32, set: caps::CapSet },
    #[cfg(not(target_os = "linux"))]
    #[error("`--` switches users on Linux only (container entrypoints): run it as uid {0} already, or without `--`")]
    LinuxOnly(u32),
}

/// Who CMD runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's groups from the group database when the uid has
    /// a name there, always with `gid`.
    pub groups: Vec<u32>,
    /// The home directory of the passwd entry, when there is one.
    pub home: Option<PathBuf>,
}

/// The cache's owner and group, which CMD runs as. Every cache must name the same owner;
/// the group is the cache's group, else the owner's primary group, else the uid's number.
pub(crate) fn target(caches: &[CacheConfig]) -> Result<Target, ExecError> {
    let mut owners: Vec<(Option<u32>, Option<u32>)> = caches.iter().map(|c| (c.policy.owner, c.policy.group)).collect();
    owners.dedup();
    let (uid, group) = match owners.as_slice() {
        [(Some(uid), group)] => (*uid, *group),
        [(None, _)] => return Err(ExecError::NoOwner(caches[0].path.clone())),
        _ => return Err(ExecError::OwnersDiffer),
    };
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let gid = group.or(user.as_ref().map(|u| u.gid.as_raw())).unwrap_or(uid);
    let mut groups = vec![gid];
    if let Some(u) = &user {
        groups.push(u.gid.as_raw());
        #[cfg(target_os = "linux")]
        if let Ok(name) = std::ffi::CString::new(u.name.as_bytes()) {
            if let Ok(list) = nix::unistd::getgrouplist(&name, Gid::from_raw(gid)) {
                groups.extend(list.into_iter().map(Gid::as_raw));
            }
        }
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(Target { uid, gid, groups, home: user.map(|u| u.dir) })
}

/// True when this process is the init of its PID namespace.
pub(crate) fn is_pid1() -> bool {
    nix::unistd::getpid() == Pid::from_raw(1)
}

/// Becomes `target` and replaces this process with `cmd`. Returns only on failure, with
/// the exit code a shell would give (126: cannot switch or cannot execute, 127: not
/// found), after one line on stderr.
pub(crate) fn exec(target: &Target, cmd: &[OsString]) -> ExitCode {
    let Some((program, args)) = cmd.split_first() else {
        eprintln!("cachekeeper: nothing to run after `--`");
        return ExitCode::from(2);
    };
    let home = home_for(target, std::env::var_os("HOME"));
    if let Err(e) = drop_to(target) {
        eprintln!("cachekeeper: {e}");
        return ExitCode::from(126);
    }
    // Searched as the target: execvp would report EACCES from a PATH entry the target
    // cannot enter (root's ~/.cargo/bin) instead of "not found".
    let Some(resolved) = search_path(program) else {
        eprintln!(
            "cachekeeper: cannot run {}: not found in PATH ({})",
            Path::new(program).display(),
            std::env::var_os("PATH").unwrap_or_default().to_string_lossy()
        );
        return ExitCode::from(127);
    };
    let mut command = Command::new(resolved);
    command.arg0(program).args(args);
    if let Some(home) = &home {
        command.env("HOME", home);
    }
    let home_now = home.or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    if std::env::var_os("GOCACHE").is_none_or(|v| v.is_empty()) {
        if let Some(gocache) = gocache_for(home_now.as_deref()) {
            // Made as the target (after the switch): Go fails with "failed to initialize
            // build cache" when it cannot create it, so say so now, once, with the fix.
            if let Err(e) = std::fs::create_dir_all(&gocache) {
                eprintln!(
                    "cachekeeper: warning: GOCACHE {} cannot be created by uid {} ({}): set GOCACHE to a directory \
                     that uid can write",
                    gocache.display(),
                    target.uid,
                    crate::sys::describe(&e)
                );
            }
            command.env("GOCACHE", gocache);
        }
    }
    // Only returns on failure. std resets the signal mask and SIGPIPE's disposition for
    // the new program: the `--init` walk blocked SIGINT and SIGTERM in this thread.
    let e = command.exec();
    let shown = Path::new(program).display();
    eprintln!("cachekeeper: cannot run {shown}: {}", crate::sys::describe(&e));
    ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}

/// `program` itself when it names a path, else the first `PATH` entry where it exists.
fn search_path(program: &OsStr) -> Option<PathBuf> {
    if program.as_encoded_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.metadata().is_ok_and(|m| m.is_file()))
}

/// `HOME` for CMD, when it must change: unset or empty, or still the home of the user
/// being left (root's `/root`, which podman and docker set) while switching to another
/// uid. The target's passwd home, else `/` (as gosu and su-exec do).
fn home_for(target: &Target, current: Option<OsString>) -> Option<PathBuf> {
    let me = nix::unistd::geteuid();
    let switching = me.as_raw() != target.uid;
    let leaving = User::from_uid(me).ok().flatten().map(|u| u.dir);
    let stale = match current.filter(|h| !h.is_empty()) {
        None => true,
        Some(h) => switching && leaving.as_deref().is_some_and(|l| l.as_os_str() == h.as_os_str()),
    };
    stale.then(|| target.home.clone().filter(|h| h.is_dir()).unwrap_or_else(|| PathBuf::from("/")))
}

/// Go's own default build cache, made explicit: `$XDG_CACHE_HOME/go-build`, else
/// `$HOME/.cache/go-build`.
fn gocache_for(home: Option<&Path>) -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty() && Path::new(x).is_absolute()) {
        return Some(Path::new(&xdg).join("go-build"));
    }
    home.filter(|h| h.is_absolute()).map(|h| h.join(".cache/go-build"))
}

/// `setgroups`, `setgid`, `setuid`, then a check that no capability is left in any set
/// CMD could use. As the target already (an unprivileged entrypoint), nothing changes.
fn drop_to(target: &Target) -> Result<(), ExecError> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if uid == target.uid && (uid != 0 || gid == target.gid) {
        return Ok(());
    }
    if uid != 0 {
        return Err(ExecError::NeedsRoot { uid: target.uid, gid: target.gid, running_as: uid });
    }
    switch(target)
}

/// Linux: the switch itself, and the proof that no capability is left.
#[cfg(target_os = "linux")]
fn switch(target: &Target) -> Result<(), ExecError> {
    let groups: Vec<Gid> = target.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let failed = |call: &'static str| {
        move |errno: nix::Error| ExecError::Switch { uid: target.uid, gid: target.gid, call, errno }
    };
    // setuid clears the permitted and effective sets, and the ambient one; the
    // inheritable set survives it, so it goes first.
    for set in [caps::CapSet::Ambient, caps::CapSet::Inheritable] {
        caps::clear(None, set).map_err(PrivilegeError::step(format!("clear the {set:?} capabilities")))?;
    }
    nix::unistd::setgroups(&groups).map_err(failed("setgroups"))?;
    nix::unistd::setgid(Gid::from_raw(target.gid)).map_err(failed("setgid"))?;
    nix::unistd::setuid(Uid::from_raw(target.uid)).map_err(failed("setuid"))?;
    if nix::unistd::getuid().as_raw() != target.uid || nix::unistd::geteuid().as_raw() != target.uid {
        return Err(ExecError::DidNotTake(target.uid));
    }
    if target.uid != 0 {
        for set in [caps::CapSet::Permitted, caps::CapSet::Effective, caps::CapSet::Ambient, caps::CapSet::Inheritable]
        {
            if !caps::read(None, set).map(|s| s.is_empty()).unwrap_or(false) {
                return Err(ExecError::CapabilitiesLeft { uid: target.uid, set });
            }
        }
    }
    Ok(())
}

/// Elsewhere exec mode is for container entrypoints, which are Linux: run CMD as the
/// owner already, or without `--`.
#[cfg(not(target_os = "linux"))]
fn switch(target: &Target) -> Result<(), ExecError> {
    Err(ExecError::LinuxOnly(target.uid))
}

/// The signals a supervisor sends that the child must get (the synchronous ones, which
/// only a fault raises, stay unblocked).
const FORWARDED: [Signal; 11] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGWINCH,
    Signal::SIGTSTP,
    Signal::SIGPIPE,
];

/// PID 1: run `argv` again as a child (it does the init and the exec), forward signals
/// to it, reap every process that ends up here, and exit as the child did (a signal `s`
/// as 128 + s, like a shell and tini).
pub(crate) fn reap(argv: &[OsString]) -> ExitCode {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    // Blocked before the child exists, so that nothing sent meanwhile is lost; std's
    // spawn gives the child an empty mask again.
    if let Err(e) = set.thread_block() {
        eprintln!("cachekeeper: as PID 1, cannot take signals to forward ({e}): run the container with --init");
        return ExitCode::from(126);
    }
    let mut command = Command::new("/proc/self/exe");
    command.args(argv.iter().skip(1));
    if let Some(arg0) = argv.first() {
        command.arg0(arg0);
    }
    let child = match command.spawn() {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("cachekeeper: as PID 1, cannot start the init's child: {}", crate::sys::describe(&e));
            return ExitCode::from(126);
        }
    };
    loop {
        let Ok(signal) = set.wait() else { continue };
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return ExitCode::from(code as u8),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => return ExitCode::from(128 + s as u8),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_uid_and_what_to_do() {
        assert_eq!(
            ExecError::NoOwner(PathBuf::from("/var/cache/go-mod")).to_string(),
            "`--` runs CMD as the cache's owner, and /var/cache/go-mod has none configured: set `owner` (or pass \
             --owner)"
        );
        assert_eq!(
            ExecError::NeedsRoot { uid: 61001, gid: 61002, running_as: 1000 }.to_string(),
            "`--` switches to uid 61001 and gid 61002, which needs root (running as uid 1000): run it as root, or as \
             that uid already"
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            ExecError::Switch { uid: 61001, gid: 61002, call: "setgid", errno: nix::errno::Errno::EPERM }.to_string(),
            "cannot switch to uid 61001 gid 61002: setgid: EPERM: Operation not permitted"
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            ExecError::CapabilitiesLeft { uid: 61001, set: caps::CapSet::Ambient }.to_string(),
            "uid 61001 still holds Ambient capabilities: not running CMD"
        );
    }
}

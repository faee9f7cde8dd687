//! The platform seam: every system call the walk, the repair and the service's own files
//! need, and the only module with `unsafe` (the crate denies it everywhere else). Nothing
//! here takes a full path except `open_slash` (the directory every safe resolution starts
//! from), the bind mount and the diagnostics of a path a user gives: every other call is
//! relative to a directory descriptor, so no name in the tree can redirect it and depth
//! never meets `PATH_MAX`. It uses only `policy` (the ACL formats it encodes); everything
//! above uses it.
//!
//! Two engines implement the walk's calls (classify, open a directory, pin, chown, chmod,
//! list) with the same guarantees (SPEC §6):
//!
//! - [`linux`], the fast path: `statx`, `O_PATH` pins, `fchmodat2`, `getdents64`;
//! - [`portable`], POSIX-2008 `*at` calls through rustix: `fstatat(AT_SYMLINK_NOFOLLOW)`,
//!   `openat(O_NOFOLLOW)` pins of regular files and directories only, re-checked with
//!   `fstat`, then `fchown`/`fchmod`. It is the only engine on macOS and the BSDs.
//!
//! On Linux the portable engine is chosen at run time with `CACHEKEEPER_ENGINE=portable`,
//! a testing knob: CI runs the hostile-tree and race tests against both engines, so the
//! engine macOS uses is exercised where the tests can run.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
pub(crate) mod portable;

#[cfg(target_os = "linux")]
pub(crate) use linux::{
    bind_onto_itself, birth_time, get_xattr_at, get_xattr_fd, get_xattr_path, remove_xattr_fd, set_xattr_fd,
    unmount_when_gone,
};
#[cfg(not(target_os = "linux"))]
pub use other::{
    bind_onto_itself, birth_time, get_xattr_at, get_xattr_fd, get_xattr_path, remove_xattr_fd, set_xattr_fd,
    unmount_when_gone,
};

/// File type of an entry, from `st_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileType {
    Dir,
    File,
    Symlink,
    /// FIFO, socket, character or block device.
    Special,
}

/// What one `statx` (or `fstatat`) call tells about an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub file_type: FileType,
    pub dev: (u32, u32),
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// `MODE_BITS` only.
    pub mode: u32,
    pub nlink: u32,
    /// Mount id (Linux 5.8+); `None` on kernels that do not report it and on every
    /// other system, where the device number is the only mount check left. On macOS
    /// that is enough: there are no bind mounts, and a mount point changes `st_dev`.
    pub mnt_id: Option<u64>,
    /// A socket (one of the `Special` kind).
    pub socket: bool,
}

impl Stat {
    /// Same inode and same kind: the entry was not swapped between two looks.
    pub(crate) fn same_inode(&self, other: &Stat) -> bool {
        self.dev == other.dev && self.ino == other.ino && self.file_type == other.file_type
    }

    /// On the same mount as `root`: same device and, where known, same mount id
    /// (a bind mount of the same filesystem has the same device number).
    pub(crate) fn same_mount(&self, root: &Stat) -> bool {
        self.dev == root.dev && (self.mnt_id.is_none() || self.mnt_id == root.mnt_id)
    }
}

/// `d_type` hint from the directory listing; only a hint, never trusted for safety.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeHint {
    Dir,
    NotDir,
    Unknown,
}

/// Which implementation of the walk's calls this process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// statx, `O_PATH`, fchmodat2, getdents64.
    Linux,
    /// POSIX-2008 `*at` calls (macOS, the BSDs; on Linux for tests).
    Portable,
}

/// The engine of this process: on Linux the fast path unless `CACHEKEEPER_ENGINE=portable`
/// (read once, so that every descriptor of a run comes from the same engine).
pub(crate) fn engine() -> Engine {
    #[cfg(target_os = "linux")]
    {
        static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
        *ENGINE.get_or_init(|| match std::env::var_os("CACHEKEEPER_ENGINE") {
            Some(v) if v == "portable" => Engine::Portable,
            _ => Engine::Linux,
        })
    }
    #[cfg(not(target_os = "linux"))]
    Engine::Portable
}

/// Calls the engine's version of a function of the walk.
macro_rules! engine {
    ($f:ident($($arg:expr),*)) => {{
        #[cfg(target_os = "linux")]
        {
            match engine() {
                Engine::Linux => linux::$f($($arg),*),
                Engine::Portable => portable::$f($($arg),*),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            portable::$f($($arg),*)
        }
    }};
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)` (on Linux as `statx`, which also gives the
/// mount id).
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    engine!(stat_at(dir, name))
}

/// `fstat` of a descriptor (`O_PATH` pins included).
pub(crate) fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    engine!(stat_fd(fd))
}

/// Opens a directory below `dir` for reading, never following a symlink in `name`.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    engine!(open_dir_at(dir, name))
}

/// Pins the entry `name` below `dir`, never following a symlink, to change exactly that
/// inode. The Linux engine pins anything without opening it (`O_PATH`); the portable one
/// opens regular files and directories only and refuses anything else, so the caller
/// classifies first and re-checks the pin with [`stat_fd`] in both cases.
pub(crate) fn pin_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    engine!(pin_at(dir, name))
}

/// The error of [`pin_at`] for an entry the engine does not pin: a symlink (`ELOOP`) or
/// a FIFO, socket or device (the portable engine only pins files and directories).
/// The caller classifies the name again and reports it.
pub(crate) fn not_pinnable(e: &io::Error) -> bool {
    engine() == Engine::Portable && matches!(e.raw_os_error(), Some(libc::ELOOP | portable::NOT_PINNABLE))
}

/// `/`, where every safe resolution of a configured path starts (see `root`).
pub(crate) fn open_slash() -> io::Result<OwnedFd> {
    engine!(open_slash())
}

/// Pins a directory below `dir`: for resolving paths, not for listing.
pub(crate) fn pin_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    engine!(pin_dir_at(dir, name))
}

/// Changes owner and group of exactly the pinned inode; `u32::MAX` keeps one.
pub(crate) fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    engine!(chown_fd(fd, uid, gid))
}

/// Changes the mode of exactly the pinned inode.
pub(crate) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    engine!(chmod_fd(fd, mode))
}

/// Reads every entry name of a directory (without `.` and `..`).
pub(crate) fn read_dir(dir: BorrowedFd<'_>, each: impl FnMut(&CStr, TypeHint)) -> io::Result<()> {
    engine!(read_dir(dir, each))
}

/// Gives the socket `name` below `dir` (the service's own private directory), just
/// bound, its group and mode. A socket cannot be opened: the Linux engine pins it with
/// `O_PATH` and checks the pin is a socket; elsewhere the name is checked to be a socket
/// and changed with `fchownat`/`fchmodat(AT_SYMLINK_NOFOLLOW)`, which is safe because
/// only the service can write to that directory.
pub(crate) fn set_socket_access_at(dir: BorrowedFd<'_>, name: &CStr, gid: Option<u32>, mode: u32) -> io::Result<()> {
    if engine() == Engine::Linux {
        let pin = pin_at(dir, name)?;
        if !stat_fd(pin.as_fd())?.socket {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is not the socket just bound"));
        }
        if let Some(gid) = gid {
            chown_fd(pin.as_fd(), u32::MAX, gid)?;
        }
        return chmod_fd(pin.as_fd(), mode);
    }
    portable::set_socket_access_at(dir, name, gid, mode)
}

/// `/proc/self/fd/N` on Linux: a path the kernel resolves to the pinned inode itself,
/// for the calls that take no descriptor (bind, connect, mount). `None` elsewhere, where
/// no such path exists and the caller uses the directory's own path.
pub(crate) fn proc_path(fd: BorrowedFd<'_>) -> Option<std::path::PathBuf> {
    cfg!(target_os = "linux").then(|| std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// An extended ACL as `acl_to_text` writes it, parsed by [`crate::policy::ext_acl`].
pub(crate) type AclText = String;

/// The extended ACL of `path` as `acl_to_text` writes it (macOS; see
/// [`crate::policy::ext_acl`]), not following a final symlink: for diagnostics of a path a user
/// gives. `None` where there are no extended ACLs.
pub(crate) fn ext_acl_path(path: &CStr) -> io::Result<Option<AclText>> {
    #[cfg(target_os = "macos")]
    return macos::ext_acl_path(path);
    #[cfg(not(target_os = "macos"))]
    {
        let _ = path;
        Ok(None)
    }
}

/// The filesystem holding `path` is mounted read-only.
pub(crate) fn read_only(path: &std::path::Path) -> bool {
    nix::sys::statvfs::statvfs(path).is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// An OS error as a short phrase ("Permission denied"), without Rust's "(os error 13)".
pub(crate) fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens (or creates) a file below `dir` for writing, never through a symlink and never
/// blocking: a FIFO put in the file's place fails at once (`ENXIO` without a reader) or
/// is opened without waiting, for the caller's `fstat` to refuse. On a regular file
/// `O_NONBLOCK` changes nothing. `flags` adds `O_APPEND`, `O_CREAT`, `O_EXCL` or `O_TRUNC`.
pub(crate) fn open_file_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<std::fs::File> {
    // SAFETY: `name` is NUL-terminated; the returned descriptor is owned by us.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// What an entry is, in the words of a message ("it is a FIFO").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Unknown => "a special file",
        })
    }
}

/// `st_mode` is 16 bits wide on macOS, hence the cast.
#[allow(clippy::unnecessary_cast)]
fn kind(st: &rustix::fs::Stat) -> Kind {
    use rustix::fs::FileType as T;
    match T::from_raw_mode(st.st_mode as rustix::fs::RawMode) {
        T::RegularFile => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Fifo => Kind::Fifo,
        T::Socket => Kind::Socket,
        T::CharacterDevice => Kind::CharDevice,
        T::BlockDevice => Kind::BlockDevice,
        T::Unknown => Kind::Unknown,
    }
}

/// What `name` below `dir` is, not following a symlink.
pub(crate) fn kind_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Kind> {
    Ok(kind(&rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?))
}

/// What the open descriptor `fd` is.
pub(crate) fn kind_fd(fd: BorrowedFd<'_>) -> io::Result<Kind> {
    Ok(kind(&rustix::fs::fstat(fd)?))
}

/// Reads a regular file below `dir` of at most `limit` bytes, never through a symlink
/// and never blocking on a FIFO put in its place.
pub(crate) fn read_small_file_at(dir: BorrowedFd<'_>, name: &CStr, limit: u64) -> io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    if portable::stat_fd(fd.as_fd())?.file_type != FileType::File {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd).take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The target of the symlink `name` below `dir`.
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// Removes `name` below `dir`: a file, a symlink (never its target), or with `dir_entry`
/// an empty directory.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, dir_entry: bool) -> io::Result<()> {
    let flags = if dir_entry { rustix::fs::AtFlags::REMOVEDIR } else { rustix::fs::AtFlags::empty() };
    Ok(rustix::fs::unlinkat(dir, name, flags)?)
}

/// Renames `from` to `to`, both below `dir`.
pub(crate) fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    Ok(rustix::fs::renameat(dir, from, dir, to)?)
}

/// Renames `from` to `to`, both below `dir`, failing with `EEXIST` when `to` exists.
#[cfg(target_os = "linux")]
pub(crate) fn rename_noreplace_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(dir, from, dir, to, rustix::fs::RenameFlags::NOREPLACE)?)
}

/// Creates a directory below `dir`.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, portable::mode(mode))?)
}

/// Home directories of the password database, with the uid they belong to.
pub(crate) fn passwd_homes() -> Vec<(u32, std::path::PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut homes = Vec::new();
    // SAFETY: getpwent's iteration state is process-wide; the lock above keeps this the
    // only iteration in this program, and each record is copied before the next call.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            let dir = (*pw).pw_dir;
            if !dir.is_null() {
                let bytes = CStr::from_ptr(dir).to_bytes();
                homes.push(((*pw).pw_uid, std::path::PathBuf::from(std::ffi::OsStr::from_bytes(bytes))));
            }
        }
        libc::endpwent();
    }
    homes
}

/// The supplementary groups of this process.
pub(crate) fn own_groups() -> Vec<u32> {
    #[cfg(target_os = "linux")]
    {
        nix::unistd::getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut groups = vec![0 as libc::gid_t; 1024];
        // SAFETY: getgroups writes at most `len` entries into the buffer.
        let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
        groups.truncate(usize::try_from(n).unwrap_or(0));
        groups
    }
}

/// The groups the group database gives the user `name` whose primary group is `gid`.
pub(crate) fn group_list(name: &CStr, gid: u32) -> Vec<u32> {
    #[cfg(target_os = "linux")]
    {
        nix::unistd::getgrouplist(name, gid.into()).map(|l| l.iter().map(|g| g.as_raw()).collect()).unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Apple's getgrouplist takes and fills `int`s; a gid above i32::MAX comes back
        // through the same bits.
        let mut groups = vec![0 as libc::c_int; 1024];
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated; at most `n` entries are written.
        let ret = unsafe { libc::getgrouplist(name.as_ptr(), gid as libc::c_int, groups.as_mut_ptr(), &mut n) };
        if ret < 0 {
            return Vec::new();
        }
        groups.truncate(usize::try_from(n).unwrap_or(0));
        groups.into_iter().map(|g| g as u32).collect()
    }
}

/// Where POSIX ACLs (Linux xattrs) do not exist. The default ACL reads say "not
/// supported", which the walk and `doctor` handle as a cache whose inheritance is
/// `repair only`. On macOS the "access ACL" of an entry is its extended ACL's `deny`
/// entries (SPEC §1: each is a divergence), returned as the lines `ls -le` would show
/// (`group:everyone deny delete`): the walk cannot decode them as a POSIX ACL, so it
/// removes them, which here clears the extended ACL through the pinned descriptor.
#[cfg(not(target_os = "linux"))]
mod other {
    use super::*;

    fn unsupported<T>() -> io::Result<T> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

    fn is_access(attr: &CStr) -> bool {
        attr == crate::policy::acl::ACCESS
    }

    /// The `deny` entries of an extended ACL's text, one line each; `None` without any.
    #[cfg(target_os = "macos")]
    fn deny_lines(text: Option<String>) -> Option<Vec<u8>> {
        let lines: Vec<String> = crate::policy::ext_acl::denies(text.as_deref().unwrap_or(""))
            .iter()
            .map(crate::policy::ext_acl::Ace::describe)
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n").into_bytes())
    }

    pub fn get_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
        #[cfg(target_os = "macos")]
        if is_access(attr) {
            return Ok(deny_lines(macos::ext_acl_fd(fd)?));
        }
        let _ = (fd, is_access(attr));
        unsupported()
    }

    pub fn get_xattr_path(path: &CStr, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
        #[cfg(target_os = "macos")]
        if is_access(attr) {
            return Ok(deny_lines(macos::ext_acl_path(path)?));
        }
        let _ = path;
        unsupported()
    }

    /// There is no `*at` call for extended ACLs: the entry is pinned (a regular file or
    /// directory only, see [`portable::pin_at`]) and read through the pin. Whatever
    /// cannot be pinned (a symlink or FIFO swapped in) has no ACL to read here; the walk
    /// pins and re-checks it again before any change.
    pub fn get_xattr_at(dir: BorrowedFd<'_>, name: &CStr, attr: &CStr, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        #[cfg(target_os = "macos")]
        if is_access(attr) {
            let pin = match portable::pin_at(dir, name) {
                Ok(pin) => pin,
                Err(e) if not_pinnable(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            return Ok(get_xattr_fd(pin.as_fd(), attr)?.map(|v| {
                buf.clear();
                buf.extend_from_slice(&v);
                v.len()
            }));
        }
        let _ = (dir, name, buf);
        unsupported()
    }

    pub fn set_xattr_fd(_fd: BorrowedFd<'_>, _attr: &CStr, _value: &[u8]) -> io::Result<()> {
        unsupported()
    }

    pub fn remove_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<()> {
        #[cfg(target_os = "macos")]
        if is_access(attr) {
            return macos::clear_ext_acl_fd(fd);
        }
        let _ = fd;
        unsupported()
    }

    /// Not asked for elsewhere: a root that replaced another is then judged by its
    /// contents alone.
    pub fn birth_time(_fd: BorrowedFd<'_>) -> Option<std::time::SystemTime> {
        None
    }

    /// No bind mounts, so nothing to unmount.
    pub fn unmount_when_gone(_mounts: Vec<(std::ffi::CString, u64)>) -> io::Result<()> {
        Ok(())
    }

    /// Bind mounts exist only on Linux; `--isolate` says so in one line.
    pub fn bind_onto_itself(_fd: BorrowedFd<'_>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "bind mounts exist only on Linux; --isolate is not available here",
        ))
    }
}
/// Few malloc arenas: glibc gives each thread that allocates (the walk's rayon workers,
/// tokio's) an arena of its own, and memory freed in one is not reused by another. A
/// service that keeps a small state for a long time wants one heap, not eight.
pub(crate) fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called before the service starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands memory freed by a full scan or a burst of events back to the system, so that
/// the service's size is what it keeps (watches, pending paths), not its peak.
pub(crate) fn trim_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The filesystem of `path`, and whether it must be polled: network and FUSE
/// filesystems send no inotify events for writes made by other clients.
#[cfg(target_os = "macos")]
pub(crate) fn filesystem(path: &std::path::Path) -> (String, bool) {
    let Ok(st) = nix::sys::statfs::statfs(path) else { return ("unknown".into(), false) };
    // macOS names the filesystem (f_fstypename); FSEvents, like inotify, sees only the
    // writes made through this kernel.
    let name = st.filesystem_type_name().to_owned();
    let network = matches!(name.as_str(), "nfs" | "smbfs" | "afpfs" | "webdav" | "macfuse" | "osxfuse" | "fuse");
    (name, network)
}

/// The filesystem of `path`, and whether it must be polled: network and FUSE
/// filesystems send no inotify events for writes made by other clients.
#[cfg(not(target_os = "macos"))]
pub(crate) fn filesystem(path: &std::path::Path) -> (String, bool) {
    let Ok(st) = nix::sys::statfs::statfs(path) else { return ("unknown".into(), false) };
    // The magic numbers of statfs(2).
    let (name, network) = match st.filesystem_type().0 as u64 {
        0xEF53 => ("ext4", false),
        0x5846_5342 => ("xfs", false),
        0x9123_683E => ("btrfs", false),
        0x0102_1994 => ("tmpfs", false),
        0x794C_7630 => ("overlayfs", false),
        0x2FC1_2FC1 => ("zfs", false),
        0xF2F5_2010 => ("f2fs", false),
        0x6969 => ("nfs", true),
        0x517B => ("smb", true),
        0xFE53_4D42 => ("smb2", true),
        0xFF53_4D42 => ("cifs", true),
        0x6573_5546 => ("fuse", true),
        0x00C3_6400 => ("ceph", true),
        0x0102_1997 => ("9p", true),
        0x5346_414F => ("afs", true),
        0x0BD0_0BD0 => ("lustre", true),
        0x4750_4653 => ("gpfs", true),
        other => return (format!("0x{other:x}"), false),
    };
    (name.to_owned(), network)
}

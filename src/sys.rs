//! Thin safe wrappers over the descriptor-relative Linux calls the walk is built on
//! (`statx`, `openat`, `getdents64`, `fchownat`, `fchmodat2`, `readlinkat`, `mkdirat`,
//! `unlinkat`, `renameat`). Nothing here takes a full path except `open_slash` (the
//! directory every safe resolution starts from) and the bind mount: every other call is
//! relative to a directory descriptor, so no name in the tree can redirect it and depth
//! never meets `PATH_MAX`.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::model::MODE_BITS;

/// File type of an entry, from `st_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Dir,
    File,
    Symlink,
    /// FIFO, socket, character or block device.
    Special,
}

/// What one `statx` call tells about an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub file_type: FileType,
    pub dev: (u32, u32),
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// `MODE_BITS` only.
    pub mode: u32,
    pub nlink: u32,
    /// Mount id (Linux 5.8+); `None` on kernels that do not report it, where the
    /// device number is the only mount check left.
    pub mnt_id: Option<u64>,
    /// A socket (one of the `Special` kind).
    pub socket: bool,
}

impl Stat {
    /// Same inode and same kind: the entry was not swapped between two looks.
    pub fn same_inode(&self, other: &Stat) -> bool {
        self.dev == other.dev && self.ino == other.ino && self.file_type == other.file_type
    }

    /// On the same mount as `root`: same device and, where known, same mount id
    /// (a bind mount of the same filesystem has the same device number).
    pub fn same_mount(&self, root: &Stat) -> bool {
        self.dev == root.dev && (self.mnt_id.is_none() || self.mnt_id == root.mnt_id)
    }
}

/// The filesystem holding `path` is mounted read-only.
pub fn read_only(path: &std::path::Path) -> bool {
    nix::sys::statvfs::statvfs(path).is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// An OS error as a short phrase ("Permission denied"), without Rust's "(os error 13)".
pub fn describe(e: &io::Error) -> String {
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

fn statx_raw(dirfd: libc::c_int, name: &CStr, flags: libc::c_int) -> io::Result<Stat> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    let mask = libc::STATX_TYPE
        | libc::STATX_MODE
        | libc::STATX_NLINK
        | libc::STATX_UID
        | libc::STATX_GID
        | libc::STATX_INO
        | libc::STATX_MNT_ID;
    // SAFETY: `name` is NUL-terminated and `buf` is a valid statx buffer.
    cvt(unsafe { libc::statx(dirfd, name.as_ptr(), flags | libc::AT_SYMLINK_NOFOLLOW, mask, buf.as_mut_ptr()) })?;
    // SAFETY: statx succeeded and filled the buffer (it was zeroed before).
    let st = unsafe { buf.assume_init() };
    let fmt = u32::from(st.stx_mode) & libc::S_IFMT;
    let file_type = match fmt {
        libc::S_IFDIR => FileType::Dir,
        libc::S_IFREG => FileType::File,
        libc::S_IFLNK => FileType::Symlink,
        _ => FileType::Special,
    };
    Ok(Stat {
        file_type,
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        uid: st.stx_uid,
        gid: st.stx_gid,
        mode: u32::from(st.stx_mode) & MODE_BITS,
        nlink: st.stx_nlink,
        mnt_id: (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id),
        socket: fmt == libc::S_IFSOCK,
    })
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`, as `statx` to also learn the mount id.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    statx_raw(dir.as_raw_fd(), name, 0)
}

/// `fstat` of a descriptor, `O_PATH` ones included.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    statx_raw(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn open_raw(dirfd: libc::c_int, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the returned descriptor is owned by us.
    let fd = cvt(unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) })?;
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory below `dir` for reading, never following a symlink in `name`.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)
}

/// Pins an entry without opening it: `O_PATH | O_NOFOLLOW` never blocks on a FIFO
/// or device and never follows a symlink.
pub fn pin_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW)
}

/// `/`, where every safe resolution of a configured path starts (see `root`).
pub fn open_slash() -> io::Result<OwnedFd> {
    open_raw(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY)
}

/// Pins a directory below `dir` (`O_PATH`): for resolving paths, not for listing.
pub fn pin_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
}

/// Opens (or creates) a file below `dir` for writing, never through a symlink.
/// `flags` adds `O_APPEND`, `O_CREAT`, `O_EXCL` or `O_TRUNC`.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<std::fs::File> {
    // SAFETY: `name` is NUL-terminated; the returned descriptor is owned by us.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Reads a regular file below `dir` of at most `limit` bytes, never through a symlink
/// and never blocking on a FIFO put in its place.
pub fn read_small_file_at(dir: BorrowedFd<'_>, name: &CStr, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = open_raw(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK)?;
    if stat_fd(fd.as_fd())?.file_type != FileType::File {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd).take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The target of the symlink `name` below `dir`.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Removes `name` below `dir`: a file, a symlink (never its target), or with `dir_entry`
/// an empty directory.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, dir_entry: bool) -> io::Result<()> {
    let flags = if dir_entry { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// Renames `from` to `to`, both below `dir`.
pub fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) }).map(drop)
}

/// `/proc/self/fd/N`: a path the kernel resolves to the pinned inode itself, for the
/// calls that take no descriptor (bind, connect, mount, inotify_add_watch).
pub fn proc_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Bind-mounts the directory pinned by `fd` on itself, so that it becomes a mount of its
/// own: `link(2)` and `rename(2)` across its edge then fail with `EXDEV`.
pub fn bind_onto_itself(fd: BorrowedFd<'_>) -> io::Result<()> {
    let p = proc_path(fd);
    nix::mount::mount(Some(&p), &p, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Home directories of the password database, with the uid they belong to.
pub fn passwd_homes() -> Vec<(u32, std::path::PathBuf)> {
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

/// Creates a directory below `dir`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`: changes exactly the pinned inode.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: empty NUL-terminated name with AT_EMPTY_PATH acts on `fd` itself.
    cvt(unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) }).map(drop)
}

static NO_FCHMODAT2: AtomicBool = AtomicBool::new(false);

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)` (Linux 6.6+), which works on `O_PATH`
/// descriptors where `fchmod` gives `EBADF`; older kernels go through
/// `/proc/self/fd/N`, which names the same pinned inode.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    if !NO_FCHMODAT2.load(Ordering::Relaxed) {
        // SAFETY: raw syscall with a valid fd, a NUL-terminated empty name and flags.
        let ret = unsafe {
            libc::syscall(libc::SYS_fchmodat2, fd.as_raw_fd(), c"".as_ptr(), mode as libc::mode_t, libc::AT_EMPTY_PATH)
        };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) => NO_FCHMODAT2.store(true, Ordering::Relaxed),
            // Seccomp filters that predate fchmodat2 (Docker's default profile, older
            // systemd) answer EPERM; a real EPERM fails the fallback as well.
            Some(libc::EPERM) => {
                chmod_proc(fd, mode).map_err(|_| err)?;
                NO_FCHMODAT2.store(true, Ordering::Relaxed);
                return Ok(());
            }
            _ => return Err(err),
        }
    }
    chmod_proc(fd, mode)
}

/// chmod through `/proc/self/fd/N`, which resolves to the pinned inode itself.
fn chmod_proc(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number");
    // SAFETY: NUL-terminated path.
    cvt(unsafe { libc::chmod(proc_path.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `d_type` hint from `getdents64`; only a hint, never trusted for safety.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeHint {
    Dir,
    NotDir,
    Unknown,
}

/// Reads every entry name of a directory (without `.` and `..`) with `getdents64`.
/// The descriptor's offset is consumed; other tasks may still use it for `*at` calls.
pub fn read_dir(dir: BorrowedFd<'_>, mut each: impl FnMut(&CStr, TypeHint)) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(());
        }
        let mut off = 0usize;
        let end = n as usize;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name[].
        while off + 19 <= end {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > end {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed directory entry"));
            }
            let d_type = buf[off + 18];
            // d_name is NUL-terminated within the record: no copy is needed.
            let Ok(name) = CStr::from_bytes_until_nul(&buf[off + 19..off + reclen]) else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "unterminated directory entry name"));
            };
            if name != c"." && name != c".." {
                let hint = match d_type {
                    libc::DT_DIR => TypeHint::Dir,
                    libc::DT_UNKNOWN => TypeHint::Unknown,
                    _ => TypeHint::NotDir,
                };
                each(name, hint);
            }
            off += reclen;
        }
    }
}

/// Few malloc arenas: glibc gives each thread that allocates (the walk's rayon workers,
/// tokio's) an arena of its own, and memory freed in one is not reused by another. A
/// service that keeps a small state for a long time wants one heap, not eight.
pub fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called before the service starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands memory freed by a full scan or a burst of events back to the system, so that
/// the service's size is what it keeps (watches, pending paths), not its peak.
pub fn trim_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_dir_lists_every_name_once() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..2000 {
            std::fs::write(tmp.path().join(format!("file-{i:05}-{}", "x".repeat(40))), b"").unwrap();
        }
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let root: OwnedFd = std::fs::File::open(tmp.path()).unwrap().into();
        let mut names = Vec::new();
        let mut dirs = 0;
        read_dir(root.as_fd(), |name, hint| {
            names.push(name.to_bytes().to_vec());
            dirs += usize::from(hint == TypeHint::Dir);
        })
        .unwrap();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 2001);
        assert_eq!(dirs, 1);
    }

    #[test]
    fn chmod_through_an_o_path_pin() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"").unwrap();
        let root: OwnedFd = std::fs::File::open(tmp.path()).unwrap().into();
        let pin = pin_at(root.as_fd(), c"f").unwrap();
        chmod_fd(pin.as_fd(), 0o640).unwrap();
        assert_eq!(stat_fd(pin.as_fd()).unwrap().mode, 0o640);
        assert_eq!(stat_at(root.as_fd(), c"f").unwrap().mode, 0o640);
    }
}

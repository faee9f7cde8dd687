//! The Linux fast path of the seam: `statx` (one call gives the mount id too), `O_PATH`
//! pins (they never open the entry, so a FIFO or device put in a file's place cannot
//! block or react), `fchmodat2` on those pins, `getdents64` straight into a buffer, and
//! the POSIX ACL xattrs (with `getxattrat`). The portable engine does the same work with
//! POSIX-2008 calls only; see [`super::portable`].

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{cvt, FileType, Stat, TypeHint};
use crate::policy::model::MODE_BITS;

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
pub(super) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    statx_raw(dir.as_raw_fd(), name, 0)
}

/// `fstat` of a descriptor, `O_PATH` ones included.
pub(super) fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    statx_raw(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn open_raw(dirfd: libc::c_int, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the returned descriptor is owned by us.
    let fd = cvt(unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) })?;
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory below `dir` for reading, never following a symlink in `name`.
pub(super) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)
}

/// Pins an entry without opening it: `O_PATH | O_NOFOLLOW` never blocks on a FIFO
/// or device and never follows a symlink.
pub(super) fn pin_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW)
}

/// `/`, where every safe resolution of a configured path starts (see `root`).
pub(super) fn open_slash() -> io::Result<OwnedFd> {
    open_raw(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY)
}

/// Pins a directory below `dir` (`O_PATH`): for resolving paths, not for listing.
pub(super) fn pin_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
}

/// `/proc/self/fd/N`: a path the kernel resolves to the pinned inode itself, for the
/// calls that take no descriptor (bind, connect, mount, inotify_add_watch).
fn proc_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Bind-mounts the directory pinned by `fd` on itself, so that it becomes a mount of its
/// own: `link(2)` and `rename(2)` across its edge then fail with `EXDEV`.
pub(crate) fn bind_onto_itself(fd: BorrowedFd<'_>) -> io::Result<()> {
    let p = proc_path(fd);
    nix::mount::mount(Some(&p), &p, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// When the inode behind `fd` was created (`statx` `STATX_BTIME`), where the filesystem
/// records it.
pub(crate) fn birth_time(fd: BorrowedFd<'_>) -> Option<std::time::SystemTime> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: an empty NUL-terminated name with AT_EMPTY_PATH and a valid statx buffer.
    let ret =
        unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_BTIME, buf.as_mut_ptr()) };
    if ret != 0 {
        return None;
    }
    // SAFETY: statx succeeded and filled the buffer (it was zeroed before).
    let st = unsafe { buf.assume_init() };
    if st.stx_mask & libc::STATX_BTIME == 0 || st.stx_btime.tv_sec < 0 {
        return None;
    }
    let since = std::time::Duration::new(st.stx_btime.tv_sec as u64, st.stx_btime.tv_nsec);
    Some(std::time::UNIX_EPOCH + since)
}

/// Makes the service's mounts end with it (SPEC §6: they do not outlive it in the host's
/// mount namespace). The service drops `CAP_SYS_ADMIN` right after start, so it cannot
/// unmount them itself: a forked process keeps root's power, waits until its end of a
/// pipe reports that the service is gone (however it ended, SIGKILL included), then
/// detaches each mount that still has the id it had when it was made, and exits. It
/// ignores the stop signals a service manager sends to the whole group, so that it
/// outlives the service by the moment it needs. Call it while the process has one thread.
pub(crate) fn unmount_when_gone(mounts: Vec<(std::ffi::CString, u64)>) -> io::Result<()> {
    use nix::unistd::{fork, ForkResult};
    if mounts.is_empty() {
        return Ok(());
    }
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: the caller guarantees one thread, so the child's copy of the process is
    // consistent; the child only makes system calls and ends with `_exit`.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => {
            drop(read);
            // Held until the service ends: the child wakes when the last write end closes.
            std::mem::forget(write);
            Ok(())
        }
        ForkResult::Child => {
            drop(write);
            // SAFETY: plain system calls on descriptors and NUL-terminated paths this
            // process owns; nothing here returns to the service's code.
            unsafe {
                libc::dup2(read.as_raw_fd(), 0);
                libc::close_range(3, libc::c_uint::MAX, 0);
                for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                libc::prctl(libc::PR_SET_NAME, c"ck-unmount".as_ptr());
                let mut byte = 0u8;
                while libc::read(0, (&raw mut byte).cast(), 1) < 0
                    && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {}
                for (path, id) in &mounts {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    );
                    if fd < 0 {
                        continue;
                    }
                    let same = statx_raw(fd, c"", libc::AT_EMPTY_PATH).is_ok_and(|st| st.mnt_id == Some(*id));
                    libc::close(fd);
                    if same {
                        libc::umount2(path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW);
                    }
                }
                libc::_exit(0);
            }
        }
    }
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`: changes exactly the pinned inode.
pub(super) fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: empty NUL-terminated name with AT_EMPTY_PATH acts on `fd` itself.
    cvt(unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) }).map(drop)
}

static NO_FCHMODAT2: AtomicBool = AtomicBool::new(false);

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)` (Linux 6.6+), which works on `O_PATH`
/// descriptors where `fchmod` gives `EBADF`; older kernels go through
/// `/proc/self/fd/N`, which names the same pinned inode.
pub(super) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
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
    let proc_path = proc_fd(fd.as_raw_fd());
    // SAFETY: NUL-terminated path.
    cvt(unsafe { libc::chmod(proc_path.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `/proc/self/fd/N`: the inode a descriptor pins, for the calls that take no
/// `O_PATH` descriptor (the kernel answers `EBADF`); the magic link resolves to that
/// inode itself, never to a name in the tree.
fn proc_fd(fd: libc::c_int) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number")
}

/// The size an xattr read returned, `None` for no such xattr (`ENODATA`).
fn xattr_len(ret: libc::ssize_t) -> io::Result<Option<usize>> {
    if ret >= 0 {
        return Ok(Some(ret as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODATA) => Ok(None),
        _ => Err(err),
    }
}

/// Reads xattr `attr` into `buf` with `read(buf)`, growing it once when `ERANGE` says
/// it is too small (ACLs are small: 4 bytes a header, 8 an entry).
fn read_xattr(buf: &mut Vec<u8>, mut read: impl FnMut(&mut [u8]) -> libc::ssize_t) -> io::Result<Option<usize>> {
    // A zero-length buffer asks for the size instead of the value.
    if buf.len() < 64 {
        buf.resize(256, 0);
    }
    match xattr_len(read(buf)) {
        Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
            let size = xattr_len(read(&mut []))?.unwrap_or(0);
            buf.resize(size.max(buf.len()) + 64, 0);
            xattr_len(read(buf))
        }
        other => other,
    }
}

/// The value of xattr `attr` of the inode behind `fd` (an open directory or an `O_PATH`
/// pin), `None` when it has none. `EOPNOTSUPP`: the filesystem has no such xattrs.
pub(crate) fn get_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    let raw = fd.as_raw_fd();
    // SAFETY: `attr` is NUL-terminated; the buffer is writable for the length passed.
    let got = read_xattr(&mut buf, |b| unsafe { libc::fgetxattr(raw, attr.as_ptr(), b.as_mut_ptr().cast(), b.len()) });
    let got = match got {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
            let path = proc_fd(raw);
            // SAFETY: as above, with a NUL-terminated path.
            read_xattr(&mut buf, |b| unsafe {
                libc::getxattr(path.as_ptr(), attr.as_ptr(), b.as_mut_ptr().cast(), b.len())
            })
        }
        other => other,
    }?;
    Ok(got.map(|n| {
        buf.truncate(n);
        buf
    }))
}

/// The value of xattr `attr` of the file `path` names, following symlinks: for
/// diagnostics of a path a user gives, never for a change.
pub(crate) fn get_xattr_path(path: &CStr, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings; the buffer is writable for the length passed.
    let got = read_xattr(&mut buf, |b| unsafe {
        libc::getxattr(path.as_ptr(), attr.as_ptr(), b.as_mut_ptr().cast(), b.len())
    })?;
    Ok(got.map(|n| {
        buf.truncate(n);
        buf
    }))
}

/// `struct xattr_args` of `getxattrat(2)`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// `getxattrat` (Linux 6.13) has the same number on every architecture: the tables
/// were unified from 424 on. Not yet in `libc` for every target.
const SYS_GETXATTRAT: libc::c_long = 464;
static NO_GETXATTRAT: AtomicBool = AtomicBool::new(false);

/// The value of xattr `attr` of the entry `name` in `dir`, never following a symlink,
/// without opening or pinning the entry: one `getxattrat` where the kernel has it
/// (6.13+), else `lgetxattr` of `/proc/self/fd/DIR/name`, which resolves `name` in the
/// directory the descriptor pins. `None` when there is none.
pub(crate) fn get_xattr_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    attr: &CStr,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    if !NO_GETXATTRAT.load(Ordering::Relaxed) {
        let got = read_xattr(buf, |b| {
            let args = XattrArgs { value: b.as_mut_ptr() as u64, size: b.len() as u32, flags: 0 };
            // SAFETY: NUL-terminated names; `args` points at a buffer writable for
            // `size` bytes and its own size is passed.
            (unsafe {
                libc::syscall(
                    SYS_GETXATTRAT,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                    attr.as_ptr(),
                    &args as *const XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            }) as libc::ssize_t
        });
        match got {
            // Older kernels, and seccomp filters that predate the call.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                NO_GETXATTRAT.store(true, Ordering::Relaxed)
            }
            other => return other,
        }
    }
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = std::ffi::CString::new(path).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated strings; the buffer is writable for the length passed.
    read_xattr(buf, |b| unsafe { libc::lgetxattr(path.as_ptr(), attr.as_ptr(), b.as_mut_ptr().cast(), b.len()) })
}

/// Sets xattr `attr` of the inode behind `fd` (open directory or `O_PATH` pin).
pub(crate) fn set_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr, value: &[u8]) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `attr` is NUL-terminated; `value` is readable for its length.
    let ret = unsafe { libc::fsetxattr(raw, attr.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    match cvt(ret) {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
            let path = proc_fd(raw);
            // SAFETY: as above, with a NUL-terminated path.
            cvt(unsafe { libc::setxattr(path.as_ptr(), attr.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
                .map(drop)
        }
        other => other.map(drop),
    }
}

/// Removes xattr `attr` of the inode behind `fd`; having none is not an error.
pub(crate) fn remove_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `attr` is NUL-terminated.
    let mut ret = cvt(unsafe { libc::fremovexattr(raw, attr.as_ptr()) });
    if matches!(&ret, Err(e) if e.raw_os_error() == Some(libc::EBADF)) {
        let path = proc_fd(raw);
        // SAFETY: NUL-terminated path and name.
        ret = cvt(unsafe { libc::removexattr(path.as_ptr(), attr.as_ptr()) });
    }
    match ret {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        other => other.map(drop),
    }
}

/// Reads every entry name of a directory (without `.` and `..`) with `getdents64`.
/// The descriptor's offset is consumed; other tasks may still use it for `*at` calls.
pub(super) fn read_dir(dir: BorrowedFd<'_>, mut each: impl FnMut(&CStr, TypeHint)) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

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

    #[test]
    fn xattrs_through_a_directory_descriptor_and_an_o_path_pin() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("f"), b"").unwrap();
        let root: OwnedFd = std::fs::File::open(tmp.path()).unwrap().into();
        let dir = open_dir_at(root.as_fd(), c"d").unwrap();
        let acl = crate::policy::acl::Acl::minimal(0o775).encode();
        match set_xattr_fd(dir.as_fd(), crate::policy::acl::DEFAULT, &acl) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                panic!("the temp dir's filesystem has no POSIX ACLs: run this test where it has (CI does)")
            }
            r => r.unwrap(),
        }
        assert_eq!(get_xattr_fd(dir.as_fd(), crate::policy::acl::DEFAULT).unwrap(), Some(acl.clone()));
        let mut buf = vec![0u8; 8];
        let n = get_xattr_at(root.as_fd(), c"d", crate::policy::acl::DEFAULT, &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], &acl[..], "a too small buffer grows");
        remove_xattr_fd(dir.as_fd(), crate::policy::acl::DEFAULT).unwrap();
        remove_xattr_fd(dir.as_fd(), crate::policy::acl::DEFAULT).unwrap();
        assert_eq!(get_xattr_fd(dir.as_fd(), crate::policy::acl::DEFAULT).unwrap(), None);

        let pin = pin_at(root.as_fd(), c"f").unwrap();
        assert_eq!(get_xattr_fd(pin.as_fd(), crate::policy::acl::ACCESS).unwrap(), None);
        let mut access = crate::policy::acl::Acl::minimal(0o664);
        access.entries.insert(1, crate::policy::acl::Entry { tag: crate::policy::acl::USER, perm: 7, id: 4242 });
        access.entries.insert(
            3,
            crate::policy::acl::Entry { tag: crate::policy::acl::MASK, perm: 7, id: crate::policy::acl::UNDEFINED_ID },
        );
        set_xattr_fd(pin.as_fd(), crate::policy::acl::ACCESS, &access.encode()).unwrap();
        assert_eq!(
            get_xattr_at(root.as_fd(), c"f", crate::policy::acl::ACCESS, &mut buf).unwrap(),
            Some(access.encode().len())
        );
        remove_xattr_fd(pin.as_fd(), crate::policy::acl::ACCESS).unwrap();
        assert_eq!(get_xattr_at(root.as_fd(), c"f", crate::policy::acl::ACCESS, &mut buf).unwrap(), None);
    }
}

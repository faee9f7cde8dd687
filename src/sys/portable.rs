//! The portable engine: the walk's calls over POSIX-2008 `*at` functions, through rustix
//! (no `unsafe` here). Used on macOS and the BSDs, and on Linux when
//! `CACHEKEEPER_ENGINE=portable` (tests).
//!
//! Without `O_PATH` there is no way to hold an inode without opening it, so the rules of
//! SPEC §6 are kept this way:
//!
//! - an entry is classified with `fstatat(AT_SYMLINK_NOFOLLOW)` first; only a regular
//!   file or a directory is ever pinned, so a FIFO, socket or device seen there is
//!   reported and never opened;
//! - the pin is `openat(O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)`: a symlink swapped
//!   in fails with `ELOOP`, and a FIFO or device swapped in after the look neither blocks
//!   the walk nor becomes its controlling terminal. The pin is then re-checked with
//!   `fstat`: anything but a regular file or directory is refused here and the descriptor
//!   closed before any change, and the caller compares the pin with its first look (same
//!   device, inode and kind);
//! - `fchown`/`fchmod` act on that descriptor, so exactly the pinned inode changes.
//!
//! What is left of "never opened": only something swapped in between the look and the
//! pin is opened, and then only for reading, non-blocking, and closed at once. A FIFO
//! gains a reader for that instant (no data is read); a socket cannot be opened at all;
//! a device node can only be made by root (`mknod`) and cannot be hard-linked in from
//! `/dev`, which is a filesystem of its own, so a user cannot put one in a cache.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::{FileType, Stat, TypeHint};
use crate::policy::model::MODE_BITS;

/// A mode as rustix takes it (`mode_t` is 16 bits wide on macOS).
pub(super) fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate((bits & 0o7777) as rustix::fs::RawMode)
}

/// The fields the walk uses, from a `struct stat` whose field widths differ by platform
/// (`st_mode` and `st_nlink` are 16 bits on macOS, `st_dev` is signed there).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn convert(st: &rustix::fs::Stat) -> Stat {
    let file_type = match rustix::fs::FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode) {
        rustix::fs::FileType::Directory => FileType::Dir,
        rustix::fs::FileType::RegularFile => FileType::File,
        rustix::fs::FileType::Symlink => FileType::Symlink,
        _ => FileType::Special,
    };
    let socket = rustix::fs::FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode) == rustix::fs::FileType::Socket;
    Stat {
        file_type,
        dev: (rustix::fs::major(st.st_dev as rustix::fs::Dev), rustix::fs::minor(st.st_dev as rustix::fs::Dev)),
        ino: st.st_ino as u64,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        mode: st.st_mode as u32 & MODE_BITS,
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        mnt_id: None,
        socket,
    }
}

/// What [`pin_at`] answers for an entry that is not a regular file or directory.
pub(super) const NOT_PINNABLE: i32 = libc::EINVAL;

pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    Ok(convert(&rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?))
}

pub(crate) fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    Ok(convert(&rustix::fs::fstat(fd)?))
}

fn open(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())?)
}

pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
}

/// Opens a regular file or directory to change it through the descriptor (see the
/// module's comment). `ELOOP` for a symlink, `EINVAL`-like refusal for anything else.
pub(crate) fn pin_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let fd = open(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK)?;
    match stat_fd(fd.as_fd())?.file_type {
        FileType::File | FileType::Dir => Ok(fd),
        // Swapped for a FIFO or device since the caller looked: closed unchanged.
        _ => Err(io::Error::from_raw_os_error(NOT_PINNABLE)),
    }
}

pub(crate) fn open_slash() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(c"/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

pub(crate) fn pin_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_dir_at(dir, name)
}

pub(crate) fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // u32::MAX (-1) keeps that id, as with chown(2).
    let uid = (uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(uid));
    let gid = (gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(gid));
    Ok(rustix::fs::fchown(fd, uid, gid)?)
}

pub(crate) fn chmod_fd(fd: BorrowedFd<'_>, bits: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, mode(bits))?)
}

/// Lists through a fresh descriptor of the same directory (rustix reopens `.` of `dir`,
/// so the caller's descriptor keeps its own offset and stays usable for `*at` calls).
pub(crate) fn read_dir(dir: BorrowedFd<'_>, mut each: impl FnMut(&CStr, TypeHint)) -> io::Result<()> {
    let mut listing = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let hint = match entry.file_type() {
            rustix::fs::FileType::Directory => TypeHint::Dir,
            rustix::fs::FileType::Unknown => TypeHint::Unknown,
            _ => TypeHint::NotDir,
        };
        each(name, hint);
    }
    Ok(())
}

/// See [`super::set_socket_access_at`].
pub(crate) fn set_socket_access_at(dir: BorrowedFd<'_>, name: &CStr, gid: Option<u32>, bits: u32) -> io::Result<()> {
    if !stat_at(dir, name)?.socket {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is not the socket just bound"));
    }
    if let Some(gid) = gid {
        let gid = rustix::fs::Gid::from_raw(gid);
        rustix::fs::chownat(dir, name, None, Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
    }
    #[cfg(target_os = "linux")]
    {
        // Linux's fchmodat has no AT_SYMLINK_NOFOLLOW for sockets; the name was just
        // checked and the directory is the service's own.
        Ok(rustix::fs::chmodat(dir, name, mode(bits), AtFlags::empty())?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(rustix::fs::chmodat(dir, name, mode(bits), AtFlags::SYMLINK_NOFOLLOW)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> (tempfile::TempDir, OwnedFd) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", tmp.path().join("l")).unwrap();
        nix::unistd::mkfifo(&tmp.path().join("p"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let root: OwnedFd = std::fs::File::open(tmp.path()).unwrap().into();
        (tmp, root)
    }

    #[test]
    fn classifies_without_following_and_pins_only_files_and_directories() {
        let (_tmp, root) = tree();
        let kind = |n: &CStr| stat_at(root.as_fd(), n).unwrap().file_type;
        assert_eq!(kind(c"d"), FileType::Dir);
        assert_eq!(kind(c"f"), FileType::File);
        assert_eq!(kind(c"l"), FileType::Symlink);
        assert_eq!(kind(c"p"), FileType::Special);
        assert!(pin_at(root.as_fd(), c"f").is_ok());
        assert!(pin_at(root.as_fd(), c"d").is_ok());
        let e = pin_at(root.as_fd(), c"l").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "a symlink is never followed");
        // A FIFO in a file's place: opened without blocking, then refused.
        assert_eq!(pin_at(root.as_fd(), c"p").unwrap_err().raw_os_error(), Some(libc::EINVAL));
        // Linux says ENOTDIR, macOS ELOOP: the walk takes both as "not a directory".
        let e = open_dir_at(root.as_fd(), c"l").unwrap_err().raw_os_error();
        assert!(matches!(e, Some(libc::ELOOP | libc::ENOTDIR)), "{e:?}");
    }

    #[test]
    fn changes_go_through_the_pin_and_the_listing_keeps_the_descriptor_usable() {
        let (tmp, root) = tree();
        let pin = pin_at(root.as_fd(), c"f").unwrap();
        chmod_fd(pin.as_fd(), 0o640).unwrap();
        chown_fd(pin.as_fd(), u32::MAX, u32::MAX).unwrap();
        assert_eq!(stat_fd(pin.as_fd()).unwrap().mode, 0o640);
        assert_eq!(std::fs::metadata(tmp.path().join("f")).unwrap().permissions().mode() & 0o7777, 0o640);
        let same = stat_at(root.as_fd(), c"f").unwrap();
        assert!(same.same_inode(&stat_fd(pin.as_fd()).unwrap()));
        let mut names = Vec::new();
        read_dir(root.as_fd(), |n, h| names.push((n.to_bytes().to_vec(), h == TypeHint::Dir))).unwrap();
        names.sort();
        assert_eq!(names.len(), 4);
        assert!(names.contains(&(b"d".to_vec(), true)));
        // Twice: the listing did not consume the caller's descriptor.
        let mut again = 0;
        read_dir(root.as_fd(), |_, _| again += 1).unwrap();
        assert_eq!(again, 4);
    }
}

//! Files the service keeps outside every cache (SPEC §6, side files): the audit log, the
//! metrics textfile, the control socket and its directory, and the `sync` markers. The
//! service may hold root's power when it makes them, so each lives in a directory
//! resolved like a cache root ([`crate::engine::root`]: root's own symlinks only, no unsafe
//! ownership transition) and pinned, and each is reached relative to that descriptor with
//! `O_NOFOLLOW`: a member who can write somewhere on the configured path can neither
//! redirect a write (a symlink), nor make the service append to or chmod someone else's
//! file (a hard link or a planted file), nor swap the directory itself.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::engine::root::{self, Origin, Ownership};
use crate::error::IoPathError;
use crate::sys::{self, FileType, Kind};

/// Why a side file or its directory cannot be used: what callers branch on (a refusal by
/// rule, or the system's error), and one line for people that names the path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SideFileError {
    #[error(transparent)]
    Io(#[from] IoPathError),
    /// The directory's path was refused by the safe resolution, or does not exist.
    #[error(transparent)]
    Dir(#[from] root::RootError),
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    #[error("{} names no file", .0.display())]
    NoFileName(PathBuf),
    #[error("{} belongs to uid {uid}, neither root nor the service's user: it must not hold the service's files", .path.display())]
    ForeignDir { path: PathBuf, uid: u32 },
    #[error("{} is writable by its group or by everyone ({mode:04o}): others could swap the service's files there", .path.display())]
    SharedDir { path: PathBuf, mode: u32 },
    #[error("refusing to write {}: it is {kind}, not a plain file of the service's own", .path.display())]
    NotPlain { path: PathBuf, kind: Kind },
    #[error("refusing to write {}: it is not a plain file of the service's own (uid {uid}, {links} links)", .path.display())]
    NotOurs { path: PathBuf, uid: u32, links: u32 },
    #[error("refusing to change {}: {reason}", .path.display())]
    NotSocket { path: PathBuf, reason: String },
    /// The directory of the side file at `path` was refused.
    #[error("refusing to write {}: {source}", .path.display())]
    DirOf {
        path: PathBuf,
        #[source]
        source: Box<SideFileError>,
    },
}

impl SideFileError {
    /// This error, as the reason the file at `path` is not written.
    pub(crate) fn of_file(self, path: &Path) -> SideFileError {
        SideFileError::DirOf { path: path.to_owned(), source: Box::new(self) }
    }
}

type Result<T> = std::result::Result<T, SideFileError>;

/// A directory for side files, resolved safely and pinned.
#[derive(Debug)]
pub(crate) struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

// The error type spelled out: through the alias, the check that no error is a string
// would take the `CString` for one.
fn cstr(name: &OsStr) -> std::result::Result<CString, SideFileError> {
    CString::new(name.as_bytes()).map_err(|_| SideFileError::Nul(name.to_string_lossy().into_owned()))
}

/// The directory and the file name of a configured side file.
pub(crate) fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(SideFileError::NoFileName(path.to_owned())),
    }
}

impl SafeDir {
    /// The existing directory at `path`.
    pub(crate) fn open(path: &Path) -> Result<SafeDir> {
        let (fd, _, path) = root::open_dir(path)?;
        Ok(SafeDir { fd, path })
    }

    /// The directory at `path`, created when missing (missing parents root's `0755`, the
    /// directory itself `mode`, given to `owner`).
    pub(crate) fn create(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<SafeDir> {
        let own = Ownership {
            parents: None,
            root: (owner.map(|o| o.0), owner.map(|o| o.1)),
            root_mode: mode,
            root_parent: None,
        };
        root::make_dirs(path, &Origin::Admin, own, |_| Ok(()))?;
        SafeDir::open(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Refuses a directory that anyone but root and `trusted` could write into without
    /// the sticky bit: they could swap the names the service creates there.
    pub(crate) fn require_private(&self, trusted: &[u32]) -> Result<()> {
        let st = sys::stat_fd(self.fd.as_fd()).map_err(|e| IoPathError::new("stat", &self.path, e))?;
        if st.uid != 0 && !trusted.contains(&st.uid) {
            return Err(SideFileError::ForeignDir { path: self.path.clone(), uid: st.uid });
        }
        if st.mode & 0o022 != 0 && st.mode & crate::policy::model::S_ISVTX == 0 {
            return Err(SideFileError::SharedDir { path: self.path.clone(), mode: st.mode });
        }
        Ok(())
    }

    /// Opens `name` for appending, creating it `mode` when missing. An existing file must
    /// be a regular file with one link, owned by root or `trusted`: never a file someone
    /// planted or linked there, and never a FIFO or device, which is refused before it is
    /// opened (and the open does not block should one be swapped in meanwhile).
    pub(crate) fn append(&self, name: &OsStr, mode: u32, trusted: &[u32]) -> Result<std::fs::File> {
        let c = cstr(name)?;
        let path = self.shown(name);
        self.require_plain_or_absent(name)?;
        let file =
            sys::open_file_at(self.fd.as_fd(), &c, libc::O_APPEND | libc::O_CREAT, mode).map_err(
                |e| match sys::kind_at(self.fd.as_fd(), &c) {
                    Ok(kind) if kind != Kind::File => SideFileError::NotPlain { path: path.clone(), kind },
                    _ => IoPathError::new("open", &path, e).into(),
                },
            )?;
        let st = sys::stat_fd(file.as_fd()).map_err(|e| IoPathError::new("stat", &path, e))?;
        if st.file_type != FileType::File {
            return Err(SideFileError::NotPlain { path, kind: sys::kind_fd(file.as_fd()).unwrap_or(Kind::Unknown) });
        }
        if st.nlink != 1 || (st.uid != 0 && !trusted.contains(&st.uid)) {
            return Err(SideFileError::NotOurs { path, uid: st.uid, links: st.nlink });
        }
        Ok(file)
    }

    /// Refuses `name` when it is there and anything but a regular file: a FIFO, a
    /// device, a socket, a directory or a symlink is neither opened nor replaced.
    pub(crate) fn require_plain_or_absent(&self, name: &OsStr) -> Result<()> {
        match self.kind(name)? {
            None | Some(Kind::File) => Ok(()),
            Some(kind) => Err(SideFileError::NotPlain { path: self.shown(name), kind }),
        }
    }

    /// What is at `name`, not following a symlink; `None` when nothing is.
    pub(crate) fn kind(&self, name: &OsStr) -> Result<Option<Kind>> {
        let c = cstr(name)?;
        match sys::kind_at(self.fd.as_fd(), &c) {
            Ok(kind) => Ok(Some(kind)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(IoPathError::new("stat", self.shown(name), e).into()),
        }
    }

    /// Replaces `name` whole: a new file (`O_EXCL`, so nothing planted is reused) renamed
    /// over the old one, so that a reader never sees half of it. Anything but a regular
    /// file at `name` is left alone: the rename would delete it.
    pub(crate) fn replace(&self, name: &OsStr, content: &[u8], mode: u32) -> Result<()> {
        let shown = self.shown(name);
        self.require_plain_or_absent(name)?;
        let mut tmp_name = OsStr::new(".").to_owned();
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let (c, tmp) = (cstr(name)?, cstr(&tmp_name)?);
        let fail = |what: &'static str, e: std::io::Error| SideFileError::from(IoPathError::new(what, &shown, e));
        match sys::unlink_at(self.fd.as_fd(), &tmp, false) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(fail("clear the temporary file of", e)),
            _ => {}
        }
        let mut file = sys::open_file_at(self.fd.as_fd(), &tmp, libc::O_CREAT | libc::O_EXCL, mode)
            .map_err(|e| fail("create the temporary file of", e))?;
        let written = file
            .write_all(content)
            .and_then(|()| sys::chmod_fd(file.as_fd(), mode))
            .and_then(|()| sys::rename_at(self.fd.as_fd(), &tmp, &c));
        if let Err(e) = written {
            let _ = sys::unlink_at(self.fd.as_fd(), &tmp, false);
            return Err(fail("write", e));
        }
        Ok(())
    }

    /// Creates an empty file `name`; fails if anything has that name already.
    pub(crate) fn create_file(&self, name: &OsStr) -> Result<()> {
        let c = cstr(name)?;
        sys::open_file_at(self.fd.as_fd(), &c, libc::O_CREAT | libc::O_EXCL, 0o600)
            .map(drop)
            .map_err(|e| IoPathError::new("create", self.shown(name), e).into())
    }

    /// Removes `name` (a symlink itself, never its target); absent is fine.
    pub(crate) fn remove_file(&self, name: &OsStr) -> Result<()> {
        let c = cstr(name)?;
        match sys::unlink_at(self.fd.as_fd(), &c, false) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                Err(IoPathError::new("remove", self.shown(name), e).into())
            }
            _ => Ok(()),
        }
    }

    /// A new, empty subdirectory `name` of `mode` for `owner`, replacing whatever was
    /// there (the service's own leftovers: it removes only through descriptors).
    pub(crate) fn fresh_subdir(&self, name: &OsStr, mode: u32, owner: Option<(u32, u32)>) -> Result<SafeDir> {
        let c = cstr(name)?;
        let path = self.shown(name);
        remove_tree(self.fd.as_fd(), &c, 3).map_err(|e| IoPathError::new("remove", &path, e))?;
        sys::mkdir_at(self.fd.as_fd(), &c, 0o700).map_err(|e| IoPathError::new("create", &path, e))?;
        let fd = sys::pin_dir_at(self.fd.as_fd(), &c).map_err(|e| IoPathError::new("open", &path, e))?;
        let set = owner
            .map_or(Ok(()), |(uid, gid)| sys::chown_fd(fd.as_fd(), uid, gid))
            .and_then(|()| sys::chmod_fd(fd.as_fd(), mode));
        set.map_err(|e| IoPathError::new("prepare", &path, e))?;
        Ok(SafeDir { fd, path })
    }

    /// Removes the subdirectory `name` and what is in it; absent is fine.
    pub(crate) fn remove_subdir(&self, name: &OsStr) -> Result<()> {
        let c = cstr(name)?;
        remove_tree(self.fd.as_fd(), &c, 3).map_err(|e| IoPathError::new("remove", self.shown(name), e).into())
    }

    /// A path to `name` that the kernel resolves through this directory's descriptor,
    /// for the calls that take no descriptor (`bind`, `connect`, inotify). Where there
    /// is no `/proc` (macOS), the directory's own path: it was resolved safely and only
    /// the service can change what is in it.
    pub(crate) fn proc_path(&self, name: &OsStr) -> PathBuf {
        sys::proc_path(self.fd.as_fd()).unwrap_or_else(|| self.path.clone()).join(name)
    }

    /// Gives the socket `name`, just bound here, its group and mode, checked to be a
    /// socket (through a pin where the engine can pin one).
    pub(crate) fn set_socket_access(&self, name: &OsStr, gid: Option<u32>, mode: u32) -> Result<()> {
        let c = cstr(name)?;
        let path = self.shown(name);
        sys::set_socket_access_at(self.fd.as_fd(), &c, gid, mode).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => SideFileError::NotSocket { path, reason: e.to_string() },
            _ => IoPathError::new("set the group and mode of", path, e).into(),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Removes `name` below `dir` and, `depth` levels deep, what is in it, through
/// descriptors only: a symlink is removed, never followed.
fn remove_tree(dir: BorrowedFd<'_>, name: &std::ffi::CStr, depth: u32) -> std::io::Result<()> {
    match sys::stat_at(dir, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
        Ok(st) if st.file_type != FileType::Dir => sys::unlink_at(dir, name, false),
        Ok(_) if depth == 0 => sys::unlink_at(dir, name, true),
        Ok(_) => {
            let sub = sys::open_dir_at(dir, name)?;
            let mut names = Vec::new();
            sys::read_dir(sub.as_fd(), |n, _| names.push(n.to_owned()))?;
            for n in names {
                remove_tree(sub.as_fd(), &n, depth - 1)?;
            }
            sys::unlink_at(dir, name, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    #[test]
    fn a_planted_symlink_or_link_is_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"secret\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = t.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("audit.jsonl")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(".metrics.prom.tmp")).unwrap();
        std::fs::hard_link(&victim, dir.join("linked")).unwrap();

        let safe = SafeDir::open(&dir).unwrap();
        assert!(safe.append(OsStr::new("audit.jsonl"), 0o640, &[]).is_err());
        let linked = safe.append(OsStr::new("linked"), 0o640, &[]).unwrap_err();
        assert!(matches!(linked, SideFileError::NotOurs { links: 2, .. }), "{linked}");
        safe.replace(OsStr::new("metrics.prom"), b"m 1\n", 0o644).unwrap();
        assert_eq!(std::fs::read(dir.join("metrics.prom")).unwrap(), b"m 1\n");
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret\n");
        assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o600);
        assert!(safe.create_file(OsStr::new("audit.jsonl")).is_err(), "a planted name is not reused");
    }

    #[test]
    fn a_fifo_or_directory_in_a_side_files_place_is_refused_at_once_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        nix::unistd::mkfifo(&dir.join("audit.jsonl"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        nix::unistd::mkfifo(&dir.join("metrics.prom"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::create_dir(dir.join("audit.d")).unwrap();
        let safe = SafeDir::open(&dir).unwrap();
        // Without O_NONBLOCK, opening a FIFO no one reads blocks forever.
        let err = safe.append(OsStr::new("audit.jsonl"), 0o640, &[]).unwrap_err();
        assert!(matches!(err, SideFileError::NotPlain { kind: Kind::Fifo, .. }), "{err}");
        assert!(err.to_string().contains("audit.jsonl: it is a FIFO, not a plain file"), "{err}");
        let err = safe.append(OsStr::new("audit.d"), 0o640, &[]).unwrap_err();
        assert!(err.to_string().contains("audit.d: it is a directory"), "{err}");
        let err = safe.replace(OsStr::new("metrics.prom"), b"m 1\n", 0o644).unwrap_err();
        assert!(err.to_string().contains("metrics.prom: it is a FIFO"), "{err}");
        for name in ["audit.jsonl", "metrics.prom"] {
            assert!(std::fs::symlink_metadata(dir.join(name)).unwrap().file_type().is_fifo(), "{name} was replaced");
        }
    }

    #[test]
    fn a_fresh_subdir_replaces_leftovers_without_following_them() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let dir = t.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("ck.sock.sync")).unwrap();
        let safe = SafeDir::open(&dir).unwrap();
        let sub = safe.fresh_subdir(OsStr::new("ck.sock.sync"), 0o700, None).unwrap();
        assert!(outside.join("keep").exists(), "the symlink's target was emptied");
        assert_eq!(std::fs::symlink_metadata(sub.path()).unwrap().mode() & 0o7777, 0o700);
        sub.create_file(OsStr::new("1")).unwrap();
        safe.remove_subdir(OsStr::new("ck.sock.sync")).unwrap();
        assert!(!dir.join("ck.sock.sync").exists());
    }
}

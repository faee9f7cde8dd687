//! The change step, and the one place that changes entries of a cache. A diverging
//! entry, pinned, is checked again through its pin ([`Walker::settle`]); every change
//! goes through that descriptor, in the order narrow → chown → final mode ([`apply`]),
//! so that there is never a moment with more access than before or after (the
//! systemd-tmpfiles `fd_set_perms` order; CVE-2017-18078, CVE-2018-6954). What happened
//! goes to the walk's visitor.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::policy::acl::{self, Acl};
use crate::policy::model::{self, Attrs, Divergence, Kind, Place};
use crate::sys::{self, FileType};

use super::{vanished, Action, Failure, Finding, Note, Reason, Tally, Walker};

/// A repair that the kernel accepted but that did not take: a filesystem that ignores
/// chmod or chown (WSL `drvfs`, some FUSE), or setgid dropped for a non-member.
#[derive(Debug, thiserror::Error)]
#[error("the filesystem kept {now} where {want} was set")]
pub(crate) struct NotApplied {
    now: String,
    want: String,
}

/// The error of [`apply`] is a read-back that differs ([`NotApplied`]).
pub(crate) fn not_applied(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotApplied>())
}

/// Brings the inode behind `fd` from `d.from` to `d.to`, then reads it back.
/// `default_acl` is the model's default ACL, set when `d.set_default_acl`.
pub(crate) fn apply(fd: BorrowedFd<'_>, d: &Divergence, default_acl: Option<&Acl>) -> io::Result<()> {
    let (from, to) = (d.from, d.to);
    let mut current = from.mode;
    if d.drop_access_acl {
        // On an entry with an access ACL, chmod sets the mask, which bounds every named
        // entry: narrowing first means no one keeps, even for a moment, more than both
        // the old and the new state allow once the ACL is gone and the plain group bits
        // (= that mask) apply.
        let narrow = from.mode & to.mode;
        if narrow != current {
            sys::chmod_fd(fd, narrow)?;
            current = narrow;
        }
        sys::remove_xattr_fd(fd, acl::ACCESS)?;
    }
    if d.owner() || d.group() {
        // Narrow to old ∩ new so that the chown never hands the new owner or group more
        // than both states allow. One exception: when the group stays, its bits may take
        // their final value at once. The group gains nothing it will not have a moment
        // later, and a member who just created the entry (Go writes into a directory
        // right after its mkdir) keeps its access through the group while the owner
        // changes, instead of losing it until the final chmod.
        let mut narrow = current & to.mode;
        if !d.group() {
            narrow |= to.mode & 0o070;
        }
        if narrow != current {
            sys::chmod_fd(fd, narrow)?;
        }
        let uid = if d.owner() { to.uid } else { u32::MAX };
        let gid = if d.group() { to.gid } else { u32::MAX };
        sys::chown_fd(fd, uid, gid)?;
        // chown clears setuid and setgid, so the final mode can only come after it.
        if to.mode != narrow {
            sys::chmod_fd(fd, to.mode)?;
        }
    } else if to.mode != current {
        sys::chmod_fd(fd, to.mode)?;
    }
    // A default ACL grants nothing on the directory itself, only to entries created
    // after it: its place in the order does not matter, last is simplest.
    let wanted = default_acl.filter(|_| d.set_default_acl).map(Acl::encode);
    if let Some(bytes) = &wanted {
        sys::set_xattr_fd(fd, acl::DEFAULT, bytes)?;
    }
    let st = sys::stat_fd(fd)?;
    let now = Attrs { uid: st.uid, gid: st.gid, mode: st.mode };
    if now != to {
        let show = |a: Attrs| format!("{}:{} {:04o}", a.uid, a.gid, a.mode);
        return Err(io::Error::other(NotApplied { now: show(now), want: show(to) }));
    }
    if d.drop_access_acl && sys::get_xattr_fd(fd, acl::ACCESS)?.is_some() {
        return Err(io::Error::other(NotApplied { now: "an access ACL".into(), want: "none".into() }));
    }
    if let Some(bytes) = wanted {
        let got = sys::get_xattr_fd(fd, acl::DEFAULT)?;
        if got.as_deref().map(Acl::decode) != Some(Acl::decode(&bytes)) {
            let show = |b: Option<&[u8]>| b.and_then(|b| Acl::decode(b).ok()).map_or("none".into(), |a| a.text());
            return Err(io::Error::other(NotApplied {
                now: format!("default ACL {}", show(got.as_deref())),
                want: format!("default ACL {}", show(Some(&bytes))),
            }));
        }
    }
    Ok(())
}

/// Go's first-use `raceSafeCopy(_go.mod, go.mod)` in the directory `dir`, done for the
/// owner of the toolchain tree (cmd/go/internal/toolchain/select.go, Go 1.21+): a
/// `go.mod` with `_go.mod`'s bytes, owner, group and mode. True when it was created;
/// false when a `go.mod` of that size is already there (Go's own test).
///
/// Go's read-only directory admits no one, and the service has no `CAP_DAC_OVERRIDE`.
/// For the moment of the copy the directory's access ACL names the service's uid with
/// `-wx`: the owner keeps exactly its access (a go command copying at the same time
/// still succeeds), no one else gains anything (the group entry keeps its bits under
/// the wider mask). The copy is made under a private name and renamed without
/// replacing, so a racing go command finds either nothing or the whole file.
#[cfg(target_os = "linux")]
pub(crate) fn copy_go_mod(dir: BorrowedFd<'_>) -> io::Result<bool> {
    use std::io::Write;
    use std::os::fd::AsFd;
    use sys::FileType;
    const TMP: &std::ffi::CStr = c".go.mod.cachekeeper";
    let old = sys::stat_at(dir, c"_go.mod")?;
    if old.file_type != FileType::File || old.nlink > 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "_go.mod is not a regular file with one link"));
    }
    let size = |name: &std::ffi::CStr| -> io::Result<i64> {
        Ok(rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?.st_size)
    };
    let old_size = size(c"_go.mod")?;
    match size(c"go.mod") {
        Ok(new) if new == old_size => return Ok(false),
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a go.mod of another size is there")),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let data = sys::read_small_file_at(dir, c"_go.mod", 1 << 20)?;
    let st = sys::stat_fd(dir)?;
    if sys::get_xattr_fd(dir, acl::ACCESS)?.is_some() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the directory has an access ACL"));
    }
    let me = nix::unistd::geteuid().as_raw();
    let bits = |shift: u32| ((st.mode >> shift) & 0o7) as u16;
    let e = |tag, perm, id| acl::Entry { tag, perm, id };
    let grant = Acl {
        entries: vec![
            e(acl::USER_OBJ, bits(6), acl::UNDEFINED_ID),
            e(acl::USER, 0o3, me),
            e(acl::GROUP_OBJ, bits(3), acl::UNDEFINED_ID),
            e(acl::MASK, bits(3) | 0o3, acl::UNDEFINED_ID),
            e(acl::OTHER, bits(0), acl::UNDEFINED_ID),
        ],
    };
    sys::set_xattr_fd(dir, acl::ACCESS, &grant.encode())?;
    let copied = (|| {
        let _ = sys::unlink_at(dir, TMP, false);
        let mut f = sys::open_file_at(dir, TMP, libc::O_CREAT | libc::O_EXCL, 0o600)?;
        f.write_all(&data)?;
        f.sync_all()?;
        sys::chown_fd(f.as_fd(), old.uid, old.gid)?;
        sys::chmod_fd(f.as_fd(), old.mode & 0o777)?;
        drop(f);
        match sys::rename_noreplace_at(dir, TMP, c"go.mod") {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let _ = sys::unlink_at(dir, TMP, false);
                Ok(false)
            }
            Err(e) => {
                let _ = sys::unlink_at(dir, TMP, false);
                Err(e)
            }
        }
    })();
    // The mode first (it sets the mask back to the group's bits, so the named entry
    // grants nothing more), then the ACL goes.
    let restored = sys::chmod_fd(dir, st.mode).and_then(|()| sys::remove_xattr_fd(dir, acl::ACCESS));
    let copied = copied?;
    restored?;
    Ok(copied)
}

/// Elsewhere there are no POSIX ACLs to let the service write there.
#[cfg(not(target_os = "linux"))]
pub fn copy_go_mod(_dir: BorrowedFd<'_>) -> io::Result<bool> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

impl Walker<'_> {
    pub(super) fn unlock_directory(
        &self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
    ) -> io::Result<Option<OwnedFd>> {
        let pin = sys::pin_at(parent, name)?;
        let st = sys::stat_fd(pin.as_fd())?;
        if st.file_type != FileType::Dir || self.classify(&st).is_err() {
            return Ok(None);
        }
        let place = model::place_of(rel);
        if let Some(d) = self.divergence(Kind::Dir, &st, place) {
            if !self.settle(pin.as_fd(), rel, d, place) {
                return Ok(None);
            }
        }
        let fd = sys::open_dir_at(pin.as_fd(), c".")?;
        Ok(sys::stat_fd(fd.as_fd())?.same_inode(&st).then_some(fd))
    }

    /// Repairs (or, for a check, lists) a divergent entry pinned by `fd`. True when the
    /// entry complies afterwards.
    pub(super) fn settle(&self, fd: BorrowedFd<'_>, rel: &[u8], d: Divergence, place: Place) -> bool {
        if self.action == Action::Check {
            self.diverges(rel.to_vec(), d);
            return false;
        }
        match apply(fd, &d, self.default_acl.as_ref()) {
            Ok(()) => {
                self.repaired(rel, &d);
                true
            }
            Err(e) if vanished(&e) => true,
            // The read-back differs: the entry may have changed meanwhile (Go chmods an
            // extracted module to 0555 while we repair it). Decide again on what the
            // pinned inode is now, once; only a second miss is a failure.
            Err(e) if not_applied(&e) => match self.again(fd, place) {
                Ok(None) => true,
                Ok(Some(d)) => match apply(fd, &d, self.default_acl.as_ref()) {
                    Ok(()) => {
                        self.repaired(rel, &d);
                        true
                    }
                    Err(e) if vanished(&e) => true,
                    Err(e) => {
                        self.fail(rel.to_vec(), Failure::new(format!("cannot repair ({d})"), &e).of(d.from.uid));
                        false
                    }
                },
                Err(reason) => {
                    self.report(rel.to_vec(), reason);
                    false
                }
            },
            Err(e) => {
                self.fail(rel.to_vec(), Failure::new(format!("cannot repair ({d})"), &e).of(d.from.uid));
                false
            }
        }
    }

    /// The divergence of the inode pinned by `fd` as it is now, or why it is only reported.
    pub(super) fn again(&self, fd: BorrowedFd<'_>, place: Place) -> Result<Option<Divergence>, Reason> {
        // A pin that can no longer be read is left to the next check of its path.
        let Ok(st) = sys::stat_fd(fd) else { return Ok(None) };
        let kind = self.classify(&st)?;
        Ok(self.divergence(kind, &st, place))
    }

    pub(super) fn repaired(&self, rel: &[u8], d: &Divergence) {
        let t = self.tally;
        Tally::bump(&t.changed);
        for (changed, counter) in [(d.owner(), &t.owner), (d.group(), &t.group), (d.mode(), &t.mode), (d.acl(), &t.acl)]
        {
            if changed {
                Tally::bump(counter);
            }
        }
        self.visit.repaired(rel, d);
    }

    pub(super) fn report(&self, rel: Vec<u8>, reason: Reason) {
        Tally::bump(&self.tally.reported[reason as usize]);
        self.note(rel, Finding::Reported(reason));
    }

    pub(super) fn diverges(&self, rel: Vec<u8>, d: Divergence) {
        Tally::bump(&self.tally.diverging);
        self.note(rel, Finding::Diverges(d));
    }

    pub(super) fn fail(&self, rel: Vec<u8>, failure: Failure) {
        Tally::bump(&self.tally.failed);
        self.note(rel, Finding::Failed(failure));
    }

    pub(super) fn note(&self, rel: Vec<u8>, finding: Finding) {
        self.visit.found(Note { rel, finding });
    }
}

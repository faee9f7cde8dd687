//! The one place that changes entries of a cache. Every change goes through a descriptor that pins
//! the inode the walk classified, in the order narrow → chown → final mode, so that
//! there is never a moment with more access than before or after (the
//! systemd-tmpfiles `fd_set_perms` order; CVE-2017-18078, CVE-2018-6954).

use std::io;
use std::os::fd::BorrowedFd;

use crate::acl::{self, Acl};
use crate::model::{Attrs, Divergence};
use crate::sys;

/// A repair that the kernel accepted but that did not take: a filesystem that ignores
/// chmod or chown (WSL `drvfs`, some FUSE), or setgid dropped for a non-member.
#[derive(Debug, thiserror::Error)]
#[error("the filesystem kept {now} where {want} was set")]
pub struct NotApplied {
    now: String,
    want: String,
}

/// The error of [`apply`] is a read-back that differs ([`NotApplied`]).
pub fn not_applied(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotApplied>())
}

/// Brings the inode behind `fd` from `d.from` to `d.to`, then reads it back.
/// `default_acl` is the model's default ACL, set when `d.set_default_acl`.
pub fn apply(fd: BorrowedFd<'_>, d: &Divergence, default_acl: Option<&Acl>) -> io::Result<()> {
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

//! What an entry's POSIX ACLs say, read through its descriptor: whether an access ACL
//! grants more than the mode shows, and whether a directory carries the model's
//! default ACL (the format is [`crate::policy::acl`]'s). Reads only.

use std::os::fd::BorrowedFd;

use super::*;

thread_local! {
    /// One xattr buffer per walking thread: a compliant file costs no allocation.
    static XATTR_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 256]);
}

/// A whole xattr value as a read into `buf`.
pub(super) fn read_into(got: io::Result<Option<Vec<u8>>>, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    Ok(got?.map(|v| {
        buf.clear();
        buf.extend_from_slice(&v);
        v.len()
    }))
}

impl Walker<'_> {
    /// Whether to read the access ACL of an entry that looks like `st` and diverges by `d`.
    pub(super) fn wants_acl(&self, st: &Stat, d: Option<&Divergence>) -> bool {
        // macOS: a `deny` entry of the extended ACL takes away, so the mode cannot tell
        // whether one is there; every entry's ACL is read.
        cfg!(target_os = "macos") || self.every_acl || acl::could_grant_more(st.mode, d.map_or(st.mode, |d| d.to.mode))
    }

    /// ACLs are read until the filesystem says it has none.
    pub(super) fn acls_supported(&self, e: &io::Error) -> bool {
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            self.tally.no_acl.store(true, Relaxed);
            return false;
        }
        true
    }

    /// Whether the access ACL that `read` fetches grants more than the model (it goes).
    pub(super) fn access_acl_diverges<R: AsRef<[u8]>>(
        &self,
        rel: &dyn Fn() -> R,
        read: impl FnOnce(&mut Vec<u8>) -> io::Result<Option<usize>>,
    ) -> bool {
        // Elsewhere the flag only means "no default ACLs": extended ACLs are still read.
        if cfg!(target_os = "linux") && self.tally.no_acl.load(Relaxed) {
            return false;
        }
        XATTR_BUF.with_borrow_mut(|buf| match read(buf) {
            Ok(None) => false,
            Ok(Some(n)) => match Acl::decode(&buf[..n]) {
                Ok(a) => acl::access_divergence(&a).is_some(),
                // Nothing the kernel would write; removing it is the only repair.
                Err(_) => true,
            },
            Err(e) if vanished(&e) || !self.acls_supported(&e) => false,
            Err(e) => {
                self.fail(rel().as_ref().to_vec(), Failure::new("cannot read the access ACL", &e));
                false
            }
        })
    }

    /// For a directory: (its access ACL goes, the model's default ACL is to be set).
    pub(super) fn dir_acls(&self, fd: BorrowedFd<'_>, rel: &[u8], access: bool, creatable: bool) -> (bool, bool) {
        let drop_access =
            access && self.access_acl_diverges(&|| rel, |buf| read_into(sys::get_xattr_fd(fd, acl::ACCESS), buf));
        let Some(wanted) = self.default_acl.as_ref().filter(|_| creatable) else { return (drop_access, false) };
        if self.tally.no_acl.load(Relaxed) {
            return (drop_access, false);
        }
        match sys::get_xattr_fd(fd, acl::DEFAULT) {
            Ok(Some(bytes)) => {
                Tally::bump(&self.tally.default_acl_present);
                (drop_access, Acl::decode(&bytes).as_ref() != Ok(wanted))
            }
            Ok(None) => {
                Tally::bump(&self.tally.default_acl_absent);
                (drop_access, true)
            }
            Err(e) if vanished(&e) || !self.acls_supported(&e) => (drop_access, false),
            Err(e) => {
                self.fail(rel.to_vec(), Failure::new("cannot read the default ACL", &e));
                (drop_access, false)
            }
        }
    }
}

//! The change step: a diverging entry, pinned, is checked again through its pin and
//! handed to [`crate::engine::repair`]; what happened goes to the walk's visitor.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::*;

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
        match repair::apply(fd, &d, self.default_acl.as_ref()) {
            Ok(()) => {
                self.repaired(rel, &d);
                true
            }
            Err(e) if vanished(&e) => true,
            // The read-back differs: the entry may have changed meanwhile (Go chmods an
            // extracted module to 0555 while we repair it). Decide again on what the
            // pinned inode is now, once; only a second miss is a failure.
            Err(e) if repair::not_applied(&e) => match self.again(fd, place) {
                Ok(None) => true,
                Ok(Some(d)) => match repair::apply(fd, &d, self.default_acl.as_ref()) {
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

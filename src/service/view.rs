//! The state of a cache as its worker publishes it after each step: what `status`,
//! `sync` and `rescan` read, and what survives a reload ([`Kept`]). Only the worker
//! writes it; everyone else reads an immutable copy.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::engine::root;
use crate::engine::walk::Tally;
use crate::protocol::{self, CacheState, Repairs, Reported, ScanInfo};

use super::watch::{self, Degraded};

/// What a cache's worker counted; kept across reloads.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub(super) repairs: Repairs,
    /// The filesystem refused POSIX ACLs: the cache is repair only.
    pub(super) no_acl: bool,
    /// Cache-wide errors (a root that cannot be opened, a failed watcher); an entry that
    /// stays unrepaired is counted once, in the unrepaired set.
    pub(super) errors: u64,
    pub(super) events: u64,
    pub(super) overflows: u64,
    pub(super) full_scans: u64,
    pub(super) full_scan_ms: u64,
    /// Directories watched by the last full scan, and since.
    pub(super) watches: u64,
}

impl Counts {
    /// Adds the changes of a finished walk.
    pub(super) fn absorb(&mut self, t: &Tally) {
        self.repairs.add(&t.repairs());
        self.no_acl |= t.no_acl.load(Relaxed);
    }
}

/// What a cache's worker keeps across reloads.
#[derive(Debug, Clone, Default)]
pub(super) struct Kept {
    pub(super) counts: Counts,
    pub(super) last_overflow: Option<Instant>,
    pub(super) last_scan: Option<LastScan>,
    pub(super) last_repair: Option<protocol::LastRepair>,
    pub(super) root_memory: RootMemory,
}

/// What a cache's worker knew of its root, kept across reloads: a member's `reload` must
/// not make the service accept a root it refused (SPEC §4, root re-creation).
#[derive(Debug, Clone, Default)]
pub(super) struct RootMemory {
    /// The root last pinned.
    pub(super) former: Option<root::Former>,
    /// Why the directory now at the root's path is refused, until an administrator
    /// accepts it (`rescan` or `reload` by root or the service's user).
    pub(super) refused: Option<root::RootError>,
}

impl RootMemory {
    /// An administrator vouches for whatever is at the root's path now.
    pub(super) fn accept_any(&mut self) {
        *self = RootMemory::default();
    }
}

#[derive(Debug, Clone)]
pub(super) struct LastScan {
    pub(super) info: ScanInfo,
    pub(super) reported: Reported,
}

/// Whether hard links from outside can reach a cache, and whether that stops repairs.
#[derive(Debug, Clone)]
pub(super) struct IsolationState {
    pub(super) isolated: bool,
    pub(super) description: String,
    /// Why files are not changed (the hard-link guard), if they are not.
    pub(super) refused: Option<String>,
}

/// What stays unrepaired, as the view shows it: the count, the first few, and how many
/// each owner has.
#[derive(Debug, Clone, Default)]
pub(super) struct Leftovers {
    pub(super) count: u64,
    pub(super) first: Vec<protocol::Unrepaired>,
    pub(super) by_owner: BTreeMap<Option<u32>, u64>,
}

/// The state of a cache as its worker last published it: immutable, read by `status`,
/// `sync` and `rescan` without a lock.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    pub(super) kept: Kept,
    /// The first full scan is done.
    pub(super) scanned: bool,
    /// Why the whole cache is degraded, as the worker last found; an overflow's memory
    /// ([`watch::OVERFLOW_MEMORY`]) is judged when the view is read.
    pub(super) degraded: Option<Degraded>,
    pub(super) isolation: Option<IsolationState>,
    pub(super) unrepaired: Leftovers,
}

impl View {
    /// Why events cannot be trusted now, if they cannot: causes of the whole cache only.
    /// An entry that cannot be repaired is that entry's (SPEC §4): listed, retried, and
    /// told to whoever owns it, but it degrades nobody else's cache.
    pub(super) fn degraded(&self) -> Option<Degraded> {
        let overflowed = self.kept.last_overflow.is_some_and(|t| t.elapsed() < watch::OVERFLOW_MEMORY);
        self.degraded.clone().or_else(|| overflowed.then_some(Degraded::Overflow))
    }

    pub(super) fn state(&self, polled: bool) -> CacheState {
        if !self.scanned {
            CacheState::Starting
        } else if self.degraded().is_some() {
            CacheState::Degraded
        } else if polled {
            CacheState::Polling
        } else {
            CacheState::Healthy
        }
    }
}

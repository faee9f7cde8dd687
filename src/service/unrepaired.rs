//! What stays non-compliant in a cache, kept within a fixed budget whatever the tree's
//! users do (SPEC §4): a sample of entries by path, with their cause and owner, bounded
//! in entries and bytes, and beyond it only counts by owner. A member who makes a million
//! unrepairable entries with long names costs the service a few counters, not their names.

use std::collections::BTreeMap;

/// Entries kept by path: what `status` shows and what is retried by path.
pub(super) const MAX_ENTRIES: usize = 1000;
/// Bytes of paths and causes kept by path.
pub(super) const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) cause: String,
    pub(super) owner: Option<u32>,
}

/// The unrepaired entries of one cache: rebuilt by each full scan, updated by each
/// check of a path.
#[derive(Debug, Default)]
pub(super) struct Unrepaired {
    sample: BTreeMap<Vec<u8>, Entry>,
    bytes: usize,
    /// Entries the sample had no room for since the last full scan, by owner. A check
    /// that later repairs one of them cannot tell which; the next full scan counts anew.
    beyond: BTreeMap<Option<u32>, u64>,
}

fn cost(rel: &[u8], e: &Entry) -> usize {
    rel.len() + e.cause.len() + std::mem::size_of::<Entry>() + 32
}

impl Unrepaired {
    /// `rel` was checked again (and, with `deep`, everything below it): what was
    /// recorded there is forgotten, to be recorded again if it still fails.
    pub(super) fn forget(&mut self, rel: &[u8], deep: bool) {
        if let Some(e) = self.sample.remove(rel) {
            self.bytes -= cost(rel, &e);
        }
        if !deep {
            return;
        }
        let below: Vec<Vec<u8>> = self
            .sample
            .range(rel.to_vec()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .filter(|(k, _)| rel.is_empty() || k.get(rel.len()) == Some(&b'/'))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            if let Some(e) = self.sample.remove(&k) {
                self.bytes -= cost(&k, &e);
            }
        }
    }

    pub(super) fn insert(&mut self, rel: Vec<u8>, entry: Entry) {
        if let Some(old) = self.sample.get_mut(&rel) {
            self.bytes = self.bytes - old.cause.len() + entry.cause.len();
            *old = entry;
            return;
        }
        let c = cost(&rel, &entry);
        if self.sample.len() >= MAX_ENTRIES || self.bytes + c > MAX_BYTES {
            *self.beyond.entry(entry.owner).or_default() += 1;
            return;
        }
        self.bytes += c;
        self.sample.insert(rel, entry);
    }

    pub(super) fn count(&self) -> u64 {
        self.sample.len() as u64 + self.beyond.values().sum::<u64>()
    }

    /// How many each owner has (`None`: an entry whose owner is not known).
    pub(super) fn by_owner(&self) -> BTreeMap<Option<u32>, u64> {
        let mut counts = self.beyond.clone();
        for e in self.sample.values() {
            *counts.entry(e.owner).or_default() += 1;
        }
        counts
    }

    /// The first `n` by path.
    pub(super) fn first(&self, n: usize) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
        self.sample.iter().take(n)
    }

    /// The paths kept, to be checked again.
    pub(super) fn paths(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.sample.keys()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Bytes held by the sample (paths and causes), for tests of the bound.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(owner: u32) -> Entry {
        Entry { cause: "cannot repair (mode 0600→0664): no space left on device".into(), owner: Some(owner) }
    }

    #[test]
    fn a_million_long_names_cost_a_bounded_sample_and_counts() {
        let mut u = Unrepaired::default();
        let long = vec![b'a'; 4000];
        for i in 0..1_000_000u32 {
            let mut rel = long.clone();
            rel.extend_from_slice(i.to_string().as_bytes());
            u.insert(rel, entry(1001 + i % 2));
        }
        assert_eq!(u.count(), 1_000_000);
        let owners = u.by_owner();
        assert_eq!(owners.get(&Some(1001)).unwrap() + owners.get(&Some(1002)).unwrap(), 1_000_000);
        assert_eq!(owners.get(&Some(0)), None);
        assert!(u.bytes() <= MAX_BYTES && u.paths().count() <= MAX_ENTRIES, "{} bytes", u.bytes());
    }

    #[test]
    fn a_deep_check_forgets_what_is_below_and_nothing_beside() {
        let mut u = Unrepaired::default();
        for rel in ["a", "a/b", "a/b/c", "ab", "b"] {
            u.insert(rel.into(), entry(7));
        }
        u.forget(b"a", false);
        assert_eq!(
            u.paths().cloned().collect::<Vec<_>>(),
            [b"a/b".to_vec(), b"a/b/c".into(), b"ab".into(), b"b".into()]
        );
        u.forget(b"a", true);
        assert_eq!(u.paths().cloned().collect::<Vec<_>>(), [b"ab".to_vec(), b"b".into()]);
        u.forget(b"", true);
        assert!(u.is_empty());
        assert_eq!(u.bytes(), 0);
    }

    #[test]
    fn an_entry_recorded_twice_is_counted_once() {
        let mut u = Unrepaired::default();
        u.insert(b"x".to_vec(), entry(1));
        u.insert(b"x".to_vec(), Entry { cause: "other".into(), owner: Some(1) });
        assert_eq!((u.count(), u.first(5).next().unwrap().1.cause.as_str()), (1, "other"));
    }
}

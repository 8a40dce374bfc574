//! The resource names a stream subscribed to, as a shared set.
//!
//! Envoy subscribes to the ClusterLoadAssignment of every cluster it has, so
//! in a large mesh each stream names thousands of resources, and usually the
//! very same ones as every other proxy on its view. Sets are interned: streams
//! naming the same resources point at one sorted, immutable list, and a
//! stream's subscriptions cost a pointer however large the mesh. A change
//! builds a new set (rare: subscriptions move with the mesh, not with ACKs).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, Weak};

#[derive(Debug, PartialEq, Eq)]
struct Names {
    sorted: Box<[Arc<str>]>,
    digest: u64,
}

/// A sorted set of names, shared by every stream that names the same ones.
#[derive(Debug, Clone)]
pub(crate) struct NameSet(Arc<Names>);

impl Default for NameSet {
    fn default() -> Self {
        NameSet::intern(Vec::new())
    }
}

impl PartialEq for NameSet {
    fn eq(&self, other: &Self) -> bool {
        // Interned: equal sets are the same allocation.
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NameSet {}

/// Interned sets by digest; entries die with their last stream.
struct Interner {
    sets: HashMap<u64, Vec<Weak<Names>>>,
    /// Insertions since dead entries were last swept out.
    since_sweep: usize,
}

static INTERNED: LazyLock<Mutex<Interner>> = LazyLock::new(|| {
    Mutex::new(Interner {
        sets: HashMap::new(),
        since_sweep: 0,
    })
});

fn digest_of(sorted: &[Arc<str>]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for n in sorted {
        h.update(n.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

impl NameSet {
    /// The shared set holding `sorted` (sorted, no duplicates).
    fn intern(sorted: Vec<Arc<str>>) -> NameSet {
        let digest = digest_of(&sorted);
        let names = Names {
            sorted: sorted.into_boxed_slice(),
            digest,
        };
        let mut interner = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = interner.sets.entry(digest).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(same) = bucket
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.sorted == names.sorted)
        {
            return NameSet(same);
        }
        let set = Arc::new(names);
        bucket.push(Arc::downgrade(&set));
        interner.since_sweep += 1;
        if interner.since_sweep > 1024.max(interner.sets.len()) {
            interner.sets.retain(|_, b| {
                b.retain(|w| w.strong_count() > 0);
                !b.is_empty()
            });
            interner.since_sweep = 0;
        }
        NameSet(set)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.sorted.binary_search_by(|n| (**n).cmp(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.sorted.iter().map(|n| &**n)
    }

    pub fn len(&self) -> usize {
        self.0.sorted.len()
    }

    /// A hash of the names, equal for equal sets.
    pub fn digest(&self) -> u64 {
        self.0.digest
    }

    /// Exactly `names` (in any order, duplicates allowed): this same set when
    /// it already holds exactly those, which is checked without building
    /// anything (a SotW client repeats its whole list with every ACK).
    pub fn replaced<'a>(&self, names: impl Iterator<Item = &'a str> + Clone) -> NameSet {
        let mut seen = vec![false; self.len()];
        let mut count = 0;
        let same = names.clone().all(|n| match self.position(n) {
            Ok(i) if !seen[i] => {
                seen[i] = true;
                count += 1;
                true
            }
            _ => false,
        });
        if same && count == self.len() {
            return self.clone();
        }
        let wanted: BTreeSet<&str> = names.collect();
        self.rebuilt(wanted)
    }

    /// This set with `add` added and `remove` taken out.
    pub fn changed<'a>(
        &'a self,
        add: impl Iterator<Item = &'a str> + Clone,
        remove: impl Iterator<Item = &'a str> + Clone,
    ) -> NameSet {
        if add.clone().all(|n| self.contains(n)) && !remove.clone().any(|n| self.contains(n)) {
            return self.clone();
        }
        let mut wanted: BTreeSet<&str> = self.iter().chain(add).collect();
        for n in remove {
            wanted.remove(n);
        }
        self.rebuilt(wanted)
    }

    /// The set of `wanted`, reusing this set's strings for names it holds.
    fn rebuilt(&self, wanted: BTreeSet<&str>) -> NameSet {
        let sorted = wanted
            .into_iter()
            .map(|n| match self.position(n) {
                Ok(i) => self.0.sorted[i].clone(),
                Err(_) => Arc::from(n),
            })
            .collect();
        NameSet::intern(sorted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_set() {
        let a = NameSet::default().replaced(["b", "a", "c"].into_iter());
        let b = NameSet::default().changed(["c", "a", "b", "a"].into_iter(), [].into_iter());
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn replacing_with_the_same_names_keeps_the_set() {
        let a = NameSet::default().replaced(["x", "y"].into_iter());
        let again = a.replaced(["y", "x", "y"].into_iter());
        assert_eq!(again, a);
        // A duplicate standing in for a missing name is a different set.
        let fewer = a.replaced(["x", "x"].into_iter());
        assert_eq!(fewer.iter().collect::<Vec<_>>(), ["x"]);
        let more = a.replaced(["x", "y", "z"].into_iter());
        assert_eq!(more.len(), 3);
        assert_eq!(a.replaced([].into_iter()).len(), 0);
    }

    #[test]
    fn changes_add_and_remove() {
        let a = NameSet::default().changed(["a", "b"].into_iter(), [].into_iter());
        let b = a.changed(["c"].into_iter(), ["a", "nope"].into_iter());
        assert_eq!(b.iter().collect::<Vec<_>>(), ["b", "c"]);
        assert!(b.contains("c") && !b.contains("a"));
        assert_eq!(a.changed(["a"].into_iter(), ["z"].into_iter()), a);
    }

    #[test]
    fn dead_sets_are_forgotten() {
        let unique = format!("only-here-{}", std::process::id());
        let set = NameSet::default().replaced([unique.as_str()].into_iter());
        let weak = Arc::downgrade(&set.0);
        drop(set);
        assert!(weak.upgrade().is_none());
        // Interning the same names again builds a fresh set.
        let again = NameSet::default().replaced([unique.as_str()].into_iter());
        assert_eq!(again.iter().collect::<Vec<_>>(), [unique.as_str()]);
    }
}

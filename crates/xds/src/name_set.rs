//! The resource names a stream subscribed to, as a shared set.
//!
//! Envoy subscribes to the ClusterLoadAssignment of every cluster it has, so
//! in a large mesh each stream names thousands of resources, and usually the
//! very same ones as every other proxy on its view. Sets are interned in the
//! server's `NameSets`, which every stream's machine is given: streams
//! naming the same resources point at one sorted, immutable list, and a
//! stream's subscriptions cost a pointer however large the mesh. A change
//! builds a new set (rare: subscriptions move with the mesh, not with ACKs).
//! A set also remembers where the names of each step that led to it sit in
//! the type sets the streams hold (`added_names_in`), so that the thousands of names
//! a fleet subscribes to are looked up once per view, not once per proxy.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use shmesh_cache::{Resource, TypeSet};

#[derive(Debug)]
struct Names {
    sorted: Box<[Arc<str>]>,
    /// Looked up for every resource a response may carry: a fast seeded
    /// hash, not SipHash.
    /// Each name's position in `sorted`.
    index: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    /// `digest_of` the names, whatever their order.
    digest: u64,
    /// Recent changes made from this set and the sets they led to: every
    /// proxy on a view subscribes in the same steps as the mesh arrives, so
    /// the first stream builds each step and the others reuse it.
    steps: Mutex<Vec<Step>>,
    /// Where the names of recent steps to this set sit in type sets.
    added_names_memo: Mutex<Vec<AddedNamesMemo>>,
}

#[derive(Debug)]
struct AddedNamesMemo {
    from: Weak<Names>,
    set: Weak<TypeSet>,
    added: Arc<AddedNames>,
}

/// Where the names a step added sit in one type set: what a client that
/// holds that whole set is sent when it takes the step, since every newly
/// subscribed name is sent (rule 9) or reported absent (rule 7).
#[derive(Debug, Default)]
pub(crate) struct AddedNames {
    /// Positions in the set, in name order.
    pub positions: Box<[u32]>,
    /// Added names the set does not have, in name order.
    pub absent: Box<[String]>,
}

impl AddedNames {
    /// The resources at `positions` in `set`, the set they were looked up in.
    pub fn resources_in(&self, set: &TypeSet) -> Vec<Arc<Resource>> {
        self.positions
            .iter()
            .map(|&at| set.at(at as usize).clone())
            .collect()
    }
}

#[derive(Debug)]
struct Step {
    add: Box<[Box<str>]>,
    remove: Box<[Box<str>]>,
    to: Weak<Names>,
}

/// How many changes a set remembers.
const STEPS_KEPT: usize = 8;

/// A sorted set of names, shared by every stream that names the same ones.
#[derive(Debug, Clone)]
pub(crate) struct NameSet(Arc<Names>);

impl PartialEq for NameSet {
    fn eq(&self, other: &Self) -> bool {
        // Interned: equal sets are the same allocation.
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NameSet {}

/// The interned name sets of one server, shared by its streams: streams
/// naming the same resources get the same set. Entries die with their last
/// stream (or soon after, see `recent`).
#[derive(Debug)]
pub struct NameSets {
    interned: Mutex<Interned>,
    /// The set every stream starts from, so that the first step of every
    /// stream of a view starts from the same set.
    empty: NameSet,
}

/// Interned sets by digest.
#[derive(Debug, Default)]
struct Interned {
    sets: HashMap<u64, Vec<Weak<Names>>>,
    /// Insertions since dead entries were last swept out.
    since_sweep: usize,
    /// The latest sets built, kept alive a while: when a fleet subscribes
    /// step by step, the first stream of a view may have moved past a step
    /// before the next stream takes it, and the step would be built again.
    recent: VecDeque<Arc<Names>>,
    /// Names in `recent`.
    recent_names: usize,
}

/// Names the recently built sets may hold in all.
const RECENT_NAMES: usize = 64 * 1024;

/// A hash of a list of names that does not depend on their order, so that a
/// list as a client sent it finds the interned set without being sorted.
fn digest_of<'a>(names: impl Iterator<Item = &'a str>) -> u64 {
    names
        .map(|n| xxhash_rust::xxh3::xxh3_64(n.as_bytes()))
        .fold(0, u64::wrapping_add)
}

fn same_list<'a>(kept: &[Box<str>], list: impl Iterator<Item = &'a str>) -> bool {
    kept.iter().map(|s| &**s).eq(list)
}

impl Default for NameSets {
    fn default() -> Self {
        let empty = Names::new(Vec::new());
        let mut interned = Interned::default();
        interned
            .sets
            .entry(empty.digest)
            .or_default()
            .push(Arc::downgrade(&empty));
        NameSets {
            interned: Mutex::new(interned),
            empty: NameSet(empty),
        }
    }
}

impl NameSets {
    /// The set with no names.
    pub(crate) fn empty(&self) -> NameSet {
        self.empty.clone()
    }

    /// The shared set holding `sorted` (sorted, no duplicates).
    fn intern(&self, sorted: Vec<Arc<str>>) -> NameSet {
        let digest = digest_of(sorted.iter().map(|n| &**n));
        let mut interner = self.interned.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = interner.sets.entry(digest).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(same) = bucket
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| *s.sorted == *sorted)
        {
            return NameSet(same);
        }
        let set = Names::new(sorted);
        bucket.push(Arc::downgrade(&set));
        interner.recent_names += set.sorted.len();
        interner.recent.push_back(set.clone());
        while interner.recent_names > RECENT_NAMES && interner.recent.len() > 1 {
            if let Some(old) = interner.recent.pop_front() {
                interner.recent_names -= old.sorted.len();
            }
        }
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

    /// The interned sets whose names have `digest`.
    fn with_digest(&self, digest: u64) -> Vec<NameSet> {
        let interner = self.interned.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = interner.sets.get(&digest).into_iter().flatten();
        bucket.filter_map(Weak::upgrade).map(NameSet).collect()
    }
}

impl Names {
    fn new(sorted: Vec<Arc<str>>) -> Arc<Names> {
        Arc::new(Names {
            index: sorted
                .iter()
                .enumerate()
                .map(|(at, n)| (n.clone(), at as u32))
                .collect(),
            digest: digest_of(sorted.iter().map(|n| &**n)),
            sorted: sorted.into_boxed_slice(),
            steps: Mutex::default(),
            added_names_memo: Mutex::default(),
        })
    }
}

impl NameSet {
    pub fn contains(&self, name: &str) -> bool {
        self.0.index.contains_key(name)
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
    /// anything (a SotW client repeats its whole list with every ACK), or
    /// another interned set holding exactly those, found the same way (the
    /// proxies of a view name the same thousands of resources).
    pub fn replaced<'a>(
        &self,
        sets: &NameSets,
        names: impl Iterator<Item = &'a str> + Clone,
    ) -> NameSet {
        if names.clone().eq(self.iter()) {
            return self.clone();
        }
        let digest = digest_of(names.clone());
        if self.holds_exactly(digest, names.clone()) {
            return self.clone();
        }
        let interned = sets
            .with_digest(digest)
            .into_iter()
            .find(|set| set.holds_exactly(digest, names.clone()));
        if let Some(same) = interned {
            return same;
        }
        self.rebuilt(sets, names.collect())
    }

    /// Whether this set is exactly the names in `names`, whose `digest_of` is
    /// `digest`: each of them in the set, and every name of the set among them.
    /// (A list naming something twice has another digest, and is left to be
    /// built.)
    fn holds_exactly<'a>(&self, digest: u64, names: impl Iterator<Item = &'a str>) -> bool {
        if self.0.digest != digest {
            return false;
        }
        let mut seen = vec![false; self.len()];
        let mut count = 0;
        for name in names {
            match self.0.index.get(name) {
                Some(&at) if !seen[at as usize] => {
                    seen[at as usize] = true;
                    count += 1;
                }
                Some(_) => {}
                None => return false,
            }
        }
        count == self.len()
    }

    /// This set with `add` added and `remove` taken out.
    pub fn changed<'a>(
        &'a self,
        sets: &NameSets,
        add: impl Iterator<Item = &'a str> + Clone,
        remove: impl Iterator<Item = &'a str> + Clone,
    ) -> NameSet {
        if add.clone().all(|n| self.contains(n)) && !remove.clone().any(|n| self.contains(n)) {
            return self.clone();
        }
        let mut steps = self.0.steps.lock().unwrap_or_else(|e| e.into_inner());
        steps.retain(|m| m.to.strong_count() > 0);
        let known = steps
            .iter()
            .find(|m| same_list(&m.add, add.clone()) && same_list(&m.remove, remove.clone()));
        if let Some(to) = known.and_then(|m| m.to.upgrade()) {
            return NameSet(to);
        }
        drop(steps);
        let mut wanted: BTreeSet<&str> = self.iter().chain(add.clone()).collect();
        for n in remove.clone() {
            wanted.remove(n);
        }
        let to = self.rebuilt(sets, wanted);
        let mut steps = self.0.steps.lock().unwrap_or_else(|e| e.into_inner());
        if steps.len() >= STEPS_KEPT {
            steps.remove(0);
        }
        steps.push(Step {
            add: add.map(Box::from).collect(),
            remove: remove.map(Box::from).collect(),
            to: Arc::downgrade(&to.0),
        });
        to
    }

    /// Where the names this set has and `from` lacks sit in `set`: worked out
    /// by the first stream that takes the step from `from` to this set holding
    /// `set`, and shared with the streams that follow it. (Kept here, not with
    /// `from`: every proxy starts from the empty set, whatever its view.)
    pub fn added_names_in(&self, from: &NameSet, set: &Arc<TypeSet>) -> Arc<AddedNames> {
        let (from_key, set_key) = (Arc::downgrade(&from.0), Arc::downgrade(set));
        let mut memo = self
            .0
            .added_names_memo
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        memo.retain(|p| p.from.strong_count() > 0 && p.set.strong_count() > 0);
        if let Some(p) = memo
            .iter()
            .find(|p| Weak::ptr_eq(&p.from, &from_key) && Weak::ptr_eq(&p.set, &set_key))
        {
            return p.added.clone();
        }
        let (mut positions, mut absent) = (Vec::new(), Vec::new());
        for name in self.iter().filter(|n| !from.contains(n)) {
            match set.position(name) {
                Some(at) => positions.push(at as u32),
                None => absent.push(name.to_string()),
            }
        }
        // Both are in name order already; sorted again so as not to rely on
        // the two orders being the same.
        positions.sort_unstable();
        let added = Arc::new(AddedNames {
            positions: positions.into(),
            absent: absent.into(),
        });
        if memo.len() >= STEPS_KEPT {
            memo.remove(0);
        }
        memo.push(AddedNamesMemo {
            from: from_key,
            set: set_key,
            added: added.clone(),
        });
        added
    }

    /// The set of `wanted`, reusing this set's strings for names it holds.
    fn rebuilt(&self, sets: &NameSets, wanted: BTreeSet<&str>) -> NameSet {
        let sorted = wanted
            .into_iter()
            .map(|n| match self.0.index.get_key_value(n) {
                Some((kept, _)) => kept.clone(),
                None => Arc::from(n),
            })
            .collect();
        sets.intern(sorted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(sets: &NameSets) -> NameSet {
        sets.empty()
    }

    #[test]
    fn equal_names_share_one_set() {
        let sets = NameSets::default();
        let a = empty(&sets).replaced(&sets, ["b", "a", "c"].into_iter());
        let b = empty(&sets).changed(&sets, ["c", "a", "b", "a"].into_iter(), [].into_iter());
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn replacing_with_the_same_names_keeps_the_set() {
        let sets = NameSets::default();
        let a = empty(&sets).replaced(&sets, ["x", "y"].into_iter());
        let again = a.replaced(&sets, ["y", "x", "y"].into_iter());
        assert_eq!(again, a);
        // A duplicate standing in for a missing name is a different set.
        let fewer = a.replaced(&sets, ["x", "x"].into_iter());
        assert_eq!(a.replaced(&sets, ["x", "x", "y"].into_iter()), a);
        assert_eq!(fewer.iter().collect::<Vec<_>>(), ["x"]);
        let more = a.replaced(&sets, ["x", "y", "z"].into_iter());
        assert_eq!(more.len(), 3);
        assert_eq!(a.replaced(&sets, [].into_iter()).len(), 0);
    }

    #[test]
    fn a_list_in_any_order_finds_the_interned_set() {
        let sets = NameSets::default();
        let unique = format!("order-{}", std::process::id());
        let names: Vec<String> = (0..50).map(|i| format!("{unique}-{i}")).collect();
        let built = empty(&sets).replaced(&sets, names.iter().map(String::as_str));
        // Another stream's list, in another order, from another set.
        let other = empty(&sets).replaced(&sets, ["x"].into_iter());
        let found = other.replaced(&sets, names.iter().rev().map(String::as_str));
        assert!(Arc::ptr_eq(&found.0, &built.0));
        // Naming one name twice and leaving another out is another set.
        let mut short: Vec<&str> = names.iter().map(String::as_str).collect();
        short[0] = short[1];
        let fewer = built.replaced(&sets, short.iter().copied());
        assert_eq!(fewer.len(), 49);
        assert!(!fewer.contains(&names[0]));
        assert_eq!(
            built.replaced(&sets, short.iter().copied().chain([&*names[0]])),
            built
        );
    }

    #[test]
    fn changes_add_and_remove() {
        let sets = NameSets::default();
        let a = empty(&sets).changed(&sets, ["a", "b"].into_iter(), [].into_iter());
        let b = a.changed(&sets, ["c"].into_iter(), ["a", "nope"].into_iter());
        assert_eq!(b.iter().collect::<Vec<_>>(), ["b", "c"]);
        assert!(b.contains("c") && !b.contains("a"));
        assert_eq!(a.changed(&sets, ["a"].into_iter(), ["z"].into_iter()), a);
        // The same change again is the same set, remembered.
        let again = a.changed(&sets, ["c"].into_iter(), ["a", "nope"].into_iter());
        assert!(Arc::ptr_eq(&again.0, &b.0));
        assert_eq!(a.0.steps.lock().unwrap().len(), 1);
    }

    fn clusters(names: &[&str]) -> Arc<TypeSet> {
        use envoy_types::pb::envoy::config::cluster::v3::Cluster;
        let set = names
            .iter()
            .map(|n| {
                let cluster = Cluster {
                    name: n.to_string(),
                    ..Default::default()
                };
                shmesh_cache::Resource::encode(n.to_string(), &cluster)
            })
            .collect();
        Arc::new(TypeSet::new(set))
    }

    #[test]
    fn a_step_is_looked_up_once_per_type_set() {
        let sets = NameSets::default();
        let from = empty(&sets).changed(&sets, ["b"].into_iter(), [].into_iter());
        let to = from.changed(&sets, ["d", "a", "zz", "c"].into_iter(), [].into_iter());
        let set = clusters(&["a", "b", "c", "d"]);
        let added = to.added_names_in(&from, &set);
        // Only the added names, by position in the set; "zz" is not there.
        assert_eq!(&*added.positions, &[0, 2, 3]);
        assert_eq!(&*added.absent, &["zz".to_string()]);
        // The next stream taking the step on the same set shares the work.
        assert!(Arc::ptr_eq(&added, &to.added_names_in(&from, &set)));
        // On another set the names sit elsewhere.
        let other = clusters(&["c", "zz"]);
        let there = to.added_names_in(&from, &other);
        assert_eq!(&*there.positions, &[0, 1]);
        assert_eq!(&*there.absent, &["a".to_string(), "d".to_string()]);
        // A set that is gone takes its added_names_memo with it.
        drop(other);
        to.added_names_in(&from, &set);
        assert_eq!(to.0.added_names_memo.lock().unwrap().len(), 1);
    }

    #[test]
    fn sets_live_while_used_or_recently_built_then_go() {
        let sets = NameSets::default();
        let unique = format!("only-here-{}", std::process::id());
        let set = empty(&sets).replaced(&sets, [unique.as_str()].into_iter());
        let weak = Arc::downgrade(&set.0);
        drop(set);
        // Kept a while for the next stream taking the same step.
        let again = empty(&sets).replaced(&sets, [unique.as_str()].into_iter());
        assert!(Arc::ptr_eq(&again.0, &weak.upgrade().unwrap()));
        drop(again);
        // Once enough other names were built, it goes.
        let many: Vec<String> = (0..=RECENT_NAMES)
            .map(|i| format!("{unique}-{i}"))
            .collect();
        let _big = empty(&sets).replaced(&sets, many.iter().map(String::as_str));
        assert!(weak.upgrade().is_none());
    }
}

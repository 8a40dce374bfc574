//! Immutable, versioned sets of encoded resources for one proxy view.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use hashbrown::HashTable;
use xxhash_rust::xxh3::Xxh3;

use super::resource::SortedResources;
use super::{Resource, ResourceType};

/// What changed from one set to another.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetDiff {
    /// Resources added or changed, by name.
    pub changed: Vec<Arc<Resource>>,
    /// Names that are gone.
    pub removed: Vec<String>,
}

/// How many diffs a set remembers (one per distinct earlier set that streams
/// were on when it arrived; usually one).
const DIFF_MEMO: usize = 8;

/// All resources of one type for one view, by name.
#[derive(Debug, Default)]
pub struct TypeSet {
    resources: SortedResources,
    /// Hash over every (name, version): changes iff the set changes.
    version: String,
    /// Diffs from earlier sets, computed once and shared by every stream that
    /// moves from that set to this one.
    diffs: Mutex<Vec<(Weak<TypeSet>, Arc<SetDiff>)>>,
    /// `resources` hashed by name, built on the first lookup: streams look
    /// up names one by one, thousands per subscription, and a binary search
    /// would compare each with a dozen long names sharing a prefix.
    index: OnceLock<Index>,
}

/// Positions in a set's `resources`, hashed by name.
#[derive(Debug)]
struct Index {
    table: HashTable<u32>,
    state: foldhash::fast::RandomState,
}

impl Index {
    fn of(resources: &[Arc<Resource>]) -> Index {
        let state = foldhash::fast::RandomState::default();
        let mut table = HashTable::with_capacity(resources.len());
        for (i, r) in resources.iter().enumerate() {
            let hash = state.hash_one(r.name.as_str());
            table.insert_unique(hash, i as u32, |&i| {
                state.hash_one(resources[i as usize].name.as_str())
            });
        }
        Index { table, state }
    }

    fn position(&self, resources: &[Arc<Resource>], name: &str) -> Option<usize> {
        self.table
            .find(self.state.hash_one(name), |&i| {
                resources[i as usize].name == name
            })
            .map(|&i| i as usize)
    }
}

impl Clone for TypeSet {
    fn clone(&self) -> Self {
        TypeSet {
            resources: self.resources.clone(),
            version: self.version.clone(),
            diffs: Mutex::default(),
            index: OnceLock::new(),
        }
    }
}

impl TypeSet {
    pub fn new(resources: SortedResources) -> TypeSet {
        let version = set_version(resources.iter());
        TypeSet {
            resources,
            version,
            diffs: Mutex::default(),
            index: OnceLock::new(),
        }
    }

    /// What changed from `old` to `self`: computed once per pair of sets and
    /// shared, so ten thousand streams on the same view pay for one diff.
    pub fn diff_from(self: &Arc<Self>, old: &Arc<TypeSet>) -> Arc<SetDiff> {
        if Arc::ptr_eq(self, old) {
            return Arc::default();
        }
        let key = Arc::downgrade(old);
        let mut memo = self.diffs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, d)) = memo.iter().find(|(k, _)| Weak::ptr_eq(k, &key)) {
            return d.clone();
        }
        let d = Arc::new(merge_diff(&old.resources, &self.resources));
        if memo.len() >= DIFF_MEMO {
            memo.remove(0);
        }
        memo.push((key, d.clone()));
        d
    }

    /// Whether both sets hold the same resources: the same names with the
    /// same content versions.
    fn same_as(&self, other: &TypeSet) -> bool {
        self.version == other.version
            && self.resources.len() == other.resources.len()
            && self
                .resources
                .iter()
                .zip(other.resources.iter())
                .all(|(a, b)| a.name == b.name && a.version == b.version)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.position(name).map(|i| &self.resources.as_slice()[i])
    }

    /// Where `name` is in name order: sorting positions orders by name
    /// without comparing names.
    pub fn position(&self, name: &str) -> Option<usize> {
        let all = self.resources.as_slice();
        self.index
            .get_or_init(|| Index::of(all))
            .position(all, name)
    }

    /// The resource at `position` in name order.
    pub fn at(&self, position: usize) -> &Arc<Resource> {
        &self.resources.as_slice()[position]
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.iter()
    }

    /// Resources named `namespace/...`.
    pub fn in_namespace<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Resource>> {
        self.resources
            .with_prefix(&format!("{namespace}/"))
            .iter()
            .filter(move |r| super::namespace_of(&r.name) == Some(namespace))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.resources.names()
    }
}

/// Walks two name-ordered sets side by side.
fn merge_diff(old: &SortedResources, new: &SortedResources) -> SetDiff {
    let mut out = SetDiff::default();
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(ra), None) => {
                out.removed.push(ra.name.clone());
                a.next();
            }
            (None, Some(rb)) => {
                out.changed.push((*rb).clone());
                b.next();
            }
            (Some(ra), Some(rb)) => match ra.name.cmp(&rb.name) {
                Ordering::Less => {
                    out.removed.push(ra.name.clone());
                    a.next();
                }
                Ordering::Greater => {
                    out.changed.push((*rb).clone());
                    b.next();
                }
                Ordering::Equal => {
                    if !Arc::ptr_eq(ra, rb) && ra.version != rb.version {
                        out.changed.push((*rb).clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

/// Version of a set of resources: hash over their names and versions in order.
pub fn set_version<'a>(resources: impl Iterator<Item = &'a Arc<Resource>>) -> String {
    // Names and versions are short: gathered into blocks and hashed a block
    // at a time, the hasher is not called four times per resource.
    const BLOCK: usize = 64 * 1024;
    let mut h = Xxh3::new();
    let mut block = Vec::with_capacity(BLOCK + 1024);
    for r in resources {
        for part in [r.name.as_bytes(), &[0], r.version.as_bytes(), &[0]] {
            block.extend_from_slice(part);
        }
        if block.len() >= BLOCK {
            h.update(&block);
            block.clear();
        }
    }
    h.update(&block);
    format!("{:016x}", h.digest())
}

/// Which version of a routing policy (a VirtualService or DestinationRule) a
/// snapshot was built from, so the server can tell when a change is live.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PolicyStamp {
    /// `metadata.generation`, where the object has one (Kubernetes objects).
    pub generation: Option<i64>,
    /// Content hash of the policy's spec.
    pub version: Arc<str>,
}

/// Policies by `Kind/namespace/name`. Keys and versions are shared, so a
/// view's record is copied cheaply when one entry changes.
pub type Policies = BTreeMap<Arc<str>, PolicyStamp>;

/// The VirtualService (`Kind/namespace/name`) each host a view sees resolved
/// to, for the hosts that have one: a VirtualService change then resolves
/// again only the hosts it touched.
pub type VsOfHost = BTreeMap<String, Arc<str>>;

/// Everything one view of the mesh receives: one `TypeSet` per resource type,
/// and the policies it was built from. Type sets are shared between successive
/// snapshots until they change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    sets: [Arc<TypeSet>; ResourceType::COUNT],
    version: String,
    policies: Arc<Policies>,
    vs_of_host: Arc<VsOfHost>,
    /// When the change this snapshot carries first reached the control
    /// plane, for measuring how long proxies take to converge on it.
    changed_at: Option<Instant>,
}

impl Snapshot {
    pub fn get(&self, ty: ResourceType) -> &TypeSet {
        &self.sets[ty.index()]
    }

    /// The shared set of `ty`, to hold on to or diff against.
    pub fn set(&self, ty: ResourceType) -> &Arc<TypeSet> {
        &self.sets[ty.index()]
    }

    /// Version of the whole snapshot, for logs and debug views.
    pub fn version(&self) -> String {
        self.version.clone()
    }

    /// The policies this snapshot applies.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// When the change this snapshot carries reached the control plane, if known.
    pub fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// This snapshot, carrying a change that reached the control plane at `at`.
    pub fn with_changed_at(mut self, at: Instant) -> Snapshot {
        self.changed_at = Some(at);
        self
    }

    /// The VirtualService each host resolved to when `policies` were taken.
    pub fn vs_of_host(&self) -> &Arc<VsOfHost> {
        &self.vs_of_host
    }

    /// This snapshot with every type set that equals one of `others`'
    /// replaced by that one: views that see the same services (every
    /// namespace of a mesh without Sidecars) then hold one copy of their
    /// clusters and endpoints, and their streams share one diff per change.
    pub fn sharing_sets_with<'a>(mut self, others: impl Iterator<Item = &'a Snapshot>) -> Snapshot {
        for other in others {
            for (mine, theirs) in self.sets.iter_mut().zip(&other.sets) {
                if !Arc::ptr_eq(mine, theirs) && mine.same_as(theirs) {
                    *mine = theirs.clone();
                }
            }
        }
        self
    }

    pub fn builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            sets: self.sets.clone(),
            policies: self.policies.clone(),
            vs_of_host: self.vs_of_host.clone(),
        }
    }
}

/// Starts from a snapshot and replaces whole type sets or single resources.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    sets: [Arc<TypeSet>; ResourceType::COUNT],
    policies: Arc<Policies>,
    vs_of_host: Arc<VsOfHost>,
}

impl SnapshotBuilder {
    /// Records the policies the snapshot applies, and the VirtualService
    /// each host resolved to.
    pub fn policies(&mut self, policies: Policies, vs_of_host: VsOfHost) {
        if *self.policies != policies {
            self.policies = Arc::new(policies);
        }
        if *self.vs_of_host != vs_of_host {
            self.vs_of_host = Arc::new(vs_of_host);
        }
    }

    /// Replaces every resource of `ty`.
    pub fn set(&mut self, ty: ResourceType, resources: SortedResources) {
        self.sets[ty.index()] = Arc::new(TypeSet::new(resources));
    }

    /// Inserts or replaces resources of `ty` and removes `removed`, keeping the rest.
    pub fn patch(
        &mut self,
        ty: ResourceType,
        upserts: impl IntoIterator<Item = Arc<Resource>>,
        removed: impl IntoIterator<Item = String>,
    ) {
        let current = &self.sets[ty.index()];
        // An unchanged resource keeps its existing allocation, so views and
        // snapshots keep sharing it, and an unchanged set is not copied.
        if let Some(patched) = current.resources.patched(upserts, removed) {
            self.sets[ty.index()] = Arc::new(TypeSet::new(patched));
        }
    }

    pub fn build(self) -> Snapshot {
        let mut h = Xxh3::new();
        for s in &self.sets {
            h.update(s.version.as_bytes());
        }
        Snapshot {
            sets: self.sets,
            version: format!("{:016x}", h.digest()),
            policies: self.policies,
            vs_of_host: self.vs_of_host,
            changed_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(name: &str, body: &[u8]) -> Arc<Resource> {
        Resource::from_body(ResourceType::Endpoint, name.into(), body)
    }

    #[test]
    fn same_content_same_version() {
        assert_eq!(res("a", b"x").version, res("b", b"x").version);
        assert_ne!(res("a", b"x").version, res("a", b"y").version);
    }

    #[test]
    fn set_version_tracks_names_and_contents() {
        let one = TypeSet::new([res("a", b"1")].into_iter().collect());
        let same = TypeSet::new([res("a", b"1")].into_iter().collect());
        let changed = TypeSet::new([res("a", b"2")].into_iter().collect());
        let renamed = TypeSet::new([res("b", b"1")].into_iter().collect());
        assert_eq!(one.version(), same.version());
        assert_ne!(one.version(), changed.version());
        assert_ne!(one.version(), renamed.version());
    }

    #[test]
    fn diff_is_computed_once_and_shared() {
        let old = Arc::new(TypeSet::new(
            [res("a", b"1"), res("b", b"1"), res("c", b"1")]
                .into_iter()
                .collect(),
        ));
        let new = Arc::new(TypeSet::new(
            [res("a", b"1"), res("b", b"2"), res("d", b"1")]
                .into_iter()
                .collect(),
        ));
        let d = new.diff_from(&old);
        let changed: Vec<&str> = d.changed.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(changed, vec!["b", "d"]);
        assert_eq!(d.removed, vec!["c".to_string()]);
        assert!(
            Arc::ptr_eq(&d, &new.diff_from(&old)),
            "the second stream reuses the first diff"
        );
        assert!(new.diff_from(&new).changed.is_empty());
    }

    #[test]
    fn patch_keeps_untouched_resources() {
        let mut b = SnapshotBuilder::default();
        b.set(
            ResourceType::Endpoint,
            [res("a", b"1"), res("b", b"1")].into_iter().collect(),
        );
        let s = b.build();
        let mut b = s.builder();
        b.patch(ResourceType::Endpoint, [res("a", b"2")], ["b".to_string()]);
        let s2 = b.build();
        let eds = s2.get(ResourceType::Endpoint);
        assert_eq!(eds.len(), 1);
        assert_eq!(eds.get("a").unwrap().body.as_ref(), b"2");
    }

    #[test]
    fn equal_sets_of_other_snapshots_are_shared() {
        let snapshot = |eds: &[u8], rds: &[u8]| {
            let mut b = SnapshotBuilder::default();
            b.set(
                ResourceType::Endpoint,
                [res("a", eds)].into_iter().collect(),
            );
            b.set(ResourceType::Route, [res("80", rds)].into_iter().collect());
            b.build()
        };
        let first = snapshot(b"1", b"x");
        let second = snapshot(b"1", b"y").sharing_sets_with([&first].into_iter());
        assert!(Arc::ptr_eq(
            first.set(ResourceType::Endpoint),
            second.set(ResourceType::Endpoint)
        ));
        assert!(!Arc::ptr_eq(
            first.set(ResourceType::Route),
            second.set(ResourceType::Route)
        ));
        assert_eq!(
            second
                .get(ResourceType::Route)
                .get("80")
                .unwrap()
                .body
                .as_ref(),
            b"y"
        );
        let changed = snapshot(b"2", b"x").sharing_sets_with([&first].into_iter());
        assert_eq!(
            changed
                .get(ResourceType::Endpoint)
                .get("a")
                .unwrap()
                .body
                .as_ref(),
            b"2"
        );
    }
}

//! What a client holds of one resource type, as far as its stream knows.
//!
//! Usually that is "the resources of one shared type set, for every name the
//! client wants": a pointer, the same size for ten resources or ten thousand,
//! shared by every stream on the same view. Bringing a client up to date is
//! then the set's memoized diff from the one it holds, computed once for all
//! streams making the same move. Only a reconnecting delta client, which says
//! which versions it has, is tracked name by name until its first response.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use super::name_set::{NameSet, NameSets};
use shmesh_cache::{Resource, TypeSet};

#[derive(Debug, Clone)]
pub(crate) enum ClientVersions {
    /// For every name the client wants, the version in this set (absent: none).
    Set(Arc<TypeSet>),
    /// Versions by name, as a reconnecting client reported them.
    Names(Arc<HashMap<String, String>>),
}

/// Names to send again whatever the client holds. Looked up for every
/// resource a response may carry: hashed, not ordered.
pub(crate) type Forced = HashSet<String, foldhash::fast::RandomState>;

/// The empty set every new stream holds: one allocation, so the difference
/// from it to a view's set is computed once and shared like any other.
static NOTHING: LazyLock<Arc<TypeSet>> = LazyLock::new(Arc::default);

impl Default for ClientVersions {
    fn default() -> Self {
        ClientVersions::Set(NOTHING.clone())
    }
}

/// What a client lacks to be on `current`.
#[derive(Debug, Default)]
pub(crate) struct Difference {
    /// Resources it wants at a version it does not hold, in name order.
    pub upserts: Vec<Arc<Resource>>,
    /// Names it holds that `current` no longer has.
    pub removed: Vec<String>,
    /// Forced names that `current` does not have.
    pub forced_absent: Vec<String>,
}

impl ClientVersions {
    /// Whether a (re)subscribed `name` must be forced out (rule 9): the
    /// client may hold a version of it, so the difference from what it
    /// holds could leave it out, or `current` lacks it, so it is to be
    /// reported absent (rule 7). A name the client holds nothing of goes out
    /// with the difference anyway.
    pub fn must_force(&self, name: &str, current: &Arc<TypeSet>) -> bool {
        let may_hold = match self {
            // Holding `current` itself, every name is in it (held) or not
            // (absent): forced either way, with no lookup.
            ClientVersions::Set(set) if Arc::ptr_eq(set, current) => return true,
            ClientVersions::Set(set) => set.contains(name),
            ClientVersions::Names(versions) => versions.contains_key(name),
        };
        may_hold || !current.contains(name)
    }

    /// What a client wanting `wants` and holding `self` lacks to be on
    /// `current`, plus the `force`d names it must get again whatever it holds.
    /// `scan`: what the client wants is found by looking through `current`
    /// (wildcard and namespace subscriptions), not by looking up `names`.
    pub fn difference(
        &self,
        current: &Arc<TypeSet>,
        wants: impl Fn(&str) -> bool,
        scan: bool,
        names: &NameSet,
        force: &Forced,
        sets: &NameSets,
    ) -> Difference {
        if let ClientVersions::Set(held) = self {
            if held.is_empty() && !scan && force.is_empty() {
                // Holding nothing, it lacks what it names: where those names
                // sit in `current`, worked out once for every stream naming
                // the same ones (a SotW proxy's first request names them all).
                let added = names.added_names_in(&sets.empty(), current);
                return Difference {
                    upserts: added.resources_in(current),
                    ..Default::default()
                };
            }
        }
        let mut out = Difference::default();
        match self {
            ClientVersions::Set(held) => {
                let diff = current.diff_from(held);
                out.upserts = diff
                    .changed
                    .iter()
                    .filter(|r| wants(&r.name) && !force.contains(&r.name))
                    .cloned()
                    .collect();
                out.removed = diff.removed.iter().filter(|n| wants(n)).cloned().collect();
            }
            ClientVersions::Names(held) => {
                let interest: Box<dyn Iterator<Item = &Arc<Resource>>> = if scan {
                    Box::new(current.iter().filter(|r| wants(&r.name)))
                } else {
                    Box::new(names.iter().filter_map(|n| current.get(n)))
                };
                out.upserts = interest
                    .filter(|r| held.get(&r.name) != Some(&r.version) && !force.contains(&r.name))
                    .cloned()
                    .collect();
                out.removed = held
                    .keys()
                    .filter(|n| wants(n) && !current.contains(n))
                    .cloned()
                    .collect();
                out.removed.sort();
            }
        }
        // Forced names are a hash set: put in name order by their positions
        // in the set, which compares numbers, not thousands of long names.
        let mut forced = Vec::with_capacity(force.len());
        for name in force {
            match current.position(name) {
                Some(at) => forced.push(at),
                None => out.forced_absent.push(name.clone()),
            }
        }
        forced.sort_unstable();
        let forced = forced.into_iter().map(|i| current.at(i).clone());
        if out.upserts.is_empty() {
            out.upserts = forced.collect();
        } else if forced.len() > 0 {
            out.upserts.extend(forced);
            out.upserts.sort_by(|a, b| a.name.cmp(&b.name));
        }
        out
    }
}

/// Rule 12: a cluster that was just sent warms until it gets its
/// ClusterLoadAssignment, changed or not; those the client wants are forced.
pub(crate) fn rewarm(clusters: &mut Vec<String>, wants: impl Fn(&str) -> bool, force: &mut Forced) {
    for name in clusters.drain(..) {
        if wants(&name) {
            force.insert(name);
        }
    }
}

/// Rule 4, with rule 12 outranking it: after the client rejected `rejected`,
/// nothing is sent again until something it wants changed from that set, or a
/// name is forced.
pub(crate) fn still_rejected(
    rejected: Option<&Arc<TypeSet>>,
    current: &Arc<TypeSet>,
    wants: impl Fn(&str) -> bool,
    force: &Forced,
) -> bool {
    let Some(rejected) = rejected else {
        return false;
    };
    let diff = current.diff_from(rejected);
    let moved =
        diff.changed.iter().any(|r| wants(&r.name)) || diff.removed.iter().any(|n| wants(n));
    !moved && force.is_empty()
}

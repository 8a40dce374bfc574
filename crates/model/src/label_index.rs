//! Inverted index from labels to the objects that carry them (or select on
//! them), so that matching a selector or a pod's labels costs what matches,
//! not the size of the mesh.

use std::collections::{BTreeSet, HashMap};

use shmesh_api::objects::Labels;

type Key = (String, String, String);

/// Names by (namespace, label key, label value).
#[derive(Debug, Default, Clone)]
pub struct LabelIndex {
    map: HashMap<Key, BTreeSet<String>>,
}

impl LabelIndex {
    pub fn insert(&mut self, namespace: &str, labels: &Labels, name: &str) {
        for (k, v) in labels {
            self.map
                .entry((namespace.to_string(), k.clone(), v.clone()))
                .or_default()
                .insert(name.to_string());
        }
    }

    pub fn remove(&mut self, namespace: &str, labels: &Labels, name: &str) {
        for (k, v) in labels {
            let key = (namespace.to_string(), k.clone(), v.clone());
            if let Some(set) = self.map.get_mut(&key) {
                set.remove(name);
                if set.is_empty() {
                    self.map.remove(&key);
                }
            }
        }
    }

    fn get(&self, namespace: &str, k: &str, v: &str) -> Option<&BTreeSet<String>> {
        self.map
            .get(&(namespace.to_string(), k.to_string(), v.to_string()))
    }

    /// Names carrying the rarest label of `selector`: a superset of those
    /// carrying all of them (callers check the rest). Empty when any selector
    /// label is carried by nothing, or the selector is empty.
    pub fn candidates(&self, namespace: &str, selector: &Labels) -> Vec<String> {
        let mut smallest: Option<&BTreeSet<String>> = None;
        for (k, v) in selector {
            match self.get(namespace, k, v) {
                None => return Vec::new(),
                Some(set) if smallest.is_none_or(|s| set.len() < s.len()) => smallest = Some(set),
                Some(_) => {}
            }
        }
        smallest
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Names indexed under any label of `labels`.
    pub fn any_of(&self, namespace: &str, labels: &Labels) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (k, v) in labels {
            if let Some(set) = self.get(namespace, k, v) {
                out.extend(set.iter().cloned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn candidates_come_from_the_rarest_label() {
        let mut idx = LabelIndex::default();
        for i in 0..10 {
            let version = if i == 3 { "v2" } else { "v1" };
            idx.insert(
                "ns",
                &labels(&[("app", "a"), ("version", version)]),
                &format!("p{i}"),
            );
        }
        assert_eq!(
            idx.candidates("ns", &labels(&[("app", "a"), ("version", "v2")])),
            vec!["p3"]
        );
        assert!(idx.candidates("ns", &labels(&[("app", "b")])).is_empty());
        assert!(idx.candidates("other", &labels(&[("app", "a")])).is_empty());
        idx.remove("ns", &labels(&[("app", "a"), ("version", "v2")]), "p3");
        assert!(idx
            .candidates("ns", &labels(&[("version", "v2")]))
            .is_empty());
    }
}

//! One apply function per kind: each stores the object (or forgets it),
//! updates the indexes the graph derives from it, and reports in a `Dirty`
//! what the change touched, so the translator rebuilds only that. An upsert
//! equal to what is stored touches nothing.
//!
//! `Model::apply` dispatches here by kind; each file's tests check what its
//! function reports.

mod authorization;
mod delegation;
mod destination_rule;
mod endpoint_slice;
mod gateway;
mod peer_authentication;
mod pod;
mod secret;
mod service;
mod service_entry;
mod sidecar;
mod virtual_service;
pub(crate) use virtual_service::Delegation;
mod workload_entry;

#[cfg(test)]
pub(crate) mod test_objects {
    //! Objects for the apply tests, parsed from YAML as sources parse them.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use shmesh_api::parse::{parse_text, Outcome};
    use shmesh_api::{KindObject, Object};

    /// The one object `yaml` holds; panics on anything else.
    fn object(yaml: &str) -> Arc<Object> {
        let mut outcomes = parse_text("test.yaml", yaml);
        match (outcomes.pop(), outcomes.is_empty()) {
            (Some(Outcome::Object(parsed)), true) => parsed.object,
            (other, _) => panic!("not one valid object: {other:?}"),
        }
    }

    /// The one object of kind `T` that `yaml` holds.
    pub fn typed<T: KindObject + Clone>(yaml: &str) -> T {
        let object = object(yaml);
        match T::from_object(&object) {
            Some(o) => o.clone(),
            None => panic!("not a {}: {object:?}", T::KIND),
        }
    }

    /// Upserts of every object `yaml` holds, as a source sends them.
    pub fn changes(yaml: &str) -> Vec<crate::Change> {
        parse_text("test.yaml", yaml)
            .into_iter()
            .map(|o| match o {
                Outcome::Object(p) => crate::Change::Upsert(p.key, p.object, p.origin),
                other => panic!("not valid: {other:?}"),
            })
            .collect()
    }

    /// A set of hosts, as `Dirty` holds them.
    pub fn hosts(hosts: &[&str]) -> BTreeSet<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }
}

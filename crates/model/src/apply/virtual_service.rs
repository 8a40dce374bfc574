//! A VirtualService routes the hosts it names; only the virtual hosts of
//! services those names cover need building again.

use std::collections::BTreeMap;
use std::sync::Arc;

use shmesh_api::virtual_service::VirtualService;

use super::delegation;
use crate::store::Name;
use crate::{hosts, Dirty, Model, Policy};

/// VirtualServices that delegate and those delegated to, as written: a
/// root is installed with its delegates' routes in place of its delegating
/// entries (`delegation::expand`), and installed again when one of them
/// changes; a delegate is never installed itself.
#[derive(Debug, Default, Clone)]
pub(crate) struct Delegation {
    roots: BTreeMap<Name, VirtualService>,
    delegates: BTreeMap<Name, VirtualService>,
}

impl Model {
    /// Applies a VirtualService: a delegate (no hosts) re-installs the roots
    /// that name it; a root is installed with its delegates' routes; any
    /// other is installed as written.
    pub(crate) fn apply_virtual_service(
        &mut self,
        name: Name,
        new: Option<&VirtualService>,
    ) -> Dirty {
        let mut dirty = Dirty::default();
        let is_delegate = new.is_some_and(|vs| vs.spec.hosts.is_empty());
        let was_delegate = self.delegation.delegates.contains_key(&name);
        if is_delegate || was_delegate {
            match new.filter(|_| is_delegate) {
                Some(vs) => self.delegation.delegates.insert(name.clone(), vs.clone()),
                None => self.delegation.delegates.remove(&name),
            };
            let roots: Vec<Name> = self
                .delegation
                .roots
                .iter()
                .filter(|(root, vs)| delegation::names(vs, &root.0, &name))
                .map(|(root, _)| root.clone())
                .collect();
            for root in roots {
                let expanded = self
                    .delegation
                    .roots
                    .get(&root)
                    .map(|raw| delegation::expand(raw, &root.0, &self.delegation.delegates));
                dirty.merge(self.install_virtual_service(root, expanded.as_ref()));
            }
            if is_delegate {
                // Installed before as a VirtualService of its own: no more.
                dirty.merge(self.install_virtual_service(name, None));
                return dirty;
            }
        }
        if let Some(root) = new.filter(|vs| vs.spec.http.iter().any(|h| h.delegate.is_some())) {
            let expanded = delegation::expand(root, &name.0, &self.delegation.delegates);
            self.delegation.roots.insert(name.clone(), root.clone());
            dirty.merge(self.install_virtual_service(name, Some(&expanded)));
            return dirty;
        }
        self.delegation.roots.remove(&name);
        dirty.merge(self.install_virtual_service(name, new));
        dirty
    }

    /// Touches the host patterns the VirtualService named before and names now.
    fn install_virtual_service(&mut self, name: Name, new: Option<&VirtualService>) -> Dirty {
        let mut dirty = Dirty::default();
        let Some(vs) = new else {
            if let Some(old) = self.virtual_services.remove(&name) {
                self.vs_by_host.remove(&old);
                dirty.vs_hosts.extend(old.hosts.iter().cloned());
            }
            return dirty;
        };
        if self
            .virtual_services
            .get(&name)
            .is_some_and(|old| old.made_from(vs))
        {
            return dirty;
        }
        let resolved = vs.spec.hosts.iter().map(|h| hosts::resolve(h, &name.0));
        let policy = Policy::new(&name, vs, resolved.collect(), &vs.spec.export_to);
        if let Some(old) = self.virtual_services.get(&name) {
            self.vs_by_host.remove(old);
            dirty.vs_hosts.extend(old.hosts.iter().cloned());
        }
        let policy = Arc::new(policy);
        self.vs_by_host.insert(&policy);
        dirty.vs_hosts.extend(policy.hosts.iter().cloned());
        self.virtual_services.insert(name, policy);
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn vs(hosts: &str, weight: u32) -> VirtualService {
        let yaml = format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  hosts: [{hosts}]\n  http:\n  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: {weight}}}\n    - {{destination: {{host: reviews, subset: v2}}, weight: {}}}\n", 100 - weight);
        typed(&yaml)
    }

    #[test]
    fn reports_the_resolved_hosts_named_before_and_after() {
        let mut model = Model::new();
        let name = ("shop".to_string(), "reviews".to_string());
        let reviews = hosts(&["reviews.shop.svc.cluster.local"]);

        let added = model.apply_virtual_service(name.clone(), Some(&vs("reviews", 80)));
        assert_eq!(added.vs_hosts, reviews);
        // Only routes: no clusters, endpoints or scope.
        assert!(
            added.config.is_empty() && added.endpoints.is_empty() && !added.routes && !added.scope
        );
        assert!(model
            .apply_virtual_service(name.clone(), Some(&vs("reviews", 80)))
            .is_empty());
        assert_eq!(
            model
                .apply_virtual_service(name.clone(), Some(&vs("reviews", 50)))
                .vs_hosts,
            reviews
        );

        // Moved to a wildcard: both the old host and the new pattern.
        assert_eq!(
            model
                .apply_virtual_service(name.clone(), Some(&vs("\"*.shop.svc.cluster.local\"", 50)))
                .vs_hosts,
            hosts(&["*.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"])
        );
        assert_eq!(
            model.apply_virtual_service(name.clone(), None).vs_hosts,
            hosts(&["*.shop.svc.cluster.local"])
        );
        assert!(model.apply_virtual_service(name, None).is_empty());
        assert_eq!(model.virtual_services().count(), 0);
    }
}

//! A VirtualService routes the hosts it names; only the virtual hosts of
//! services those names cover need building again.

use std::sync::Arc;

use shmesh_api::virtual_service::VirtualService;

use crate::store::Name;
use crate::{hosts, Dirty, Model, Policy};

impl Model {
    /// Touches the host patterns the VirtualService named before and names now.
    pub(crate) fn apply_virtual_service(
        &mut self,
        name: Name,
        new: Option<&VirtualService>,
    ) -> Dirty {
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

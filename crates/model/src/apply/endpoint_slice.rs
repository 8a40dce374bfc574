//! An EndpointSlice holds addresses of the Service named by its
//! `kubernetes.io/service-name` label, and may point at pods.

use shmesh_api::endpoint_slice::EndpointSlice;

use crate::hosts;
use crate::store::Name;
use crate::{slice_pods, slice_service, Dirty, Model};

impl Model {
    /// Touches the endpoints of the service the slice belonged to and belongs to.
    pub(crate) fn apply_endpoint_slice(
        &mut self,
        name: Name,
        new: Option<&EndpointSlice>,
    ) -> Dirty {
        let mut dirty = Dirty::default();
        let Some(old) = self.slices.replace(&name, new) else {
            return dirty;
        };
        let (namespace, slice_name) = (&name.0, &name.1);
        for slice in old.as_deref().into_iter().chain(new) {
            if let Some(svc) = slice_service(slice) {
                dirty.endpoints.insert(hosts::service_fqdn(&svc, namespace));
            }
        }
        if let Some(old) = old.as_deref() {
            if let Some(svc) = slice_service(old) {
                if let Some(set) = self.slices_by_service.get_mut(&(namespace.clone(), svc)) {
                    set.remove(slice_name);
                }
            }
            for pod in slice_pods(old, namespace) {
                if let Some(refs) = self.pod_refs.get_mut(&pod) {
                    refs.remove(slice_name);
                    if refs.is_empty() {
                        self.pod_refs.remove(&pod);
                    }
                }
            }
        }
        if let Some(slice) = new {
            if let Some(svc) = slice_service(slice) {
                let host = hosts::service_fqdn(&svc, namespace);
                for pod in slice_pods(slice, namespace) {
                    self.pod_refs
                        .entry(pod)
                        .or_default()
                        .insert(slice_name.clone(), host.clone());
                }
                self.slices_by_service
                    .entry((namespace.clone(), svc))
                    .or_default()
                    .insert(slice_name.clone());
            }
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn slice(service: &str, ip: &str) -> EndpointSlice {
        let yaml = format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: slice-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nendpoints:\n- addresses: [{ip}]\n  targetRef: {{kind: Pod, name: pod-1}}\nports: [{{name: http, port: 9080}}]\n");
        typed(&yaml)
    }

    #[test]
    fn reports_the_endpoints_of_the_services_it_belonged_and_belongs_to() {
        let mut model = Model::new();
        let name = ("shop".to_string(), "slice-1".to_string());
        let reviews = hosts(&["reviews.shop.svc.cluster.local"]);

        let first = slice("reviews", "10.0.0.1");
        let added = model.apply_endpoint_slice(name.clone(), Some(&first));
        assert_eq!(added.endpoints, reviews);
        assert!(added.config.is_empty() && !added.routes && !added.scope);
        assert!(model
            .apply_endpoint_slice(name.clone(), Some(&first))
            .is_empty());

        let moved = slice("reviews", "10.0.0.2");
        assert_eq!(
            model
                .apply_endpoint_slice(name.clone(), Some(&moved))
                .endpoints,
            reviews
        );

        // Relabelled to another service: both services' endpoints change.
        let relabelled = slice("ratings", "10.0.0.2");
        assert_eq!(
            model
                .apply_endpoint_slice(name.clone(), Some(&relabelled))
                .endpoints,
            hosts(&[
                "ratings.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local"
            ])
        );
        assert_eq!(model.slices_of("shop", "reviews").len(), 0);
        assert_eq!(model.slices_of("shop", "ratings").len(), 1);

        assert_eq!(
            model.apply_endpoint_slice(name.clone(), None).endpoints,
            hosts(&["ratings.shop.svc.cluster.local"])
        );
        assert!(model.apply_endpoint_slice(name, None).is_empty());
        assert!(model.pod_refs.is_empty());
    }
}

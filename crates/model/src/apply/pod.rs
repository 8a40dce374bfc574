//! A Pod is an endpoint of the services whose selector matches its labels,
//! and of those whose EndpointSlices point at it.

use shmesh_api::meta::Labels;
use shmesh_api::pod::Pod;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    /// Touches the endpoints of every service that selected the pod before or
    /// selects it now, or whose slices point at it.
    pub(crate) fn apply_pod(&mut self, name: Name, new: Option<&Pod>) -> Dirty {
        let mut dirty = Dirty::default();
        let Some(old) = self.pods.replace(&name, new) else {
            return dirty;
        };
        let (namespace, pod_name) = (&name.0, &name.1);
        let labels: Vec<&Labels> = old
            .as_deref()
            .into_iter()
            .chain(new)
            .map(|p| &p.metadata.labels)
            .collect();
        dirty.endpoints = self.hosts_selecting(namespace, &labels, Some(pod_name));
        if let Some(old) = &old {
            self.pod_labels
                .remove(namespace, &old.metadata.labels, pod_name);
        }
        if let Some(p) = new {
            self.pod_labels
                .insert(namespace, &p.metadata.labels, pod_name);
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn pod(version: &str, ip: &str) -> Pod {
        let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: reviews-1\n  namespace: shop\n  labels: {{app: reviews, version: {version}}}\nstatus: {{podIP: {ip}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n");
        typed(&yaml)
    }

    fn service(name: &str, selector: &str) -> shmesh_api::service::Service {
        let yaml = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {selector}\n  ports: [{{name: http, port: 9080}}]\n");
        typed(&yaml)
    }

    #[test]
    fn reports_the_services_that_select_it_before_and_after() {
        let mut model = Model::new();
        for (svc, selector) in [
            ("reviews", "{app: reviews}"),
            ("reviews-v2", "{app: reviews, version: v2}"),
            ("ratings", "{app: ratings}"),
        ] {
            let s = service(svc, selector);
            model.apply_service(("shop".into(), svc.into()), Some(&s));
        }
        let name = ("shop".to_string(), "reviews-1".to_string());

        let v1 = pod("v1", "10.0.0.1");
        assert_eq!(
            model.apply_pod(name.clone(), Some(&v1)).endpoints,
            hosts(&["reviews.shop.svc.cluster.local"])
        );
        assert!(model.apply_pod(name.clone(), Some(&v1)).is_empty());

        // Relabelled to v2: reviews-v2 now selects it too; ratings never does.
        let v2 = pod("v2", "10.0.0.1");
        assert_eq!(
            model.apply_pod(name.clone(), Some(&v2)).endpoints,
            hosts(&[
                "reviews-v2.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local"
            ])
        );

        let deleted = model.apply_pod(name.clone(), None);
        assert_eq!(
            deleted.endpoints,
            hosts(&[
                "reviews-v2.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local"
            ])
        );
        assert!(deleted.config.is_empty());
        assert!(model.apply_pod(name.clone(), None).is_empty());

        // A service without a selector whose slice points at the pod.
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: legacy-1\n  namespace: shop\n  labels: {kubernetes.io/service-name: legacy}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  targetRef: {kind: Pod, name: reviews-1}\nports: [{name: http, port: 9080}]\n";
        let slice = typed(slice);
        model.apply_endpoint_slice(("shop".into(), "legacy-1".into()), Some(&slice));
        assert_eq!(
            model.apply_pod(name, Some(&v1)).endpoints,
            hosts(&[
                "legacy.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local"
            ])
        );
    }
}

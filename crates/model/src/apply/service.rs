//! A Kubernetes Service defines the mesh service `NAME.NAMESPACE.svc.cluster.local`.

use shmesh_api::service::Service;

use crate::hosts;
use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    /// Touches the service's FQDN: its clusters, listeners, routes and endpoints.
    pub(crate) fn apply_service(&mut self, name: Name, new: Option<&Service>) -> Dirty {
        let mut dirty = Dirty::default();
        if self.k8s_services.replace(&name, new).is_none() {
            return dirty;
        }
        let fqdn = hosts::service_fqdn(&name.1, &name.0);
        self.rebuild_host(&fqdn);
        dirty.config.insert(fqdn);
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn service(yaml: &str) -> Service {
        typed(yaml)
    }

    const REVIEWS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080}]\n";

    #[test]
    fn reports_the_service_host_once_per_real_change() {
        let mut model = Model::new();
        let name = ("shop".to_string(), "reviews".to_string());
        let svc = service(REVIEWS);
        let host = hosts(&["reviews.shop.svc.cluster.local"]);

        let added = model.apply_service(name.clone(), Some(&svc));
        assert_eq!(added.config, host);
        assert!(model.service("reviews.shop.svc.cluster.local").is_some());
        // The same object again touches nothing.
        assert!(model.apply_service(name.clone(), Some(&svc)).is_empty());

        let changed = service(&REVIEWS.replace("9080", "9090"));
        assert_eq!(
            model.apply_service(name.clone(), Some(&changed)).config,
            host
        );

        assert_eq!(model.apply_service(name.clone(), None).config, host);
        assert!(model.service("reviews.shop.svc.cluster.local").is_none());
        // Deleting what is not there touches nothing.
        assert!(model.apply_service(name, None).is_empty());
    }
}

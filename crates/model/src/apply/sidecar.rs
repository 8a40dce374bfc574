//! A Sidecar limits what the proxies of its namespace (or, in the root
//! namespace, of every namespace without one) can reach.

use shmesh_api::sidecar::Sidecar;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    /// Touches the scope of views: which proxies see which services.
    pub(crate) fn apply_sidecar(&mut self, name: Name, new: Option<&Sidecar>) -> Dirty {
        Dirty {
            scope: self.sidecars.replace(&name, new).is_some(),
            ..Dirty::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::typed;

    fn sidecar(hosts: &str) -> Sidecar {
        let yaml = format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: shop}}\nspec:\n  egress:\n  - hosts: [{hosts}]\n");
        typed(&yaml)
    }

    #[test]
    fn reports_scope_once_per_real_change() {
        let mut model = Model::new();
        let name = ("shop".to_string(), "default".to_string());
        let own = sidecar("\"./*\"");
        let added = model.apply_sidecar(name.clone(), Some(&own));
        assert!(added.scope);
        assert!(added.config.is_empty() && added.vs_hosts.is_empty() && !added.routes);
        assert!(model.apply_sidecar(name.clone(), Some(&own)).is_empty());
        assert!(
            model
                .apply_sidecar(name.clone(), Some(&sidecar("\"*/*\"")))
                .scope
        );
        assert!(model.apply_sidecar(name.clone(), None).scope);
        assert!(model.apply_sidecar(name, None).is_empty());
    }

    #[test]
    fn a_selecting_sidecar_wins_over_its_namespaces_and_the_roots() {
        let mut model = Model::new();
        for (ns, name, spec) in [
            (
                "istio-system",
                "default",
                "{egress: [{hosts: ['istio-system/*']}]}",
            ),
            ("shop", "default", "{egress: [{hosts: ['./*']}]}"),
            (
                "shop",
                "cart",
                "{workloadSelector: {labels: {app: cart}}, egress: [{hosts: ['bank/*']}]}",
            ),
            (
                "shop",
                "ingress-only",
                "{workloadSelector: {labels: {app: db}}, ingress: [{port: {number: 5432}}]}",
            ),
        ] {
            let yaml = format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n");
            let sc: Sidecar = typed(&yaml);
            model.apply_sidecar((ns.to_string(), name.to_string()), Some(&sc));
        }
        let labels = |app: &str| -> shmesh_api::objects::Labels {
            [("app".to_string(), app.to_string())].into()
        };
        let name = |ns: &str, app: &str| {
            model
                .sidecar_for(ns, &labels(app))
                .map(|s| s.metadata.name.clone())
        };
        assert_eq!(name("shop", "cart").as_deref(), Some("cart"));
        assert_eq!(name("shop", "web").as_deref(), Some("default"));
        assert_eq!(name("bank", "cart").as_deref(), Some("default"));
        let allows = |ns: &str, app: &str, host_ns: &str| {
            model
                .egress_scope(ns, &labels(app))
                .allows(host_ns, &format!("x.{host_ns}.svc.cluster.local"))
        };
        assert!(allows("shop", "cart", "bank") && !allows("shop", "cart", "shop"));
        assert!(allows("shop", "web", "shop") && !allows("shop", "web", "bank"));
        assert!(allows("bank", "web", "istio-system") && !allows("bank", "web", "bank"));
        // A Sidecar without egress limits nothing.
        assert!(allows("shop", "db", "bank") && allows("shop", "db", "shop"));
    }
}

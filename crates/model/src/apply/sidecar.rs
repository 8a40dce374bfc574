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
}

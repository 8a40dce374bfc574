//! A DestinationRule shapes the clusters of the services its host covers,
//! and its hash policies go into routes.

use std::sync::Arc;

use shmesh_api::destination_rule::DestinationRule;

use crate::store::Name;
use crate::{hosts, Dirty, Model, Policy};

impl Model {
    /// Touches the services the rule's host covered and covers, and every
    /// route configuration (a hash policy may be in any route).
    pub(crate) fn apply_destination_rule(
        &mut self,
        name: Name,
        new: Option<&DestinationRule>,
    ) -> Dirty {
        let mut dirty = Dirty::default();
        let mut patterns: Vec<String> = self
            .destination_rules
            .get(&name)
            .map(|dr| dr.hosts.clone())
            .unwrap_or_default();
        match new {
            Some(dr) => {
                if self
                    .destination_rules
                    .get(&name)
                    .is_some_and(|old| old.made_from(dr))
                {
                    return dirty;
                }
                let host = hosts::resolve(&dr.spec.host, &name.0);
                let policy = Policy::new(&name, dr, vec![host.clone()], &dr.spec.export_to);
                patterns.push(host);
                if let Some(old) = self.destination_rules.get(&name) {
                    self.dr_by_host.remove(old);
                }
                let policy = Arc::new(policy);
                self.dr_by_host.insert(&policy);
                self.destination_rules.insert(name, policy);
            }
            None => match self.destination_rules.remove(&name) {
                Some(old) => self.dr_by_host.remove(&old),
                None => return dirty,
            },
        }
        for pattern in patterns {
            if !pattern.starts_with('*') {
                // An exact host: one lookup instead of a pass over every service.
                if self.services.contains_key(&pattern) {
                    dirty.config.insert(pattern);
                }
                continue;
            }
            let hit: Vec<String> = self
                .services
                .keys()
                .filter(|h| hosts::matches(&pattern, h))
                .cloned()
                .collect();
            dirty.config.extend(hit);
        }
        // Routes carry hash policies taken from DestinationRules.
        dirty.routes = true;
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn rule(host: &str, lb: &str) -> DestinationRule {
        let yaml = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  host: \"{host}\"\n  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}\n");
        typed(&yaml)
    }

    #[test]
    fn reports_the_services_its_host_covered_and_covers() {
        let mut model = Model::new();
        for svc in ["reviews", "ratings"] {
            let yaml = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: shop}}\nspec:\n  selector: {{app: {svc}}}\n  ports: [{{name: http, port: 9080}}]\n");
            let s = typed(&yaml);
            model.apply_service(("shop".into(), svc.into()), Some(&s));
        }
        let name = ("shop".to_string(), "reviews".to_string());
        let reviews = hosts(&["reviews.shop.svc.cluster.local"]);

        let added = model.apply_destination_rule(name.clone(), Some(&rule("reviews", "RANDOM")));
        assert_eq!(added.config, reviews);
        assert!(added.routes);
        assert!(model
            .apply_destination_rule(name.clone(), Some(&rule("reviews", "RANDOM")))
            .is_empty());

        // A wildcard covers every service of the namespace, and the old host.
        let widened = model.apply_destination_rule(
            name.clone(),
            Some(&rule("*.shop.svc.cluster.local", "RANDOM")),
        );
        assert_eq!(
            widened.config,
            hosts(&[
                "ratings.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local"
            ])
        );
        // A host no service has touches only routes.
        let elsewhere =
            model.apply_destination_rule(name.clone(), Some(&rule("nowhere", "RANDOM")));
        assert_eq!(
            elsewhere.config,
            hosts(&[
                "ratings.shop.svc.cluster.local",
                "reviews.shop.svc.cluster.local"
            ])
        );
        let removed = model.apply_destination_rule(name.clone(), None);
        assert!(removed.config.is_empty() && removed.routes);
        assert!(model.apply_destination_rule(name, None).is_empty());
    }

    #[test]
    fn a_rule_selecting_the_proxy_wins_and_selects_only_in_its_namespace() {
        let mut model = Model::new();
        let general = rule("reviews.shop.svc.cluster.local", "RANDOM");
        model.apply_destination_rule(("shop".into(), "general".into()), Some(&general));
        let picked: DestinationRule = typed("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: picked, namespace: shop}\nspec:\n  host: reviews.shop.svc.cluster.local\n  workloadSelector: {matchLabels: {app: cart}}\n");
        model.apply_destination_rule(("shop".into(), "picked".into()), Some(&picked));
        let labels = |app: &str| [("app".to_string(), app.to_string())].into();
        let name_for = |ns: &str, app: &str| {
            model
                .destination_rule("reviews.shop.svc.cluster.local", ns, &labels(app))
                .map(|dr| dr.name.clone())
        };
        assert_eq!(name_for("shop", "cart").as_deref(), Some("picked"));
        assert_eq!(name_for("shop", "web").as_deref(), Some("general"));
        // A selector never reaches across namespaces.
        assert_eq!(name_for("bank", "cart").as_deref(), Some("general"));
        assert!(model.selector_label_keys().contains("app"));
    }
}

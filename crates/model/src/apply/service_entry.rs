//! A ServiceEntry defines mesh services for each of its hosts (unless a
//! Kubernetes Service already defines the host).

use std::collections::BTreeSet;

use shmesh_api::service_entry::ServiceEntry;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    /// Touches every host the entry named before and names now.
    pub(crate) fn apply_service_entry(&mut self, name: Name, new: Option<&ServiceEntry>) -> Dirty {
        let mut dirty = Dirty::default();
        let Some(old) = self.service_entries.replace(&name, new) else {
            return dirty;
        };
        let touched: BTreeSet<String> = old
            .as_deref()
            .into_iter()
            .chain(new)
            .flat_map(|se| se.spec.hosts.iter().cloned())
            .collect();
        for host in touched {
            self.rebuild_host(&host);
            dirty.config.insert(host);
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn entry(hosts: &str) -> ServiceEntry {
        let yaml = format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: external, namespace: shop}}\nspec:\n  hosts: [{hosts}]\n  ports: [{{number: 443, name: https, protocol: HTTPS}}]\n  resolution: DNS\n");
        typed(&yaml)
    }

    #[test]
    fn reports_the_hosts_named_before_and_after() {
        let mut model = Model::new();
        let name = ("shop".to_string(), "external".to_string());
        let both = entry("a.example.com, b.example.com");
        assert_eq!(
            model.apply_service_entry(name.clone(), Some(&both)).config,
            hosts(&["a.example.com", "b.example.com"])
        );
        assert!(model
            .apply_service_entry(name.clone(), Some(&both))
            .is_empty());

        // Dropping b and adding c touches all three.
        let moved = entry("a.example.com, c.example.com");
        assert_eq!(
            model.apply_service_entry(name.clone(), Some(&moved)).config,
            hosts(&["a.example.com", "b.example.com", "c.example.com"])
        );
        assert!(model.service("b.example.com").is_none());
        assert!(model.service("c.example.com").is_some());

        assert_eq!(
            model.apply_service_entry(name.clone(), None).config,
            hosts(&["a.example.com", "c.example.com"])
        );
        assert!(model.apply_service_entry(name, None).is_empty());
    }
}

//! A WorkloadEntry is an endpoint of the services (Kubernetes Services and
//! ServiceEntries with a workload selector) whose selector matches its labels.

use shmesh_api::meta::Labels;
use shmesh_api::workload_entry::WorkloadEntry;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    /// Touches the endpoints of every service that selected the entry before
    /// or selects it now.
    pub(crate) fn apply_workload_entry(
        &mut self,
        name: Name,
        new: Option<&WorkloadEntry>,
    ) -> Dirty {
        let mut dirty = Dirty::default();
        let Some(old) = self.workload_entries.replace(&name, new) else {
            return dirty;
        };
        let (namespace, entry_name) = (&name.0, &name.1);
        let labels: Vec<&Labels> = old
            .as_deref()
            .into_iter()
            .chain(new)
            .map(|w| &w.spec.labels)
            .collect();
        dirty.endpoints = self.hosts_selecting(namespace, &labels, None);
        if let Some(old) = &old {
            self.we_labels
                .remove(namespace, &old.spec.labels, entry_name);
        }
        if let Some(w) = new {
            self.we_labels.insert(namespace, &w.spec.labels, entry_name);
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{hosts, typed};

    fn entry(app: &str) -> WorkloadEntry {
        let yaml = format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: vm-1, namespace: shop}}\nspec:\n  address: 10.1.0.1\n  labels: {{app: {app}}}\n");
        typed(&yaml)
    }

    #[test]
    fn reports_the_services_that_select_it_before_and_after() {
        let mut model = Model::new();
        let selecting = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vms, namespace: shop}\nspec:\n  hosts: [vms.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: vm}}\n";
        let se = typed(selecting);
        model.apply_service_entry(("shop".into(), "vms".into()), Some(&se));
        let name = ("shop".to_string(), "vm-1".to_string());

        let vm = entry("vm");
        assert_eq!(
            model
                .apply_workload_entry(name.clone(), Some(&vm))
                .endpoints,
            hosts(&["vms.example.com"])
        );
        assert!(model
            .apply_workload_entry(name.clone(), Some(&vm))
            .is_empty());

        // Relabelled away: the service that selected it loses it.
        let other = entry("other");
        assert_eq!(
            model
                .apply_workload_entry(name.clone(), Some(&other))
                .endpoints,
            hosts(&["vms.example.com"])
        );
        // Selected by nothing before or after: nothing to rebuild.
        assert!(model
            .apply_workload_entry(name.clone(), None)
            .endpoints
            .is_empty());
        assert!(model.apply_workload_entry(name, None).is_empty());
    }
}

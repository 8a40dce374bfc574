//! Which mutual TLS mode a workload's port takes, from the PeerAuthentications
//! that cover it, as Istio resolves them: the workload's own policy (its
//! port-level mode, then its mode), then its namespace's, then the mesh's
//! (in the root namespace); `UNSET` defers to the next; PERMISSIVE when
//! nothing says otherwise. Where several policies of one level match, the
//! first by name applies.
//!
//! Also which AuthorizationPolicies and RequestAuthentications cover a
//! workload: those of the root namespace and of its own namespace, without
//! a selector or with one that matches its labels.

use std::collections::BTreeSet;
use std::sync::Arc;

use shmesh_api::objects::{AuthorizationPolicy, Labels, RequestAuthentication};
use shmesh_api::peer_authentication::{MtlsMode, PeerAuthentication};

use crate::{selects, Backing, Model};

/// A workload's mTLS modes: the default for its ports and the exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MtlsPolicy {
    pub default: MtlsMode,
    /// Ports whose mode differs from `default`.
    pub ports: Vec<(u16, MtlsMode)>,
}

impl MtlsPolicy {
    pub fn port(&self, port: u16) -> MtlsMode {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(self.default, |(_, m)| *m)
    }
}

impl Model {
    /// The mTLS modes of a workload of `namespace` with `labels`.
    pub fn mtls_policy(&self, namespace: &str, labels: &Labels) -> MtlsPolicy {
        let workload = self
            .peer_authentications
            .in_namespace(namespace)
            .find(|pa| {
                pa.spec
                    .match_labels()
                    .is_some_and(|sel| selects(sel, labels))
            });
        let namespace_wide = |ns: &str| -> Option<&PeerAuthentication> {
            self.peer_authentications
                .in_namespace(ns)
                .find(|pa| pa.spec.match_labels().is_none())
                .map(|pa| &**pa)
        };
        let inherited = [namespace_wide(namespace), namespace_wide(self.root())]
            .into_iter()
            .flatten()
            .map(|pa| pa.spec.mode())
            .find(|m| *m != MtlsMode::Unset)
            .unwrap_or(MtlsMode::Permissive);
        let default = workload
            .map(|pa| pa.spec.mode())
            .filter(|m| *m != MtlsMode::Unset)
            .unwrap_or(inherited);
        let ports = workload
            .map(|pa| {
                pa.spec
                    .port_modes()
                    .map(|(p, m)| (p, if m == MtlsMode::Unset { default } else { m }))
                    .filter(|(_, m)| *m != default)
                    .collect()
            })
            .unwrap_or_default();
        MtlsPolicy { default, ports }
    }
}

impl Model {
    /// The AuthorizationPolicies covering a workload of `namespace` with
    /// `labels`, the root namespace's first, each namespace's by name.
    pub fn authorization_policies(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Vec<&Arc<AuthorizationPolicy>> {
        covering(&self.authorization_policies, self.root(), namespace, |p| {
            p.spec.match_labels().is_none_or(|sel| selects(sel, labels))
        })
    }

    /// The RequestAuthentications covering a workload, in the same order.
    pub fn request_authentications(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Vec<&Arc<RequestAuthentication>> {
        covering(&self.request_authentications, self.root(), namespace, |p| {
            p.spec.match_labels().is_none_or(|sel| selects(sel, labels))
        })
    }
}

impl Model {
    /// The label keys some selector reads: of Services and ServiceEntries,
    /// Sidecars, PeerAuthentications, AuthorizationPolicies,
    /// RequestAuthentications, DestinationRules, and VirtualServices'
    /// `sourceLabels`. Two
    /// workloads of one namespace whose labels agree on these keys receive
    /// the same configuration.
    pub fn selector_label_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut add = |labels: &Labels| keys.extend(labels.keys().cloned());
        for svc in self.services.values() {
            let selector = match &svc.backing {
                Backing::Kubernetes { selector } => selector.as_ref(),
                Backing::ServiceEntry { selector, .. } => selector.as_ref(),
            };
            if let Some(selector) = selector {
                add(selector);
            }
        }
        for sc in self.sidecars.values() {
            if let Some(sel) = &sc.spec.workload_selector {
                add(&sel.labels);
            }
        }
        for pa in self.peer_authentications.values() {
            pa.spec.match_labels().into_iter().for_each(&mut add);
        }
        for gw in self.gateways.values() {
            add(&gw.spec.selector);
        }
        for dr in self.destination_rules.values() {
            if let Some(sel) = &dr.spec.workload_selector {
                add(&sel.match_labels);
            }
        }
        for ap in self.authorization_policies.values() {
            ap.spec.match_labels().into_iter().for_each(&mut add);
        }
        for ra in self.request_authentications.values() {
            ra.spec.match_labels().into_iter().for_each(&mut add);
        }
        for vs in self.virtual_services.values() {
            for http in &vs.spec.http {
                for m in &http.match_ {
                    add(&m.source_labels);
                }
            }
        }
        keys
    }
}

/// The objects of the root namespace and of `namespace` that `applies` to.
fn covering<'a, T>(
    store: &'a crate::store::Store<T>,
    root: &str,
    namespace: &str,
    applies: impl Fn(&T) -> bool,
) -> Vec<&'a Arc<T>> {
    let own = (namespace != root).then(|| store.in_namespace(namespace));
    store
        .in_namespace(root)
        .chain(own.into_iter().flatten())
        .filter(|p| applies(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::typed;

    fn with(policies: &[(&str, &str, &str)]) -> Model {
        let mut model = Model::new();
        for (ns, name, spec) in policies {
            let yaml = format!("apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}");
            let pa: PeerAuthentication = typed(&yaml);
            model.apply_peer_authentication((ns.to_string(), name.to_string()), Some(&pa));
        }
        model
    }

    fn labels(app: &str) -> Labels {
        [("app".to_string(), app.to_string())].into()
    }

    #[test]
    fn the_narrowest_policy_that_says_something_wins() {
        let strict_mesh = ("istio-system", "default", "  mtls: {mode: STRICT}\n");
        let model = with(&[strict_mesh]);
        assert_eq!(
            model.mtls_policy("shop", &labels("cart")).default,
            MtlsMode::Strict
        );

        let model = with(&[strict_mesh, ("shop", "ns", "  mtls: {mode: PERMISSIVE}\n")]);
        assert_eq!(
            model.mtls_policy("shop", &labels("cart")).default,
            MtlsMode::Permissive
        );
        assert_eq!(
            model.mtls_policy("bank", &labels("cart")).default,
            MtlsMode::Strict
        );

        let workload = (
            "shop",
            "cart",
            "  selector: {matchLabels: {app: cart}}\n  mtls: {mode: UNSET}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}\n",
        );
        let model = with(&[strict_mesh, workload]);
        let cart = model.mtls_policy("shop", &labels("cart"));
        // UNSET defers to the namespace, then the mesh.
        assert_eq!(cart.default, MtlsMode::Strict);
        assert_eq!(cart.ports, vec![(8080, MtlsMode::Disable)]);
        assert_eq!(cart.port(8080), MtlsMode::Disable);
        assert_eq!(cart.port(9090), MtlsMode::Strict);
        // Another workload of the namespace is not selected.
        assert_eq!(model.mtls_policy("shop", &labels("web")).ports, vec![]);
    }

    #[test]
    fn authorization_policies_of_the_root_the_namespace_and_the_workload_cover_it() {
        let mut model = Model::new();
        for (ns, name, spec) in [
            ("istio-system", "mesh", "{action: DENY}"),
            (
                "istio-system",
                "carts",
                "{selector: {matchLabels: {app: cart}}}",
            ),
            ("shop", "ns", "{}"),
            ("shop", "cart", "{selector: {matchLabels: {app: cart}}}"),
            ("shop", "web", "{selector: {matchLabels: {app: web}}}"),
            ("bank", "ns", "{}"),
        ] {
            let yaml = format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n");
            let ap: AuthorizationPolicy = typed(&yaml);
            model.apply_authorization_policy((ns.to_string(), name.to_string()), Some(&ap));
        }
        let names = |ns: &str, app: &str| -> Vec<String> {
            model
                .authorization_policies(ns, &labels(app))
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.as_deref().unwrap_or(""),
                        p.metadata.name
                    )
                })
                .collect()
        };
        assert_eq!(
            names("shop", "cart"),
            vec![
                "istio-system/carts",
                "istio-system/mesh",
                "shop/cart",
                "shop/ns"
            ]
        );
        assert_eq!(names("shop", "db"), vec!["istio-system/mesh", "shop/ns"]);
        assert_eq!(
            names("bank", "cart"),
            vec!["istio-system/carts", "istio-system/mesh", "bank/ns"]
        );
    }

    #[test]
    fn selector_label_keys_are_those_some_selector_reads() {
        let mut model = with(&[(
            "shop",
            "cart",
            "  selector: {matchLabels: {app: cart}}\n  mtls: {mode: STRICT}\n",
        )]);
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {tier: web}\n  ports: [{port: 80}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\nspec:\n  hosts: [web]\n  http:\n  - match: [{sourceLabels: {version: v2}}]\n    route: [{destination: {host: web}}]\n";
        model.apply(crate::apply::test_objects::changes(yaml));
        assert_eq!(
            model.selector_label_keys(),
            ["app", "tier", "version"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn nothing_said_is_permissive() {
        let model = with(&[("shop", "ns", "  mtls: {mode: UNSET}\n")]);
        assert_eq!(
            model.mtls_policy("shop", &labels("cart")),
            MtlsPolicy {
                default: MtlsMode::Permissive,
                ports: vec![]
            }
        );
    }
}

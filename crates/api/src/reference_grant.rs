//! The Gateway API's `ReferenceGrant` (gateway.networking.k8s.io v1beta1):
//! lets objects of other namespaces refer to objects of its own. A route's
//! backend in another namespace, or a Gateway's certificate Secret in
//! another namespace, is used only when a ReferenceGrant in the target's
//! namespace allows it (`ReferenceGrant::allows`).

use serde::Deserialize;

use crate::meta::ObjectMeta;
use crate::validate::Validator;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReferenceGrant {
    pub metadata: ObjectMeta,
    pub spec: ReferenceGrantSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ReferenceGrantSpec {
    pub from: Vec<GrantFrom>,
    pub to: Vec<GrantTo>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    /// Every object of the kind when unset.
    pub name: Option<String>,
}

/// One side of a reference: group, kind, namespace, name.
#[derive(Debug, Clone, Copy)]
pub struct Referent<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ReferenceGrant {
    /// Whether this grant lets `from` refer to `to` (which must be in the
    /// grant's namespace).
    pub fn allows(&self, from: Referent, to: Referent) -> bool {
        let own = self.metadata.namespace.as_deref().unwrap_or("default");
        to.namespace == own
            && self.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            })
            && self.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|n| n == to.name)
            })
    }
}

impl Validator {
    pub(crate) fn reference_grant(&mut self, grant: &ReferenceGrantSpec) {
        if grant.from.is_empty() {
            self.err(
                "spec.from",
                "a ReferenceGrant needs at least one from entry",
            );
        }
        if grant.to.is_empty() {
            self.err("spec.to", "a ReferenceGrant needs at least one to entry");
        }
        for (i, f) in grant.from.iter().enumerate() {
            if f.kind.is_empty() {
                self.err(format!("spec.from[{i}].kind"), "kind is required");
            }
            if f.namespace.is_empty() {
                self.err(format!("spec.from[{i}].namespace"), "namespace is required");
            }
        }
        for (i, t) in grant.to.iter().enumerate() {
            if t.kind.is_empty() {
                self.err(format!("spec.to[{i}].kind"), "kind is required");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> ReferenceGrant {
        let yaml = "metadata: {name: g, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n  to: [{group: '', kind: Service, name: web}]\n";
        serde_norway::from_str(yaml).expect("grant")
    }

    #[test]
    fn grants_only_what_they_name() {
        let route = |ns| Referent {
            group: "gateway.networking.k8s.io",
            kind: "HTTPRoute",
            namespace: ns,
            name: "r",
        };
        let service = |ns, name| Referent {
            group: "",
            kind: "Service",
            namespace: ns,
            name,
        };
        let g = grant();
        assert!(g.allows(route("shop"), service("backends", "web")));
        assert!(!g.allows(route("other"), service("backends", "web")));
        assert!(!g.allows(route("shop"), service("backends", "db")));
        assert!(!g.allows(route("shop"), service("elsewhere", "web")));
    }
}

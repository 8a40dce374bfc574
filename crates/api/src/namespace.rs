//! Kubernetes `Namespace`s, read for their labels: a Gateway API listener
//! may admit the routes of the namespaces a label selector picks
//! (`allowedRoutes.namespaces.from: Selector`).

use serde::Deserialize;

use crate::meta::{Labels, ObjectMeta};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Namespace {
    pub metadata: ObjectMeta,
}

/// A Kubernetes label selector over Namespaces: every `matchLabels` entry and every
/// `matchExpressions` requirement must hold.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LabelRequirement {
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: String,
    pub values: Vec<String>,
}

impl NamespaceSelector {
    /// Whether `labels` satisfy the selector (an unknown operator never
    /// does).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let selector: NamespaceSelector = serde_norway::from_str(
            "matchLabels: {shared-gateway: 'true'}\nmatchExpressions:\n- {key: env, operator: In, values: [prod, staging]}\n- {key: legacy, operator: DoesNotExist}\n",
        )
        .expect("selector");
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector.matches(&labels(&[("shared-gateway", "true"), ("env", "prod")])));
        assert!(!selector.matches(&labels(&[("shared-gateway", "true"), ("env", "dev")])));
        assert!(!selector.matches(&labels(&[
            ("shared-gateway", "true"),
            ("env", "prod"),
            ("legacy", "yes")
        ])));
        assert!(!selector.matches(&labels(&[("env", "prod")])));
    }
}

//! What every object has: metadata, labels, and the shape Istio's objects
//! share (`metadata` and a `spec`).

use std::collections::BTreeMap;

use serde::Deserialize;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: Labels,
    pub generation: Option<i64>,
    pub resource_version: Option<String>,
    /// RFC 3339, as the API server sets it: orders Gateway API routes that
    /// tie on precedence (the oldest first).
    pub creation_timestamp: Option<String>,
}

/// A port given by number or by name (`targetPort`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct IstioObject<S> {
    pub metadata: ObjectMeta,
    pub spec: S,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadSelector {
    pub labels: Labels,
}

//! From text (YAML or JSON, one or many documents) or JSON values to typed,
//! validated objects.
//!
//! Every source goes through `decode`: the files source after splitting a file
//! into documents, the Kubernetes source with the JSON the API server sent.
//! An object that fails is returned as problems naming file, line, kind,
//! namespace/name, field and reason; it never stops the others.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::problem::{Origin, Problem};
use super::{validate, Kind, Object, ObjectKey};

/// An object that decoded and validated, with any warnings about it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub key: ObjectKey,
    pub origin: Origin,
    pub object: Arc<Object>,
    /// The document the object was decoded from, when the caller asked to
    /// keep it (`parse_text_keeping`, `decode_keeping`): to store it as is.
    pub document: Option<serde_json::Value>,
}

/// What one document turned into.
#[derive(Debug)]
pub enum Outcome {
    Object(Parsed),
    /// A kind shmesh does not read (a Deployment, a ConfigMap...).
    Skipped {
        origin: Origin,
        kind: String,
        api_version: String,
    },
    /// The object is invalid. `key` is set when the document said which object
    /// it is, so its last good version can be kept.
    Rejected {
        key: Option<ObjectKey>,
        problems: Vec<Problem>,
    },
}

/// Splits a file into documents and decodes each one.
pub fn parse_text(path: &str, text: &str) -> Vec<Outcome> {
    parse_text_with(path, text, false)
}

/// `parse_text`, each object keeping the document it came from (`Parsed::document`).
pub fn parse_text_keeping(path: &str, text: &str) -> Vec<Outcome> {
    parse_text_with(path, text, true)
}

fn parse_text_with(path: &str, text: &str, keep: bool) -> Vec<Outcome> {
    let trimmed = text.trim_start();
    if path.ends_with(".json") || trimmed.starts_with('{') || trimmed.starts_with('[') {
        return match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => decode_values(&Origin::file(path, 1), value, keep),
            Err(e) => vec![syntax_error(Origin::file(path, e.line()), e.to_string())],
        };
    }
    let mut out = Vec::new();
    for (start_line, doc) in split_yaml_documents(text) {
        let origin = Origin::file(path, start_line);
        if doc.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        }) {
            continue;
        }
        let value = match serde_json::Value::deserialize(serde_norway::Deserializer::from_str(doc))
        {
            Ok(v) => v,
            Err(e) => {
                // An error at the end of input points past the last line.
                let last = start_line + doc.lines().count().saturating_sub(1);
                let line = e
                    .location()
                    .map(|l| (start_line + l.line().saturating_sub(1)).min(last))
                    .unwrap_or(start_line);
                out.push(syntax_error(Origin::file(path, line), e.to_string()));
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        out.extend(decode_values(&origin, value, keep));
    }
    out
}

fn syntax_error(origin: Origin, reason: String) -> Outcome {
    Outcome::Rejected {
        key: None,
        problems: vec![
            Problem::error("", format!("cannot parse: {reason}")).about(&origin, "", "", "")
        ],
    }
}

/// Splits YAML text on `---` lines; returns each document with its 1-based first line.
fn split_yaml_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") || bare == "..." {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = idx + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs
}

/// Decodes a JSON value holding one object, or a `List` of them.
pub fn decode_value(origin: &Origin, value: serde_json::Value) -> Vec<Outcome> {
    decode_values(origin, value, false)
}

fn decode_values(origin: &Origin, value: serde_json::Value, keep: bool) -> Vec<Outcome> {
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .flat_map(|v| decode_values(origin, v, keep))
            .collect(),
        serde_json::Value::Object(ref map)
            if map
                .get("kind")
                .and_then(|k| k.as_str())
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(|i| i.is_array()) =>
        {
            let Some(serde_json::Value::Array(items)) = value.get("items").cloned() else {
                return Vec::new();
            };
            items
                .into_iter()
                .flat_map(|v| decode_values(origin, v, keep))
                .collect()
        }
        other => vec![decode_with(origin, other, keep)],
    }
}

/// Decodes and validates one object.
pub fn decode(origin: &Origin, value: serde_json::Value) -> Outcome {
    decode_with(origin, value, false)
}

/// `decode`, the object keeping the document it came from (`Parsed::document`).
pub fn decode_keeping(origin: &Origin, value: serde_json::Value) -> Outcome {
    decode_with(origin, value, true)
}

fn decode_with(origin: &Origin, value: serde_json::Value, keep: bool) -> Outcome {
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let kind_name = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();

    if !value.is_object() {
        return Outcome::Rejected {
            key: None,
            problems: vec![
                Problem::error("", "document is not an object").about(origin, "", "", "")
            ],
        };
    }
    if kind_name.is_empty() || api_version.is_empty() {
        let field = if kind_name.is_empty() {
            "kind"
        } else {
            "apiVersion"
        };
        return Outcome::Rejected {
            key: None,
            problems: vec![
                Problem::error(field, "missing").about(origin, &kind_name, &namespace, &name)
            ],
        };
    }
    let Some(kind) = Kind::from_api(&api_version, &kind_name) else {
        return Outcome::Skipped {
            origin: origin.clone(),
            kind: kind_name,
            api_version,
        };
    };
    if name.is_empty() {
        return Outcome::Rejected {
            key: None,
            problems: vec![
                Problem::error("metadata.name", "missing").for_kind(origin, kind, &namespace, "")
            ],
        };
    }
    let key = ObjectKey {
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let reject = |problems: Vec<Problem>| Outcome::Rejected {
        key: Some(key.clone()),
        problems: problems
            .into_iter()
            .map(|p| p.for_kind(origin, kind, &namespace, &name))
            .collect(),
    };
    let document = keep.then(|| value.clone());
    let object = match typed(kind, value) {
        Ok(o) => o,
        Err(p) => return reject(vec![*p]),
    };
    let problems = validate::object(&object);
    if !problems.is_empty() {
        return reject(problems);
    }
    Outcome::Object(Parsed {
        key,
        origin: origin.clone(),
        object: Arc::new(object),
        document,
    })
}

fn typed(kind: Kind, value: serde_json::Value) -> Result<Object, Box<Problem>> {
    let mut value = value;
    // Objects from files usually omit the namespace; Kubernetes would default it.
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        if meta
            .get("namespace")
            .and_then(|n| n.as_str())
            .is_none_or(|n| n.is_empty())
        {
            meta.insert("namespace".into(), "default".into());
        }
    }
    Ok(match kind {
        Kind::Service => Object::Service(de(value)?),
        Kind::EndpointSlice => Object::EndpointSlice(de(value)?),
        Kind::Pod => Object::Pod(de(value)?),
        Kind::VirtualService => Object::VirtualService(de(value)?),
        Kind::DestinationRule => Object::DestinationRule(de(value)?),
        Kind::ServiceEntry => Object::ServiceEntry(de(value)?),
        Kind::WorkloadEntry => Object::WorkloadEntry(de(value)?),
        Kind::Sidecar => Object::Sidecar(de(value)?),
        Kind::PeerAuthentication => Object::PeerAuthentication(de(value)?),
        Kind::AuthorizationPolicy => Object::AuthorizationPolicy(de(value)?),
        Kind::RequestAuthentication => Object::RequestAuthentication(de(value)?),
        Kind::Secret => Object::Secret(de(value)?),
        Kind::Gateway => Object::Gateway(de(value)?),
        Kind::GatewayClass => Object::GatewayClass(de(value)?),
        Kind::KubernetesGateway => Object::KubernetesGateway(de(value)?),
        Kind::HTTPRoute => Object::HTTPRoute(de(value)?),
        Kind::GRPCRoute => Object::GRPCRoute(de(value)?),
        Kind::TCPRoute => Object::TCPRoute(de(value)?),
        Kind::TLSRoute => Object::TLSRoute(de(value)?),
        Kind::ReferenceGrant => Object::ReferenceGrant(de(value)?),
        Kind::Namespace => Object::Namespace(de(value)?),
    })
}

fn de<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Box<Problem>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        Box::new(Problem::error(field, e.into_inner().to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_problem(outcomes: Vec<Outcome>) -> Problem {
        match outcomes.into_iter().next() {
            Some(Outcome::Rejected { problems, .. }) => problems.into_iter().next().unwrap(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn splits_documents_with_lines() {
        let docs = split_yaml_documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[1].0, 3);
        assert_eq!(docs[2].0, 5);
    }

    #[test]
    fn wrong_field_type_names_the_field() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: ns}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n      weight: lots\n";
        let p = only_problem(parse_text("vs.yaml", text));
        assert_eq!(p.field, "spec.http[0].route[0].weight");
        assert_eq!(p.kind, "VirtualService");
        assert_eq!(p.namespace, "ns");
        assert_eq!(p.name, "r");
        assert!(p
            .to_string()
            .starts_with("vs.yaml:1: error: VirtualService ns/r: spec.http[0].route[0].weight:"));
    }

    #[test]
    fn unknown_kinds_are_skipped() {
        let out = parse_text(
            "d.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        );
        assert!(matches!(out[0], Outcome::Skipped { .. }));
    }

    #[test]
    fn syntax_error_has_line() {
        let out = parse_text("bad.yaml", "apiVersion: v1\n---\nkind: [\n");
        let p = only_problem(out.into_iter().skip(1).collect());
        assert_eq!(p.origin.line, Some(3));
        assert!(p.reason.starts_with("cannot parse"));
    }

    #[test]
    fn namespace_defaults() {
        let out = parse_text(
            "s.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n",
        );
        match &out[0] {
            Outcome::Object(p) => assert_eq!(p.key.namespace, "default"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_list_is_expanded() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80}]}},{"apiVersion":"v1","kind":"Service","metadata":{"name":"b"},"spec":{"ports":[{"port":80}]}}]}"#;
        assert_eq!(parse_text("l.json", text).len(), 2);
    }
}

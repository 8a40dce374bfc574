//! One AdmissionReview (`admission.k8s.io/v1`, as the API server POSTs it)
//! in, its answer out: the object is checked exactly as `shmesh validate`
//! checks a document of a file (`shmesh_api::parse::decode`), and denied
//! with the words that command prints for it. No I/O here; the server
//! (`super`) moves the bytes.
//!
//! - CREATE and UPDATE of a kind shmesh reads: allowed when the object
//!   decodes and validates; denied otherwise, `status.message` holding one
//!   line per problem, each `shmesh validate`'s line without its
//!   `FILE:LINE: ` (`error: VirtualService shop/reviews: spec.http[0]...:
//!   reason`), in the same order.
//! - DELETE, CONNECT, and kinds shmesh does not read: allowed.
//! - A body that is not an AdmissionReview v1 with a request: HTTP 400 and
//!   a message saying what is wrong (the API server then applies the
//!   webhook's failure policy).
//!
//! No warnings: `shmesh validate`'s warnings are about references to other
//! objects (a host or subset that does not exist), which a webhook seeing one
//! object cannot judge.

use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, META_API_VERSION_V1, META_KIND,
};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use shmesh_api::parse::{decode, Outcome};
use shmesh_api::Origin;

/// What the server answers.
#[derive(Debug)]
pub struct Answer {
    /// 200 with an AdmissionReview, or 400 with a plain-text reason.
    pub http_status: u16,
    pub body: Vec<u8>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Not an AdmissionReview shmesh can answer.
    Malformed,
}

/// Answers the AdmissionReview in `body`.
pub fn review(body: &[u8]) -> Answer {
    match respond(body) {
        Ok(response) => {
            let verdict = if response.allowed {
                Verdict::Allowed
            } else {
                Verdict::Denied
            };
            match serde_json::to_vec(&response.into_review()) {
                Ok(body) => Answer {
                    http_status: 200,
                    body,
                    verdict,
                },
                Err(e) => malformed(format!("cannot encode the response: {e}")),
            }
        }
        Err(reason) => malformed(reason),
    }
}

fn malformed(reason: String) -> Answer {
    Answer {
        http_status: 400,
        body: format!("{reason}\n").into_bytes(),
        verdict: Verdict::Malformed,
    }
}

fn respond(body: &[u8]) -> Result<AdmissionResponse, String> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an AdmissionReview: not JSON: {e}"))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default();
    if field("apiVersion") != META_API_VERSION_V1 || field("kind") != META_KIND {
        return Err(format!(
            "the body is {} {}, not {META_API_VERSION_V1} {META_KIND}",
            shown(field("apiVersion"), "<no apiVersion>"),
            shown(field("kind"), "<no kind>")
        ));
    }
    // The object is checked as the API server sent it, the very JSON
    // `shmesh validate` would read from a file, not after a round trip
    // through the typed request (which would drop or reshape fields).
    let (object, _) = match value.get_mut("request").and_then(Value::as_object_mut) {
        Some(request) => (request.remove("object"), request.remove("oldObject")),
        None => return Err("the AdmissionReview has no request".into()),
    };
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("malformed AdmissionReview: {}: {}", e.path(), e.inner()))?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())?;
    let response = AdmissionResponse::from(&request);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Ok(response);
    }
    let object = match object {
        Some(object @ Value::Object(_)) => object,
        _ => {
            return Err(format!(
                "request.object is missing: a {:?} request carries the object",
                request.operation
            ))
        }
    };
    Ok(check(response, &request, object))
}

fn shown<'a>(text: &'a str, missing: &'a str) -> &'a str {
    if text.is_empty() {
        missing
    } else {
        text
    }
}

/// `shmesh validate`'s checks on `object`.
fn check(
    response: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    mut object: Value,
) -> AdmissionResponse {
    // The API server fills in the namespace from the request's path before
    // admission; a request that names it while its object does not is read
    // the same way.
    if let (Some(namespace), Some(metadata)) = (
        request.namespace.as_deref().filter(|ns| !ns.is_empty()),
        object.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        if metadata
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            metadata.insert("namespace".into(), namespace.into());
        }
    }
    // No file and no line: the problems name the object themselves.
    match decode(&Origin::default(), object) {
        Outcome::Object(_) | Outcome::Skipped { .. } => response,
        Outcome::Rejected { mut problems, .. } => {
            // In `shmesh validate`'s order.
            problems.sort();
            let message = problems
                .iter()
                .map(|p| p.message().to_string())
                .collect::<Vec<_>>()
                .join("\n");
            let mut denied = response.deny(&message);
            denied.result = Status::failure(&message, "BadRequest").with_code(400);
            denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review_of(operation: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "networking.istio.io", "version": "v1", "kind": "DestinationRule"},
                "resource": {"group": "networking.istio.io", "version": "v1", "resource": "destinationrules"},
                "name": "reviews",
                "namespace": "shop",
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": object,
                "oldObject": null,
                "dryRun": false
            }
        }))
        .expect("json")
    }

    fn response(answer: &Answer) -> Value {
        assert_eq!(
            answer.http_status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let review: Value = serde_json::from_slice(&answer.body).expect("json");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(
            review["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        review["response"].clone()
    }

    #[test]
    fn an_invalid_object_is_denied_naming_its_field() {
        let bad = serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews"},
            "spec": {"host": ""}
        });
        let answer = review(&review_of("CREATE", bad.clone()));
        assert_eq!(answer.verdict, Verdict::Denied);
        let r = response(&answer);
        assert_eq!(r["allowed"], false);
        // The namespace comes from the request.
        assert_eq!(
            r["status"]["message"],
            "error: DestinationRule shop/reviews: spec.host: host is required"
        );
        assert_eq!(r["status"]["code"], 400);
        // Deleting it is no business of validation.
        let answer = review(&review_of("DELETE", Value::Null));
        assert_eq!(answer.verdict, Verdict::Allowed);
        assert_eq!(response(&answer)["allowed"], true);
    }

    #[test]
    fn kinds_shmesh_does_not_read_are_allowed() {
        let answer = review(&review_of(
            "CREATE",
            serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "ProxyConfig",
                "metadata": {"name": "p"}, "spec": {"concurrency": "lots"}}),
        ));
        assert_eq!(answer.verdict, Verdict::Allowed);
    }

    #[test]
    fn what_is_not_an_admission_review_is_a_bad_request() {
        for (body, says) in [
            (&b"{not json"[..], "not JSON"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
                "admission.k8s.io/v1beta1 AdmissionReview, not admission.k8s.io/v1",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "no request",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{}}}"#,
                "malformed AdmissionReview: request",
            ),
        ] {
            let answer = review(body);
            assert_eq!(answer.verdict, Verdict::Malformed);
            assert_eq!(answer.http_status, 400);
            let text = String::from_utf8_lossy(&answer.body);
            assert!(text.contains(says), "{text:?} does not say {says:?}");
        }
        let answer = review(&review_of("UPDATE", Value::Null));
        assert_eq!(answer.http_status, 400);
        assert!(String::from_utf8_lossy(&answer.body).contains("request.object is missing"));
    }
}

//! Istio `RequestAuthentication` (security.istio.io v1 and v1beta1): which
//! JSON Web Tokens the sidecars of the workloads it covers accept. A request
//! with a token that no rule verifies is refused; one without a token passes
//! unauthenticated (an AuthorizationPolicy on `requestPrincipals` refuses it).

use serde::Deserialize;

use crate::meta::*;
use crate::peer_authentication::LabelSelector;
use crate::validate::Validator;

pub type RequestAuthentication = IstioObject<RequestAuthenticationSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    pub selector: Option<LabelSelector>,
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct JwtRule {
    pub issuer: String,
    /// Accepted `aud` values; any when empty.
    pub audiences: Vec<String>,
    /// Where Envoy fetches the issuer's public keys.
    pub jwks_uri: Option<String>,
    /// The public keys inline, as a JWKS document.
    pub jwks: Option<String>,
    /// Headers the token may come in; `Authorization: Bearer` when none is given.
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token may come in.
    pub from_params: Vec<String>,
    /// Cookies the token may come in.
    pub from_cookies: Vec<String>,
    /// Keep the token on the request passed to the app.
    pub forward_original_token: bool,
    /// A header that carries the verified payload (base64) to the app.
    pub output_payload_to_header: Option<String>,
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// How long fetching the keys may take.
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct JwtHeader {
    pub name: String,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}

impl RequestAuthenticationSpec {
    /// Match labels, when the policy selects workloads.
    pub fn match_labels(&self) -> Option<&Labels> {
        self.selector
            .as_ref()
            .map(|s| &s.match_labels)
            .filter(|l| !l.is_empty())
    }
}

/// The parts of a `jwksUri` Envoy needs to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUri {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

/// Splits an `http` or `https` URI into scheme, host and port.
pub fn parse_jwks_uri(uri: &str) -> Result<JwksUri, String> {
    let (https, rest) = if let Some(rest) = uri.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = uri.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("{uri:?} is not an http or https URI"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{uri:?} has an invalid port"))?;
            (host, port)
        }
        _ => (authority, if https { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("{uri:?} has no host"));
    }
    Ok(JwksUri {
        https,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    })
}

impl Validator {
    pub(crate) fn request_authentication(&mut self, ra: &RequestAuthenticationSpec) {
        if let Some(sel) = &ra.selector {
            self.label_selector(sel);
        }
        for (i, rule) in ra.jwt_rules.iter().enumerate() {
            let at = format!("spec.jwtRules[{i}]");
            if rule.issuer.is_empty() {
                self.err(format!("{at}.issuer"), "issuer is required");
            }
            if let Some(uri) = &rule.jwks_uri {
                if let Err(reason) = parse_jwks_uri(uri) {
                    self.err(format!("{at}.jwksUri"), reason);
                }
            }
            match &rule.jwks {
                Some(jwks) => {
                    let keys = serde_json::from_str::<serde_json::Value>(jwks)
                        .ok()
                        .and_then(|v| v.get("keys").and_then(|k| k.as_array()).cloned());
                    if keys.is_none() {
                        self.err(
                            format!("{at}.jwks"),
                            "not a JWKS document (JSON with a \"keys\" array)",
                        );
                    }
                }
                None if rule.jwks_uri.is_none() => self.err(
                    format!("{at}.jwksUri"),
                    "one of jwks or jwksUri is required",
                ),
                None => {}
            }
            for (j, h) in rule.from_headers.iter().enumerate() {
                if h.name.is_empty() {
                    self.err(
                        format!("{at}.fromHeaders[{j}].name"),
                        "header name is empty",
                    );
                }
            }
            for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
                if c.header.is_empty() || c.claim.is_empty() {
                    self.err(
                        format!("{at}.outputClaimToHeaders[{j}]"),
                        "header and claim are required",
                    );
                }
            }
            self.duration(format!("{at}.timeout"), rule.timeout.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::problems;

    fn ra(spec: &str) -> String {
        format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: shop}}\nspec:\n{spec}")
    }

    #[test]
    fn istios_example_is_valid() {
        let yaml = ra("  selector: {matchLabels: {app: cart}}\n  jwtRules:\n  - issuer: issuer-foo\n    jwksUri: https://example.com/.well-known/jwks.json\n    audiences: [cart]\n    fromHeaders: [{name: x-jwt-assertion, prefix: 'Bearer '}]\n    forwardOriginalToken: true\n  - issuer: issuer-bar\n    jwks: '{\"keys\": []}'\n");
        assert!(problems(&yaml).is_empty(), "{:?}", problems(&yaml));
    }

    #[test]
    fn bad_rules_are_named() {
        assert_eq!(
            problems(&ra("  jwtRules:\n  - jwksUri: ftp://x\n  - issuer: a\n    jwks: 'nope'\n  - issuer: b\n")),
            vec![
                "spec.jwtRules[0].issuer: issuer is required",
                "spec.jwtRules[0].jwksUri: \"ftp://x\" is not an http or https URI",
                "spec.jwtRules[1].jwks: not a JWKS document (JSON with a \"keys\" array)",
                "spec.jwtRules[2].jwksUri: one of jwks or jwksUri is required",
            ]
        );
    }

    #[test]
    fn jwks_uris() {
        assert_eq!(
            parse_jwks_uri("https://auth.example.com/keys"),
            Ok(JwksUri {
                https: true,
                host: "auth.example.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_jwks_uri("http://keys.auth.svc.cluster.local:8080/jwks").map(|u| u.port),
            Ok(8080)
        );
        assert!(parse_jwks_uri("http://:80/").is_err());
    }
}

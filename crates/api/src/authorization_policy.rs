//! Istio `AuthorizationPolicy` (security.istio.io v1 and v1beta1): which
//! requests the sidecars of the workloads it covers let in. Mesh-wide in the
//! root namespace, namespace-wide without a selector, or for the workloads its
//! selector matches. Each rule matches a request when one of its sources, one
//! of its operations and all of its conditions match.

use std::net::IpAddr;

use serde::Deserialize;

use crate::meta::*;
use crate::peer_authentication::LabelSelector;
use crate::validate::{check_label, Validator};

pub type AuthorizationPolicy = IstioObject<AuthorizationPolicySpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    pub selector: Option<LabelSelector>,
    /// `ALLOW` when unset.
    pub action: Option<String>,
    /// The extension provider of a `CUSTOM` policy.
    pub provider: Option<Provider>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Provider {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Rule {
    pub from: Vec<From>,
    pub to: Vec<To>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct From {
    pub source: Source,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct To {
    pub operation: Operation,
}

/// Who sent the request. Every field set must match; within a field, one
/// value must match and none of its `not` values.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Source {
    /// Peer identities (`TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`), from mutual TLS.
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    /// `ISSUER/SUBJECT` of the request's verified JWT.
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    /// The peer's namespace, from its mutual TLS identity.
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    /// The peer's address (the connection's source).
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    /// The original client's address (`X-Forwarded-For`).
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

/// What the request does.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

/// `key` must take one of `values` (when given) and none of `notValues`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// What a policy does with the requests its rules match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Deny,
    /// Matching requests are marked for audit logging; nothing is refused.
    Audit,
    /// An external authorizer decides (the `provider`).
    Custom,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "ALLOW" => Some(Action::Allow),
            "DENY" => Some(Action::Deny),
            "AUDIT" => Some(Action::Audit),
            "CUSTOM" => Some(Action::Custom),
            _ => None,
        }
    }
}

/// What a `when` key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[NAME]`
    Header(String),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    /// `request.auth.principal`: `ISSUER/SUBJECT` of the JWT.
    RequestPrincipal,
    /// `request.auth.audiences`
    Audiences,
    /// `request.auth.presenter`
    Presenter,
    /// `request.auth.claims[NAME]`, nested claims as `[a][b]`.
    Claim(Vec<String>),
    DestinationIp,
    DestinationPort,
    ConnectionSni,
}

impl ConditionKey {
    pub fn parse(key: &str) -> Result<ConditionKey, String> {
        let bracketed = |prefix: &str| -> Option<Result<Vec<String>, String>> {
            let rest = key.strip_prefix(prefix)?;
            let mut names = Vec::new();
            let mut rest = rest;
            while !rest.is_empty() {
                let Some(inner) = rest.strip_prefix('[') else {
                    return Some(Err(format!("{key:?}: expected [NAME] after {prefix:?}")));
                };
                let Some((name, after)) = inner.split_once(']') else {
                    return Some(Err(format!("{key:?}: unclosed '['")));
                };
                if name.is_empty() {
                    return Some(Err(format!("{key:?}: empty name in []")));
                }
                names.push(name.to_string());
                rest = after;
            }
            if names.is_empty() {
                return Some(Err(format!("{key:?}: expected [NAME] after {prefix:?}")));
            }
            Some(Ok(names))
        };
        if let Some(names) = bracketed("request.headers") {
            let names = names?;
            if names.len() != 1 {
                return Err(format!("{key:?}: a header is named by one [NAME]"));
            }
            return Ok(ConditionKey::Header(names[0].to_ascii_lowercase()));
        }
        if let Some(names) = bracketed("request.auth.claims") {
            return Ok(ConditionKey::Claim(names?));
        }
        Ok(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "request.auth.principal" => ConditionKey::RequestPrincipal,
            "request.auth.audiences" => ConditionKey::Audiences,
            "request.auth.presenter" => ConditionKey::Presenter,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            "experimental.envoy.filters.network.mysql_proxy[]" | "source.user" => {
                return Err(format!("{key:?} is not supported"))
            }
            _ => return Err(format!("{key:?} is not a condition key Istio knows")),
        })
    }

    /// Keys only an HTTP request has.
    pub fn is_http_only(&self) -> bool {
        matches!(
            self,
            ConditionKey::Header(_)
                | ConditionKey::RemoteIp
                | ConditionKey::RequestPrincipal
                | ConditionKey::Audiences
                | ConditionKey::Presenter
                | ConditionKey::Claim(_)
        )
    }
}

impl AuthorizationPolicySpec {
    /// The action; `ALLOW` when unset (or invalid: validation keeps such a
    /// policy out).
    pub fn action(&self) -> Action {
        self.action
            .as_deref()
            .and_then(Action::parse)
            .unwrap_or(Action::Allow)
    }

    /// Match labels, when the policy selects workloads.
    pub fn match_labels(&self) -> Option<&Labels> {
        self.selector
            .as_ref()
            .map(|s| &s.match_labels)
            .filter(|l| !l.is_empty())
    }
}

impl Source {
    /// Fields only an HTTP request has.
    pub fn has_http_only(&self) -> bool {
        !self.request_principals.is_empty()
            || !self.not_request_principals.is_empty()
            || !self.remote_ip_blocks.is_empty()
            || !self.not_remote_ip_blocks.is_empty()
    }
}

impl Operation {
    /// Fields only an HTTP request has.
    pub fn has_http_only(&self) -> bool {
        !self.hosts.is_empty()
            || !self.not_hosts.is_empty()
            || !self.methods.is_empty()
            || !self.not_methods.is_empty()
            || !self.paths.is_empty()
            || !self.not_paths.is_empty()
    }
}

/// An address or a CIDR block (`10.0.0.0/8`), as ipBlocks take them.
pub fn parse_ip_block(block: &str) -> Result<(IpAddr, u32), String> {
    let (ip, len) = match block.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (block, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{block:?} is not an IP address or CIDR block"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => len
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{block:?} has an invalid prefix length"))?,
    };
    Ok((ip, len))
}

impl Validator {
    pub(crate) fn authorization_policy(&mut self, ap: &AuthorizationPolicySpec) {
        let action = ap.action.as_deref().map(|a| (a, Action::parse(a)));
        if let Some((text, None)) = action {
            self.err(
                "spec.action",
                format!("{text:?} is not one of ALLOW, DENY, AUDIT, CUSTOM"),
            );
        }
        let action = ap.action();
        match (&ap.provider, action) {
            (Some(_), a) if a != Action::Custom => {
                self.err("spec.provider", "a provider is only for action CUSTOM")
            }
            (None, Action::Custom) => self.err("spec.provider", "action CUSTOM needs a provider"),
            _ => {}
        }
        if let Some(sel) = &ap.selector {
            self.label_selector(sel);
        }
        for (i, rule) in ap.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            for (j, from) in rule.from.iter().enumerate() {
                self.source(&format!("{at}.from[{j}].source"), &from.source);
            }
            for (j, to) in rule.to.iter().enumerate() {
                self.operation(&format!("{at}.to[{j}].operation"), &to.operation);
            }
            for (j, when) in rule.when.iter().enumerate() {
                self.condition(&format!("{at}.when[{j}]"), when);
            }
        }
    }

    fn source(&mut self, at: &str, s: &Source) {
        let lists: [(&str, &Vec<String>); 10] = [
            ("principals", &s.principals),
            ("notPrincipals", &s.not_principals),
            ("requestPrincipals", &s.request_principals),
            ("notRequestPrincipals", &s.not_request_principals),
            ("namespaces", &s.namespaces),
            ("notNamespaces", &s.not_namespaces),
            ("ipBlocks", &s.ip_blocks),
            ("notIpBlocks", &s.not_ip_blocks),
            ("remoteIpBlocks", &s.remote_ip_blocks),
            ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
        ];
        if lists.iter().all(|(_, l)| l.is_empty()) {
            self.err(at, "a source must set at least one field");
        }
        for (name, list) in lists {
            for (k, value) in list.iter().enumerate() {
                let field = format!("{at}.{name}[{k}]");
                if name.ends_with("pBlocks") || name.ends_with("IpBlocks") {
                    if let Err(reason) = parse_ip_block(value) {
                        self.err(field, reason);
                    }
                } else {
                    self.wildcard_value(field, value);
                }
            }
        }
    }

    fn operation(&mut self, at: &str, o: &Operation) {
        let lists: [(&str, &Vec<String>); 8] = [
            ("hosts", &o.hosts),
            ("notHosts", &o.not_hosts),
            ("ports", &o.ports),
            ("notPorts", &o.not_ports),
            ("methods", &o.methods),
            ("notMethods", &o.not_methods),
            ("paths", &o.paths),
            ("notPaths", &o.not_paths),
        ];
        if lists.iter().all(|(_, l)| l.is_empty()) {
            self.err(at, "an operation must set at least one field");
        }
        for (name, list) in lists {
            for (k, value) in list.iter().enumerate() {
                let field = format!("{at}.{name}[{k}]");
                if name.ends_with("orts") {
                    match value.parse::<i64>() {
                        Ok(n) => self.port(field, n),
                        Err(_) => self.err(field, format!("{value:?} is not a port number")),
                    }
                } else if name.ends_with("aths")
                    && !value.starts_with('/')
                    && value != "*"
                    && !value.starts_with('*')
                {
                    self.err(field, format!("{value:?} must start with '/'"));
                } else {
                    self.wildcard_value(field, value);
                }
            }
        }
    }

    fn condition(&mut self, at: &str, c: &Condition) {
        let key = match ConditionKey::parse(&c.key) {
            Ok(key) => key,
            Err(reason) => {
                self.err(format!("{at}.key"), reason);
                return;
            }
        };
        if c.values.is_empty() && c.not_values.is_empty() {
            self.err(at, "one of values or notValues must be set");
        }
        for (name, list) in [("values", &c.values), ("notValues", &c.not_values)] {
            for (k, value) in list.iter().enumerate() {
                let field = format!("{at}.{name}[{k}]");
                match key {
                    ConditionKey::SourceIp
                    | ConditionKey::RemoteIp
                    | ConditionKey::DestinationIp => {
                        if let Err(reason) = parse_ip_block(value) {
                            self.err(field, reason);
                        }
                    }
                    ConditionKey::DestinationPort => match value.parse::<i64>() {
                        Ok(n) => self.port(field, n),
                        Err(_) => self.err(field, format!("{value:?} is not a port number")),
                    },
                    ConditionKey::SourceNamespace => {
                        if !value.contains('*') {
                            if let Err(reason) = check_label(value) {
                                self.err(field, reason);
                            }
                        }
                    }
                    _ => self.wildcard_value(field, value),
                }
            }
        }
    }

    /// Istio's string values: exact, `prefix*`, `*suffix` or `*`; no other `*`.
    fn wildcard_value(&mut self, field: String, value: &str) {
        if value.is_empty() {
            self.err(field, "value is empty");
            return;
        }
        let inner = value
            .strip_prefix('*')
            .or_else(|| value.strip_suffix('*'))
            .unwrap_or(value);
        if inner.contains('*') {
            self.err(
                field,
                format!("{value:?}: '*' may only stand at the start or the end"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::problems;

    fn ap(spec: &str) -> String {
        format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}")
    }

    #[test]
    fn istios_examples_are_valid() {
        let yaml = ap("  selector: {matchLabels: {app: cart}}\n  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/shop/sa/web, '*/sa/admin']\n        notNamespaces: [prod]\n        ipBlocks: [10.0.0.0/8, 192.168.1.1]\n    to:\n    - operation:\n        methods: [GET, POST]\n        paths: [/admin, /api/*, '*/info']\n        ports: ['8080']\n        hosts: ['*.example.com']\n    when:\n    - key: request.headers[X-Tenant]\n      values: [gold]\n    - key: request.auth.claims[groups][team]\n      notValues: [ops]\n    - key: source.ip\n      values: [10.1.0.0/16]\n");
        assert!(problems(&yaml).is_empty(), "{:?}", problems(&yaml));
        let beta = ap("  {}\n").replace("security.istio.io/v1", "security.istio.io/v1beta1");
        assert!(problems(&beta).is_empty(), "{:?}", problems(&beta));
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            problems(&ap("  action: deny\n  provider: {name: x}\n  rules:\n  - from: [{source: {}}, {source: {ipBlocks: [10.0.0.0/33, nope]}}]\n    to:\n    - operation: {ports: [http], paths: [admin], methods: ['G*T']}\n    when:\n    - {key: request.body, values: [x]}\n    - {key: source.ip}\n")),
            vec![
                "spec.action: \"deny\" is not one of ALLOW, DENY, AUDIT, CUSTOM",
                "spec.provider: a provider is only for action CUSTOM",
                "spec.rules[0].from[0].source: a source must set at least one field",
                "spec.rules[0].from[1].source.ipBlocks[0]: \"10.0.0.0/33\" has an invalid prefix length",
                "spec.rules[0].from[1].source.ipBlocks[1]: \"nope\" is not an IP address or CIDR block",
                "spec.rules[0].to[0].operation.ports[0]: \"http\" is not a port number",
                "spec.rules[0].to[0].operation.methods[0]: \"G*T\": '*' may only stand at the start or the end",
                "spec.rules[0].to[0].operation.paths[0]: \"admin\" must start with '/'",
                "spec.rules[0].when[0].key: \"request.body\" is not a condition key Istio knows",
                "spec.rules[0].when[1]: one of values or notValues must be set",
            ]
        );
        assert_eq!(
            problems(&ap("  action: CUSTOM\n")),
            vec!["spec.provider: action CUSTOM needs a provider"]
        );
    }

    #[test]
    fn condition_keys() {
        assert_eq!(
            ConditionKey::parse("request.headers[X-Token]"),
            Ok(ConditionKey::Header("x-token".into()))
        );
        assert_eq!(
            ConditionKey::parse("request.auth.claims[a][b]"),
            Ok(ConditionKey::Claim(vec!["a".into(), "b".into()]))
        );
        assert!(ConditionKey::parse("request.headers").is_err());
        assert!(ConditionKey::parse("request.headers[a").is_err());
        assert!(ConditionKey::parse("request.headers[a][b]").is_err());
    }
}

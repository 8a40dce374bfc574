//! Host names as Istio resolves them.
//!
//! Istio resolves a short host in a VirtualService or DestinationRule relative to
//! the namespace of that object (`reviews` in `default` is
//! `reviews.default.svc.cluster.local`), while the short names a proxy may *call*
//! (`reviews`, `reviews.default`) depend on the proxy's own namespace.

use crate::text::concat;

pub const DOMAIN_SUFFIX: &str = "cluster.local";

/// FQDN of a Kubernetes Service.
pub fn service_fqdn(name: &str, namespace: &str) -> String {
    concat(&[name, ".", namespace, ".svc.", DOMAIN_SUFFIX])
}

/// Resolves a host written in a config object of `namespace` to an FQDN, as
/// Istio's `ResolveShortnameToFQDN` does: names without a dot get
/// `.<namespace>.svc.cluster.local`; wildcards and dotted names stay as they are.
pub fn resolve(host: &str, namespace: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        host.to_string()
    } else {
        service_fqdn(host, namespace)
    }
}

/// Whether `pattern` (possibly `*.suffix` or `*`) covers `host`.
pub fn matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// How specific a pattern is, for "most specific wins" (exact beats any wildcard).
pub fn specificity(pattern: &str) -> usize {
    if pattern.starts_with('*') {
        pattern.len()
    } else {
        usize::MAX
    }
}

/// The names a proxy in `proxy_namespace` may use for a service `fqdn`, without
/// ports: the FQDN itself and, for Kubernetes services, the short forms that DNS
/// search paths give (`name`, only in the same namespace; `name.ns`, `name.ns.svc`).
pub fn alternate_names(fqdn: &str, proxy_namespace: &str) -> Vec<String> {
    let mut names = vec![fqdn.to_string()];
    let Some(base) = fqdn
        .strip_suffix(DOMAIN_SUFFIX)
        .and_then(|f| f.strip_suffix(".svc."))
    else {
        return names;
    };
    let Some((name, namespace)) = base.split_once('.') else {
        return names;
    };
    if namespace.contains('.') {
        return names;
    }
    if namespace == proxy_namespace {
        names.push(name.to_string());
    }
    names.push(concat(&[name, ".", namespace]));
    names.push(concat(&[name, ".", namespace, ".svc"]));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_config_namespace() {
        assert_eq!(
            resolve("reviews", "bookinfo"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(resolve("reviews.other", "bookinfo"), "reviews.other");
        assert_eq!(resolve("*.example.com", "bookinfo"), "*.example.com");
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("*.example.com", "api.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("*", "anything"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.c"));
    }

    #[test]
    fn alternates_depend_on_proxy_namespace() {
        let fqdn = "reviews.default.svc.cluster.local";
        assert_eq!(
            alternate_names(fqdn, "default"),
            vec![fqdn, "reviews", "reviews.default", "reviews.default.svc"]
        );
        assert_eq!(
            alternate_names(fqdn, "other"),
            vec![fqdn, "reviews.default", "reviews.default.svc"]
        );
        assert_eq!(
            alternate_names("api.example.com", "default"),
            vec!["api.example.com"]
        );
    }
}

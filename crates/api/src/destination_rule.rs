//! Istio `DestinationRule` (networking.istio.io): subsets of a host's
//! endpoints and the traffic policy (load balancing, connection pool,
//! outlier detection) for the host, each subset and each port.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::duration;
use crate::meta::*;
use crate::validate::{check_label, Validator};
use crate::virtual_service::PortSelector;

pub type DestinationRule = IstioObject<DestinationRuleSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    pub subsets: Vec<Subset>,
    pub export_to: Vec<String>,
    /// The workloads of the rule's namespace it applies to; all when absent.
    /// Only such a rule's `credentialName` is read by sidecars.
    pub workload_selector: Option<crate::peer_authentication::LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Subset {
    pub name: String,
    pub labels: Labels,
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub port_level_settings: Vec<PortTrafficPolicy>,
    pub tls: Option<Box<ClientTlsSettings>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<Box<ClientTlsSettings>>,
}

/// How a sidecar connects to the destination (`trafficPolicy.tls`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL.
    pub mode: Option<String>,
    pub client_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    /// A Secret holding the client certificate and key (and CA).
    pub credential_name: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub sni: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// `ClientTlsSettings.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

impl ClientTlsMode {
    pub fn parse(s: &str) -> Option<ClientTlsMode> {
        match s {
            "DISABLE" => Some(ClientTlsMode::Disable),
            "SIMPLE" => Some(ClientTlsMode::Simple),
            "MUTUAL" => Some(ClientTlsMode::Mutual),
            "ISTIO_MUTUAL" => Some(ClientTlsMode::IstioMutual),
            _ => None,
        }
    }
}

impl ClientTlsSettings {
    /// The mode; DISABLE when missing (as Istio defaults it).
    pub fn mode(&self) -> ClientTlsMode {
        self.mode
            .as_deref()
            .and_then(ClientTlsMode::parse)
            .unwrap_or(ClientTlsMode::Disable)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    pub simple: Option<String>,
    pub consistent_hash: Option<ConsistentHash>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsistentHash {
    pub http_header_name: Option<String>,
    pub http_cookie: Option<HttpCookie>,
    pub use_source_ip: Option<bool>,
    pub http_query_parameter_name: Option<String>,
    pub ring_hash: Option<RingHash>,
    pub maglev: Option<Maglev>,
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpCookie {
    pub name: String,
    pub path: Option<String>,
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RingHash {
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Maglev {
    pub table_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    pub tcp: Option<TcpSettings>,
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpSettings {
    pub max_connections: Option<i64>,
    pub connect_timeout: Option<String>,
    pub max_connection_duration: Option<String>,
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpSettings {
    pub http1_max_pending_requests: Option<i64>,
    pub http2_max_requests: Option<i64>,
    pub max_requests_per_connection: Option<i64>,
    pub max_retries: Option<i64>,
    pub idle_timeout: Option<String>,
    pub h2_upgrade_policy: Option<String>,
    pub max_concurrent_streams: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    #[serde(default)]
    pub consecutive_errors: Option<i64>,
    #[serde(default)]
    pub consecutive_gateway_errors: Option<i64>,
    #[serde(default, rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<i64>,
    #[serde(default)]
    pub split_external_local_origin_errors: Option<bool>,
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<i64>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    #[serde(default)]
    pub max_ejection_percent: Option<i64>,
    #[serde(default)]
    pub min_health_percent: Option<i64>,
}

const LB_SIMPLE: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
];

impl Validator {
    pub(crate) fn destination_rule(&mut self, dr: &DestinationRuleSpec) {
        if dr.host.is_empty() {
            self.err("spec.host", "host is required");
        } else {
            self.host("spec.host".into(), &dr.host, true);
        }
        if let Some(tp) = &dr.traffic_policy {
            self.traffic_policy("spec.trafficPolicy", tp);
        }
        let mut names = BTreeSet::new();
        for (i, s) in dr.subsets.iter().enumerate() {
            let f = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                self.err(format!("{f}.name"), "subset name is required");
            } else if let Err(reason) = check_label(&s.name) {
                self.err(format!("{f}.name"), reason);
            } else if !names.insert(s.name.as_str()) {
                self.err(
                    format!("{f}.name"),
                    format!("duplicate subset name {:?}", s.name),
                );
            }
            if let Some(tp) = &s.traffic_policy {
                self.traffic_policy(&format!("{f}.trafficPolicy"), tp);
            }
        }
    }

    pub(crate) fn traffic_policy(&mut self, f: &str, tp: &TrafficPolicy) {
        self.policy_parts(
            f,
            &tp.load_balancer,
            &tp.connection_pool,
            &tp.outlier_detection,
        );
        if let Some(tls) = &tp.tls {
            self.client_tls(&format!("{f}.tls"), tls);
        }
        let mut ports = BTreeSet::new();
        for (i, pl) in tp.port_level_settings.iter().enumerate() {
            let pf = format!("{f}.portLevelSettings[{i}]");
            match pl.port.as_ref().and_then(|p| p.number) {
                None => self.err(format!("{pf}.port"), "port number is required"),
                Some(n) => {
                    self.port(format!("{pf}.port.number"), n);
                    if !ports.insert(n) {
                        self.err(
                            format!("{pf}.port"),
                            format!("duplicate settings for port {n}"),
                        );
                    }
                }
            }
            self.policy_parts(
                &pf,
                &pl.load_balancer,
                &pl.connection_pool,
                &pl.outlier_detection,
            );
            if let Some(tls) = &pl.tls {
                self.client_tls(&format!("{pf}.tls"), tls);
            }
        }
    }

    /// Istio's rules for `tls`: a known mode; MUTUAL needs a certificate and
    /// key (from files or `credentialName`); ISTIO_MUTUAL brings its own and
    /// takes no files.
    fn client_tls(&mut self, f: &str, tls: &ClientTlsSettings) {
        let Some(mode) = tls.mode.as_deref() else {
            return;
        };
        let Some(mode) = ClientTlsMode::parse(mode) else {
            self.err(
                format!("{f}.mode"),
                format!("{mode:?} is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"),
            );
            return;
        };
        let files = [
            ("clientCertificate", &tls.client_certificate),
            ("privateKey", &tls.private_key),
            ("caCertificates", &tls.ca_certificates),
        ];
        match mode {
            ClientTlsMode::Mutual if tls.credential_name.is_none() => {
                for (field, value) in &files[..2] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        self.err(
                            format!("{f}.{field}"),
                            "required for MUTUAL without credentialName",
                        );
                    }
                }
            }
            ClientTlsMode::IstioMutual => {
                for (field, value) in files {
                    if value.is_some() {
                        self.err(
                            format!("{f}.{field}"),
                            "must not be set with ISTIO_MUTUAL (the workload's own certificate is used)",
                        );
                    }
                }
                if tls.credential_name.is_some() {
                    self.err(
                        format!("{f}.credentialName"),
                        "must not be set with ISTIO_MUTUAL (the workload's own certificate is used)",
                    );
                }
            }
            _ => {}
        }
    }

    pub(crate) fn policy_parts(
        &mut self,
        f: &str,
        lb: &Option<LoadBalancerSettings>,
        pool: &Option<ConnectionPoolSettings>,
        outlier: &Option<OutlierDetection>,
    ) {
        if let Some(lb) = lb {
            let lf = format!("{f}.loadBalancer");
            if let Some(s) = &lb.simple {
                if !LB_SIMPLE.contains(&s.as_str()) {
                    self.err(
                        format!("{lf}.simple"),
                        format!("unknown load balancer {s:?}"),
                    );
                }
                if lb.consistent_hash.is_some() {
                    self.err(lf.clone(), "simple and consistentHash cannot both be set");
                }
            }
            if let Some(ch) = &lb.consistent_hash {
                let keys = [
                    ch.http_header_name.is_some(),
                    ch.http_cookie.is_some(),
                    ch.use_source_ip.unwrap_or(false),
                    ch.http_query_parameter_name.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if keys != 1 {
                    self.err(
                        format!("{lf}.consistentHash"),
                        "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required",
                    );
                }
                if let Some(c) = &ch.http_cookie {
                    if c.name.is_empty() {
                        self.err(
                            format!("{lf}.consistentHash.httpCookie.name"),
                            "cookie name is required",
                        );
                    }
                    if let Some(ttl) = &c.ttl {
                        if let Err(e) = duration::parse(ttl) {
                            self.err(format!("{lf}.consistentHash.httpCookie.ttl"), e);
                        }
                    }
                }
                if ch.ring_hash.is_some() && ch.maglev.is_some() {
                    self.err(
                        format!("{lf}.consistentHash"),
                        "ringHash and maglev cannot both be set",
                    );
                }
            }
        }
        if let Some(pool) = pool {
            let pf = format!("{f}.connectionPool");
            if let Some(tcp) = &pool.tcp {
                self.non_negative(format!("{pf}.tcp.maxConnections"), tcp.max_connections);
                self.duration(
                    format!("{pf}.tcp.connectTimeout"),
                    tcp.connect_timeout.as_ref(),
                );
                self.duration(
                    format!("{pf}.tcp.maxConnectionDuration"),
                    tcp.max_connection_duration.as_ref(),
                );
                self.duration(format!("{pf}.tcp.idleTimeout"), tcp.idle_timeout.as_ref());
            }
            if let Some(http) = &pool.http {
                self.non_negative(
                    format!("{pf}.http.http1MaxPendingRequests"),
                    http.http1_max_pending_requests,
                );
                self.non_negative(
                    format!("{pf}.http.http2MaxRequests"),
                    http.http2_max_requests,
                );
                self.non_negative(
                    format!("{pf}.http.maxRequestsPerConnection"),
                    http.max_requests_per_connection,
                );
                self.non_negative(format!("{pf}.http.maxRetries"), http.max_retries);
                self.non_negative(
                    format!("{pf}.http.maxConcurrentStreams"),
                    http.max_concurrent_streams,
                );
                self.duration(format!("{pf}.http.idleTimeout"), http.idle_timeout.as_ref());
                if let Some(p) = &http.h2_upgrade_policy {
                    if !["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"].contains(&p.as_str()) {
                        self.err(
                            format!("{pf}.http.h2UpgradePolicy"),
                            format!("unknown policy {p:?}"),
                        );
                    }
                }
            }
        }
        if let Some(o) = outlier {
            let of = format!("{f}.outlierDetection");
            self.non_negative(format!("{of}.consecutiveErrors"), o.consecutive_errors);
            self.non_negative(
                format!("{of}.consecutiveGatewayErrors"),
                o.consecutive_gateway_errors,
            );
            self.non_negative(
                format!("{of}.consecutive5xxErrors"),
                o.consecutive_5xx_errors,
            );
            self.non_negative(
                format!("{of}.consecutiveLocalOriginFailures"),
                o.consecutive_local_origin_failures,
            );
            self.duration(format!("{of}.interval"), o.interval.as_ref());
            self.duration(
                format!("{of}.baseEjectionTime"),
                o.base_ejection_time.as_ref(),
            );
            self.percent(format!("{of}.maxEjectionPercent"), o.max_ejection_percent);
            self.percent(format!("{of}.minHealthPercent"), o.min_health_percent);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    #[test]
    fn destination_rule_rules() {
        let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n    outlierDetection: {maxEjectionPercent: 150}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n  - {name: Bad_Name}\n";
        assert_eq!(
            problems(dr),
            vec![
                "spec.trafficPolicy.loadBalancer.simple: unknown load balancer \"FASTEST\"",
                "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is not a percentage in 0-100",
                "spec.subsets[1].name: duplicate subset name \"v1\"",
                "spec.subsets[2].name: \"Bad_Name\" is not a DNS label (letters, digits and '-', not at either end)",
            ]
        );
    }

    #[test]
    fn tls_modes_and_their_required_fields() {
        let dr = |tls: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {tls}\n")
        };
        for good in [
            "{mode: ISTIO_MUTUAL, sni: reviews.example}",
            "{mode: SIMPLE, caCertificates: /etc/ca.pem, subjectAltNames: [reviews.example]}",
            "{mode: MUTUAL, credentialName: reviews-client}",
            "{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}",
            "{mode: DISABLE}",
        ] {
            assert!(
                problems(&dr(good)).is_empty(),
                "{good}: {:?}",
                problems(&dr(good))
            );
        }
        assert_eq!(
            problems(&dr("{mode: MUTUAL}")),
            vec![
                "spec.trafficPolicy.tls.clientCertificate: required for MUTUAL without credentialName",
                "spec.trafficPolicy.tls.privateKey: required for MUTUAL without credentialName",
            ]
        );
        assert_eq!(
            problems(&dr("{mode: ISTIO_MUTUAL, caCertificates: /ca.pem}")),
            vec!["spec.trafficPolicy.tls.caCertificates: must not be set with ISTIO_MUTUAL (the workload's own certificate is used)"]
        );
        assert_eq!(
            problems(&dr("{mode: TLS}")),
            vec!["spec.trafficPolicy.tls.mode: \"TLS\" is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"]
        );
    }
}

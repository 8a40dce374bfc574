//! `shmesh proxy-config {clusters,listeners,routes,endpoints,secrets} PROXY`:
//! what a running shmesh last sent a connected proxy, in the tables
//! istioctl's `proxy-config` prints from a proxy's `/config_dump`
//! (istio/istio `istioctl/pkg/writer/envoy/configdump`), or with `-o json`
//! as Envoy's JSON. Read from the admin server's
//! `/debug/config_dump?proxyID=PROXY`, which never carries key material.
//!
//! The tables are read from the dump's JSON (protobuf's JSON mapping with
//! Envoy's field names): absent fields are protobuf defaults.

use serde_json::Value;

use crate::config::{Output, ProxyConfigArgs, ProxyConfigCommand};
use crate::table::Table;

/// Runs the command.
pub async fn run(command: ProxyConfigCommand) -> anyhow::Result<i32> {
    let (kind, args) = match command {
        ProxyConfigCommand::Clusters(a) => (Kind::Clusters, a),
        ProxyConfigCommand::Listeners(a) => (Kind::Listeners, a),
        ProxyConfigCommand::Routes(a) => (Kind::Routes, a),
        ProxyConfigCommand::Endpoints(a) => (Kind::Endpoints, a),
        ProxyConfigCommand::Secrets(a) => (Kind::Secrets, a),
    };
    let dump = fetch(&args).await?;
    let out = match args.output {
        Output::Json => serde_json::to_string_pretty(&kind.resources(&dump))? + "\n",
        Output::Table => kind.table(&dump),
    };
    print!("{out}");
    Ok(0)
}

async fn fetch(args: &ProxyConfigArgs) -> anyhow::Result<Value> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("proxyID", &args.proxy)
        .finish();
    let path = format!("/debug/config_dump?{query}");
    let body = crate::admin_client::get(args.admin_addr, &path).await?;
    serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("{path}: {e}"))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Clusters,
    Listeners,
    Routes,
    Endpoints,
    Secrets,
}

impl Kind {
    /// The resources of this kind, as istioctl's `-o json` prints them:
    /// a list of clusters, listeners, route configurations or cluster load
    /// assignments, or the secrets' dump.
    fn resources(self, dump: &Value) -> Value {
        match self {
            Kind::Clusters => Value::Array(clusters(dump).cloned().collect()),
            Kind::Listeners => Value::Array(listeners(dump).cloned().collect()),
            Kind::Routes => Value::Array(routes(dump).cloned().collect()),
            Kind::Endpoints => Value::Array(assignments(dump).cloned().collect()),
            Kind::Secrets => section(dump, "SecretsConfigDump")
                .cloned()
                .unwrap_or(Value::Null),
        }
    }

    fn table(self, dump: &Value) -> String {
        match self {
            Kind::Clusters => clusters_table(dump),
            Kind::Listeners => listeners_table(dump),
            Kind::Routes => routes_table(dump),
            Kind::Endpoints => endpoints_table(dump),
            Kind::Secrets => secrets_table(dump),
        }
    }
}

/// The dump's section of type `envoy.admin.v3.KIND`.
fn section<'a>(dump: &'a Value, kind: &str) -> Option<&'a Value> {
    let ty = format!("envoy.admin.v3.{kind}");
    dump["configs"]
        .as_array()?
        .iter()
        .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(&ty)))
}

/// `section[list][*][field]`: the resources of a section.
fn entries<'a>(
    dump: &'a Value,
    kind: &str,
    list: &str,
    field: &'static str,
) -> impl Iterator<Item = &'a Value> {
    section(dump, kind)
        .and_then(|s| s[list].as_array())
        .into_iter()
        .flatten()
        .map(move |e| field.split('.').fold(e, |v, key| &v[key]))
        .filter(|v| v.is_object())
}

fn clusters(dump: &Value) -> impl Iterator<Item = &Value> {
    entries(
        dump,
        "ClustersConfigDump",
        "dynamic_active_clusters",
        "cluster",
    )
}

fn listeners(dump: &Value) -> impl Iterator<Item = &Value> {
    entries(
        dump,
        "ListenersConfigDump",
        "dynamic_listeners",
        "active_state.listener",
    )
}

fn routes(dump: &Value) -> impl Iterator<Item = &Value> {
    entries(
        dump,
        "RoutesConfigDump",
        "dynamic_route_configs",
        "route_config",
    )
}

fn assignments(dump: &Value) -> impl Iterator<Item = &Value> {
    entries(
        dump,
        "EndpointsConfigDump",
        "dynamic_endpoint_configs",
        "endpoint_config",
    )
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

/// An Istio cluster name, `DIRECTION|PORT|SUBSET|FQDN`, in parts (Istio's
/// `model.ParseSubsetKey`); `None` for other names.
struct SubsetKey<'a> {
    direction: &'a str,
    port: u64,
    subset: &'a str,
    fqdn: &'a str,
}

fn subset_key(name: &str) -> Option<SubsetKey<'_>> {
    let parts: Vec<&str> = name.split('|').collect();
    if parts.len() < 4 {
        return None;
    }
    Some(SubsetKey {
        direction: parts[0],
        port: parts[1].parse().unwrap_or_default(),
        subset: parts[2],
        fqdn: parts[3],
    })
}

/// istioctl's order of clusters and assignments: by host, subset, port, direction.
fn subset_order(name: &str) -> (String, String, u64, String) {
    match subset_key(name) {
        Some(k) => (
            k.fqdn.to_string(),
            k.subset.to_string(),
            k.port,
            k.direction.to_string(),
        ),
        None => (name.to_string(), String::new(), 0, String::new()),
    }
}

/// The Istio object a resource was made from, as `NAME.NAMESPACE`, from the
/// `istio` filter metadata's `config` path istiod writes
/// (`/apis/networking.istio.io/v1/namespaces/NS/destination-rule/NAME`).
fn managed_by(resource: &Value) -> String {
    let Some(path) = resource["metadata"]["filter_metadata"]["istio"]["config"].as_str() else {
        return String::new();
    };
    if !path.starts_with("/apis/networking.istio.io/") {
        return "<unknown>".to_string();
    }
    let pieces: Vec<&str> = path.split('/').collect();
    match pieces.as_slice() {
        [_, _, _, _, _, namespace, _, name] => format!("{name}.{namespace}"),
        _ => String::new(),
    }
}

fn clusters_table(dump: &Value) -> String {
    let mut list: Vec<&Value> = clusters(dump).collect();
    list.sort_by_key(|c| subset_order(str_of(&c["name"])));
    let mut table = Table::new(
        5,
        &[
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE",
        ],
    );
    for c in list {
        let name = str_of(&c["name"]);
        // Absent is protobuf's default, STATIC; a custom `cluster_type`
        // (an aggregate cluster) reads as that default too, as in istioctl.
        let ty = c["type"].as_str().unwrap_or("STATIC").to_string();
        let cells = match subset_key(name) {
            Some(k) => vec![
                k.fqdn.to_string(),
                k.port.to_string(),
                if k.subset.is_empty() { "-" } else { k.subset }.to_string(),
                k.direction.to_string(),
                ty,
                managed_by(c),
            ],
            None => vec![
                name.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                ty,
                managed_by(c),
            ],
        };
        table.row(cells);
    }
    table.render()
}

/// The listener's address and port.
fn listener_address(l: &Value) -> (String, u64) {
    let socket = &l["address"]["socket_address"];
    if socket.is_object() {
        return (
            str_of(&socket["address"]).to_string(),
            u64_of(&socket["port_value"]),
        );
    }
    (str_of(&l["address"]["pipe"]["path"]).to_string(), 0)
}

/// HTTP, TCP or both, as istioctl calls a listener (used to order them).
fn listener_type(l: &Value) -> &'static str {
    let (mut http, mut tcp) = (0, 0);
    for chain in filter_chains(l) {
        for f in chain["filters"].as_array().into_iter().flatten() {
            let ty = str_of(&f["typed_config"]["@type"]);
            if ty.ends_with("HttpConnectionManager") {
                http += 1;
            } else if ty.ends_with("TcpProxy") && !is_black_hole(&f["typed_config"]) {
                tcp += 1;
            }
        }
    }
    match (http > 0, tcp > 0) {
        (true, false) => "HTTP",
        (true, true) => "HTTP+TCP",
        (false, true) => "TCP",
        (false, false) => "UNKNOWN",
    }
}

fn is_black_hole(tcp_proxy: &Value) -> bool {
    str_of(&tcp_proxy["cluster"]) == "BlackHoleCluster"
}

fn filter_chains(l: &Value) -> impl Iterator<Item = &Value> {
    l["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(Some(&l["default_filter_chain"]).filter(|c| c.is_object()))
}

/// istioctl's names for the ALPN lists Istio's filter chains match.
const PROTOCOL_DESCRIPTIONS: [(&str, &[&str]); 4] = [
    (
        "App: HTTP TLS",
        &[
            "http/1.0",
            "http/1.1",
            "h2c",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2",
        ],
    ),
    (
        "App: Istio HTTP Plain",
        &["istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"],
    ),
    ("App: TCP TLS", &["istio-peer-exchange", "istio"]),
    ("App: HTTP", &["http/1.0", "http/1.1", "h2c"]),
];

/// What a filter chain matches, in istioctl's words.
fn chain_match(m: &Value) -> String {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let mut out = Vec::new();
    let sni = strings(&m["server_names"]);
    if !sni.is_empty() {
        out.push(format!("SNI: {}", sni.join(",")));
    }
    if let Some(t) = m["transport_protocol"].as_str().filter(|t| !t.is_empty()) {
        out.push(format!("Trans: {t}"));
    }
    let alpn = strings(&m["application_protocols"]);
    if !alpn.is_empty() {
        match PROTOCOL_DESCRIPTIONS.iter().find(|(_, p)| *p == alpn) {
            Some((description, _)) => out.push(description.to_string()),
            None => out.push(format!("App: {}", alpn.join(","))),
        }
    }
    let port = match &m["destination_port"] {
        Value::Null => String::new(),
        p => format!(":{}", u64_of(p)),
    };
    let prefixes: Vec<String> = m["prefix_ranges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                str_of(&p["address_prefix"]),
                u64_of(&p["prefix_len"])
            )
        })
        .collect();
    if !prefixes.is_empty() {
        out.push(format!("Addr: {}{port}", prefixes.join(",")));
    } else if !port.is_empty() {
        out.push(format!("Addr: *{port}"));
    }
    if out.is_empty() {
        "ALL".to_string()
    } else {
        out.join("; ")
    }
}

/// Where a filter chain sends traffic, in istioctl's words.
fn chain_destination(chain: &Value) -> String {
    for f in chain["filters"].as_array().into_iter().flatten() {
        let config = &f["typed_config"];
        let ty = str_of(&config["@type"]);
        if ty.ends_with("HttpConnectionManager") {
            if config["route_config"].is_object() {
                return inline_routes(&config["route_config"]);
            }
            if let Some(name) = config["rds"]["route_config_name"].as_str() {
                return format!("Route: {name}");
            }
            return "HTTP".to_string();
        }
        if ty.ends_with("TcpProxy") && !is_black_hole(config) {
            let cluster = match config["cluster"].as_str() {
                Some(c) => c.to_string(),
                // Weighted: every cluster it splits over.
                None => config["weighted_clusters"]["clusters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| str_of(&c["name"]))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            if cluster.contains("Cluster") {
                return cluster;
            }
            return format!("Cluster: {cluster}");
        }
    }
    "Non-HTTP/Non-TCP".to_string()
}

/// An inline route configuration, in istioctl's words: its one catch-all
/// cluster, or its virtual hosts' domains and matches.
fn inline_routes(rc: &Value) -> String {
    let hosts = rc["virtual_hosts"].as_array().cloned().unwrap_or_default();
    if let [vh] = hosts.as_slice() {
        let routes = vh["routes"].as_array().cloned().unwrap_or_default();
        let catch_all = vh["domains"] == serde_json::json!(["*"]);
        if let ([r], true) = (routes.as_slice(), catch_all) {
            if let (Some("/"), Some(cluster)) = (
                r["match"]["prefix"].as_str(),
                r["route"]["cluster"].as_str(),
            ) {
                return if cluster.contains("Cluster") {
                    cluster.to_string()
                } else {
                    format!("Cluster: {cluster}")
                };
            }
        }
    }
    let described: Vec<String> = hosts
        .iter()
        .map(|vh| {
            let domains: Vec<&str> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .map(str_of)
                .collect();
            let matches: Vec<String> = vh["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| route_match(&r["match"]))
                .collect();
            if domains == ["*"] {
                matches.join(", ")
            } else {
                format!("{} {}", domains.join("/"), matches.join(", "))
            }
        })
        .collect();
    format!("Inline Route: {}", described.join("; "))
}

/// A route's match, in istioctl's words (headers left out, as it does).
fn route_match(m: &Value) -> String {
    let mut out = Vec::new();
    if let Some(p) = m["prefix"].as_str().filter(|p| !p.is_empty()) {
        out.push(format!("{p}*"));
    }
    if let Some(p) = m["path_separated_prefix"]
        .as_str()
        .filter(|p| !p.is_empty())
    {
        out.push(format!("PathPrefix:{p}"));
    }
    if let Some(p) = m["path"].as_str().filter(|p| !p.is_empty()) {
        out.push(p.to_string());
    }
    if let Some(r) = m["safe_regex"]["regex"].as_str() {
        out.push(format!("regex {r}"));
    }
    out.join(" ")
}

fn listeners_table(dump: &Value) -> String {
    let mut list: Vec<&Value> = listeners(dump).collect();
    list.sort_by_key(|l| {
        let (address, port) = listener_address(l);
        (port, address, listener_type(l))
    });
    let mut table = Table::new(1, &["ADDRESSES", "PORT", "MATCH", "DESTINATION"]);
    for l in list {
        let (address, port) = listener_address(l);
        let mut addresses = vec![address];
        addresses.extend(
            l["additional_addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| str_of(&a["address"]["socket_address"]["address"]).to_string()),
        );
        let mut chains: Vec<(String, String)> = filter_chains(l)
            .map(|c| (chain_match(&c["filter_chain_match"]), chain_destination(c)))
            .collect();
        // istioctl lists a listener's chains by destination, descending.
        chains.sort_by(|a, b| b.1.cmp(&a.1));
        for (matched, destination) in chains {
            table.row(vec![
                addresses.join(","),
                port.to_string(),
                matched,
                destination,
            ]);
        }
    }
    table.render()
}

/// A virtual host's domains, shortened as istioctl does: one domain as it
/// is; else those without a port, without the longer forms of a short
/// name, the first two and a count of the rest.
fn route_domains(domains: &[&str]) -> String {
    match domains {
        [] => return String::new(),
        [one] => return one.to_string(),
        _ => {}
    }
    let without_port: Vec<&str> = domains
        .iter()
        .copied()
        .filter(|d| !d.contains(':') || (d.matches(':').count() > 2 && d.ends_with(']')))
        .collect();
    let longer_form = |h: &str| {
        [".svc.cluster.local", ".svc"].iter().any(|suffix| {
            h.strip_suffix(suffix)
                .is_some_and(|short| without_port.contains(&short))
        })
    };
    let kept: Vec<&str> = without_port
        .iter()
        .copied()
        .filter(|h| !longer_form(h))
        .collect();
    if kept.len() > 2 {
        format!("{} + {} more...", kept[..2].join(", "), kept.len() - 2)
    } else {
        kept.join(", ")
    }
}

/// istioctl's order of route configurations: by number where named by port.
fn route_order(name: &str) -> (u8, u64, String) {
    match name.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, name.to_string()),
    }
}

fn routes_table(dump: &Value) -> String {
    let mut list: Vec<&Value> = routes(dump).collect();
    list.sort_by_key(|r| route_order(str_of(&r["name"])));
    let mut table = Table::new(
        5,
        &["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
    );
    for rc in list {
        let name = str_of(&rc["name"]);
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            let domains: Vec<&str> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .map(str_of)
                .collect();
            let domains = route_domains(&domains);
            let routes = vh["routes"].as_array().cloned().unwrap_or_default();
            for r in &routes {
                if str_of(&r["route"]["cluster"]) == "PassthroughCluster" {
                    continue;
                }
                table.row(vec![
                    name.to_string(),
                    str_of(&vh["name"]).to_string(),
                    domains.clone(),
                    route_match(&r["match"]),
                    managed_by(r),
                ]);
            }
            if routes.is_empty() {
                table.row(vec![
                    name.to_string(),
                    str_of(&vh["name"]).to_string(),
                    domains,
                    "/*".into(),
                    "404".into(),
                ]);
            }
        }
    }
    table.render()
}

fn endpoints_table(dump: &Value) -> String {
    let mut rows: Vec<(String, u64, String, String)> = Vec::new();
    for cla in assignments(dump) {
        let cluster = str_of(&cla["cluster_name"]);
        for locality in cla["endpoints"].as_array().into_iter().flatten() {
            for lb in locality["lb_endpoints"].as_array().into_iter().flatten() {
                let address = &lb["endpoint"]["address"];
                let (host, port) = if address["socket_address"].is_object() {
                    (
                        str_of(&address["socket_address"]["address"]).to_string(),
                        u64_of(&address["socket_address"]["port_value"]),
                    )
                } else if address["pipe"].is_object() {
                    (format!("unix://{}", str_of(&address["pipe"]["path"])), 0)
                } else {
                    ("unknown".to_string(), 0)
                };
                // Absent is protobuf's default.
                let status = lb["health_status"].as_str().unwrap_or("UNKNOWN");
                rows.push((host, port, cluster.to_string(), status.to_string()));
            }
        }
    }
    rows.sort();
    let mut table = Table::new(5, &["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]);
    for (host, port, cluster, status) in rows {
        let endpoint = if port == 0 {
            host
        } else {
            format!("{host}:{port}")
        };
        // Outlier ejections happen inside Envoy; the control plane never
        // sees them.
        table.row(vec![endpoint, status, "-".into(), cluster]);
    }
    table.render()
}

/// What a secret's first certificate says, as istioctl shows it.
#[derive(Debug, Default, PartialEq, Eq)]
struct CertificateFacts {
    /// `CA` or `Cert Chain`.
    kind: String,
    valid: bool,
    serial: String,
    not_after: String,
    not_before: String,
    /// URI and DNS subject alternative names.
    sans: Vec<String>,
}

/// Reads the first certificate of PEM `text`; `None` if there is none.
fn certificate_facts(text: &[u8]) -> Option<CertificateFacts> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(text).ok()?;
    let cert = pem.parse_x509().ok()?;
    let time = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(u.to_string()),
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(CertificateFacts {
        kind: if cert.is_ca() { "CA" } else { "Cert Chain" }.to_string(),
        valid: cert.validity().is_valid(),
        serial: format!("{:032x}", cert.serial),
        not_after: time(cert.validity().not_after),
        not_before: time(cert.validity().not_before),
        sans,
    })
}

/// The bytes of a `DataSource` printed as JSON: inline bytes (base64) or
/// an inline string.
fn data_source_bytes(source: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    if let Some(b64) = source["inline_bytes"].as_str() {
        return base64::engine::general_purpose::STANDARD.decode(b64).ok();
    }
    source["inline_string"]
        .as_str()
        .map(|s| s.as_bytes().to_vec())
}

fn secrets_table(dump: &Value) -> String {
    let secrets: Vec<&Value> = section(dump, "SecretsConfigDump")
        .and_then(|s| s["dynamic_active_secrets"].as_array())
        .into_iter()
        .flatten()
        .collect();
    if secrets.is_empty() {
        return "No active or warming secrets found.\n".to_string();
    }
    let mut table = Table::new(
        5,
        &[
            "RESOURCE NAME",
            "TYPE",
            "STATUS",
            "VALID CERT",
            "SERIAL NUMBER",
            "NOT AFTER",
            "NOT BEFORE",
            "SAN",
        ],
    );
    for s in secrets {
        let secret = &s["secret"];
        // The certificate chain of a workload certificate, else the roots
        // of a validation context; never the private key.
        let pem = data_source_bytes(&secret["tls_certificate"]["certificate_chain"])
            .or_else(|| data_source_bytes(&secret["validation_context"]["trusted_ca"]));
        let facts = pem
            .as_deref()
            .and_then(certificate_facts)
            .unwrap_or_default();
        table.row(vec![
            str_of(&s["name"]).to_string(),
            facts.kind,
            "ACTIVE".into(),
            facts.valid.to_string(),
            facts.serial,
            facts.not_after,
            facts.not_before,
            facts.sans.join(","),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_matches_read_as_istioctl_prints_them() {
        assert_eq!(chain_match(&Value::Null), "ALL");
        assert_eq!(
            chain_match(
                &json!({"destination_port": 9080, "transport_protocol": "tls",
                "application_protocols": ["istio-peer-exchange", "istio"]})
            ),
            "Trans: tls; App: TCP TLS; Addr: *:9080"
        );
        assert_eq!(
            chain_match(
                &json!({"prefix_ranges": [{"address_prefix": "10.0.0.1", "prefix_len": 32}],
                "destination_port": 80, "server_names": ["a.example"]})
            ),
            "SNI: a.example; Addr: 10.0.0.1/32:80"
        );
    }

    #[test]
    fn domains_are_shortened_as_istioctl_does() {
        assert_eq!(
            route_domains(&[
                "reviews.default.svc.cluster.local",
                "reviews.default.svc.cluster.local:9080",
                "reviews",
                "reviews:9080",
                "reviews.default.svc",
                "reviews.default",
            ]),
            "reviews, reviews.default"
        );
        assert_eq!(route_domains(&["*"]), "*");
        assert_eq!(route_domains(&["a", "b", "c", "d"]), "a, b + 2 more...");
    }

    #[test]
    fn istio_config_metadata_names_the_object() {
        let r = json!({"metadata": {"filter_metadata": {"istio": {
            "config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"}}}});
        assert_eq!(managed_by(&r), "reviews.default");
        assert_eq!(managed_by(&json!({})), "");
    }

    #[test]
    fn certificates_are_described_without_their_keys() {
        let mut params =
            rcgen::CertificateParams::new(vec!["reviews.default.svc".to_string()]).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x01, 0x02]));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let facts = certificate_facts(cert.pem().as_bytes()).expect("facts");
        assert_eq!(facts.kind, "Cert Chain");
        assert_eq!(facts.serial, format!("{:032x}", 0x0102));
        assert!(facts.valid);
        assert_eq!(facts.sans, vec!["reviews.default.svc"]);
        assert!(certificate_facts(b"not a certificate").is_none());
    }
}

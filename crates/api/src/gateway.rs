//! Istio `Gateway` (networking.istio.io v1, v1beta1, v1alpha3): the ports a
//! gateway proxy (a node of Istio's `router` type whose labels its
//! `selector` matches) listens on, which hosts each port serves, and its TLS:
//! terminated with a certificate (files, or a Secret by `credentialName`),
//! passed through by SNI, or a redirect to HTTPS.

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;

pub type Gateway = IstioObject<GatewaySpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The gateway proxies (by their labels) that take these servers.
    pub selector: Labels,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Server {
    pub port: GatewayPort,
    /// The address to listen on (`0.0.0.0` when absent).
    pub bind: Option<String>,
    /// `host`, `namespace/host`, `./host` or `*/host`: which VirtualServices'
    /// hosts this server exposes.
    pub hosts: Vec<String>,
    pub tls: Option<ServerTlsSettings>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayPort {
    pub number: i64,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// On a plain HTTP server: answer every request with a redirect to HTTPS.
    pub https_redirect: bool,
    /// PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH or ISTIO_MUTUAL.
    pub mode: Option<String>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    /// A Secret of the gateway proxy's namespace holding the certificate
    /// and key (and, for MUTUAL, the CA that verifies clients).
    pub credential_name: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub min_protocol_version: Option<String>,
    pub max_protocol_version: Option<String>,
    pub cipher_suites: Vec<String>,
}

/// `ServerTlsSettings.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerTlsMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    /// Optional mutual TLS: a client certificate is verified when sent.
    OptionalMutual,
}

impl ServerTlsMode {
    pub fn parse(s: &str) -> Option<ServerTlsMode> {
        Some(match s {
            "PASSTHROUGH" => ServerTlsMode::Passthrough,
            "SIMPLE" => ServerTlsMode::Simple,
            "MUTUAL" => ServerTlsMode::Mutual,
            "AUTO_PASSTHROUGH" => ServerTlsMode::AutoPassthrough,
            "ISTIO_MUTUAL" => ServerTlsMode::IstioMutual,
            "OPTIONAL_MUTUAL" => ServerTlsMode::OptionalMutual,
            _ => return None,
        })
    }
}

impl ServerTlsSettings {
    /// The mode; PASSTHROUGH when missing, as Istio defaults it.
    pub fn mode(&self) -> ServerTlsMode {
        self.mode
            .as_deref()
            .and_then(ServerTlsMode::parse)
            .unwrap_or(ServerTlsMode::Passthrough)
    }
}

/// What a gateway port carries, from its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerProtocol {
    Http,
    /// HTTP over TLS the gateway terminates.
    Https,
    /// TLS, terminated or passed through by SNI; routed by `tls[]` rules.
    Tls,
    Tcp,
    Grpc,
    Http2,
}

impl Server {
    pub fn protocol(&self) -> Option<ServerProtocol> {
        let p = self.port.protocol.as_deref()?.to_ascii_uppercase();
        Some(match p.as_str() {
            "HTTP" => ServerProtocol::Http,
            "HTTPS" => ServerProtocol::Https,
            "TLS" => ServerProtocol::Tls,
            "TCP" => ServerProtocol::Tcp,
            "GRPC" => ServerProtocol::Grpc,
            "HTTP2" => ServerProtocol::Http2,
            _ => return None,
        })
    }

    /// The server carries HTTP requests the gateway routes (plain, or after
    /// terminating TLS).
    pub fn is_http(&self) -> bool {
        match self.protocol() {
            Some(ServerProtocol::Http | ServerProtocol::Grpc | ServerProtocol::Http2) => true,
            Some(ServerProtocol::Https) => self
                .tls
                .as_ref()
                .is_some_and(|t| t.mode() != ServerTlsMode::Passthrough),
            _ => false,
        }
    }

    /// Splits a `hosts` entry into its namespace part (`*` when absent or
    /// `*`, the gateway's own namespace for `.`) and its host.
    pub fn host_parts<'a>(entry: &'a str, gateway_namespace: &'a str) -> (&'a str, &'a str) {
        match entry.split_once('/') {
            Some((".", host)) => (gateway_namespace, host),
            Some((ns, host)) => (ns, host),
            None => ("*", entry),
        }
    }
}

impl Validator {
    /// Istio's rules for a Gateway: servers with hosts, known protocols,
    /// and TLS where the protocol needs it, with its certificate.
    pub(crate) fn gateway(&mut self, gw: &GatewaySpec) {
        if gw.servers.is_empty() {
            self.err("spec.servers", "a Gateway needs at least one server");
        }
        for (i, server) in gw.servers.iter().enumerate() {
            let at = format!("spec.servers[{i}]");
            self.port(format!("{at}.port.number"), server.port.number);
            match &server.port.protocol {
                None => self.err(format!("{at}.port.protocol"), "a server needs a protocol"),
                Some(p) if server.protocol().is_none() => self.err(
                    format!("{at}.port.protocol"),
                    format!("{p:?} is not one of HTTP, HTTPS, GRPC, HTTP2, TLS, TCP"),
                ),
                Some(_) => {}
            }
            if server.hosts.is_empty() {
                self.err(format!("{at}.hosts"), "a server needs at least one host");
            }
            for (j, entry) in server.hosts.iter().enumerate() {
                let (ns, host) = Server::host_parts(entry, ".");
                if ns.is_empty() || host.is_empty() || host.contains('/') {
                    self.err(
                        format!("{at}.hosts[{j}]"),
                        format!("{entry:?} is not host, namespace/host, ./host or */host"),
                    );
                } else if host != "*" {
                    self.host(format!("{at}.hosts[{j}]"), host, true);
                }
            }
            if let Some(bind) = &server.bind {
                self.address(format!("{at}.bind"), bind, true);
            }
            self.server_tls(&at, server);
        }
    }

    fn server_tls(&mut self, at: &str, server: &Server) {
        let needs_tls = matches!(
            server.protocol(),
            Some(ServerProtocol::Https | ServerProtocol::Tls)
        );
        let Some(tls) = &server.tls else {
            if needs_tls {
                self.err(
                    format!("{at}.tls"),
                    "a server of protocol HTTPS or TLS needs tls settings",
                );
            }
            return;
        };
        if tls.https_redirect && !needs_tls {
            // A redirect alone on a plain HTTP server: nothing else to check.
            if tls.mode.is_none() {
                return;
            }
        }
        let mode = match tls.mode.as_deref() {
            None => ServerTlsMode::Passthrough,
            Some(m) => match ServerTlsMode::parse(m) {
                Some(mode) => mode,
                None => {
                    self.err(
                        format!("{at}.tls.mode"),
                        format!("{m:?} is not one of PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL"),
                    );
                    return;
                }
            },
        };
        let terminates = matches!(
            mode,
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
        );
        let files = tls.server_certificate.is_some() || tls.private_key.is_some();
        if terminates && tls.credential_name.is_none() {
            for (field, value) in [
                ("serverCertificate", &tls.server_certificate),
                ("privateKey", &tls.private_key),
            ] {
                if value.as_deref().is_none_or(str::is_empty) {
                    self.err(
                        format!("{at}.tls.{field}"),
                        format!("{mode:?} TLS needs {field} or credentialName"),
                    );
                }
            }
        }
        if tls.credential_name.is_some() && files {
            self.err(
                format!("{at}.tls.credentialName"),
                "credentialName and certificate files are mutually exclusive",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    fn gateway(servers: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: web, namespace: shop}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}")
    }

    #[test]
    fn servers_as_istio_accepts_them() {
        let ok = gateway("  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*.example.com\", \"shop/web.example.com\", \"./a.example.com\"]\n    tls: {httpsRedirect: true}\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: web-cert}\n  - port: {number: 8443, name: tls, protocol: TLS}\n    hosts: [db.example.com]\n    tls: {mode: PASSTHROUGH}\n");
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
    }

    #[test]
    fn bad_servers_name_their_field() {
        let bad = gateway("  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: []\n  - port: {number: 0, protocol: QUIC}\n    hosts: [a/b/c]\n  - port: {number: 8443, protocol: HTTPS}\n    hosts: [x.example.com]\n    tls: {mode: MUTUAL}\n");
        let got = problems(&bad);
        for field in [
            "spec.servers[0].hosts",
            "spec.servers[0].tls",
            "spec.servers[1].port.number",
            "spec.servers[1].port.protocol",
            "spec.servers[1].hosts[0]",
            "spec.servers[2].tls.serverCertificate",
            "spec.servers[2].tls.privateKey",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(field)),
                "{field} missing in {got:?}"
            );
        }
    }
}

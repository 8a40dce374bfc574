//! Istio `PeerAuthentication` (security.istio.io v1 and v1beta1): whether a
//! workload's sidecar takes mutual TLS, plaintext, or both, on each port.
//! Mesh-wide in the root namespace, namespace-wide without a selector, or
//! for the workloads its selector matches.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;

pub type PeerAuthentication = IstioObject<PeerAuthenticationSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    pub selector: Option<LabelSelector>,
    pub mtls: Option<Mtls>,
    /// Per-port modes, keyed by the workload's port number (as text in YAML).
    pub port_level_mtls: BTreeMap<String, Mtls>,
}

/// `matchLabels`, as Istio's `WorkloadSelector` in the security API.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: Labels,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Mtls {
    pub mode: Option<String>,
}

/// What a port of a workload accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MtlsMode {
    /// Inherit from the policy above (the next wider one).
    Unset,
    /// Plaintext only.
    Disable,
    /// Mutual TLS and plaintext side by side.
    Permissive,
    /// Mutual TLS only.
    Strict,
}

impl MtlsMode {
    pub fn parse(s: &str) -> Option<MtlsMode> {
        match s {
            "UNSET" => Some(MtlsMode::Unset),
            "DISABLE" => Some(MtlsMode::Disable),
            "PERMISSIVE" => Some(MtlsMode::Permissive),
            "STRICT" => Some(MtlsMode::Strict),
            _ => None,
        }
    }
}

impl Mtls {
    /// The mode, `Unset` when none is given (or it is invalid: validation
    /// keeps such an object out).
    pub fn mode(&self) -> MtlsMode {
        self.mode
            .as_deref()
            .and_then(MtlsMode::parse)
            .unwrap_or(MtlsMode::Unset)
    }
}

impl PeerAuthenticationSpec {
    /// The mode for the whole workload.
    pub fn mode(&self) -> MtlsMode {
        self.mtls.as_ref().map_or(MtlsMode::Unset, Mtls::mode)
    }

    /// The per-port modes, by port number.
    pub fn port_modes(&self) -> impl Iterator<Item = (u16, MtlsMode)> + '_ {
        self.port_level_mtls
            .iter()
            .filter_map(|(port, m)| Some((port.parse::<u16>().ok()?, m.mode())))
    }

    /// Match labels, when the policy selects workloads.
    pub fn match_labels(&self) -> Option<&Labels> {
        self.selector
            .as_ref()
            .map(|s| &s.match_labels)
            .filter(|l| !l.is_empty())
    }
}

impl Validator {
    pub(crate) fn peer_authentication(&mut self, pa: &PeerAuthenticationSpec) {
        let check_mode = |v: &mut Validator, field: String, m: &Mtls| {
            if let Some(mode) = &m.mode {
                if MtlsMode::parse(mode).is_none() {
                    v.err(
                        field,
                        format!("{mode:?} is not one of UNSET, DISABLE, PERMISSIVE, STRICT"),
                    );
                }
            }
        };
        if let Some(m) = &pa.mtls {
            check_mode(self, "spec.mtls.mode".into(), m);
        }
        for (port, m) in &pa.port_level_mtls {
            let field = format!("spec.portLevelMtls.{port}");
            match port.parse::<i64>() {
                Ok(n) => self.port(field.clone(), n),
                Err(_) => self.err(field.clone(), format!("{port:?} is not a port number")),
            }
            check_mode(self, format!("{field}.mode"), m);
        }
        // Istio: port-level settings need a selector (ports are a workload's).
        if !pa.port_level_mtls.is_empty() && pa.match_labels().is_none() {
            self.err(
                "spec.portLevelMtls",
                "needs a selector: ports belong to the workloads it selects",
            );
        }
        if let Some(sel) = &pa.selector {
            self.label_selector(sel);
        }
    }

    /// `spec.selector` of the security kinds: label names Kubernetes takes.
    pub(crate) fn label_selector(&mut self, sel: &LabelSelector) {
        for key in sel.match_labels.keys() {
            let name = key.rsplit('/').next().unwrap_or(key);
            if let Err(reason) = check_label_name(name) {
                self.err(format!("spec.selector.matchLabels.{key}"), reason);
            }
        }
    }
}

/// Label names may also hold `.` and `_` inside.
fn check_label_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a label name"))
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    fn pa(spec: &str) -> String {
        format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: shop}}\nspec:\n{spec}")
    }

    #[test]
    fn modes_selectors_and_ports_are_valid() {
        let yaml = pa("  selector: {matchLabels: {app: cart, app.kubernetes.io/name: cart}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n");
        assert!(problems(&yaml).is_empty(), "{:?}", problems(&yaml));
        let beta = yaml.replace("security.istio.io/v1", "security.istio.io/v1beta1");
        assert!(problems(&beta).is_empty(), "{:?}", problems(&beta));
    }

    #[test]
    fn bad_modes_ports_and_port_levels_without_selector_are_named() {
        assert_eq!(
            problems(&pa("  mtls: {mode: strict}\n  portLevelMtls:\n    http: {mode: DISABLE}\n    70000: {mode: OFF}\n")),
            vec![
                "spec.mtls.mode: \"strict\" is not one of UNSET, DISABLE, PERMISSIVE, STRICT",
                "spec.portLevelMtls.70000: port 70000 is out of range 1-65535",
                "spec.portLevelMtls.70000.mode: \"OFF\" is not one of UNSET, DISABLE, PERMISSIVE, STRICT",
                "spec.portLevelMtls.http: \"http\" is not a port number",
                "spec.portLevelMtls: needs a selector: ports belong to the workloads it selects",
            ]
        );
    }
}

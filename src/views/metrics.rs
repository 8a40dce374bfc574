//! What the views task measures: the changes it takes in (istiod's registry
//! and config events, push triggers and inbound updates), how long a batch
//! waits and translates, what the model holds, and the snapshots it
//! installs. Written by the task in `super`; rendered at `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use shmesh_api::Kind;
use shmesh_model::{Change, Model};
use shmesh_xds::metrics::IstiodCounter;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    r#type: &'static str,
    event: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Debug)]
pub struct ViewMetrics {
    /// Snapshots installed for views.
    pub translations: Counter,
    /// Warnings the model's analysis raised.
    pub config_warnings: Counter,
    reg_events: Family<EventLabels, IstiodCounter>,
    cfg_events: Family<EventLabels, IstiodCounter>,
    triggers: Family<TypeLabel, IstiodCounter>,
    inbound: Family<TypeLabel, IstiodCounter>,
    services: Gauge,
    virtual_services: Gauge,
    debounce: Histogram,
    translate: Histogram,
    internal_errors: IstiodCounter,
}

impl ViewMetrics {
    pub fn new(registry: &mut Registry) -> ViewMetrics {
        let m = ViewMetrics {
            translations: Counter::default(),
            config_warnings: Counter::default(),
            reg_events: Family::default(),
            cfg_events: Family::default(),
            triggers: Family::default(),
            inbound: Family::default(),
            services: Gauge::default(),
            virtual_services: Gauge::default(),
            // istiod's buckets.
            debounce: Histogram::new([0.01, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0]),
            translate: Histogram::new([0.01, 0.1, 0.5, 1.0, 3.0, 5.0]),
            internal_errors: IstiodCounter::default(),
        };
        registry.register(
            "shmesh_translations",
            "Snapshots installed for proxy views",
            m.translations.clone(),
        );
        registry.register(
            "shmesh_config_warnings",
            "Warnings the analysis of the configuration raised",
            m.config_warnings.clone(),
        );
        registry.register(
            "pilot_k8s_reg_events",
            "Service registry objects (Services, EndpointSlices, Pods, Namespaces, Secrets) added, updated or deleted, from files or Kubernetes (a counter)",
            m.reg_events.clone(),
        );
        registry.register(
            "pilot_k8s_cfg_events",
            "Istio and Gateway API objects added, updated or deleted, from files or Kubernetes (a counter)",
            m.cfg_events.clone(),
        );
        registry.register(
            "pilot_push_triggers",
            "Changes that led to a push, by reason (endpoint, service, config, secret, namespace) (a counter)",
            m.triggers.clone(),
        );
        registry.register(
            "pilot_inbound_updates",
            "Updates received, by type (config, eds, svc, svcdelete) (a counter)",
            m.inbound.clone(),
        );
        registry.register(
            "pilot_services",
            "Services known (Kubernetes Services and ServiceEntry hosts)",
            m.services.clone(),
        );
        registry.register(
            "pilot_virt_services",
            "VirtualServices known",
            m.virtual_services.clone(),
        );
        registry.register(
            "pilot_debounce_time",
            "Seconds from the first change of a batch arriving to the batch's views being translated and handed to the streams",
            m.debounce.clone(),
        );
        registry.register(
            "pilot_pushcontext_init_seconds",
            "Seconds a batch of changes took to apply and translate",
            m.translate.clone(),
        );
        registry.register(
            "pilot_total_xds_internal_errors",
            "Errors of shmesh's own making while building what proxies receive (a certificate it could not issue) (a counter)",
            m.internal_errors.clone(),
        );
        m
    }

    /// Counts `changes` before `model` applies them: added or updated by
    /// whether the model holds the object yet.
    pub fn changes(&self, model: &Model, changes: &[Change]) {
        for change in changes {
            let (key, event) = match change {
                Change::Upsert(key, _, _) if model.contains(key) => (key, "update"),
                Change::Upsert(key, _, _) => (key, "add"),
                Change::Delete(key) => (key, "delete"),
            };
            let (family, r#type, trigger, inbound) = match key.kind {
                Kind::Service => (&self.reg_events, "Services", "service", "svc"),
                Kind::EndpointSlice => (&self.reg_events, "EndpointSlice", "endpoint", "eds"),
                Kind::Pod => (&self.reg_events, "Pods", "endpoint", "eds"),
                Kind::Namespace => (&self.reg_events, "Namespaces", "namespace", "config"),
                Kind::Secret => (&self.reg_events, "Secrets", "secret", "config"),
                kind => (&self.cfg_events, kind.as_str(), "config", "config"),
            };
            family.get_or_create(&EventLabels { r#type, event }).inc();
            self.triggers
                .get_or_create(&TypeLabel { r#type: trigger })
                .inc();
            let inbound = match (inbound, event) {
                ("svc", "delete") => "svcdelete",
                (other, _) => other,
            };
            self.inbound
                .get_or_create(&TypeLabel { r#type: inbound })
                .inc();
        }
    }

    /// What the model holds after a batch.
    pub fn model(&self, model: &Model) {
        self.services.set(model.services().len() as i64);
        self.virtual_services
            .set(model.virtual_services().count() as i64);
    }

    /// A batch whose first change arrived `waited` ago was translated in `took`.
    pub fn batch(&self, waited: Duration, took: Duration) {
        self.debounce.observe(waited.as_secs_f64());
        self.translate.observe(took.as_secs_f64());
    }

    pub fn internal_error(&self) {
        self.internal_errors.inc();
    }
}

//! shmesh: an Envoy xDS control plane that speaks Istio's traffic API.
//!
//! Data flows one way: `sources` → `model` → `translate` → `cache` → `xds`,
//! with `admin` reading the cache for health, metrics and debug dumps.

pub mod cache;
pub mod metrics;
pub mod model;
pub mod translate;
pub mod translator;
pub mod xds;

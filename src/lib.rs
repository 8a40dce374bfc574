//! shmesh: an Envoy xDS control plane that speaks Istio's traffic API.
//!
//! Data flows one way: `sources` → `model` → `translate` → `cache` → `xds`,
//! with `admin` reading the cache for health, metrics and debug dumps.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod blocking;
pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod fd_limit;
pub mod jsonpb;
pub mod meshgen;
pub mod metrics;
pub mod model;
pub mod protobuf;
pub mod rollout;
pub mod sources;
pub mod text;
pub mod translate;
pub mod translator;
pub mod xds;

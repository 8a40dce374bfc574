//! shmesh: an Envoy xDS control plane that speaks Istio's traffic API.
//!
//! This crate is the wiring around the workspace's libraries: data flows one
//! way, from `sources` (files, Kubernetes) through `shmesh_api` (parsing and
//! validation) into `shmesh_model`, then the `views` task runs
//! `shmesh_translate` into `shmesh_cache` snapshots that `shmesh_xds` streams
//! to proxies; `admin` and `rollout` read the views and the streams'
//! registry; `webhook` answers the API server's admission reviews with the
//! checks of `shmesh_api`; `proxy_status` and `proxy_config` are the commands
//! that ask a running shmesh's admin server about its proxies.
//! docs/architecture.md draws the whole map.

pub mod admin;
pub mod admin_client;
pub mod allocator;
pub mod app;
pub mod blocking;
pub mod bootstrap;
pub mod ca;
pub mod ca_service;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod fd_limit;
pub mod identity;
pub mod jsonpb;
pub mod kubernetes;
pub mod metrics;
pub mod pem;
pub mod process_stats;
pub mod proxy_config;
pub mod proxy_status;
pub mod rollout;
pub mod sources;
pub mod state;
pub mod table;
pub mod views;
pub mod webhook;

//! The mesh generator behind `shmesh-loadgen gen-mesh`: synthetic meshes
//! written as Kubernetes and Istio manifests, and the timed changes a fleet
//! run makes to them. The simulator itself is the binary (`main.rs`).

pub mod meshgen;

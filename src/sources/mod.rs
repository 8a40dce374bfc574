//! Sources turn the outside world (files on disk, the Kubernetes API) into
//! model changes for the translator.

pub mod files;
pub mod kube;

//! Sources turn the outside world (files on disk, later the Kubernetes API)
//! into model changes for the translator.

pub mod files;

//! Sources turn the outside world (files on disk, the Kubernetes API) into
//! model changes. Each sends `Update`s down a channel; the views task task
//! holds the other end. Sources know nothing of what happens downstream.

pub mod files;
pub mod kube;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use shmesh_api::Problem;
use shmesh_model::Change;

/// What a source reports.
#[derive(Debug)]
pub enum Update {
    /// Objects added, changed or deleted.
    Changes(Vec<Change>),
    /// The source has delivered its complete initial state.
    Synced(&'static str),
    /// Problems the source found in its input (replacing its earlier report).
    Problems(&'static str, Vec<Problem>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReadLabel {
    /// `files`: only the files changed; `rescan`: every directory.
    how: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WatchLabels {
    kind: &'static str,
    event: &'static str,
}

/// What the sources take in. Written by `files` and `kube`; rendered at
/// `/metrics`.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Objects from the cluster rejected by validation.
    pub config_errors: Counter,
    file_events: Counter,
    file_reads: Family<ReadLabel, Counter>,
    watch_events: Family<WatchLabels, Counter>,
}

impl SourceMetrics {
    pub fn new(registry: &mut Registry) -> SourceMetrics {
        let m = SourceMetrics::default();
        registry.register(
            "shmesh_config_errors",
            "Objects from the cluster rejected as invalid (the last good version keeps serving)",
            m.config_errors.clone(),
        );
        registry.register(
            "shmesh_config_file_events",
            "Change events the file system reported on the config directories",
            m.file_events.clone(),
        );
        registry.register(
            "shmesh_config_file_reads",
            "Times the config directories were read: only the files changed, or every directory",
            m.file_reads.clone(),
        );
        registry.register(
            "shmesh_kubernetes_watch_events",
            "Events of the Kubernetes watches, by kind and event (list: a list began, listed: an object listed, listed_all: a list ended, apply, delete)",
            m.watch_events.clone(),
        );
        m
    }

    /// The file system reported `n` changed paths.
    pub fn file_events(&self, n: usize) {
        self.file_events.inc_by(n as u64);
    }

    /// The config directories were read: the files named (`rescan` false) or all.
    pub fn files_read(&self, rescan: bool) {
        let how = if rescan { "rescan" } else { "files" };
        self.file_reads.get_or_create(&ReadLabel { how }).inc();
    }

    /// A Kubernetes watch of `kind` delivered an `event`.
    pub fn watch_event(&self, kind: shmesh_api::Kind, event: &'static str) {
        self.watch_events
            .get_or_create(&WatchLabels {
                kind: kind.as_str(),
                event,
            })
            .inc();
    }
}

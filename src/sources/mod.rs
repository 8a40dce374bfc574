//! Sources turn the outside world (files on disk, the Kubernetes API) into
//! model changes. Each sends `Update`s down a channel; the views task task
//! holds the other end. Sources know nothing of what happens downstream.

pub mod files;
pub mod kube;

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

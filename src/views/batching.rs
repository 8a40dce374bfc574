//! When the views task applies changes: the sources' updates and the clock
//! in, work out. No I/O and no clock of its own, so tables of inputs and
//! instants test it (`tests` below); the task in `super` only moves
//! messages and sleeps until `deadline()`.
//!
//! - Changes wait in one batch until the debounce window that the first of
//!   them opened closes, so a burst of edits is applied once.
//! - Nothing is served before every source has delivered its first complete
//!   state; the update that completes it applies everything known at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shmesh_model::Change;

/// What the task must do now.
#[derive(Debug)]
pub enum Work {
    /// Apply these changes to the model. Views are updated only once
    /// serving (`Batching::serving`).
    Apply(Vec<Change>),
    /// The last source has synced: apply everything known, then build every
    /// view and start serving.
    Start(Vec<Change>),
}

#[derive(Debug)]
pub struct Batching {
    debounce: Duration,
    /// Sources that have not yet delivered their first complete state.
    pending_sources: BTreeSet<&'static str>,
    serving: bool,
    batch: Vec<Change>,
    /// When the current batch is due; `None` when there is none.
    deadline: Option<Instant>,
}

impl Batching {
    /// `sources` names every source that must sync before anything is served.
    pub fn new(sources: BTreeSet<&'static str>, debounce: Duration) -> Batching {
        Batching {
            debounce,
            serving: sources.is_empty(),
            pending_sources: sources,
            batch: Vec::new(),
            deadline: None,
        }
    }

    /// Whether views are built and served.
    pub fn serving(&self) -> bool {
        self.serving
    }

    /// When `due` next has work; the task sleeps until then.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Changes from a source, at `now`: they join the batch, which is due
    /// one debounce after the change that opened it.
    pub fn changes(&mut self, changes: Vec<Change>, now: Instant) {
        self.batch.extend(changes);
        if self.deadline.is_none() {
            self.deadline = Some(now + self.debounce);
        }
    }

    /// `source` has delivered its complete state. The last one to do so
    /// starts serving with everything known, without waiting for the batch.
    pub fn synced(&mut self, source: &str) -> Option<Work> {
        self.pending_sources.remove(source);
        if self.serving || !self.pending_sources.is_empty() {
            return None;
        }
        self.serving = true;
        self.deadline = None;
        Some(Work::Start(std::mem::take(&mut self.batch)))
    }

    /// The batch, once its deadline has passed at `now`.
    pub fn due(&mut self, now: Instant) -> Option<Work> {
        if self.deadline.is_none_or(|d| d > now) {
            return None;
        }
        self.deadline = None;
        Some(Work::Apply(std::mem::take(&mut self.batch)))
    }
}

#[cfg(test)]
mod tests {
    use shmesh_api::{Kind, ObjectKey};

    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(100);

    /// One input to the core, at a time in milliseconds from the start.
    enum Event {
        /// Changes to the named Services (deletions: the kind is all that matters).
        Changes(u64, &'static [&'static str]),
        Synced(&'static str),
        /// The task wakes (its sleep ended, or another input came in).
        Wake(u64),
    }

    /// What the core answered to an event: nothing, or `Apply` or `Start`
    /// with the names in the batch.
    #[derive(Debug, PartialEq)]
    enum Out {
        Nothing,
        Apply(Vec<String>),
        Start(Vec<String>),
    }

    fn delete(name: &str) -> Change {
        Change::Delete(ObjectKey {
            kind: Kind::Service,
            namespace: "default".into(),
            name: name.into(),
        })
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Delete(key) => key.name.clone(),
                Change::Upsert(key, _, _) => key.name.clone(),
            })
            .collect()
    }

    /// Runs `events` through a core waiting for `sources`; returns what it
    /// answered to each event and its deadline after it (ms from the start).
    fn run(sources: &[&'static str], events: &[Event]) -> Vec<(Out, Option<u64>)> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut core = Batching::new(sources.iter().copied().collect(), DEBOUNCE);
        events
            .iter()
            .map(|event| {
                let work = match event {
                    Event::Changes(t, services) => {
                        core.changes(services.iter().map(|s| delete(s)).collect(), at(*t));
                        None
                    }
                    Event::Synced(source) => core.synced(source),
                    Event::Wake(t) => core.due(at(*t)),
                };
                let out = match work {
                    None => Out::Nothing,
                    Some(Work::Apply(c)) => Out::Apply(names(&c)),
                    Some(Work::Start(c)) => Out::Start(names(&c)),
                };
                let deadline = core
                    .deadline()
                    .map(|d| d.duration_since(start).as_millis() as u64);
                (out, deadline)
            })
            .collect()
    }

    fn apply(names: &[&str]) -> Out {
        Out::Apply(names.iter().map(|n| n.to_string()).collect())
    }

    fn start(names: &[&str]) -> Out {
        Out::Start(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn a_burst_is_applied_once_when_the_window_it_opened_closes() {
        use Event::*;
        assert_eq!(
            run(
                &[],
                &[
                    Changes(0, &["a"]),
                    Wake(50),
                    // A later change does not push the deadline back.
                    Changes(60, &["b"]),
                    Wake(99),
                    Wake(100),
                    Wake(150),
                    Changes(170, &["c"]),
                    Wake(270),
                ]
            ),
            [
                (Out::Nothing, Some(100)),
                (Out::Nothing, Some(100)),
                (Out::Nothing, Some(100)),
                (Out::Nothing, Some(100)),
                (apply(&["a", "b"]), None),
                (Out::Nothing, None),
                (Out::Nothing, Some(270)),
                (apply(&["c"]), None),
            ]
        );
    }

    #[test]
    fn serving_starts_when_the_last_source_syncs_with_everything_known() {
        use Event::*;
        let out = run(
            &["files", "kubernetes"],
            &[
                Changes(0, &["a"]),
                Synced("files"),
                Changes(20, &["b"]),
                Synced("kubernetes"),
                // The window the changes opened is closed by the start.
                Wake(100),
                Synced("files"),
            ],
        );
        assert_eq!(
            out,
            [
                (Out::Nothing, Some(100)),
                (Out::Nothing, Some(100)),
                (Out::Nothing, Some(100)),
                (start(&["a", "b"]), None),
                (Out::Nothing, None),
                // A source that syncs again (a relist) starts nothing.
                (Out::Nothing, None),
            ]
        );
    }

    #[test]
    fn batches_due_before_serving_are_applied_to_the_model_alone() {
        use Event::*;
        let mut core = Batching::new(["kubernetes"].into_iter().collect(), DEBOUNCE);
        assert!(!core.serving());
        let out = run(
            &["kubernetes"],
            &[
                Changes(0, &["a"]),
                Wake(100),
                Changes(150, &["b"]),
                Synced("kubernetes"),
            ],
        );
        assert_eq!(
            out,
            [
                (Out::Nothing, Some(100)),
                (apply(&["a"]), None),
                (Out::Nothing, Some(250)),
                (start(&["b"]), None),
            ]
        );
        assert!(core.synced("kubernetes").is_some());
        assert!(core.serving());
    }

    #[test]
    fn with_no_source_to_wait_for_it_serves_from_the_start() {
        let mut core = Batching::new(BTreeSet::new(), DEBOUNCE);
        assert!(core.serving());
        assert!(core.synced("files").is_none());
    }
}

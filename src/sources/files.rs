//! Objects from files: every `.yaml`, `.yml` and `.json` below the configured
//! directories (recursively, multi-document, hidden entries skipped), watched
//! for changes.
//!
//! A Kubernetes ConfigMap volume updates by swapping its hidden `..data`
//! symlink, so the whole directory is watched and rescanned, never single
//! inodes. A rescan parses only files whose content changed. An object that
//! fails validation is reported and its last good version stays; an object
//! whose file is gone is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::Update;
use crate::metrics::Metrics;
use crate::state::LastGood;
use shmesh_api::parse::{parse_text, parse_text_keeping, Outcome, Parsed};
use shmesh_api::{Object, ObjectKey, Problem};
use shmesh_model::Change;

pub const SOURCE: &str = "files";

/// How often directories are rescanned even without a change event.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Events arriving this close together are one change (an editor's save, a
/// ConfigMap swap). Short: it adds to every change's latency, and changes
/// that straddle it are still applied together by the views task's debounce.
const SETTLE: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
struct FileState {
    hash: u64,
    /// Objects of this file currently in force (last good versions included).
    objects: BTreeMap<ObjectKey, Parsed>,
    problems: Vec<Problem>,
}

/// The state of all watched directories.
#[derive(Debug, Default)]
pub struct FileSet {
    dirs: Vec<PathBuf>,
    files: BTreeMap<PathBuf, FileState>,
    /// Objects in force, and the file that holds each.
    current: BTreeMap<ObjectKey, (PathBuf, Parsed)>,
    /// Objects defined again in a later file (the first file wins).
    duplicates: BTreeMap<(ObjectKey, PathBuf), Problem>,
    /// Problems already logged, so each is logged once.
    logged: BTreeSet<String>,
    /// Serving proxies (not `shmesh validate`): an object invalid from the
    /// start is reported with the version served for it, if any.
    serving: bool,
    /// Last good versions kept across restarts (`--state-dir`).
    last_good: Option<LastGood>,
}

impl FileSet {
    pub fn new(dirs: Vec<PathBuf>) -> FileSet {
        FileSet {
            dirs,
            ..Default::default()
        }
    }

    /// The file set of a serving shmesh: it keeps the last good version of
    /// each object under `state_dir`, and serves it for an object that is
    /// invalid when this process first reads it.
    pub fn serving(mut self, state_dir: Option<&Path>) -> FileSet {
        self.serving = true;
        self.last_good = state_dir.map(|d| LastGood::open(d, SOURCE));
        self
    }

    /// Rescans the directories; returns the changes since the last scan.
    /// Objects are compared only when a file's content changed, or a file
    /// came or went: the periodic rescan of an unchanged mesh reads and
    /// hashes its files and stops there.
    pub fn rescan(&mut self) -> Vec<Change> {
        let mut seen = BTreeSet::new();
        let mut unreadable = Vec::new();
        let mut changed = false;
        for dir in self.dirs.clone() {
            let mut paths = Vec::new();
            if let Err(e) = collect(&dir, &mut paths) {
                // Out of file descriptors, a permission hiccup: not a sign the
                // files are gone. What was read from this directory stays.
                warn!(dir = %dir.display(), error = %e, "cannot read config directory; keeping what it held");
                unreadable.push(dir.clone());
            }
            for path in paths {
                seen.insert(path.clone());
                changed |= self.load(&path);
            }
        }
        let held = self.files.len();
        self.files
            .retain(|p, _| seen.contains(p) || unreadable.iter().any(|d| p.starts_with(d)));
        if !changed && self.files.len() == held {
            return Vec::new();
        }
        self.diff()
    }

    /// The config files among `paths`, if every path is one (or a hidden
    /// temporary file beside one): then only they need reading. `None` when
    /// a directory, a ConfigMap's `..data` swap or anything else moved, which
    /// needs a full rescan.
    fn files_only(&self, paths: BTreeSet<PathBuf>) -> Option<Vec<PathBuf>> {
        let mut files = Vec::new();
        for path in paths {
            let dir = self.dirs.iter().find(|d| path.starts_with(d))?;
            let rel = path.strip_prefix(dir).ok()?;
            let hidden_dir = rel.parent().is_some_and(|p| {
                p.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            });
            let name = rel.file_name()?.to_string_lossy();
            if hidden_dir || name.starts_with("..") {
                return None;
            }
            if name.starts_with('.') {
                // An editor's or a test's temporary file: what it becomes arrives as its own event.
                continue;
            }
            if ![".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                return None;
            }
            files.push(path);
        }
        Some(files)
    }

    /// Reads only `paths` (config files that changed, appeared or went);
    /// returns the changes.
    pub fn reload(&mut self, paths: &[PathBuf]) -> Vec<Change> {
        // Only objects these files held or hold can change: compare those,
        // not every object of every file.
        let mut keys = BTreeSet::new();
        for path in paths {
            let held = |set: &FileSet| -> Vec<ObjectKey> {
                set.files
                    .get(path)
                    .map(|f| f.objects.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let before = held(self);
            let changed = match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => self.load(path),
                Ok(_) => false,
                Err(_) => self.files.remove(path).is_some(),
            };
            if changed {
                keys.extend(before);
                keys.extend(held(self));
            }
        }
        if keys.is_empty() {
            return Vec::new();
        }
        self.diff_keys(&keys, paths)
    }

    /// `diff` for `keys` only, after `reloaded` were read again: where each
    /// now comes from (the first file holding it), and whether that differs
    /// from what is in force. Only the files that held a key (the one in
    /// force and its duplicates) or were reloaded can hold it now, so only
    /// they are asked, not every file of the mesh.
    fn diff_keys(&mut self, keys: &BTreeSet<ObjectKey>, reloaded: &[PathBuf]) -> Vec<Change> {
        let candidates: Vec<BTreeSet<PathBuf>> = keys
            .iter()
            .map(|key| {
                let mut paths: BTreeSet<PathBuf> = reloaded.iter().cloned().collect();
                paths.extend(self.current.get(key).map(|(path, _)| path.clone()));
                let duplicated = self.duplicates.range((key.clone(), PathBuf::new())..);
                paths.extend(
                    duplicated
                        .take_while(|((k, _), _)| k == key)
                        .map(|((_, path), _)| path.clone()),
                );
                paths
            })
            .collect();
        let mut changes = Vec::new();
        self.duplicates.retain(|(k, _), _| !keys.contains(k));
        for (key, paths) in keys.iter().zip(candidates) {
            // In path order, as a full rescan meets the files.
            let mut holders = paths.iter().filter_map(|path| {
                let held = self.files.get(path)?.objects.get(key)?;
                Some((path, held))
            });
            let winner = holders.next().map(|(path, p)| (path.clone(), p.clone()));
            if let Some((first, _)) = &winner {
                let first = first.display().to_string();
                for (path, parsed) in holders {
                    self.duplicates
                        .insert((key.clone(), path.clone()), duplicate(key, parsed, &first));
                }
            }
            match winner {
                Some((path, parsed)) => {
                    changes.extend(upsert_if_changed(&self.current, key, &parsed));
                    self.current.insert(key.clone(), (path, parsed));
                }
                None => {
                    if self.current.remove(key).is_some() {
                        if let Some(store) = self.last_good.as_mut() {
                            store.forget(key);
                        }
                        changes.push(Change::Delete(key.clone()));
                    }
                }
            }
        }
        self.log_problems();
        changes
    }

    /// Reads one file; whether its content differs from what was held.
    fn load(&mut self, path: &Path) -> bool {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Mid-swap or unreadable: keep what the file held.
                debug!(path = %path.display(), error = %e, "cannot read; keeping last good objects");
                return false;
            }
        };
        let hash = xxhash_rust::xxh3::xxh3_64(&text);
        if self.files.get(path).is_some_and(|f| f.hash == hash) {
            return false;
        }
        let text = String::from_utf8_lossy(&text);
        let shown = path.display().to_string();
        let previous = self.files.remove(path).unwrap_or_default();
        let mut objects = BTreeMap::new();
        let mut problems = Vec::new();
        let mut unidentified_failure = false;
        let outcomes = match self.last_good {
            Some(_) => parse_text_keeping(&shown, &text),
            None => parse_text(&shown, &text),
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Object(mut p) => {
                    if let (Some(store), Some(doc)) = (self.last_good.as_mut(), p.document.take()) {
                        store.remember(&p.key, &doc);
                    }
                    objects.insert(p.key.clone(), p);
                }
                Outcome::Skipped {
                    origin,
                    kind,
                    api_version,
                } => {
                    debug!(%origin, %kind, %api_version, "skipping kind shmesh does not read");
                }
                Outcome::Rejected { key, problems: ps } => {
                    let origin = ps.first().map(|p| p.origin.clone()).unwrap_or_default();
                    problems.extend(ps);
                    match key {
                        // The last good version of this object stays.
                        Some(key) => match previous.objects.get(&key) {
                            Some(old) => {
                                objects.insert(key, old.clone());
                            }
                            // Invalid since this process first read it: the
                            // version served before the restart, if kept.
                            None if self.serving => {
                                let (kept, problem) = LastGood::serve_for_invalid(
                                    self.last_good.as_ref(),
                                    &key,
                                    &origin,
                                );
                                problems.push(problem);
                                if let Some(kept) = kept {
                                    objects.insert(key, kept);
                                }
                            }
                            None => {}
                        },
                        None => unidentified_failure = true,
                    }
                }
            }
        }
        if unidentified_failure {
            // A document we could not even identify: it may be any of the
            // file's earlier objects, so none of them is deleted.
            for (key, old) in previous.objects {
                objects.entry(key).or_insert(old);
            }
        }
        self.files.insert(
            path.to_path_buf(),
            FileState {
                hash,
                objects,
                problems,
            },
        );
        true
    }

    /// Changes between what is in force and what the files now hold.
    fn diff(&mut self) -> Vec<Change> {
        let mut next: BTreeMap<ObjectKey, (PathBuf, Parsed)> = BTreeMap::new();
        let mut duplicates = BTreeMap::new();
        for (path, file) in &self.files {
            for (key, parsed) in &file.objects {
                if let Some((first, _)) = next.get(key) {
                    duplicates.insert(
                        (key.clone(), path.clone()),
                        duplicate(key, parsed, &first.display().to_string()),
                    );
                    continue;
                }
                next.insert(key.clone(), (path.clone(), parsed.clone()));
            }
        }
        let mut changes = Vec::new();
        for (key, (_, parsed)) in &next {
            changes.extend(upsert_if_changed(&self.current, key, parsed));
        }
        for key in self.current.keys() {
            if !next.contains_key(key) {
                if let Some(store) = self.last_good.as_mut() {
                    store.forget(key);
                }
                changes.push(Change::Delete(key.clone()));
            }
        }
        self.current = next;
        self.duplicates = duplicates;
        self.log_problems();
        changes
    }

    fn log_problems(&mut self) {
        let mut now = BTreeSet::new();
        let duplicates = self.duplicates.values().cloned().collect();
        for p in self.problems_with(duplicates) {
            let line = p.to_string();
            if !self.logged.contains(&line) {
                error!("{line}");
            }
            now.insert(line);
        }
        self.logged = now;
    }

    fn problems_with(&self, extra: Vec<Problem>) -> Vec<Problem> {
        let mut all: Vec<Problem> = self
            .files
            .values()
            .flat_map(|f| f.problems.iter().cloned())
            .collect();
        all.extend(extra);
        all
    }

    /// Problems in the files as they stand now.
    pub fn problems(&self) -> Vec<Problem> {
        self.problems_with(Vec::new())
    }

    /// Objects in force.
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<Object>)> {
        self.current.iter().map(|(k, (_, p))| (k, &p.object))
    }
}

/// An upsert of `parsed` as `key`, unless that object is already in force.
fn upsert_if_changed(
    current: &BTreeMap<ObjectKey, (PathBuf, Parsed)>,
    key: &ObjectKey,
    parsed: &Parsed,
) -> Option<Change> {
    let same = current.get(key).is_some_and(|(_, old)| {
        Arc::ptr_eq(&old.object, &parsed.object) || old.object == parsed.object
    });
    (!same).then(|| Change::Upsert(key.clone(), parsed.object.clone(), parsed.origin.clone()))
}

/// `parsed` defines `key` again after the file `first` did.
fn duplicate(key: &ObjectKey, parsed: &Parsed, first: &str) -> Problem {
    Problem::error(
        "metadata.name",
        format!("duplicate of the object in {first}"),
    )
    .for_kind(&parsed.origin, key.kind, &key.namespace, &key.name)
}

/// Paths of config files below `dir`, skipping hidden entries.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if meta.is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: ConfigMap files are links into `..data/`.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(&path, out)?;
        } else if meta.is_file()
            && [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Loads the directories, sends the initial state, then watches for changes
/// until the views task goes away.
pub async fn run(
    dirs: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    tx: mpsc::Sender<Update>,
    metrics: Arc<Metrics>,
) {
    let mut set = FileSet::new(dirs.clone()).serving(state_dir.as_deref());
    let changes = set.rescan();
    info!(dirs = ?dirs, objects = changes.len(), "loaded config files");
    let mut reported = set.problems();
    let _ = tx.send(Update::Problems(SOURCE, reported.clone())).await;
    if tx.send(Update::Changes(changes)).await.is_err()
        || tx.send(Update::Synced(SOURCE)).await.is_err()
    {
        return;
    }

    let (event_tx, mut events) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reading the directories raises access events of its own; only a
        // change counts, or every rescan would trigger the next.
        if let Ok(event) = res {
            if !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = event_tx.send(event.paths);
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "file watching unavailable; polling every {:?}", POLL_INTERVAL);
            None
        }
    };
    if let Some(w) = watcher.as_mut() {
        for dir in &dirs {
            if let Err(e) = w.watch(dir, RecursiveMode::Recursive) {
                warn!(dir = %dir.display(), error = %e, "cannot watch; polling");
            }
        }
    }
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.tick().await;
    loop {
        let mut touched: Option<BTreeSet<PathBuf>> = None;
        tokio::select! {
            ev = events.recv() => {
                let Some(paths) = ev else { break };
                tokio::time::sleep(SETTLE).await;
                let mut all = vec![paths];
                while let Ok(more) = events.try_recv() {
                    all.push(more);
                }
                metrics.sources.file_events(all.iter().map(Vec::len).sum());
                touched = Some(all.into_iter().flatten().collect());
            }
            _ = poll.tick() => {}
        }
        // Reading a thousand files takes milliseconds the streams should not wait for.
        let changes = crate::blocking::in_place(|| match touched.map(|p| set.files_only(p)) {
            Some(Some(files)) => {
                metrics.sources.files_read(false);
                set.reload(&files)
            }
            _ => {
                metrics.sources.files_read(true);
                set.rescan()
            }
        });
        let problems = set.problems();
        if problems != reported {
            reported = problems.clone();
            let _ = tx.send(Update::Problems(SOURCE, problems)).await;
        }
        if changes.is_empty() {
            continue;
        }
        debug!(changes = changes.len(), "config files changed");
        if tx.send(Update::Changes(changes)).await.is_err() {
            break;
        }
    }
    drop(watcher);
}

/// Parses files once, for `validate` and `translate`.
pub fn load_once(paths: &[PathBuf]) -> (Vec<Change>, Vec<Problem>) {
    let mut set = FileSet::new(paths.to_vec());
    let changes = set.rescan();
    (changes, set.problems())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n";
    const VS_GOOD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n";
    const VS_BAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: -1\n    - destination: {host: a}\n      weight: 2\n";

    #[test]
    fn invalid_object_keeps_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join("vs.yaml"), VS_GOOD).unwrap();
        let mut set = FileSet::new(vec![dir.path().to_path_buf()]);
        assert_eq!(set.rescan().len(), 2);
        std::fs::write(dir.path().join("vs.yaml"), VS_BAD).unwrap();
        assert!(
            set.rescan().is_empty(),
            "the bad version must not replace the good one"
        );
        assert_eq!(set.problems().len(), 1);
        assert!(set.problems()[0]
            .to_string()
            .contains("spec.http[0].route[0].weight"));
        std::fs::remove_file(dir.path().join("vs.yaml")).unwrap();
        let changes = set.rescan();
        assert!(matches!(&changes[..], [Change::Delete(k)] if k.name == "r"));
    }

    #[test]
    fn reload_reads_only_the_files_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join("vs.yaml"), VS_GOOD).unwrap();
        let mut set = FileSet::new(vec![dir.path().to_path_buf()]);
        assert_eq!(set.rescan().len(), 2);
        let vs = dir.path().join("vs.yaml");
        let tmp = dir.path().join(".vs.yaml.tmp");
        assert_eq!(
            set.files_only([vs.clone(), tmp].into()),
            Some(vec![vs.clone()])
        );
        assert_eq!(set.files_only([dir.path().join("..data")].into()), None);
        assert_eq!(set.files_only([dir.path().join("sub")].into()), None);
        std::fs::remove_file(&vs).unwrap();
        let changes = set.reload(&[vs]);
        assert!(matches!(&changes[..], [Change::Delete(k)] if k.name == "r"));
    }

    #[test]
    fn reloading_one_file_gives_what_a_full_rescan_would() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, SVC).unwrap();
        std::fs::write(&b, format!("{SVC}---\n{VS_GOOD}")).unwrap();
        let mut set = FileSet::new(vec![dir.path().to_path_buf()]);
        assert_eq!(
            set.rescan().len(),
            2,
            "the Service once, the VirtualService"
        );
        assert_eq!(set.duplicates.len(), 1, "b.yaml repeats a.yaml's Service");

        // An unchanged file is no change; the later duplicate changing is none either.
        assert!(set.reload(std::slice::from_ref(&a)).is_empty());
        std::fs::write(
            &b,
            format!("{}---\n{VS_GOOD}", SVC.replace("port: 80", "port: 81")),
        )
        .unwrap();
        assert!(set.reload(std::slice::from_ref(&b)).is_empty());

        // The first definition gone, the duplicate takes over.
        std::fs::remove_file(&a).unwrap();
        let changes = set.reload(std::slice::from_ref(&a));
        assert!(
            matches!(&changes[..], [Change::Upsert(k, _, origin)] if k.name == "a" && origin.to_string().contains("b.yaml")),
            "{changes:?}"
        );
        assert!(set.duplicates.is_empty());
        let incremental: Vec<_> = set.objects().map(|(k, o)| (k.clone(), o.clone())).collect();
        let mut full = FileSet::new(vec![dir.path().to_path_buf()]);
        full.rescan();
        let rescanned: Vec<_> = full
            .objects()
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        assert_eq!(incremental, rescanned);
    }

    #[test]
    fn the_next_file_defining_an_object_takes_over_as_a_full_rescan_would() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| dir.path().join(format!("{n}.yaml")))
            .collect();
        // a, c and d define the same Service (each a different port); b something else.
        for (path, port) in [(&paths[0], 80), (&paths[2], 82), (&paths[3], 83)] {
            std::fs::write(path, SVC.replace("port: 80", &format!("port: {port}"))).unwrap();
        }
        std::fs::write(&paths[1], VS_GOOD).unwrap();
        let mut set = FileSet::new(vec![dir.path().to_path_buf()]);
        set.rescan();
        let same_as_full = |set: &FileSet| {
            let mut full = FileSet::new(vec![dir.path().to_path_buf()]);
            full.rescan();
            let objects = |s: &FileSet| -> Vec<_> {
                s.objects().map(|(k, o)| (k.clone(), o.clone())).collect()
            };
            objects(set) == objects(&full) && set.duplicates.len() == full.duplicates.len()
        };
        // The first definition goes: the next one in path order (c, not d) takes over.
        std::fs::remove_file(&paths[0]).unwrap();
        let changes = set.reload(std::slice::from_ref(&paths[0]));
        assert!(
            matches!(&changes[..], [Change::Upsert(_, _, origin)] if origin.to_string().contains("c.yaml")),
            "{changes:?}"
        );
        assert!(same_as_full(&set));
        // b now defines it too, and comes first.
        std::fs::write(&paths[1], format!("{VS_GOOD}---\n{SVC}")).unwrap();
        let changes = set.reload(std::slice::from_ref(&paths[1]));
        assert!(
            matches!(&changes[..], [Change::Upsert(_, _, origin)] if origin.to_string().contains("b.yaml")),
            "{changes:?}"
        );
        assert!(same_as_full(&set));
        // c goes: b still wins, d stays a duplicate.
        std::fs::remove_file(&paths[2]).unwrap();
        assert!(set.reload(std::slice::from_ref(&paths[2])).is_empty());
        assert!(same_as_full(&set));
        assert_eq!(set.duplicates.len(), 1);
    }

    #[test]
    fn an_unreadable_directory_keeps_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("team");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("svc.yaml"), SVC).unwrap();
        let mut set = FileSet::new(vec![sub.clone()]);
        assert_eq!(set.rescan().len(), 1);
        // The directory cannot be listed (moved away here; out of file
        // descriptors in the field): nothing is deleted.
        let aside = dir.path().join("aside");
        std::fs::rename(&sub, &aside).unwrap();
        assert!(set.rescan().is_empty());
        std::fs::rename(&aside, &sub).unwrap();
        assert!(set.rescan().is_empty());
    }

    #[test]
    fn hidden_entries_and_other_extensions_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join("notes.txt"), SVC).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/svc.yml"), SVC).unwrap();
        let mut set = FileSet::new(vec![dir.path().to_path_buf()]);
        assert_eq!(set.rescan().len(), 1);
    }

    #[test]
    fn configmap_symlink_swap_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let v1 = root.join("..2026_01");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("svc.yaml"), SVC).unwrap();
        std::os::unix::fs::symlink("..2026_01", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/svc.yaml", root.join("svc.yaml")).unwrap();
        let mut set = FileSet::new(vec![root.to_path_buf()]);
        assert_eq!(set.rescan().len(), 1);
        let v2 = root.join("..2026_02");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("svc.yaml"), SVC.replace("port: 80", "port: 81")).unwrap();
        std::os::unix::fs::symlink("..2026_02", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let changes = set.rescan();
        assert_eq!(changes.len(), 1, "{changes:?}");
    }
}

//! The state directory (`--state-dir`): what one replica keeps across its
//! own restarts, so that a restart changes nothing proxies see.
//!
//! - `last-good/SOURCE/KIND/NAMESPACE/NAME.json`: the last valid version of
//!   each configuration object the source served, as the document it was
//!   read from. The sources write it as objects change and read it when an
//!   object is invalid at start-up: that object then keeps serving the
//!   version from before the restart instead of disappearing. Endpoints and
//!   Pods (they change too often, and a version from before a restart is
//!   stale) and Secrets (keys stay off the disk) are not kept.
//! - `fleet.json`: how many proxies were connected, written as that changes.
//!   After a restart, rollout is not reported live until as many have come
//!   back (`rollout`), for a bounded time.
//!
//! Files are written whole to a temporary name and renamed, so a crash
//! never leaves half a file; anything unreadable is treated as absent.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use shmesh_api::parse::{decode, Outcome, Parsed};
use shmesh_api::{Kind, ObjectKey, Origin, Problem};

/// The last good versions one source served.
#[derive(Debug)]
pub struct LastGood {
    dir: PathBuf,
    /// Content hash of what is on disk, by object, for what this process
    /// wrote or read: unchanged objects are not written again.
    written: HashMap<ObjectKey, u64>,
}

impl LastGood {
    /// The last good versions of `source` (`files`, `kubernetes`) under `state_dir`.
    pub fn open(state_dir: &Path, source: &str) -> LastGood {
        LastGood {
            dir: state_dir.join("last-good").join(source),
            written: HashMap::new(),
        }
    }

    /// Whether objects of `kind` are kept.
    pub fn keeps(kind: Kind) -> bool {
        !matches!(kind, Kind::EndpointSlice | Kind::Pod | Kind::Secret)
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        let namespace = if key.namespace.is_empty() {
            "_cluster"
        } else {
            &key.namespace
        };
        self.dir
            .join(key.kind.as_str())
            .join(file_name(namespace))
            .join(format!("{}.json", file_name(&key.name)))
    }

    /// Records `document` as the last good version of `key`.
    pub fn remember(&mut self, key: &ObjectKey, document: &serde_json::Value) {
        if !Self::keeps(key.kind) {
            return;
        }
        let text = match serde_json::to_vec_pretty(document) {
            Ok(t) => t,
            Err(_) => return,
        };
        let hash = xxhash_rust::xxh3::xxh3_64(&text);
        if self.written.get(key) == Some(&hash) {
            return;
        }
        let path = self.path(key);
        let on_disk = std::fs::read(&path).ok();
        if on_disk.is_some_and(|d| xxhash_rust::xxh3::xxh3_64(&d) == hash) {
            self.written.insert(key.clone(), hash);
            return;
        }
        match write_atomic(&path, &text) {
            Ok(()) => {
                self.written.insert(key.clone(), hash);
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot keep the last good version")
            }
        }
    }

    /// `key` is gone: its last good version goes too.
    pub fn forget(&mut self, key: &ObjectKey) {
        if !Self::keeps(key.kind) {
            return;
        }
        self.written.remove(key);
        let path = self.path(key);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %path.display(), error = %e, "cannot remove a last good version");
            }
        }
    }

    /// The last good version of `key` kept before this process started, and
    /// the file that holds it.
    pub fn recall(&self, key: &ObjectKey) -> Option<(serde_json::Value, PathBuf)> {
        if !Self::keeps(key.kind) {
            return None;
        }
        let path = self.path(key);
        let text = std::fs::read(&path).ok()?;
        let value = serde_json::from_slice(&text).ok()?;
        Some((value, path))
    }

    /// For an object that is invalid since this process first read it: the
    /// version a previous process served (from `store`), and the problem saying
    /// which version is served, or that none is.
    pub fn serve_for_invalid(
        store: Option<&LastGood>,
        key: &ObjectKey,
        origin: &Origin,
    ) -> (Option<Parsed>, Problem) {
        let about = |p: Problem| p.for_kind(origin, key.kind, &key.namespace, &key.name);
        let Some(store) = store else {
            return (
                None,
                about(Problem::error(
                    "",
                    "not served: invalid, and no last good version is kept (shmesh runs without --state-dir)",
                )),
            );
        };
        let recalled = store.recall(key).and_then(|(doc, path)| {
            let kept_at = Origin::file(path.display().to_string(), 1);
            match decode(&kept_at, doc) {
                Outcome::Object(p) if p.key == *key => Some((p, path)),
                _ => None,
            }
        });
        match recalled {
            Some((parsed, path)) => (
                Some(parsed),
                about(Problem::warning(
                    "",
                    format!(
                        "invalid; serving its last good version, which this replica served before it restarted ({})",
                        path.display()
                    ),
                )),
            ),
            None => (
                None,
                about(Problem::error(
                    "",
                    "not served: invalid, and this replica kept no last good version of it before it restarted",
                )),
            ),
        }
    }
}

/// A name as a single path component: Kubernetes names are safe already;
/// anything else is percent-encoded.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Writes `data` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What `fleet.json` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    /// Proxies connected when it was written.
    pub proxies: usize,
}

impl Fleet {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("fleet.json")
    }

    /// The fleet recorded by the process before this one, if any.
    pub fn load(state_dir: &Path) -> Option<Fleet> {
        let text = std::fs::read(Self::path(state_dir)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomic(&Self::path(state_dir), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_remembered_object_is_recalled_by_the_next_process() {
        let dir = tempfile::tempdir().unwrap();
        let vs = key(Kind::VirtualService, "shop", "cart");
        let doc = serde_json::json!({"kind": "VirtualService", "spec": {"hosts": ["cart"]}});
        let mut first = LastGood::open(dir.path(), "files");
        first.remember(&vs, &doc);
        let next = LastGood::open(dir.path(), "files");
        assert_eq!(next.recall(&vs).map(|(v, _)| v), Some(doc));
        assert_eq!(
            LastGood::open(dir.path(), "kubernetes").recall(&vs),
            None,
            "each source keeps its own"
        );
        let mut next = next;
        next.forget(&vs);
        assert_eq!(next.recall(&vs), None);
    }

    #[test]
    fn secrets_endpoints_and_pods_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LastGood::open(dir.path(), "files");
        for kind in [Kind::Secret, Kind::EndpointSlice, Kind::Pod] {
            let k = key(kind, "shop", "x");
            store.remember(&k, &serde_json::json!({"data": {"tls.key": "c2VjcmV0"}}));
            assert_eq!(store.recall(&k), None);
        }
        assert!(!dir.path().join("last-good").exists());
    }

    #[test]
    fn odd_names_stay_inside_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LastGood::open(dir.path(), "files");
        let k = key(Kind::VirtualService, "..", "../../etc/passwd");
        store.remember(&k, &serde_json::json!({"a": 1}));
        assert_eq!(
            store.recall(&k).map(|(v, _)| v),
            Some(serde_json::json!({"a": 1}))
        );
        let (_, path) = store.recall(&k).unwrap();
        assert!(path.starts_with(dir.path().join("last-good/files/VirtualService")));
        assert_eq!(
            path.components().filter(|c| c.as_os_str() == "..").count(),
            0
        );
    }

    #[test]
    fn the_fleet_size_survives_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Fleet::load(dir.path()), None);
        Fleet { proxies: 42 }.save(dir.path()).unwrap();
        assert_eq!(Fleet::load(dir.path()), Some(Fleet { proxies: 42 }));
        std::fs::write(dir.path().join("fleet.json"), b"{not json").unwrap();
        assert_eq!(Fleet::load(dir.path()), None);
    }
}

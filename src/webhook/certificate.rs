//! The admission webhook's serving certificate, read from two PEM files (a
//! chain and its key, as a mounted `kubernetes.io/tls` Secret holds them in
//! `tls.crt` and `tls.key`) and read again whenever they change, so a
//! certificate cert-manager renews is served without a restart.
//!
//! The directories holding the files are watched, not the files: a Secret
//! volume is updated by swapping its `..data` symlink. A rescan every
//! [`POLL_INTERVAL`] catches what the watch missed. A pair that does not
//! load (unreadable, not PEM, a key that is not the certificate's, as
//! between the writes of a non-atomic replacement) leaves the previous
//! certificate in service; before any has loaded, handshakes fail and the
//! API server applies the webhook's failure policy. Neither the files'
//! content nor the key is ever logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::pem::{chain_and_key, PemError};

/// How often the files are read again even without a change event.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Events this close together are one replacement (a Secret volume's
/// symlink swap, or a certificate and its key written one after the other).
const SETTLE: Duration = Duration::from_millis(50);

/// Why the files do not make a certificate to serve.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {source}")]
    Pem { path: PathBuf, source: PemError },
    /// The key is not one rustls signs with, or not the certificate's.
    #[error("{key} does not go with {cert}: {source}")]
    Key {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The certificate being served and where it comes from.
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    /// `None` until the files first load.
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// A hash of the files' content when last read, so an unchanged pair is
    /// not parsed again, and the last error reported, so it is logged once.
    last_read: Mutex<(Option<u64>, Option<String>)>,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files are as last read.
    Unchanged,
    /// A new certificate is served from now on.
    Loaded,
}

impl CertificateFiles {
    /// Nothing is read yet: call [`CertificateFiles::reload`].
    pub fn new(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> CertificateFiles {
        CertificateFiles {
            cert,
            key,
            provider,
            current: RwLock::new(None),
            last_read: Mutex::new((None, None)),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Reads both files; serves the pair from now on when it changed and
    /// makes a certificate with its key. On an error the previous
    /// certificate stays in service.
    pub fn reload(&self) -> Result<Reload, CertificateError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CertificateError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let chain_pem = read(&self.cert)?;
        let key_pem = read(&self.key)?;
        let hash = xxhash_rust::xxh3::xxh3_64(&[chain_pem.as_slice(), &key_pem].concat());
        if let Ok(mut last) = self.last_read.lock() {
            if last.0 == Some(hash) {
                // Back to what is served: a later failure is news again.
                last.1 = None;
                return Ok(Reload::Unchanged);
            }
        }
        let (chain, key) =
            chain_and_key(&chain_pem, &key_pem).map_err(|source| CertificateError::Pem {
                // Which file is at fault: the chain's errors come first.
                path: match source {
                    PemError::Key(_) => self.key.clone(),
                    _ => self.cert.clone(),
                },
                source,
            })?;
        let certified = CertifiedKey::from_der(chain, key, &self.provider).map_err(|source| {
            CertificateError::Key {
                cert: self.cert.clone(),
                key: self.key.clone(),
                source,
            }
        })?;
        let not_after = x509_parser::parse_x509_certificate(certified.cert[0].as_ref())
            .map(|(_, c)| c.validity().not_after.to_string())
            .unwrap_or_default();
        if let Ok(mut current) = self.current.write() {
            *current = Some(Arc::new(certified));
        }
        if let Ok(mut last) = self.last_read.lock() {
            *last = (Some(hash), None);
        }
        info!(cert = %self.cert.display(), %not_after, "webhook certificate loaded");
        Ok(Reload::Loaded)
    }

    /// Reloads, logging a failure once until it changes or clears.
    pub fn refresh(&self) {
        let Err(e) = self.reload() else { return };
        let text = e.to_string();
        let Ok(mut last) = self.last_read.lock() else {
            return;
        };
        if last.1.as_deref() == Some(text.as_str()) {
            return;
        }
        last.1 = Some(text);
        drop(last);
        if self.is_loaded() {
            warn!(error = %e, "webhook certificate not reloaded; the previous one is still served");
        } else {
            warn!(error = %e, "no webhook certificate yet; the webhook refuses connections until one loads");
        }
    }

    /// Reads the files now, then again whenever their directories change
    /// and every [`POLL_INTERVAL`]. Runs until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        self.refresh();
        let (tx, mut events) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reading the files raises access events of their own.
            if res.is_ok_and(|event| !matches!(event.kind, notify::EventKind::Access(_))) {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "file watching unavailable; reading the webhook certificate every {:?}", POLL_INTERVAL);
                None
            }
        };
        if let Some(w) = watcher.as_mut() {
            let mut dirs: Vec<&Path> = [&self.cert, &self.key]
                .into_iter()
                .map(|p| match p.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                })
                .collect();
            dirs.dedup();
            for dir in dirs {
                if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                    warn!(dir = %dir.display(), error = %e, "cannot watch; reading the webhook certificate every {:?}", POLL_INTERVAL);
                }
            }
        }
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.tick().await;
        loop {
            tokio::select! {
                event = events.recv() => {
                    if event.is_none() {
                        break;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while events.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            self.refresh();
        }
        drop(watcher);
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::Ca;

    fn issue(ca: &Ca, name: &str) -> (String, String) {
        let issued = ca
            .issue_server(&[name.to_string()], Duration::from_secs(3600))
            .expect("issue");
        (issued.chain_pem, issued.key_pem)
    }

    #[test]
    fn a_new_pair_replaces_the_old_and_a_broken_one_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        Ca::create_root(dir.path(), "test").expect("root");
        let ca = Ca::load(
            &dir.path().join("root-cert.pem"),
            &dir.path().join("root-key.pem"),
            &[],
        )
        .expect("ca");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = CertificateFiles::new(cert.clone(), key.clone(), provider);
        assert!(matches!(
            files.reload(),
            Err(CertificateError::Read { path, .. }) if path == cert
        ));
        assert!(!files.is_loaded());

        let (first_cert, first_key) = issue(&ca, "one.example");
        std::fs::write(&cert, &first_cert).expect("write");
        std::fs::write(&key, &first_key).expect("write");
        assert_eq!(files.reload().expect("loads"), Reload::Loaded);
        assert_eq!(files.reload().expect("loads"), Reload::Unchanged);
        let served = |f: &CertificateFiles| {
            f.current
                .read()
                .expect("lock")
                .clone()
                .expect("loaded")
                .cert[0]
                .clone()
        };
        let first = served(&files);

        // A new certificate beside the old key: refused, the old one stays.
        let (second_cert, second_key) = issue(&ca, "two.example");
        std::fs::write(&cert, &second_cert).expect("write");
        assert!(matches!(files.reload(), Err(CertificateError::Key { .. })));
        assert_eq!(served(&files), first);
        std::fs::write(&key, "not a key").expect("write");
        let err = files.reload().expect_err("no key");
        assert!(matches!(&err, CertificateError::Pem { path, .. } if *path == key));
        assert!(
            !err.to_string().contains("not a key"),
            "the key file's content is not repeated: {err}"
        );
        std::fs::write(&key, &second_key).expect("write");
        assert_eq!(files.reload().expect("loads"), Reload::Loaded);
        assert_ne!(served(&files), first);
    }
}

//! The hub's TLS server configuration, rebuilt when its revocation list changes: revoking a
//! certificate takes effect without a restart, for new handshakes and for connections already
//! open.
//!
//! The CRL file's stamp is checked on every accepted connection and every
//! [`RELOAD_CHECK`] (the accept loop's timer). A CRL that does not load (not a CRL, not from the
//! exchange CA, a half-written file) is reported and ignored: the previous one stays in force,
//! so a bad file can never lift a revocation.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
    time::Duration,
};

use rustls::ServerConfig;

use super::{
    TlsError,
    acceptor::build_server_config,
    crl::{Crl, FileStamp, Watched},
    live::{Registry, Revocable},
};
use crate::config::TlsPaths;

/// How often the accept loop checks the CRL file even when no one connects.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The current server configuration, the CRL it was built with, and the open connections.
#[derive(Debug)]
pub struct Reloadable {
    paths: TlsPaths,
    config: RwLock<Arc<ServerConfig>>,
    /// The CRL file (if configured) and the CRL in force. Held while a connection is admitted
    /// and while a new CRL is installed, so no connection slips between the two.
    crl: Mutex<Option<(Watched, Crl)>>,
    live: Arc<Registry>,
    max_per_principal: usize,
    /// A summary of the last CRL installed (how many revoked, whose connections were cut), for
    /// the daemon's audit log.
    reloads: tokio::sync::watch::Sender<String>,
}

impl Reloadable {
    /// Loads the configuration from `paths` (failing as `server_config` does), allowing each
    /// principal `max_per_principal` open connections (0: no limit).
    pub fn load(paths: &TlsPaths, max_per_principal: u32) -> Result<Arc<Self>, TlsError> {
        let (config, crl) = build_server_config(paths)?;
        let crl = match (&paths.crl, crl) {
            (Some(path), Some(crl)) => Some((
                Watched {
                    path: path.clone(),
                    stamp: FileStamp::of(path),
                },
                crl,
            )),
            _ => None,
        };
        Ok(Arc::new(Reloadable {
            paths: paths.clone(),
            config: RwLock::new(config),
            crl: Mutex::new(crl),
            reloads: tokio::sync::watch::Sender::new(String::new()),
            live: Arc::default(),
            max_per_principal: usize::try_from(max_per_principal).unwrap_or(usize::MAX),
        }))
    }

    fn crl_lock(&self) -> MutexGuard<'_, Option<(Watched, Crl)>> {
        // Each update replaces the whole value: a panic elsewhere cannot leave it half-done.
        self.crl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows CRL reloads: the receiver sees a summary each time a new CRL is installed.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<String> {
        self.reloads.subscribe()
    }

    /// The configuration for the next handshake, reloaded first if the CRL file changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.refresh();
        let config = self.config.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&config)
    }

    /// Reloads the CRL if its file changed; cuts open connections whose certificate it now
    /// revokes. Returns whether a new CRL was installed.
    pub fn refresh(&self) -> bool {
        let mut guard = self.crl_lock();
        let Some((watched, in_force)) = guard.as_mut() else {
            return false;
        };
        if !watched.changed() {
            return false;
        }
        match build_server_config(&self.paths) {
            Ok((config, Some(crl))) => {
                *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
                let cut = self.live.cut_revoked(&crl);
                tracing::info!(
                    crl = %watched.path.display(),
                    revoked = crl.revoked.len(),
                    connections_cut = cut.len(),
                    "revocation list reloaded"
                );
                for who in &cut {
                    tracing::warn!(principal = %who, "connection cut: its certificate was revoked");
                }
                let cut: Vec<String> = cut.iter().map(ToString::to_string).collect();
                self.reloads.send_replace(format!(
                    "revocation list {} reloaded: {} certificates revoked; connections cut: {}",
                    watched.path.display(),
                    crl.revoked.len(),
                    if cut.is_empty() {
                        "none".to_owned()
                    } else {
                        cut.join(", ")
                    }
                ));
                *in_force = crl;
                true
            }
            Ok((_, None)) => false,
            Err(e) => {
                tracing::error!(error = %e, "revocation list not reloaded; the previous one stays in force");
                false
            }
        }
    }

    /// Admits an established connection whose client presented `leaf`: refused if the CRL in
    /// force revokes it (it may have changed during the handshake) or its principal holds too
    /// many connections.
    pub(crate) fn admit<S>(&self, stream: S, leaf: &[u8]) -> Result<Revocable<S>, String> {
        let guard = self.crl_lock();
        if guard.as_ref().is_some_and(|(_, crl)| crl.revokes(leaf)) {
            return Err("the certificate is revoked".to_owned());
        }
        let ticket = self.live.admit(leaf, self.max_per_principal)?;
        drop(guard);
        Ok(Revocable::new(stream, ticket))
    }
}

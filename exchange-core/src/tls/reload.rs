//! The hub's TLS server configuration, rebuilt when its revocation list changes: revoking a
//! certificate takes effect without a restart, for new handshakes and for connections already
//! open.
//!
//! The CRL file's stamp is checked on every accepted connection and every
//! [`RELOAD_CHECK`] (the accept loop's timer). A CRL that does not load (not a CRL, not from the
//! exchange CA, a half-written file) is reported and ignored: the previous one stays in force,
//! so a bad file can never lift a revocation; nor can an older CRL of the CA (a lower CRL number,
//! or an earlier `thisUpdate`), which is refused the same way. A good CRL whose server configuration cannot be
//! rebuilt (the key or certificate unreadable for a moment, e.g. mid-rotation) is put in force
//! on its own — admission and the cut of open connections use it at once — and the rebuild is
//! tried again at the next check.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
    time::Duration,
};

use super::{
    TlsError,
    acceptor::{ServerContext, server_context},
    conn::ServerStream,
    crl::{Crl, FileStamp, Watched, load_crl},
    live::{Registry, Revocable},
};
use crate::{config::TlsPaths, crypto::Profile};

/// How often the accept loop checks the CRL file even when no one connects.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The current server configuration, the CRL it was built with, and the open connections.
#[derive(Debug)]
pub struct Reloadable {
    paths: TlsPaths,
    /// Which stack and protocol the contexts are built for (fixed for the process).
    profile: Profile,
    config: RwLock<ServerContext>,
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
    /// Loads the configuration of `profile` from `paths` (failing as `server_context` does),
    /// allowing each principal `max_per_principal` open connections (0: no limit).
    pub fn load(
        paths: &TlsPaths,
        profile: Profile,
        max_per_principal: u32,
    ) -> Result<Arc<Self>, TlsError> {
        let (config, crl) = server_context(paths, profile)?;
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
            profile,
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
    pub fn current(&self) -> ServerContext {
        self.refresh();
        let config = self.config.read().unwrap_or_else(PoisonError::into_inner);
        config.clone()
    }

    /// Reloads the CRL if its file changed; cuts open connections whose certificate it now
    /// revokes. Returns whether a new CRL was installed.
    pub fn refresh(&self) -> bool {
        let mut guard = self.crl_lock();
        let Some((watched, in_force)) = guard.as_mut() else {
            return false;
        };
        let before = watched.stamp;
        if !watched.changed() {
            return false;
        }
        let (config, crl) = match server_context(&self.paths, self.profile) {
            Ok((config, Some(crl))) => (Ok(config), crl),
            Ok((_, None)) => return false,
            Err(e) => {
                let alone = super::read_pem_file(&self.paths.ca, "CERTIFICATE")
                    .and_then(|ca| load_crl(&watched.path, &ca));
                let Ok(crl) = alone else {
                    tracing::error!(error = %e, "revocation list not reloaded; the previous one stays in force");
                    return false;
                };
                (Err(e), crl)
            }
        };
        if let Err(e) = crl.may_replace(in_force, &watched.path) {
            tracing::error!(error = %e, "revocation list not reloaded; the previous one stays in force");
            return false;
        }
        match config {
            Ok(config) => *self.config.write().unwrap_or_else(PoisonError::into_inner) = config,
            Err(e) => {
                tracing::error!(error = %e, "the TLS configuration could not be rebuilt: the new revocation list is in force for admission and open connections, and the rebuild is retried");
                watched.stamp = before;
            }
        }
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

    /// Admits an established connection: refused if the CRL in force revokes any certificate
    /// its client presented (the CRL may have changed during the handshake; under TLCP the
    /// encryption certificate counts too) or its principal holds too many connections.
    pub(crate) fn admit(&self, stream: ServerStream) -> Result<Revocable<ServerStream>, String> {
        let guard = self.crl_lock();
        let certs = std::sync::Arc::clone(&stream.info().certs);
        if let Some((_, crl)) = guard.as_ref()
            && certs.iter().any(|c| crl.revokes(c))
        {
            return Err("the certificate is revoked".to_owned());
        }
        let ticket = self.live.admit(&certs, self.max_per_principal)?;
        drop(guard);
        Ok(Revocable::new(stream, ticket))
    }

    /// Puts `crl` in force as if its file had just been reloaded: cuts the open connections it
    /// revokes. For tests of revocation that cannot sign a CRL file.
    #[cfg(all(test, feature = "shangmi"))]
    pub(crate) fn install_crl(&self, crl: Crl) -> Vec<String> {
        let mut guard = self.crl_lock();
        let cut = self.live.cut_revoked(&crl);
        *guard = Some((
            Watched {
                path: std::path::PathBuf::from("/nonexistent/crl.pem"),
                stamp: None,
            },
            crl,
        ));
        cut
    }
}

//! The central hub of the document exchange.
//!
//! Nodes connect over mutual TLS. The hub verifies and stores each submitted document once,
//! queues one delivery per recipient durably, pushes deliveries to each recipient node on its
//! long-lived `Subscribe` stream until that node acknowledges (with its signed delivery receipt),
//! and routes every piece of evidence back to the sender the same way.
//!
//! [`run`] is what `exchange-hub serve` and the tests both drive.
#![warn(missing_docs)]

mod admin;
mod audit;
mod backup;
pub mod cli;
mod delivery;
mod directory;
mod expiry;
mod federation;
mod lease;
mod limits;
mod metrics;
mod policy;
mod service;
mod stats;
mod store;
mod wake;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use exchange_core::{
    blob::BlobStore,
    config::{HubConfig, StoreBackend},
    crypto::{self, Profile},
    identity::Principal,
    signing::{BatchSigner, SigningKey, Verifier},
    store::{
        Store, StoreError,
        kv::postgres::PgTarget,
        sealing::{self, KeysError},
    },
    tls,
};
use exchange_proto::v1::{AuditKind, admin_server::AdminServer, hub_server::HubServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use directory::Directory;

/// This binary, as profile errors name it.
const PROGRAM: &str = "exchange-hub";

/// Largest gRPC message the hub accepts: content moves in chunks, so this only has to fit a
/// header with its manifest and a chunk.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Everything a request handler needs, shared.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) cfg: HubConfig,
    pub(crate) directory: Directory,
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    pub(crate) signer: Arc<SigningKey>,
    /// Signs statements on busy paths in batches, with `signer`'s key.
    pub(crate) batch_signer: BatchSigner,
    pub(crate) verifier: Verifier,
    /// Links to other exchanges' hubs, and the CAs of their signers (docs/federation.md).
    pub(crate) links: federation::Links,
    /// Wakes the worker handing items to each peer hub.
    pub(crate) peer_wake: federation::client::Wakers,
    /// The departments reachable through each peer, as it last listed them.
    pub(crate) peer_dirs: federation::Directories,
    pub(crate) sessions: delivery::Sessions,
    /// Which departments this hub pushes to (several hubs on one database).
    pub(crate) leases: Arc<lease::Leases>,
    /// Each department's call and byte rates (`[limits]`), metered in front of every service.
    pub(crate) limits: Arc<limits::Limits>,
    /// The deadlines of queued documents, for the expiry pass.
    pub(crate) deadlines: expiry::SharedDeadlines,
    pub(crate) shutdown: CancellationToken,
}

impl Hub {
    /// What recording evidence about the stored document `rec` needs.
    pub(crate) fn about(&self, rec: &store::DocumentRecord) -> store::About {
        store::About::of(rec, self.links.name.as_ref())
    }

    /// Wakes whoever is told of evidence about a document: its sender's stream, or the worker
    /// of the peer it came from.
    pub(crate) fn wake_back(&self, about: &store::About) {
        match &about.back {
            store::Back::Sender(s) => self.sessions.wake(s),
            store::Back::Peer(p) => self.peer_wake.wake(p),
        }
    }
}

/// The hub's document-signing key; a certificate that does not name the hub is refused.
fn load_signer(cfg: &HubConfig) -> anyhow::Result<SigningKey> {
    SigningKey::load_as(&cfg.signing, &Principal::Hub).context("loading the hub's signing key")
}

/// Checks that the files a config names are usable (TLS identity, CA, signing key), that their
/// certificates are of `[crypto] profile`, and that the directory is consistent, without
/// starting anything: `check-config`, and `serve` before it starts.
pub fn check_config(cfg: &HubConfig) -> anyhow::Result<()> {
    cfg.check_files()?;
    cfg.check_links()?;
    cfg.limits.check(false)?;
    cfg.peer_limits.check(true)?;
    if !cfg.peers.is_empty() {
        let der = tls::read_pem_file(&cfg.tls.cert, "CERTIFICATE")?;
        anyhow::ensure!(
            tls::peers::allows_client_auth(&der),
            "tls.cert: {} does not allow client authentication, and with [[peers]] the hub \
             presents it to its peers' hubs: reissue it with `exchange-certs issue-hub --linked`",
            cfg.tls.cert.display()
        );
    }
    let lease = cfg.hub.lease_secs;
    let min = exchange_core::config::HubSection::MIN_LEASE_SECS;
    anyhow::ensure!(
        lease >= min,
        "[hub] lease_secs = {lease}: at least {min} (a lease is renewed every third of it)"
    );
    // The database is named well (it is not contacted: `serve` and `migrate` do that).
    store_target(cfg).context("[store]")?;
    let profile = cfg.crypto.profile;
    crypto::check_profile(PROGRAM, profile, &cfg.tls, &cfg.signing)?;
    // rustls and ring cannot read SM2 keys: under shangmi exchange-core checks the identity with
    // Tongsuo instead, and builds the TLCP acceptor (docs/shangmi.md).
    if profile == Profile::International {
        tls::acceptor::server_config(&cfg.tls).context("loading the hub's TLS identity")?;
        Verifier::new(&tls::ca_der(&cfg.tls)?).context("loading the CA certificate")?;
        load_signer(cfg)?;
    } else {
        crypto::check_shangmi_identity(PROGRAM, &cfg.tls, &cfg.signing, &Principal::Hub)?;
        tls::acceptor::server_context(&cfg.tls, profile)
            .context("loading the hub's TLS identity")?;
    }
    Directory::from_config(&cfg.departments)?.with_groups(&cfg.groups)?;
    exchange_core::store::sealing::data_keys(
        &cfg.hub.data_dir,
        cfg.crypto.profile,
        cfg.encryption.as_ref(),
    )
    .context("checking the data directory's keys ([encryption])")?;
    Ok(())
}

/// The hub's database as `[store]` names it: `<data_dir>/hub.redb`, or the PostgreSQL database
/// (with its password read from `[store] password_file`).
pub(crate) fn store_target(cfg: &HubConfig) -> Result<StoreTarget, KeysError> {
    match cfg.store.backend {
        StoreBackend::Redb => {
            if cfg.store.url.is_some()
                || cfg.store.password_file.is_some()
                || cfg.store.ca_file.is_some()
            {
                return Err(KeysError::Store(StoreError::Database {
                    message:
                        "[store] url, password_file and ca_file are for backend = \"postgres\"; \
                              the redb store is <data_dir>/hub.redb"
                            .into(),
                    retry: false,
                    disk_full: false,
                }));
            }
            Ok(StoreTarget::Redb(cfg.hub.data_dir.join("hub.redb")))
        }
        StoreBackend::Postgres => {
            let refuse = |message: String| {
                KeysError::Store(StoreError::Database {
                    message,
                    retry: false,
                    disk_full: false,
                })
            };
            let url = cfg.store.url.as_deref().ok_or_else(|| {
                refuse(
                    "[store] backend = \"postgres\" needs url = \"postgresql://USER@HOST:PORT/DB\""
                        .into(),
                )
            })?;
            let password = match &cfg.store.password_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| refuse(format!("[store] password_file {}: {e}", f.display())))?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                ),
                None => None,
            };
            let target =
                PgTarget::with_ca_file(url, password.as_deref(), cfg.store.ca_file.as_deref())?;
            Ok(StoreTarget::Postgres(Box::new(target)))
        }
    }
}

/// Where the hub's records are.
#[derive(Debug)]
pub(crate) enum StoreTarget {
    /// The redb file.
    Redb(std::path::PathBuf),
    /// The PostgreSQL database.
    Postgres(Box<PgTarget>),
}

/// How messages name the hub's database.
pub(crate) fn store_shown(cfg: &HubConfig) -> String {
    match store_target(cfg) {
        Ok(StoreTarget::Redb(p)) => p.display().to_string(),
        Ok(StoreTarget::Postgres(t)) => t.shown().to_owned(),
        Err(_) => "[store]".to_owned(),
    }
}

/// Opens the hub's store with the data keys of its data directory (`create`: make the key ring
/// if encryption is on and there is none yet, as `serve` does).
pub(crate) fn open_store(cfg: &HubConfig, create: bool) -> Result<Store, KeysError> {
    let (profile, section) = (cfg.crypto.profile, cfg.encryption.as_ref());
    match store_target(cfg)? {
        StoreTarget::Redb(path) => {
            sealing::open_store(&path, "hub", store::SCHEMA, profile, section, create)
        }
        StoreTarget::Postgres(target) => sealing::open_postgres_store(
            &target,
            "hub",
            store::SCHEMA,
            &cfg.hub.data_dir,
            profile,
            section,
            create,
        ),
    }
}

/// Opens the hub's stores and keys; fails with a message naming the file at fault.
fn open(cfg: HubConfig, shutdown: CancellationToken) -> anyhow::Result<Hub> {
    let data = &cfg.hub.data_dir;
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    // The keys are checked before the store is touched: a wrong key changes nothing on disk.
    let store = open_store(&cfg, true).with_context(|| {
        format!(
            "opening the hub store ({}) with the keys in {} ([encryption])",
            store_shown(&cfg),
            data.display()
        )
    })?;
    // On PostgreSQL the blobs are in the database, shared by every hub on it.
    let blobs = BlobStore::for_store(&data.join("blobs"), &store)
        .with_context(|| format!("opening blobs in {}", data.display()))?;
    let signer = Arc::new(load_signer(&cfg)?);
    let batch_signer = BatchSigner::spawn(Arc::clone(&signer));
    let verifier = Verifier::new(&tls::ca_der(&cfg.tls)?).context("loading the CA certificate")?;
    let directory = Directory::from_config(&cfg.departments)?.with_groups(&cfg.groups)?;
    let links = federation::Links::load(&cfg, verifier.clone())?;
    let peer_wake = federation::client::Wakers::new(&links);
    let leases = match cfg.store.backend {
        StoreBackend::Redb => lease::Leases::exclusive(),
        StoreBackend::Postgres => lease::Leases::shared(Duration::from_secs(cfg.hub.lease_secs)),
    };
    Ok(Hub {
        limits: limits::Limits::new(cfg.limits),
        deadlines: expiry::SharedDeadlines::default(),
        cfg,
        directory,
        store,
        blobs: blobs.with_digest(signer.scheme().digest()),
        signer,
        batch_signer,
        verifier,
        links,
        peer_wake,
        peer_dirs: federation::Directories::default(),
        sessions: delivery::Sessions::default(),
        leases: Arc::new(leases),
        shutdown,
    })
}

/// Serves the hub on `listener` until `shutdown` resolves, then drains: open delivery streams
/// are ended (unacknowledged items stay queued), and in-flight requests get a grace period.
pub async fn run(
    cfg: HubConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A build without the shangmi feature refuses that profile (exit 64).
    cfg.crypto.profile.ensure_built(PROGRAM)?;
    let tls = tls::reload::Reloadable::load(
        &cfg.tls,
        cfg.crypto.profile,
        cfg.limits.connections_per_principal,
    )
    .context("loading the hub's TLS identity")?;
    let token = CancellationToken::new();
    let hub = Arc::new(open(cfg, token.clone())?);
    // The audit chain is hashed with the signing key's scheme's digest (SM3 under shangmi).
    let digest = hub.signer.scheme().digest();
    audit::set_digest(&hub.store, digest)
        .await
        .context("the audit log's digest")?;
    hub.signer.warn_on_expiry(
        &hub.cfg.signing.cert,
        "the nodes refuse the hub's acceptances and receipts",
    );
    let addr = listener.local_addr()?;
    let data = &hub.cfg.hub.data_dir;
    exchange_core::config::write_addr_file(data, "hub.addr", addr)
        .with_context(|| format!("writing {}/hub.addr", data.display()))?;
    tracing::info!(%addr, departments = hub.directory.len(), "hub listening");
    audit::record(
        &hub.store,
        audit::Event::new(AuditKind::HubStarted).peer(addr),
    )
    .await;
    let checkpoints = tokio::spawn(checkpoint_loop(Arc::clone(&hub)));
    // Several hubs on one database: leases on pushing, and wake-ups between the hubs.
    if let StoreTarget::Postgres(target) = store_target(&hub.cfg)? {
        tracing::info!(
            hub = hub.leases.holder(),
            lease_secs = hub.cfg.hub.lease_secs,
            "pushing to departments under leases shared with any other hub on {}",
            target.shown()
        );
        tokio::spawn(Arc::clone(&hub.leases).renew_loop(hub.store.clone(), token.clone()));
        wake::start(&hub, &target, token.clone()).context("starting the wake-up threads")?;
    }
    metrics::start(&hub, token.clone()).await?;
    let peers = federation::serve(&hub, token.clone()).await?;
    let (health, health_svc, reflection, reflection_alpha) =
        exchange_core::tooling::services::<HubServer<service::HubService>>().await?;
    let expiry = tokio::spawn(expiry::expiry_loop(Arc::clone(&hub)));
    let mut reloads = tls.reloads();
    let revocations = tokio::spawn({
        let hub = Arc::clone(&hub);
        async move {
            while reloads.changed().await.is_ok() {
                let detail = reloads.borrow_and_update().clone();
                audit::record(
                    &hub.store,
                    audit::Event::new(AuditKind::CertificateRevoked).detail(detail),
                )
                .await;
            }
        }
    });

    let svc = HubServer::new(service::HubService::new(Arc::clone(&hub)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let audited = Arc::clone(&hub);
    let on_refused = move |r: tls::acceptor::RefusedHandshake| {
        let presented = r
            .presented
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::warn!(peer = %r.peer, presented, reason = %r.reason, "TLS handshake refused");
        let ev = audit::Event::new(AuditKind::HandshakeRefused)
            .peer(r.peer)
            .dept(presented)
            .detail(r.reason);
        let hub = Arc::clone(&audited);
        tokio::spawn(async move { audit::record(&hub.store, ev).await });
    };
    let incoming = tls::acceptor::incoming(listener, tls, on_refused, token.clone());
    let stop = token.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: ending delivery streams");
        exchange_core::sdnotify::stopping();
        health.stopping().await;
        stop.cancel();
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(hub.cfg.limits.max_concurrent_streams)
        .http2_max_header_list_size(hub.cfg.limits.max_header_list_bytes)
        .layer(limits::LimitsLayer::departments(Arc::clone(&hub.limits)))
        .add_service(svc)
        .add_service(AdminServer::new(admin::AdminService::new(Arc::clone(&hub))))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming, signal);
    exchange_core::sdnotify::ready(); // every listener is bound and the services are built
    exchange_core::shutdown::drain(server, &token)
        .await
        .context("serving gRPC")?;
    if let Some(peers) = peers {
        let _ = peers.await;
    }
    checkpoints.abort();
    expiry.abort();
    revocations.abort();
    audit::record(&hub.store, audit::Event::new(AuditKind::HubStopped)).await;
    // A clean stop leaves the whole log under a signed checkpoint.
    let cfg = &hub.cfg.audit;
    if let Err(e) = audit::checkpoint(&hub.store, &hub.signer, cfg.checkpoint_every, 0, true).await
    {
        tracing::error!(error = %e, "signing the final audit checkpoint");
    }
    tracing::info!("hub stopped");
    Ok(())
}

/// Signs audit checkpoints as they fall due (every N entries or T seconds).
async fn checkpoint_loop(hub: Arc<Hub>) {
    let cfg = &hub.cfg.audit;
    let max_age_ms = i64::try_from(cfg.checkpoint_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = audit::checkpoint(
            &hub.store,
            &hub.signer,
            cfg.checkpoint_every,
            max_age_ms,
            false,
        )
        .await
        {
            tracing::error!(error = %e, "signing an audit checkpoint");
        }
    }
}

//! A department's node in the document exchange.
//!
//! - [`api`]: the local gRPC API for the department's OA system and the clerk's CLI;
//! - `uplink`: the connection to the hub — the outbox sender and the delivery stream;
//! - `store`: the durable outbox, inbox, sent documents and event log;
//! - `bundle`: the evidence bundle of a document, streamed by `GetEvidence`;
//! - [`cli`]: the clerk's commands, which talk to a running node through its API.
//!
//! [`serve`] is what `exchange-node serve` and the tests both drive.

#![warn(missing_docs)]

pub mod api;
mod backup;
mod bundle;
pub mod cli;
mod content;
mod error;
mod groups;
mod metrics;
mod office;
mod status;
mod store;
mod submit;
#[cfg(test)]
mod testing;
mod uplink;

use std::{future::Future, pin::Pin, sync::Arc};

use anyhow::Context as _;
use exchange_core::{
    blob::BlobStore,
    config::{NodeConfig, TlsPaths, TlsProtocol},
    crypto::{self, Profile},
    identity::Principal,
    signing::{BatchSigner, SigningKey, Verifier},
    store::Store,
    tls,
};
use exchange_proto::v1 as pb;
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

/// Largest gRPC message on the API and the hub link: content moves in chunks, so this only has
/// to fit a header and one chunk. Shared by the API server, the uplink's client and the CLI.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Everything the API handlers and uplink tasks share.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    pub(crate) signer: Arc<SigningKey>,
    /// Signs statements on busy paths in batches, with `signer`'s key.
    pub(crate) batch_signer: BatchSigner,
    pub(crate) verifier: Verifier,
    /// Our CA, and the linked exchanges' CAs as the hub last told them (docs/federation.md).
    pub(crate) trust: exchange_core::signing::Trust,
    /// This exchange's name and the linked exchanges, as the hub last told them.
    pub(crate) linked: std::sync::RwLock<(String, Vec<pb::LinkedExchange>)>,
    /// Something was put in the outbox.
    pub(crate) outbox_wake: Notify,
    /// The hub connection came (back) up: retry now rather than after the backoff.
    pub(crate) hub_up: Notify,
    /// The latest event seq, for `WatchEvents`.
    pub(crate) events: tokio::sync::watch::Sender<u64>,
    /// Cancelled when the node shuts down: long-lived streams end.
    pub(crate) shutdown: CancellationToken,
    /// The hub's directory, as last fetched (None until the hub was reached once).
    pub(crate) directory: std::sync::RwLock<Option<Vec<pb::Department>>>,
    /// The hub's recipient groups, fetched with `directory` (empty until then).
    pub(crate) groups: std::sync::RwLock<Vec<pb::Group>>,
}

impl Node {
    /// This exchange's name and the linked exchanges, as the hub last told them.
    pub(crate) fn linked_exchanges(&self) -> (String, Vec<pb::LinkedExchange>) {
        self.linked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes what the hub says of linked exchanges: our exchange's name, and each linked
    /// exchange's CA, which checks the signatures of that exchange's departments and hub. The
    /// node trusts its hub for this as it does for routing; a CA that does not parse is skipped
    /// (and logged), so its exchange's documents are refused rather than wrongly accepted.
    pub(crate) fn learn_links(&self, name: String, linked: Vec<pb::LinkedExchange>) {
        self.trust.set_own_name(name.parse().ok());
        for l in &linked {
            let parsed = l.name.parse::<exchange_core::ids::ExchangeName>();
            match parsed.map(|n| self.trust.link(n, &l.ca_der)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(exchange = %l.name, error = %e, "linked exchange's CA not usable")
                }
                Err(e) => {
                    tracing::warn!(exchange = %l.name, error = %e, "linked exchange's name not usable")
                }
            }
        }
        *self
            .linked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (name, linked);
    }

    /// This department as the documents of its own exchange name it (its bare id).
    pub(crate) fn me(&self) -> exchange_core::ids::Address {
        exchange_core::ids::Address::local(self.cfg.node.id.clone())
    }

    fn open(cfg: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let data = &cfg.node.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating data directory {}", data.display()))?;
        // The keys are checked before the store is touched: a wrong key changes nothing on disk.
        let store = store::open(
            &data.join("node.redb"),
            cfg.crypto.profile,
            cfg.encryption.as_ref(),
            true,
        )
        .with_context(|| {
            format!(
                "opening the node store in {} with its keys ([encryption])",
                data.display()
            )
        })?;
        let blobs = BlobStore::open(&data.join("blobs"), store.sealer().keys().cloned())
            .with_context(|| format!("opening blobs in {}", data.display()))?;
        let signer = Arc::new(load_signer(&cfg)?);
        let batch_signer = BatchSigner::spawn(Arc::clone(&signer));
        let verifier =
            Verifier::new(&tls::ca_der(&cfg.tls)?).context("loading the CA certificate")?;
        let (events, _) = tokio::sync::watch::channel(0);
        Ok(Node {
            cfg,
            store,
            blobs: blobs.with_digest(signer.scheme().digest()),
            signer,
            batch_signer,
            trust: exchange_core::signing::Trust::new(verifier.clone(), None),
            verifier,
            linked: Default::default(),
            outbox_wake: Notify::new(),
            hub_up: Notify::new(),
            events,
            shutdown,
            directory: Default::default(),
            groups: Default::default(),
        })
    }

    /// Refuses a statement a clerk or department system is about to make when this
    /// department's signing certificate is out of its validity period: the hub would refuse the
    /// signature, so the statement would stand here and reach no one. The daemon's own receipts
    /// (DELIVERED) are not held back: a delivery is never refused for this.
    pub(crate) fn can_sign(&self) -> Result<(), error::NodeError> {
        match self.signer.unusable_at(exchange_core::time::now_secs()) {
            None => Ok(()),
            Some(why) => Err(error::NodeError::CannotSign {
                why,
                cert: self.cfg.signing.cert.display().to_string(),
            }),
        }
    }

    /// Tells `WatchEvents` followers that event `seq` was committed.
    pub(crate) fn event_committed(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.events.send_if_modified(|cur| {
                let newer = seq > *cur;
                if newer {
                    *cur = seq;
                }
                newer
            });
        }
    }
}

/// This binary, as profile errors name it.
const PROGRAM: &str = "exchange-node";

/// The department's document-signing key; a certificate naming another principal is refused.
fn load_signer(cfg: &NodeConfig) -> anyhow::Result<SigningKey> {
    SigningKey::load_as(&cfg.signing, &Principal::Dept(cfg.node.id.clone()))
        .context("loading the department's signing key")
}

/// Checks that the files a config names are usable (TLS identity, CA, signing key for this
/// department) and that their certificates are of `[crypto] profile`, without starting
/// anything: `check-config`, and `serve` before it starts.
pub fn check_config(cfg: &NodeConfig) -> anyhow::Result<()> {
    cfg.check_files()?;
    let hubs = cfg.hub.addrs()?;
    let profile = cfg.crypto.profile;
    crypto::check_profile(PROGRAM, profile, &cfg.tls, &cfg.signing)?;
    cfg.api.check()?;
    // rustls and ring cannot read SM2 keys: under shangmi exchange-core checks the identity with
    // Tongsuo instead; the hub endpoint is built by the provider layer for either profile.
    if profile == Profile::International {
        tls::hub_endpoints(&hubs, &cfg.tls, profile, &cfg.hub.server_name)
            .context("loading the node's TLS identity")?;
        Verifier::new(&tls::ca_der(&cfg.tls)?).context("loading the CA certificate")?;
        load_signer(cfg)?;
    } else {
        let who = Principal::Dept(cfg.node.id.clone());
        crypto::check_shangmi_identity(PROGRAM, &cfg.tls, &cfg.signing, &who)?;
        tls::hub_endpoints(&hubs, &cfg.tls, profile, &cfg.hub.server_name)
            .context("loading the node's TLS identity")?;
    }
    if let Some(api_tls) = &cfg.api.tls {
        check_api_tls(profile, api_tls)?;
    }
    exchange_core::store::sealing::data_keys(
        &cfg.node.data_dir,
        cfg.crypto.profile,
        cfg.encryption.as_ref(),
    )
    .context("checking the data directory's keys ([encryption])")?;
    Ok(())
}

/// `[api] tls`: its certificates are of `profile`, with TLCP's encryption pair when the API
/// speaks TLCP, and the provider layer builds its server context from them (TLS 1.3 through
/// rustls, or TLCP / RFC 8998 through Tongsuo).
fn check_api_tls(profile: Profile, api_tls: &TlsPaths) -> anyhow::Result<()> {
    let keys = crypto::TlsKeys {
        ca: "api.tls.ca",
        cert: "api.tls.cert",
        enc_cert: "api.tls.enc_cert",
        enc_key_section: "[api] tls.enc_key",
        enc_cert_section: "[api] tls.enc_cert",
    };
    let protocol = TlsProtocol::of(profile, api_tls).context("[api] tls")?;
    crypto::check_tls_profile(profile, api_tls, keys, protocol == TlsProtocol::Tlcp)?;
    tls::acceptor::server_context(api_tls, profile)
        .context("loading the API's TLS identity ([api] tls)")?;
    Ok(())
}

/// Serves the local API on `api_listener` and keeps the hub connection until `shutdown`
/// resolves; then stops taking requests, ends the uplink tasks (unsent items stay queued) and
/// returns.
pub async fn serve(
    cfg: NodeConfig,
    api_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A build without the shangmi feature refuses that profile (exit 64).
    cfg.crypto.profile.ensure_built(PROGRAM)?;
    let hub = tls::hub_endpoints(
        &cfg.hub.addrs()?,
        &cfg.tls,
        cfg.crypto.profile,
        &cfg.hub.server_name,
    )
    .context("loading the node's TLS identity")?;
    // The API's TLS, when it has some, from the same provider layer as the hub's listener:
    // handshakes bounded and refusals logged; no CRL and no per-client connection limit.
    let api_tls = cfg
        .api
        .tls
        .as_ref()
        .map(|paths| tls::reload::Reloadable::load(paths, cfg.crypto.profile, 0))
        .transpose()
        .context("loading the API's TLS identity ([api] tls)")?;
    let token = CancellationToken::new();
    let node = Arc::new(Node::open(cfg, token.clone())?);
    node.signer.warn_on_expiry(
        &node.cfg.signing.cert,
        "clerks cannot sign for, send back or send documents",
    );
    let addr = api_listener.local_addr()?;
    let data = &node.cfg.node.data_dir;
    exchange_core::config::write_addr_file(data, "api.addr", addr)
        .with_context(|| format!("writing {}/api.addr", data.display()))?;
    tracing::info!(%addr, dept = %node.cfg.node.id, hub = %node.cfg.hub.shown(), "node API listening");

    let mut tasks = tokio::task::JoinSet::new();
    uplink::start(&mut tasks, Arc::clone(&node), hub, token.clone());
    tasks.spawn(office::auto_remind_loop(Arc::clone(&node), token.clone()));
    metrics::start(&node, token.clone()).await?;
    let (health, health_svc, reflection, reflection_alpha) = exchange_core::tooling::services::<
        exchange_proto::v1::node_server::NodeServer<api::NodeApi>,
    >()
    .await?;

    let stop = token.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        exchange_core::sdnotify::stopping();
        health.stopping().await;
        stop.cancel();
    };
    let router = tonic::transport::Server::builder()
        .add_service(api::service(Arc::clone(&node)))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_alpha);
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match api_tls {
            Some(api_tls) => {
                let on_refused = |r: tls::acceptor::RefusedHandshake| {
                    let presented = r
                        .presented
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    tracing::warn!(peer = %r.peer, presented, reason = %r.reason,
                        "API TLS handshake refused");
                };
                let incoming =
                    tls::acceptor::incoming(api_listener, api_tls, on_refused, token.clone());
                Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
            }
            None => {
                // No Nagle delay on the API either (small request/response messages); the
                // TLS accept loop sets it too.
                let incoming = tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::TcpListenerStream::new(api_listener),
                    |s| {
                        s.inspect(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        })
                    },
                );
                Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
            }
        };
    exchange_core::sdnotify::ready(); // every listener is bound and the services are built
    exchange_core::shutdown::drain(server, &token)
        .await
        .context("serving the node API")?;
    token.cancel();
    let grace = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    });
    if grace.await.is_err() {
        tracing::warn!("uplink tasks did not stop within 10 s; their work stays queued");
    }
    tracing::info!("node stopped");
    Ok(())
}

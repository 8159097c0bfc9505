//! One simulated department: its identities, its connection to the hub, and what it does with
//! each push (the receiving half of `exchange-node`'s uplink).

use std::{
    fs::OpenOptions,
    io::Write,
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, anyhow, bail};
use exchange_certs::{Authority, CA_CERT_FILE, Identity, Validity};
use exchange_core::{
    backoff::Backoff,
    config::TlsPaths,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::Principal,
    ids::{Address, DeptId},
    signing::{Digest, SigningKey},
    time::now_ms,
    tls::{HubEndpoint, hub_endpoint},
};
use exchange_proto::v1::{self as pb, hub_client::HubClient, subscribe_request::Msg};
use rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{Shared, SimEvent};
use crate::clock::now_us;

/// Largest gRPC message, as the real node's hub client allows.
const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Lifetime of a simulated department's certificates.
const VALID_DAYS: i64 = 7;
/// The name the hub's certificate must carry (every hub certificate has `localhost`).
const HUB_NAME: &str = "localhost";

/// A simulated department: its identity and its way to the hub.
pub(super) struct SimNode {
    dept: DeptId,
    /// A lazily connecting channel to the hub, which reconnects when used after a failure.
    channel: Channel,
    signer: SigningKey,
}

/// What the simulated departments are issued from, and where their files go.
pub(super) struct Issuer {
    /// The exchange CA, of whichever profile the exchange has.
    pub(super) ca: Authority,
    /// The CA directory (its `ca.pem` is every department's trust anchor).
    pub(super) ca_dir: PathBuf,
    /// One directory per department is made here for its TLS certificates and keys.
    pub(super) dir: PathBuf,
    /// The hub.
    pub(super) hub: SocketAddr,
}

/// Issues a TLS and a document-signing identity for each of `depts`, on every CPU, and makes
/// each department's channel to the hub.
pub(super) async fn issue_all(issuer: Arc<Issuer>, depts: Vec<DeptId>) -> Result<Vec<SimNode>> {
    std::fs::create_dir_all(&issuer.dir)
        .with_context(|| format!("creating {}", issuer.dir.display()))?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let per = depts.len().div_ceil(cpus).max(1);
    let mut tasks = Vec::new();
    for chunk in depts.chunks(per) {
        let (issuer, chunk) = (Arc::clone(&issuer), chunk.to_vec());
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|d| issue(&issuer, d))
                .collect::<Result<Vec<_>>>()
        }));
    }
    let mut nodes = Vec::with_capacity(depts.len());
    for t in tasks {
        for (dept, endpoint, signer) in t.await.context("issuing identities")?? {
            nodes.push(SimNode {
                dept,
                channel: endpoint.connect_lazy(),
                signer,
            });
        }
    }
    Ok(nodes)
}

/// Both identities of `dept`, and its endpoint to the hub.
///
/// The TLS identity is written to files, because the connection goes through the provider
/// layer a real node uses (`exchange_core::tls::hub_endpoint`, which reads `[tls]` paths):
/// TLS 1.3 through rustls under the international profile, TLCP through Tongsuo under shangmi
/// (with its encryption pair, `tls-enc.pem`). The files are not fsynced (10,000 departments
/// would mean 20,000 to 40,000 synced files; they live and die with the scenario's temporary
/// directory). The document-signing key stays in memory.
fn issue(issuer: &Issuer, dept: DeptId) -> Result<(DeptId, HubEndpoint, SigningKey)> {
    let who = Principal::Dept(dept.clone());
    let validity = Validity::days_from_now(VALID_DAYS);
    let (tls, enc, signing) = match &issuer.ca {
        Authority::International(ca) => (
            ca.issue_tls(&who, &[], &[], validity)?,
            None,
            ca.issue_signing(&who, validity)?,
        ),
        #[cfg(feature = "shangmi")]
        Authority::Shangmi(ca) => {
            use exchange_core::crypto::sm::cert::CertUsage;
            (
                ca.issue_tls(&who, &[], &[], validity, CertUsage::Signing)?,
                Some(ca.issue_tls(&who, &[], &[], validity, CertUsage::Encryption)?),
                ca.issue_signing(&who, validity)?,
            )
        }
        other => bail!(
            "the CA is a {} CA, and this exchange-bench was built without its support (build \
             it with --features exchange-bench/shangmi)",
            other.profile()
        ),
    };
    let profile = issuer.ca.profile();

    let out = issuer.dir.join(dept.as_str());
    std::fs::create_dir(&out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key) = write_pair(&tls, &out, "tls")?;
    let (enc_cert, enc_key) = match &enc {
        Some(enc) => {
            let (c, k) = write_pair(enc, &out, "tls-enc")?;
            (Some(c), Some(k))
        }
        None => (None, None),
    };
    let paths = TlsPaths {
        ca: issuer.ca_dir.join(CA_CERT_FILE),
        cert,
        key,
        enc_cert,
        enc_key,
        crl: None,
        protocol: None,
    };
    let endpoint = hub_endpoint(issuer.hub, &paths, profile, HUB_NAME)
        .with_context(|| format!("the hub endpoint of {dept}"))?;

    let key = PrivatePkcs8KeyDer::from_pem_slice(signing.key_pem.as_bytes())
        .map_err(|e| anyhow!("signing key of {dept}: {e}"))?;
    let signer = SigningKey::from_der(key.secret_pkcs8_der(), signing.cert_der)
        .with_context(|| format!("signing key of {dept}"))?;
    Ok((dept, endpoint, signer))
}

/// Writes `<name>.pem` (0644) and `<name>.key` (0600 from creation) into `dir`; returns their
/// paths.
fn write_pair(id: &Identity, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    write_new(&key, id.key_pem.as_bytes(), 0o600)?;
    write_new(&cert, id.cert_pem.as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// Creates `path` (which must not exist) with `mode` and writes `contents`, without fsync.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .with_context(|| format!("writing {}", path.display()))
}

/// Keeps `node` connected and serving its pushes, reconnecting after any failure.
pub(super) async fn run(node: SimNode, shared: Arc<Shared>) {
    let mut counted = false;
    let mut backoff = Backoff::default();
    loop {
        if let Err(e) = session(&node, &shared, &mut counted).await {
            eprintln!("{}: {e:#}; reconnecting", node.dept);
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One connection and `Subscribe` stream, until it ends.
async fn session(node: &SimNode, shared: &Shared, counted: &mut bool) -> Result<()> {
    let permit = shared.connect_limit.acquire().await?;
    // The channel connects (TCP, the handshake, HTTP/2) on this first call.
    let mut client = HubClient::new(node.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (acks, rx) = mpsc::channel(4);
    let mut pushes = client
        .subscribe(ReceiverStream::new(rx))
        .await
        .context("connecting and subscribing")?
        .into_inner();
    drop(permit);
    if !*counted {
        *counted = true;
        shared.connected_once();
    }
    while let Some(push) = pushes.message().await? {
        let ack = match push.item {
            Some(pb::hub_push::Item::Delivery(d)) => receive(node, shared, &mut client, d).await?,
            Some(pb::hub_push::Item::Evidence(_)) => pb::Ack::default(), // we send nothing
            // The benchmark never recalls: a recall found nothing held here.
            Some(pb::hub_push::Item::Notice(_)) => pb::Ack {
                recall: pb::RecallOutcome::NotHeld.into(),
                ..Default::default()
            },
            // The benchmark's receipts are always valid: a refusal is a bug worth stopping for.
            Some(pb::hub_push::Item::AckRefused(r)) => {
                bail!(
                    "the hub refused an acknowledgement of {}: {}",
                    r.doc_id,
                    r.reason
                )
            }
            None => bail!("the hub pushed an empty item"),
        };
        let ack = pb::Ack {
            seq: push.seq,
            ..ack
        };
        acks.send(pb::SubscribeRequest {
            msg: Some(Msg::Ack(ack)),
        })
        .await
        .map_err(|_| anyhow!("the ack stream closed"))?;
    }
    Ok(())
}

fn refuse(node: &SimNode, shared: &Shared, reason: String) -> pb::Ack {
    shared.report(SimEvent::Refused {
        dept: node.dept.to_string(),
        reason: reason.clone(),
    });
    pb::Ack {
        refused: reason,
        ..Default::default()
    }
}

/// Verifies, fetches, stores and signs the receipt of one delivery; returns the ack.
async fn receive(
    node: &SimNode,
    shared: &Shared,
    client: &mut HubClient<Channel>,
    d: pb::Delivery,
) -> Result<pb::Ack> {
    let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let Some(wire) = d.document else {
        return Ok(refuse(node, shared, "delivery without a document".into()));
    };
    let doc = match SignedDoc::verify(wire, &shared.verifier, now) {
        Ok(doc) => doc,
        Err(e) => return Ok(refuse(node, shared, format!("sender signature: {e}"))),
    };
    let acceptance = d
        .acceptance
        .map(|a| SignedEvidence::verify(a, &shared.verifier, now));
    match acceptance {
        Some(Ok(ev)) if ev.evidence.kind == EvidenceKind::Accepted && ev.is_about(&doc) => {}
        _ => {
            return Ok(refuse(
                node,
                shared,
                "hub acceptance does not verify".into(),
            ));
        }
    }
    if doc
        .header
        .role_of(&Address::local(node.dept.clone()))
        .is_none()
    {
        return Ok(refuse(node, shared, "not addressed to us".into()));
    }
    let mut parts = Vec::with_capacity(doc.header.parts.len());
    for p in &doc.header.parts {
        let bytes = fetch(client, &doc, p.sha256).await?;
        let matches = Digest::with(doc.header.digest, &bytes).is_ok_and(|d| d == p.sha256);
        if bytes.len() as u64 != p.size || !matches {
            return Ok(refuse(
                node,
                shared,
                format!("content {} does not match", p.name),
            ));
        }
        parts.push(bytes);
    }
    let receipt = SignedEvidence::seal(
        Evidence::about(
            &doc,
            EvidenceKind::Delivered,
            Some(Address::local(node.dept.clone())),
            now_ms(),
        ),
        &node.signer,
    )
    .context("signing the receipt")?
    .wire;
    let doc_id = doc.header.id.to_string();
    let receipt = shared
        .inbox
        .put(node.dept.clone(), doc_id.clone(), parts, receipt)
        .await
        .context("committing to the inbox")?;
    shared.report(SimEvent::Received {
        dept: node.dept.to_string(),
        doc_id,
        at_us: now_us(),
    });
    Ok(pb::Ack {
        delivery_receipt: Some(receipt),
        ..Default::default()
    })
}

/// Downloads one part's content whole (simulated documents are small).
async fn fetch(
    client: &mut HubClient<Channel>,
    doc: &SignedDoc,
    sha256: Digest,
) -> Result<Vec<u8>> {
    let mut stream = client
        .get_blob(pb::GetBlobRequest {
            doc_id: doc.header.id.to_string(),
            sha256: sha256.0.to_vec(),
            offset: 0,
        })
        .await
        .context("GetBlob")?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.context("GetBlob")? {
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes)
}

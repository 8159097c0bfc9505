//! One simulated department: its identities, its connection to the hub, and what it does with
//! each push (the receiving half of `exchange-node`'s uplink).

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use exchange_certs::{Ca, Validity};
use exchange_core::{
    backoff::Backoff,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::Principal,
    ids::DeptId,
    signing::{Digest, SigningKey},
    time::now_ms,
};
use exchange_proto::v1::{self as pb, hub_client::HubClient, subscribe_request::Msg};
use rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::{Shared, SimEvent};
use crate::clock::now_us;

/// Largest gRPC message, as the real node's hub client allows.
const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Lifetime of a simulated department's certificates.
const VALID_DAYS: i64 = 7;

/// A simulated department's identity.
pub(super) struct SimNode {
    dept: DeptId,
    tls: ClientTlsConfig,
    signer: SigningKey,
}

/// Issues a TLS and a document-signing identity for each of `depts`, on every CPU.
pub(super) async fn issue_all(ca: Arc<Ca>, depts: Vec<DeptId>) -> Result<Vec<SimNode>> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let per = depts.len().div_ceil(cpus).max(1);
    let mut tasks = Vec::new();
    for chunk in depts.chunks(per) {
        let (ca, chunk) = (Arc::clone(&ca), chunk.to_vec());
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|d| issue(&ca, d))
                .collect::<Result<Vec<_>>>()
        }));
    }
    let mut nodes = Vec::with_capacity(depts.len());
    for t in tasks {
        nodes.extend(t.await.context("issuing identities")??);
    }
    Ok(nodes)
}

/// Both identities of `dept`, in memory only. The daemons read theirs from files through
/// `exchange_core::tls::client_config`; 10,000 simulated departments would mean 40,000
/// fsynced key files, so the same client configuration (trust only the exchange CA, present
/// the department's certificate, expect the hub's name `localhost`) is built from PEM here.
fn issue(ca: &Ca, dept: DeptId) -> Result<SimNode> {
    let who = Principal::Dept(dept.clone());
    let validity = Validity::days_from_now(VALID_DAYS);
    let tls = ca.issue_tls(&who, &[], &[], validity)?;
    let signing = ca.issue_signing(&who, validity)?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(signing.key_pem.as_bytes())
        .map_err(|e| anyhow!("signing key of {dept}: {e}"))?;
    let signer = SigningKey::from_der(key.secret_pkcs8_der(), signing.cert_der)
        .with_context(|| format!("signing key of {dept}"))?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.cert_pem()))
        .identity(Identity::from_pem(tls.cert_pem, tls.key_pem))
        .domain_name("localhost");
    Ok(SimNode { dept, tls, signer })
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
    let endpoint = exchange_core::tls::endpoint(shared.hub, node.tls.clone())?;
    let permit = shared.connect_limit.acquire().await?;
    let channel = endpoint.connect().await.context("connecting")?;
    let mut client = HubClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (acks, rx) = mpsc::channel(4);
    let mut pushes = client
        .subscribe(ReceiverStream::new(rx))
        .await
        .context("subscribing")?
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
    if doc.header.role_of(&node.dept).is_none() {
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
            Some(node.dept.clone()),
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

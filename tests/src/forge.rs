//! Hand-made protocol messages for negative tests: headers built and signed as a test wants,
//! without the validation `SignedDoc::seal` applies, sent straight to the hub over a real mutual
//! TLS connection, as a misbehaving or compromised node would.

use std::{collections::BTreeSet, path::Path};

use anyhow::{Context as _, Result};
use exchange_core::{
    config::{HubConfig, NodeConfig},
    document::SignedDoc,
    ids::DocumentId,
    signing::{Context, Digest, SigningKey},
    time::now_ms,
};
use exchange_proto::v1 as pb;
use tonic::{Status, transport::Channel};

use crate::{DEADLINE, TestExchange};

/// A hub client, as a node would hold it.
pub type Hub = pb::hub_client::HubClient<Channel>;

/// A body part whose content is `data`: its size and SHA-256.
pub fn part(data: &[u8]) -> pb::Part {
    pb::Part {
        role: pb::PartRole::Body.into(),
        name: "body.txt".into(),
        media_type: "text/plain".into(),
        size: data.len() as u64,
        sha256: Digest::of(data).0.to_vec(),
    }
}

/// A header from `sender` to `to` with `title` and `parts`, and a fresh id.
pub fn header(sender: &str, to: &[&str], title: &str, parts: Vec<pb::Part>) -> pb::DocumentHeader {
    pb::DocumentHeader {
        format: 1,
        id: DocumentId::new().to_string(),
        sender: sender.to_owned(),
        created_at_ms: now_ms(),
        metadata: Some(pb::DocumentMetadata {
            title: title.to_owned(),
            to_depts: to.iter().map(|s| (*s).to_owned()).collect(),
            doc_type: pb::DocumentType::Notice.into(),
            ..Default::default()
        }),
        parts,
        // SHA-256: the international profile's header, as every header before the field.
        digest_algorithm: String::new(),
    }
}

/// `header` encoded and signed with `key`, whatever it says.
pub fn sign(header: &pb::DocumentHeader, key: &SigningKey) -> pb::SignedDocument {
    let bytes = prost::Message::encode_to_vec(header);
    let signature = key
        .sign(Context::DocumentHeader, &bytes)
        .expect("the key signs (Ed25519, or SM2 through Tongsuo)");
    pb::SignedDocument {
        header: bytes,
        signature: Some(signature),
    }
}

/// A department's document-signing key, read from its node's files.
pub fn signing_key(ex: &TestExchange, dept: &str) -> Result<SigningKey> {
    let cfg: NodeConfig = exchange_core::config::load(ex.node_config(dept))?;
    Ok(SigningKey::load(&cfg.signing)?)
}

/// The hub's document-signing key (its acceptances and refusals), read from its files.
pub fn hub_signing_key(ex: &TestExchange) -> Result<SigningKey> {
    let cfg: HubConfig = exchange_core::config::load(&ex.hub_config)?;
    Ok(SigningKey::load(&cfg.signing)?)
}

/// `Submit` of `doc` on `hub`.
pub async fn submit(hub: &mut Hub, doc: pb::SignedDocument) -> Result<pb::SubmitResponse, Status> {
    let resp = hub
        .submit(pb::SubmitRequest {
            document: Some(doc),
            ..Default::default()
        })
        .await?;
    Ok(resp.into_inner())
}

/// `PutBlob` declaring `sha256` and `size`, then sending `chunks` from offset 0.
pub async fn put_blob(
    hub: &mut Hub,
    sha256: Digest,
    size: u64,
    chunks: Vec<Vec<u8>>,
) -> Result<(), Status> {
    let mut offset = 0u64;
    let msgs: Vec<pb::BlobChunk> = chunks
        .into_iter()
        .map(|data| {
            let chunk = pb::BlobChunk {
                sha256: sha256.0.to_vec(),
                size,
                offset,
                data,
            };
            offset += chunk.data.len() as u64;
            chunk
        })
        .collect();
    hub.put_blob(tokio_stream::iter(msgs)).await.map(|_| ())
}

/// The complete blobs in the hub's store (their SHA-256 names), in clear (`sha256/`) or
/// encrypted at rest (`sealed/`).
pub fn hub_blobs(hub_data: &Path) -> BTreeSet<String> {
    ["sha256", "sealed"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(hub_data.join("blobs").join(dir)).into_iter())
        .flat_map(|d| d.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The next message on a `Subscribe` stream, within the deadline.
pub async fn next_push(pushes: &mut tonic::Streaming<pb::HubPush>) -> Result<pb::HubPush> {
    tokio::time::timeout(DEADLINE, pushes.message())
        .await
        .context("no push within the deadline")??
        .context("the hub ended the stream")
}

/// The document a pushed delivery carries.
pub fn delivered_doc(push: &pb::HubPush) -> Result<SignedDoc> {
    match &push.item {
        Some(pb::hub_push::Item::Delivery(d)) => Ok(SignedDoc::decode(
            d.document
                .clone()
                .context("a delivery without its document")?,
        )?),
        other => anyhow::bail!("expected a delivery, got {other:?}"),
    }
}

/// A document from a to b with its content inline, signed with `key` (its id, and the `Submit`
/// that carries it); `edit` changes its header first.
pub fn inline_doc(
    key: &SigningKey,
    title: &str,
    edit: impl FnOnce(&mut pb::DocumentHeader),
) -> (String, pb::SubmitRequest) {
    let data = format!("content of {title}").into_bytes();
    let mut header = header("a", &["b"], title, vec![part(&data)]);
    edit(&mut header);
    let req = pb::SubmitRequest {
        document: Some(sign(&header, key)),
        content: vec![pb::InlineContent {
            sha256: Digest::of(&data).0.to_vec(),
            data,
        }],
    };
    (header.id, req)
}

//! Submitting documents through a node's local API, as a department system does, and reading
//! them back.
//!
//! Content is pseudo-random bytes from a seed, generated chunk by chunk as the stream is sent:
//! a 1 GiB document never sits in the bench's memory, every document has content of its own
//! (no deduplication by the content-addressed blob stores), and the expected digest can be
//! recomputed from the seed.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use exchange_core::{
    blob::CHUNK_SIZE,
    crypto::DigestAlgorithm,
    signing::{Digest, Hasher},
};
use exchange_proto::v1::{self as pb, submit_document_request::Msg};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::clock::now_us;

/// A node API client.
pub type NodeClient = pb::node_client::NodeClient<Channel>;

/// A document to submit.
#[derive(Debug, Clone)]
pub struct DocSpec {
    /// 主送 department ids.
    pub to: Vec<String>,
    /// 标题.
    pub title: String,
    /// Size of its one part (the body).
    pub bytes: u64,
    /// Seed of its content.
    pub seed: u64,
}

/// A submission the node acknowledged.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The id the node gave it.
    pub doc_id: String,
    /// Its recipients.
    pub to: Vec<String>,
    /// When the submit call started.
    pub start_us: i64,
    /// When the node acknowledged it (durable in its outbox).
    pub end_us: i64,
}

/// The content of a document: `bytes` pseudo-random bytes from `seed`, in chunks of the
/// exchange's chunk size.
#[derive(Debug)]
pub struct Content {
    rng: fastrand::Rng,
    left: u64,
}

impl Content {
    /// The content of `bytes` bytes from `seed`.
    pub fn new(bytes: u64, seed: u64) -> Self {
        Content {
            rng: fastrand::Rng::with_seed(seed),
            left: bytes,
        }
    }

    /// The digest (`alg`: the exchange profile's) of the whole content, regenerated.
    pub fn digest(alg: DigestAlgorithm, bytes: u64, seed: u64) -> Result<Digest> {
        let mut h = Hasher::new(alg)?;
        for chunk in Content::new(bytes, seed) {
            h.update(&chunk)?;
        }
        Ok(h.finish()?)
    }
}

impl Iterator for Content {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let n = usize::try_from(self.left.min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE);
        self.left -= n as u64;
        let mut data = vec![0u8; n];
        self.rng.fill(&mut data);
        Some(data)
    }
}

/// Submits `spec` through the node API; returns once the node has acknowledged it.
pub async fn submit(client: &mut NodeClient, spec: DocSpec) -> Result<Submitted> {
    let metadata = pb::DocumentMetadata {
        title: spec.title.clone(),
        to_depts: spec.to.clone(),
        doc_type: pb::DocumentType::Notice.into(),
        urgency: pb::Urgency::Normal.into(),
        ..Default::default()
    };
    let draft = pb::DocumentDraft {
        idempotency_key: String::new(),
        metadata: Some(metadata),
        parts: vec![pb::PartSpec {
            role: pb::PartRole::Body.into(),
            name: "body.bin".to_owned(),
            media_type: "application/octet-stream".to_owned(),
            size: spec.bytes,
        }],
    };
    let chunks = Content::new(spec.bytes, spec.seed).map(|data| pb::SubmitDocumentRequest {
        msg: Some(Msg::Chunk(pb::PartChunk { part: 0, data })),
    });
    let msgs = std::iter::once(pb::SubmitDocumentRequest {
        msg: Some(Msg::Draft(draft)),
    })
    .chain(chunks);
    let start_us = now_us();
    let resp = client
        .submit(tokio_stream::iter(msgs))
        .await
        .with_context(|| format!("submitting {:?}", spec.title))?;
    Ok(Submitted {
        doc_id: resp.into_inner().doc_id,
        to: spec.to,
        start_us,
        end_us: now_us(),
    })
}

/// Closed loop: each sender submits its documents with at most `window` submissions
/// outstanding. Returns every acknowledged submission; fails at the first refusal.
pub async fn windowed(
    clients: &[NodeClient],
    jobs: Vec<Vec<DocSpec>>,
    window: usize,
) -> Result<Vec<Submitted>> {
    let mut set = JoinSet::new();
    for (client, specs) in clients.iter().zip(jobs) {
        let queue = Arc::new(Mutex::new(specs.into_iter()));
        for _ in 0..window.max(1) {
            let (mut client, queue) = (client.clone(), Arc::clone(&queue));
            set.spawn(async move {
                let mut done = Vec::new();
                loop {
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                    let Some(spec) = next else {
                        return Ok::<_, anyhow::Error>(done);
                    };
                    done.push(submit(&mut client, spec).await?);
                }
            });
        }
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.context("a submitting task panicked")??);
    }
    Ok(all)
}

/// Open loop: submits `specs[i]` through `clients[sender]` at `start + i / rate`, whether or
/// not earlier submissions have been answered (so a slow answer cannot hide queueing: no
/// coordinated omission). Returns every acknowledged submission.
pub async fn paced(
    clients: &[NodeClient],
    specs: Vec<(usize, DocSpec)>,
    rate: f64,
) -> Result<Vec<Submitted>> {
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let start = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for (i, (sender, spec)) in specs.into_iter().enumerate() {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let mut client = clients
            .get(sender)
            .context("no client for that sender")?
            .clone();
        set.spawn(async move { submit(&mut client, spec).await });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.push(r.context("a submitting task panicked")??);
    }
    Ok(all)
}

/// Reads a received document's content back through the node API; returns its digest (`alg`)
/// and size.
pub async fn fetch_digest(
    client: &mut NodeClient,
    doc_id: &str,
    alg: DigestAlgorithm,
) -> Result<(Digest, u64)> {
    let mut stream = client
        .fetch_document(pb::FetchDocumentRequest {
            doc_id: doc_id.to_owned(),
            with_content: true,
        })
        .await
        .with_context(|| format!("fetching {doc_id}"))?
        .into_inner();
    let mut h = Hasher::new(alg)?;
    let mut size = 0u64;
    while let Some(msg) = stream.message().await? {
        if let Some(pb::fetch_document_response::Msg::Chunk(c)) = msg.msg {
            ensure!(c.part == 0, "{doc_id}: unexpected part {}", c.part);
            h.update(&c.data)?;
            size += c.data.len() as u64;
        }
    }
    Ok((h.finish()?, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_chunked_reproducible_and_seed_dependent() {
        let sizes: Vec<usize> = Content::new(CHUNK_SIZE as u64 + 5, 1)
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [CHUNK_SIZE, 5]);
        let a: Vec<u8> = Content::new(100, 1).flatten().collect();
        let sha = |seed| Content::digest(DigestAlgorithm::Sha256, 100, seed).unwrap();
        assert_eq!(Digest::of(&a), sha(1));
        assert_ne!(sha(1), sha(2));
    }
}

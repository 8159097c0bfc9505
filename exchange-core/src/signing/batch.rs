//! Signing many statements with one signature, as they arrive.
//!
//! Callers on a busy path (a hub accepting documents, a node acknowledging deliveries, a node
//! sealing submissions) hand their statement to a [`BatchSigner`] and wait. One task signs: it
//! takes whatever has queued since its last signature — one statement when traffic is light,
//! hundreds under load — and signs the Merkle root of them all ([`SigningKey::sign_batch`]).
//!
//! When the signer is idle, a statement is signed at once. When it is busy (it signed less than
//! [`BUSY`] ago), it lingers up to [`LINGER`] (tokio's timer rounds it up to its next
//! millisecond tick) for more statements before it signs: under load statements arrive one at a
//! time, spread out, and a signer that never waited would sign them one by one. The linger is
//! the only latency batching adds, and only under load (docs/benchmarks.md has the trade
//! measured: a 2 ms linger bought more documents per second but cost more latency than 1 ms).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use exchange_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use super::{Context, SignError, SigningKey, merkle};

/// Most statements under one signature. Bounds the path length (11 hashes) and the time
/// the first caller of a batch waits for the tree.
const MAX_BATCH: usize = 2_048;

/// How long a busy signer waits for more statements before it signs a batch.
pub(super) const LINGER: Duration = Duration::from_millis(1);

/// A signer that signed less than this long ago is busy, and lingers.
const BUSY: Duration = Duration::from_millis(5);

struct Job {
    leaf: merkle::Hash,
    reply: oneshot::Sender<Result<pb::Signature, SignError>>,
}

/// Signs statements in batches with one key; clones share the signer.
#[derive(Clone)]
pub struct BatchSigner {
    key: Arc<SigningKey>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for BatchSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSigner")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl BatchSigner {
    /// Starts the signing task on the current tokio runtime; it ends when every clone is
    /// dropped. Outside a runtime (a command-line tool) there is no task, and every statement
    /// is signed alone.
    pub fn spawn(key: Arc<SigningKey>) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(run(Arc::clone(&key), rx));
        }
        BatchSigner { key, jobs }
    }

    /// The key it signs with.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A signature over `bytes` under `context`, made together with whatever else is waiting:
    /// a batch signature ([`super::Scheme::batch_name`]) with this statement's inclusion path.
    /// Should the signing task be gone (the runtime is shutting down), signs this statement
    /// alone. Fails only if the crypto module does.
    pub async fn sign(&self, context: Context, bytes: &[u8]) -> Result<pb::Signature, SignError> {
        let leaf = self.key.leaf(context, bytes)?;
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { leaf, reply }).is_ok()
            && let Ok(sig) = answer.await
        {
            return sig;
        }
        self.key.sign(context, bytes)
    }
}

async fn run(key: Arc<SigningKey>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::new();
    // When the last batch was signed.
    let mut last: Option<Instant> = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if last.is_some_and(|t| t.elapsed() < BUSY) {
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    () = &mut linger => break,
                    got = rx.recv_many(&mut batch, room) => if got == 0 { break },
                }
            }
        }
        let jobs = std::mem::take(&mut batch);
        let leaves: Vec<merkle::Hash> = jobs.iter().map(|j| j.leaf).collect();
        let key = Arc::clone(&key);
        // Off the async workers: a large batch is a few hundred microseconds of hashing.
        let signed = if jobs.len() > 64 {
            // A panicked job answers no one: each caller then signs its statement alone.
            tokio::task::spawn_blocking(move || key.sign_batch(&leaves))
                .await
                .unwrap_or_else(|_| Ok(Vec::new()))
        } else {
            key.sign_batch(&leaves)
        };
        match signed {
            Ok(sigs) => {
                for (job, sig) in jobs.into_iter().zip(sigs) {
                    // A caller that gave up no longer needs its signature.
                    let _ = job.reply.send(Ok(sig));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(SignError::Crypto(why.clone())));
                }
            }
        }
        last = Some(Instant::now());
    }
}

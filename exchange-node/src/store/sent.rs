//! What this department sent: the typed [`SentRecord`] (converted from and to the stored
//! `SentDocument` here, and nowhere else), its submission, and the hub's answers about it — its
//! acceptance or refusal, and each recipient's evidence.

mod evidence;

use exchange_core::{
    document::{RecipientRole, SignedDoc},
    ids::{Address, DocumentId},
    signing::Digest,
    state::DeliveryState,
    store::{
        Store, StoreError,
        kv::{ReadTables, Table},
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};

pub(crate) use evidence::{apply_evidence, apply_evidence_all, refused};

use super::{
    Effects, IDEMPOTENCY, SENT, all, outbox,
    record::{self, Record},
    stored_doc,
};

/// A document this department sent, with each recipient's timeline.
#[derive(Debug, Clone)]
pub(crate) struct SentRecord {
    /// The signed document as submitted.
    pub(crate) doc: SignedDoc,
    /// The hub's signed acceptance, once it took the document.
    pub(crate) acceptance: Option<pb::SignedEvidence>,
    /// One row per recipient: the header's, then those added later (补发).
    pub(crate) recipients: Vec<SentRecipient>,
    /// When it was queued for the hub (the start of every latency).
    pub(crate) queued_at_ms: i64,
    /// Why the hub refused the document at submission; empty unless it did.
    pub(crate) refused: String,
    /// The hub's signed REFUSED evidence, when it gave one.
    pub(crate) refusal: Option<pb::SignedEvidence>,
    /// Our signed RECALL (撤回), once recalled.
    pub(crate) recall: Option<pb::SignedEvidence>,
    /// What of our latest statements (a recall, a reminder) the hub refused for good, and why;
    /// empty unless it did.
    pub(crate) hub_refused: String,
    /// The RELAYED of each linked exchange's hub that took custody (docs/federation.md).
    pub(crate) relays: Vec<pb::SignedEvidence>,
}

/// One recipient's delivery of a sent document.
#[derive(Debug, Clone)]
pub(crate) struct SentRecipient {
    /// The recipient, as the header names it (`dept@exchange` for one of a linked exchange).
    pub(crate) dept: Address,
    /// Whether it is a copy (抄送) recipient.
    pub(crate) cc: bool,
    /// Where its delivery stands.
    pub(crate) state: DeliveryState,
    /// When the hub accepted it for this recipient (0: not yet).
    pub(crate) accepted_at_ms: i64,
    /// When it reached the recipient's node (0: not yet).
    pub(crate) delivered_at_ms: i64,
    /// When a clerk there signed for it (签收; 0: not).
    pub(crate) confirmed_at_ms: i64,
    /// When it was returned (退回), not delivered or refused (0: not).
    pub(crate) rejected_at_ms: i64,
    /// The recipient's clerk who signed for or returned it.
    pub(crate) clerk: String,
    /// The recipient's reason or note, or the hub's reason for refusing an addition.
    pub(crate) reason: String,
    /// The recipient's evidence, as received (for the evidence bundle).
    pub(crate) evidence: Vec<pb::SignedEvidence>,
    /// Our RECIPIENT_ADDED, for a recipient added later (补发).
    pub(crate) added: Option<pb::SignedEvidence>,
    /// How many reminders (催办) were sent to it.
    pub(crate) reminders: u32,
    /// When the last reminder was sent (0: never).
    pub(crate) last_reminded_at_ms: i64,
    /// When the recall ended its delivery (withdrawn, recalled or acknowledged; 0: not).
    pub(crate) recall_done_at_ms: i64,
    /// When this node reminded it by itself (自动催办), once (0: not yet).
    pub(crate) auto_reminded_at_ms: i64,
}

impl SentRecord {
    /// A document just sealed: every recipient of its header queued.
    fn new(doc: SignedDoc, queued_at_ms: i64) -> Self {
        let recipients = doc
            .header
            .recipients
            .iter()
            .map(|r| SentRecipient::queued(r.addr.clone(), r.role == RecipientRole::Cc))
            .collect();
        SentRecord {
            doc,
            acceptance: None,
            recipients,
            queued_at_ms,
            refused: String::new(),
            refusal: None,
            recall: None,
            hub_refused: String::new(),
            relays: Vec::new(),
        }
    }
}

impl Record for SentRecord {
    type Stored = st::SentDocument;
    const TABLE: Table = SENT;

    fn from_stored(id: &str, m: st::SentDocument) -> Result<Self, StoreError> {
        let what = format!("sent {id}");
        let recipients = m
            .recipients
            .into_iter()
            .map(|r| SentRecipient::from_stored(&what, r))
            .collect::<Result<_, _>>()?;
        Ok(SentRecord {
            doc: stored_doc(&what, m.document)?,
            acceptance: m.acceptance,
            recipients,
            queued_at_ms: m.queued_at_ms,
            refused: m.refused,
            refusal: m.refusal,
            recall: m.recall,
            hub_refused: m.hub_refused,
            relays: m.relays,
        })
    }

    fn into_stored(self) -> st::SentDocument {
        st::SentDocument {
            document: Some(self.doc.wire),
            acceptance: self.acceptance,
            recipients: self
                .recipients
                .into_iter()
                .map(SentRecipient::into_stored)
                .collect(),
            queued_at_ms: self.queued_at_ms,
            refused: self.refused,
            refusal: self.refusal,
            recall: self.recall,
            hub_refused: self.hub_refused,
            relays: self.relays,
        }
    }
}

impl SentRecipient {
    /// A recipient whose delivery has not reached the hub yet.
    pub(crate) fn queued(dept: Address, cc: bool) -> Self {
        SentRecipient {
            dept,
            cc,
            state: DeliveryState::Queued,
            accepted_at_ms: 0,
            delivered_at_ms: 0,
            confirmed_at_ms: 0,
            rejected_at_ms: 0,
            clerk: String::new(),
            reason: String::new(),
            evidence: Vec::new(),
            added: None,
            reminders: 0,
            last_reminded_at_ms: 0,
            recall_done_at_ms: 0,
            auto_reminded_at_ms: 0,
        }
    }

    fn from_stored(what: &str, r: st::SentRecipient) -> Result<Self, StoreError> {
        let dept: Address = r
            .dept
            .parse()
            .map_err(|e| StoreError::decode(what, format!("recipient {:?}: {e}", r.dept)))?;
        let state = DeliveryState::try_from_code(r.state)
            .map_err(|e| StoreError::decode(what, format!("recipient {dept}: {e}")))?;
        Ok(SentRecipient {
            dept,
            cc: r.cc,
            state,
            accepted_at_ms: r.accepted_at_ms,
            delivered_at_ms: r.delivered_at_ms,
            confirmed_at_ms: r.confirmed_at_ms,
            rejected_at_ms: r.rejected_at_ms,
            clerk: r.clerk,
            reason: r.reason,
            evidence: r.evidence,
            added: r.added,
            reminders: r.reminders,
            last_reminded_at_ms: r.last_reminded_at_ms,
            recall_done_at_ms: r.recall_done_at_ms,
            auto_reminded_at_ms: r.auto_reminded_at_ms,
        })
    }

    fn into_stored(self) -> st::SentRecipient {
        st::SentRecipient {
            dept: self.dept.to_string(),
            cc: self.cc,
            state: u32::from(self.state.code()),
            accepted_at_ms: self.accepted_at_ms,
            delivered_at_ms: self.delivered_at_ms,
            confirmed_at_ms: self.confirmed_at_ms,
            rejected_at_ms: self.rejected_at_ms,
            clerk: self.clerk,
            reason: self.reason,
            evidence: self.evidence,
            added: self.added,
            reminders: self.reminders,
            last_reminded_at_ms: self.last_reminded_at_ms,
            recall_done_at_ms: self.recall_done_at_ms,
            auto_reminded_at_ms: self.auto_reminded_at_ms,
        }
    }
}

/// The document id already submitted under `key`, if any.
pub(crate) async fn idempotent(
    store: &Store,
    key: String,
) -> Result<Option<DocumentId>, StoreError> {
    store.lookup(move |txn| idempotent_in(txn, &key)).await
}

/// The document id stored under idempotency key `key` in `txn`, if any.
fn idempotent_in(txn: &dyn ReadTables, key: &str) -> Result<Option<DocumentId>, StoreError> {
    let Some(v) = txn.get(IDEMPOTENCY, key.as_bytes())? else {
        return Ok(None);
    };
    let id = std::str::from_utf8(&v).map_err(|e| StoreError::decode(key, e))?;
    id.parse().map(Some).map_err(|e| StoreError::decode(key, e))
}

/// Records a sealed document as sent and queues it for the hub. With an idempotency key that
/// was used before, stores nothing and returns the earlier document's id.
pub(crate) async fn submit(
    store: &Store,
    doc: SignedDoc,
    key: Option<String>,
    inline: Vec<(Digest, Vec<u8>)>,
    at_ms: i64,
) -> Result<DocumentId, StoreError> {
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            if let Some(k) = &key
                && let Some(id) = idempotent_in(txn, k)?
            {
                return Ok(id);
            }
            let id = doc.header.id;
            let priority = doc.header.urgency.priority();
            record::write(txn, &sealer, id, SentRecord::new(doc.clone(), at_ms))?;
            for (digest, data) in &inline {
                crate::content::put(txn, &sealer, id, digest, data)?;
            }
            outbox::push_submit(txn, priority, id)?;
            if let Some(k) = &key {
                txn.put(IDEMPOTENCY, k.as_bytes(), id.to_string().as_bytes())?;
            }
            Ok(id)
        })
        .await
}

/// A document this department sent.
pub(crate) async fn sent(store: &Store, id: DocumentId) -> Result<Option<SentRecord>, StoreError> {
    record::one(store, id).await
}

/// Every document this department sent (for `ListSent`), in id order (UUIDv7: oldest first).
pub(crate) async fn all_sent(store: &Store) -> Result<Vec<SentRecord>, StoreError> {
    record::every(store).await
}

/// The documents sent at or after document id `from` (UUIDv7: by the time they were sent), for
/// a scan that must go on past a damaged record: one that cannot be read is logged, once per
/// scan, and left out.
pub(crate) async fn sent_since(store: &Store, from: String) -> Result<Vec<SentRecord>, StoreError> {
    let sealer = store.sealer().clone();
    let recs = store
        .read(move |txn| {
            all(txn, &sealer, SENT, &from, |key, m| {
                Ok(SentRecord::from_stored(key, m)
                    .inspect_err(|e| tracing::warn!(error = %e, "skipping a sent record"))
                    .ok())
            })
        })
        .await?;
    Ok(recs.into_iter().flatten().collect())
}

/// Changes the sent record of `id` with what goes with the change, in one transaction
/// ([`record::change`]); `f` gets `None` if this department did not send `id` (its effects
/// still apply).
pub(crate) async fn change_sent<R, E, F>(
    store: &Store,
    id: DocumentId,
    f: F,
) -> Result<(R, Option<u64>), E>
where
    F: Fn(Option<&mut SentRecord>, &mut Effects) -> Result<R, E> + Send + 'static,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    record::change(store, id, f).await
}

/// [`change_sent`] for several documents in one transaction; `f` sees only those this
/// department sent. Returns `f`'s results in the order of `ids`.
pub(crate) async fn change_sents<R, E, F>(
    store: &Store,
    ids: Vec<DocumentId>,
    f: F,
) -> Result<Vec<R>, E>
where
    F: Fn(&mut SentRecord, &mut Effects) -> Result<R, E> + Send + 'static,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            let mut out = Vec::new();
            for id in &ids {
                let Some(mut rec) = record::read::<SentRecord>(txn, &sealer, *id)? else {
                    continue;
                };
                let mut fx = Effects::default();
                out.push(f(&mut rec, &mut fx)?);
                record::write(txn, &sealer, *id, rec)?;
                fx.commit(txn)?;
            }
            Ok(out)
        })
        .await
}

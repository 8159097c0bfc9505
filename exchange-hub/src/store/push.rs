//! What pushing one queued delivery needs, read in one snapshot: the document, whether the
//! sender recalled it before the recipient had it, the sender's RECIPIENT_ADDED for a recipient
//! added later, and the content held inline.

use exchange_core::{
    document::EvidenceKind,
    ids::{DeptId, DocumentId},
    state::DeliveryState,
    store::{Store, StoreError, decode, kv::ReadTables, sealing::Sealer},
};
use exchange_proto::v1 as pb;

use super::{
    EVIDENCE, RECALLS, deliveries::read_delivery, documents::get_document, documents::inline_of,
    evidence_key, records::DocumentRecord,
};

/// What pushing document `id` to `dept` needs, read in one transaction.
pub(crate) struct PushView {
    /// The stored document and its acceptance.
    pub(crate) rec: DocumentRecord,
    /// The sender recalled it before `dept` had it: it is not pushed.
    pub(crate) withdrawn: bool,
    /// The sender's RECIPIENT_ADDED, if `dept` was added after sending.
    pub(crate) addition: Option<pb::SignedEvidence>,
    /// The content of the parts held inline (none when withdrawn).
    pub(crate) content: Vec<pb::InlineContent>,
}

/// The [`PushView`] of document `id` for `dept`; `None` if the document is not stored.
pub(crate) async fn push_view(
    store: &Store,
    id: DocumentId,
    dept: DeptId,
) -> Result<Option<PushView>, StoreError> {
    let sealer = store.sealer().clone();
    store
        .lookup(move |txn| push_view_in(txn, &sealer, id, &dept))
        .await
}

/// [`push_view`] inside `txn`.
pub(super) fn push_view_in(
    txn: &dyn ReadTables,
    sealer: &Sealer,
    id: DocumentId,
    dept: &DeptId,
) -> Result<Option<PushView>, StoreError> {
    let key = id.to_string();
    let Some(rec) = get_document(txn, sealer, &key)? else {
        return Ok(None);
    };
    let recalled = txn.get(RECALLS, key.as_bytes())?.is_some();
    let state = if recalled {
        read_delivery(txn, &key, dept.as_str())?.map(|d| d.state)
    } else {
        None
    };
    let withdrawn = recalled
        && matches!(
            state,
            Some(DeliveryState::Queued | DeliveryState::Accepted) | None
        );
    let addition = txn
        .get(
            EVIDENCE,
            &evidence_key(&key, dept.as_str(), EvidenceKind::RecipientAdded),
        )?
        .map(|v| decode(format!("addition {key}/{dept}"), &v))
        .transpose()?;
    let content = if withdrawn {
        Vec::new()
    } else {
        inline_of(txn, sealer, &rec.doc)?
    };
    Ok(Some(PushView {
        rec,
        withdrawn,
        addition,
        content,
    }))
}

//! What pushing one queued delivery needs, read in one snapshot: the document, whether the
//! sender recalled it before the recipient had it, the sender's RECIPIENT_ADDED for a recipient
//! added later, and the content held inline.

use exchange_core::{
    document::EvidenceKind,
    ids::{DeptId, DocumentId},
    state::DeliveryState,
    store::{Store, StoreError, decode},
};
use exchange_proto::v1 as pb;

use super::{
    DELIVERIES, EVIDENCE, RECALLS,
    documents::get_document,
    documents::inline_of,
    read_table,
    records::{DeliveryRecord, DocumentRecord},
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
    store
        .lookup(move |txn| {
            let key = id.to_string();
            let Some(rec) = get_document(txn, &key)? else {
                return Ok(None);
            };
            let recalled = match read_table(txn, RECALLS)? {
                Some(t) => t.get(key.as_str())?.is_some(),
                None => false,
            };
            let state = match read_table(txn, DELIVERIES)? {
                Some(t) if recalled => {
                    let v = t.get((key.as_str(), dept.as_str()))?;
                    v.map(|v| DeliveryRecord::decode(&key, dept.as_str(), v.value()))
                        .transpose()?
                        .map(|d| d.state)
                }
                _ => None,
            };
            let withdrawn = recalled
                && matches!(
                    state,
                    Some(DeliveryState::Queued | DeliveryState::Accepted) | None
                );
            let addition = match read_table(txn, EVIDENCE)? {
                Some(t) => t
                    .get((
                        key.as_str(),
                        dept.as_str(),
                        EvidenceKind::RecipientAdded.code(),
                    ))?
                    .map(|v| decode(format!("addition {key}/{dept}"), v.value()))
                    .transpose()?,
                None => None,
            };
            let content = if withdrawn {
                Vec::new()
            } else {
                inline_of(txn, &rec.doc)?
            };
            Ok(Some(PushView {
                rec,
                withdrawn,
                addition,
                content,
            }))
        })
        .await
}

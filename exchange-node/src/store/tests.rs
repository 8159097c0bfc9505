//! The node's state transitions on a real store in a temporary directory: what a clerk's action
//! and the hub's evidence do to the records, and that a record this build cannot read is an
//! error naming it.

use std::{collections::HashSet, sync::Arc};

use exchange_core::{
    document::{EvidenceKind, SignedDoc, SignedEvidence},
    signing::SigningKey,
    state::{ClerkAction, DeliveryState, InboxState},
    store::Store,
    time::now_ms,
};
use exchange_proto::store::v1 as st;

use super::*;
use crate::{error::NodeError, testing::Fixture};

/// `doc` (from a to b) as b's node stores it on delivery.
async fn deliver(f: &Fixture) -> SignedDoc {
    let doc = f.document();
    let at = now_ms();
    let acc = f.evidence(&doc, EvidenceKind::Accepted, None, at, &f.hub);
    let receipt = f.evidence(&doc, EvidenceKind::Delivered, Some("b"), at, &f.b);
    let arrived = crate::store::Arrived {
        doc: doc.clone(),
        acceptance: acc.wire,
        addition: None,
        foreign: None,
    };
    let (_, seq) = receive(&f.store, arrived, Vec::new(), receipt.wire, at)
        .await
        .unwrap();
    assert!(seq.is_some(), "a new delivery logs an event");
    doc
}

/// What b's clerk signs for `kind`.
fn clerk(
    key: &Arc<SigningKey>,
    kind: EvidenceKind,
) -> impl Fn(
    &SignedDoc,
    &exchange_core::ids::Address,
) -> Result<SignedEvidence, exchange_core::signing::SignError>
+ Send
+ 'static {
    let key = Arc::clone(key);
    move |doc, me| {
        let mut ev =
            exchange_core::document::Evidence::about(doc, kind, Some(me.clone()), now_ms());
        ev.clerk = "王芳".into();
        ev.reason = "不属于本单位职责范围".into();
        SignedEvidence::seal(ev, &key)
    }
}

async fn outbox(store: &Store) -> Vec<(QueueKey, OutboxItem)> {
    next_outbox(store, 100, HashSet::new())
        .await
        .unwrap()
        .into_iter()
        .map(|(key, item)| (key, item.unwrap()))
        .collect()
}

#[tokio::test]
async fn an_entry_confirmed_then_rejected_refuses_the_rejection_and_changes_nothing() {
    let f = Fixture::new();
    let id = deliver(&f).await.header.id;
    let confirm = clerk(&f.b, EvidenceKind::Confirmed);
    assert!(
        handle(
            &f.store,
            id,
            "b".parse().unwrap(),
            ClerkAction::Confirm,
            confirm
        )
        .await
        .unwrap()
    );
    let before = received(&f.store, id).await.unwrap().unwrap();
    assert_eq!(before.state, InboxState::Confirmed);

    let reject = clerk(&f.b, EvidenceKind::Rejected);
    let err = handle(
        &f.store,
        id,
        "b".parse().unwrap(),
        ClerkAction::Reject,
        reject,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NodeError::Inbox { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("document {id}: cannot go from confirmed to rejected")
    );
    let after = received(&f.store, id).await.unwrap().unwrap();
    assert_eq!(after.state, InboxState::Confirmed);
    assert_eq!(after.handled_at_ms, before.handled_at_ms);
    assert_eq!(after.handling, before.handling);
    assert_eq!(
        outbox(&f.store).await.len(),
        1,
        "only the confirmation is queued"
    );
}

#[tokio::test]
async fn repeating_a_clerks_action_is_harmless() {
    let f = Fixture::new();
    let id = deliver(&f).await.header.id;
    let confirm = || clerk(&f.b, EvidenceKind::Confirmed);
    assert!(
        handle(
            &f.store,
            id,
            "b".parse().unwrap(),
            ClerkAction::Confirm,
            confirm()
        )
        .await
        .unwrap()
    );
    let first = received(&f.store, id).await.unwrap().unwrap();
    assert!(
        !handle(
            &f.store,
            id,
            "b".parse().unwrap(),
            ClerkAction::Confirm,
            confirm()
        )
        .await
        .unwrap()
    );
    let again = received(&f.store, id).await.unwrap().unwrap();
    assert_eq!(again.handling, first.handling, "the first 签收 stands");
    assert_eq!(again.handled_at_ms, first.handled_at_ms);
    assert_eq!(outbox(&f.store).await.len(), 1, "nothing queued twice");
}

#[tokio::test]
async fn evidence_out_of_order_ends_confirmed_with_both_times() {
    let f = Fixture::new();
    let doc = f.document();
    let (id, t0) = (doc.header.id, now_ms());
    submit(&f.store, doc.clone(), None, Vec::new(), t0)
        .await
        .unwrap();
    let ev = |kind, to, at, key| f.evidence(&doc, kind, to, at, key);
    let accepted = ev(EvidenceKind::Accepted, None, t0 + 1, &f.hub);
    let confirmed = ev(EvidenceKind::Confirmed, Some("b"), t0 + 4, &f.b);
    let delivered = ev(EvidenceKind::Delivered, Some("b"), t0 + 2, &f.b);
    for e in [accepted, confirmed, delivered.clone()] {
        apply_evidence(&f.store, e, None).await.unwrap();
    }
    let rec = sent(&f.store, id).await.unwrap().unwrap();
    let b = &rec.recipients[0];
    assert_eq!(b.state, DeliveryState::Confirmed);
    assert_eq!((b.delivered_at_ms, b.confirmed_at_ms), (t0 + 2, t0 + 4));
    assert_eq!(b.evidence.len(), 2);
    // The late receipt again (a redelivery): harmless, and kept once.
    assert_eq!(
        apply_evidence(&f.store, delivered, None).await.unwrap(),
        None
    );
    let rec = sent(&f.store, id).await.unwrap().unwrap();
    assert_eq!(rec.recipients[0].evidence.len(), 2, "no duplicate evidence");
}

#[tokio::test]
async fn applying_evidence_with_an_outbox_key_removes_the_item_in_the_same_transaction() {
    let f = Fixture::new();
    let doc = f.document();
    submit(&f.store, doc.clone(), None, Vec::new(), now_ms())
        .await
        .unwrap();
    let items = outbox(&f.store).await;
    let [(key, OutboxItem::Submit(queued))] = items.as_slice() else {
        panic!("one submission queued: {items:?}");
    };
    assert_eq!(*queued, doc.header.id);

    // Evidence that cannot be applied leaves the item queued.
    let other = f.document();
    let stray = f.evidence(&other, EvidenceKind::Accepted, None, now_ms(), &f.hub);
    let err = apply_evidence(&f.store, stray, Some(*key))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::EvidenceForUnknown(_)), "{err}");
    assert_eq!(outbox(&f.store).await.len(), 1);

    let acc = f.evidence(&doc, EvidenceKind::Accepted, None, now_ms(), &f.hub);
    let seq = apply_evidence(&f.store, acc.clone(), Some(*key))
        .await
        .unwrap();
    assert!(seq.is_some());
    assert!(outbox(&f.store).await.is_empty());
    let rec = sent(&f.store, doc.header.id).await.unwrap().unwrap();
    assert_eq!(rec.acceptance, Some(acc.wire));
    assert_eq!(rec.recipients[0].state, DeliveryState::Accepted);
}

#[tokio::test]
async fn statements_applied_together_are_each_taken_or_refused_as_if_alone() {
    let f = Fixture::new();
    let (one, two, stranger) = (f.document(), f.document(), f.document());
    for d in [&one, &two] {
        submit(&f.store, d.clone(), None, Vec::new(), now_ms())
            .await
            .unwrap();
    }
    let queued = |id| {
        let items = outbox(&f.store);
        async move {
            items
                .await
                .into_iter()
                .find(|(_, item)| matches!(item, OutboxItem::Submit(q) if *q == id))
                .map(|(key, _)| key)
        }
    };
    let (key_one, key_two) = (
        queued(one.header.id).await.unwrap(),
        queued(two.header.id).await.unwrap(),
    );
    let at = now_ms();
    let together = vec![
        (
            f.evidence(&one, EvidenceKind::Accepted, None, at, &f.hub),
            Some(key_one),
        ),
        // About a document this node never sent: refused, and the item it names stays.
        (
            f.evidence(&stranger, EvidenceKind::Accepted, None, at, &f.hub),
            Some(key_two),
        ),
        // The same document again: applied after its acceptance above, in the same transaction.
        (
            f.evidence(&one, EvidenceKind::Delivered, Some("b"), at + 1, &f.b),
            None,
        ),
    ];
    let (outcomes, seq) = apply_evidence_all(&f.store, together).await.unwrap();
    assert!(seq.is_some(), "the two applied statements logged events");
    assert!(
        matches!(outcomes[..], [Ok(()), Err(_), Ok(())]),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Err(NodeError::EvidenceForUnknown(id)) if id == stranger.header.id),
        "{outcomes:?}"
    );
    let rec = sent(&f.store, one.header.id).await.unwrap().unwrap();
    let b = &rec.recipients[0];
    assert_eq!(b.state, DeliveryState::Delivered);
    assert_eq!((b.accepted_at_ms, b.delivered_at_ms), (at, at + 1));
    assert_eq!(queued(one.header.id).await, None, "its item went with it");
    assert_eq!(queued(two.header.id).await, Some(key_two), "still queued");
    let untouched = sent(&f.store, two.header.id).await.unwrap().unwrap();
    assert_eq!(untouched.recipients[0].state, DeliveryState::Queued);
}

/// Gives the inbox record of `id` a state code no build knows (42).
async fn damage_inbox_state(f: &Fixture, id: exchange_core::ids::DocumentId) {
    let key = id.to_string();
    f.store
        .write(move |txn| {
            let mut raw: st::ReceivedDocument = get(txn, &Sealer::default(), INBOX, &key)?.unwrap();
            raw.state = 42;
            put(txn, &Sealer::default(), INBOX, &key, &raw)
        })
        .await
        .unwrap();
}

/// What b's node stores when `doc` is delivered to it now.
fn delivered(f: &Fixture, doc: &SignedDoc) -> Delivered {
    let at = now_ms();
    Delivered {
        arrived: Arrived {
            doc: doc.clone(),
            acceptance: f
                .evidence(doc, EvidenceKind::Accepted, None, at, &f.hub)
                .wire,
            addition: None,
            foreign: None,
        },
        inline: Vec::new(),
        receipt: f
            .evidence(doc, EvidenceKind::Delivered, Some("b"), at, &f.b)
            .wire,
        at_ms: at,
    }
}

#[tokio::test]
async fn deliveries_stored_together_are_each_stored_as_if_alone() {
    let f = Fixture::new();
    let before = deliver(&f).await;
    let first = received(&f.store, before.header.id).await.unwrap().unwrap();
    let damaged_doc = deliver(&f).await;
    let damaged = damaged_doc.header.id;
    damage_inbox_state(&f, damaged).await;
    let (one, two) = (f.document(), f.document());
    let together = vec![
        delivered(&f, &one),
        // Delivered again (our acknowledgement was lost): nothing stored, the first receipt.
        delivered(&f, &before),
        // Its inbox record cannot be read: its error, and nothing of it written.
        delivered(&f, &damaged_doc),
        delivered(&f, &two),
    ];
    let receipts: Vec<_> = together.iter().map(|d| d.receipt.clone()).collect();
    let out = receive_all(&f.store, together).await.unwrap();
    assert_eq!(out.len(), 4);
    let (r, seq) = out[0].as_ref().unwrap();
    assert_eq!((r, seq.is_some()), (&receipts[0], true));
    let (r, seq) = out[1].as_ref().unwrap();
    assert_eq!((Some(r), *seq), (first.delivery_receipt.as_ref(), None));
    assert!(
        matches!(out[2], Err(StoreError::Decode { .. })),
        "{:?}",
        out[2]
    );
    let (r, seq) = out[3].as_ref().unwrap();
    assert_eq!((r, seq.is_some()), (&receipts[3], true));
    for doc in [&one, &two] {
        let rec = received(&f.store, doc.header.id).await.unwrap().unwrap();
        assert_eq!(rec.state, InboxState::New);
    }
    assert!(
        received(&f.store, damaged).await.is_err(),
        "still as it was"
    );
}

#[tokio::test]
async fn an_unknown_stored_state_code_is_an_error_naming_the_record() {
    let f = Fixture::new();
    let id = deliver(&f).await.header.id;
    damage_inbox_state(&f, id).await;
    let err = received(&f.store, id).await.unwrap_err();
    assert!(matches!(err, StoreError::Decode { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("stored record inbox {id} is unreadable: unknown inbox state code 42")
    );
    // A clerk cannot sign for it: the action fails and queues nothing.
    let confirm = clerk(&f.b, EvidenceKind::Confirmed);
    let err = handle(
        &f.store,
        id,
        "b".parse().unwrap(),
        ClerkAction::Confirm,
        confirm,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NodeError::Store(_)), "{err}");
    assert!(outbox(&f.store).await.is_empty());

    let doc = f.document();
    let sent_id = doc.header.id;
    submit(&f.store, doc, None, Vec::new(), now_ms())
        .await
        .unwrap();
    let key = sent_id.to_string();
    f.store
        .write(move |txn| {
            let mut raw: st::SentDocument = get(txn, &Sealer::default(), SENT, &key)?.unwrap();
            raw.recipients[0].state = 42;
            put(txn, &Sealer::default(), SENT, &key, &raw)
        })
        .await
        .unwrap();
    let err = sent(&f.store, sent_id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "stored record sent {sent_id} is unreadable: recipient b: unknown delivery state code 42"
        )
    );
}

//! What the hub's final refusal of one of our statements does, on a real store in a temporary
//! directory.

use std::collections::HashSet;

use exchange_core::{
    document::{Evidence, EvidenceKind, SignedEvidence},
    state::{ClerkAction, InboxState},
    time::now_ms,
};

use super::statements::record_refusal;
use crate::{
    store::{self, OutboxItem},
    testing::Fixture,
};

#[tokio::test]
async fn a_refused_statement_is_recorded_and_leaves_the_outbox() {
    let f = Fixture::new();
    let doc = f.document();
    let (id, at) = (doc.header.id, now_ms());
    let acc = f
        .evidence(&doc, EvidenceKind::Accepted, None, at, &f.hub)
        .wire;
    let receipt = f
        .evidence(&doc, EvidenceKind::Delivered, Some("b"), at, &f.b)
        .wire;
    let arrived = store::Arrived {
        doc,
        acceptance: acc,
        addition: None,
        foreign: None,
    };
    store::receive(&f.store, arrived, Vec::new(), receipt, at)
        .await
        .unwrap();
    let key = std::sync::Arc::clone(&f.b);
    let sign = move |d: &_, me: &exchange_core::ids::Address| {
        SignedEvidence::seal(
            Evidence::about(d, EvidenceKind::Confirmed, Some(me.clone()), now_ms()),
            &key,
        )
    };
    store::handle(
        &f.store,
        id,
        "b".parse().unwrap(),
        ClerkAction::Confirm,
        sign,
    )
    .await
    .unwrap();
    let items = store::next_outbox(&f.store, 10, HashSet::new())
        .await
        .unwrap();
    let [(key, Ok(OutboxItem::Evidence(wire)))] = items.as_slice() else {
        panic!("the confirmation is queued: {items:?}");
    };

    let me = "b".parse().unwrap();
    let seq = record_refusal(&f.store, me, wire, "certificate revoked".into(), *key)
        .await
        .unwrap();
    assert!(seq.is_some(), "department systems get a REFUSED event");
    let rec = store::received(&f.store, id).await.unwrap().unwrap();
    assert_eq!(
        rec.hub_refused,
        "签收 (CONFIRMED) refused by the hub: certificate revoked"
    );
    assert_eq!(rec.state, InboxState::Confirmed, "the 签收 stands here");
    let left = store::next_outbox(&f.store, 10, HashSet::new())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

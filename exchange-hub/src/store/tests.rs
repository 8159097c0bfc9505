//! The hub's state transitions on a real store: each step is committed whole or not at all,
//! once, and never against the delivery's state machine.

mod fixture;

use exchange_core::{
    document::EvidenceKind::*,
    error::{ErrorCode, ServiceError},
    ids::DocumentId,
    state::DeliveryState,
    store::{Store, StoreError, encode},
};
use exchange_proto::store::v1 as st;

use super::{
    Accepted, DELIVERIES, Outbound, Reminder, SCHEMA, StepError, add_recipient, delivery,
    delivery_key, document, recall, record_evidence, remind, scan_accepted,
};
use fixture::Fixture;

/// The gRPC code a refusal gets.
fn code(e: StepError) -> ErrorCode {
    ServiceError::from(e).code
}

/// How many pieces of evidence wait for `dept` (the sender).
async fn evidence_items(f: &Fixture, dept: &str) -> usize {
    f.queue(dept)
        .await
        .iter()
        .filter(|(_, o)| matches!(o, Outbound::Evidence(_)))
        .count()
}

#[tokio::test]
async fn conflicting_endings_are_refused_and_change_nothing() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    assert!(f.step(&doc, Confirmed, "b").await.unwrap());
    let before = f.delivery(&doc, "b").await;

    let err = f.step(&doc, Rejected, "b").await.unwrap_err();
    assert!(err.is_state_conflict(), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "document {} at b: cannot go from confirmed to rejected",
            doc.header.id
        )
    );
    assert_eq!(code(err), ErrorCode::FailedPrecondition);
    assert_eq!(f.delivery(&doc, "b").await, before);
    assert_eq!(before.state, DeliveryState::Confirmed);
    assert_eq!(evidence_items(&f, "a").await, 1, "only the confirmation");
}

#[tokio::test]
async fn a_repeated_step_is_a_no_op() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    let confirmed = f.evidence(&doc, Confirmed, Some("b"), &f.b);
    assert!(f.record(&doc, confirmed.clone()).await.unwrap());
    let before = f.delivery(&doc, "b").await;
    // Another time, the same step.
    assert!(!f.step(&doc, Confirmed, "b").await.unwrap());
    assert!(!f.record(&doc, confirmed).await.unwrap());
    assert_eq!(f.delivery(&doc, "b").await, before, "the first time stands");
    assert_eq!(evidence_items(&f, "a").await, 1);
}

#[tokio::test]
async fn a_late_delivered_after_confirmed_is_recorded_without_moving_back() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    assert!(f.step(&doc, Confirmed, "b").await.unwrap());
    let delivered = f.evidence(&doc, Delivered, Some("b"), &f.b);
    let at = delivered.evidence.at_ms;
    assert!(f.record(&doc, delivered).await.unwrap());
    let d = f.delivery(&doc, "b").await;
    assert_eq!(d.state, DeliveryState::Confirmed);
    assert_eq!(d.delivered_at_ms, at, "its time is kept");
    assert_eq!(evidence_items(&f, "a").await, 2, "both go to the sender");
}

#[tokio::test]
async fn evidence_with_an_ack_removes_the_queue_item_in_the_same_transaction() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    let [(key, Outbound::Deliver(id))] = f.queue("b").await[..] else {
        panic!("one delivery queued for b");
    };
    assert_eq!(id, doc.header.id);
    let delivered = f.evidence(&doc, Delivered, Some("b"), &f.b);
    let ack = Some(taken("b", key));
    assert!(
        record_evidence(&f.store, crate::store::About::own(&doc), delivered, ack)
            .await
            .unwrap()
    );
    assert!(f.queue("b").await.is_empty());
    assert_eq!(f.delivery(&doc, "b").await.state, DeliveryState::Delivered);

    // A refused step commits nothing: c's item stays queued.
    assert!(f.step(&doc, Rejected, "c").await.unwrap());
    let [(key, _)] = f.queue("c").await[..] else {
        panic!("one delivery queued for c");
    };
    let confirmed = f.evidence(&doc, Confirmed, Some("c"), &f.c);
    let ack = Some(taken("c", key));
    let err = record_evidence(&f.store, crate::store::About::own(&doc), confirmed, ack)
        .await
        .unwrap_err();
    assert!(err.is_state_conflict(), "{err}");
    assert_eq!(f.queue("c").await.len(), 1);
}

#[tokio::test]
async fn a_reminder_on_an_ended_delivery_is_kept_but_not_forwarded() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    f.step(&doc, Confirmed, "b").await.unwrap();
    let outcome = remind_local(&f, &doc, f.evidence(&doc, Reminded, Some("b"), &f.a))
        .await
        .unwrap();
    assert_eq!(outcome, Reminder::Moot(DeliveryState::Confirmed));
    assert_eq!(f.queue("b").await.len(), 1, "only the delivery");

    remind_local(&f, &doc, f.evidence(&doc, Reminded, Some("c"), &f.a))
        .await
        .unwrap();
    let c = f.queue("c").await;
    assert!(matches!(
        c[..],
        [(_, Outbound::Deliver(_)), (_, Outbound::Notice(_))]
    ));

    let err = remind_local(&f, &doc, f.evidence(&doc, Reminded, Some("d"), &f.a))
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::NotRecipient { .. }), "{err}");
    assert_eq!(code(err), ErrorCode::PermissionDenied);
}

/// A reminder of a recipient of this exchange, as the hub routes it.
async fn remind_local(
    f: &Fixture,
    doc: &exchange_core::document::SignedDoc,
    ev: exchange_core::document::SignedEvidence,
) -> Result<Reminder, StepError> {
    let to = ev.evidence.recipient.clone().expect("a recipient");
    let dest = crate::federation::Dest::Local(to.dept.clone());
    remind(&f.store, doc, ev, to, dest).await
}

/// The sender a's recall (撤回) of `doc`, as the hub records it: who was woken.
async fn recall_by_a(
    f: &Fixture,
    doc: &exchange_core::document::SignedDoc,
) -> super::statements::Woken {
    recall(&f.store, doc, f.evidence(doc, Recall, None, &f.a), alone())
        .await
        .unwrap()
}

/// The routes of a hub with no linked exchange.
fn alone() -> std::sync::Arc<crate::federation::Routes> {
    std::sync::Arc::new(crate::federation::Routes {
        name: None,
        peers: Vec::new(),
    })
}

#[tokio::test]
async fn a_recall_queues_notices_only_for_open_deliveries() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    f.step(&doc, Rejected, "b").await.unwrap();
    let woken = recall_by_a(&f, &doc).await;
    assert_eq!(woken.local, vec!["c".parse().unwrap()]);
    let notices = |q: Vec<(_, Outbound)>| {
        q.iter()
            .filter(|(_, o)| matches!(o, Outbound::Notice(_)))
            .count()
    };
    assert_eq!(notices(f.queue("b").await), 0, "b already returned it");
    assert_eq!(notices(f.queue("c").await), 1);
    let again = recall_by_a(&f, &doc).await;
    assert!(again.local.is_empty(), "the first recall stands");
    assert_eq!(notices(f.queue("c").await), 1);
}

#[tokio::test]
async fn a_recall_acknowledged_without_a_recall_is_refused() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    f.step(&doc, Confirmed, "b").await.unwrap();
    let err = f.step(&doc, RecallAcknowledged, "b").await.unwrap_err();
    assert!(matches!(err, StepError::NotRecalled { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "document {} was not recalled (撤回): there is no recall to acknowledge",
            doc.header.id
        )
    );
    assert_eq!(code(err), ErrorCode::FailedPrecondition);
    assert_eq!(f.delivery(&doc, "b").await.state, DeliveryState::Confirmed);
    // Once the sender recalls it, the same acknowledgement is taken.
    recall_by_a(&f, &doc).await;
    assert!(f.step(&doc, RecallAcknowledged, "b").await.unwrap());
    assert_eq!(
        f.delivery(&doc, "b").await.state,
        DeliveryState::RecallAcknowledged
    );
}

#[tokio::test]
async fn an_added_recipient_after_a_recall_is_refused() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    let add = |to| f.evidence(&doc, RecipientAdded, Some(to), &f.a);
    let local = |to: &str| {
        let a: exchange_core::ids::Address = to.parse().unwrap();
        let dest = crate::federation::Dest::Local(a.dept.clone());
        (a, dest)
    };
    let (d, to_d) = local("d");
    assert!(
        add_recipient(&f.store, &doc, add("d"), d.clone(), to_d.clone())
            .await
            .unwrap()
    );
    assert!(
        !add_recipient(&f.store, &doc, add("d"), d, to_d)
            .await
            .unwrap(),
        "already one"
    );
    assert_eq!(
        delivery(&f.store, doc.header.id, "d".parse().unwrap())
            .await
            .unwrap(),
        Some(DeliveryState::Accepted)
    );
    recall_by_a(&f, &doc).await;
    let (e, to_e) = local("e");
    let err = add_recipient(&f.store, &doc, add("e"), e, to_e)
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::Recalled { .. }), "{err}");
    assert_eq!(code(err), ErrorCode::FailedPrecondition);
    assert!(f.queue("e").await.is_empty());
}

#[tokio::test]
async fn the_same_id_with_another_header_is_a_conflict() {
    let f = Fixture::new();
    let id = DocumentId::new();
    let first = f.document(id, "第一份");
    assert!(matches!(f.submit(&first).await, Accepted::New(_)));
    assert!(matches!(f.submit(&first).await, Accepted::Again(_)));
    let other = f.document(id, "第二份");
    let err = super::accept(&f.store, f.to_accept(&other))
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::AlreadyExists);
}

#[tokio::test]
async fn documents_accepted_together_are_each_taken_as_if_alone() {
    let f = Fixture::new();
    let id = DocumentId::new();
    let first = f.document(id, "第一份");
    assert!(matches!(f.submit(&first).await, Accepted::New(_)));
    let (one, two) = (
        f.document(DocumentId::new(), "一"),
        f.document(DocumentId::new(), "二"),
    );
    let together = vec![
        f.to_accept(&one),
        // The same id with another header: refused alone, nothing of it written.
        f.to_accept(&f.document(id, "第二份")),
        // Submitted again: the first acceptance.
        f.to_accept(&first),
        f.to_accept(&two),
    ];
    let out = super::accept_all(&f.store, together).await.unwrap();
    assert!(
        matches!(
            out[..],
            [
                Ok(Accepted::New(_)),
                Err(StepError::Conflict { .. }),
                Ok(Accepted::Again(_)),
                Ok(Accepted::New(_))
            ]
        ),
        "{out:?}"
    );
    for doc in [&one, &two, &first] {
        let rec = document(&f.store, doc.header.id).await.unwrap().unwrap();
        assert_eq!(rec.doc.wire.header, doc.wire.header);
    }
    // b and c each have first, one and two queued, once.
    assert_eq!(f.queue("b").await.len(), 3);
    assert_eq!(f.queue("c").await.len(), 3);
}

#[tokio::test]
async fn an_unknown_stored_state_code_is_an_error_naming_the_record() {
    let f = Fixture::new();
    let doc = f.accepted().await;
    let id = doc.header.id.to_string();
    let key = id.clone();
    f.store
        .write(move |txn| -> Result<(), StoreError> {
            let corrupt = encode(&st::HubDelivery {
                state: 42,
                ..Default::default()
            });
            txn.put(DELIVERIES, &delivery_key(&key, "b"), &corrupt)
        })
        .await
        .unwrap();
    let named = format!("delivery {id}/b");
    let check = |e: &dyn std::fmt::Display| {
        let e = e.to_string();
        assert!(e.contains(&named), "{e}");
        assert!(e.contains("unknown delivery state code 42"), "{e}");
    };
    let e = delivery(&f.store, doc.header.id, "b".parse().unwrap())
        .await
        .unwrap_err();
    check(&e);
    let e = f.step(&doc, Confirmed, "b").await.unwrap_err();
    assert!(matches!(e, StepError::Store(_)) && !e.is_state_conflict());
    check(&e);
    let e = f
        .store
        .read(|txn| scan_accepted(txn, &Default::default(), 0..i64::MAX, &mut |_| {}))
        .await
        .unwrap_err();
    check(&e);
}

/// A store of schema 1 (typed redb tables) made from a schema 2 store's records, upgraded by
/// `migrate`, holds exactly those records again, and the store reads them (document, queue,
/// audit); a second run does nothing.
#[tokio::test]
async fn migrate_upgrades_a_schema_1_store_to_the_same_records() {
    use exchange_core::store::{
        META,
        kv::{self, KeyReader},
        migrate::Upgrade,
    };
    use redb::TableDefinition as Def;

    let f = Fixture::new();
    let doc = f.accepted().await;
    assert!(f.step(&doc, Delivered, "b").await.unwrap());
    let tables = crate::backup::tables();
    let snapshot = |store: &Store| {
        let tables = tables.clone();
        let store = store.clone();
        async move {
            store
                .read(move |txn| {
                    let mut all = Vec::new();
                    for t in &tables {
                        let mut rows = Vec::new();
                        kv::for_each(txn, *t, 100, &mut |e| {
                            rows.push(e);
                            Ok(())
                        })?;
                        all.push((t.name(), rows));
                    }
                    Ok::<_, StoreError>(all)
                })
                .await
                .unwrap()
        }
    };
    let before = snapshot(&f.store).await;
    assert!(before.iter().filter(|(_, rows)| !rows.is_empty()).count() >= 8);

    // The same records as schema 1 wrote them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("kind:hub", 1).unwrap();
            meta.insert("schema", 1).unwrap();
        }
        for (name, rows) in &before {
            for (k, v) in rows {
                let mut r = KeyReader::new(k);
                match *name {
                    "counters" => {
                        let n = u64::from_be_bytes(v.as_slice().try_into().unwrap());
                        txn.open_table(META)
                            .unwrap()
                            .insert(r.str().unwrap().as_str(), n)
                            .unwrap();
                    }
                    "documents" | "recalls" | "audit_head" => {
                        let key = std::str::from_utf8(k).unwrap();
                        let def: Def<'_, &str, &[u8]> = Def::new(name);
                        txn.open_table(def)
                            .unwrap()
                            .insert(key, v.as_slice())
                            .unwrap();
                    }
                    "content" => {
                        let def: Def<'_, &[u8], &[u8]> = Def::new(name);
                        txn.open_table(def)
                            .unwrap()
                            .insert(k.as_slice(), v.as_slice())
                            .unwrap();
                    }
                    "deliveries" => {
                        let (id, dept) = (r.str().unwrap(), r.str().unwrap());
                        let def: Def<'_, (&str, &str), &[u8]> = Def::new(name);
                        let mut t = txn.open_table(def).unwrap();
                        t.insert((id.as_str(), dept.as_str()), v.as_slice())
                            .unwrap();
                    }
                    "evidence" => {
                        let (id, dept, kind) =
                            (r.str().unwrap(), r.str().unwrap(), r.u8().unwrap());
                        let def: Def<'_, (&str, &str, u8), &[u8]> = Def::new(name);
                        let mut t = txn.open_table(def).unwrap();
                        t.insert((id.as_str(), dept.as_str(), kind), v.as_slice())
                            .unwrap();
                    }
                    "outbound" => {
                        let (d, p, s) = (r.str().unwrap(), r.u8().unwrap(), r.u64().unwrap());
                        let def: Def<'_, (&str, u8, u64), &[u8]> = Def::new(name);
                        let mut t = txn.open_table(def).unwrap();
                        t.insert((d.as_str(), p, s), v.as_slice()).unwrap();
                    }
                    "audit" | "audit_checkpoints" => {
                        let def: Def<'_, u64, &[u8]> = Def::new(name);
                        let mut t = txn.open_table(def).unwrap();
                        t.insert(r.u64().unwrap(), v.as_slice()).unwrap();
                    }
                    "audit_by_doc" | "audit_by_dept" => {
                        let (s, seq) = (r.str().unwrap(), r.u64().unwrap());
                        let def: Def<'_, (&str, u64), ()> = Def::new(name);
                        txn.open_table(def)
                            .unwrap()
                            .insert((s.as_str(), seq), ())
                            .unwrap();
                    }
                    "audit_by_time" => {
                        let (at, seq) = (r.i64().unwrap(), r.u64().unwrap());
                        let def: Def<'_, (i64, u64), ()> = Def::new(name);
                        txn.open_table(def).unwrap().insert((at, seq), ()).unwrap();
                    }
                    other => panic!("no schema 1 form for table {other}"),
                }
            }
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path, "hub", SCHEMA).unwrap_err().to_string();
    assert!(
        err.contains("schema version 1, older than this build's"),
        "{err}"
    );
    assert!(err.contains("exchange-hub --config FILE migrate"), "{err}");

    assert_eq!(
        crate::cli::migrate::upgrade_file(&path).unwrap(),
        Upgrade::From(1)
    );
    assert_eq!(
        crate::cli::migrate::upgrade_file(&path).unwrap(),
        Upgrade::Current
    );
    let store = Store::open(&path, "hub", SCHEMA).unwrap();
    assert_eq!(snapshot(&store).await, before);
    // No schema 1 table is left behind, and the store reads as before.
    let left = store
        .read(|txn| txn.stored_tables())
        .await
        .unwrap()
        .unwrap();
    assert!(
        left.iter().all(|t| t == "meta" || t.starts_with("kv_")),
        "{left:?}"
    );
    assert!(document(&store, doc.header.id).await.unwrap().is_some());
    assert_eq!(
        delivery(&store, doc.header.id, "b".parse().unwrap())
            .await
            .unwrap(),
        Some(exchange_core::state::DeliveryState::Delivered)
    );
    let queued = store
        .read(|txn| crate::store::OUTBOUND.len(txn, "c"))
        .await
        .unwrap();
    assert_eq!(queued, 1);
    // The queue counter goes on where it was.
    let next = store
        .write(|txn| crate::store::OUTBOUND.push(txn, "c", 2, b"x"))
        .await
        .unwrap();
    let old_max = f.queue("c").await.iter().map(|(k, _)| k.seq).max().unwrap();
    assert!(next.seq > old_max, "{} after {old_max}", next.seq);
}

/// Queue item `key` of `dept`, taken by a hub that owns its store.
fn taken(dept: &str, key: exchange_core::store::queue::QueueKey) -> crate::store::Taken {
    crate::store::Taken {
        dept: dept.parse().unwrap(),
        key,
        fence: crate::lease::Fence::NONE,
    }
}

//! A node store of schema 1, written by hand as that schema wrote it (typed redb tables,
//! counters in `meta`, a record sealed under the data keys), opened the way the daemon opens
//! its store: every record reads back, the outbox keeps its order, the counters go on from
//! where they were, schema 2 is stamped, and a second open changes nothing.

use std::{collections::HashSet, path::Path};

use exchange_core::{
    atrest::{Kek, Keyring},
    config::EncryptionSection,
    document::{EvidenceKind, SignedDoc},
    signing::Digest,
    state::{DeliveryState, InboxState},
    store::{
        META, encode,
        sealing::{Sealer, slot},
    },
};
use exchange_proto::{store::v1 as st, v1 as pb};
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};

use super::super::{
    OutboxItem, SCHEMA, events_after, idempotent, next_outbox, open, receive, received, sent,
    submit,
};
use super::{Upgrade, upgrade};
use crate::testing::Fixture;

/// Schema 1's tables, spelled out here as well as in the migration: a mistake in one shows.
mod schema1 {
    use redb::TableDefinition;

    pub(super) const SENT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sent");
    pub(super) const INBOX: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inbox");
    pub(super) const IDEMPOTENCY: TableDefinition<'_, &str, &str> =
        TableDefinition::new("idempotency");
    pub(super) const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
    pub(super) const OUTBOX: TableDefinition<'_, (&str, u8, u64), &[u8]> =
        TableDefinition::new("outbox");
    pub(super) const CONTENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("content");
}

/// What the schema-1 store holds.
struct Old {
    sent: SignedDoc,
    received: SignedDoc,
    content: Vec<u8>,
}

fn event(kind: pb::NodeEventKind, doc: &SignedDoc, at_ms: i64) -> Vec<u8> {
    encode(&st::NodeEventRecord {
        kind: u32::try_from(i32::from(kind)).unwrap(),
        doc_id: doc.header.id.to_string(),
        dept: "b".into(),
        state: 0,
        at_ms,
    })
}

fn queue_item(item: st::queue_item::Item) -> Vec<u8> {
    encode(&st::QueueItem { item: Some(item) })
}

/// Writes a schema-1 node store at `path`: a sent record sealed with `sealer`, a received one
/// in clear (written before encryption was turned on), an idempotency key, two events, three
/// outbox items (seq 1 to 3, not in priority order) and sealed inline content.
fn write_schema1(path: &Path, f: &Fixture, sealer: &Sealer) -> Old {
    let old = Old {
        sent: f.document(),
        received: f.document(),
        content: b"inline content of the notice".to_vec(),
    };
    let sent_id = old.sent.header.id.to_string();
    let received_id = old.received.header.id.to_string();
    let digest = Digest::of(&old.content);
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        for (k, v) in [
            ("kind:node", 1),
            ("schema", 1),
            ("encrypted", 1),
            ("queue_seq", 3),
            ("event_seq", 2),
        ] {
            meta.insert(k, v).unwrap();
        }
        let rec = st::SentDocument {
            document: Some(old.sent.wire.clone()),
            recipients: vec![st::SentRecipient {
                dept: "b".into(),
                state: u32::from(DeliveryState::Queued.code()),
                ..Default::default()
            }],
            queued_at_ms: 7,
            ..Default::default()
        };
        let sealed = sealer.seal(&slot("sent", sent_id.as_bytes()), encode(&rec));
        let mut t = txn.open_table(schema1::SENT).unwrap();
        t.insert(sent_id.as_str(), sealed.unwrap().as_slice())
            .unwrap();
        let rec = st::ReceivedDocument {
            document: Some(old.received.wire.clone()),
            state: u32::from(InboxState::New.code()),
            received_at_ms: 8,
            ..Default::default()
        };
        let mut t = txn.open_table(schema1::INBOX).unwrap();
        t.insert(received_id.as_str(), encode(&rec).as_slice())
            .unwrap();
        let mut t = txn.open_table(schema1::IDEMPOTENCY).unwrap();
        t.insert("client-key-1", sent_id.as_str()).unwrap();
        let mut t = txn.open_table(schema1::EVENTS).unwrap();
        let received_event = event(pb::NodeEventKind::Received, &old.received, 8);
        t.insert(1, received_event.as_slice()).unwrap();
        let refused = event(pb::NodeEventKind::Refused, &old.sent, 9);
        t.insert(2, refused.as_slice()).unwrap();
        let ev = f.evidence(&old.received, EvidenceKind::Confirmed, Some("b"), 9, &f.b);
        let mut t = txn.open_table(schema1::OUTBOX).unwrap();
        let submit = queue_item(st::queue_item::Item::SubmitDoc(sent_id.clone()));
        t.insert(("hub", 2, 1), submit.as_slice()).unwrap();
        let normal = queue_item(st::queue_item::Item::Evidence(ev.wire.clone()));
        t.insert(("hub", 2, 2), normal.as_slice()).unwrap();
        let urgent = queue_item(st::queue_item::Item::Evidence(ev.wire));
        t.insert(("hub", 0, 3), urgent.as_slice()).unwrap();
        let sealed = sealer.seal(&slot("content", &digest.0), old.content.clone());
        let mut t = txn.open_table(schema1::CONTENT).unwrap();
        t.insert(digest.0.as_slice(), sealed.unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    old
}

/// The META entries and the table names of the store file at `path`.
fn file_layout(path: &Path) -> (Vec<(String, u64)>, Vec<String>) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let entries = meta
        .iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_owned(), v.value())
        })
        .collect();
    let tables = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    (entries, tables)
}

#[tokio::test]
async fn a_schema_1_store_is_upgraded_on_open_and_every_record_reads_back() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek.key");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let keys = Keyring::open_or_create(
        &data.join(Keyring::FILE_NAME),
        &Kek::generate(&kek).unwrap(),
    )
    .unwrap();
    let section = EncryptionSection {
        kek: Some(kek),
        kek_credential: None,
    };
    let path = data.join("node.redb");
    let old = write_schema1(&path, &f, &Sealer::new(Some(keys)));

    let store = open(
        &path,
        exchange_core::crypto::Profile::International,
        Some(&section),
        true,
    )
    .unwrap();
    let (sent_id, received_id) = (old.sent.header.id, old.received.header.id);

    let rec = sent(&store, sent_id).await.unwrap().expect("sent record");
    assert_eq!(rec.doc.header.id, sent_id);
    assert_eq!(rec.queued_at_ms, 7);
    assert_eq!(rec.recipients[0].dept.to_string(), "b");
    assert_eq!(rec.recipients[0].state, DeliveryState::Queued);
    let rec = received(&store, received_id).await.unwrap().expect("inbox");
    assert_eq!((rec.state, rec.received_at_ms), (InboxState::New, 8));
    assert_eq!(
        idempotent(&store, "client-key-1".into()).await.unwrap(),
        Some(sent_id)
    );
    let events = events_after(&store, 0, 10).await.unwrap();
    let seqs: Vec<_> = events.iter().map(|(s, e)| (*s, e.doc_id.clone())).collect();
    assert_eq!(
        seqs,
        [(1, received_id.to_string()), (2, sent_id.to_string())]
    );
    assert_eq!(events_after(&store, 1, 10).await.unwrap().len(), 1);
    let digest = Digest::of(&old.content);
    assert_eq!(
        crate::content::get(&store, sent_id, digest).await.unwrap(),
        Some(old.content.clone()),
        "sealed content opens under its slot"
    );

    // The outbox: most urgent first, then by seq; the submission is still the sent document.
    let outbox = next_outbox(&store, 10, HashSet::new()).await.unwrap();
    let keys: Vec<_> = outbox.iter().map(|(k, _)| (k.priority, k.seq)).collect();
    assert_eq!(keys, [(0, 3), (2, 1), (2, 2)]);
    assert!(matches!(&outbox[1].1, Ok(OutboxItem::Submit(id)) if *id == sent_id));
    assert!(matches!(&outbox[0].1, Ok(OutboxItem::Evidence(_))));

    // The counters go on: the next event is 3, the next outbox item 4; an idempotency key of
    // schema 1 still answers with its document.
    let again = submit(
        &store,
        f.document(),
        Some("client-key-1".into()),
        Vec::new(),
        10,
    );
    assert_eq!(again.await.unwrap(), sent_id);
    submit(
        &store,
        f.document(),
        Some("client-key-2".into()),
        Vec::new(),
        10,
    )
    .await
    .unwrap();
    let outbox = next_outbox(&store, 10, HashSet::new()).await.unwrap();
    assert_eq!(
        outbox.last().map(|(k, _)| (k.priority, k.seq)),
        Some((2, 4))
    );
    let doc = f.document();
    let acc = f.evidence(&doc, EvidenceKind::Accepted, None, 11, &f.hub);
    let receipt = f.evidence(&doc, EvidenceKind::Delivered, Some("b"), 11, &f.b);
    let arrived = crate::store::Arrived {
        doc,
        acceptance: acc.wire,
        addition: None,
        foreign: None,
    };
    let (_, seq) = receive(&store, arrived, Vec::new(), receipt.wire, 11)
        .await
        .unwrap();
    assert_eq!(seq, Some(3));
    drop(store);

    // Schema 2 is stamped; the counters left `meta`; only `kv` tables are left beside it.
    let (meta, tables) = file_layout(&path);
    let meta: Vec<_> = meta.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        meta,
        [("encrypted", 1), ("kind:node", 1), ("schema", SCHEMA)]
    );
    assert!(
        tables.iter().all(|t| t == "meta" || t.starts_with("kv_")),
        "{tables:?}"
    );

    // A second open does nothing more, and everything is still there.
    assert_eq!(upgrade(&path).unwrap(), Upgrade::Current);
    let store = open(
        &path,
        exchange_core::crypto::Profile::International,
        Some(&section),
        true,
    )
    .unwrap();
    assert!(sent(&store, sent_id).await.unwrap().is_some());
    assert_eq!(events_after(&store, 0, 10).await.unwrap().len(), 3);
    assert_eq!(
        next_outbox(&store, 10, HashSet::new()).await.unwrap().len(),
        4
    );
}

#[tokio::test]
async fn a_new_store_is_created_at_schema_2_without_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    assert_eq!(upgrade(&path).unwrap(), Upgrade::Current);
    assert!(!path.exists(), "the upgrade creates nothing");
    drop(
        open(
            &path,
            exchange_core::crypto::Profile::International,
            None,
            true,
        )
        .unwrap(),
    );
    let (meta, _) = file_layout(&path);
    assert!(meta.contains(&("schema".to_owned(), SCHEMA)), "{meta:?}");
}

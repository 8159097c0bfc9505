//! A hub store in a temp dir, and signing keys issued at test time through `exchange-certs`
//! (the workspace's one rcgen path), to make the signed documents and evidence the store keeps.
//! The store never verifies signatures (its callers did), so no verifier is needed here.

use exchange_certs::{Ca, Validity};
use exchange_core::{
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::Principal,
    ids::{Address, DocumentId},
    signing::{Digest, SigningKey},
    store::{Store, queue::QueueKey},
    time::now_ms,
};
use exchange_proto::v1 as pb;
use tempfile::TempDir;

use crate::store::{
    Accepted, DELIVERIES, OUTBOUND, Outbound, SCHEMA, StepError, ToAccept, accept, delivery_key,
    record_evidence, records::DeliveryRecord,
};

/// A fresh hub store and the signing keys of the hub and of departments a, b and c.
pub(super) struct Fixture {
    /// Holds the store file; removed on drop.
    _dir: TempDir,
    pub(super) store: Store,
    pub(super) hub: SigningKey,
    pub(super) a: SigningKey,
    pub(super) b: SigningKey,
    pub(super) c: SigningKey,
}

/// Issues `who` ("hub" or a department) a document-signing key.
fn signing_key(ca: &Ca, who: &str) -> SigningKey {
    let principal = if who == "hub" {
        Principal::Hub
    } else {
        Principal::Dept(who.parse().unwrap())
    };
    ca.issue_signing_key(&principal, Validity::days_from_now(1))
        .unwrap()
}

impl Fixture {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", SCHEMA).unwrap();
        let ca = Ca::generate("Hub Store Test CA", Validity::days_from_now(1)).unwrap();
        let key = |who| signing_key(&ca, who);
        Fixture {
            hub: key("hub"),
            a: key("a"),
            b: key("b"),
            c: key("c"),
            store,
            _dir: dir,
        }
    }

    /// a's document to b (主送) and c (抄送), titled `title`, with id `id`.
    pub(super) fn document(&self, id: DocumentId, title: &str) -> SignedDoc {
        const BODY: &[u8] = b"body of the notice";
        let header = pb::DocumentHeader {
            format: 1,
            id: id.to_string(),
            sender: "a".into(),
            created_at_ms: now_ms(),
            metadata: Some(pb::DocumentMetadata {
                title: title.into(),
                doc_number: "明政〔2026〕12号".into(),
                to_depts: vec!["b".into()],
                cc_depts: vec!["c".into()],
                ..Default::default()
            }),
            parts: vec![pb::Part {
                role: pb::PartRole::Body.into(),
                name: "正文.ofd".into(),
                media_type: "application/octet-stream".into(),
                size: BODY.len() as u64,
                sha256: Digest::of(BODY).0.to_vec(),
            }],
            digest_algorithm: String::new(),
        };
        SignedDoc::seal(&header, &self.a).unwrap()
    }

    /// Submits `doc` to the store as the hub accepts it.
    pub(super) async fn submit(&self, doc: &SignedDoc) -> Accepted {
        accept(&self.store, self.to_accept(doc)).await.unwrap()
    }

    /// `doc` as the hub stores it when it accepts it now, for b and c.
    pub(super) fn to_accept(&self, doc: &SignedDoc) -> ToAccept {
        ToAccept {
            doc: std::sync::Arc::new(doc.clone()),
            acceptance: self
                .evidence(doc, EvidenceKind::Accepted, None, &self.hub)
                .wire,
            relay: None,
            inline: Vec::new(),
            at_ms: now_ms(),
            plan: local_plan(doc),
        }
    }

    /// A new document from a to b and c, accepted.
    pub(super) async fn accepted(&self) -> SignedDoc {
        let doc = self.document(DocumentId::new(), "关于做好年终工作的通知");
        self.submit(&doc).await;
        doc
    }

    /// Evidence of `kind` about `doc` and recipient `to`, signed with `key`.
    pub(super) fn evidence(
        &self,
        doc: &SignedDoc,
        kind: EvidenceKind,
        to: Option<&str>,
        key: &SigningKey,
    ) -> SignedEvidence {
        let to = to.map(|d| d.parse::<Address>().unwrap());
        SignedEvidence::seal(Evidence::about(doc, kind, to, now_ms()), key).unwrap()
    }

    /// The signing key of `who` ("hub", "a", "b" or "c").
    pub(super) fn key(&self, who: &str) -> &SigningKey {
        match who {
            "hub" => &self.hub,
            "a" => &self.a,
            "b" => &self.b,
            "c" => &self.c,
            _ => panic!("no key for {who}"),
        }
    }

    /// Recipient `dept`'s evidence of `kind` about `doc`, signed with its key, recorded as the
    /// hub records what a node sends (no queue item acknowledged with it).
    pub(super) async fn step(
        &self,
        doc: &SignedDoc,
        kind: EvidenceKind,
        dept: &str,
    ) -> Result<bool, StepError> {
        self.record(doc, self.evidence(doc, kind, Some(dept), self.key(dept)))
            .await
    }

    /// `ev` recorded as the hub records what a node sends, no queue item acknowledged with it.
    pub(super) async fn record(
        &self,
        doc: &SignedDoc,
        ev: SignedEvidence,
    ) -> Result<bool, StepError> {
        record_evidence(&self.store, crate::store::About::own(doc), ev, None).await
    }

    /// The stored delivery of `doc` to `dept`.
    pub(super) async fn delivery(&self, doc: &SignedDoc, dept: &str) -> DeliveryRecord {
        let (id, dept) = (doc.header.id.to_string(), dept.to_owned());
        self.store
            .read(move |txn| {
                let v = txn.get(DELIVERIES, &delivery_key(&id, &dept))?.unwrap();
                DeliveryRecord::decode(&id, &dept, &v)
            })
            .await
            .unwrap()
    }

    /// What waits in `dept`'s outbound queue, most urgent first.
    pub(super) async fn queue(&self, dept: &str) -> Vec<(QueueKey, Outbound)> {
        let dept = dept.to_owned();
        let all = self.store.read(|txn| OUTBOUND.all(txn)).await.unwrap();
        all.into_iter()
            .filter(|(dest, _, _)| *dest == dept)
            .map(|(_, k, v)| (k, Outbound::decode(k.seq, &v).unwrap()))
            .collect()
    }
}

/// Every recipient of `doc` a department of this exchange, as the hub plans them.
pub(super) fn local_plan(doc: &SignedDoc) -> crate::store::Plan {
    crate::store::Plan {
        local: doc
            .header
            .recipients
            .iter()
            .map(|r| (r.addr.clone(), r.addr.dept.clone()))
            .collect(),
        ..Default::default()
    }
}

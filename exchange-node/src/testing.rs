//! Test support shared by the node's unit tests: signing keys issued at test time by a CA made
//! with `exchange-certs` (the exchange's one rcgen path), a document from department a to b
//! signed with them, evidence about it, and a node store in a temporary directory.

use std::sync::Arc;

use exchange_certs::{Ca, Validity};
use exchange_core::{
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::Principal,
    ids::DocumentId,
    signing::{Digest, SigningKey},
    store::Store,
    time::now_ms,
};
use exchange_proto::v1 as pb;

/// A node store and the keys of the hub and of departments a (the sender) and b.
pub(crate) struct Fixture {
    /// Holds the store; removed when the fixture is dropped.
    _dir: tempfile::TempDir,
    /// The node's store, as `Node::open` opens it.
    pub(crate) store: Store,
    /// The hub's signing key (acceptances).
    pub(crate) hub: Arc<SigningKey>,
    /// Department a's signing key (the sender).
    pub(crate) a: Arc<SigningKey>,
    /// Department b's signing key (the recipient).
    pub(crate) b: Arc<SigningKey>,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("Node test CA", Validity::days_from_now(30)).unwrap();
        let key = |who: Principal| {
            Arc::new(
                ca.issue_signing_key(&who, Validity::days_from_now(30))
                    .unwrap(),
            )
        };
        let dept = |id: &str| Principal::Dept(id.parse().unwrap());
        let store =
            Store::open(&dir.path().join("node.redb"), "node", crate::store::SCHEMA).unwrap();
        Fixture {
            hub: key(Principal::Hub),
            a: key(dept("a")),
            b: key(dept("b")),
            store,
            _dir: dir,
        }
    }

    /// A new document from a to b (主送), sealed by a.
    pub(crate) fn document(&self) -> SignedDoc {
        let body = b"body of the notice";
        let header = pb::DocumentHeader {
            format: 1,
            id: DocumentId::new().to_string(),
            sender: "a".into(),
            created_at_ms: now_ms(),
            metadata: Some(pb::DocumentMetadata {
                title: "关于做好年终工作的通知".into(),
                to_depts: vec!["b".into()],
                ..Default::default()
            }),
            parts: vec![pb::Part {
                role: pb::PartRole::Body.into(),
                name: "正文.ofd".into(),
                media_type: "application/octet-stream".into(),
                size: body.len() as u64,
                sha256: Digest::of(body).0.to_vec(),
            }],
            digest_algorithm: String::new(),
        };
        SignedDoc::seal(&header, &self.a).unwrap()
    }

    /// Evidence of `kind` about `doc` (for recipient `to`, if any) at `at`, signed by `key`.
    pub(crate) fn evidence(
        &self,
        doc: &SignedDoc,
        kind: EvidenceKind,
        to: Option<&str>,
        at: i64,
        key: &SigningKey,
    ) -> SignedEvidence {
        let ev = Evidence::about(doc, kind, to.map(|r| r.parse().unwrap()), at);
        SignedEvidence::seal(ev, key).unwrap()
    }
}

//! The simulated departments' durable inbox: one redb file for the whole process, written
//! through `exchange_core::store::Store`, the same group-committing writer the daemons use (a
//! commit is an fsync; deliveries arriving together share one). A department acknowledges a
//! delivery only after its commit has returned.

use std::path::Path;

use anyhow::{Context, Result};
use exchange_core::{
    ids::DeptId,
    store::{
        Store, StoreError, decode, encode,
        kv::{Key, Table},
    },
};
use exchange_proto::v1 as pb;

/// (department, doc id) → the department's encoded DELIVERED receipt.
const INBOX: Table = Table::new("inbox");
/// (department, doc id, part index) → the part's content.
const CONTENT: Table = Table::new("content");

/// The inbox of every simulated department.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    store: Store,
}

impl Inbox {
    /// Opens (creating) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let store = Store::open(path, "bench-sim", 2)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Inbox { store })
    }

    /// Stores a verified document's content and `receipt` for `dept`, durably. If the
    /// document is already there (a redelivery), stores nothing and returns the receipt given
    /// the first time, as a node does.
    pub(crate) async fn put(
        &self,
        dept: DeptId,
        doc_id: String,
        parts: Vec<Vec<u8>>,
        receipt: pb::SignedEvidence,
    ) -> Result<pb::SignedEvidence, StoreError> {
        self.store
            .write(move |txn| {
                let key = Key::new().str(dept.as_str()).str(&doc_id).finish();
                if let Some(v) = txn.get(INBOX, &key)? {
                    return decode(format!("inbox {dept}/{doc_id}"), &v);
                }
                for (i, p) in (0u64..).zip(&parts) {
                    let part = Key::new().str(dept.as_str()).str(&doc_id).u64(i).finish();
                    txn.put(CONTENT, &part, p)?;
                }
                txn.put(INBOX, &key, &encode(&receipt))?;
                Ok(receipt.clone())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_redelivery_gets_the_first_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(&dir.path().join("sim.redb")).unwrap();
        let dept: DeptId = "sim-00001".parse().unwrap();
        let first = pb::SignedEvidence {
            evidence: b"first".to_vec(),
            signature: None,
        };
        let second = pb::SignedEvidence {
            evidence: b"second".to_vec(),
            signature: None,
        };
        let got = inbox
            .put(dept.clone(), "d".into(), vec![b"x".to_vec()], first.clone())
            .await
            .unwrap();
        assert_eq!(got, first);
        let again = inbox
            .put(dept, "d".into(), vec![b"x".to_vec()], second)
            .await
            .unwrap();
        assert_eq!(again, first);
    }
}

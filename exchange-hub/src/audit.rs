//! The hub's audit log: every event appended to a hash chain in the hub's store, in the same
//! transaction as the change it records (no acknowledged event without its entry), with
//! secondary indexes by document, department and time, and checkpoints of the chain head signed
//! at intervals by the hub's signing key.
//!
//! Tables: `audit` seq → encoded `AuditEntry`; `audit_by_doc` (doc id, seq), `audit_by_dept`
//! (dept, seq), `audit_by_time` (at_ms, seq) → (); `audit_checkpoints` seq → `SignedCheckpoint`;
//! `audit_head` "head" → seq (8 bytes, big-endian) + hash (32 bytes), and "digest" → the chain's
//! digest algorithm's name, present only when it is not SHA-256 (a shangmi hub's `sm3`: see
//! [`set_digest`]), so that an international hub's store is what it always was.

use exchange_core::{
    audit::{
        ChainVerifier, GENESIS, chain_algorithm, chain_algorithm_field, entry_hash,
        named_entry_hash, sign_checkpoint,
    },
    crypto::DigestAlgorithm,
    error::ServiceError,
    signing::{SigningKey, Verifier},
    store::{Store, StoreError, decode},
    time::now_ms,
};
use exchange_proto::v1 as pb;
use prost::Message;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
const BY_DOC: TableDefinition<'_, (&str, u64), ()> = TableDefinition::new("audit_by_doc");
const BY_DEPT: TableDefinition<'_, (&str, u64), ()> = TableDefinition::new("audit_by_dept");
const BY_TIME: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("audit_by_time");
const CHECKPOINTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit_checkpoints");
const HEAD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("audit_head");
/// Every table of the audit log, for a backup (`crate::backup`).
pub(crate) const TABLES: &[&dyn exchange_core::backup::BackupTable] =
    &[&AUDIT, &BY_DOC, &BY_DEPT, &BY_TIME, &CHECKPOINTS, &HEAD];

/// Longest `detail` kept in an entry.
const MAX_DETAIL: usize = 1000;

/// One event to record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Event {
    kind: pb::AuditKind,
    doc_id: String,
    dept: String,
    peer: String,
    detail: String,
}

impl Event {
    pub(crate) fn new(kind: pb::AuditKind) -> Self {
        Event {
            kind,
            ..Default::default()
        }
    }
    pub(crate) fn doc(mut self, id: impl ToString) -> Self {
        self.doc_id = id.to_string();
        self
    }
    pub(crate) fn dept(mut self, d: impl ToString) -> Self {
        self.dept = d.to_string();
        self
    }
    pub(crate) fn peer(mut self, p: impl ToString) -> Self {
        self.peer = p.to_string();
        self
    }
    pub(crate) fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into().chars().take(MAX_DETAIL).collect();
        self
    }
}

/// The key of the chain's digest algorithm in `audit_head`.
const DIGEST_KEY: &str = "digest";

/// The chain's digest as `audit_head` records it (absent: SHA-256).
fn stored_digest(value: Option<&[u8]>) -> Result<DigestAlgorithm, StoreError> {
    let name = value.map(String::from_utf8_lossy).unwrap_or_default();
    chain_algorithm(&name).map_err(|e| StoreError::decode("audit_head digest", e))
}

fn head(txn: &WriteTransaction) -> Result<(u64, [u8; 32], DigestAlgorithm), StoreError> {
    let t = txn.open_table(HEAD)?;
    let digest = stored_digest(t.get(DIGEST_KEY)?.as_ref().map(|v| v.value()))?;
    let v = t.get("head")?;
    Ok(match v {
        Some(v) if v.value().len() == 40 => {
            let b = v.value();
            let seq = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            let hash = b[8..].try_into().unwrap_or(GENESIS);
            (seq, hash, digest)
        }
        _ => (0, GENESIS, digest),
    })
}

/// Makes `alg` the digest of the audit chain (the hub's signing key's scheme's): recorded in
/// `audit_head` when it is not SHA-256. A log that already has entries keeps its algorithm, and a
/// hub whose key asks for another is refused by name (a chain is hashed with one digest).
pub(crate) async fn set_digest(store: &Store, alg: DigestAlgorithm) -> Result<(), StoreError> {
    store
        .write(move |txn| {
            let (seq, _, current) = head(txn)?;
            if current == alg {
                return Ok(());
            }
            if seq > 0 {
                return Err(StoreError::decode(
                    "audit_head digest",
                    format!(
                        "the audit log is hashed with {current}, but this hub's signing key uses {alg}"
                    ),
                ));
            }
            let mut t = txn.open_table(HEAD)?;
            match alg {
                DigestAlgorithm::Sha256 => {
                    t.remove(DIGEST_KEY)?;
                }
                other => {
                    t.insert(DIGEST_KEY, other.name().as_bytes())?;
                }
            }
            Ok(())
        })
        .await
}

/// Appends `ev` inside `txn`; returns its seq. The entry is hashed with the chain's digest
/// ([`set_digest`]).
pub(crate) fn append(txn: &WriteTransaction, ev: &Event) -> Result<u64, StoreError> {
    let (last, prev, alg) = head(txn)?;
    let seq = last + 1;
    let at_ms = now_ms();
    let entry = pb::AuditEntry {
        seq,
        at_ms,
        kind: ev.kind.into(),
        doc_id: ev.doc_id.clone(),
        dept: ev.dept.clone(),
        peer: ev.peer.clone(),
        detail: ev.detail.clone(),
        prev_hash: prev.to_vec(),
        hash_algorithm: chain_algorithm_field(alg),
    };
    let bytes = entry.encode_to_vec();
    let hash = entry_hash(alg, &bytes)
        .map_err(|e| StoreError::decode(format!("audit entry {seq} (hashing it)"), e))?;
    txn.open_table(AUDIT)?.insert(seq, bytes.as_slice())?;
    if !ev.doc_id.is_empty() {
        txn.open_table(BY_DOC)?
            .insert((ev.doc_id.as_str(), seq), ())?;
    }
    if !ev.dept.is_empty() {
        txn.open_table(BY_DEPT)?
            .insert((ev.dept.as_str(), seq), ())?;
    }
    txn.open_table(BY_TIME)?.insert((at_ms, seq), ())?;
    let mut head = seq.to_be_bytes().to_vec();
    head.extend_from_slice(&hash.0);
    txn.open_table(HEAD)?.insert("head", head.as_slice())?;
    Ok(seq)
}

/// Records `ev` on its own (events that change nothing else: refusals, connections, start).
pub(crate) async fn record(store: &Store, ev: Event) {
    let kind = ev.kind;
    if let Err(e) = store.write(move |txn| append(txn, &ev)).await {
        tracing::error!(error = %e, ?kind, "could not append to the audit log");
    }
}

/// Signs a checkpoint of the current head if at least `every` entries, or any entries and
/// `max_age_ms`, have passed since the last one (or if `force`).
pub(crate) async fn checkpoint(
    store: &Store,
    key: &SigningKey,
    every: u64,
    max_age_ms: i64,
    force: bool,
) -> Result<Option<u64>, ServiceError> {
    let (head_seq, head_hash, last, digest) = store
        .read(|txn| {
            let (seq, hash, digest) = match open(txn, HEAD)? {
                Some(t) => {
                    let digest = stored_digest(t.get(DIGEST_KEY)?.as_ref().map(|v| v.value()))?;
                    match t.get("head")? {
                        Some(v) if v.value().len() == 40 => {
                            let b = v.value();
                            (
                                u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
                                b[8..].to_vec(),
                                digest,
                            )
                        }
                        _ => (0, GENESIS.to_vec(), digest),
                    }
                }
                None => (0, GENESIS.to_vec(), DigestAlgorithm::Sha256),
            };
            let last = match open(txn, CHECKPOINTS)? {
                Some(t) => match t.last()? {
                    Some((k, v)) => {
                        let s: pb::SignedCheckpoint = decode("checkpoint", v.value())?;
                        let cp: pb::AuditCheckpoint = decode("checkpoint", &s.checkpoint)?;
                        Some((k.value(), cp.at_ms))
                    }
                    None => None,
                },
                None => None,
            };
            Ok::<_, StoreError>((seq, hash, last, digest))
        })
        .await?;
    let (last_seq, last_at) = last.unwrap_or((0, 0));
    let due = head_seq > last_seq
        && (force || head_seq - last_seq >= every || now_ms() - last_at >= max_age_ms);
    if !due {
        return Ok(None);
    }
    let signed = sign_checkpoint(
        &pb::AuditCheckpoint {
            seq: head_seq,
            head: head_hash,
            at_ms: now_ms(),
            hash_algorithm: chain_algorithm_field(digest),
        },
        key,
    )?;
    let bytes = signed.encode_to_vec();
    store
        .write(move |txn| {
            txn.open_table(CHECKPOINTS)?
                .insert(head_seq, bytes.as_slice())?;
            Ok::<_, StoreError>(())
        })
        .await?;
    Ok(Some(head_seq))
}

fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) doc_id: String,
    pub(crate) dept: String,
    pub(crate) kind: i32,
    pub(crate) since_ms: i64,
    pub(crate) until_ms: i64,
    pub(crate) limit: usize,
}

impl Filter {
    fn keeps(&self, e: &pb::AuditEntry) -> bool {
        (self.doc_id.is_empty() || e.doc_id == self.doc_id)
            && (self.dept.is_empty() || e.dept == self.dept)
            && (self.kind == 0 || e.kind == self.kind)
            && (self.since_ms == 0 || e.at_ms >= self.since_ms)
            && (self.until_ms == 0 || e.at_ms < self.until_ms)
    }
}

/// Entries matching `f`, in order, as (bytes, hash), using the narrowest index available.
pub(crate) async fn list(store: &Store, f: Filter) -> Result<Vec<pb::AuditRecord>, StoreError> {
    store
        .read(move |txn| {
            let Some(audit) = open(txn, AUDIT)? else {
                return Ok(Vec::new());
            };
            let limit = if f.limit == 0 { usize::MAX } else { f.limit };
            let seqs: Box<dyn Iterator<Item = Result<u64, StoreError>>> = if !f.doc_id.is_empty() {
                index(open(txn, BY_DOC)?, &f.doc_id)?
            } else if !f.dept.is_empty() {
                index(open(txn, BY_DEPT)?, &f.dept)?
            } else if f.since_ms != 0 || f.until_ms != 0 {
                match open(txn, BY_TIME)? {
                    None => Box::new(std::iter::empty()),
                    Some(t) => {
                        let until = if f.until_ms == 0 {
                            i64::MAX
                        } else {
                            f.until_ms
                        };
                        Box::new(
                            t.range((f.since_ms, 0u64)..(until, 0u64))?
                                .map(|r| r.map(|(k, _)| k.value().1).map_err(Into::into)),
                        )
                    }
                }
            } else {
                Box::new(
                    audit
                        .range(0u64..)?
                        .map(|r| r.map(|(k, _)| k.value()).map_err(Into::into)),
                )
            };
            let mut out = Vec::new();
            for seq in seqs {
                let seq = seq?;
                let Some(v) = audit.get(seq)? else { continue };
                let bytes = v.value().to_vec();
                let e: pb::AuditEntry = decode(seq, &bytes)?;
                if f.keeps(&e) {
                    // Each entry names its digest; one this build cannot compute lists with an
                    // empty hash (`verify` names the problem).
                    let hash = named_entry_hash(&bytes).map(|(_, h)| h.0.to_vec());
                    out.push(pb::AuditRecord {
                        hash: hash.unwrap_or_default(),
                        entry: bytes,
                    });
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
}

fn index(
    t: Option<redb::ReadOnlyTable<(&'static str, u64), ()>>,
    key: &str,
) -> Result<Box<dyn Iterator<Item = Result<u64, StoreError>>>, StoreError> {
    let Some(t) = t else {
        return Ok(Box::new(std::iter::empty()));
    };
    let range = t.range((key, 0u64)..=(key, u64::MAX))?;
    Ok(Box::new(
        range.map(|r| r.map(|(k, _)| k.value().1).map_err(Into::into)),
    ))
}

/// Up to `limit` entries after seq `after`, in order, inside `txn` (the metrics endpoint folds
/// the log in page by page).
pub(crate) fn entries_after(
    txn: &ReadTransaction,
    after: u64,
    limit: usize,
) -> Result<Vec<pb::AuditEntry>, StoreError> {
    let Some(t) = open(txn, AUDIT)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in t.range(after.saturating_add(1)..)?.take(limit) {
        let (k, v) = row?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

/// Every checkpoint, in order.
async fn checkpoints(store: &Store) -> Result<Vec<pb::SignedCheckpoint>, StoreError> {
    store
        .read(|txn| {
            let Some(t) = open(txn, CHECKPOINTS)? else {
                return Ok(Vec::new());
            };
            t.iter()?
                .map(|r| {
                    r.map_err(StoreError::from)
                        .and_then(|(k, v)| decode(k.value(), v.value()))
                })
                .collect()
        })
        .await
}

/// Recomputes the whole chain and checks every checkpoint.
pub(crate) async fn verify(
    store: &Store,
    verifier: &Verifier,
) -> Result<pb::VerifyAuditResponse, StoreError> {
    let cps = checkpoints(store).await?;
    let mut chain = match ChainVerifier::new(verifier, 1, GENESIS, &cps) {
        Ok(c) => c,
        Err(e) => return Ok(bad(0, 0, &e)),
    };
    let mut after = 0u64;
    let mut count = 0u64;
    loop {
        let page: Vec<(u64, Vec<u8>)> = store
            .read(move |txn| {
                let Some(t) = open(txn, AUDIT)? else {
                    return Ok(Vec::new());
                };
                t.range(after + 1..)?
                    .take(4096)
                    .map(|r| {
                        r.map(|(k, v)| (k.value(), v.value().to_vec()))
                            .map_err(StoreError::from)
                    })
                    .collect()
            })
            .await?;
        if page.is_empty() {
            break;
        }
        for (seq, bytes) in &page {
            if let Err(e) = chain.entry(bytes) {
                return Ok(bad(count, 0, &e));
            }
            after = *seq;
            count += 1;
        }
    }
    match chain.finish() {
        Ok((entries, checkpoints, _)) => Ok(pb::VerifyAuditResponse {
            entries,
            checkpoints,
            ok: true,
            first_bad_seq: 0,
            problem: String::new(),
            last_checkpoint_seq: cps
                .iter()
                .filter_map(|c| pb::AuditCheckpoint::decode(c.checkpoint.as_slice()).ok())
                .map(|c| c.seq)
                .max()
                .unwrap_or(0),
        }),
        Err(e) => Ok(bad(count, 0, &e)),
    }
}

fn bad(
    entries: u64,
    checkpoints: u64,
    e: &exchange_core::audit::ChainError,
) -> pb::VerifyAuditResponse {
    pb::VerifyAuditResponse {
        entries,
        checkpoints,
        ok: false,
        first_bad_seq: e.seq,
        problem: e.problem.clone(),
        last_checkpoint_seq: 0,
    }
}

/// Entries from `since_ms` (with their bytes) and every checkpoint at or after the first.
pub(crate) async fn export(
    store: &Store,
    since_ms: i64,
) -> Result<Vec<pb::ExportItem>, StoreError> {
    let f = Filter {
        since_ms,
        ..Default::default()
    };
    let records = list(store, f).await?;
    let first = records
        .first()
        .and_then(|r| pb::AuditEntry::decode(r.entry.as_slice()).ok())
        .map_or(u64::MAX, |e| e.seq);
    let mut items: Vec<pb::ExportItem> = records
        .into_iter()
        .map(|r| pb::ExportItem {
            item: Some(pb::export_item::Item::Record(r)),
        })
        .collect();
    for cp in checkpoints(store).await? {
        let seq = pb::AuditCheckpoint::decode(cp.checkpoint.as_slice()).map_or(0, |c| c.seq);
        if seq >= first {
            items.push(pb::ExportItem {
                item: Some(pb::export_item::Item::Checkpoint(cp)),
            });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_chain_keeps_the_digest_it_started_with() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", 1).unwrap();
        // SHA-256 (an international hub) records nothing: the store is what it always was.
        set_digest(&store, DigestAlgorithm::Sha256).await.unwrap();
        record(&store, Event::new(pb::AuditKind::HubStarted)).await;
        let records = list(&store, Filter::default()).await.unwrap();
        let e = pb::AuditEntry::decode(records[0].entry.as_slice()).unwrap();
        assert_eq!(e.hash_algorithm, "");
        let with_ctx = [b"exchange.v1.AuditEntry\0".as_slice(), &records[0].entry].concat();
        assert_eq!(
            records[0].hash,
            exchange_core::signing::Digest::of(&with_ctx).0
        );
        let digest_key = store
            .read(|txn| {
                let t = open(txn, HEAD)?.unwrap();
                Ok::<_, StoreError>(t.get(DIGEST_KEY)?.is_some())
            })
            .await
            .unwrap();
        assert!(!digest_key);
        // A log with entries keeps its digest: a key of the other profile is refused by name.
        let err = set_digest(&store, DigestAlgorithm::Sm3).await.unwrap_err();
        assert!(
            err.to_string().contains(
                "the audit log is hashed with sha256, but this hub's signing key uses sm3"
            ),
            "{err}"
        );
    }

    #[cfg(feature = "shangmi")]
    #[tokio::test]
    async fn a_shangmi_hub_chains_its_entries_with_sm3() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", 1).unwrap();
        set_digest(&store, DigestAlgorithm::Sm3).await.unwrap();
        for _ in 0..3 {
            record(&store, Event::new(pb::AuditKind::NodeConnected).dept("a")).await;
        }
        let records = list(&store, Filter::default()).await.unwrap();
        assert_eq!(records.len(), 3);
        let mut prev = GENESIS.to_vec();
        for r in &records {
            let e = pb::AuditEntry::decode(r.entry.as_slice()).unwrap();
            assert_eq!(e.hash_algorithm, "sm3");
            assert_eq!(e.prev_hash, prev);
            let sm3 = entry_hash(DigestAlgorithm::Sm3, &r.entry).unwrap();
            assert_eq!(r.hash, sm3.0);
            prev = sm3.0.to_vec();
        }
        let err = set_digest(&store, DigestAlgorithm::Sha256)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("hashed with sm3"), "{err}");
    }

    /// Not a test: the query benchmark of docs/benchmarks.md. A log of a million entries (200
    /// departments, 100,000 documents), then the time to answer by document and by department.
    /// `cargo test --release -p exchange-hub audit_query_benchmark -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark: run with --release -- --ignored --nocapture"]
    async fn audit_query_benchmark() {
        let n: u64 = std::env::var("AUDIT_BENCH_ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", 1).unwrap();
        let start = std::time::Instant::now();
        let per_txn = 50_000;
        for batch in 0..n.div_ceil(per_txn) {
            store
                .write(move |txn| {
                    for i in batch * per_txn..((batch + 1) * per_txn).min(n) {
                        let ev = Event::new(pb::AuditKind::Delivered)
                            .doc(format!("doc-{:06}", i / 10))
                            .dept(format!("dept-{:03}", i % 200))
                            .detail("benchmark entry");
                        append(txn, &ev)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        }
        println!("appended {n} entries in {:?}", start.elapsed());
        for (what, f) in [
            (
                "by document (10 entries)",
                Filter {
                    doc_id: "doc-054321".into(),
                    ..Default::default()
                },
            ),
            (
                "by department (1/200 of the log)",
                Filter {
                    dept: "dept-123".into(),
                    ..Default::default()
                },
            ),
            (
                "by department, limit 100",
                Filter {
                    dept: "dept-007".into(),
                    limit: 100,
                    ..Default::default()
                },
            ),
        ] {
            let t = std::time::Instant::now();
            let found = list(&store, f).await.unwrap().len();
            println!("query {what}: {found} entries in {:?}", t.elapsed());
        }
    }
}

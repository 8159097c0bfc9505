//! The hub's audit log: every event appended to a hash chain in the hub's store, in the same
//! transaction as the change it records (no acknowledged event without its entry), with
//! secondary indexes by document, department and time, and checkpoints of the chain head signed
//! at intervals by the hub's signing key.
//!
//! Tables (`kv`; a seq is 8 bytes big-endian, tuples are `kv::Key`s): `audit` seq → encoded
//! `AuditEntry`; `audit_by_doc` (doc id, seq), `audit_by_dept` (dept, seq), `audit_by_time`
//! (at_ms, seq) → empty; `audit_checkpoints` seq → `SignedCheckpoint`; `audit_head` "head" →
//! seq (8 bytes, big-endian) + hash (32 bytes), and "digest" → the chain's
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
    store::{
        Store, StoreError, decode,
        kv::{self, Key, KeyRange, KeyReader, Order, ReadTables, Table, WriteTables},
    },
    time::now_ms,
};
use exchange_proto::v1 as pb;
use prost::Message;

const AUDIT: Table = Table::new("audit");
const BY_DOC: Table = Table::new("audit_by_doc");
const BY_DEPT: Table = Table::new("audit_by_dept");
const BY_TIME: Table = Table::new("audit_by_time");
const CHECKPOINTS: Table = Table::new("audit_checkpoints");
const HEAD: Table = Table::new("audit_head");
/// Every table of the audit log, for a backup (`crate::backup`) and `migrate`.
pub(crate) const TABLES: &[Table] = &[AUDIT, BY_DOC, BY_DEPT, BY_TIME, CHECKPOINTS, HEAD];

/// The key of entry or checkpoint `seq`.
fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The seq of an `audit` or `audit_checkpoints` key.
fn parse_seq(raw: &[u8]) -> Result<u64, StoreError> {
    let mut r = KeyReader::new(raw);
    let seq = r.u64()?;
    r.end()?;
    Ok(seq)
}

/// The seq at the end of an index key (string or time, then seq).
fn index_seq(raw: &[u8]) -> Result<u64, StoreError> {
    raw.last_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .ok_or_else(|| StoreError::decode("audit index key", "shorter than a seq"))
}

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

/// The chain's head: the last seq, its hash, and the chain's digest.
fn head(txn: &dyn ReadTables) -> Result<(u64, [u8; 32], DigestAlgorithm), StoreError> {
    let digest = stored_digest(txn.get(HEAD, DIGEST_KEY.as_bytes())?.as_deref())?;
    let v = txn.get(HEAD, b"head")?;
    Ok(match v {
        Some(b) if b.len() == 40 => {
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
            match alg {
                DigestAlgorithm::Sha256 => txn.delete(HEAD, DIGEST_KEY.as_bytes()),
                other => txn.put(HEAD, DIGEST_KEY.as_bytes(), other.name().as_bytes()),
            }
        })
        .await
}

/// Appends `ev` inside `txn`; returns its seq. The entry is hashed with the chain's digest
/// ([`set_digest`]).
pub(crate) fn append(txn: &dyn WriteTables, ev: &Event) -> Result<u64, StoreError> {
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
    txn.put(AUDIT, &seq_key(seq), &bytes)?;
    if !ev.doc_id.is_empty() {
        txn.put(BY_DOC, &Key::new().str(&ev.doc_id).u64(seq).finish(), &[])?;
    }
    if !ev.dept.is_empty() {
        txn.put(BY_DEPT, &Key::new().str(&ev.dept).u64(seq).finish(), &[])?;
    }
    txn.put(BY_TIME, &Key::new().i64(at_ms).u64(seq).finish(), &[])?;
    let mut head = seq.to_be_bytes().to_vec();
    head.extend_from_slice(&hash.0);
    txn.put(HEAD, b"head", &head)?;
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
            let (seq, hash, digest) = head(txn)?;
            let last = match txn
                .scan(CHECKPOINTS, &KeyRange::all(), Order::Descending, 1)?
                .pop()
            {
                Some((k, v)) => {
                    let s: pb::SignedCheckpoint = decode("checkpoint", &v)?;
                    let cp: pb::AuditCheckpoint = decode("checkpoint", &s.checkpoint)?;
                    Some((parse_seq(&k)?, cp.at_ms))
                }
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
            head: head_hash.to_vec(),
            at_ms: now_ms(),
            hash_algorithm: chain_algorithm_field(digest),
        },
        key,
    )?;
    let bytes = signed.encode_to_vec();
    store
        .write(move |txn| txn.put(CHECKPOINTS, &seq_key(head_seq), &bytes))
        .await?;
    Ok(Some(head_seq))
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
            let limit = if f.limit == 0 { usize::MAX } else { f.limit };
            // The narrowest index, or the log itself.
            let (table, range) = if !f.doc_id.is_empty() {
                (BY_DOC, KeyRange::prefix(Key::new().str(&f.doc_id)))
            } else if !f.dept.is_empty() {
                (BY_DEPT, KeyRange::prefix(Key::new().str(&f.dept)))
            } else if f.since_ms != 0 || f.until_ms != 0 {
                let until = if f.until_ms == 0 {
                    i64::MAX
                } else {
                    f.until_ms
                };
                let range = KeyRange::between(
                    Key::new().i64(f.since_ms).u64(0),
                    Key::new().i64(until).u64(0),
                );
                (BY_TIME, range)
            } else {
                (AUDIT, KeyRange::all())
            };
            let mut out = Vec::new();
            kv::visit(txn, table, range, 1024, &mut |(k, v)| {
                let (seq, bytes) = if table == AUDIT {
                    (parse_seq(&k)?, v)
                } else {
                    let seq = index_seq(&k)?;
                    match txn.get(AUDIT, &seq_key(seq))? {
                        Some(bytes) => (seq, bytes),
                        None => return Ok(true),
                    }
                };
                let e: pb::AuditEntry = decode(seq, &bytes)?;
                if f.keeps(&e) {
                    // Each entry names its digest; one this build cannot compute lists with an
                    // empty hash (`verify` names the problem).
                    let hash = named_entry_hash(&bytes).map(|(_, h)| h.0.to_vec());
                    out.push(pb::AuditRecord {
                        hash: hash.unwrap_or_default(),
                        entry: bytes,
                    });
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
}

/// Up to `limit` entries after seq `after`, in order, inside `txn` (the metrics endpoint folds
/// the log in page by page).
pub(crate) fn entries_after(
    txn: &dyn ReadTables,
    after: u64,
    limit: usize,
) -> Result<Vec<pb::AuditEntry>, StoreError> {
    page_after(txn, after, limit)?
        .into_iter()
        .map(|(seq, bytes)| decode(seq, &bytes))
        .collect()
}

/// Up to `limit` entries after seq `after`, as (seq, bytes).
fn page_after(
    txn: &dyn ReadTables,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let range = KeyRange {
        start: std::ops::Bound::Excluded(seq_key(after).to_vec()),
        end: std::ops::Bound::Unbounded,
    };
    txn.scan(AUDIT, &range, Order::Ascending, limit)?
        .into_iter()
        .map(|(k, v)| Ok((parse_seq(&k)?, v)))
        .collect()
}

/// Every checkpoint, in order.
async fn checkpoints(store: &Store) -> Result<Vec<pb::SignedCheckpoint>, StoreError> {
    store
        .read(|txn| {
            let mut out = Vec::new();
            kv::for_each(txn, CHECKPOINTS, 1024, &mut |(k, v)| {
                out.push(decode(parse_seq(&k)?, &v)?);
                Ok(())
            })?;
            Ok(out)
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
        let page: Vec<(u64, Vec<u8>)> = store.read(move |txn| page_after(txn, after, 4096)).await?;
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
        let store = Store::open(&dir.path().join("hub.redb"), "hub", crate::store::SCHEMA).unwrap();
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
            .read(|txn| Ok::<_, StoreError>(txn.get(HEAD, DIGEST_KEY.as_bytes())?.is_some()))
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
        let store = Store::open(&dir.path().join("hub.redb"), "hub", crate::store::SCHEMA).unwrap();
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
        let store = Store::open(&dir.path().join("hub.redb"), "hub", crate::store::SCHEMA).unwrap();
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

//! The audit chain: how entries are hashed and linked, and how a sequence of entries and signed
//! checkpoints is verified. Shared by the hub (which writes and checks its own log) and by anyone
//! checking an export offline — nothing here touches storage.

use exchange_proto::v1 as pb;
use prost::Message;

use crate::{
    crypto::{CryptoError, DigestAlgorithm, Profile},
    identity::Principal,
    signing::{Context, Digest, SigningKey, Verifier},
};

/// The `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

const ENTRY_CONTEXT: &[u8] = b"exchange.v1.AuditEntry\0";

/// The hash of an encoded entry under `alg` (the chain's): the digest of the context string and
/// the bytes. SM3 in a build without the `shangmi` feature is an error, never a panic.
pub fn entry_hash(alg: DigestAlgorithm, entry_bytes: &[u8]) -> Result<Digest, CryptoError> {
    Digest::with(alg, &[ENTRY_CONTEXT, entry_bytes].concat())
}

/// The algorithm an entry's or checkpoint's `hash_algorithm` names: empty (absent) is SHA-256,
/// so that every chain written before the field existed, and every international one, reads as
/// it always did.
pub fn chain_algorithm(name: &str) -> Result<DigestAlgorithm, CryptoError> {
    if name.is_empty() {
        Ok(DigestAlgorithm::Sha256)
    } else {
        name.parse()
    }
}

/// The `hash_algorithm` a chain of `alg` writes: empty for SHA-256 (an international hub's
/// entries are byte for byte what they were before the field existed), else the name.
pub fn chain_algorithm_field(alg: DigestAlgorithm) -> String {
    crate::convert::digest_algorithm_field(alg)
}

/// The hash of an encoded entry under the algorithm it names itself (for listing and export);
/// `None` if it does not decode, names an unknown algorithm or one this build cannot compute.
pub fn named_entry_hash(entry_bytes: &[u8]) -> Option<(DigestAlgorithm, Digest)> {
    let e = pb::AuditEntry::decode(entry_bytes).ok()?;
    let alg = chain_algorithm(&e.hash_algorithm).ok()?;
    Some((alg, entry_hash(alg, entry_bytes).ok()?))
}

/// Refuses a chain algorithm that is not the exchange's (`profile`'s), naming the field and both.
fn check_chain_algorithm(name: &str, profile: Profile) -> Result<(), String> {
    let named = chain_algorithm(name).map_err(|e| format!("hash_algorithm: {e}"))?;
    let ours = profile.digest();
    if named == ours {
        return Ok(());
    }
    Err(format!(
        "hash_algorithm: {named} is not this exchange's ({profile} uses {ours})"
    ))
}

/// Signs a checkpoint of the chain head. Fails only if the crypto module does.
pub fn sign_checkpoint(
    cp: &pb::AuditCheckpoint,
    key: &SigningKey,
) -> Result<pb::SignedCheckpoint, crate::signing::SignError> {
    let bytes = cp.encode_to_vec();
    Ok(pb::SignedCheckpoint {
        signature: Some(key.sign(Context::AuditCheckpoint, &bytes)?),
        checkpoint: bytes,
    })
}

/// Where and why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq}: {problem}")]
pub struct ChainError {
    /// The first entry (or checkpoint position) found wrong.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// Checks entries in order, as they come: each decodes, numbers follow on, and each links to
/// the hash of the one before; where a signed checkpoint names an entry, the chain's hash there
/// must be the one the hub signed.
#[derive(Debug)]
pub struct ChainVerifier {
    /// The chain's digest: the exchange's (the verifier's profile's).
    alg: DigestAlgorithm,
    first_seq: u64,
    expect_seq: u64,
    prev: [u8; 32],
    /// The exchange's profile: the chain must name its digest.
    profile: Profile,
    /// Signed heads by seq, from the checkpoints (their signatures already checked).
    signed: std::collections::BTreeMap<u64, Vec<u8>>,
    matched: u64,
}

impl ChainVerifier {
    /// A verifier for a chain starting at entry `first_seq` whose predecessor hashed to `prev`
    /// (`1` and [`GENESIS`] for a whole log). Checks each checkpoint's signature now. The chain
    /// must be hashed with the exchange's digest (the verifier's profile's): an entry or
    /// checkpoint naming another is refused.
    pub fn new(
        verifier: &Verifier,
        first_seq: u64,
        prev: [u8; 32],
        checkpoints: &[pb::SignedCheckpoint],
    ) -> Result<Self, ChainError> {
        let alg = verifier.profile().digest();
        let mut signed = std::collections::BTreeMap::new();
        for s in checkpoints {
            let cp =
                pb::AuditCheckpoint::decode(s.checkpoint.as_slice()).map_err(|_| ChainError {
                    seq: 0,
                    problem: "a checkpoint is not a valid encoded message".into(),
                })?;
            let bad = |problem: String| ChainError {
                seq: cp.seq,
                problem,
            };
            let sig = s
                .signature
                .as_ref()
                .ok_or_else(|| bad("checkpoint without a signature".into()))?;
            let at = u64::try_from(cp.at_ms / 1000).unwrap_or(0);
            let signer = verifier
                .verify(sig, Context::AuditCheckpoint, &s.checkpoint, at)
                .map_err(|e| bad(format!("checkpoint signature: {e}")))?;
            if signer != Principal::Hub {
                return Err(bad(format!("checkpoint signed by {signer}, not the hub")));
            }
            check_chain_algorithm(&cp.hash_algorithm, verifier.profile())
                .map_err(|e| bad(format!("checkpoint {e}")))?;
            if cp.seq >= first_seq {
                signed.insert(cp.seq, cp.head);
            }
        }
        Ok(ChainVerifier {
            alg,
            profile: verifier.profile(),
            first_seq,
            expect_seq: first_seq,
            prev,
            signed,
            matched: 0,
        })
    }

    /// Takes the next entry's bytes.
    pub fn entry(&mut self, bytes: &[u8]) -> Result<pb::AuditEntry, ChainError> {
        let seq = self.expect_seq;
        let e = pb::AuditEntry::decode(bytes).map_err(|_| ChainError {
            seq,
            problem: "not a valid encoded entry".into(),
        })?;
        if e.seq != seq {
            return Err(ChainError {
                seq,
                problem: format!(
                    "found entry {} where {seq} belongs (entries removed or reordered)",
                    e.seq
                ),
            });
        }
        check_chain_algorithm(&e.hash_algorithm, self.profile)
            .map_err(|problem| ChainError { seq, problem })?;
        if e.prev_hash != self.prev {
            return Err(ChainError {
                seq,
                problem:
                    "does not link to the entry before it (this or an earlier entry was changed)"
                        .into(),
            });
        }
        self.prev = entry_hash(self.alg, bytes)
            .map_err(|err| ChainError {
                seq,
                problem: format!("hashing the entry: {err}"),
            })?
            .0;
        if let Some(head) = self.signed.get(&seq) {
            if head.as_slice() != self.prev.as_slice() {
                return Err(ChainError {
                    seq,
                    problem: "differs from what the hub signed in its checkpoint".into(),
                });
            }
            self.matched += 1;
        }
        self.expect_seq += 1;
        Ok(e)
    }

    /// Ends the check: every checkpoint must have named an entry that was seen (else entries
    /// were cut off the end). Returns (entries checked, checkpoints matched, hash of the last).
    pub fn finish(self) -> Result<(u64, u64, [u8; 32]), ChainError> {
        if let Some((seq, _)) = self.signed.range(self.expect_seq..).next() {
            return Err(ChainError {
                seq: *seq,
                problem: format!(
                    "the hub signed a checkpoint at entry {seq}, but the log ends at {}",
                    self.expect_seq - 1
                ),
            });
        }
        Ok((self.expect_seq - self.first_seq, self.matched, self.prev))
    }
}

/// One line of an audit export (JSON Lines): an entry or a signed checkpoint. `bytes` (hex) is
/// authoritative — the encoded `AuditEntry` or `SignedCheckpoint` exactly as hashed or signed;
/// the other fields repeat its content for people and `grep`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// An entry of the log.
    Entry {
        /// Its number.
        seq: u64,
        /// When (RFC 3339, UTC).
        at: String,
        /// What happened (e.g. `DOCUMENT_ACCEPTED`).
        kind: String,
        /// The document, if any.
        doc_id: String,
        /// The department or principal concerned.
        dept: String,
        /// The network peer, if any.
        peer: String,
        /// Details.
        detail: String,
        /// Hex chain hash of this entry: SHA-256, or the digest `hash_algorithm` names; empty
        /// if this build cannot compute that digest (the entry is still listed; `verify` and
        /// `verify-audit` name the problem).
        hash: String,
        /// The digest of `hash` when it is not SHA-256 (`sm3`); absent for SHA-256, so an
        /// international export is what it always was.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        hash_algorithm: String,
        /// Hex of the encoded `AuditEntry`.
        bytes: String,
    },
    /// A checkpoint the hub signed.
    Checkpoint {
        /// The entry it covers.
        seq: u64,
        /// Hex of the encoded `SignedCheckpoint`.
        bytes: String,
    },
}

impl ExportLine {
    /// The line for a stored entry; `None` only if it does not decode (an entry whose digest
    /// this build cannot compute keeps its place, with an empty hash, so that no entry drops
    /// out of a listing or an export unnoticed).
    pub fn entry(bytes: &[u8]) -> Option<Self> {
        let e = pb::AuditEntry::decode(bytes).ok()?;
        let hash = named_entry_hash(bytes).map_or_else(String::new, |(_, h)| h.to_hex());
        let kind = pb::AuditKind::try_from(e.kind).map_or_else(
            |_| e.kind.to_string(),
            |k| k.as_str_name().trim_start_matches("AUDIT_KIND_").to_owned(),
        );
        Some(ExportLine::Entry {
            seq: e.seq,
            at: crate::time::format_ms(e.at_ms),
            kind,
            doc_id: e.doc_id,
            dept: e.dept,
            peer: e.peer,
            detail: e.detail,
            hash,
            hash_algorithm: e.hash_algorithm,
            bytes: hex::encode(bytes),
        })
    }

    /// The line for a signed checkpoint.
    pub fn checkpoint(cp: &pb::SignedCheckpoint) -> Self {
        let seq = pb::AuditCheckpoint::decode(cp.checkpoint.as_slice()).map_or(0, |c| c.seq);
        ExportLine::Checkpoint {
            seq,
            bytes: hex::encode(cp.encode_to_vec()),
        }
    }
}

/// Verifies an export (its lines, in order): the entries form an unbroken chain from the first
/// one's `prev_hash`, and every checkpoint is signed by the hub (a certificate issued by the CA
/// behind `verifier`) and matches the chain. Returns (entries, checkpoints matched).
pub fn verify_export(lines: &[ExportLine], verifier: &Verifier) -> Result<(u64, u64), ChainError> {
    let undecodable = |seq: u64, what: &str| ChainError {
        seq,
        problem: format!("{what} is not valid hex of an encoded message"),
    };
    let mut entries = Vec::new();
    let mut cps = Vec::new();
    for line in lines {
        match line {
            ExportLine::Entry { seq, bytes, .. } => {
                entries.push(hex::decode(bytes).map_err(|_| undecodable(*seq, "entry"))?)
            }
            ExportLine::Checkpoint { seq, bytes } => {
                let raw = hex::decode(bytes).map_err(|_| undecodable(*seq, "checkpoint"))?;
                cps.push(
                    pb::SignedCheckpoint::decode(raw.as_slice())
                        .map_err(|_| undecodable(*seq, "checkpoint"))?,
                );
            }
        }
    }
    let Some(first) = entries.first() else {
        // No entry to match (e.g. `audit export --since` a time with none): every checkpoint's
        // signature is still checked, so that a forged one is not passed over.
        ChainVerifier::new(verifier, u64::MAX, GENESIS, &cps)?;
        return Ok((0, 0));
    };
    let first = pb::AuditEntry::decode(first.as_slice()).map_err(|_| undecodable(0, "entry"))?;
    let prev: [u8; 32] = first
        .prev_hash
        .as_slice()
        .try_into()
        .map_err(|_| ChainError {
            seq: first.seq,
            problem: "prev_hash is not 32 bytes".into(),
        })?;
    let mut chain = ChainVerifier::new(verifier, first.seq, prev, &cps)?;
    for e in &entries {
        chain.entry(e)?;
    }
    let (n, matched, _) = chain.finish()?;
    if matched == 0 && n > 0 {
        return Err(ChainError {
            seq: first.seq,
            problem: "no signed checkpoint covers these entries".into(),
        });
    }
    Ok((n, matched))
}

#[cfg(test)]
mod tests;

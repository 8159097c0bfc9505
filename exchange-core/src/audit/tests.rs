//! The chain's digest follows the exchange's profile and is named in every entry and checkpoint:
//! SHA-256 chains are what they always were, SM3 chains verify under an SM2 CA, and neither
//! passes for the other.

use super::*;
use crate::bundle::tests::fixture::{Pki, current_pki, verifier};
use crate::time::now_ms;

/// A chain of `n` entries hashed with `alg`, each naming it, and a checkpoint signed by the
/// hub's key over the head, naming `cp_alg`.
fn chain(p: &Pki, alg: DigestAlgorithm, cp_alg: DigestAlgorithm, n: u64) -> Vec<ExportLine> {
    let mut prev = GENESIS;
    let mut lines = Vec::new();
    for seq in 1..=n {
        let entry = pb::AuditEntry {
            seq,
            at_ms: now_ms(),
            kind: pb::AuditKind::Delivered.into(),
            doc_id: format!("doc-{seq}"),
            dept: "b".into(),
            prev_hash: prev.to_vec(),
            hash_algorithm: chain_algorithm_field(alg),
            ..Default::default()
        };
        let bytes = entry.encode_to_vec();
        prev = entry_hash(alg, &bytes).unwrap().0;
        lines.push(ExportLine::entry(&bytes).unwrap());
    }
    let cp = pb::AuditCheckpoint {
        seq: n,
        head: prev.to_vec(),
        at_ms: now_ms(),
        hash_algorithm: chain_algorithm_field(cp_alg),
    };
    lines.push(ExportLine::checkpoint(
        &sign_checkpoint(&cp, &p.hub).unwrap(),
    ));
    lines
}

#[test]
fn an_international_chain_is_what_it_always_was() {
    let p = current_pki();
    let lines = chain(&p, DigestAlgorithm::Sha256, DigestAlgorithm::Sha256, 3);
    assert_eq!(verify_export(&lines, &verifier(&p)).unwrap(), (3, 1));
    let ExportLine::Entry { hash, bytes, .. } = &lines[0] else {
        panic!("an entry first")
    };
    let raw = hex::decode(bytes).unwrap();
    let e = pb::AuditEntry::decode(raw.as_slice()).unwrap();
    assert_eq!(
        e.hash_algorithm, "",
        "sha256 is written as the field's absence"
    );
    let ctx_and_bytes = [ENTRY_CONTEXT, raw.as_slice()].concat();
    assert_eq!(*hash, Digest::of(&ctx_and_bytes).to_hex());
    let json = serde_json::to_string(&lines[0]).unwrap();
    assert!(!json.contains("hash_algorithm"), "{json}");
}

#[test]
fn an_export_without_entries_still_has_its_checkpoints_signatures_checked() {
    let p = current_pki();
    let mut lines = chain(&p, DigestAlgorithm::Sha256, DigestAlgorithm::Sha256, 2);
    lines.retain(|l| matches!(l, ExportLine::Checkpoint { .. }));
    assert_eq!(lines.len(), 1);
    // A genuine checkpoint alone: nothing to match, nothing wrong.
    assert_eq!(verify_export(&lines, &verifier(&p)).unwrap(), (0, 0));
    // One whose head was changed after signing is refused, entries or not.
    let Some(ExportLine::Checkpoint { bytes, .. }) = lines.first_mut() else {
        panic!("a checkpoint")
    };
    let mut signed =
        pb::SignedCheckpoint::decode(hex::decode(&*bytes).unwrap().as_slice()).unwrap();
    let mut cp = pb::AuditCheckpoint::decode(signed.checkpoint.as_slice()).unwrap();
    cp.head = vec![7; 32];
    signed.checkpoint = cp.encode_to_vec();
    *bytes = hex::encode(signed.encode_to_vec());
    let err = verify_export(&lines, &verifier(&p))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("entry 2: checkpoint signature:"), "{err}");
    assert!(verify_export(&[], &verifier(&p)).is_ok(), "an empty export");
}

#[test]
fn an_entry_whose_digest_is_unknown_keeps_its_line_with_an_empty_hash() {
    let bytes = pb::AuditEntry {
        seq: 4,
        prev_hash: GENESIS.to_vec(),
        hash_algorithm: "md5".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let Some(ExportLine::Entry { seq, hash, .. }) = ExportLine::entry(&bytes) else {
        panic!("the entry keeps its line")
    };
    assert_eq!((seq, hash.as_str()), (4, ""));
    assert!(
        ExportLine::entry(b"\xff\xff").is_none(),
        "only an undecodable one is left out"
    );
}

#[test]
fn an_international_verifier_refuses_a_chain_naming_sm3() {
    let p = current_pki();
    // Entries and checkpoint hashed with SHA-256 but labelled sm3 (as a build without the
    // feature could write them): refused by name before anything is hashed with it.
    let mut entry = pb::AuditEntry {
        seq: 1,
        prev_hash: GENESIS.to_vec(),
        hash_algorithm: "sm3".into(),
        ..Default::default()
    };
    let bytes = entry.encode_to_vec();
    let mut chain = ChainVerifier::new(&verifier(&p), 1, GENESIS, &[]).unwrap();
    assert_eq!(
        chain.entry(&bytes).unwrap_err().to_string(),
        "entry 1: hash_algorithm: sm3 is not this exchange's (international uses sha256)"
    );
    entry.hash_algorithm = "md5".into();
    let mut chain = ChainVerifier::new(&verifier(&p), 1, GENESIS, &[]).unwrap();
    assert_eq!(
        chain.entry(&entry.encode_to_vec()).unwrap_err().to_string(),
        "entry 1: hash_algorithm: unknown digest algorithm \"md5\" (allowed: sha256, sm3)"
    );
    let lines = chain_with_checkpoint_named(&p, "sm3");
    assert_eq!(
        verify_export(&lines, &verifier(&p))
            .unwrap_err()
            .to_string(),
        "entry 2: checkpoint hash_algorithm: sm3 is not this exchange's (international uses sha256)"
    );
}

/// A SHA-256 chain of two entries whose checkpoint names `name`.
fn chain_with_checkpoint_named(p: &Pki, name: &str) -> Vec<ExportLine> {
    let mut lines = chain(p, DigestAlgorithm::Sha256, DigestAlgorithm::Sha256, 2);
    let Some(ExportLine::Checkpoint { bytes, .. }) = lines.pop() else {
        panic!("a checkpoint last")
    };
    let signed = pb::SignedCheckpoint::decode(hex::decode(bytes).unwrap().as_slice()).unwrap();
    let mut cp = pb::AuditCheckpoint::decode(signed.checkpoint.as_slice()).unwrap();
    cp.hash_algorithm = name.into();
    lines.push(ExportLine::checkpoint(
        &sign_checkpoint(&cp, &p.hub).unwrap(),
    ));
    lines
}

#[cfg(feature = "shangmi")]
mod sm3 {
    use super::*;
    use crate::bundle::tests::fixture::sm2_pki;

    #[test]
    fn an_sm3_chain_verifies_under_an_sm2_ca_and_is_tamper_evident() {
        let p = sm2_pki();
        let v = verifier(&p);
        let lines = chain(&p, DigestAlgorithm::Sm3, DigestAlgorithm::Sm3, 4);
        assert_eq!(verify_export(&lines, &v).unwrap(), (4, 1));
        let ExportLine::Entry {
            hash,
            hash_algorithm,
            bytes,
            ..
        } = &lines[1]
        else {
            panic!("an entry")
        };
        assert_eq!(hash_algorithm, "sm3");
        let raw = hex::decode(bytes).unwrap();
        let with_ctx = [ENTRY_CONTEXT, raw.as_slice()].concat();
        assert_eq!(
            *hash,
            Digest::with(DigestAlgorithm::Sm3, &with_ctx)
                .unwrap()
                .to_hex()
        );
        assert_ne!(*hash, Digest::of(&with_ctx).to_hex());
        assert!(
            serde_json::to_string(&lines[1])
                .unwrap()
                .contains(r#""hash_algorithm":"sm3""#)
        );

        // One entry changed: the next one no longer links to it.
        let mut tampered = lines.clone();
        if let ExportLine::Entry { bytes, .. } = &mut tampered[1] {
            let mut e = pb::AuditEntry::decode(hex::decode(&*bytes).unwrap().as_slice()).unwrap();
            e.detail = "rewritten".into();
            *bytes = hex::encode(e.encode_to_vec());
        }
        assert_eq!(
            verify_export(&tampered, &v).unwrap_err().to_string(),
            "entry 3: does not link to the entry before it (this or an earlier entry was changed)"
        );
    }

    #[test]
    fn a_shangmi_verifier_refuses_a_sha256_chain_and_a_mislabelled_checkpoint() {
        let p = sm2_pki();
        let v = verifier(&p);
        let sha = chain(&p, DigestAlgorithm::Sha256, DigestAlgorithm::Sm3, 2);
        assert_eq!(
            verify_export(&sha, &v).unwrap_err().to_string(),
            "entry 1: hash_algorithm: sha256 is not this exchange's (shangmi uses sm3)"
        );
        let mislabelled = chain(&p, DigestAlgorithm::Sm3, DigestAlgorithm::Sha256, 2);
        assert_eq!(
            verify_export(&mislabelled, &v).unwrap_err().to_string(),
            "entry 2: checkpoint hash_algorithm: sha256 is not this exchange's (shangmi uses sm3)"
        );
        // And an international verifier refuses the SM3 chain (its SM2 checkpoint first).
        let sm = chain(&p, DigestAlgorithm::Sm3, DigestAlgorithm::Sm3, 2);
        let intl = verifier(&current_pki());
        assert!(verify_export(&sm, &intl).is_err());
    }
}

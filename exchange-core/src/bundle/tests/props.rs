//! Property tests for every decoder of signed structures: whatever bytes arrive (from a node, the
//! hub, or a bundle file handed over years later), decoding and verifying never panics, and
//! nothing but the genuine bytes verifies.

use std::sync::LazyLock;

use exchange_proto::v1 as pb;
use proptest::prelude::*;

use super::fixture::{current_pki, journey, verifier};
use crate::{
    bundle::{MAGIC, encode_bundle, verify_bundle},
    document::{Header, SignedDoc, SignedEvidence},
    signing::Verifier,
    time::now_ms,
};

/// A verifier, and genuine signed structures to take apart.
struct Genuine {
    verifier: Verifier,
    doc: pb::SignedDocument,
    evidence: pb::SignedEvidence,
    bundle: Vec<u8>,
}

static GENUINE: LazyLock<Genuine> = LazyLock::new(|| {
    let pki = current_pki();
    let (doc, bundle) = journey(&pki, now_ms() - 60_000, true);
    Genuine {
        verifier: verifier(&pki),
        doc: doc.wire,
        evidence: bundle.evidence[0].clone(),
        bundle: encode_bundle(&bundle),
    }
});

fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

/// `bytes` with the byte at `at` (modulo its length) changed by `xor` (never 0).
fn flip(bytes: &[u8], at: usize, xor: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = at % out.len();
    out[i] ^= xor;
    out
}

/// Headers with every field arbitrary but plausible-looking, so that validation gets past
/// decoding and exercises each of its checks.
fn headers() -> impl Strategy<Value = pb::DocumentHeader> {
    let ids = prop::collection::vec(
        prop_oneof![4 => "[a-z][a-z0-9_-]{0,5}", 1 => ".{0,3}"],
        0..6,
    );
    let part = (
        prop_oneof![4 => "[a-z][a-z.]{0,6}", 1 => ".{0,3}"],
        prop_oneof![4 => "[a-z/]{0,8}", 1 => ".{0,4}"],
        any::<u64>(),
        prop_oneof![4 => prop::collection::vec(any::<u8>(), 32..33), 1 => prop::collection::vec(any::<u8>(), 0..40)],
        prop_oneof![4 => 1i32..3, 1 => any::<i32>()],
    )
        .prop_map(|(name, media_type, size, sha256, role)| pb::Part {
            role,
            name,
            media_type,
            size,
            sha256,
        });
    let meta = (
        prop_oneof![4 => "[a-z][a-z ]{0,8}", 1 => ".{0,8}", 1 => "[a-z]{495,505}"],
        ids.clone(),
        ids,
        0i32..20,
        0i32..7,
        0i32..6,
        prop_oneof![4 => Just(String::new()), 1 => ".{0,12}"],
        prop_oneof![4 => Just(0i64), 1 => any::<i64>()],
    )
        .prop_map(
            |(
                title,
                to_depts,
                cc_depts,
                doc_type,
                urgency,
                classification,
                document_date,
                reply_deadline_ms,
            )| {
                pb::DocumentMetadata {
                    title,
                    to_depts,
                    cc_depts,
                    doc_type,
                    urgency,
                    classification,
                    document_date,
                    reply_deadline_ms,
                    ..Default::default()
                }
            },
        );
    // Mostly valid where a field is a gate (format, id, sender, metadata), so that most cases
    // reach the checks behind it.
    (
        prop_oneof![4 => Just(1u32), 1 => 0u32..3],
        prop_oneof![
            4 => Just("0192f0c1-7a4e-7cc1-9d36-1b2f1e0c5a77".to_owned()),
            1 => ".{0,40}"
        ],
        prop_oneof![4 => "[a-z][a-z0-9-]{0,5}", 1 => ".{0,3}"],
        any::<i64>(),
        prop::option::weighted(0.9, meta),
        prop::collection::vec(part, 0..4),
        prop_oneof![8 => Just(String::new()), 1 => Just("sm3".to_owned()), 1 => ".{0,6}"],
    )
        .prop_map(
            |(format, id, sender, created_at_ms, metadata, parts, digest_algorithm)| {
                pb::DocumentHeader {
                    format,
                    id,
                    sender,
                    created_at_ms,
                    metadata,
                    parts,
                    digest_algorithm,
                }
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_header_fields_are_validated_without_panicking(h in headers()) {
        if let Ok(header) = Header::try_from(h) {
            // Whatever passes keeps the promises the rest of the code relies on.
            prop_assert!((1..=crate::document::limits::RECIPIENTS).contains(&header.recipients.len()));
            prop_assert!((1..=crate::document::limits::PARTS).contains(&header.parts.len()));
            prop_assert!(header.title.chars().count() <= crate::document::limits::TITLE_CHARS);
            prop_assert!(header.recipients.iter().all(|r| r.addr.local_to(None) != Some(&header.sender)));
        }
    }

    #[test]
    fn arbitrary_bytes_never_verify_as_a_document(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let g = &*GENUINE;
        // As a whole SignedDocument message, as a node would send it.
        if let Ok(wire) = <pb::SignedDocument as prost::Message>::decode(bytes.as_slice()) {
            prop_assert!(SignedDoc::verify(wire, &g.verifier, now_secs()).is_err());
        }
        // As the header under a genuine signature, and as the signature itself.
        let under_genuine = pb::SignedDocument { header: bytes.clone(), signature: g.doc.signature.clone() };
        prop_assert!(SignedDoc::verify(under_genuine, &g.verifier, now_secs()).is_err());
        let mut forged = g.doc.clone();
        if let Some(sig) = forged.signature.as_mut() {
            sig.value = bytes.clone();
        }
        prop_assert!(SignedDoc::verify(forged, &g.verifier, now_secs()).is_err());
        let mut foreign_cert = g.doc.clone();
        if let Some(sig) = foreign_cert.signature.as_mut() {
            sig.signer_cert = bytes;
        }
        prop_assert!(SignedDoc::verify(foreign_cert, &g.verifier, now_secs()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_verify_as_evidence(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let g = &*GENUINE;
        if let Ok(wire) = <pb::SignedEvidence as prost::Message>::decode(bytes.as_slice()) {
            prop_assert!(SignedEvidence::verify(wire, &g.verifier, now_secs()).is_err());
        }
        let under_genuine = pb::SignedEvidence { evidence: bytes.clone(), signature: g.evidence.signature.clone() };
        prop_assert!(SignedEvidence::verify(under_genuine, &g.verifier, now_secs()).is_err());
        let mut forged = g.evidence.clone();
        if let Some(sig) = forged.signature.as_mut() {
            sig.value = bytes;
        }
        prop_assert!(SignedEvidence::verify(forged, &g.verifier, now_secs()).is_err());
    }

    #[test]
    fn arbitrary_headers_are_validated_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(h) = <pb::DocumentHeader as prost::Message>::decode(bytes.as_slice()) {
            let _ = Header::try_from(h);
        }
    }

    #[test]
    fn arbitrary_bytes_never_verify_as_a_bundle(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let g = &*GENUINE;
        prop_assert!(verify_bundle(&bytes, &g.verifier).is_err());
        let with_magic = [MAGIC, bytes.as_slice()].concat();
        prop_assert!(verify_bundle(&with_magic, &g.verifier).is_err());
    }

    #[test]
    fn a_genuine_structure_with_any_byte_changed_never_verifies(at in any::<usize>(), xor in 1u8..=255) {
        let g = &*GENUINE;
        let mut doc = g.doc.clone();
        doc.header = flip(&doc.header, at, xor);
        prop_assert!(SignedDoc::verify(doc, &g.verifier, now_secs()).is_err());
        let mut ev = g.evidence.clone();
        ev.evidence = flip(&ev.evidence, at, xor);
        prop_assert!(SignedEvidence::verify(ev, &g.verifier, now_secs()).is_err());
        prop_assert!(verify_bundle(&flip(&g.bundle, at, xor), &g.verifier).is_err());
    }

    #[test]
    fn bytes_inserted_into_a_genuine_bundle_never_verify(
        at in any::<usize>(),
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let g = &*GENUINE;
        let i = at % (g.bundle.len() + 1);
        let spliced = [&g.bundle[..i], extra.as_slice(), &g.bundle[i..]].concat();
        prop_assert!(verify_bundle(&spliced, &g.verifier).is_err());
    }
}

#[test]
fn the_genuine_structures_verify() {
    let g = &*GENUINE;
    assert!(SignedDoc::verify(g.doc.clone(), &g.verifier, now_secs()).is_ok());
    assert!(SignedEvidence::verify(g.evidence.clone(), &g.verifier, now_secs()).is_ok());
    assert!(verify_bundle(&g.bundle, &g.verifier).is_ok());
}

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

proptest! {
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

//! Every digest follows the exchange's profile and names its algorithm (issue 14): the header's
//! `digest_algorithm`, the header digest and part digests computed with it, a verifier refusing
//! a header of the other profile's digest, and the bundle format that says so. The international
//! bytes stay exactly what they were.

use exchange_proto::v1 as pb;
use prost::Message as _;

use super::fixture::{Pki, current_pki, document, failure, journey, verifier};
use super::*;
use crate::{
    document::{DocError, SignedDoc},
    signing::{Context, SigningKey},
    time::now_ms,
};

/// `header` encoded and signed by `key` as it is, whatever it names (`SignedDoc::seal` would
/// refuse a header naming another digest than the key's).
fn forged(key: &SigningKey, header: &pb::DocumentHeader) -> pb::SignedDocument {
    let bytes = header.encode_to_vec();
    pb::SignedDocument {
        signature: Some(key.sign(Context::DocumentHeader, &bytes).unwrap()),
        header: bytes,
    }
}

/// The header of a genuine document of `p`, re-labelled with `digest_algorithm` and re-signed.
fn relabelled(p: &Pki, digest_algorithm: &str) -> pb::SignedDocument {
    let doc = document(&p.a, now_ms());
    let mut header = pb::DocumentHeader::decode(doc.wire.header.as_slice()).unwrap();
    header.digest_algorithm = digest_algorithm.into();
    forged(&p.a, &header)
}

fn refusal(wire: pb::SignedDocument, v: &Verifier) -> String {
    match SignedDoc::verify(wire, v, now_secs()) {
        Ok(_) => panic!("verified although it must not"),
        Err(e) => e.to_string(),
    }
}

fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap()
}

#[test]
fn an_international_header_is_byte_for_byte_what_it_was() {
    let p = current_pki();
    let doc = document(&p.a, now_ms());
    let header = pb::DocumentHeader::decode(doc.wire.header.as_slice()).unwrap();
    assert_eq!(
        header.digest_algorithm, "",
        "sha256 is written as the field's absence"
    );
    // Field 7 (`digest_algorithm`) is the last: naming an algorithm appends `3A <len> <name>`
    // to exactly the bytes a header without it has (as docs/protocol.md shows).
    let named = pb::DocumentHeader {
        digest_algorithm: "sm3".into(),
        ..header
    };
    assert_eq!(
        named.encode_to_vec(),
        [doc.wire.header.as_slice(), &[0x3A, 0x03, b's', b'm', b'3']].concat()
    );
    assert_eq!(doc.header.digest, DigestAlgorithm::Sha256);
    assert_eq!(doc.digest, Digest::of(&doc.wire.header));
    assert_eq!(doc.header.parts[0].sha256, Digest::of(super::fixture::BODY));
    let (_, bundle) = journey(&p, now_ms(), true);
    assert_eq!(bundle.format, 2, "an international bundle stays format 2");
    let report = verify_bundle(&encode_bundle(&bundle), &verifier(&p)).unwrap();
    assert_eq!(report.digest, DigestAlgorithm::Sha256);
}

#[test]
fn a_header_naming_sm3_is_refused_by_an_international_verifier() {
    let p = current_pki();
    assert_eq!(
        refusal(relabelled(&p, "sm3"), &verifier(&p)),
        "header.digest_algorithm: sm3 is not this exchange's (international uses sha256)"
    );
    assert_eq!(
        refusal(relabelled(&p, "md5"), &verifier(&p)),
        "header.digest_algorithm: unknown digest algorithm \"md5\" (allowed: sha256, sm3)"
    );
    // Naming sha256 explicitly is the same algorithm (other bytes, so another header digest).
    let explicit = SignedDoc::verify(relabelled(&p, "sha256"), &verifier(&p), now_secs()).unwrap();
    assert_eq!(explicit.header.digest, DigestAlgorithm::Sha256);
    assert_eq!(explicit.digest, Digest::of(&explicit.wire.header));
}

#[test]
fn a_key_seals_only_headers_naming_its_own_digest() {
    let p = current_pki();
    let doc = document(&p.a, now_ms());
    let mut header = pb::DocumentHeader::decode(doc.wire.header.as_slice()).unwrap();
    header.digest_algorithm = "sm3".into();
    let err = SignedDoc::seal(&header, &p.a).unwrap_err();
    assert!(matches!(err, DocError::Field(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "header.digest_algorithm: sm3 is not the signing key's digest (sha256)"
    );
}

#[cfg(not(feature = "shangmi"))]
#[test]
fn an_sm3_header_is_refused_with_the_missing_feature_named() {
    let p = current_pki();
    let err = SignedDoc::decode(relabelled(&p, "sm3")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header.digest_algorithm: sm3: this build has no 国密 support (build with --features shangmi)"
    );
}

#[test]
fn the_bundle_format_must_fit_the_digest() {
    let p = current_pki();
    let (_, mut bundle) = journey(&p, now_ms(), false);
    bundle.format = BUNDLE_FORMAT_NAMED_DIGEST;
    assert_eq!(
        failure(&bundle, &verifier(&p)),
        "bundle format 3 does not fit a document whose digests are sha256 (sha256: format 1 or 2; sm3: format 3)"
    );
    // Format 1 (before batch signatures) is still read as it always was.
    bundle.format = 1;
    assert!(verify_bundle(&encode_bundle(&bundle), &verifier(&p)).is_ok());
}

/// The same under the shangmi profile: SM2 keys, SM3 digests everywhere.
#[cfg(feature = "shangmi")]
mod sm3 {
    use super::super::fixture::sm2_pki;
    use super::*;

    #[test]
    fn an_sm3_bundle_round_trips_with_every_digest_sm3() {
        let p = sm2_pki();
        let (doc, bundle) = journey(&p, now_ms(), true);
        let header = pb::DocumentHeader::decode(doc.wire.header.as_slice()).unwrap();
        assert_eq!(header.digest_algorithm, "sm3");
        let sm3 = |b: &[u8]| Digest::with(DigestAlgorithm::Sm3, b).unwrap();
        assert_eq!(
            doc.digest,
            sm3(&doc.wire.header),
            "the header digest is SM3"
        );
        assert_ne!(doc.digest, Digest::of(&doc.wire.header));
        assert_eq!(doc.header.parts[0].sha256, sm3(super::super::fixture::BODY));
        assert_eq!(bundle.format, BUNDLE_FORMAT_NAMED_DIGEST);
        let bytes = encode_bundle(&bundle);
        let report = verify_bundle(&bytes, &verifier(&p)).unwrap();
        assert_eq!(report.digest, DigestAlgorithm::Sm3);
        assert_eq!(report.header_digest, doc.digest);
        assert!(report.content_verified);
        assert_eq!(report.steps.len(), 6);
        // The bundle decodes as it was written.
        assert_eq!(decode_bundle(&bytes).unwrap(), bundle);
    }

    #[test]
    fn altered_sm3_content_and_a_mislabelled_format_are_refused() {
        let p = sm2_pki();
        let v = verifier(&p);
        let (_, bundle) = journey(&p, now_ms(), true);
        let mut altered = bundle.clone();
        altered.content[1].data[0] ^= 1;
        assert_eq!(
            failure(&altered, &v),
            "content part 1 (附件.pdf): SM3 does not match the signed manifest"
        );
        let mut two = bundle;
        two.format = 2;
        assert_eq!(
            failure(&two, &v),
            "bundle format 2 does not fit a document whose digests are sm3 (sha256: format 1 or 2; sm3: format 3)"
        );
    }

    #[test]
    fn each_profile_refuses_the_other_profiles_digest_by_name() {
        let sm = sm2_pki();
        let intl = current_pki();
        // An SM2-signed header naming sha256: refused before anything is hashed with it.
        assert_eq!(
            refusal(relabelled(&sm, "sha256"), &verifier(&sm)),
            "header.digest_algorithm: sha256 is not this exchange's (shangmi uses sm3)"
        );
        assert_eq!(
            refusal(relabelled(&sm, ""), &verifier(&sm)),
            "header.digest_algorithm: sha256 is not this exchange's (shangmi uses sm3)"
        );
        // A genuine international header at a shangmi exchange, and the reverse.
        let doc = document(&intl.a, now_ms());
        assert_eq!(
            refusal(doc.wire, &verifier(&sm)),
            "header.digest_algorithm: sha256 is not this exchange's (shangmi uses sm3)"
        );
        let doc = document(&sm.a, now_ms());
        assert_eq!(
            refusal(doc.wire, &verifier(&intl)),
            "header.digest_algorithm: sm3 is not this exchange's (international uses sha256)"
        );
        // A whole SM3 bundle against an international CA names the same field.
        let (_, bundle) = journey(&sm, now_ms(), false);
        assert_eq!(
            failure(&bundle, &verifier(&intl)),
            "document header: header.digest_algorithm: sm3 is not this exchange's (international uses sha256)"
        );
    }
}

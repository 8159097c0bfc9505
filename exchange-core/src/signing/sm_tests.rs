//! The signer and verifier under the `shangmi` profile: SM2-with-SM3 signatures from Tongsuo,
//! certificate paths checked by webpki with Tongsuo doing every SM2 check, and the two profiles
//! kept apart.

use super::testpki::{sm2_ca, sm2_signer};
use super::*;
use crate::identity::Principal;

fn now() -> u64 {
    u64::try_from(crate::time::now_ms() / 1000).unwrap()
}

fn dept(id: &str) -> Principal {
    Principal::Dept(id.parse().unwrap())
}

#[test]
fn an_sm2_signature_verifies_under_an_sm2_ca_and_nothing_else_does() {
    let ca = sm2_ca("SM2 Test CA");
    let key = sm2_signer(&ca, &dept("a"), true);
    assert_eq!(key.scheme(), Scheme::Sm2Sm3);
    let v = Verifier::new(&ca.0).unwrap();
    assert_eq!(v.profile(), Profile::Shangmi);

    let sig = key.sign(Context::Evidence, b"bytes").unwrap();
    assert_eq!(sig.algorithm, SM2_SM3);
    assert_eq!(
        v.verify(&sig, Context::Evidence, b"bytes", now()).unwrap(),
        dept("a")
    );
    // Cached signer, the same checks.
    assert!(matches!(
        v.verify(&sig, Context::Evidence, b"other", now()),
        Err(SignError::BadSignature)
    ));
    assert!(matches!(
        v.verify(&sig, Context::DocumentHeader, b"bytes", now()),
        Err(SignError::BadSignature)
    ));
    // Expired by the time of the check.
    let later = now() + 30 * 86_400;
    assert!(matches!(
        v.verify(&sig, Context::Evidence, b"bytes", later),
        Err(SignError::Certificate(_))
    ));

    // Another SM2 CA does not vouch for it.
    let other = Verifier::new(&sm2_ca("Another SM2 CA").0).unwrap();
    assert!(matches!(
        other.verify(&sig, Context::Evidence, b"bytes", now()),
        Err(SignError::Certificate(_))
    ));
}

#[test]
fn a_signer_without_the_document_signing_usage_is_refused() {
    let ca = sm2_ca("SM2 EKU CA");
    let key = sm2_signer(&ca, &dept("a"), false);
    let v = Verifier::new(&ca.0).unwrap();
    let sig = key.sign(Context::Evidence, b"bytes").unwrap();
    let err = v
        .verify(&sig, Context::Evidence, b"bytes", now())
        .unwrap_err();
    assert!(
        matches!(&err, SignError::Certificate(m) if m.contains("RequiredEkuNotFound")),
        "{err}"
    );
}

#[test]
fn every_statement_of_an_sm2_batch_verifies_alone() {
    let ca = sm2_ca("SM2 Batch CA");
    let key = sm2_signer(&ca, &Principal::Hub, true);
    let v = Verifier::new(&ca.0).unwrap();
    let stmts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 30]).collect();
    let leaves: Vec<_> = stmts
        .iter()
        .map(|b| key.leaf(Context::Evidence, b).unwrap())
        .collect();
    let sigs = key.sign_batch(&leaves).unwrap();
    for (b, sig) in stmts.iter().zip(&sigs) {
        assert_eq!(sig.algorithm, SM2_SM3_BATCH);
        assert_eq!(
            v.verify(sig, Context::Evidence, b, now()).unwrap(),
            Principal::Hub
        );
    }
    let mut tampered = sigs[2].clone();
    tampered.batch.as_mut().unwrap().path[0][3] ^= 1;
    let err = v
        .verify(&tampered, Context::Evidence, &stmts[2], now())
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("batch signature: inclusion path of leaf 2 of 5"),
        "{err}"
    );
    // The leaves are SM3: the same statements hashed with SHA-256 lead elsewhere.
    let sha = merkle::leaf_hash(
        crate::crypto::DigestAlgorithm::Sha256,
        Context::Evidence.prefix(),
        &stmts[0],
    )
    .unwrap();
    assert_ne!(sha, leaves[0]);
}

#[test]
fn the_two_profiles_refuse_each_others_signatures_by_name() {
    let sm_ca = sm2_ca("SM2 Profile CA");
    let sm_key = sm2_signer(&sm_ca, &dept("a"), true);
    let sm_v = Verifier::new(&sm_ca.0).unwrap();
    let (int_ca, int_key) = super::tests::pki("International CA");
    let int_v = Verifier::new(&int_ca).unwrap();
    assert_eq!(int_v.profile(), Profile::International);
    let june = 1_591_000_000; // inside the international test certificate's window

    let int_sig = int_key.sign(Context::Evidence, b"x").unwrap();
    let err = sm_v
        .verify(&int_sig, Context::Evidence, b"x", now())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "signature algorithm \"ed25519\" is of the international profile, but this exchange's is shangmi"
    );
    let sm_sig = sm_key.sign(Context::Evidence, b"x").unwrap();
    let err = int_v
        .verify(&sm_sig, Context::Evidence, b"x", june)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "signature algorithm \"sm2-sm3\" is of the shangmi profile, but this exchange's is international"
    );
    // An SM2 signature relabelled ed25519: refused by the SM2 exchange as the wrong profile,
    // and by the international one because the certificate's key is not Ed25519.
    let mut relabelled = sm_sig;
    relabelled.algorithm = ED25519.into();
    assert!(matches!(
        sm_v.verify(&relabelled, Context::Evidence, b"x", now()),
        Err(SignError::Profile { .. })
    ));
    assert!(
        int_v
            .verify(&relabelled, Context::Evidence, b"x", now())
            .is_err()
    );
}

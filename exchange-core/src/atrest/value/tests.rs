use super::*;
use crate::atrest::{
    golden::*,
    keys::{test_keys, test_keys_for, test_suites},
};

const AAD: &[u8] = b"documents/0190c0de";

#[test]
fn round_trips_empty_small_and_large_values() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        for len in [0usize, 1, 15, 16, 17, 1000, 100_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = keys.seal(AAD, &plain).unwrap();
            assert_eq!(sealed.len(), plain.len() + VALUE_OVERHEAD);
            assert!(DataKeys::is_sealed(&sealed));
            assert_eq!(sealed[4], suite.format_byte(), "the bytes name {suite}");
            assert_eq!(keys.open(AAD, &sealed).unwrap(), plain, "{suite}");
        }
    }
}

#[test]
fn sealed_value_never_contains_the_plaintext() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let marker = b"CONFIDENTIAL-MARKER-4242";
        let plain = [&b"prefix "[..], marker, b" suffix"].concat();
        let a = keys.seal(AAD, &plain).unwrap();
        let b = keys.seal(AAD, &plain).unwrap();
        assert!(!a.windows(marker.len()).any(|w| w == marker));
        assert_ne!(a, b, "a fresh salt per value: equal plaintexts do not show");
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let sealed = keys.seal(AAD, b"some record").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = keys.open(AAD, &bad).unwrap_err();
            match i {
                // Format byte 1 ^ 1 = 0 and 2 ^ 1 = 3: no suite.
                0..5 => assert!(matches!(err, AtRestError::ValueFormat { .. }), "{err}"),
                5..9 => assert!(matches!(err, AtRestError::UnknownKeyId { .. }), "{err}"),
                _ => assert!(
                    matches!(err, AtRestError::ValueNotAuthentic),
                    "{suite} {i}: {err}"
                ),
            }
        }
        let truncated = &sealed[..sealed.len() - 1];
        assert!(keys.open(AAD, truncated).is_err());
        assert!(keys.open(AAD, &sealed[..10]).is_err());
    }
}

#[test]
fn a_value_moved_to_another_slot_does_not_authenticate() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let sealed = keys.seal(b"documents/a", b"record a").unwrap();
        let err = keys.open(b"documents/b", &sealed).unwrap_err();
        assert!(matches!(err, AtRestError::ValueNotAuthentic));
        assert!(err.to_string().contains("does not authenticate"), "{err}");
    }
}

#[test]
fn another_stores_key_does_not_open_a_value() {
    for suite in test_suites() {
        let sealed = test_keys_for(suite, 1).seal(AAD, b"record").unwrap();
        let err = test_keys_for(suite, 2).open(AAD, &sealed).unwrap_err();
        assert!(matches!(err, AtRestError::ValueNotAuthentic));
    }
}

#[test]
fn plaintext_protobuf_is_never_taken_for_sealed() {
    // Wire type 7 does not exist: no protobuf message's first byte looks like ours.
    assert_eq!(VALUE_MAGIC[0] & 7, 7);
    let legacy = prost::Message::encode_to_vec(&exchange_proto::v1::SignedEvidence {
        evidence: b"x".to_vec(),
        ..Default::default()
    });
    assert!(!DataKeys::is_sealed(&legacy));
    assert!(!DataKeys::is_sealed(&[]));
    assert!(matches!(
        test_keys(1).open(AAD, &legacy),
        Err(AtRestError::ValueFormat { .. })
    ));
}

#[test]
fn a_version_1_aes_value_still_opens_and_new_international_values_keep_its_layout() {
    let keys = test_keys(0x42);
    let golden = hex::decode(V1_AES_VALUE).unwrap();
    assert_eq!(
        keys.open(GOLDEN_SLOT, &golden).unwrap(),
        b"golden record v1"
    );
    let fresh = keys.seal(GOLDEN_SLOT, b"golden record v1").unwrap();
    assert_eq!(fresh[..9], golden[..9], "magic, format byte 1, key id");
    assert_eq!(fresh.len(), golden.len());
}

#[test]
fn a_value_of_the_other_profile_is_refused_naming_both_suites() {
    let golden = hex::decode(V1_AES_VALUE).unwrap();
    let err = test_keys_for(Suite::Sm4Gcm, 0x42)
        .open(GOLDEN_SLOT, &golden)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AtRestError::SuiteMismatch { .. }), "{msg}");
    for name in ["aes-256-gcm", "international", "sm4-gcm", "shangmi"] {
        assert!(msg.contains(name), "{name} in {msg}");
    }
    let sm = hex::decode(V2_SM4_VALUE).unwrap();
    let err = test_keys(0x42).open(GOLDEN_SLOT, &sm).unwrap_err();
    assert!(
        matches!(
            err,
            AtRestError::SuiteMismatch {
                found: Suite::Sm4Gcm,
                expected: Suite::Aes256Gcm,
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(feature = "shangmi")]
mod sm {
    use super::*;
    use crate::crypto::sm::sm4;

    #[test]
    fn a_value_sealed_by_another_sm4_gcm_and_hkdf_sm3_implementation_opens() {
        let keys = test_keys_for(Suite::Sm4Gcm, 0x42);
        let golden = hex::decode(V2_SM4_VALUE).unwrap();
        assert_eq!(keys.open(GOLDEN_SLOT, &golden).unwrap(), b"golden record");
    }

    #[test]
    fn our_sealed_value_decrypts_with_tongsuos_sm4_gcm_and_an_hmac_sm3_derived_key() {
        let keys = test_keys_for(Suite::Sm4Gcm, 0x42);
        let sealed = keys.seal(GOLDEN_SLOT, b"an sm4 record").unwrap();
        assert_eq!(sealed[4], 2, "format byte 2 names sm4-gcm/hkdf-sm3");
        let (header, body) = sealed.split_at(25);
        // RFC 5869 by hand over Tongsuo's HMAC-SM3: T(1) = HMAC(PRK, info | 01), first 16 bytes.
        let prk = hmac_sm3(&header[9..25], &[0x42; 32]);
        let okm = hmac_sm3(&prk, &[&b"exchange at-rest value v1"[..], &[1]].concat());
        let key: [u8; sm4::KEY_LEN] = okm[..16].try_into().unwrap();
        let aad = [header, GOLDEN_SLOT].concat();
        let plain = tongsuo_sm4_gcm_open(&key, &[0; 12], &aad, body);
        assert_eq!(plain, b"an sm4 record");
        // And not AES: the same key bytes under AES-128-GCM do not open it.
        assert!(aes_128_gcm_open(&key, &aad, body).is_none());
    }

    fn hmac_sm3(key: &[u8], data: &[u8]) -> Vec<u8> {
        use tongsuo::{hash::MessageDigest, pkey::PKey, sign::Signer};
        let key = PKey::hmac(key).unwrap();
        let mut signer = Signer::new(MessageDigest::sm3(), &key).unwrap();
        signer.update(data).unwrap();
        signer.sign_to_vec().unwrap()
    }

    /// SM4-GCM straight from Tongsuo's cipher table, not through `crypto::sm::sm4`.
    fn tongsuo_sm4_gcm_open(key: &[u8], nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Vec<u8> {
        use tongsuo::{cipher::Cipher, cipher_ctx::CipherCtx};
        let (ct, tag) = sealed.split_at(sealed.len() - 16);
        let cipher = Cipher::fetch(None, "SM4-GCM", None).unwrap();
        let mut ctx = CipherCtx::new().unwrap();
        ctx.decrypt_init(Some(&cipher), Some(key), Some(nonce))
            .unwrap();
        ctx.set_tag(tag).unwrap();
        ctx.cipher_update(aad, None).unwrap();
        let mut out = Vec::new();
        ctx.cipher_update_vec(ct, &mut out).unwrap();
        ctx.cipher_final_vec(&mut out).unwrap();
        out
    }

    fn aes_128_gcm_open(key: &[u8; 16], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).ok()?);
        let mut buf = sealed.to_vec();
        let n = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?
            .len();
        buf.truncate(n);
        Some(buf)
    }
}

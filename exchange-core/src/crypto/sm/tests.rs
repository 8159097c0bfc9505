//! Known answers from the standards, round trips, and the refusals; interop with the system
//! OpenSSL in [`openssl`].

use tongsuo::cipher::Cipher;
use tongsuo::cipher_ctx::CipherCtx;
use tongsuo::x509::X509;
use tongsuo::x509::store::X509StoreBuilder;

use super::cert::{self, CertUsage, LeafRequest};
use super::*;

mod openssl;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

#[test]
fn sm3_known_answers_gbt_32905() {
    assert_eq!(
        sm3(b"abc").unwrap().to_vec(),
        unhex("66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0")
    );
    assert_eq!(
        sm3("abcd".repeat(16).as_bytes()).unwrap().to_vec(),
        unhex("debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732")
    );
}

#[test]
fn sm4_known_answer_gbt_32907() {
    // GB/T 32907-2016 appendix A.1: key = plaintext, one block.
    let key = unhex("0123456789abcdeffedcba9876543210");
    let mut ctx = CipherCtx::new().unwrap();
    ctx.encrypt_init(Some(Cipher::sm4_ecb()), Some(&key), None)
        .unwrap();
    ctx.set_padding(false);
    let mut out = Vec::new();
    ctx.cipher_update_vec(&key, &mut out).unwrap();
    ctx.cipher_final_vec(&mut out).unwrap();
    assert_eq!(hex::encode(out), "681edf34d206965e86b3e94f536e4246");
}

#[test]
fn hkdf_sm3_gives_what_another_implementation_and_rfc_5869_by_hand_give() {
    // RFC 5869 test case 1's inputs with SM3 for SHA-256; the answer from OpenSSL's HKDF with
    // SM3 (through Python's `cryptography`), not from Tongsuo.
    let (ikm, salt, info) = (
        [0x0b; 22],
        unhex("000102030405060708090a0b0c"),
        unhex("f0f1f2f3f4f5f6f7f8f9"),
    );
    let mut okm = [0u8; 42];
    kdf::hkdf_sm3(&ikm, &salt, &info, &mut okm).unwrap();
    assert_eq!(
        okm.to_vec(),
        unhex(
            "c69fe91b7aaee2dd5718d72dcaee0cce93f1b8e41f792da51261b6a517e68b36ed2c595572b01dfa359b"
        )
    );
    // Extract then expand by hand over Tongsuo's HMAC-SM3: the first block is T(1).
    let hmac = |key: &[u8], data: &[u8]| {
        let key = PKey::hmac(key).unwrap();
        let mut signer = Signer::new(MessageDigest::sm3(), &key).unwrap();
        signer.sign_oneshot_to_vec(data).unwrap()
    };
    let prk = hmac(&salt, &ikm);
    let t1 = hmac(&prk, &[&info[..], &[1]].concat());
    assert_eq!(okm[..32], t1[..]);
    // No salt is RFC 5869's 32 zero bytes.
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    kdf::hkdf_sm3(&[1; 32], &[], b"info", &mut a).unwrap();
    kdf::hkdf_sm3(&[1; 32], &[0; 32], b"info", &mut b).unwrap();
    assert_eq!(a, b);
    // Lengths HKDF cannot give are refused, not truncated.
    assert!(matches!(
        kdf::hkdf_sm3(&ikm, &salt, &info, &mut []),
        Err(SmError::KdfLength(0))
    ));
    let mut long = vec![0u8; kdf::MAX_OUTPUT + 1];
    assert!(kdf::hkdf_sm3(&ikm, &salt, &info, &mut long).is_err());
    assert!(kdf::hkdf_sm3(&ikm, &salt, &info, &mut long[1..]).is_ok());
}

#[test]
fn a_kept_hkdf_context_derives_what_a_fresh_one_does() {
    // A new thread starts with no kept context: its answer is a fresh derivation's.
    let fresh = |ikm: [u8; 32], salt: Vec<u8>, info: &'static [u8]| {
        std::thread::spawn(move || {
            let mut okm = [0u8; 16];
            kdf::hkdf_sm3(&ikm, &salt, info, &mut okm).unwrap();
            okm
        })
        .join()
        .unwrap()
    };
    // In this thread, one after the other: salts replaced (and none after some), the key and
    // the info changed and changed back, a refused length in between.
    let steps: [([u8; 32], Vec<u8>, &'static [u8]); 7] = [
        ([1; 32], vec![7; 16], b"values"),
        ([1; 32], vec![8; 16], b"values"),
        ([1; 32], vec![], b"values"),
        ([1; 32], vec![9; 20], b"values"),
        ([2; 32], vec![9; 20], b"values"),
        ([2; 32], vec![9; 20], b"blobs"),
        ([1; 32], vec![7; 16], b"values"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (ikm, salt, info) in steps {
        assert!(kdf::hkdf_sm3(&ikm, &salt, info, &mut []).is_err());
        let mut okm = [0u8; 16];
        kdf::hkdf_sm3(&ikm, &salt, info, &mut okm).unwrap();
        assert_eq!(okm, fresh(ikm, salt, info));
        seen.insert(okm);
    }
    assert_eq!(seen.len(), 6, "only the last step repeats an earlier one");
}

#[test]
fn sm4_gcm_round_trip_and_every_tamper_refused() {
    let key = [7u8; sm4::KEY_LEN];
    let nonce = [9u8; sm4::NONCE_LEN];
    let sealed = sm4::seal(&key, &nonce, b"doc-1", b"secret content").unwrap();
    assert_eq!(sealed.len(), b"secret content".len() + sm4::TAG_LEN);
    assert_ne!(&sealed[..14], b"secret content");
    assert_eq!(
        sm4::open(&key, &nonce, b"doc-1", &sealed).unwrap(),
        b"secret content"
    );

    let mut flipped = sealed.clone();
    flipped[0] ^= 1;
    let wrong_key = [8u8; sm4::KEY_LEN];
    let wrong_nonce = [0u8; sm4::NONCE_LEN];
    for (what, result) in [
        ("flipped bit", sm4::open(&key, &nonce, b"doc-1", &flipped)),
        ("other aad", sm4::open(&key, &nonce, b"doc-2", &sealed)),
        (
            "other key",
            sm4::open(&wrong_key, &nonce, b"doc-1", &sealed),
        ),
        (
            "other nonce",
            sm4::open(&key, &wrong_nonce, b"doc-1", &sealed),
        ),
        (
            "truncated",
            sm4::open(&key, &nonce, b"doc-1", &sealed[..10]),
        ),
    ] {
        assert!(
            matches!(result, Err(SmError::Unauthentic)),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn sm2_sign_verify_round_trip() {
    let key = Sm2PrivateKey::generate().unwrap();
    let public = key.public_key().unwrap();
    let sig = key.sign(b"header bytes").unwrap();
    public.verify(b"header bytes", &sig).unwrap();
    // DER SEQUENCE of two INTEGERs of at most 33 bytes each.
    assert_eq!(sig[0], 0x30);
    assert!(sig.len() <= 72, "{}", sig.len());
    // Randomised signing: a second signature differs and verifies too.
    let again = key.sign(b"header bytes").unwrap();
    assert_ne!(sig, again);
    public.verify(b"header bytes", &again).unwrap();
}

#[test]
fn sm2_refuses_a_flipped_bit_another_message_or_another_key() {
    let key = Sm2PrivateKey::generate().unwrap();
    let public = key.public_key().unwrap();
    let sig = key.sign(b"header bytes").unwrap();
    let mut flipped = sig.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let other = Sm2PrivateKey::generate().unwrap().public_key().unwrap();
    for (what, result) in [
        ("flipped bit", public.verify(b"header bytes", &flipped)),
        ("other message", public.verify(b"header byteS", &sig)),
        ("other key", other.verify(b"header bytes", &sig)),
        ("garbage", public.verify(b"header bytes", b"not der")),
    ] {
        assert!(
            matches!(result, Err(SmError::BadSignature)),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn sm2_keys_survive_pkcs8_and_spki() {
    let key = Sm2PrivateKey::generate().unwrap();
    let pkcs8 = key.to_pkcs8_der().unwrap();
    let again = Sm2PrivateKey::from_pkcs8_der(&pkcs8).unwrap();
    let spki = key.public_key().unwrap().to_spki_der().unwrap();
    let public = Sm2PublicKey::from_spki_der(&spki).unwrap();
    public.verify(b"m", &again.sign(b"m").unwrap()).unwrap();
    assert_eq!(format!("{key:?}"), "Sm2PrivateKey(..)");
}

#[test]
fn keys_of_other_algorithms_are_refused() {
    // An ECDSA P-256 key: Tongsuo would happily sign with it, but not SM2.
    let p256 = rcgen::KeyPair::generate().unwrap();
    let err = Sm2PrivateKey::from_pkcs8_der(&p256.serialize_der()).unwrap_err();
    assert!(matches!(err, SmError::NotSm2Key(_)), "{err:?}");
    let spki = PKey::private_key_from_pkcs8(&p256.serialize_der())
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let err = Sm2PublicKey::from_spki_der(&spki).unwrap_err();
    assert!(matches!(err, SmError::NotSm2Key(_)), "{err:?}");
    assert!(Sm2PrivateKey::from_pkcs8_der(b"junk").is_err());
}

/// A CA, a signing and an encryption certificate, as TLCP's double certificates need.
pub(super) struct Pki {
    pub(super) ca_key: Sm2PrivateKey,
    pub(super) ca: Vec<u8>,
    pub(super) sign_key: Sm2PrivateKey,
    pub(super) sign: Vec<u8>,
    pub(super) enc: Vec<u8>,
}

pub(super) fn pki() -> Pki {
    let ca_key = Sm2PrivateKey::generate().unwrap();
    let ca = cert::self_signed_ca(&ca_key, "Exchange SM2 CA", 3650).unwrap();
    let sign_key = Sm2PrivateKey::generate().unwrap();
    let enc_key = Sm2PrivateKey::generate().unwrap();
    let mut req = LeafRequest {
        common_name: "hub",
        usage: CertUsage::Signing,
        dns_names: &["localhost", "hub.example"],
        days: 365,
    };
    let sign = cert::issue(&ca, &ca_key, &sign_key.public_key().unwrap(), &req).unwrap();
    req.usage = CertUsage::Encryption;
    let enc = cert::issue(&ca, &ca_key, &enc_key.public_key().unwrap(), &req).unwrap();
    Pki {
        ca_key,
        ca,
        sign_key,
        sign,
        enc,
    }
}

#[test]
fn issued_certificates_verify_in_tongsuo() {
    let pki = pki();
    let ca = X509::from_der(&pki.ca).unwrap();
    let ca_pub = ca.public_key().unwrap();
    assert!(ca.verify(&ca_pub).unwrap(), "self-signature");
    for leaf in [&pki.sign, &pki.enc] {
        let leaf = X509::from_der(leaf).unwrap();
        assert!(leaf.verify(&ca_pub).unwrap(), "leaf signed by the ca");
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca.clone()).unwrap();
        let store = store.build();
        let chain = tongsuo::stack::Stack::new().unwrap();
        let mut ctx = tongsuo::x509::X509StoreContext::new().unwrap();
        let ok = ctx
            .init(&store, &leaf, &chain, |c| c.verify_cert())
            .unwrap();
        assert!(ok, "chain: {}", ctx.error());
    }
    // The signing certificate's key is the one the signer holds.
    let from_cert = Sm2PublicKey::from_certificate_der(&pki.sign).unwrap();
    from_cert
        .verify(b"m", &pki.sign_key.sign(b"m").unwrap())
        .unwrap();
    // A leaf is not signed by some other CA.
    let other = Sm2PrivateKey::generate().unwrap();
    let other_ca = cert::self_signed_ca(&other, "Other CA", 30).unwrap();
    let other_pub = X509::from_der(&other_ca).unwrap().public_key().unwrap();
    assert!(
        !X509::from_der(&pki.sign)
            .unwrap()
            .verify(&other_pub)
            .unwrap_or(false)
    );
}

#[test]
fn issuance_refuses_a_mismatched_ca_key_and_bad_requests() {
    let pki = pki();
    let stranger = Sm2PrivateKey::generate().unwrap();
    let subject = stranger.public_key().unwrap();
    let mut req = LeafRequest {
        common_name: "a",
        usage: CertUsage::Signing,
        dns_names: &[],
        days: 1,
    };
    let err = cert::issue(&pki.ca, &stranger, &subject, &req).unwrap_err();
    assert!(matches!(err, SmError::CertRequest(_)), "{err:?}");
    req.days = 0;
    assert!(cert::issue(&pki.ca, &pki.ca_key, &subject, &req).is_err());
    req.days = 1;
    req.common_name = "";
    assert!(cert::issue(&pki.ca, &pki.ca_key, &subject, &req).is_err());
}

//! SM2 test certificates, issued by Tongsuo the way `exchange-certs` issues them: an SM2 CA and
//! SM2 document-signing keys named by URI SAN with (or without) the RFC 9336 documentSigning
//! extended key usage. Shared by every test of the shangmi profile (signing, documents, bundles,
//! audit chains, blobs), so there is one builder.

use tongsuo::asn1::Asn1Time;
use tongsuo::bn::{BigNum, MsbOption};
use tongsuo::hash::MessageDigest;
use tongsuo::nid::Nid;
use tongsuo::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use tongsuo::x509::{X509, X509Builder, X509NameBuilder};

use crate::crypto::sm::{Sm2PrivateKey, cert};
use crate::identity::Principal;
use crate::signing::SigningKey;

/// An SM2 CA (DER) and its key.
pub(crate) fn sm2_ca(name: &str) -> (Vec<u8>, Sm2PrivateKey) {
    let key = Sm2PrivateKey::generate().unwrap();
    let der = cert::self_signed_ca(&key, name, 30).unwrap();
    (der, key)
}

/// An SM2 document-signing key of `who` under the CA, with or without the document-signing
/// extended key usage.
pub(crate) fn sm2_signer(ca: &(Vec<u8>, Sm2PrivateKey), who: &Principal, eku: bool) -> SigningKey {
    let (ca_der, ca_key) = ca;
    let ca_cert = X509::from_der(ca_der).unwrap();
    let key = Sm2PrivateKey::generate().unwrap();
    let public = key.public_key().unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "signer").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(120, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca_cert.subject_name()).unwrap();
    // Valid from an hour ago, as `exchange-certs` backdates for clock skew: a statement dated
    // a moment before the certificate was made still verifies.
    let hour_ago = crate::time::now_ms() / 1000 - 3600;
    b.set_not_before(&Asn1Time::from_unix(hour_ago).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(10).unwrap())
        .unwrap();
    b.set_pubkey(public.pkey()).unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    if eku {
        b.append_extension(
            ExtendedKeyUsage::new()
                .other("1.3.6.1.5.5.7.3.36")
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    let san = SubjectAlternativeName::new()
        .uri(&who.uri())
        .build(&b.x509v3_context(Some(&ca_cert), None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(ca_key.pkey(), MessageDigest::sm3()).unwrap();
    let cert_der = b.build().to_der().unwrap();
    SigningKey::from_der(&key.to_pkcs8_der().unwrap(), cert_der).unwrap()
}

/// An SM2 CA with a hub key and document-signing keys for departments `depts`, each with the
/// documentSigning usage: (CA DER, hub, departments in order).
pub(crate) fn sm2_exchange(depts: &[&str]) -> (Vec<u8>, SigningKey, Vec<SigningKey>) {
    let ca = sm2_ca(&format!("SM2 Test CA {}", fastrand::u64(..)));
    let hub = sm2_signer(&ca, &Principal::Hub, true);
    let keys = depts
        .iter()
        .map(|d| sm2_signer(&ca, &Principal::Dept(d.parse().unwrap()), true))
        .collect();
    (ca.0, hub, keys)
}

//! SM2 CRLs: what [`sign_crl`] writes is what x509-parser reads and Tongsuo verifies, in the
//! shape of the international CRL; [`load_crl`] accepts it and refuses every tampered or
//! foreign one. The OpenSSL CLI's view is tested through `exchange-certs` (certs/tests/shangmi.rs).

use time::{Duration, OffsetDateTime};
use x509_parser::{
    extensions::ParsedExtension,
    prelude::{FromDer, X509Version},
    revocation_list::CertificateRevocationList,
    x509::X509Name,
};

use super::{CrlParams, RevokedEntry, SM2_WITH_SM3_ALGORITHM, sign_crl, to_pem};
use crate::crypto::sm::{
    Sm2PrivateKey,
    cert::{self, CertUsage, LeafRequest},
};
use crate::tls::{
    TlsError,
    crl::{Crl, load_crl, serial},
};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// ecdsa-with-SHA256 with no parameters: as long as [`SM2_WITH_SM3_ALGORITHM`], to swap in.
const ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

struct SmCa {
    key: Sm2PrivateKey,
    der: Vec<u8>,
}

fn ca(name: &str) -> Result<SmCa> {
    let key = Sm2PrivateKey::generate()?;
    let der = cert::self_signed_ca(&key, name, 30)?;
    Ok(SmCa { key, der })
}

fn leaf(ca: &SmCa, name: &str) -> Result<Vec<u8>> {
    let key = Sm2PrivateKey::generate()?;
    let req = LeafRequest {
        common_name: name,
        usage: CertUsage::Signing,
        dns_names: &[],
        days: 1,
    };
    Ok(cert::issue(&ca.der, &ca.key, &key.public_key()?, &req)?)
}

fn crl(ca: &SmCa, revoked: &[(&[u8], u8)]) -> Result<Vec<u8>> {
    let now = OffsetDateTime::now_utc();
    let entries: Vec<RevokedEntry<'_>> = revoked
        .iter()
        .map(|(serial, reason)| RevokedEntry {
            serial,
            at: now,
            reason: *reason,
        })
        .collect();
    let params = CrlParams {
        this_update: now,
        next_update: now + Duration::days(30),
        number: 7,
        revoked: &entries,
    };
    Ok(sign_crl(&ca.der, &ca.key, &params)?)
}

/// Writes `der` as `crl.pem` and loads it as a daemon does.
fn load(der: &[u8], ca_der: &[u8]) -> Result<std::result::Result<Crl, TlsError>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crl.pem");
    std::fs::write(&path, to_pem(der)?)?;
    Ok(load_crl(&path, ca_der))
}

fn refusal(der: &[u8], ca_der: &[u8]) -> Result<String> {
    match load(der, ca_der)? {
        Ok(_) => Err("a bad CRL loaded".into()),
        Err(e) => Ok(e.to_string()),
    }
}

#[test]
fn load_crl_accepts_an_sm2_crl_and_reports_the_revoked_serial() -> Result {
    let ca = ca("Exchange SM2 CA")?;
    let (a, b) = (leaf(&ca, "a")?, leaf(&ca, "b")?);
    let serial_a = serial(&a).ok_or("serial")?;
    let loaded = load(&crl(&ca, &[(&serial_a, 1)])?, &ca.der)??;
    assert!(loaded.revokes(&a));
    assert!(!loaded.revokes(&b));
    assert_eq!(loaded.revoked.len(), 1);
    assert!(loaded.next_update.is_some());

    // The first CRL, before anything is revoked, has no entries at all.
    let empty = load(&crl(&ca, &[])?, &ca.der)??;
    assert!(empty.revoked.is_empty() && !empty.revokes(&a));
    Ok(())
}

#[test]
fn the_crl_has_the_international_crls_shape() -> Result {
    let ca = ca("Exchange SM2 CA")?;
    let a = leaf(&ca, "a")?;
    let serial_a = serial(&a).ok_or("serial")?;
    let der = crl(&ca, &[(&serial_a, 1), (&[0x00, 0x80, 0x01], 0)])?;
    // The algorithm bytes are those Tongsuo's builder wrote (twice) in the CA certificate.
    let alg = SM2_WITH_SM3_ALGORITHM.as_slice();
    assert_eq!(ca.der.windows(alg.len()).filter(|w| *w == alg).count(), 2);
    assert_eq!(der.windows(alg.len()).filter(|w| *w == alg).count(), 2);

    let (rest, parsed) = CertificateRevocationList::from_der(&der)?;
    assert!(rest.is_empty());
    assert_eq!(parsed.version(), Some(X509Version::V2));
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.der)?;
    assert_eq!(parsed.issuer().as_raw(), ca_cert.subject().as_raw());
    let (_, name) = X509Name::from_der(parsed.issuer().as_raw())?;
    assert_eq!(name.to_string(), "CN=Exchange SM2 CA");
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()).as_deref(),
        Some("7")
    );
    let next = parsed.next_update().ok_or("no nextUpdate")?;
    assert_eq!(
        next.timestamp() - parsed.last_update().timestamp(),
        30 * 86_400
    );

    let ski = ca_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        });
    let aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    assert!(ski.is_some() && aki == ski);

    let entries: Vec<_> = parsed.iter_revoked_certificates().collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].raw_serial(), serial_a.as_slice());
    assert_eq!(entries[0].reason_code().map(|(_, r)| r.0), Some(1));
    // DER's sign padding in, RFC 5280's "no unspecified reason" out.
    assert_eq!(entries[1].raw_serial(), [0x00, 0x80, 0x01]);
    assert!(entries[1].reason_code().is_none());
    assert!(load(&der, &ca.der)??.revokes(&a));
    Ok(())
}

#[test]
fn a_flipped_signature_or_content_byte_is_refused() -> Result {
    let ca = ca("Exchange SM2 CA")?;
    let a = leaf(&ca, "a")?;
    let serial_a = serial(&a).ok_or("serial")?;
    let good = crl(&ca, &[(&serial_a, 1)])?;
    let mut bad_sig = good.clone();
    // The last byte is the last byte of the signature's s.
    *bad_sig.last_mut().ok_or("empty")? ^= 0x01;
    let err = refusal(&bad_sig, &ca.der)?;
    assert!(err.contains("sm2 signature does not verify"), "{err}");

    // A byte of the signed content: the revoked serial, now someone else's.
    let mut bad_tbs = good.clone();
    let at = good
        .windows(serial_a.len())
        .position(|w| w == serial_a.as_slice())
        .ok_or("no serial")?;
    bad_tbs[at + serial_a.len() - 1] ^= 0x01;
    let err = refusal(&bad_tbs, &ca.der)?;
    assert!(err.contains("sm2 signature does not verify"), "{err}");
    Ok(())
}

#[test]
fn a_crl_of_another_sm2_ca_is_refused_even_under_the_same_name() -> Result {
    let ours = ca("Exchange SM2 CA")?;
    let same_name = ca("Exchange SM2 CA")?;
    let err = refusal(&crl(&same_name, &[])?, &ours.der)?;
    assert!(
        err.contains("sm2 signature does not verify with the CA"),
        "{err}"
    );

    let other = ca("Other SM2 CA")?;
    let err = refusal(&crl(&other, &[])?, &ours.der)?;
    assert!(err.contains("not by the exchange CA"), "{err}");
    Ok(())
}

#[test]
fn a_crl_naming_another_signature_algorithm_is_refused() -> Result {
    let ca = ca("Exchange SM2 CA")?;
    let good = crl(&ca, &[])?;
    let alg = SM2_WITH_SM3_ALGORITHM.as_slice();
    let outer = good
        .windows(alg.len())
        .rposition(|w| w == alg)
        .ok_or("no algorithm")?;
    let mut outer_only = good.clone();
    outer_only[outer..outer + alg.len()].copy_from_slice(&ECDSA_SHA256);
    let err = refusal(&outer_only, &ca.der)?;
    assert!(
        err.contains("1.2.840.10045.4.3.2") && err.contains("SM2-with-SM3"),
        "{err}"
    );

    let inner = good
        .windows(alg.len())
        .position(|w| w == alg)
        .ok_or("none")?;
    let mut inner_only = good;
    inner_only[inner..inner + alg.len()].copy_from_slice(&ECDSA_SHA256);
    let err = refusal(&inner_only, &ca.der)?;
    assert!(
        err.contains("two signature algorithm fields differ"),
        "{err}"
    );
    Ok(())
}

#[test]
fn sign_crl_refuses_what_no_daemon_would_accept() -> Result {
    let ca = ca("Exchange SM2 CA")?;
    let stranger = Sm2PrivateKey::generate()?;
    let now = OffsetDateTime::now_utc();
    let params = CrlParams {
        this_update: now,
        next_update: now + Duration::days(1),
        number: 1,
        revoked: &[],
    };
    let err = sign_crl(&ca.der, &stranger, &params).expect_err("a key not the CA's");
    assert!(err.to_string().contains("does not match"), "{err}");

    let backwards = CrlParams {
        next_update: now,
        ..params
    };
    assert!(sign_crl(&ca.der, &ca.key, &backwards).is_err());
    let unused = [RevokedEntry {
        serial: &[1],
        at: now,
        reason: 7,
    }];
    let bad_reason = CrlParams {
        revoked: &unused,
        ..params
    };
    assert!(sign_crl(&ca.der, &ca.key, &bad_reason).is_err());
    Ok(())
}

/// Tongsuo's certificate store with `CRL_CHECK` (what a TLCP handshake verifies the peer with)
/// takes our CRL: the revoked certificate fails with "certificate revoked", the other passes.
#[test]
fn tongsuos_verifier_with_crl_check_refuses_the_revoked_certificate() -> Result {
    use tongsuo::{
        ssl::SslFiletype,
        stack::Stack,
        x509::{
            X509, X509StoreContext, X509VerifyResult,
            store::{X509Lookup, X509StoreBuilder},
            verify::X509VerifyFlags,
        },
    };
    let ca = ca("Exchange SM2 CA")?;
    let (a, b) = (leaf(&ca, "a")?, leaf(&ca, "b")?);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crl.pem");
    std::fs::write(
        &path,
        to_pem(&crl(&ca, &[(&serial(&a).ok_or("serial")?, 1)])?)?,
    )?;

    let mut store = X509StoreBuilder::new()?;
    store.add_cert(X509::from_der(&ca.der)?)?;
    store
        .add_lookup(X509Lookup::file())?
        .load_crl_file(&path, SslFiletype::PEM)?;
    store.set_flags(X509VerifyFlags::CRL_CHECK)?;
    let store = store.build();
    let check = |der: &[u8]| -> Result<X509VerifyResult> {
        let cert = X509::from_der(der)?;
        let mut ctx = X509StoreContext::new()?;
        let chain: Stack<X509> = Stack::new()?;
        Ok(ctx.init(&store, &cert, &chain, |c| {
            c.verify_cert().map(|_| c.error())
        })?)
    };
    assert_eq!(check(&b)?, X509VerifyResult::OK);
    assert_eq!(check(&a)?.error_string(), "certificate revoked");
    Ok(())
}

//! A CRL made by an implementation we did not write: the system OpenSSL 3's `openssl ca`, with an
//! SM2 CA of its own (`testdata/openssl-sm2-*.pem`). A shangmi build loads it and sees the
//! revoked certificate; a build without the feature refuses it, naming the feature.
//!
//! Made with OpenSSL 3.0 (`default_md = sm3`, `crl_extensions` with `authorityKeyIdentifier =
//! keyid:always`, 36500 days): `openssl genpkey -algorithm SM2`; `openssl req -new -x509 -sm3
//! -sigopt distid:1234567812345678 -subj /CN=OpenSSL-SM2-CA`; a leaf signed by `openssl ca
//! -sigopt distid:… -vfyopt distid:…`; `openssl ca -revoke leaf.pem -crl_reason keyCompromise`;
//! `openssl ca -gencrl -sigopt distid:1234567812345678 -out crl.pem`.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, pem::PemObject};

use super::load_crl;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/tls/crl/testdata")
        .join(name)
}

fn cert(name: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(testdata(name))
        .expect("BUG: test fixture")
        .to_vec()
}

#[cfg(feature = "shangmi")]
#[test]
fn an_sm2_crl_made_by_openssl_loads_and_lists_its_revoked_certificate() {
    let ca = cert("openssl-sm2-ca.pem");
    let crl = load_crl(&testdata("openssl-sm2-crl.pem"), &ca).expect("openssl's SM2 CRL loads");
    assert_eq!(crl.revoked.len(), 1);
    assert!(crl.revokes(&cert("openssl-sm2-leaf.pem")));
    assert!(!crl.revokes(&ca));
    assert!(crl.next_update.is_some());
}

#[cfg(not(feature = "shangmi"))]
#[test]
fn an_sm2_crl_is_refused_without_the_feature_naming_it() {
    let ca = cert("openssl-sm2-ca.pem");
    let err = load_crl(&testdata("openssl-sm2-crl.pem"), &ca)
        .expect_err("no SM2 without Tongsuo")
        .to_string();
    assert!(err.contains("openssl-sm2-crl.pem"), "{err}");
    assert!(
        err.contains("shangmi (SM2) CA")
            && err.contains("no 国密 support (build with --features shangmi)"),
        "{err}"
    );
}

/// A CRL as reloads compare it: its number and date only.
fn dated(number: Option<&[u8]>, this_update: i64) -> super::Crl {
    super::Crl {
        der: rustls::pki_types::CertificateRevocationListDer::from(Vec::new()),
        revoked: Default::default(),
        next_update: None,
        this_update,
        number: number.map(<[u8]>::to_vec),
    }
}

#[test]
fn an_older_list_is_told_by_its_number_else_by_its_date() {
    let (n2, n3, n256) = (
        dated(Some(&[2]), 50),
        dated(Some(&[3]), 10),
        dated(Some(&[1, 0]), 0),
    );
    assert!(n2.is_older_than(&n3), "by number, whatever the dates");
    assert!(!n3.is_older_than(&n2));
    assert!(
        n3.is_older_than(&n256),
        "256 > 3: compared as numbers, not bytes"
    );
    assert!(!n2.is_older_than(&n2), "the same list is not older");
    let (early, late) = (dated(None, 100), dated(None, 200));
    assert!(early.is_older_than(&late) && !late.is_older_than(&early));
    assert!(
        dated(Some(&[9]), 100).is_older_than(&late),
        "no number on one side: by date"
    );
    assert_eq!(n256.version(), "number 256");
    assert_eq!(late.version(), "thisUpdate 200");
}

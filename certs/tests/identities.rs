//! What the issued certificates say: who they name, what they may be used for, which key type.

use std::net::IpAddr;

use anyhow::{Context, Result, ensure};
use exchange_certs::{Ca, Identity, Validity, issue_into_dir};
use exchange_core::identity::{DOCUMENT_SIGNING_EKU_DER, Principal};
use ring::signature::{Ed25519KeyPair, KeyPair};
use x509_parser::{
    extensions::GeneralName,
    pem::parse_x509_pem,
    prelude::{X509Certificate, parse_x509_certificate},
};

fn ca() -> Result<Ca> {
    Ca::generate("Test CA", Validity::days_from_now(30))
}

fn parse(id: &Identity) -> Result<X509Certificate<'_>> {
    Ok(parse_x509_certificate(&id.cert_der)?.1)
}

#[test]
fn department_tls_cert_names_the_department_for_client_auth_only() -> Result<()> {
    let dept = Principal::Dept("finance".parse()?);
    let tls = ca()?.issue_tls(&dept, &[], &[], Validity::days_from_now(1))?;
    assert_eq!(Principal::from_cert_der(&tls.cert_der), Some(dept));
    let cert = parse(&tls)?;
    let eku = cert.extended_key_usage()?.context("no EKU")?.value;
    assert!(eku.client_auth && !eku.server_auth && eku.other.is_empty());
    assert!(!cert.is_ca());
    Ok(())
}

#[test]
fn signing_cert_names_the_department_and_holds_its_ed25519_key() -> Result<()> {
    let dept = Principal::Dept("finance".parse()?);
    let signing = ca()?.issue_signing(&dept, Validity::days_from_now(1))?;
    assert_eq!(Principal::from_cert_der(&signing.cert_der), Some(dept));

    let (_, pem) = parse_x509_pem(signing.key_pem.as_bytes())?;
    assert_eq!(pem.label, "PRIVATE KEY");
    let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem.contents)
        .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
    let cert = parse(&signing)?;
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key().as_ref()
    );

    let eku = cert.extended_key_usage()?.context("no EKU")?.value;
    assert!(!eku.client_auth && !eku.server_auth && !eku.any);
    let others: Vec<&[u8]> = eku.other.iter().map(|oid| oid.as_bytes()).collect();
    assert_eq!(others, [DOCUMENT_SIGNING_EKU_DER]);
    let ku = cert.key_usage()?.context("no key usage")?.value;
    assert!(ku.digital_signature() && ku.non_repudiation() && !ku.key_cert_sign());
    Ok(())
}

#[test]
fn hub_tls_cert_serves_localhost_and_loopback_plus_extra_names() -> Result<()> {
    let extra_ip: IpAddr = "10.1.2.3".parse()?;
    let dns = ["hub.example.gov".to_owned(), "localhost".to_owned()];
    let tls = ca()?.issue_tls(
        &Principal::Hub,
        &dns,
        &[extra_ip],
        Validity::days_from_now(1),
    )?;
    assert_eq!(
        Principal::from_cert_der(&tls.cert_der),
        Some(Principal::Hub)
    );
    let cert = parse(&tls)?;
    let san = cert.subject_alternative_name()?.context("no SAN")?.value;
    let mut names = Vec::new();
    for name in &san.general_names {
        names.push(match name {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(b) => format!("ip:{}", ip_from(b)?),
            GeneralName::URI(u) => format!("uri:{u}"),
            other => format!("other:{other:?}"),
        });
    }
    for want in [
        "dns:localhost",
        "dns:hub.example.gov",
        "ip:127.0.0.1",
        "ip:::1",
        "ip:10.1.2.3",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(names.iter().filter(|n| *n == "dns:localhost").count(), 1);
    let eku = cert.extended_key_usage()?.context("no EKU")?.value;
    assert!(eku.server_auth && !eku.client_auth);
    Ok(())
}

#[test]
fn issue_into_dir_writes_both_identities() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("edu");
    let dept = Principal::Dept("edu".parse()?);
    issue_into_dir(&ca()?, &dept, &[], &[], Validity::days_from_now(1), &out)?;
    for file in ["tls.pem", "tls.key", "signing.pem", "signing.key"] {
        ensure!(out.join(file).is_file(), "{file} missing");
    }
    Ok(())
}

fn ip_from(bytes: &[u8]) -> Result<IpAddr> {
    Ok(match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)?.into(),
        _ => <[u8; 16]>::try_from(bytes)?.into(),
    })
}

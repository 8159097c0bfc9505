//! The 国密 (shangmi) profile of `exchange-certs`, end to end with the real binary on temporary
//! directories: SM2 certificates signed SM2-with-SM3, TLCP's double TLS certificates, the file
//! layout of docs/shangmi.md, and the system OpenSSL 3 reading and verifying what was issued.
//!
//! Without `openssl` on PATH the OpenSSL checks are skipped with a note, unless
//! `EXCHANGE_REQUIRE_OPENSSL=1`, where they fail.
#![cfg(feature = "shangmi")]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, Result, ensure};
use exchange_core::{
    config::{HubConfig, NodeConfig, load},
    crypto::{self, Profile},
    identity::{DOCUMENT_SIGNING_EKU_DER, Principal},
    tls::read_pem_file,
};
use x509_parser::prelude::{X509Certificate, parse_x509_certificate};

const DISTID: &str = "distid:1234567812345678";

fn certs(args: &[&str], dirs: &[&Path]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_exchange-certs"))
        .args(args)
        .args(dirs)
        .output()
        .context("running exchange-certs")
}

fn ok(out: &Output) -> Result<()> {
    ensure!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn mode(path: &Path) -> Result<u32> {
    Ok(fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .permissions()
        .mode()
        & 0o777)
}

/// The `openssl` CLI, or None (after a note) when it is missing and not required.
fn openssl() -> Option<&'static str> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("openssl");
    }
    assert!(
        std::env::var("EXCHANGE_REQUIRE_OPENSSL").as_deref() != Ok("1"),
        "openssl is not on PATH and EXCHANGE_REQUIRE_OPENSSL=1"
    );
    eprintln!("note: openssl is not on PATH: skipping the OpenSSL interop checks");
    None
}

/// `openssl x509 -noout -text` of `cert`, and `openssl verify` of it against `ca` with the
/// exchange's SM2 distinguishing ID: the text, or None when openssl is missing.
fn openssl_text_and_verify(ca: &Path, cert: &Path) -> Result<Option<String>> {
    let Some(bin) = openssl() else {
        return Ok(None);
    };
    let text = Command::new(bin)
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()?;
    ok(&text)?;
    let text = String::from_utf8(text.stdout)?;
    ensure!(text.contains("ASN1 OID: SM2"), "{}: {text}", cert.display());
    ensure!(
        text.matches("SM2-with-SM3").count() >= 2,
        "{}: {text}",
        cert.display()
    );
    let verify = Command::new(bin)
        .args(["verify", "-vfyopt", DISTID, "-CAfile"])
        .arg(ca)
        .arg(cert)
        .output()?;
    ok(&verify).with_context(|| format!("openssl verify {}", cert.display()))?;
    Ok(Some(text))
}

fn der(path: &Path) -> Result<Vec<u8>> {
    Ok(read_pem_file(path, "CERTIFICATE")?)
}

fn parsed(der: &[u8]) -> Result<X509Certificate<'_>> {
    Ok(parse_x509_certificate(der)?.1)
}

/// Checks one principal's directory: the five files of the layout with their modes, every
/// certificate SM2 and naming `who`, and each one's key usages.
fn check_identity(ca: &Path, dir: &Path, who: &Principal, with_signing: bool) -> Result<()> {
    let mut pems = vec!["tls.pem", "tls-enc.pem"];
    if with_signing {
        pems.push("signing.pem");
    }
    for pem in &pems {
        let path = dir.join(pem);
        let key = path.with_extension("key");
        ensure!(mode(&path)? == 0o644, "{}", path.display());
        ensure!(mode(&key)? == 0o600, "{} is not 0600", key.display());
        let der = der(&path)?;
        assert_eq!(
            crypto::cert_profile(&der).ok(),
            Some((Profile::Shangmi, "SM2".into()))
        );
        assert_eq!(Principal::from_cert_der(&der).as_ref(), Some(who), "{pem}");
        let cert = parsed(&der)?;
        let ku = cert.key_usage()?.context("no key usage")?.value;
        let eku = cert.extended_key_usage()?.context("no EKU")?.value;
        match *pem {
            "tls.pem" => assert!(ku.digital_signature() && !ku.key_encipherment()),
            "tls-enc.pem" => {
                assert!(ku.key_encipherment() && ku.key_agreement() && !ku.digital_signature());
            }
            _ => {
                assert!(ku.digital_signature() && ku.non_repudiation());
                let others: Vec<&[u8]> = eku.other.iter().map(|o| o.as_bytes()).collect();
                assert_eq!(others, [DOCUMENT_SIGNING_EKU_DER]);
                assert!(!eku.server_auth && !eku.client_auth);
            }
        }
        if *pem != "signing.pem" {
            assert_eq!(eku.server_auth, *who == Principal::Hub, "{pem}");
            assert_eq!(eku.client_auth, *who != Principal::Hub, "{pem}");
        }
        if let Some(text) = openssl_text_and_verify(ca, &path)? {
            let uri = format!("URI:{}", who.uri());
            ensure!(
                text.contains(&uri),
                "{} lacks {uri}: {text}",
                path.display()
            );
            if *pem == "tls-enc.pem" {
                ensure!(text.contains("Key Encipherment, Key Agreement"), "{text}");
            }
        }
    }
    Ok(())
}

#[test]
fn init_ca_shangmi_then_issue_commands_follow_the_cas_profile() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ca = tmp.path().join("ca");
    ok(&certs(
        &["init-ca", "--profile", "shangmi", "--dir"],
        &[&ca],
    )?)?;
    assert_eq!(mode(&ca.join("ca.key"))?, 0o600);
    let ca_pem = ca.join("ca.pem");
    let ca_der = der(&ca_pem)?;
    assert!(parsed(&ca_der)?.is_ca());
    assert_eq!(
        crypto::cert_profile(&ca_der).ok().map(|p| p.0),
        Some(Profile::Shangmi)
    );
    openssl_text_and_verify(&ca_pem, &ca_pem)?;

    // No --profile: the CA's key says shangmi.
    let fin = tmp.path().join("fin");
    let (ca_dir, out) = (ca.to_str().context("path")?, fin.to_str().context("path")?);
    ok(&certs(
        &[
            "issue-dept",
            "--id",
            "fin",
            "--ca-dir",
            ca_dir,
            "--out",
            out,
        ],
        &[],
    )?)?;
    check_identity(&ca_pem, &fin, &Principal::Dept("fin".parse()?), true)?;

    let hub = tmp.path().join("hub");
    let args = [
        "issue-hub",
        "--dns",
        "hub.example.gov",
        "--ip",
        "10.1.2.3",
        "--ca-dir",
    ];
    ok(&certs(&args, &[&ca, Path::new("--out"), &hub])?)?;
    check_identity(&ca_pem, &hub, &Principal::Hub, true)?;
    if let Some(text) = openssl_text_and_verify(&ca_pem, &hub.join("tls-enc.pem"))? {
        for name in [
            "DNS:localhost",
            "DNS:hub.example.gov",
            "IP Address:127.0.0.1",
            "IP Address:10.1.2.3",
        ] {
            ensure!(text.contains(name), "{name} missing: {text}");
        }
    }

    let admin = tmp.path().join("admin");
    let args = ["issue-admin", "--name", "ops", "--ca-dir"];
    ok(&certs(&args, &[&ca, Path::new("--out"), &admin])?)?;
    check_identity(&ca_pem, &admin, &Principal::Admin("ops".into()), false)?;

    // The CA key is never replaced.
    let again = certs(&["init-ca", "--profile", "shangmi", "--dir"], &[&ca])?;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        crypto::cert_profile(&der(&ca_pem)?).ok().map(|p| p.0),
        Some(Profile::Shangmi)
    );
    assert_eq!(der(&ca_pem)?, ca_der);
    Ok(())
}

#[test]
fn demo_setup_shangmi_writes_double_certificates_and_configs_that_check() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("demo");
    let args = [
        "demo-setup",
        "--profile",
        "shangmi",
        "--departments",
        "a,b,c",
        "--dir",
    ];
    let out = certs(&args, &[&dir])?;
    ok(&out)?;
    assert_eq!(String::from_utf8(out.stdout)?.lines().count(), 4);
    let ca_pem = dir.join("ca/ca.pem");
    assert_eq!(mode(&dir.join("ca/ca.key"))?, 0o600);
    // An empty SM2 CRL, which the daemons watch (`revoke` updates it in place).
    let crl = exchange_core::tls::crl::load_crl(
        &dir.join("ca/crl.pem"),
        &read_pem_file(&ca_pem, "CERTIFICATE")?,
    )?;
    assert!(crl.revoked.is_empty(), "nothing revoked yet");

    let hub: HubConfig = load(&dir.join("hub/hub.toml"))?;
    assert_eq!(hub.crypto.profile, Profile::Shangmi);
    assert_eq!(hub.tls.enc_cert, Some(dir.join("hub/tls-enc.pem")));
    assert_eq!(hub.tls.enc_key, Some(dir.join("hub/tls-enc.key")));
    assert_eq!(hub.tls.crl, Some(dir.join("hub/../ca/crl.pem")));
    hub.check_files()?;
    crypto::check_profile("exchange-hub", Profile::Shangmi, &hub.tls, &hub.signing)?;
    crypto::check_shangmi_identity("exchange-hub", &hub.tls, &hub.signing, &Principal::Hub)?;
    check_identity(&ca_pem, &dir.join("hub"), &Principal::Hub, true)?;
    check_identity(
        &ca_pem,
        &dir.join("admin"),
        &Principal::Admin("admin".into()),
        false,
    )?;

    for id in ["a", "b", "c"] {
        let node: NodeConfig = load(&dir.join(id).join("node.toml"))?;
        assert_eq!(node.crypto.profile, Profile::Shangmi);
        assert_eq!(node.tls.enc_cert, Some(dir.join(id).join("tls-enc.pem")));
        node.check_files()?;
        let who = Principal::Dept(id.parse()?);
        crypto::check_profile("exchange-node", Profile::Shangmi, &node.tls, &node.signing)?;
        crypto::check_shangmi_identity("exchange-node", &node.tls, &node.signing, &who)?;
        check_identity(&ca_pem, &dir.join(id), &who, true)?;
        let text = fs::read_to_string(dir.join(id).join("node.toml"))?;
        assert!(text.contains("[crypto]\nprofile = \"shangmi\"\n"), "{text}");
        assert!(text.contains("enc_cert = \"tls-enc.pem\"\nenc_key = \"tls-enc.key\"\n"));
    }
    let readme = fs::read_to_string(dir.join("README.txt"))?;
    assert!(readme.contains("shangmi (国密) profile"), "{readme}");
    Ok(())
}

/// Where the DER value starting at `der[0]` ends: header plus content length.
fn tlv_end(der: &[u8]) -> Result<usize> {
    let first = *der.get(1).context("truncated DER")?;
    if first < 0x80 {
        return Ok(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    let len = der
        .get(2..2 + count)
        .context("truncated DER length")?
        .iter()
        .fold(0usize, |n, b| (n << 8) | usize::from(*b));
    Ok(2 + count + len)
}

/// `openssl crl -text` of the CRL, and its SM2 signature checked by OpenSSL over the signed bytes
/// with the exchange's distinguishing ID. OpenSSL 3.0 cannot check it as a CRL: `openssl crl
/// -verify -CAfile` (which has no `-vfyopt`) and `openssl verify -crl_check -vfyopt distid:…`
/// both verify a CRL's SM2 signature with an empty ID and fail ("CRL signature failure"), even on
/// a CRL `openssl ca -gencrl -sigopt distid:1234567812345678` made itself.
fn openssl_crl_text_and_signature(tmp: &Path, ca: &Path, crl: &Path) -> Result<Option<String>> {
    let Some(bin) = openssl() else {
        return Ok(None);
    };
    let text = Command::new(bin)
        .args(["crl", "-noout", "-text", "-inform", "PEM", "-in"])
        .arg(crl)
        .output()?;
    ok(&text)?;
    let text = String::from_utf8(text.stdout)?;

    let (_, pem) = x509_parser::pem::parse_x509_pem(&fs::read(crl)?)?;
    ensure!(pem.label == "X509 CRL", "{}: {}", crl.display(), pem.label);
    let der = pem.contents;
    ensure!(
        der.len() > 4 && der[0] == 0x30 && tlv_end(&der)? == der.len(),
        "not one SEQUENCE"
    );
    // The signed bytes: the first element, after the outer SEQUENCE's tag and length.
    let header = if der[1] < 0x80 {
        2
    } else {
        2 + usize::from(der[1] & 0x7f)
    };
    let tbs = &der[header..header + tlv_end(&der[header..])?];
    let (_, parsed) = x509_parser::parse_x509_crl(&der)?;
    let (tbs_file, sig_file, key_file) =
        (tmp.join("tbs.der"), tmp.join("sig.der"), tmp.join("ca.pub"));
    fs::write(&tbs_file, tbs)?;
    fs::write(&sig_file, parsed.signature_value.data.as_ref())?;
    let key = Command::new(bin)
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(ca)
        .output()?;
    ok(&key)?;
    fs::write(&key_file, key.stdout)?;
    let verify = |distid: &str| -> Result<Output> {
        Ok(Command::new(bin)
            .args([
                "pkeyutl", "-verify", "-pubin", "-rawin", "-digest", "sm3", "-pkeyopt",
            ])
            .arg(distid)
            .arg("-inkey")
            .arg(&key_file)
            .arg("-in")
            .arg(&tbs_file)
            .arg("-sigfile")
            .arg(&sig_file)
            .output()?)
    };
    ok(&verify(DISTID)?).context("openssl pkeyutl -verify of the CRL's signature")?;
    ensure!(
        !verify("distid:1234567812345679")?.status.success(),
        "the CRL's signature verifies under another distinguishing ID"
    );
    Ok(Some(text))
}

#[test]
fn revoke_and_crl_under_an_sm2_ca_write_an_sm2_crl_that_openssl_reads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ca = tmp.path().join("ca");
    ok(&certs(
        &["init-ca", "--profile", "shangmi", "--dir"],
        &[&ca],
    )?)?;
    let ca_pem = ca.join("ca.pem");
    let ca_der = der(&ca_pem)?;
    for id in ["a", "b"] {
        let out = tmp.path().join(id);
        ok(&certs(
            &["issue-dept", "--id", id, "--ca-dir"],
            &[&ca, Path::new("--out"), &out],
        )?)?;
    }

    // The first CRL: empty, where the international one goes.
    let out = certs(&["crl", "--ca-dir"], &[&ca])?;
    ok(&out)?;
    let crl_pem = ca.join("crl.pem");
    assert_eq!(
        String::from_utf8(out.stdout)?.trim(),
        crl_pem.to_string_lossy()
    );
    assert_eq!(mode(&crl_pem)?, 0o644);
    let crl = exchange_core::tls::crl::load_crl(&crl_pem, &ca_der)?;
    assert!(crl.revoked.is_empty());

    let a = tmp.path().join("a/tls.pem");
    let args = ["revoke", "--reason", "key-compromise", "--cert"];
    let out = certs(&args, &[&a, Path::new("--ca-dir"), &ca])?;
    ok(&out)?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked: department a"));
    let crl = exchange_core::tls::crl::load_crl(&crl_pem, &ca_der)?;
    assert!(crl.revokes(&der(&a)?));
    assert!(!crl.revokes(&der(&tmp.path().join("b/tls.pem"))?));
    assert!(!crl.revokes(&der(&tmp.path().join("a/tls-enc.pem"))?));
    let list = fs::read_to_string(ca.join("revoked.toml"))?;
    assert!(
        list.contains("crl_number = 2") && list.contains("department a"),
        "{list}"
    );

    let serial = exchange_core::tls::crl::serial(&der(&a)?).context("serial")?;
    if let Some(text) = openssl_crl_text_and_signature(tmp.path(), &ca_pem, &crl_pem)? {
        assert_eq!(
            text.matches("Signature Algorithm: SM2-with-SM3").count(),
            2,
            "{text}"
        );
        assert!(text.contains("Version 2"), "{text}");
        let hex: String = serial.iter().map(|b| format!("{b:02X}")).collect();
        assert!(
            text.contains(&format!("Serial Number: {hex}")),
            "{hex}: {text}"
        );
        assert!(text.contains("Key Compromise"), "{text}");
        assert!(
            text.contains("X509v3 CRL Number: \n                2"),
            "{text}"
        );
        assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    }

    // A certificate of another SM2 CA is refused, and nothing changes.
    let other = tmp.path().join("other");
    ok(&certs(
        &["init-ca", "--profile", "shangmi", "--dir"],
        &[&other],
    )?)?;
    let stranger = tmp.path().join("stranger");
    let args = ["issue-dept", "--id", "a", "--ca-dir"];
    ok(&certs(&args, &[&other, Path::new("--out"), &stranger])?)?;
    let before = fs::read(&crl_pem)?;
    let bad: PathBuf = stranger.join("tls.pem");
    let out = certs(&["revoke", "--cert"], &[&bad, Path::new("--ca-dir"), &ca])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not issued by the CA"));
    assert_eq!(fs::read(&crl_pem)?, before);
    // Nor does the other CA's CRL load against ours.
    ok(&certs(&["crl", "--ca-dir"], &[&other])?)?;
    assert!(exchange_core::tls::crl::load_crl(&other.join("crl.pem"), &ca_der).is_err());
    Ok(())
}

//! Interop with an implementation we did not write: the system OpenSSL 3 command line.
//!
//! Without `openssl` on PATH these tests skip with a note, unless `EXCHANGE_REQUIRE_OPENSSL=1`
//! (as in CI), where they fail.

use std::path::Path;
use std::process::{Command, Output};

use super::{DISTID, Sm2PrivateKey, Sm2PublicKey, pki};

/// Whether the `openssl` CLI can run these tests; panics if it is required and missing.
fn have_openssl() -> bool {
    let version = Command::new("openssl").arg("version").output();
    let found = match &version {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).starts_with("OpenSSL 3")
        }
        _ => false,
    };
    if !found {
        assert!(
            std::env::var("EXCHANGE_REQUIRE_OPENSSL").as_deref() != Ok("1"),
            "EXCHANGE_REQUIRE_OPENSSL=1 but no OpenSSL 3 `openssl` on PATH ({version:?})"
        );
        eprintln!("skipping: no OpenSSL 3 `openssl` on PATH");
    }
    found
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs openssl and requires success, showing its output if not.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn distid(id: &str) -> String {
    format!("distid:{id}")
}

#[test]
fn our_sm2_signature_verifies_in_openssl_with_the_distid_only() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = Sm2PrivateKey::generate().unwrap();
    let spki = key.public_key().unwrap().to_spki_der().unwrap();
    std::fs::write(dir.path().join("pub.der"), spki).unwrap();
    std::fs::write(dir.path().join("msg"), b"canonical header").unwrap();
    std::fs::write(
        dir.path().join("sig"),
        key.sign(b"canonical header").unwrap(),
    )
    .unwrap();

    let verify = |id: &str| {
        let id = distid(id);
        run(
            dir.path(),
            &[
                "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", "pub.der", "-rawin",
                "-digest", "sm3", "-pkeyopt", &id, "-in", "msg", "-sigfile", "sig",
            ],
        )
    };
    let good = verify(DISTID);
    assert!(good.status.success(), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).contains("Signature Verified Successfully"));
    // The distinguishing ID is really part of what was signed.
    let other = verify("1111111111111111");
    assert!(
        !other.status.success(),
        "verified under another distid: {other:?}"
    );

    // Our PKCS#8 export is a key OpenSSL reads as SM2.
    std::fs::write(dir.path().join("key.der"), &*key.to_pkcs8_der().unwrap()).unwrap();
    let text = ok(
        dir.path(),
        &[
            "pkey", "-inform", "DER", "-in", "key.der", "-noout", "-text",
        ],
    );
    assert!(text.contains("ASN1 OID: SM2"), "{text}");
}

#[test]
fn openssl_sm2_signature_and_key_work_here() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["genpkey", "-algorithm", "SM2", "-out", "key.pem"]);
    let pk8 = [
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
    ];
    ok(d, &pk8);
    ok(
        d,
        &[
            "pkey", "-in", "key.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
        ],
    );
    std::fs::write(d.join("msg"), b"receipt").unwrap();
    let sign = |id: &str, out: &str| {
        let id = distid(id);
        ok(
            d,
            &[
                "pkeyutl", "-sign", "-inkey", "key.pem", "-rawin", "-digest", "sm3", "-pkeyopt",
                &id, "-in", "msg", "-out", out,
            ],
        );
        std::fs::read(d.join(out)).unwrap()
    };
    let public = Sm2PublicKey::from_spki_der(&std::fs::read(d.join("pub.der")).unwrap()).unwrap();
    public.verify(b"receipt", &sign(DISTID, "sig")).unwrap();
    assert!(
        public
            .verify(b"receipt", &sign("1111111111111111", "sig2"))
            .is_err()
    );

    // OpenSSL's PKCS#8 key loads as an SM2 key here and signs what OpenSSL's public key verifies.
    let key = Sm2PrivateKey::from_pkcs8_der(&std::fs::read(d.join("key.der")).unwrap()).unwrap();
    public
        .verify(b"receipt", &key.sign(b"receipt").unwrap())
        .unwrap();
}

#[test]
fn openssl_reads_our_certificates_as_sm2_signed_with_sm3() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = pki();
    for (name, der) in [("ca", &pki.ca), ("sign", &pki.sign), ("enc", &pki.enc)] {
        std::fs::write(d.join(format!("{name}.der")), der).unwrap();
        let pem = format!("{name}.pem");
        let der = format!("{name}.der");
        ok(d, &["x509", "-inform", "DER", "-in", &der, "-out", &pem]);
    }
    let text = |name: &str| ok(d, &["x509", "-noout", "-text", "-in", name]);
    let ca = text("ca.pem");
    for want in [
        "SM2-with-SM3",
        "ASN1 OID: SM2",
        "CA:TRUE",
        "Certificate Sign, CRL Sign",
    ] {
        assert!(ca.contains(want), "ca lacks {want:?}:\n{ca}");
    }
    let sign = text("sign.pem");
    for want in [
        "SM2-with-SM3",
        "ASN1 OID: SM2",
        "CA:FALSE",
        "Digital Signature",
        "DNS:hub.example",
    ] {
        assert!(sign.contains(want), "signing cert lacks {want:?}:\n{sign}");
    }
    let enc = text("enc.pem");
    assert!(enc.contains("Key Encipherment, Key Agreement"), "{enc}");
    assert!(!enc.contains("Digital Signature"), "{enc}");

    // OpenSSL 3.0 checks an SM2 certificate signature with the distid it is given.
    let id = distid(DISTID);
    for leaf in ["sign.pem", "enc.pem"] {
        let out = ok(d, &["verify", "-vfyopt", &id, "-CAfile", "ca.pem", leaf]);
        assert!(out.contains(": OK"), "{out}");
    }
    // ... and with no other: the certificate signatures were made with our distid.
    let other = distid("1111111111111111");
    let out = run(
        d,
        &["verify", "-vfyopt", &other, "-CAfile", "ca.pem", "sign.pem"],
    );
    assert!(
        !out.status.success(),
        "verified under another distid: {out:?}"
    );
    if std::env::var_os("EXCHANGE_KEEP_TEST_DIR").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
}

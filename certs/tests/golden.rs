//! Golden vectors of the evidence-bundle format: a bundle and the CA certificate it verifies
//! against, made once and checked in under `tests/golden/` (see the README there). They must keep
//! verifying for ever, with every release: a change to the file layout, the signed encodings, the
//! signature contexts or the certificate checks that breaks old bundles fails here, whereas the
//! other bundle tests make new keys and new bundles each run and would not notice.
//!
//! The generator is `regenerate_golden_vectors`, ignored and guarded by an environment variable:
//! the vectors are never to be regenerated casually. These are format 1 (every signature a single
//! `ed25519`); the format-2 vectors, with batch signatures, are checked by `tests/golden_v2/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};
use exchange_core::{
    bundle::{decode_bundle, verify_bundle},
    identity::Principal,
    signing::Verifier,
    tls::read_pem_file,
};

/// The document in the golden bundle (a UUIDv7 of [`T0`]), and the SHA-256 of its signed header.
const DOC_ID: &str = "01a199c5-32fb-7a3c-9e51-c2d84f0b6e17";
const HEADER_SHA256: &str = "7936f2156bc99182739f7b9bbe1351103c37351c10f28fd793c5c2493d7c8a6a";

/// Each step the golden bundle proves: kind, recipient, signer, time (Unix ms).
const STEPS: [(&str, &str, &str, i64); 8] = [
    ("sent", "-", "department a", T0),
    ("accepted", "-", "hub", T0 + 1_204),
    ("delivered", "b", "department b", T0 + 2_517),
    ("confirmed", "b", "department b", T0 + 1_801_000),
    ("delivered", "c", "department c", T0 + 3_020),
    ("rejected", "c", "department c", T0 + 4_500_250),
    ("recipient-added", "d", "department a", T0 + 7_200_000),
    ("not-delivered", "d", "hub", T0 + 3 * 86_400_000),
];

/// 2026-11-02T01:00:00.123Z (09:00 in Beijing), when the document was sealed.
const T0: i64 = 1_793_581_200_123;

const BODY: &[u8] =
    "关于做好年终工作的通知\n各单位：\n请于十二月十五日前报送年终总结。\n".as_bytes();
const ATTACHMENT: &[u8] = b"%PDF-1.7\n% golden attachment\n%%EOF\n";

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// `exchange-certs verify FILE --ca CA`: (exit code, stdout, stderr).
fn verify_cli(file: &Path, ca: &Path) -> Result<(Option<i32>, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_exchange-certs"))
        .arg("verify")
        .arg(file)
        .arg("--ca")
        .arg(ca)
        .output()
        .context("running exchange-certs verify")?;
    Ok((
        out.status.code(),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn verifier() -> Result<Verifier> {
    Ok(Verifier::new(&read_pem_file(
        &golden("ca.pem"),
        "CERTIFICATE",
    )?)?)
}

#[test]
fn the_golden_bundle_verifies_with_the_cli() -> Result<()> {
    let (code, out, err) = verify_cli(&golden("evidence-v1.bundle"), &golden("ca.pem"))?;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(out.contains(&format!("document    {DOC_ID}\n")), "{out}");
    assert!(
        out.contains(&format!("header      sha256 {HEADER_SHA256}\n")),
        "{out}"
    );
    assert!(out.contains("recipients  b (主送), c (抄送)\n"), "{out}");
    let kinds: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("STEP"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let want: Vec<&str> = STEPS.iter().map(|s| s.0).collect();
    assert_eq!(kinds, want, "{out}");
    assert!(out.contains("clerk 王芳"), "{out}");
    assert!(out.contains("reason: 不属于本单位职责范围"), "{out}");
    assert!(
        out.contains("content     2 part(s) included; each matches the signed size and SHA-256"),
        "{out}"
    );
    assert!(out.contains("verified    8 signatures"), "{out}");
    Ok(())
}

#[test]
fn the_golden_bundle_reports_every_step_as_signed() -> Result<()> {
    let bytes = std::fs::read(golden("evidence-v1.bundle"))?;
    let report = verify_bundle(&bytes, &verifier()?)?;
    assert_eq!(report.doc_id.to_string(), DOC_ID);
    assert_eq!(report.header_digest.to_hex(), HEADER_SHA256);
    assert_eq!(report.title, "关于做好年终工作的通知");
    assert_eq!(report.doc_number, "明政〔2026〕12号");
    assert_eq!(report.sender.as_str(), "a");
    assert!(report.content_verified);
    let parts: Vec<(&str, u64)> = report
        .parts
        .iter()
        .map(|p| (p.name.as_str(), p.size))
        .collect();
    assert_eq!(
        parts,
        [
            ("正文.ofd", BODY.len() as u64),
            ("附件.pdf", ATTACHMENT.len() as u64)
        ]
    );
    let steps: Vec<(&str, String, String, i64)> = report
        .steps
        .iter()
        .map(|s| {
            let r = s
                .recipient
                .as_ref()
                .map_or_else(|| "-".into(), |r| r.to_string());
            (s.kind.name(), r, s.signer.to_string(), s.at_ms)
        })
        .collect();
    let want: Vec<(&str, String, String, i64)> = STEPS
        .iter()
        .map(|&(k, r, s, t)| (k, r.to_owned(), s.to_owned(), t))
        .collect();
    assert_eq!(steps, want);
    assert_eq!(report.steps[3].clerk, "王芳");
    assert_eq!(report.steps[3].reason, "已阅，按期落实");
    assert_eq!(report.steps[5].clerk, "李四");
    assert_eq!(report.steps[5].reason, "不属于本单位职责范围");
    assert!(
        report.steps[7].reason.starts_with("expired: "),
        "{:?}",
        report.steps[7]
    );
    Ok(())
}

/// The signers' certificates are checked in next to the bundle, for reference: each is the one
/// inside the bundle's signatures, and none of them (nor the CA) ever expires.
#[test]
fn the_golden_certificates_are_the_signers_and_never_expire() -> Result<()> {
    let bundle = decode_bundle(&std::fs::read(golden("evidence-v1.bundle"))?)?;
    let mut signers = vec![bundle.document.context("document")?.signature];
    signers.push(bundle.acceptance.context("acceptance")?.signature);
    signers.extend(bundle.evidence.into_iter().map(|e| e.signature));
    let mut seen = std::collections::BTreeSet::new();
    for sig in signers {
        let der = sig.context("signature")?.signer_cert;
        let who = Principal::from_cert_der(&der).context("signer names no principal")?;
        let file = match &who {
            Principal::Hub => "signing-hub.pem".to_owned(),
            Principal::Dept(d) => format!("signing-{d}.pem"),
            Principal::Admin(_) => anyhow::bail!("an administrator signed"),
        };
        assert_eq!(
            read_pem_file(&golden(&file), "CERTIFICATE")?,
            der,
            "{file} is not the certificate in the bundle"
        );
        seen.insert(file);
    }
    assert_eq!(seen.len(), 4, "hub, a, b and c signed: {seen:?}");
    for name in seen.iter().map(String::as_str).chain(["ca.pem"]) {
        let der = read_pem_file(&golden(name), "CERTIFICATE")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
        let not_after = cert.validity().not_after.to_datetime();
        assert_eq!(not_after.year(), 9999, "{name} expires {not_after}");
    }
    Ok(())
}

/// No private key is ever checked in: the generator discards every key it made.
#[test]
fn no_private_key_is_checked_in() -> Result<()> {
    for entry in std::fs::read_dir(golden(""))? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            path.display()
        );
    }
    Ok(())
}

/// `bytes` with one bit flipped in the first occurrence of `needle`, `offset` bytes into it.
fn flipped(bytes: &[u8], needle: &[u8], offset: usize) -> Result<Vec<u8>> {
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .context("needle not in the bundle")?;
    let mut out = bytes.to_vec();
    out[at + offset] ^= 0x01;
    Ok(out)
}

#[test]
fn a_tampered_copy_of_the_golden_bundle_fails_naming_the_item() -> Result<()> {
    let bytes = std::fs::read(golden("evidence-v1.bundle"))?;
    let bundle = decode_bundle(&bytes)?;
    let delivered_sig = bundle.evidence[0]
        .signature
        .as_ref()
        .context("signature")?
        .value
        .clone();
    let header_digest =
        exchange_core::signing::Digest::of(&bundle.document.as_ref().context("document")?.header).0;
    let tmp = tempfile::tempdir()?;
    let cases = [
        (
            "a byte of b's DELIVERED signature",
            flipped(&bytes, &delivered_sig, 17)?,
            "evidence #1 (DELIVERED for b): signature does not match the signed bytes",
        ),
        (
            // The digest first appears in the acceptance (the header does not hold its own).
            "a byte of the header digest the hub's acceptance names",
            flipped(&bytes, &header_digest, 9)?,
            "acceptance: signature does not match the signed bytes",
        ),
        (
            "a byte of the bundled attachment",
            flipped(&bytes, ATTACHMENT, 3)?,
            "content part 1 (附件.pdf): SHA-256 does not match the signed manifest",
        ),
    ];
    for (what, bad, expected) in cases {
        let err = verify_bundle(&bad, &verifier()?)
            .err()
            .with_context(|| format!("{what}: still verifies"))?;
        assert_eq!(err.to_string(), expected, "{what}");

        let file = tmp.path().join("tampered.bundle");
        std::fs::write(&file, &bad)?;
        let (code, out, err) = verify_cli(&file, &golden("ca.pem"))?;
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(out.is_empty(), "{what}: {out}");
        let want = format!("error: {} does not verify: {expected}", file.display());
        ensure!(err.trim_end() == want, "{what}: {err}");
    }
    Ok(())
}

/// Writes the golden vectors. Run it only to add vectors for a new format, never to "fix" a
/// failing golden test: a bundle that stops verifying is a broken promise to everyone holding one.
///
/// `EXCHANGE_WRITE_GOLDEN=1 cargo test -p exchange-certs --test golden -- --ignored regenerate`
#[test]
#[ignore = "writes the checked-in golden vectors; see tests/golden/README.md"]
fn regenerate_golden_vectors() -> Result<()> {
    ensure!(
        std::env::var_os("EXCHANGE_WRITE_GOLDEN").is_some_and(|v| v == "1"),
        "refusing to overwrite the golden vectors without EXCHANGE_WRITE_GOLDEN=1"
    );
    generator::write(&golden(""))
}

mod generator {
    use std::path::Path;

    use anyhow::{Context, Result};
    use exchange_certs::{Ca, Identity, Validity};
    use exchange_core::{
        bundle::encode_bundle,
        document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
        identity::Principal,
        signing::{Digest, SigningKey},
    };
    use exchange_proto::v1 as pb;
    use time::macros::datetime;

    use super::{ATTACHMENT, BODY, DOC_ID, T0};

    /// A signing key made here and dropped at the end of [`write`]: only its certificate is
    /// written.
    fn signer(ca: &Ca, who: Principal, validity: Validity) -> Result<(Identity, SigningKey)> {
        let id = ca.issue_signing(&who, validity)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(id.key_pem.as_bytes())?;
        let key = SigningKey::from_der(&pem.contents, id.cert_der.clone())?;
        Ok((id, key))
    }

    pub(super) fn write(dir: &Path) -> Result<()> {
        // Valid from before the document was sealed until the end of year 9999, the latest time
        // X.509 can express, so that no check of these certificates can ever find them expired.
        let validity = Validity {
            not_before: datetime!(2026-01-01 00:00 UTC),
            not_after: datetime!(9999-12-31 23:59:59 UTC),
        };
        let ca = Ca::generate("Exchange Golden Vector CA", validity)?;
        let dept = |d: &str| Principal::Dept(d.parse().expect("department id"));
        let (hub_id, hub) = signer(&ca, Principal::Hub, validity)?;
        let (a_id, a) = signer(&ca, dept("a"), validity)?;
        let (b_id, b) = signer(&ca, dept("b"), validity)?;
        let (c_id, c) = signer(&ca, dept("c"), validity)?;

        let part = |role: pb::PartRole, name: &str, media: &str, data: &[u8]| pb::Part {
            role: role.into(),
            name: name.into(),
            media_type: media.into(),
            size: data.len() as u64,
            sha256: Digest::of(data).0.to_vec(),
        };
        let header = pb::DocumentHeader {
            format: 1,
            id: DOC_ID.into(),
            sender: "a".into(),
            created_at_ms: T0,
            metadata: Some(pb::DocumentMetadata {
                doc_type: pb::DocumentType::Notice.into(),
                urgency: pb::Urgency::Urgent.into(),
                issuing_organ_marks: vec!["明州市人民政府办公室文件".into()],
                doc_number: "明政〔2026〕12号".into(),
                issuers: vec!["张伟".into()],
                title: "关于做好年终工作的通知".into(),
                main_recipients_text: "市财政局".into(),
                to_depts: vec!["b".into()],
                cc_text: "市审计局".into(),
                cc_depts: vec!["c".into()],
                attachment_note: "1. 年终总结模板".into(),
                signing_organs: vec!["明州市人民政府办公室".into()],
                document_date: "2026-11-01".into(),
                printing_organ: "明州市人民政府办公室".into(),
                printing_date: "2026-11-02".into(),
                ..Default::default()
            }),
            parts: vec![
                part(pb::PartRole::Body, "正文.ofd", "application/ofd", BODY),
                part(
                    pb::PartRole::Attachment,
                    "附件.pdf",
                    "application/pdf",
                    ATTACHMENT,
                ),
            ],
            digest_algorithm: String::new(), // sha256: the field did not exist yet
        };
        let doc = SignedDoc::seal(&header, &a)?;
        let ev =
            |kind, to: Option<&str>, dt: i64, key: &SigningKey, edit: &dyn Fn(&mut Evidence)| {
                let mut e =
                    Evidence::about(&doc, kind, to.map(|r| r.parse().expect("id")), T0 + dt);
                edit(&mut e);
                SignedEvidence::seal(e, key).expect("signs").wire
            };
        let none = |_: &mut Evidence| {};
        // As a sender's node bundles it: the verdict, then per recipient in the header's order
        // (主送, 抄送, then added ones, opening with RECIPIENT_ADDED), each in the order of steps.
        let bundle = pb::EvidenceBundle {
            // Format 1, what this generator wrote; this version writes 2 (`BUNDLE_FORMAT`), whose
            // vectors `tests/golden_v2/` makes.
            format: 1,
            document: Some(doc.wire.clone()),
            acceptance: Some(ev(EvidenceKind::Accepted, None, 1_204, &hub, &none)),
            evidence: vec![
                ev(EvidenceKind::Delivered, Some("b"), 2_517, &b, &none),
                ev(EvidenceKind::Confirmed, Some("b"), 1_801_000, &b, &|e| {
                    e.clerk = "王芳".into();
                    e.reason = "已阅，按期落实".into();
                }),
                ev(EvidenceKind::Delivered, Some("c"), 3_020, &c, &none),
                ev(EvidenceKind::Rejected, Some("c"), 4_500_250, &c, &|e| {
                    e.clerk = "李四".into();
                    e.reason = "不属于本单位职责范围".into();
                }),
                ev(
                    EvidenceKind::RecipientAdded,
                    Some("d"),
                    7_200_000,
                    &a,
                    &|e| {
                        e.cc = true;
                    },
                ),
                ev(
                    EvidenceKind::NotDelivered,
                    Some("d"),
                    3 * 86_400_000,
                    &hub,
                    &|e| {
                        e.reason = "expired: not delivered by 2026-11-05T01:00:00.123Z".into();
                    },
                ),
            ],
            content: [BODY, ATTACHMENT]
                .iter()
                .enumerate()
                .map(|(i, d)| pb::BundledPart {
                    part: i as u32,
                    data: d.to_vec(),
                })
                .collect(),
        };
        std::fs::create_dir_all(dir)?;
        let put = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
        };
        put("ca.pem", ca.cert_pem().as_bytes())?;
        put("signing-hub.pem", hub_id.cert_pem.as_bytes())?;
        put("signing-a.pem", a_id.cert_pem.as_bytes())?;
        put("signing-b.pem", b_id.cert_pem.as_bytes())?;
        put("signing-c.pem", c_id.cert_pem.as_bytes())?;
        put("evidence-v1.bundle", &encode_bundle(&bundle))?;
        println!("document {} header sha256 {}", doc.header.id, doc.digest);
        // `ca`, `hub`, `a`, `b` and `c` (and the keys inside the identities) are dropped here:
        // nothing can sign in these certificates' names again.
        Ok(())
    }
}

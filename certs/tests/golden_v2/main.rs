//! Golden vectors of evidence-bundle format 2: the journey of `evidence-v1.bundle` again, but
//! with the signatures the daemons now make in batches — the sender's seal of the header, the
//! hub's `ACCEPTED` and the recipients' `DELIVERED` — as batch signatures
//! (`ed25519-merkle-sha256`: one Ed25519 signature over the root of a Merkle tree, and an
//! inclusion path per statement). Made once and checked in under `tests/golden/` (see the README
//! there); they must keep verifying with every release, exactly like the format-1 vectors, which
//! `tests/golden.rs` keeps checking.
//!
//! - this file: the bundle verifies, with the CLI and the library, and holds what it should;
//! - [`tamper`]: a changed inclusion path fails, naming the item and its path;
//! - [`cross_check`]: an implementation written from `docs/evidence.md` alone, with `ring`,
//!   verifies every signature of both golden bundles, so that page describes the bytes exactly;
//! - [`generator`]: how the vectors were made (ignored, guarded by an environment variable).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};
use exchange_core::{
    bundle::{decode_bundle, verify_bundle},
    identity::Principal,
    signing::{ED25519, ED25519_BATCH, Verifier},
    tls::read_pem_file,
};
use exchange_proto::v1 as pb;

mod cross_check;
mod generator;
mod tamper;

/// The format-2 bundle and the CA it verifies against. The CA is not the format-1 one: that CA's
/// key was discarded when the format-1 vectors were made, as this one's was.
const BUNDLE: &str = "evidence-v2.bundle";
const CA: &str = "ca-v2.pem";

/// The document: the same header, byte for byte, as in `evidence-v1.bundle`.
const DOC_ID: &str = "01a199c5-32fb-7a3c-9e51-c2d84f0b6e17";
const HEADER_SHA256: &str = "7936f2156bc99182739f7b9bbe1351103c37351c10f28fd793c5c2493d7c8a6a";

/// 2026-11-02T01:00:00.123Z (09:00 in Beijing), when the document was sealed.
const T0: i64 = 1_793_581_200_123;

/// Each step the bundle proves: kind, recipient, signer, time (Unix ms). As in format 1.
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

/// Where each batch-signed statement sits in its signer's batch: (leaf index, tree size).
/// Chosen so that the paths take every turn of RFC 9162's verification: a left and a right
/// sibling, a leaf whose sibling is a whole subtree, and a last leaf alone on its level.
const HEADER_LEAF: (u64, u64) = (1, 3);
const ACCEPTED_LEAF: (u64, u64) = (5, 7);
const DELIVERED_B_LEAF: (u64, u64) = (3, 4);
const DELIVERED_C_LEAF: (u64, u64) = (4, 5);

const BODY: &[u8] =
    "关于做好年终工作的通知\n各单位：\n请于十二月十五日前报送年终总结。\n".as_bytes();
const ATTACHMENT: &[u8] = b"%PDF-1.7\n% golden attachment\n%%EOF\n";

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn golden_bundle() -> Result<pb::EvidenceBundle> {
    Ok(decode_bundle(&std::fs::read(golden(BUNDLE))?)?)
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
    Ok(Verifier::new(&read_pem_file(&golden(CA), "CERTIFICATE")?)?)
}

/// Every signature of a bundle, in file order, with the item it signs.
fn signatures(bundle: &pb::EvidenceBundle) -> Result<Vec<(&'static str, &pb::Signature)>> {
    let mut out = vec![(
        "document",
        bundle
            .document
            .as_ref()
            .context("document")?
            .signature
            .as_ref(),
    )];
    out.push((
        "acceptance",
        bundle
            .acceptance
            .as_ref()
            .context("acceptance")?
            .signature
            .as_ref(),
    ));
    out.extend(
        bundle
            .evidence
            .iter()
            .map(|e| ("evidence", e.signature.as_ref())),
    );
    out.into_iter()
        .map(|(what, sig)| Ok((what, sig.with_context(|| format!("{what}: no signature"))?)))
        .collect()
}

#[test]
fn the_v2_golden_bundle_verifies_with_the_cli() -> Result<()> {
    let (code, out, err) = verify_cli(&golden(BUNDLE), &golden(CA))?;
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
fn the_v2_golden_bundle_reports_every_step_as_signed() -> Result<()> {
    let bytes = std::fs::read(golden(BUNDLE))?;
    let report = verify_bundle(&bytes, &verifier()?)?;
    assert_eq!(report.doc_id.to_string(), DOC_ID);
    assert_eq!(report.header_digest.to_hex(), HEADER_SHA256);
    assert_eq!(report.doc_number, "明政〔2026〕12号");
    assert!(report.content_verified);
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
    assert_eq!(report.steps[5].reason, "不属于本单位职责范围");
    Ok(())
}

/// Format 2, with a batch signature exactly where the daemons batch (the header, `ACCEPTED`,
/// each `DELIVERED`) and a single one everywhere else, each at its planned place in its batch.
#[test]
fn the_v2_golden_bundle_has_batch_signatures_where_the_daemons_batch() -> Result<()> {
    let bundle = golden_bundle()?;
    assert_eq!(bundle.format, 2);
    let batched = [
        (0, HEADER_LEAF),
        (1, ACCEPTED_LEAF),
        (2, DELIVERED_B_LEAF),
        (4, DELIVERED_C_LEAF),
    ];
    let sigs = signatures(&bundle)?;
    assert_eq!(sigs.len(), 8);
    for (i, (what, sig)) in sigs.iter().enumerate() {
        assert_eq!(sig.value.len(), 64, "{what} #{i}");
        match batched.iter().find(|(at, _)| *at == i) {
            Some(&(_, (index, size))) => {
                assert_eq!(sig.algorithm, ED25519_BATCH, "{what} #{i}");
                let b = sig.batch.as_ref().context("no batch inclusion")?;
                assert_eq!((b.leaf_index, b.tree_size), (index, size), "{what} #{i}");
                assert!(b.path.iter().all(|h| h.len() == 32), "{what} #{i}");
            }
            None => {
                assert_eq!(sig.algorithm, ED25519, "{what} #{i}");
                assert!(sig.batch.is_none(), "{what} #{i}");
            }
        }
    }
    Ok(())
}

/// Only the signatures changed between the formats: the header and every statement are the
/// format-1 bytes, so the two bundles prove exactly the same steps.
#[test]
fn the_v2_golden_bundle_signs_the_same_statements_as_v1() -> Result<()> {
    let v1 = decode_bundle(&std::fs::read(golden("evidence-v1.bundle"))?)?;
    let v2 = golden_bundle()?;
    assert_eq!(v1.format, 1);
    let doc = |b: &pb::EvidenceBundle| b.document.as_ref().map(|d| d.header.clone());
    assert_eq!(doc(&v1), doc(&v2));
    let statements = |b: &pb::EvidenceBundle| -> Vec<Vec<u8>> {
        b.acceptance
            .iter()
            .chain(&b.evidence)
            .map(|e| e.evidence.clone())
            .collect()
    };
    assert_eq!(statements(&v1), statements(&v2));
    assert_eq!(v1.content, v2.content);
    Ok(())
}

/// The signers' certificates are checked in next to the bundle, for reference: each is the one
/// inside the bundle's signatures, and none of them (nor the CA) ever expires.
#[test]
fn the_v2_golden_certificates_are_the_signers_and_never_expire() -> Result<()> {
    let bundle = golden_bundle()?;
    let mut seen = std::collections::BTreeSet::new();
    for (_, sig) in signatures(&bundle)? {
        let who = Principal::from_cert_der(&sig.signer_cert).context("no principal")?;
        let file = match &who {
            Principal::Hub => "signing-v2-hub.pem".to_owned(),
            Principal::Dept(d) => format!("signing-v2-{d}.pem"),
            Principal::Admin(_) => anyhow::bail!("an administrator signed"),
        };
        ensure!(
            read_pem_file(&golden(&file), "CERTIFICATE")? == sig.signer_cert,
            "{file} is not the certificate in the bundle"
        );
        seen.insert(file);
    }
    assert_eq!(seen.len(), 4, "hub, a, b and c signed: {seen:?}");
    for name in seen.iter().map(String::as_str).chain([CA]) {
        let der = read_pem_file(&golden(name), "CERTIFICATE")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
        let not_after = cert.validity().not_after.to_datetime();
        assert_eq!(not_after.year(), 9999, "{name} expires {not_after}");
    }
    Ok(())
}

/// Writes the format-2 golden vectors (and nothing of format 1). Run it only to add vectors,
/// never to "fix" a failing golden test: a bundle that stops verifying is a broken promise.
///
/// `EXCHANGE_WRITE_GOLDEN=1 cargo test -p exchange-certs --test golden_v2 -- --ignored regenerate`
#[test]
#[ignore = "writes the checked-in golden vectors; see tests/golden/README.md"]
fn regenerate_golden_vectors_v2() -> Result<()> {
    ensure!(
        std::env::var_os("EXCHANGE_WRITE_GOLDEN").is_some_and(|v| v == "1"),
        "refusing to overwrite the golden vectors without EXCHANGE_WRITE_GOLDEN=1"
    );
    generator::write(&golden(""))
}

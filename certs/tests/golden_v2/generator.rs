//! How the format-2 vectors were made: the format-1 generator (`tests/golden.rs`) copied, with
//! the header, the `ACCEPTED` and each `DELIVERED` signed in a batch among unrelated statements,
//! as the daemons' `BatchSigner` does under load. Its own CA and signing keys, all discarded at
//! the end: only certificates and the bundle are written.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use exchange_certs::{Ca, Identity, Validity};
use exchange_core::{
    bundle::{BUNDLE_FORMAT, encode_bundle, verify_bundle},
    crypto::DigestAlgorithm::Sha256 as SHA256,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::Principal,
    signing::{Digest, SigningKey, Verifier, merkle},
};
use exchange_proto::v1 as pb;
use time::macros::datetime;

use super::{
    ACCEPTED_LEAF, ATTACHMENT, BODY, BUNDLE, CA, DELIVERED_B_LEAF, DELIVERED_C_LEAF, DOC_ID,
    HEADER_LEAF, T0,
};

/// The context strings (`docs/protocol.md`); `Context::prefix` is private to `exchange-core`.
const HEADER_CONTEXT: &[u8] = b"exchange.v1.DocumentHeader\0";
const EVIDENCE_CONTEXT: &[u8] = b"exchange.v1.Evidence\0";

/// A signing key made here and dropped at the end of [`write`]: only its certificate is written.
fn signer(ca: &Ca, who: Principal, validity: Validity) -> Result<(Identity, SigningKey)> {
    let id = ca.issue_signing(&who, validity)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(id.key_pem.as_bytes())?;
    let key = SigningKey::from_der(&pem.contents, id.cert_der.clone())?;
    Ok((id, key))
}

/// `key`'s batch signature of `bytes` (under `context`) as leaf `at.0` of a batch of `at.1`
/// statements. The others are placeholders for whatever else the signer had waiting: only their
/// leaf hashes enter the tree, and no bundle ever holds them (a bundle holds the path). They
/// alternate between the two contexts, since a node's batch mixes headers and receipts.
fn in_batch(key: &SigningKey, context: &[u8], bytes: &[u8], at: (u64, u64)) -> pb::Signature {
    let (index, size) = at;
    let leaves: Vec<merkle::Hash> = (0..size)
        .map(|i| {
            if i == index {
                return merkle::leaf_hash(SHA256, context, bytes).expect("sha-256");
            }
            let ctx = [EVIDENCE_CONTEXT, HEADER_CONTEXT][i as usize % 2];
            let other = format!("unrelated statement {i} of {}'s batch", key.principal());
            merkle::leaf_hash(SHA256, ctx, other.as_bytes()).expect("sha-256")
        })
        .collect();
    key.sign_batch(&leaves)
        .expect("signs")
        .swap_remove(index as usize)
}

fn header() -> pb::DocumentHeader {
    let part = |role: pb::PartRole, name: &str, media: &str, data: &[u8]| pb::Part {
        role: role.into(),
        name: name.into(),
        media_type: media.into(),
        size: data.len() as u64,
        sha256: Digest::of(data).0.to_vec(),
    };
    pb::DocumentHeader {
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
    }
}

pub(super) fn write(dir: &Path) -> Result<()> {
    // As for format 1: valid from before the document was sealed until the end of year 9999.
    let validity = Validity {
        not_before: datetime!(2026-01-01 00:00 UTC),
        not_after: datetime!(9999-12-31 23:59:59 UTC),
    };
    let ca = Ca::generate("Exchange Golden Vector CA v2", validity)?;
    let dept = |d: &str| Principal::Dept(d.parse().expect("department id"));
    let (hub_id, hub) = signer(&ca, Principal::Hub, validity)?;
    let (a_id, a) = signer(&ca, dept("a"), validity)?;
    let (b_id, b) = signer(&ca, dept("b"), validity)?;
    let (c_id, c) = signer(&ca, dept("c"), validity)?;

    let mut doc = SignedDoc::seal(&header(), &a)?;
    doc.wire.signature = Some(in_batch(&a, HEADER_CONTEXT, &doc.wire.header, HEADER_LEAF));
    let ev = |kind, to: Option<&str>, dt: i64, edit: &dyn Fn(&mut Evidence)| {
        let mut e = Evidence::about(&doc, kind, to.map(|r| r.parse().expect("id")), T0 + dt);
        edit(&mut e);
        e
    };
    let single = |e: Evidence, key: &SigningKey| SignedEvidence::seal(e, key).expect("signs").wire;
    let batched = |e: Evidence, key: &SigningKey, at: (u64, u64)| {
        let mut wire = SignedEvidence::seal(e, key).expect("signs").wire;
        wire.signature = Some(in_batch(key, EVIDENCE_CONTEXT, &wire.evidence, at));
        wire
    };
    let none = |_: &mut Evidence| {};
    let accepted = ev(EvidenceKind::Accepted, None, 1_204, &none);
    let delivered_b = ev(EvidenceKind::Delivered, Some("b"), 2_517, &none);
    let confirmed_b = ev(EvidenceKind::Confirmed, Some("b"), 1_801_000, &|e| {
        e.clerk = "王芳".into();
        e.reason = "已阅，按期落实".into();
    });
    let delivered_c = ev(EvidenceKind::Delivered, Some("c"), 3_020, &none);
    let rejected_c = ev(EvidenceKind::Rejected, Some("c"), 4_500_250, &|e| {
        e.clerk = "李四".into();
        e.reason = "不属于本单位职责范围".into();
    });
    let added_d = ev(EvidenceKind::RecipientAdded, Some("d"), 7_200_000, &|e| {
        e.cc = true;
    });
    let expired_d = ev(
        EvidenceKind::NotDelivered,
        Some("d"),
        3 * 86_400_000,
        &|e| {
            e.reason = "expired: not delivered by 2026-11-05T01:00:00.123Z".into();
        },
    );
    // In the order a sender's node bundles it, as in format 1.
    let bundle = pb::EvidenceBundle {
        format: BUNDLE_FORMAT,
        document: Some(doc.wire.clone()),
        acceptance: Some(batched(accepted, &hub, ACCEPTED_LEAF)),
        evidence: vec![
            batched(delivered_b, &b, DELIVERED_B_LEAF),
            single(confirmed_b, &b),
            batched(delivered_c, &c, DELIVERED_C_LEAF),
            single(rejected_c, &c),
            single(added_d, &a),
            single(expired_d, &hub),
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
    ensure!(bundle.format == 2, "this generator writes format 2 only");
    let bytes = encode_bundle(&bundle);
    verify_bundle(&bytes, &Verifier::new(ca.cert_der())?).context("the new bundle")?;

    std::fs::create_dir_all(dir)?;
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
    };
    put(CA, ca.cert_pem().as_bytes())?;
    put("signing-v2-hub.pem", hub_id.cert_pem.as_bytes())?;
    put("signing-v2-a.pem", a_id.cert_pem.as_bytes())?;
    put("signing-v2-b.pem", b_id.cert_pem.as_bytes())?;
    put("signing-v2-c.pem", c_id.cert_pem.as_bytes())?;
    put(BUNDLE, &bytes)?;
    println!("document {} header sha256 {}", doc.header.id, doc.digest);
    // `ca`, `hub`, `a`, `b` and `c` (and the keys inside the identities) are dropped here:
    // nothing can sign in these certificates' names again.
    Ok(())
}

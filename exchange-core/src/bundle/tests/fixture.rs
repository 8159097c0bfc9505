//! A PKI issued at test time (the same shape `exchange-certs` issues: Ed25519 leaves with only
//! the RFC 9336 documentSigning EKU, named by URI SAN; or, under the `shangmi` feature, the SM2
//! one of [`crate::signing::testpki`]), and a genuine bundle to tamper with. Shared with other
//! modules' tests that need a hub and department keys (audit chains).

use exchange_proto::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SanType,
};
use time::OffsetDateTime;

use crate::{
    bundle::{bundle_format_for, encode_bundle, verify_bundle},
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::{DOCUMENT_SIGNING_EKU_ARCS, Principal},
    ids::DocumentId,
    signing::{Digest, SigningKey, Verifier},
};

pub(crate) struct Pki {
    pub(crate) ca_der: Vec<u8>,
    pub(crate) hub: SigningKey,
    pub(crate) a: SigningKey,
    pub(crate) b: SigningKey,
    pub(crate) c: SigningKey,
    pub(crate) d: SigningKey,
}

pub(crate) fn pki(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    // Distinct names, as real CAs have: another CA is then an unknown issuer.
    let name = format!("Test CA {}", fastrand::u64(..));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.not_before, params.not_after) = (not_before, not_after);
    let ca_der = params.self_signed(&ca_key).unwrap().der().to_vec();
    let issuer = Issuer::new(params, ca_key);
    let leaf = |who: Principal| {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(who.uri().try_into().unwrap())];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            DOCUMENT_SIGNING_EKU_ARCS.to_vec(),
        )];
        (p.not_before, p.not_after) = (not_before, not_after);
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &issuer).unwrap();
        SigningKey::from_der(&key.serialize_der(), cert.der().to_vec()).unwrap()
    };
    let dept = |id: &str| leaf(Principal::Dept(id.parse().unwrap()));
    Pki {
        hub: leaf(Principal::Hub),
        a: dept("a"),
        b: dept("b"),
        c: dept("c"),
        d: dept("d"),
        ca_der,
    }
}

/// An SM2 exchange (the shangmi profile): CA, hub and departments a to d, valid from an hour
/// ago for ten days.
#[cfg(feature = "shangmi")]
pub(crate) fn sm2_pki() -> Pki {
    let (ca_der, hub, mut depts) = crate::signing::testpki::sm2_exchange(&["a", "b", "c", "d"]);
    let d = depts.pop().unwrap();
    let c = depts.pop().unwrap();
    let b = depts.pop().unwrap();
    let a = depts.pop().unwrap();
    Pki {
        ca_der,
        hub,
        a,
        b,
        c,
        d,
    }
}

/// A PKI valid from an hour ago for a year.
pub(crate) fn current_pki() -> Pki {
    let now = OffsetDateTime::now_utc();
    pki(
        now - time::Duration::hours(1),
        now + time::Duration::days(365),
    )
}

pub(crate) const BODY: &[u8] = b"body of the notice";
const ATTACHMENT: &[u8] = b"%PDF-1.7 attachment";

/// a's document to b (主送) and c (抄送), sealed at `t0` (Unix ms), its parts hashed with the
/// key's profile's digest (SHA-256 for Ed25519, SM3 for SM2), as a node seals them.
pub(crate) fn document(key: &SigningKey, t0: i64) -> SignedDoc {
    let (alg, digest_algorithm) = SignedDoc::digest_algorithm_for(key);
    let part = |role: pb::PartRole, name: &str, data: &[u8]| pb::Part {
        role: role.into(),
        name: name.into(),
        media_type: "application/octet-stream".into(),
        size: data.len() as u64,
        sha256: Digest::with(alg, data).unwrap().0.to_vec(),
    };
    let header = pb::DocumentHeader {
        format: 1,
        id: DocumentId::new().to_string(),
        sender: "a".into(),
        created_at_ms: t0,
        metadata: Some(pb::DocumentMetadata {
            title: "关于做好年终工作的通知".into(),
            doc_number: "明政〔2026〕12号".into(),
            to_depts: vec!["b".into()],
            cc_depts: vec!["c".into()],
            ..Default::default()
        }),
        parts: vec![
            part(pb::PartRole::Body, "正文.ofd", BODY),
            part(pb::PartRole::Attachment, "附件.pdf", ATTACHMENT),
        ],
        digest_algorithm,
    };
    SignedDoc::seal(&header, key).unwrap()
}

pub(crate) fn evidence(
    doc: &SignedDoc,
    kind: EvidenceKind,
    to: Option<&str>,
    at: i64,
    key: &SigningKey,
) -> pb::SignedEvidence {
    let mut ev = Evidence::about(doc, kind, to.map(|r| r.parse().unwrap()), at);
    if kind == EvidenceKind::Confirmed {
        ev.clerk = "王芳".into();
    }
    if kind == EvidenceKind::Rejected {
        ev.clerk = "李四".into();
        ev.reason = "不属于本单位职责范围".into();
    }
    if kind == EvidenceKind::Refused {
        ev.reason = "sender may not send to b".into();
    }
    SignedEvidence::seal(ev, key).unwrap().wire
}

/// The whole journey: accepted, delivered to b and c, confirmed by b, rejected by c; one second
/// apart from `t0` on.
pub(crate) fn journey(p: &Pki, t0: i64, with_content: bool) -> (SignedDoc, pb::EvidenceBundle) {
    let doc = document(&p.a, t0);
    let s = 1000;
    let content = [BODY, ATTACHMENT]
        .iter()
        .enumerate()
        .map(|(i, d)| pb::BundledPart {
            part: i as u32,
            data: d.to_vec(),
        })
        .collect();
    let bundle = pb::EvidenceBundle {
        format: bundle_format_for(doc.header.digest),
        document: Some(doc.wire.clone()),
        acceptance: Some(evidence(&doc, EvidenceKind::Accepted, None, t0 + s, &p.hub)),
        evidence: vec![
            evidence(&doc, EvidenceKind::Delivered, Some("b"), t0 + 2 * s, &p.b),
            evidence(&doc, EvidenceKind::Confirmed, Some("b"), t0 + 4 * s, &p.b),
            evidence(&doc, EvidenceKind::Delivered, Some("c"), t0 + 3 * s, &p.c),
            evidence(&doc, EvidenceKind::Rejected, Some("c"), t0 + 5 * s, &p.c),
        ],
        content: if with_content { content } else { Vec::new() },
    };
    (doc, bundle)
}

pub(crate) fn verifier(p: &Pki) -> Verifier {
    Verifier::new(&p.ca_der).unwrap()
}

/// A change made to a genuine bundle.
pub(crate) type Tamper = fn(&mut pb::EvidenceBundle);

/// The error message of verifying `bundle`, which must fail.
pub(crate) fn failure(bundle: &pb::EvidenceBundle, v: &Verifier) -> String {
    match verify_bundle(&encode_bundle(bundle), v) {
        Ok(r) => panic!("verified although it must not: {r:?}"),
        Err(e) => e.to_string(),
    }
}

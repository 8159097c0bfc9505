//! Golden and negative cases for the bundle format and its verification.

use exchange_proto::v1 as pb;
use time::macros::datetime;

use super::*;
use crate::document::EvidenceKind;

mod digests;
pub(crate) mod fixture;
mod props;

use fixture::{BODY, Tamper, current_pki, document, evidence, failure, journey, pki, verifier};

#[test]
fn a_complete_bundle_verifies_and_reports_every_step_in_order() {
    let p = current_pki();
    let t0 = crate::time::now_ms();
    let (doc, bundle) = journey(&p, t0, true);
    let report = verify_bundle(&encode_bundle(&bundle), &verifier(&p)).unwrap();
    assert_eq!(report.doc_id, doc.header.id);
    assert_eq!(report.title, "关于做好年终工作的通知");
    assert_eq!(report.sender.as_str(), "a");
    assert_eq!(report.header_digest, doc.digest);
    assert!(report.content_verified);
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| {
            let r = s.recipient.as_ref().map(|r| r.to_string());
            (s.kind.name(), r, s.signer.to_string(), s.at_ms - t0)
        })
        .collect();
    let dept = |d: &str| Some(d.to_owned());
    assert_eq!(
        steps,
        vec![
            ("sent", None, "department a".into(), 0),
            ("accepted", None, "hub".into(), 1000),
            ("delivered", dept("b"), "department b".into(), 2000),
            ("confirmed", dept("b"), "department b".into(), 4000),
            ("delivered", dept("c"), "department c".into(), 3000),
            ("rejected", dept("c"), "department c".into(), 5000),
        ]
    );
    assert_eq!(report.steps[3].clerk, "王芳");
    assert_eq!(report.steps[5].reason, "不属于本单位职责范围");
    // Without content it verifies too, and says so.
    let (_, bare) = journey(&p, t0, false);
    let report = verify_bundle(&encode_bundle(&bare), &verifier(&p)).unwrap();
    assert!(!report.content_verified);
}

#[test]
fn a_bundle_verifies_years_after_its_certificates_expired() {
    let p = pki(
        datetime!(2020-01-01 00:00 UTC),
        datetime!(2021-01-01 00:00 UTC),
    );
    let t0 = datetime!(2020-06-01 08:00 UTC).unix_timestamp() * 1000;
    let (doc, mut bundle) = journey(&p, t0, false);
    let report = verify_bundle(&encode_bundle(&bundle), &verifier(&p)).unwrap();
    assert_eq!(report.steps.len(), 6);
    // Evidence claiming a time after b's certificate expired does not verify.
    let late = datetime!(2022-01-01 00:00 UTC).unix_timestamp() * 1000;
    bundle.evidence[1] = evidence(&doc, EvidenceKind::Confirmed, Some("b"), late, &p.b);
    let err = failure(&bundle, &verifier(&p));
    assert!(
        err.starts_with(
            "evidence #2 (CONFIRMED for b): signer certificate not trusted: CertExpired"
        ),
        "{err}"
    );
}

#[test]
fn every_flipped_byte_is_caught() {
    let p = current_pki();
    let (_, bundle) = journey(&p, crate::time::now_ms(), true);
    let bytes = encode_bundle(&bundle);
    let v = verifier(&p);
    verify_bundle(&bytes, &v).unwrap();
    for i in 0..bytes.len() {
        for mask in [0x01, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            assert!(
                verify_bundle(&bad, &v).is_err(),
                "byte {i} of {} xor {mask:#04x} still verifies",
                bytes.len()
            );
        }
    }
}

#[test]
fn each_failure_names_the_item_at_fault() {
    let p = current_pki();
    let v = verifier(&p);
    let (_, good) = journey(&p, crate::time::now_ms(), true);
    let cases: [(&str, Tamper); 5] = [
        (
            "document header: signature does not match the signed bytes",
            |b| {
                let d = b.document.as_mut().unwrap();
                // The last byte is in the last part's SHA-256: still a valid header, so only the
                // signature can fail (byte 10 is in the time-based id, whose flip may not parse).
                let last = d.header.len() - 1;
                d.header[last] ^= 1;
            },
        ),
        (
            "document header: signature does not match the signed bytes",
            |b| {
                let s = b.document.as_mut().unwrap().signature.as_mut().unwrap();
                s.value[7] ^= 1;
            },
        ),
        (
            "acceptance: signature does not match the signed bytes",
            |b| {
                // A byte of the header digest it names: caught by the signature, checked first.
                let digest = Digest::of(&b.document.as_ref().unwrap().header).0;
                let ev = &mut b.acceptance.as_mut().unwrap().evidence;
                let at = ev.windows(32).position(|w| w == digest).unwrap();
                ev[at + 5] ^= 1;
            },
        ),
        (
            "evidence #3 (DELIVERED for c): signature does not match the signed bytes",
            |b| b.evidence[2].signature.as_mut().unwrap().value[0] ^= 1,
        ),
        (
            "content part 1 (附件.pdf): SHA-256 does not match the signed manifest",
            |b| b.content[1].data[0] ^= 1,
        ),
    ];
    for (expected, tamper) in cases {
        let mut b = good.clone();
        tamper(&mut b);
        assert_eq!(failure(&b, &v), expected);
    }
}

#[test]
fn a_bundle_checked_against_another_ca_fails() {
    let p = current_pki();
    let (_, bundle) = journey(&p, crate::time::now_ms(), false);
    let other = current_pki();
    assert_eq!(
        failure(&bundle, &verifier(&other)),
        "document header: signer certificate not trusted: UnknownIssuer"
    );
}

#[test]
fn evidence_for_another_document_or_from_the_wrong_signer_fails() {
    let p = current_pki();
    let v = verifier(&p);
    let t0 = crate::time::now_ms();
    let (doc, good) = journey(&p, t0, false);
    let other = document(&p.a, t0);

    let mut b = good.clone();
    b.evidence[1] = evidence(&other, EvidenceKind::Delivered, Some("b"), t0, &p.b);
    let err = failure(&b, &v);
    let want = format!(
        "evidence #2 (DELIVERED for b): is about another document ({}",
        other.header.id
    );
    assert!(err.starts_with(&want), "{err}");

    let mut b = good.clone();
    b.evidence[0] = evidence(&doc, EvidenceKind::Delivered, Some("b"), t0, &p.c);
    assert_eq!(
        failure(&b, &v),
        "evidence #1 (DELIVERED for b): signed by department c, but only department b may sign it"
    );

    let mut b = good.clone();
    b.evidence
        .push(evidence(&doc, EvidenceKind::Delivered, Some("d"), t0, &p.d));
    assert_eq!(
        failure(&b, &v),
        "evidence #5 (DELIVERED for d): d is not a recipient of the document"
    );

    let mut b = good.clone();
    b.evidence
        .push(evidence(&doc, EvidenceKind::Accepted, None, t0, &p.hub));
    assert_eq!(
        failure(&b, &v),
        "evidence #5 (ACCEPTED): ACCEPTED evidence belongs in the acceptance field"
    );
    let mut b = good.clone();
    b.evidence
        .push(evidence(&doc, EvidenceKind::Refused, None, t0, &p.hub));
    assert_eq!(
        failure(&b, &v),
        "evidence #5 (REFUSED): REFUSED evidence belongs in the acceptance field"
    );
    // After the hub's REFUSED verdict nothing may follow: named as such.
    let mut b = good.clone();
    b.acceptance = Some(evidence(&doc, EvidenceKind::Refused, None, t0, &p.hub));
    assert_eq!(
        failure(&b, &v),
        "evidence #1 (DELIVERED for b): follows the hub's REFUSED verdict \
         (a refused document goes no further)"
    );

    let mut b = good;
    b.acceptance = Some(b.evidence[0].clone());
    assert_eq!(failure(&b, &v), "acceptance: is DELIVERED, not ACCEPTED");
    b.acceptance = None;
    assert_eq!(failure(&b, &v), "acceptance: missing");
    b.document = None;
    assert_eq!(failure(&b, &v), "document header: missing");
}

#[test]
fn content_must_cover_every_part_once_with_its_signed_size() {
    let p = current_pki();
    let v = verifier(&p);
    let (_, good) = journey(&p, crate::time::now_ms(), true);
    let too_long = format!(
        "content part 0 (正文.ofd): {} bytes, but the signed manifest says {}",
        BODY.len() + 1,
        BODY.len()
    );
    let cases: [(&str, Tamper); 4] = [
        (
            "content part 1 (附件.pdf): missing (the bundle carries the content of other parts)",
            |b| drop(b.content.pop()),
        ),
        ("content part 0 (正文.ofd): appears twice", |b| {
            b.content[1].part = 0
        }),
        (
            "content part 7: the signed manifest has no such part",
            |b| b.content[1].part = 7,
        ),
        (&too_long, |b| b.content[0].data.push(0)),
    ];
    for (expected, tamper) in cases {
        let mut b = good.clone();
        tamper(&mut b);
        assert_eq!(failure(&b, &v), expected);
    }
}

#[test]
fn magic_trailing_bytes_unknown_fields_and_format_are_checked() {
    let p = current_pki();
    let v = verifier(&p);
    let (_, good) = journey(&p, crate::time::now_ms(), false);
    let bytes = encode_bundle(&good);

    let err = verify_bundle(&bytes[1..], &v).unwrap_err();
    assert!(matches!(err, BundleError::BadMagic), "{err}");
    // A valid field 6 (varint 1) after the message: skipped by protobuf, refused here.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0x30, 0x01]);
    let err = verify_bundle(&trailing, &v).unwrap_err();
    assert!(
        matches!(err, BundleError::Unaccounted { bytes: 2 }),
        "{err}"
    );
    let mut garbage = bytes;
    garbage.extend_from_slice(b"garbage");
    let err = verify_bundle(&garbage, &v).unwrap_err();
    assert!(
        err.to_string().starts_with("the bundle does not decode"),
        "{err}"
    );
    // Format 3 is a bundle about a document naming another digest (see `digests.rs`).
    let mut four = good;
    four.format = 4;
    assert_eq!(
        failure(&four, &v),
        "bundle format 4 is not supported (this version reads formats 1, 2 and 3)"
    );
}

#[test]
fn the_file_layout_is_exactly_as_documented() {
    assert_eq!(MAGIC.len(), 28);
    let minimal = pb::EvidenceBundle {
        format: 1,
        ..Default::default()
    };
    assert_eq!(encode_bundle(&minimal), [MAGIC, &[0x08, 0x01]].concat());
    // Field 5 (LEN), 7 bytes: part = 1 (field 1, varint), data (field 2, LEN) of 3 bytes.
    assert_eq!(part_frame(1, 3), [0x2a, 0x07, 0x08, 0x01, 0x12, 0x03]);
    // Streamed framing equals prost's encoding of the same parts, defaults included.
    for (index, size) in [(0, 0), (0, 3), (1, 0), (1, 3), (300, 200), (5, 70_000)] {
        let data = vec![0xa5; size];
        let part = pb::BundledPart {
            part: index,
            data: data.clone(),
        };
        let with = pb::EvidenceBundle {
            content: vec![part],
            ..minimal.clone()
        };
        let streamed = [
            encode_bundle(&minimal),
            part_frame(index, size as u64),
            data,
        ]
        .concat();
        assert_eq!(streamed, encode_bundle(&with), "part {index}, {size} bytes");
        assert_eq!(decode_bundle(&streamed).unwrap().content.len(), 1);
    }
}

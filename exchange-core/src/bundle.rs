//! The evidence bundle: one self-contained file with which a sender proves, offline and years
//! later, that a document was sent, accepted, delivered and confirmed (or refused), by whom and
//! when (`proto/exchange/v1/bundle.proto`, `docs/evidence.md`).
//!
//! The file is [`MAGIC`] followed by exactly one encoded `exchange.v1.EvidenceBundle`. Every
//! signature inside carries its signer's certificate, so a verifier needs only the exchange CA.
//! Certificates are checked at the time each item claims (the header's `created_at_ms`, each
//! evidence's `at_ms`), not at the time of verification: a bundle keeps verifying after the
//! certificates in it have expired.
//!
//! The node writes bundles with [`encode_bundle`] and, for content it streams from disk,
//! [`part_frame`]; `exchange-certs verify` checks them with [`verify_bundle`].

use std::collections::HashSet;

use crate::ids::Address;

use exchange_proto::v1 as pb;
use prost::Message as _;

use crate::{
    crypto::DigestAlgorithm,
    document::{EvidenceKind, Header, PartInfo, SignedDoc, SignedEvidence},
    identity::{Principal, Qualified},
    signing::{Digest, Trust, Verifier},
};

mod report;
#[cfg(test)]
pub(crate) mod tests;

pub use report::{BundleError, Item, Problem, Report, Step, StepKind};

/// The bytes every bundle file starts with (28 ASCII bytes, the last one a newline), so that a
/// bundle is recognised as one before anything is decoded.
pub const MAGIC: &[u8] = b"EXCHANGE-EVIDENCE-BUNDLE-V1\n";

/// The bundle format this version writes (`EvidenceBundle.format`) for a document whose digests
/// are SHA-256 (the international profile): 2, whose signatures may be batch signatures
/// (`ed25519-merkle-sha256`, an inclusion path each). Format 1 bundles (every signature a single
/// `ed25519`) are still read: see [`READABLE_FORMATS`].
pub const BUNDLE_FORMAT: u32 = 2;

/// The bundle format of a document whose header names another digest than SHA-256 (`sm3`, the
/// shangmi profile): 3. The bytes are laid out as in format 2; the number tells a reader that
/// knows only SHA-256 to refuse the file by its format rather than misread it
/// ([`bundle_format_for`]).
pub const BUNDLE_FORMAT_NAMED_DIGEST: u32 = 3;

/// Every bundle format this version reads.
pub const READABLE_FORMATS: &[u32] = &[1, 2, 3];

/// The format of a bundle about a document whose header names `digest`: [`BUNDLE_FORMAT`] for
/// SHA-256 (an international bundle is byte for byte what it was), else
/// [`BUNDLE_FORMAT_NAMED_DIGEST`].
pub fn bundle_format_for(digest: DigestAlgorithm) -> u32 {
    match digest {
        DigestAlgorithm::Sha256 => BUNDLE_FORMAT,
        _ => BUNDLE_FORMAT_NAMED_DIGEST,
    }
}

/// Field number of `EvidenceBundle.content`, the last field: content can be appended to an
/// encoded bundle part by part (see [`part_frame`]).
const CONTENT_FIELD: u32 = 5;

/// The bundle file for `bundle`: [`MAGIC`], then the encoded message.
pub fn encode_bundle(bundle: &pb::EvidenceBundle) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + bundle.encoded_len());
    out.extend_from_slice(MAGIC);
    bundle.encode(&mut out).expect("BUG: a Vec grows as needed");
    out
}

/// The bytes that precede the `size` content bytes of part `index` when that part is appended
/// to a bundle file. Protobuf encodes fields in number order and `content` is the last field, so
/// `encode_bundle(without content)` followed by `part_frame(i, size) ‖ data` for each part is
/// byte for byte the encoding of the bundle with its content, without holding the content in
/// memory. Produces exactly what prost would: fields with default values are left out.
pub fn part_frame(index: u32, size: u64) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    let index_len = if index == 0 {
        0
    } else {
        1 + encoded_len_varint(u64::from(index)) as u64
    };
    let data_len = if size == 0 {
        0
    } else {
        (1 + encoded_len_varint(size) as u64).saturating_add(size)
    };
    let inner_len = data_len.saturating_add(index_len);
    let mut out = Vec::with_capacity(24);
    encode_key(CONTENT_FIELD, WireType::LengthDelimited, &mut out);
    encode_varint(inner_len, &mut out);
    if index != 0 {
        encode_key(1, WireType::Varint, &mut out);
        encode_varint(u64::from(index), &mut out);
    }
    if size != 0 {
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(size, &mut out);
    }
    out
}

/// Decodes a bundle file: the magic, one `EvidenceBundle` that accounts for every byte after
/// it, and one of the [`READABLE_FORMATS`]. Checks no signature.
pub fn decode_bundle(bytes: &[u8]) -> Result<pb::EvidenceBundle, BundleError> {
    let body = bytes.strip_prefix(MAGIC).ok_or(BundleError::BadMagic)?;
    let bundle = pb::EvidenceBundle::decode(body).map_err(BundleError::Decode)?;
    // prost skips fields it does not know and merges repeated singular fields; re-measuring the
    // decoded message finds such bytes, so every byte of a verified file is accounted for.
    let used = bundle.encoded_len();
    if used != body.len() {
        return Err(BundleError::Unaccounted {
            bytes: body.len().abs_diff(used),
        });
    }
    if !READABLE_FORMATS.contains(&bundle.format) {
        return Err(BundleError::Format(bundle.format));
    }
    Ok(bundle)
}

/// Verifies a bundle file against the exchange CA `verifier`, and reports each step.
///
/// In order: the document (its sender's signature, at `created_at_ms`); the hub's verdict — its
/// acceptance, or its refusal (then nothing may follow);
/// every other piece of evidence in file order; then the content, if bundled. The first item
/// that fails is named in the error (see `docs/evidence.md` for the exact checks).
pub fn verify_bundle(bytes: &[u8], verifier: &Verifier) -> Result<Report, BundleError> {
    verify_bundle_in(bytes, &Trust::new(verifier.clone(), None))
}

/// [`verify_bundle`] for a document that crossed linked exchanges (docs/federation.md):
/// `trust`'s own CA is the sender's exchange's, and each linked exchange's CA checks the
/// signatures of that exchange's recipients and relaying hub. A signature is only ever checked
/// against the CA of the exchange its signer must belong to.
pub fn verify_bundle_in(bytes: &[u8], trust: &Trust) -> Result<Report, BundleError> {
    let verifier = trust.own();
    let bundle = decode_bundle(bytes)?;
    let doc = verify_document(bundle.document, verifier)?;
    // Format 3 is exactly for a document naming another digest than SHA-256; formats 1 and 2
    // hold SHA-256 documents only.
    let named = doc.header.digest != DigestAlgorithm::Sha256;
    if (bundle.format == BUNDLE_FORMAT_NAMED_DIGEST) != named {
        return Err(BundleError::FormatDigest {
            format: bundle.format,
            digest: doc.header.digest,
        });
    }
    let mut steps = vec![Step {
        kind: StepKind::Sent,
        recipient: None,
        signer: Qualified::local(Principal::Dept(doc.header.sender.clone())),
        at_ms: doc.header.created_at_ms,
        clerk: String::new(),
        reason: String::new(),
    }];
    let acceptance = bundle.acceptance.ok_or(BundleError::Item {
        item: Item::Acceptance,
        problem: Problem::Missing,
    })?;
    let acc =
        verify_evidence(acceptance, &doc, trust, &[]).map_err(|problem| BundleError::Item {
            item: Item::Acceptance,
            problem,
        })?;
    let refused = acc.evidence.kind == EvidenceKind::Refused;
    if !matches!(
        acc.evidence.kind,
        EvidenceKind::Accepted | EvidenceKind::Refused
    ) {
        return Err(BundleError::Item {
            item: Item::Acceptance,
            problem: Problem::NotAcceptance(acc.evidence.kind),
        });
    }
    steps.push(Step::of(&acc));
    let mut added: Vec<Address> = Vec::new();
    for (i, wire) in bundle.evidence.into_iter().enumerate() {
        let label = SignedEvidence::decode(wire.clone())
            .ok()
            .map(|e| (e.evidence.kind, e.evidence.recipient));
        let item = Item::Evidence {
            number: i + 1,
            label,
        };
        let ev =
            verify_evidence(wire, &doc, trust, &added).map_err(|problem| BundleError::Item {
                item: item.clone(),
                problem,
            })?;
        if let (EvidenceKind::RecipientAdded, Some(r)) = (ev.evidence.kind, &ev.evidence.recipient)
        {
            added.push(r.clone());
        }
        let misplaced = match ev.evidence.kind {
            kind @ (EvidenceKind::Accepted | EvidenceKind::Refused) => {
                Some(Problem::ExtraAcceptance(kind))
            }
            _ if refused => Some(Problem::AfterRefusal),
            _ => None,
        };
        if let Some(problem) = misplaced {
            return Err(BundleError::Item { item, problem });
        }
        steps.push(Step::of(&ev));
    }
    let content_verified = !bundle.content.is_empty();
    verify_content(&bundle.content, &doc.header)?;
    let SignedDoc { header, digest, .. } = doc;
    Ok(Report {
        doc_id: header.id,
        title: header.title,
        doc_number: header.metadata.doc_number,
        sender: header.sender,
        header_digest: digest,
        digest: header.digest,
        recipients: header.recipients,
        parts: header.parts,
        steps,
        content_verified,
    })
}

/// Unix seconds for certificate validity at `at_ms`, the time an item claims.
fn claimed_secs(at_ms: i64) -> Result<u64, Problem> {
    u64::try_from(at_ms.div_euclid(1000)).map_err(|_| Problem::Time(at_ms))
}

/// The document: decodes and validates the header, then checks that its sender signed it with a
/// certificate of this exchange valid when the header says it was sealed.
fn verify_document(
    wire: Option<pb::SignedDocument>,
    verifier: &Verifier,
) -> Result<SignedDoc, BundleError> {
    let fail = |problem| BundleError::Item {
        item: Item::Document,
        problem,
    };
    let wire = wire.ok_or_else(|| fail(Problem::Missing))?;
    let decoded = SignedDoc::decode(wire.clone()).map_err(|e| fail(Problem::Invalid(e)))?;
    let at = claimed_secs(decoded.header.created_at_ms).map_err(fail)?;
    SignedDoc::verify(wire, verifier, at).map_err(|e| fail(Problem::Invalid(e)))
}

/// One piece of evidence: signed by the principal its kind requires, with a certificate valid
/// at its `at_ms`, about this document (id, header digest and sender), for one of its
/// recipients.
fn verify_evidence(
    wire: pb::SignedEvidence,
    doc: &SignedDoc,
    trust: &Trust,
    added: &[Address],
) -> Result<SignedEvidence, Problem> {
    let decoded = SignedEvidence::decode(wire.clone()).map_err(Problem::Invalid)?;
    let at = claimed_secs(decoded.evidence.at_ms)?;
    let ev = SignedEvidence::verify_in(wire, trust, None, at).map_err(Problem::Invalid)?;
    if !ev.is_about(doc) {
        return Err(Problem::OtherDocument {
            doc_id: ev.evidence.doc_id,
            header_digest: ev.evidence.header_digest,
        });
    }
    if ev.evidence.sender != doc.header.sender {
        return Err(Problem::WrongSender(ev.evidence.sender));
    }
    // A recipient the header does not name must have been added by the sender (补发), by a
    // RECIPIENT_ADDED earlier in the bundle — or this is that addition.
    if let Some(r) = &ev.evidence.recipient
        && doc.header.role_of(r).is_none()
        && ev.evidence.kind != EvidenceKind::RecipientAdded
        && !added.contains(r)
    {
        return Err(Problem::NotRecipient(r.clone()));
    }
    Ok(ev)
}

/// The bundled content, if any: every part of the manifest exactly once, each of its signed size
/// and digest (under the algorithm the header names).
fn verify_content(content: &[pb::BundledPart], header: &Header) -> Result<(), BundleError> {
    if content.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    for bp in content {
        let index = usize::try_from(bp.part).unwrap_or(usize::MAX);
        let part = header.parts.get(index);
        let fail = |problem| BundleError::Item {
            item: Item::Content {
                index: bp.part,
                name: part.map(|p| p.name.clone()),
            },
            problem,
        };
        let part = part.ok_or_else(|| fail(Problem::NoSuchPart))?;
        if !seen.insert(index) {
            return Err(fail(Problem::Duplicate));
        }
        check_part(part, header.digest, &bp.data).map_err(fail)?;
    }
    if let Some((i, p)) = header
        .parts
        .iter()
        .enumerate()
        .find(|(i, _)| !seen.contains(i))
    {
        return Err(BundleError::Item {
            item: Item::Content {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                name: Some(p.name.clone()),
            },
            problem: Problem::MissingPart,
        });
    }
    Ok(())
}

fn check_part(part: &PartInfo, alg: DigestAlgorithm, data: &[u8]) -> Result<(), Problem> {
    let actual = data.len() as u64;
    if actual != part.size {
        return Err(Problem::Size {
            actual,
            expected: part.size,
        });
    }
    // The header's algorithm was computed once already (the header digest), so it is available.
    let digest = Digest::with(alg, data).map_err(|e| Problem::Crypto(e.to_string()))?;
    if digest != part.sha256 {
        return Err(Problem::Digest(alg));
    }
    Ok(())
}

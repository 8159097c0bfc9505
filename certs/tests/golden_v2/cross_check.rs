//! `docs/evidence.md` describes the signed bytes exactly: an implementation written from that page
//! alone — SHA-256 and Ed25519 straight from `ring`, the Merkle tree top-down from RFC 9162's
//! definition, nothing from `exchange_core::signing` — verifies every signature of both golden
//! bundles, and the batch fields sit in the file byte for byte as the page says.

use anyhow::{Context, Result, bail, ensure};
use exchange_core::bundle::{MAGIC, decode_bundle};
use exchange_proto::v1 as pb;
use ring::{digest, signature};

use super::{BUNDLE, golden, golden_bundle};

const HEADER_CONTEXT: &[u8] = b"exchange.v1.DocumentHeader\0";
const EVIDENCE_CONTEXT: &[u8] = b"exchange.v1.Evidence\0";
const BATCH_ROOT: &[u8] = b"exchange.v1.BatchRoot\0";

type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = digest::Context::new(&digest::SHA256);
    parts.iter().for_each(|p| h.update(p));
    h.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The root that `leaf` at `index` reaches in a tree of `size` leaves through `path` (sibling
/// hashes from the leaf up, so the top-level sibling comes last), computed top-down from
/// RFC 9162's `MTH`: a tree of n > 1 leaves is a node over the first k leaves, k the largest
/// power of two below n, and the other n − k. `None` if the path does not fit.
fn root(leaf: Hash, index: u64, size: u64, path: &[Vec<u8>]) -> Option<Hash> {
    if size == 1 {
        return (index == 0 && path.is_empty()).then_some(leaf);
    }
    let (top, below) = path.split_last()?;
    let top: Hash = top.as_slice().try_into().ok()?;
    let mut k = 1;
    while k * 2 < size {
        k *= 2;
    }
    Some(if index < k {
        sha256(&[&[0x01], &root(leaf, index, k, below)?, &top])
    } else {
        sha256(&[&[0x01], &top, &root(leaf, index - k, size - k, below)?])
    })
}

/// The message the signature's `value` signs, as the page describes it for each algorithm.
fn signed_message(sig: &pb::Signature, context: &[u8], bytes: &[u8]) -> Result<Vec<u8>> {
    match (sig.algorithm.as_str(), &sig.batch) {
        ("ed25519", None) => Ok([context, bytes].concat()),
        ("ed25519-merkle-sha256", Some(b)) => {
            let leaf = sha256(&[&[0x00], context, bytes]);
            let root = root(leaf, b.leaf_index, b.tree_size, &b.path).context("path")?;
            Ok([BATCH_ROOT, &b.tree_size.to_be_bytes(), &root].concat())
        }
        (other, _) => bail!("algorithm {other:?}"),
    }
}

/// Whether the Ed25519 key of the certificate `cert_der` made `value` over `msg`.
fn ed25519_verifies(cert_der: &[u8], msg: &[u8], value: &[u8]) -> Result<bool> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)?;
    let key = cert.public_key().subject_public_key.data.as_ref();
    ensure!(key.len() == 32, "not an Ed25519 key");
    let key = signature::UnparsedPublicKey::new(&signature::ED25519, key);
    Ok(key.verify(msg, value).is_ok())
}

/// A signed statement: its context, its bytes and its signature.
type Statement<'a> = (&'static [u8], &'a [u8], &'a pb::Signature);

/// Each signed statement of a bundle, in file order.
fn statements(b: &pb::EvidenceBundle) -> Result<Vec<Statement<'_>>> {
    let doc = b.document.as_ref().context("document")?;
    let mut out = vec![(HEADER_CONTEXT, &doc.header[..], doc.signature.as_ref())];
    for e in b.acceptance.iter().chain(&b.evidence) {
        out.push((EVIDENCE_CONTEXT, &e.evidence[..], e.signature.as_ref()));
    }
    out.into_iter()
        .map(|(c, bytes, s)| Ok((c, bytes, s.context("no signature")?)))
        .collect()
}

#[test]
fn every_signature_of_both_golden_bundles_verifies_as_documented() -> Result<()> {
    for (file, batched) in [("evidence-v1.bundle", 0), (BUNDLE, 4)] {
        let bundle = decode_bundle(&std::fs::read(golden(file))?)?;
        let mut seen = 0;
        for (i, (context, bytes, sig)) in statements(&bundle)?.into_iter().enumerate() {
            let msg =
                signed_message(sig, context, bytes).with_context(|| format!("{file} #{i}"))?;
            ensure!(
                ed25519_verifies(&sig.signer_cert, &msg, &sig.value)?,
                "{file}: signature #{i} does not verify as docs/evidence.md describes it"
            );
            seen += usize::from(sig.batch.is_some());
        }
        assert_eq!(seen, batched, "{file}: batch signatures");
    }
    Ok(())
}

/// Why the tree size is signed with the root: the acceptance's path (leaf 5 of 7) leads to the
/// same root in a tree of 8, so a signature over the root alone would vouch for both.
#[test]
fn the_root_alone_does_not_bind_the_tree_size() -> Result<()> {
    let bundle = golden_bundle()?;
    let acc = bundle.acceptance.as_ref().context("acceptance")?;
    let sig = acc.signature.as_ref().context("signature")?;
    let b = sig.batch.as_ref().context("batch")?;
    let leaf = sha256(&[&[0x00], EVIDENCE_CONTEXT, &acc.evidence]);
    let seven = root(leaf, 5, 7, &b.path).context("7")?;
    assert_eq!(root(leaf, 5, 8, &b.path), Some(seven));
    let claim = |size: u64| [BATCH_ROOT, &size.to_be_bytes(), &seven].concat();
    assert!(ed25519_verifies(&sig.signer_cert, &claim(7), &sig.value)?);
    assert!(!ed25519_verifies(&sig.signer_cert, &claim(8), &sig.value)?);
    Ok(())
}

/// `Signature` field 4 (`22`) follows the 64-byte `value` (`1A 40`); inside it `leaf_index`
/// (`08`, absent when 0), `tree_size` (`10`), then each path hash (`1A 20` and 32 bytes).
#[test]
fn the_batch_fields_are_laid_out_as_documented() -> Result<()> {
    let file = std::fs::read(golden(BUNDLE))?;
    let body = file.strip_prefix(MAGIC).context("magic")?;
    ensure!(
        body.starts_with(&[0x08, 0x02, 0x12]),
        "format 2, then the document"
    );
    let bundle = golden_bundle()?;
    let mut found = 0;
    for (_, _, sig) in statements(&bundle)? {
        let Some(b) = &sig.batch else { continue };
        let algorithm = [&[0x0A, 0x15][..], b"ed25519-merkle-sha256", &[0x12]].concat();
        ensure!(
            contains(body, &algorithm),
            "the algorithm, then signer_cert"
        );
        // Every number here is below 128: one varint byte each.
        let mut inner = Vec::new();
        if b.leaf_index != 0 {
            inner.extend([0x08, b.leaf_index as u8]);
        }
        inner.extend([0x10, b.tree_size as u8]);
        for h in &b.path {
            inner.extend([0x1A, 0x20]);
            inner.extend_from_slice(h);
        }
        let want = [
            &[0x1A, 0x40][..],
            &sig.value,
            &[0x22, inner.len() as u8],
            &inner,
        ]
        .concat();
        ensure!(
            contains(body, &want),
            "leaf {} of {}",
            b.leaf_index,
            b.tree_size
        );
        found += 1;
    }
    assert_eq!(found, 4);
    // The acceptance, leaf 5 of 7 with three hashes, as docs/evidence.md shows it.
    let acc = bundle
        .acceptance
        .as_ref()
        .and_then(|a| a.signature.as_ref());
    let path = &acc.and_then(|s| s.batch.as_ref()).context("batch")?.path;
    let head = [
        &[0x22, 0x6A, 0x08, 0x05, 0x10, 0x07, 0x1A, 0x20][..],
        &path[0],
    ]
    .concat();
    ensure!(contains(body, &head), "22 6A 08 05 10 07 1A 20 …");
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

//! A changed inclusion path in a copy of the format-2 golden bundle: `exchange-certs verify`
//! exits 1 and its error names the item and its inclusion path, whichever part of the path was
//! changed; so does a changed statement or signature value, and a batch signature relabelled or
//! stripped of its inclusion fails too. The copy is the decoded bundle, edited and encoded again,
//! so only the edit differs. These are the texts `docs/evidence.md` quotes.

use anyhow::{Context, Result, ensure};
use exchange_core::bundle::{encode_bundle, verify_bundle};
use exchange_proto::v1 as pb;

use super::{BUNDLE, CA, golden, golden_bundle, verifier, verify_cli};

/// What the verifier says when the bytes and the path lead to a root the signature does not
/// cover (`SignError::Inclusion`).
const NO_ROOT: &str = "these bytes and this path do not lead to the root the signature covers \
                       (the statement, the path or the signature was altered)";

fn acceptance_sig(b: &mut pb::EvidenceBundle) -> &mut pb::Signature {
    let sig = b.acceptance.as_mut().and_then(|a| a.signature.as_mut());
    sig.expect("the golden acceptance is signed")
}

fn acceptance(b: &mut pb::EvidenceBundle) -> &mut pb::BatchInclusion {
    acceptance_sig(b)
        .batch
        .as_mut()
        .expect("the golden acceptance is batch-signed")
}

fn header(b: &mut pb::EvidenceBundle) -> &mut pb::BatchInclusion {
    let sig = b.document.as_mut().and_then(|d| d.signature.as_mut());
    sig.and_then(|s| s.batch.as_mut())
        .expect("the golden header is batch-signed")
}

fn evidence(b: &mut pb::EvidenceBundle, i: usize) -> &mut pb::BatchInclusion {
    let sig = b.evidence[i].signature.as_mut();
    sig.and_then(|s| s.batch.as_mut())
        .expect("this golden evidence is batch-signed")
}

type Edit = fn(&mut pb::EvidenceBundle);

/// Each copy of the golden bundle, edited, fails with exactly `expected`, from the library and
/// from `exchange-certs verify` (exit 1, nothing on stdout, `error: FILE does not verify: …`).
fn each_fails(cases: Vec<(&str, Edit, String)>) -> Result<()> {
    let original = std::fs::read(golden(BUNDLE))?;
    let bundle = golden_bundle()?;
    assert_eq!(
        encode_bundle(&bundle),
        original,
        "decoding and encoding again changes nothing, so each copy differs only by its edit"
    );
    let tmp = tempfile::tempdir()?;
    for (what, edit, expected) in cases {
        let mut b = bundle.clone();
        edit(&mut b);
        let bad = encode_bundle(&b);
        let err = verify_bundle(&bad, &verifier()?)
            .err()
            .with_context(|| format!("{what}: still verifies"))?;
        assert_eq!(err.to_string(), expected, "{what}");

        let file = tmp.path().join("tampered.bundle");
        std::fs::write(&file, &bad)?;
        let (code, out, err) = verify_cli(&file, &golden(CA))?;
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(out.is_empty(), "{what}: {out}");
        let want = format!("error: {} does not verify: {expected}", file.display());
        ensure!(err.trim_end() == want, "{what}: {err}");
    }
    Ok(())
}

#[test]
fn a_tampered_inclusion_path_fails_naming_the_item_and_its_path() -> Result<()> {
    let acc = "acceptance: batch signature: inclusion path";
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "a byte of a hash in the acceptance's path",
            |b| acceptance(b).path[1][13] ^= 0x01,
            format!("{acc} of leaf 5 of 7: {NO_ROOT}"),
        ),
        (
            "the acceptance's leaf index, to its sibling's",
            |b| acceptance(b).leaf_index = 4,
            format!("{acc} of leaf 4 of 7: {NO_ROOT}"),
        ),
        (
            // The path leads to the very same root in a tree of 8 (see `cross_check`): only the
            // tree size under the signature tells the two apart.
            "the acceptance's tree size, to one where the path still fits",
            |b| acceptance(b).tree_size = 8,
            format!("{acc} of leaf 5 of 8: {NO_ROOT}"),
        ),
        (
            "the acceptance's tree size, to one where the path does not fit",
            |b| acceptance(b).tree_size = 6,
            format!("{acc} of leaf 5 of 6: 3 hashes do not fit leaf 5 of a tree of 6"),
        ),
        (
            "the last hash of the acceptance's path dropped",
            |b| drop(acceptance(b).path.pop()),
            format!("{acc} of leaf 5 of 7: 2 hashes do not fit leaf 5 of a tree of 7"),
        ),
        (
            "the acceptance's leaf index, beyond the tree",
            |b| acceptance(b).leaf_index = 7,
            format!("{acc} of leaf 7 of 7: leaf index 7 is not below the tree size 7"),
        ),
        (
            "a hash of the acceptance's path cut short",
            |b| acceptance(b).path[2].truncate(31),
            format!("{acc} of leaf 5 of 7: hash 2 is not 32 bytes"),
        ),
        (
            // With one signature over the root, a changed statement or signature cannot be told
            // from a changed path: the error says all three.
            "a byte of the header digest the acceptance names",
            |b| {
                let header = &b.document.as_ref().expect("document").header;
                let digest = exchange_core::signing::Digest::of(header).0;
                let ev = &mut b.acceptance.as_mut().expect("acceptance").evidence;
                let at = ev.windows(32).position(|w| w == digest).expect("digest");
                ev[at + 9] ^= 0x01;
            },
            format!("{acc} of leaf 5 of 7: {NO_ROOT}"),
        ),
        (
            "a byte of the acceptance's signature",
            |b| acceptance_sig(b).value[17] ^= 0x01,
            format!("{acc} of leaf 5 of 7: {NO_ROOT}"),
        ),
        (
            "a byte of a hash in the header's path",
            |b| header(b).path[0][0] ^= 0x80,
            format!("document header: batch signature: inclusion path of leaf 1 of 3: {NO_ROOT}"),
        ),
        (
            "a hash added to c's DELIVERED path",
            |b| evidence(b, 2).path.push(vec![0; 32]),
            "evidence #3 (DELIVERED for c): batch signature: inclusion path of leaf 4 of 5: \
             2 hashes do not fit leaf 4 of a tree of 5"
                .to_owned(),
        ),
    ];
    each_fails(cases)
}

/// A batch signature cannot pass as a single one, nor lose its inclusion.
#[test]
fn a_batch_signature_cannot_pose_as_a_single_one_nor_lose_its_inclusion() -> Result<()> {
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "the algorithm relabelled ed25519, the inclusion kept",
            |b| acceptance_sig(b).algorithm = "ed25519".into(),
            "acceptance: unsupported signature algorithm \"ed25519 with a batch inclusion \
             (a batch signature must say ed25519-merkle-sha256)\""
                .to_owned(),
        ),
        (
            "the inclusion removed",
            |b| acceptance_sig(b).batch = None,
            "acceptance: unsupported signature algorithm \
             \"ed25519-merkle-sha256 without its batch inclusion\""
                .to_owned(),
        ),
        (
            "the inclusion removed and the algorithm relabelled ed25519",
            |b| {
                let sig = acceptance_sig(b);
                sig.batch = None;
                sig.algorithm = "ed25519".into();
            },
            "acceptance: signature does not match the signed bytes".to_owned(),
        ),
    ];
    each_fails(cases)
}

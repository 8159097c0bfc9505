//! Bad input at a 国密 hub (issue 14): documents submitted over a's genuine TLCP connection whose
//! signature or digest is of the other profile, or mislabelled. Each gets a clear gRPC refusal
//! naming what is wrong, is audited at the hub (`document-refused`, with the reason), and changes
//! nothing: no inbox, no stored document or blob.
#![cfg(feature = "shangmi")]

use anyhow::{Context, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::store::kv::{ReadTables as _, Table};
use exchange_core::{
    convert::digest_algorithm_field,
    crypto::{DigestAlgorithm, Profile::Shangmi},
    identity::Principal,
    signing::Digest,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    TestExchange,
    cli::{entry_when, send},
    forge,
    scenario::audit::audit_list,
};
use redb::ReadableDatabase as _;
use tonic::Code;

const DOCUMENTS: Table = Table::new("documents");

/// A one-part header from a to b whose part and header digests are `alg`'s.
fn header(title: &str, alg: DigestAlgorithm) -> Result<pb::DocumentHeader> {
    let data = title.as_bytes();
    let mut part = forge::part(data);
    part.sha256 = Digest::with(alg, data)?.0.to_vec();
    let mut h = forge::header("a", &["b"], title, vec![part]);
    h.digest_algorithm = digest_algorithm_field(alg);
    Ok(h)
}

/// What a refusal must leave alone: b's inbox and the hub's blobs.
async fn snapshot(ex: &TestExchange) -> Result<(serde_json::Value, Vec<String>)> {
    Ok((
        ex.cli_json("b", &["inbox", "--json"]).await?,
        forge::hub_blobs(&ex.hub_data_dir()).into_iter().collect(),
    ))
}

#[tokio::test]
async fn a_signature_or_digest_of_the_other_profile_is_refused_audited_and_not_stored() -> Result<()>
{
    let mut ex = TestExchange::start_with_profile(&["a", "b"], Shangmi).await?;
    // A genuine document first: the state every refusal must leave alone.
    let baseline = send(&ex, "a", "基线公文", &["--to", "b"]).await?;
    entry_when(&ex, "b", &baseline, "delivered", |_| true).await?;

    let sm3 = DigestAlgorithm::Sm3;
    let a_key = forge::signing_key(&ex, "a")?;
    // An Ed25519 key for department a, from an international CA.
    let ed25519 = Ca::generate("International CA", Validity::days_from_now(30))?
        .issue_signing_key(&Principal::Dept("a".parse()?), Validity::days_from_now(30))?;

    // 1. Signed Ed25519 (the international profile) at a shangmi hub.
    let h1 = header("国际算法签名的公文", sm3)?;
    let ed_signed = forge::sign(&h1, &ed25519);
    // 2. a's genuine SM2 signature, labelled ed25519.
    let h2 = header("标错算法的公文", sm3)?;
    let mut mislabelled = forge::sign(&h2, &a_key);
    mislabelled
        .signature
        .as_mut()
        .context("a signature")?
        .algorithm = "ed25519".into();
    // 3. SM2-signed by a, but its digests are SHA-256 (the international header).
    let h3 = header("国际摘要的公文", DigestAlgorithm::Sha256)?;
    let sha256_header = forge::sign(&h3, &a_key);

    // Each is refused naming the algorithm and both profiles, or the field and both digests.
    let other_profile = "signature algorithm \"ed25519\" is of the international profile, but \
                         this exchange's is shangmi";
    let cases = [
        (&h1, ed_signed, Code::PermissionDenied, other_profile),
        (&h2, mislabelled, Code::PermissionDenied, other_profile),
        (
            &h3,
            sha256_header,
            Code::InvalidArgument,
            "header.digest_algorithm: sha256 is not this exchange's (shangmi uses sm3)",
        ),
    ];
    let mut hub = ex.hub_client_as("a").await?;
    for (h, doc, code, message) in &cases {
        let before = snapshot(&ex).await?;
        let status = forge::submit(&mut hub, doc.clone())
            .await
            .expect_err("a document of the other profile is refused");
        assert_eq!(status.code(), *code, "{}: {status:?}", h.id);
        assert!(
            status.message().contains(message),
            "{}: {:?}",
            h.id,
            status.message()
        );
        assert_eq!(snapshot(&ex).await?, before, "{} changed a store", h.id);
    }

    // Audited at the hub with the reason; none of them stored.
    ex.stop_hub().await?;
    for (h, _, _, message) in &cases {
        let refused = audit_list(&ex, &["--event", "document-refused", "--doc", &h.id]).await?;
        assert_eq!(refused.len(), 1, "{}: {refused:#?}", h.id);
        assert_eq!(refused[0]["dept"], "a");
        let detail = refused[0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(message), "{}: {detail}", h.id);
    }
    let db = redb::Database::open(ex.hub_data_dir().join("hub.redb"))?;
    let txn = db.begin_read()?;
    for (h, ..) in &cases {
        assert!(
            txn.get(DOCUMENTS, h.id.as_bytes())?.is_none(),
            "{} stored",
            h.id
        );
    }
    assert!(txn.get(DOCUMENTS, baseline.as_bytes())?.is_some());
    Ok(())
}

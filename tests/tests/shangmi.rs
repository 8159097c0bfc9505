//! The 国密 profile end to end (issue 14): `demo-setup --profile shangmi`, the real hub and
//! nodes over TLCP with SM2 certificates, and a document a → b (主送), c (抄送) with 签收 at b
//! and 退回 at c, both receipts back at a. Needs binaries built with the `shangmi` features
//! (the harness builds them so when this crate's `shangmi` feature is on).
#![cfg(feature = "shangmi")]

use anyhow::Result;
use exchange_core::{
    config::{HubConfig, NodeConfig},
    crypto::{Profile, cert_profile},
};
use exchange_tests::{
    TestExchange,
    cli::{last_line, wait_in_inbox, wait_state},
    random_file, sha256_file,
};

#[tokio::test]
async fn a_document_travels_over_tlcp_with_sm2_certificates_and_both_receipts_come_back()
-> Result<()> {
    let ex = TestExchange::start_with_profile(&["a", "b", "c"], Profile::Shangmi).await?;
    // What the daemons run with: shangmi configs over SM2 certificates and TLCP (the default).
    let hub: HubConfig = exchange_core::config::load(&ex.layout_dir().join("hub/hub.toml"))?;
    assert_eq!(hub.crypto.profile, Profile::Shangmi);
    assert_eq!(hub.tls.protocol, None, "TLCP by default");
    let node: NodeConfig = exchange_core::config::load(ex.node_config("a"))?;
    assert_eq!(node.crypto.profile, Profile::Shangmi);
    for cert in [&hub.tls.cert, &node.tls.cert] {
        let der = exchange_core::tls::read_pem_file(cert, "CERTIFICATE")?;
        let (profile, algorithm) = cert_profile(&der).map_err(anyhow::Error::msg)?;
        assert_eq!(
            profile,
            Profile::Shangmi,
            "{} is {algorithm}",
            cert.display()
        );
    }

    let body = random_file(ex.root(), "正文.ofd", 100_000, 1)?;
    let out = ex
        .cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--cc",
                "c",
                "--title",
                "关于做好年终工作的通知",
                "--file",
                body.to_str().unwrap(),
                "--urgency",
                "urgent",
            ],
        )
        .await?;
    let id = last_line(&out);
    assert_eq!(id.len(), 36, "send prints the document id last: {out}");

    for dept in ["b", "c"] {
        let entry = wait_in_inbox(&ex, dept, &id).await?;
        assert_eq!(entry["sender"], "a");
        assert_eq!(entry["state"], "new");
    }
    let save = ex.root().join("b-saved");
    ex.cli_ok("b", &["show", &id, "--save", save.to_str().unwrap()])
        .await?;
    assert_eq!(sha256_file(&save.join("正文.ofd"))?, sha256_file(&body)?);

    ex.cli_ok("b", &["confirm", &id, "--clerk", "王芳"]).await?;
    ex.cli_ok("c", &["reject", &id, "--reason", "不属于本单位职责范围"])
        .await?;

    let b = wait_state(&ex, "a", &id, "b", "confirmed").await?;
    assert_eq!(b["clerk"], "王芳");
    assert_eq!(b["role"], "main");
    let c = wait_state(&ex, "a", &id, "c", "rejected").await?;
    assert_eq!(c["reason"], "不属于本单位职责范围");
    assert_eq!(c["role"], "cc");
    assert_eq!(wait_in_inbox(&ex, "b", &id).await?["state"], "confirmed");
    assert_eq!(wait_in_inbox(&ex, "c", &id).await?["state"], "rejected");
    Ok(())
}

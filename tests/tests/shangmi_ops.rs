//! Nothing is second-class under the 国密 profile (issue 14): the rest of the journey over TLCP
//! with SM2 certificates and signatures, SM3 digests. Recall (撤回), 补发, 催办, forward
//! (转发), the audit log offline, backup and restore, and the Python example run the same
//! bodies as the international tests (`exchange_tests::scenario`), and the international
//! profile's in this build; revocation through an SM2 CRL is below. Needs binaries built with the `shangmi` features (the harness builds them so when
//! this crate's `shangmi` feature is on).
#![cfg(feature = "shangmi")]

use anyhow::{Context, Result};
use exchange_core::{
    config::HubConfig,
    crypto::{
        Profile::{International, Shangmi},
        cert_profile,
    },
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, TestExchange,
    cli::{entry_when, send},
    eventually,
    scenario::{
        audit::{self, audit_list},
        backup, forward, python, recall,
    },
};

#[tokio::test]
async fn recall_before_and_after_signing_for_leaves_sm2_evidence_at_every_step() -> Result<()> {
    recall::recall_before_and_after_signing_for(Shangmi).await
}

#[tokio::test]
async fn added_recipients_receive_the_same_sm2_signed_document() -> Result<()> {
    recall::add_recipients(Shangmi).await
}

#[tokio::test]
async fn a_reminder_is_counted_and_flagged_under_shangmi() -> Result<()> {
    recall::remind(Shangmi).await
}

#[tokio::test]
async fn a_forward_carries_the_sm2_signed_original_verifiably() -> Result<()> {
    forward::forward_carries_the_original(Shangmi).await
}

#[tokio::test]
async fn only_a_document_in_the_inbox_can_be_forwarded_under_shangmi() -> Result<()> {
    forward::only_the_inbox_is_forwarded(Shangmi).await
}

#[tokio::test]
async fn a_tampered_sm3_audit_chain_fails_verification_naming_the_entry() -> Result<()> {
    audit::tamper_is_found(Shangmi).await
}

/// `exchange-hub audit list/verify/export` on the stopped shangmi hub's store, and the export
/// checked on its own by `exchange-certs verify-audit` (SM2 checkpoints, an SM3 chain).
#[tokio::test]
async fn audit_list_verify_and_export_work_offline_and_the_export_verifies() -> Result<()> {
    audit::offline_list_verify_export(Shangmi).await
}

/// A shangmi build serves, and its `exchange-certs verify`/`verify-audit` check, the
/// international profile too: the algorithms named in a bundle or an export decide.
#[tokio::test]
async fn a_shangmi_build_verifies_international_bundles_and_audit_exports() -> Result<()> {
    forward::forward_carries_the_original(International).await?;
    audit::offline_list_verify_export(International).await
}

#[tokio::test]
async fn a_backup_restores_every_acknowledged_document_under_shangmi() -> Result<()> {
    backup::backup_and_restore(Shangmi).await
}

#[tokio::test]
async fn the_python_example_follows_a_document_at_a_shangmi_node() -> Result<()> {
    python::submit_and_follow(Shangmi).await
}

/// d's TLCP certificate is revoked with `exchange-certs revoke` while its node is connected: the
/// CA writes an SM2 CRL, the hub reloads it without a restart, cuts d's connection, refuses every
/// new TLCP handshake with that certificate, audits both, and d's documents stay in its outbox;
/// a and b carry on.
#[tokio::test]
async fn a_revoked_department_is_cut_and_refused_through_an_sm2_crl() -> Result<()> {
    let mut ex = TestExchange::start_with_profile(&["a", "b", "d"], Shangmi).await?;
    // The demo's daemons watch the CA's CRL, an SM2 one.
    let hub: HubConfig = exchange_core::config::load(&ex.layout_dir().join("hub/hub.toml"))?;
    let crl_path = hub.tls.crl.clone().context("the hub watches a CRL")?;
    let ca_der = exchange_core::tls::ca_der(&hub.tls)?;
    assert_eq!(
        cert_profile(&ca_der).map_err(anyhow::Error::msg)?.0,
        Shangmi
    );
    assert!(
        exchange_core::tls::crl::load_crl(&crl_path, &ca_der)?
            .revoked
            .is_empty()
    );

    ex.revoke_connected_dept("d").await?;
    let crl = exchange_core::tls::crl::load_crl(&crl_path, &ca_der)?;
    assert_eq!(crl.revoked.len(), 1, "the SM2 CRL lists d");
    // A new connection with d's certificate is refused (at admission, after the TLCP
    // handshake: the first call fails), and so audited.
    let answer = match ex.hub_client_as("d").await {
        Ok(mut hub) => hub
            .list_departments(pb::ListDepartmentsRequest {})
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    assert!(answer.is_err(), "a revoked certificate was accepted");

    // d keeps working locally, but nothing it sends gets through: the hub refuses each retry.
    let refusals = |ex: &TestExchange| {
        ex.log("hub")
            .lines()
            .filter(|l| l.contains("TLS handshake refused") && l.contains("department d"))
            .count()
    };
    let before = refusals(&ex);
    let from_d = send(&ex, "d", "被吊销单位发出的公文", &["--to", "b"]).await?;
    eventually("two more of d's attempts refused", DEADLINE, || {
        let n = refusals(&ex);
        async move { Ok((n >= before + 2).then_some(())) }
    })
    .await?;
    let s = ex.cli_json("d", &["status", &from_d, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "queued", "{s}");
    // Everyone else carries on.
    let id = send(&ex, "a", "吊销之后的公文", &["--to", "b"]).await?;
    entry_when(&ex, "b", &id, "delivered", |_| true).await?;
    let at_b = ex.cli_json("b", &["inbox", "--json"]).await?;
    assert!(
        at_b.as_array()
            .is_some_and(|v| v.iter().all(|e| e["id"] != from_d.as_str())),
        "nothing from the revoked department: {at_b}"
    );

    // The audit log records the revocation taking effect and the refused handshakes.
    ex.stop_hub().await?;
    let cut = audit_list(&ex, &["--event", "certificate-revoked"]).await?;
    assert!(
        cut.iter().any(|e| e.to_string().contains("department d")),
        "the revocation is audited: {cut:#?}"
    );
    let refused = audit_list(&ex, &["--event", "handshake-refused"]).await?;
    assert!(
        refused.iter().any(|e| e["dept"] == "department d"),
        "{refused:#?}"
    );
    Ok(())
}

//! The hub's audit log: complete (every step, refusals with reasons), tamper-evident (a changed,
//! removed or swapped entry is found), and answerable while the hub runs and under load. The
//! tamper and export checks are `exchange_tests::scenario::audit`, which `tests/shangmi_ops.rs`
//! runs under the 国密 profile too.

use anyhow::Result;
use exchange_certs::{Ca, Validity};
use exchange_core::{crypto::Profile::International, document::SignedDoc, identity::Principal};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, TestExchange, eventually, forge,
    scenario::{
        self,
        audit::{assert_round_trip, audit_list, draft},
    },
    submit, tls_probe,
};

#[tokio::test]
async fn every_step_of_a_round_trip_is_in_the_log_in_order_while_the_hub_runs() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let mut api = ex.node_api("a").await?;
    let id = submit(&mut api, &draft("b", "audited")).await?;
    eventually("b has it", DEADLINE, || async {
        let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
        Ok(inbox
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(()))
    })
    .await?;
    ex.cli_ok("b", &["confirm", &id, "--clerk", "李明"]).await?;
    let entries = eventually("the confirmation in the log", DEADLINE, || async {
        let e = audit_list(&ex, &["--doc", &id]).await?;
        Ok((e.len() >= 4).then_some(e))
    })
    .await?;
    assert_round_trip(&entries, "a", "b");
    assert!(
        entries[3]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Confirmed") && d.contains("李明"))
    );
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    // A date is a day of the hub's calendar (+08:00): today holds them, tomorrow nothing.
    let beijing = exchange_core::time::now_ms() + 8 * 3_600_000;
    let day = |ms: i64| exchange_core::time::format_ms(ms)[..10].to_owned();
    let (today, tomorrow) = (day(beijing), day(beijing + 86_400_000));
    let from_today = audit_list(&ex, &["--doc", &id, "--since", &today]).await?;
    assert_eq!(from_today.len(), entries.len(), "since {today}");
    let before_today = audit_list(&ex, &["--doc", &id, "--until", &today]).await?;
    assert!(before_today.is_empty(), "until {today}: {before_today:#?}");
    assert!(
        audit_list(&ex, &["--doc", &id, "--since", &tomorrow])
            .await?
            .is_empty()
    );

    // The administrator's own questions are recorded too.
    let admin = audit_list(&ex, &["--event", "admin-action"]).await?;
    assert!(
        admin.iter().any(|e| e["dept"] == "admin:admin"),
        "{admin:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_handshake_and_a_forged_document_are_logged_with_the_reason() -> Result<()> {
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    let ca = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;
    let other = Ca::generate("Rogue CA", Validity::days_from_now(30))?;
    let forged = other.issue_tls(
        &Principal::Dept("a".parse()?),
        &[],
        &[],
        Validity::days_from_now(30),
    )?;
    let verdict = tls_probe(
        ex.hub_addr(),
        &ca,
        Some((forged.cert_pem.as_bytes(), forged.key_pem.as_bytes())),
    )
    .await?;
    assert!(verdict.is_err());

    // A header claiming sender a, signed with c's key, submitted over a's genuine connection.
    let c_key = forge::signing_key(&ex, "c")?;
    let header = forge::header("a", &["b"], "forged", vec![forge::part(b"abc")]);
    let doc = SignedDoc::seal(&header, &c_key)?;
    let mut hub = ex.hub_client_as("a").await?;
    let err = hub
        .submit(pb::SubmitRequest {
            document: Some(doc.wire),
            ..Default::default()
        })
        .await
        .expect_err("forged");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let refused = eventually("the handshake in the log", DEADLINE, || async {
        let e = audit_list(&ex, &["--event", "handshake-refused"]).await?;
        Ok((!e.is_empty()).then_some(e))
    })
    .await?;
    assert_eq!(
        refused[0]["dept"], "department a",
        "the identity it presented: {refused:#?}"
    );
    assert!(
        refused[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("UnknownCA") || d.contains("certificate")),
        "{refused:#?}"
    );
    assert!(
        refused[0]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );

    let refused = audit_list(&ex, &["--event", "document-refused", "--doc", &header.id]).await?;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["dept"], "a");
    assert!(
        refused[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("signed by department c")),
        "{refused:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_changed_removed_or_swapped_entry_fails_verification_naming_it() -> Result<()> {
    scenario::audit::tamper_is_found(International).await
}

#[tokio::test]
async fn list_verify_and_export_work_while_the_hub_runs_under_load() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let data = ex.node_data_dir("a");
    let load = tokio::spawn(async move {
        let addr = exchange_core::config::read_addr_file(&data, "api.addr")?;
        let mut api = pb::node_client::NodeClient::connect(format!("http://{addr}")).await?;
        for i in 0..150 {
            submit(&mut api, &draft("b", &format!("load {i}"))).await?;
        }
        anyhow::Ok(())
    });
    for _ in 0..3 {
        let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
        assert!(ok, "verify under load: {out}{err}");
        let entries = audit_list(&ex, &["--dept", "a", "--limit", "5"]).await?;
        assert!(entries.len() <= 5);
    }
    load.await??;
    let (ok, export, err) = ex.hub_cli(&["audit", "export"]).await?;
    assert!(ok, "{err}");
    scenario::audit::export_verifies_and_a_change_is_found(&ex, &export, "load 7").await?;
    Ok(())
}

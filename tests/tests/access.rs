//! Who may talk to the hub, and about which documents: identity comes from the certificate the
//! TLS handshake verified, and a node sees and acknowledges only its own deliveries.

use anyhow::{Context, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::{
    config::NodeConfig,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    identity::Principal,
    signing::SigningKey,
    time::now_ms,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, TestExchange, eventually, forge, random_file, scenario::audit::audit_list, tls_probe,
};
use serde_json::Value;
use tonic::{Code, Status};

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_at_the_handshake() -> Result<()> {
    let ex = TestExchange::start(&["a"]).await?;
    let ca = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;

    // A certificate naming department a, but issued by another CA.
    let other = Ca::generate("Some Other CA", Validity::days_from_now(30))?;
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
    let err = verdict.expect_err("a certificate from another CA must be refused");
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate"),
        "refused with a TLS alert: {err}"
    );

    // No client certificate at all.
    let err = tls_probe(ex.hub_addr(), &ca, None)
        .await?
        .expect_err("a client without a certificate must be refused");
    assert!(err.contains("CertificateRequired"), "{err}");

    // The genuine certificate is accepted, so the refusals above are about the certificate.
    let dir = ex.layout_dir().join("a");
    let (cert, key) = (
        std::fs::read(dir.join("tls.pem"))?,
        std::fs::read(dir.join("tls.key"))?,
    );
    tls_probe(ex.hub_addr(), &ca, Some((&cert, &key)))
        .await?
        .map_err(anyhow::Error::msg)?;
    let mut genuine = ex.hub_client_as("a").await?;
    assert!(
        genuine
            .list_departments(pb::ListDepartmentsRequest {})
            .await
            .is_ok()
    );
    Ok(())
}

#[tokio::test]
async fn a_node_cannot_fetch_or_acknowledge_another_departments_document() -> Result<()> {
    let ex = TestExchange::start(&["a", "b", "c"]).await?;
    let body = random_file(ex.root(), "secret-plan.ofd", 5000, 9)?;
    let out = ex
        .cli_ok(
            "a",
            &[
                "send",
                "--to",
                "b",
                "--title",
                "for b only",
                "--file",
                body.to_str().unwrap(),
            ],
        )
        .await?;
    let id = out.lines().last().context("no id")?.trim().to_owned();
    let status = eventually("delivery to b", DEADLINE, || async {
        let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
        Ok((s["recipients"][0]["state"] == "delivered").then_some(s))
    })
    .await?;
    assert_eq!(status["recipients"][0]["dept"], "b");

    // c, with its own genuine certificate, asks the hub for b's document content.
    let sha = exchange_core::signing::Digest::of(&std::fs::read(&body)?);
    let mut c = ex.hub_client_as("c").await?;
    let req = pb::GetBlobRequest {
        doc_id: id.clone(),
        sha256: sha.0.to_vec(),
        offset: 0,
    };
    let err = c
        .get_blob(req)
        .await
        .expect_err("c must not fetch b's document");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // c tries to confirm it: first as itself (not a recipient), then claiming to be b.
    let b_node: NodeConfig = exchange_core::config::load(ex.node_config("b"))?;
    let c_node: NodeConfig = exchange_core::config::load(ex.node_config("c"))?;
    let c_key = SigningKey::load(&c_node.signing)?;
    let b_rec_path = b_node.node.data_dir.clone();
    assert!(b_rec_path.exists());
    let doc = fetch_header(&ex, "b", &id).await?;
    for (recipient, why) in [("c", "not addressed"), ("b", "own deliveries")] {
        let mut ev = Evidence::about(
            &doc,
            EvidenceKind::Confirmed,
            Some(recipient.parse()?),
            now_ms(),
        );
        ev.clerk = "intruder".into();
        let wire = SignedEvidence::seal(ev, &c_key)?.wire;
        let err = c
            .submit_evidence(pb::SubmitEvidenceRequest {
                evidence: Some(wire),
            })
            .await
            .expect_err("must be refused");
        assert!(
            matches!(err.code(), Code::PermissionDenied),
            "{recipient}: {err:?}"
        );
        assert!(
            err.message().contains(why) || err.message().contains("signed by"),
            "{recipient}: {}",
            err.message()
        );
    }

    // Nothing changed for the sender: b's delivery is still only delivered, not confirmed.
    let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "delivered", "{s}");
    Ok(())
}

/// The signed document as b received it (via b's node API).
async fn fetch_header(ex: &TestExchange, dept: &str, id: &str) -> Result<SignedDoc> {
    let cfg: NodeConfig = exchange_core::config::load(ex.node_config(dept))?;
    let addr = exchange_core::config::read_addr_file(&cfg.node.data_dir, "api.addr")?;
    let mut client = pb::node_client::NodeClient::connect(format!("http://{addr}")).await?;
    let mut stream = client
        .fetch_document(pb::FetchDocumentRequest {
            doc_id: id.to_owned(),
            with_content: false,
        })
        .await?
        .into_inner();
    let first = stream.message().await?.context("empty fetch")?;
    let Some(pb::fetch_document_response::Msg::Document(d)) = first.msg else {
        anyhow::bail!("first message is not the document")
    };
    Ok(SignedDoc::decode(d.signed.context("no signed document")?)?)
}

#[tokio::test]
async fn a_document_dated_in_the_future_is_refused_naming_the_field_and_the_skew() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let key = forge::signing_key(&ex, "a")?;
    let mut header = forge::header("a", &["b"], "from the future", vec![forge::part(b"abc")]);
    header.created_at_ms = now_ms() + 3_600_000; // an hour ahead
    let doc = SignedDoc::seal(&header, &key)?;
    let mut hub = ex.hub_client_as("a").await?;
    let err = hub
        .submit(pb::SubmitRequest {
            document: Some(doc.wire),
            ..Default::default()
        })
        .await
        .expect_err("dated in the future");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("header.created_at_ms") && err.message().contains("600 s"),
        "{}",
        err.message()
    );
    Ok(())
}

#[tokio::test]
async fn a_departments_certificate_is_refused_by_every_admin_rpc_and_changes_nothing() -> Result<()>
{
    let ex = TestExchange::start(&["a"]).await?;
    // A department's genuine certificate, over the hub's real channel: the TLS handshake
    // succeeds, so every refusal below is the Admin service's own check of who calls.
    let mut admin = pb::admin_client::AdminClient::new(ex.hub_channel_as("a").await?);
    let before = audit_list(&ex, &[]).await?;
    let out_dir = ex.root().join("backup-by-a");
    let (old_fp, new_fp) = ("0123456789abcdef", "fedcba9876543210");
    let refusals: [(&str, Option<Status>); 6] = [
        (
            "ListAudit",
            admin
                .list_audit(pb::ListAuditRequest::default())
                .await
                .err(),
        ),
        (
            "VerifyAudit",
            admin.verify_audit(pb::VerifyAuditRequest {}).await.err(),
        ),
        (
            "ExportAudit",
            admin
                .export_audit(pb::ExportAuditRequest { since_ms: 0 })
                .await
                .err(),
        ),
        (
            "Backup",
            admin
                .backup(pb::BackupRequest {
                    out_dir: out_dir.to_str().context("utf-8 path")?.to_owned(),
                })
                .await
                .err(),
        ),
        (
            "GetStats",
            admin.get_stats(pb::GetStatsRequest::default()).await.err(),
        ),
        (
            "RecordKeyRotation",
            admin
                .record_key_rotation(pb::KeyRotation {
                    old_fingerprint: old_fp.into(),
                    new_fingerprint: new_fp.into(),
                    key_ids: vec![1],
                })
                .await
                .err(),
        ),
    ];
    for (rpc, status) in refusals {
        let status = status.with_context(|| format!("{rpc}: a department was answered"))?;
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        assert!(
            status
                .message()
                .contains("department a is not an administrator"),
            "{rpc}: {:?}",
            status.message()
        );
    }

    // Nothing was done: no backup directory, and the audit log gained only the administrator's
    // own `audit list` (a refused call is never recorded as an administrator's action).
    assert!(
        !out_dir.exists(),
        "a refused Backup wrote {}",
        out_dir.display()
    );
    let after = audit_list(&ex, &[]).await?;
    assert_eq!(after.get(..before.len()), Some(&before[..]), "{after:#?}");
    for e in &after[before.len()..] {
        assert!(
            e["kind"] == "ADMIN_ACTION"
                && e["dept"] == "admin:admin"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("audit list")),
            "a refused call left a trace: {e:#}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn evidence_dated_in_the_future_or_unset_is_refused_naming_the_field_and_changes_nothing()
-> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let id = exchange_tests::cli::send(&ex, "a", "to be signed for", &["--to", "b"]).await?;
    exchange_tests::cli::wait_state(&ex, "a", &id, "b", "delivered").await?;

    // b's own CONFIRMED, signed with b's own key, sent over b's own connection: everything is
    // genuine but the time it claims.
    let doc = fetch_header(&ex, "b", &id).await?;
    let b_key = forge::signing_key(&ex, "b")?;
    let mut b = ex.hub_client_as("b").await?;
    let confirm = |at_ms: i64| -> Result<pb::SubmitEvidenceRequest> {
        let mut ev = Evidence::about(&doc, EvidenceKind::Confirmed, Some("b".parse()?), at_ms);
        ev.clerk = "李明".into();
        Ok(pb::SubmitEvidenceRequest {
            evidence: Some(SignedEvidence::seal(ev, &b_key)?.wire),
        })
    };
    let cases = [
        ("an hour ahead", now_ms() + 3_600_000, "600 s of clock skew"),
        ("unset", 0, "must be a Unix time"),
    ];
    for (what, at_ms, why) in cases {
        let err = b.submit_evidence(confirm(at_ms)?).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message().contains("evidence.at_ms") && err.message().contains(why),
            "{what}: {:?}",
            err.message()
        );
    }

    // The hub recorded no evidence, and the sender still sees the delivery only delivered.
    let kinds: Vec<Value> = audit_list(&ex, &["--doc", &id])
        .await?
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert!(!kinds.contains(&Value::from("EVIDENCE")), "{kinds:?}");
    let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "delivered", "{s}");

    // The same statement dated now is accepted: the refusals above were about the time.
    b.submit_evidence(confirm(now_ms())?).await?;
    eventually("the confirmation at a", DEADLINE, || async {
        let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
        Ok((s["recipients"][0]["state"] == "confirmed").then_some(()))
    })
    .await?;
    Ok(())
}

//! Linked exchanges (docs/federation.md): three exchanges on loopback, each with its own CA,
//! hub and nodes, chained province ← city ← county as `exchange-certs demo-federation` lays
//! them out. A county department sends to a provincial department (主送) and a city department
//! (抄送) through the city hub; both receive it, one confirms and one rejects, and both receipts
//! come back; the bundle verifies with the three CAs. The city hub is SIGKILLed while documents
//! cross it: nothing is lost or duplicated. A hub that is not linked, a document from the
//! wrong side of a link, and a relay naming a recipient twice or too many, are refused.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use exchange_core::{config::HubConfig, document::SignedDoc, signing::SigningKey, tls};
use exchange_proto::v1::{self as pb, relay_client::RelayClient};
use exchange_tests::{
    DEADLINE, TestExchange,
    cli::{last_line, wait_in_inbox},
    eventually,
    federation::Federation,
    random_file,
};

const LAYOUT: [&str; 3] = [
    "province=office,health",
    "city=finance,education",
    "county=tax",
];

/// `tax@county`'s evidence bundle of `id`, written to `bundle` and checked offline with the CAs
/// of `exchanges`: (success, report, errors) of `exchange-certs verify`.
async fn verify_bundle(
    fed: &Federation,
    id: &str,
    bundle: &std::path::Path,
    exchanges: &[&str],
) -> Result<(bool, String, String)> {
    let path = bundle.to_str().context("utf-8")?;
    let county = fed.ex("county");
    county
        .cli_ok("tax", &["evidence", id, "--out", path])
        .await?;
    let mut args = vec!["verify".to_owned(), path.to_owned()];
    for e in exchanges {
        args.push("--ca".into());
        args.push(fed.ca(e).to_str().context("utf-8")?.to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    county.certs(&args).await
}

/// `tax@county`'s row for `recipient` in `status ID --json`, once its state is `state`.
async fn row_state(ex: &TestExchange, id: &str, recipient: &str, state: &str) -> Result<()> {
    eventually(
        &format!("{recipient}'s row of {id} at tax: {state}"),
        DEADLINE,
        || async {
            let s = ex.cli_json("tax", &["status", id, "--json"]).await?;
            Ok(s["recipients"].as_array().and_then(|rs| {
                rs.iter()
                    .find(|r| r["dept"] == recipient && r["state"] == state)
                    .map(|_| ())
            }))
        },
    )
    .await
}

#[tokio::test]
async fn a_county_document_reaches_the_province_and_the_city_and_both_receipts_come_back()
-> Result<()> {
    let fed = Federation::start(&LAYOUT).await?;
    let (county, city, province) = (fed.ex("county"), fed.ex("city"), fed.ex("province"));

    // The directory of a county node lists the departments of the linked exchanges.
    let all = county.cli_ok("tax", &["directory", "--all"]).await?;
    eventually(
        "the county's directory to list linked exchanges",
        DEADLINE,
        || async {
            let out = county.cli_ok("tax", &["directory", "--all"]).await?;
            Ok((out.contains("office@province") && out.contains("finance@city")).then_some(()))
        },
    )
    .await
    .with_context(|| format!("directory --all: {all}"))?;
    let local_only = county.cli_ok("tax", &["directory"]).await?;
    ensure!(
        !local_only.contains("@province"),
        "without --all only the county's own departments: {local_only}"
    );

    let body = random_file(county.root(), "正文.ofd", 300_000, 7)?;
    let out = county
        .cli_ok(
            "tax",
            &[
                "send",
                "--to",
                "office@province",
                "--cc",
                "finance@city",
                "--title",
                "关于报送年度税收数据的报告",
                "--file",
                body.to_str().context("utf-8")?,
            ],
        )
        .await?;
    let id = last_line(&out);
    ensure!(id.len() == 36, "send prints the id last: {out}");

    let at_office = wait_in_inbox(province, "office", &id).await?;
    let at_finance = wait_in_inbox(city, "finance", &id).await?;
    for (entry, role) in [(&at_office, "main"), (&at_finance, "cc")] {
        ensure!(entry["sender"] == "tax@county", "sender: {entry}");
        ensure!(entry["role"] == role, "role: {entry}");
    }
    // The content (300 KB: uploaded in chunks to each hub, not inline) crossed two hubs intact.
    let saved = province.root().join("saved");
    province
        .cli_ok(
            "office",
            &["show", &id, "--save", saved.to_str().context("utf-8")?],
        )
        .await?;
    ensure!(
        std::fs::read(saved.join("正文.ofd"))? == std::fs::read(&body)?,
        "the content at the province is the content sent"
    );

    province
        .cli_ok("office", &["confirm", &id, "--clerk", "王芳"])
        .await?;
    city.cli_ok(
        "finance",
        &["reject", &id, "--reason", "不属于本单位职责范围"],
    )
    .await?;
    row_state(county, &id, "office@province", "confirmed").await?;
    row_state(county, &id, "finance@city", "rejected").await?;
    let status = county.cli_ok("tax", &["status", &id]).await?;
    ensure!(
        status.contains("office@province") && status.contains("finance@city"),
        "status names both recipients: {status}"
    );

    // The sender's bundle holds every hop's signed step and verifies with the three CAs.
    let bundle = county.root().join("doc.bundle");
    let (ok, report, err) =
        verify_bundle(&fed, &id, &bundle, &["county", "city", "province"]).await?;
    ensure!(ok, "the bundle verifies with the three CAs: {report}{err}");
    for step in ["relayed", "confirmed", "rejected", "delivered"] {
        ensure!(report.contains(step), "{step} in the report:\n{report}");
    }
    ensure!(
        report.contains("hub of exchange city") && report.contains("hub of exchange province"),
        "both relaying hubs signed:\n{report}"
    );
    // With only the county's CA the foreign signatures cannot be checked.
    let (ok, _, err) = verify_bundle(&fed, &id, &bundle, &["county"]).await?;
    ensure!(!ok, "one CA is not enough: {err}");

    // Each hub's audit log records what crossed its boundary, from and to which peer.
    let (ok, audit, err) = city.hub_cli(&["audit", "export"]).await?;
    ensure!(ok, "audit export: {err}");
    let kinds = |kind: &str, peer: &str| {
        audit
            .lines()
            .any(|l| l.contains(kind) && l.contains(&id) && l.contains(peer))
    };
    ensure!(
        kinds("\"RELAYED_IN\"", "exchange:county")
            && kinds("\"RELAYED_OUT\"", "exchange:province")
            && kinds("\"EVIDENCE_IN\"", "exchange:province")
            && kinds("\"EVIDENCE_OUT\"", "exchange:county"),
        "the city's audit log records the relay both ways:\n{audit}"
    );
    let (ok, verified, err) = city.hub_cli(&["audit", "verify"]).await?;
    ensure!(ok, "the city's audit chain verifies: {verified}{err}");
    Ok(())
}

#[tokio::test]
async fn killing_the_city_hub_while_documents_cross_it_loses_and_duplicates_nothing() -> Result<()>
{
    let mut fed = Federation::start(&LAYOUT).await?;
    let mut ids = Vec::new();
    let mut kills = 0;
    for i in 0..24 {
        let body = random_file(fed.ex("county").root(), &format!("d{i}.ofd"), 3_000, i)?;
        let out = fed
            .ex("county")
            .cli_ok(
                "tax",
                &[
                    "send",
                    "--to",
                    "office@province",
                    "--cc",
                    "finance@city",
                    "--title",
                    &format!("第{i}号"),
                    "--file",
                    body.to_str().context("utf-8")?,
                ],
            )
            .await?;
        ids.push(last_line(&out));
        if i % 6 == 3 {
            let city = fed.ex_mut("city");
            let pid = city.hub_pid().context("city hub running")?;
            exchange_tests::signal(pid, "KILL")?;
            city.kill_hub().await?;
            kills += 1;
            city.start_hub().await?;
        }
    }
    ensure!(kills >= 4, "the city hub was killed {kills} times");
    for (exchange, dept) in [("province", "office"), ("city", "finance")] {
        let ex = fed.ex(exchange);
        let inbox = eventually(
            &format!("all {} documents at {dept}", ids.len()),
            DEADLINE * 2,
            || async {
                let v = ex.cli_json(dept, &["inbox", "--json"]).await?;
                let entries = v.as_array().cloned().unwrap_or_default();
                Ok((entries.len() >= ids.len()).then_some(entries))
            },
        )
        .await?;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for e in &inbox {
            *seen
                .entry(e["id"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        ensure!(
            inbox.len() == ids.len(),
            "{dept} holds each document once: {} entries for {} documents",
            inbox.len(),
            ids.len()
        );
        for id in &ids {
            ensure!(seen.get(id) == Some(&1), "{id} at {dept} exactly once");
        }
    }
    // Every delivery receipt came back to the county across the city.
    for id in &ids {
        row_state(fed.ex("county"), id, "office@province", "delivered").await?;
        row_state(fed.ex("county"), id, "finance@city", "delivered").await?;
    }
    Ok(())
}

/// A client of `target`'s relay service presenting `who`'s hub certificate, trusting
/// `target`'s CA.
async fn relay_client_as(
    fed: &Federation,
    who: &HubConfig,
    target: &str,
) -> Result<RelayClient<tonic::transport::Channel>> {
    let target_cfg = fed.hub_config(target)?;
    let ca_der = tls::read_pem_file(fed.ca(target), "CERTIFICATE")?;
    let addr = target_cfg.hub.peer_listen.context("peer_listen")?;
    let channel = tls::peer_endpoint(addr, &who.tls, ca_der, None, "localhost")?
        .connect()
        .await?;
    Ok(RelayClient::new(channel))
}

#[tokio::test]
async fn a_hub_that_is_not_linked_and_a_document_from_the_wrong_side_are_refused() -> Result<()> {
    let fed = Federation::start(&LAYOUT).await?;
    // A hub of an exchange nobody linked (its own CA) cannot even complete the handshake.
    let mut rogue = TestExchange::setup(&["x"])?;
    let rogue_cfg: HubConfig =
        exchange_core::config::load(&rogue.layout_dir().join("hub/hub.toml"))?;
    let refused = relay_client_as(&fed, &rogue_cfg, "city").await;
    let refused = match refused {
        Err(e) => e.to_string(),
        Ok(mut c) => c
            .directory(pb::DirectoryRequest {})
            .await
            .err()
            .map(|s| s.to_string())
            .context("an unlinked hub was answered")?,
    };
    ensure!(!refused.is_empty(), "unlinked hub refused: {refused}");

    // The county is linked to the city, but only for documents from its side: one claiming to
    // come from the province is refused, whoever signed it.
    let county_cfg = fed.hub_config("county")?;
    let mut client = relay_client_as(&fed, &county_cfg, "city").await?;
    let tax = fed.node_config_loaded("county", "tax")?;
    let key = SigningKey::load(&tax.signing)?;
    let header = exchange_tests::forge::header(
        "office",
        &["finance@city"],
        "冒名文件",
        vec![exchange_tests::forge::part(b"x")],
    );
    let forged = SignedDoc::seal(&header, &key)?;
    let wrong_side = client
        .relay(pb::RelayRequest {
            document: Some(forged.wire.clone()),
            origin_exchange: "province".into(),
            via: vec!["province".into(), "county".into()],
            recipients: vec!["finance@city".into()],
            ..Default::default()
        })
        .await
        .expect_err("a document from the wrong side is refused");
    ensure!(
        wrong_side.code() == tonic::Code::PermissionDenied
            && wrong_side
                .message()
                .contains("not on the side of peer county"),
        "{wrong_side:?}"
    );
    // From its own side, but not signed by the sender it names: refused too.
    let not_signed = client
        .relay(pb::RelayRequest {
            document: Some(forged.wire),
            origin_exchange: "county".into(),
            via: vec!["county".into()],
            recipients: vec!["finance@city".into()],
            ..Default::default()
        })
        .await
        .expect_err("a document its sender did not sign is refused");
    ensure!(
        not_signed.code() == tonic::Code::PermissionDenied,
        "{not_signed:?}"
    );
    // Neither reached the city's inbox.
    let inbox = fed
        .ex("city")
        .cli_json("finance", &["inbox", "--json"])
        .await?;
    ensure!(
        inbox.as_array().is_some_and(Vec::is_empty),
        "nothing delivered: {inbox}"
    );

    // A hub whose certificate cannot authenticate a client cannot link: check-config says how
    // to reissue it.
    let own_ca = rogue.layout_dir().join("ca").join("ca.pem");
    rogue.edit_hub_config(|c| {
        c.hub.exchange = Some("rogue".parse().expect("name"));
        c.hub.peer_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.peers.push(exchange_core::config::PeerEntry {
            name: "city".parse().expect("name"),
            address: "127.0.0.1:1".parse().expect("addr"),
            server_name: "localhost".into(),
            ca: own_ca,
            routes: Vec::new(),
            crl: None,
        });
    })?;
    let (ok, _, err) = rogue.hub_cli(&["check-config"]).await?;
    ensure!(
        !ok && err.contains("issue-hub --linked"),
        "a server-only hub certificate cannot link: {err}"
    );
    Ok(())
}

/// A relay of a document `tax@county` signed for `finance@city`, with the county hub's signed
/// ACCEPTED: everything a valid `Relay` from the county needs but the recipients.
fn county_relay(fed: &Federation, county: &HubConfig) -> Result<pb::RelayRequest> {
    use exchange_core::document::{Evidence, EvidenceKind, SignedEvidence};
    let tax = fed.node_config_loaded("county", "tax")?;
    let body = b"x";
    let header = exchange_tests::forge::header(
        "tax",
        &["finance@city"],
        "重复收文",
        vec![exchange_tests::forge::part(body)],
    );
    let doc = SignedDoc::seal(&header, &SigningKey::load(&tax.signing)?)?;
    let at = exchange_core::time::now_ms();
    let accepted = Evidence::about(&doc, EvidenceKind::Accepted, None, at);
    let accepted = SignedEvidence::seal(accepted, &SigningKey::load(&county.signing)?)?;
    Ok(pb::RelayRequest {
        document: Some(doc.wire),
        origin_exchange: "county".into(),
        via: vec!["county".into()],
        acceptance: Some(accepted.wire),
        recipients: vec!["finance@city".into()],
        content: vec![pb::InlineContent {
            sha256: exchange_core::signing::Digest::of(body).0.to_vec(),
            data: body.to_vec(),
        }],
        additions: Vec::new(),
    })
}

#[tokio::test]
async fn a_relay_naming_a_recipient_twice_or_too_many_recipients_is_refused() -> Result<()> {
    let fed = Federation::start(&LAYOUT).await?;
    let county_cfg = fed.hub_config("county")?;
    let mut client = relay_client_as(&fed, &county_cfg, "city").await?;
    let valid = county_relay(&fed, &county_cfg)?;
    let id = header_id(&valid)?;

    // One department named twice: refused before anything is stored or signed.
    let mut twice = valid.clone();
    twice.recipients = vec!["finance@city".into(), "finance@city".into()];
    let refused = client
        .relay(twice)
        .await
        .expect_err("a recipient named twice is refused");
    ensure!(
        refused.code() == tonic::Code::InvalidArgument
            && refused
                .message()
                .contains("recipients: finance@city is named twice"),
        "{refused:?}"
    );
    // More recipients than one document may have (5,000), all distinct.
    let mut many = valid.clone();
    many.recipients = (0..=5000).map(|i| format!("d{i}@city")).collect();
    let refused = client
        .relay(many)
        .await
        .expect_err("too many recipients are refused");
    ensure!(
        refused.code() == tonic::Code::InvalidArgument
            && refused
                .message()
                .contains("recipients: 5001, at most 5000 allowed"),
        "{refused:?}"
    );

    // Neither was taken: the city's audit log has both refusals and no custody or delivery.
    let city = fed.ex("city");
    let (ok, audit, err) = city.hub_cli(&["audit", "export"]).await?;
    ensure!(ok, "audit export: {err}");
    let of_doc = |kind: &str| {
        audit
            .lines()
            .filter(|l| l.contains(kind) && l.contains(&id))
            .count()
    };
    ensure!(
        of_doc("\"RELAY_REFUSED\"") == 2
            && of_doc("\"RELAYED_IN\"") == 0
            && of_doc("\"QUEUED\"") == 0,
        "both refused, nothing queued:\n{audit}"
    );

    // The same relay naming finance once is taken, and finance receives the document once.
    let relayed = client.relay(valid).await?.into_inner();
    ensure!(relayed.relayed.is_some(), "the city signs its RELAYED");
    wait_in_inbox(city, "finance", &id).await?;
    let inbox = city.cli_json("finance", &["inbox", "--json"]).await?;
    let copies = inbox
        .as_array()
        .map_or(0, |es| es.iter().filter(|e| e["id"] == id.as_str()).count());
    ensure!(copies == 1, "finance receives it once: {inbox}");
    Ok(())
}

/// The id of the document a relay request carries.
fn header_id(req: &pb::RelayRequest) -> Result<String> {
    let wire = req.document.clone().context("document")?;
    Ok(SignedDoc::decode(wire)?.header.id.to_string())
}

#[tokio::test]
async fn a_peer_hub_whose_certificate_is_revoked_is_cut() -> Result<()> {
    let mut fed = Federation::start(&LAYOUT).await?;
    let (county, city) = (fed.ex("county"), fed.ex("city"));
    // Before: a county document reaches the city.
    let before =
        exchange_tests::cli::send(county, "tax", "撤销前", &["--to", "finance@city"]).await?;
    wait_in_inbox(city, "finance", &before).await?;
    // The county's CA revokes its own hub's TLS certificate; the city watches that CRL
    // (`[[peers]] crl`) and refuses the county's hub from its next call on, on the connection
    // already open.
    county.revoke_tls("hub", "key-compromise").await?;
    let after =
        exchange_tests::cli::send(county, "tax", "撤销后", &["--to", "finance@city"]).await?;
    city.wait_logged("hub", "the certificate of exchange county's hub is revoked")
        .await?;
    let inbox = city.cli_json("finance", &["inbox", "--json"]).await?;
    let ids: Vec<&str> = inbox
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["id"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        ids.contains(&before.as_str()) && !ids.contains(&after.as_str()),
        "nothing crosses from a revoked peer: {ids:?}"
    );
    // The document stays queued at the county (nothing is lost): accepted, not delivered.
    ensure_queued(county, "tax", &after).await?;
    // The city's own client checks the same list: at its next handshake with the county's hub
    // (after a restart; a connection already open stays, as a node's to its hub), the revoked
    // server certificate is refused, and a city document for the county stays queued at the city.
    fed.restart_hub_with("city", |_| {}).await?;
    let city = fed.ex("city");
    let back =
        exchange_tests::cli::send(city, "finance", "撤销后回文", &["--to", "tax@county"]).await?;
    city.wait_logged("hub", "peer hub not reached").await?;
    let log = city.log("hub");
    let refused = log
        .lines()
        .find(|l| l.contains("peer hub not reached"))
        .unwrap_or_default();
    ensure!(
        refused.contains("Revoked"),
        "the city hub names the revocation: {refused}"
    );
    ensure_queued(city, "finance", &back).await?;
    Ok(())
}

/// That `sender`'s document `id` (to one recipient) is still queued at its hub: accepted, not
/// delivered.
async fn ensure_queued(ex: &TestExchange, sender: &str, id: &str) -> Result<()> {
    let status = ex.cli_json(sender, &["status", id, "--json"]).await?;
    ensure!(
        status["recipients"][0]["state"] == "accepted",
        "{id} queued at {sender}'s hub: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn a_reminder_and_a_recall_cross_the_hubs_to_the_recipients() -> Result<()> {
    let fed = Federation::start(&LAYOUT).await?;
    let (county, city, province) = (fed.ex("county"), fed.ex("city"), fed.ex("province"));
    let id = exchange_tests::cli::send(
        county,
        "tax",
        "关于召开年度工作会议的通知",
        &["--to", "office@province", "--cc", "finance@city"],
    )
    .await?;
    wait_in_inbox(province, "office", &id).await?;
    wait_in_inbox(city, "finance", &id).await?;
    row_state(county, &id, "office@province", "delivered").await?;

    // 催办 to a provincial department, through the city hub.
    county
        .cli_ok(
            "tax",
            &[
                "remind",
                &id,
                "--to",
                "office@province",
                "--note",
                "请尽快签收",
            ],
        )
        .await?;
    let reminded = exchange_tests::cli::entry_when(province, "office", &id, "reminded", |e| {
        e["reminders"] == 1
    })
    .await?;
    ensure!(reminded["sender"] == "tax@county", "{reminded}");

    // finance signs for it; then the sender recalls it (撤回): office (unsigned) has it taken
    // back, finance (signed) must acknowledge, and each one's signed step comes back.
    city.cli_ok("finance", &["confirm", &id, "--clerk", "王芳"])
        .await?;
    row_state(county, &id, "finance@city", "confirmed").await?;
    county
        .cli_ok("tax", &["recall", &id, "--reason", "会议改期"])
        .await?;
    exchange_tests::cli::entry_when(province, "office", &id, "recalled", |e| {
        e["state"] == "recalled"
    })
    .await?;
    row_state(county, &id, "office@province", "recalled").await?;
    exchange_tests::cli::entry_when(city, "finance", &id, "recall pending", |e| {
        e["state"] == "recall-pending"
    })
    .await?;
    city.cli_ok("finance", &["ack-recall", &id, "--clerk", "王芳"])
        .await?;
    row_state(county, &id, "finance@city", "recall-acknowledged").await?;
    // The recall can no longer be signed for at the province.
    let (ok, _, err) = province.cli("office", &["confirm", &id]).await?;
    ensure!(!ok && err.contains("recalled"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_peer_over_its_limits_is_slowed_down_and_loses_nothing() -> Result<()> {
    let mut fed = Federation::start(&LAYOUT).await?;
    // The city lets each peer hub make one call a second.
    fed.restart_hub_with("city", |c| {
        c.peer_limits.requests_per_second = 1;
        c.peer_limits.burst_requests = 1;
    })
    .await?;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            exchange_tests::cli::send(
                fed.ex("county"),
                "tax",
                &format!("限速{i}"),
                &["--to", "finance@city"],
            )
            .await?,
        );
    }
    let city = fed.ex("city");
    city.wait_logged(
        "hub",
        "rate limit: the hub of exchange county is over [peer_limits] requests_per_second = 1",
    )
    .await?;
    // Refused calls are retried by the county's hub: every document arrives, once.
    for id in &ids {
        wait_in_inbox(city, "finance", id).await?;
    }
    let inbox = city.cli_json("finance", &["inbox", "--json"]).await?;
    ensure!(
        inbox.as_array().map(Vec::len) == Some(ids.len()),
        "each document once: {inbox}"
    );
    Ok(())
}

/// Each linked exchange's hub holds at most `[peer_limits] connections_per_principal`
/// connections to a hub's `peer_listen`, counted by exchange (every peer's hub is the same
/// principal): one more is dropped after its handshake and logged naming the limit, and the
/// documents keep crossing on the connection the peer has.
#[tokio::test]
async fn a_peer_hub_over_its_connection_limit_is_refused_naming_the_limit() -> Result<()> {
    let mut fed = Federation::start(&LAYOUT).await?;
    fed.restart_hub_with("city", |c| c.peer_limits.connections_per_principal = 1)
        .await?;
    let (county, city) = (fed.ex("county"), fed.ex("city"));
    let first =
        exchange_tests::cli::send(county, "tax", "连接一", &["--to", "finance@city"]).await?;
    wait_in_inbox(city, "finance", &first).await?;
    // The county's hub holds its connection; a second one with its certificate is refused.
    let county_cfg = fed.hub_config("county")?;
    let extra = async {
        let mut c = relay_client_as(&fed, &county_cfg, "city").await?;
        c.directory(pb::DirectoryRequest {}).await?;
        anyhow::Ok(())
    }
    .await;
    ensure!(
        extra.is_err(),
        "a second connection of the county's hub was served"
    );
    city.wait_logged(
        "hub",
        "the hub of exchange county already holds 1 connections \
         (peer_limits.connections_per_principal = 1)",
    )
    .await?;
    let second =
        exchange_tests::cli::send(county, "tax", "连接二", &["--to", "finance@city"]).await?;
    wait_in_inbox(city, "finance", &second).await?;
    Ok(())
}

#[tokio::test]
async fn a_recipient_of_another_exchange_added_later_receives_the_same_signed_document()
-> Result<()> {
    let fed = Federation::start(&LAYOUT).await?;
    let (county, city, province) = (fed.ex("county"), fed.ex("city"), fed.ex("province"));
    let id = exchange_tests::cli::send(
        county,
        "tax",
        "关于补报材料的通知",
        &["--to", "finance@city"],
    )
    .await?;
    wait_in_inbox(city, "finance", &id).await?;
    row_state(county, &id, "finance@city", "delivered").await?;
    // 补发 to a provincial department, and to a second city department, both through the
    // city hub, which already holds the document.
    county
        .cli_ok(
            "tax",
            &[
                "add-recipients",
                &id,
                "--to",
                "office@province",
                "--cc",
                "education@city",
            ],
        )
        .await?;
    let at_office = wait_in_inbox(province, "office", &id).await?;
    ensure!(at_office["role"] == "main", "{at_office}");
    let at_education = wait_in_inbox(city, "education", &id).await?;
    ensure!(at_education["role"] == "cc", "{at_education}");
    province
        .cli_ok("office", &["confirm", &id, "--clerk", "李明"])
        .await?;
    row_state(county, &id, "office@province", "confirmed").await?;
    row_state(county, &id, "education@city", "delivered").await?;
    // finance was not sent it twice.
    let inbox = city.cli_json("finance", &["inbox", "--json"]).await?;
    ensure!(inbox.as_array().map(Vec::len) == Some(1), "{inbox}");
    Ok(())
}

#[tokio::test]
async fn a_group_may_hold_departments_of_linked_exchanges() -> Result<()> {
    let mut fed = Federation::start(&LAYOUT).await?;
    fed.restart_hub_with("county", |c| {
        c.groups.push(exchange_core::config::GroupEntry {
            id: "up".parse().expect("id"),
            name: "省市有关部门".into(),
            members: vec![
                "office@province".parse().expect("addr"),
                "finance@city".parse().expect("addr"),
            ],
        });
    })
    .await?;
    let county = fed.ex("county");
    eventually("tax to learn the group", DEADLINE, || async {
        let out = county.cli_ok("tax", &["directory"]).await?;
        Ok(out.contains("group:up").then_some(()))
    })
    .await?;
    let id = exchange_tests::cli::send(county, "tax", "通知", &["--to", "group:up"]).await?;
    wait_in_inbox(fed.ex("province"), "office", &id).await?;
    wait_in_inbox(fed.ex("city"), "finance", &id).await?;
    Ok(())
}

#[tokio::test]
async fn a_document_stuck_at_a_relaying_hub_expires_and_the_sender_is_told() -> Result<()> {
    let mut fed = Federation::start(&LAYOUT).await?;
    // The province's hub is down; the city gives up on what it cannot hand over within 2 s.
    fed.ex_mut("province").kill_hub().await?;
    fed.restart_hub_with("city", |c| c.hub.expire_undelivered_after_secs = 2)
        .await?;
    let county = fed.ex("county");
    let id = exchange_tests::cli::send(county, "tax", "过期", &["--to", "office@province"]).await?;
    let row = eventually("office@province not delivered at tax", DEADLINE, || async {
        let s = county.cli_json("tax", &["status", &id, "--json"]).await?;
        Ok(s["recipients"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["state"] == "not-delivered").cloned()))
    })
    .await?;
    ensure!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("expired: not handed to exchange province's hub")),
        "{row}"
    );
    // The city hub signed it as the custodian; the bundle verifies with the three CAs.
    let bundle = county.root().join("expired.bundle");
    let (ok, report, err) =
        verify_bundle(&fed, &id, &bundle, &["county", "city", "province"]).await?;
    ensure!(
        ok && report.contains("not-delivered") && report.contains("hub of exchange city"),
        "{report}{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_document_for_an_unknown_department_of_another_exchange_bounces_with_evidence()
-> Result<()> {
    let fed = Federation::start(&LAYOUT).await?;
    let county = fed.ex("county");
    // The county cannot know the province's directory for sure: it accepts and relays; the
    // province refuses; the city, which holds custody, bounces it with its signed NOT_DELIVERED.
    let id = exchange_tests::cli::send(
        county,
        "tax",
        "查无此部门",
        &["--to", "nobody@province", "--cc", "finance@city"],
    )
    .await?;
    let row = eventually("nobody@province not delivered at tax", DEADLINE, || async {
        let s = county.cli_json("tax", &["status", &id, "--json"]).await?;
        Ok(s["recipients"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["dept"] == "nobody@province").cloned())
            .filter(|r| r["state"] == "not-delivered"))
    })
    .await?;
    let reason = row["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("refused by exchange province's hub") && reason.contains("nobody"),
        "{row}"
    );
    // The other recipient is not held up by it.
    wait_in_inbox(fed.ex("city"), "finance", &id).await?;
    Ok(())
}

//! The security suite: every bad input gets the exact refusal (status code, and a message that
//! names the field or limit), over real mutual TLS against the real binaries, and changes
//! nothing: the recipients' inboxes, the sender's timeline and the hub's stored content are the
//! same after each refusal, and a genuine document sent afterwards is the only one delivered.
//!
//! Fetching or acknowledging another department's document is in `access.rs`.

use std::time::Duration;

use anyhow::{Context as _, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::{
    config::{DeptPattern, RoutingRule},
    identity::Principal,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, TestExchange, eventually, forge, random_file, tls_probe, tls_probe_versions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "security/cases.rs"]
mod cases;

use cases::{CASES, run};

/// What must not change when something is refused.
#[derive(Debug, PartialEq)]
struct Snapshot {
    inboxes: Vec<serde_json::Value>,
    sender_status: serde_json::Value,
    hub_blobs: std::collections::BTreeSet<String>,
}

async fn snapshot(ex: &TestExchange, baseline: &str) -> Result<Snapshot> {
    let mut inboxes = Vec::new();
    for d in ["b", "c"] {
        inboxes.push(ex.cli_json(d, &["inbox", "--json"]).await?);
    }
    Ok(Snapshot {
        inboxes,
        sender_status: ex.cli_json("a", &["status", baseline, "--json"]).await?,
        hub_blobs: forge::hub_blobs(&ex.hub_data_dir()),
    })
}

#[tokio::test]
async fn every_bad_input_is_refused_clearly_and_changes_nothing() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b", "c", "d"])?;
    ex.edit_hub_config(|c| {
        c.limits.idle_stream_secs = 2;
        let p = |s: &str| DeptPattern::try_from(s.to_owned()).expect("pattern");
        c.routing.rules = vec![RoutingRule {
            from: p("c"),
            to: vec![p("a")],
        }];
    })?;
    ex.start_hub().await?;
    for d in ["a", "b", "c", "d"] {
        ex.start_node(d).await?;
    }
    // A genuine document to b, delivered: the state every refusal must leave alone.
    let body = random_file(ex.root(), "baseline.txt", 3000, 1)?;
    let baseline = send(&ex, "a", "b", "baseline", body.to_str().context("path")?).await?;
    eventually("the baseline delivered", DEADLINE, || async {
        let s = ex.cli_json("a", &["status", &baseline, "--json"]).await?;
        Ok((s["recipients"][0]["state"] == "delivered").then_some(()))
    })
    .await?;
    let uploaded = forge::part(&std::fs::read(&body)?);

    for (case, code, names) in CASES {
        let before = snapshot(&ex, &baseline).await?;
        let status = run(&ex, *case, &uploaded).await?;
        assert_eq!(status.code(), *code, "{case:?}: {status:?}");
        assert!(
            status.message().contains(names),
            "{case:?}: {:?}",
            status.message()
        );
        assert_eq!(
            snapshot(&ex, &baseline).await?,
            before,
            "{case:?} changed a store"
        );
    }

    handshake_refusals(&ex, &baseline).await?;
    revoked_while_connected(&ex, &baseline).await?;

    // Nothing refused was queued: a genuine document sent now is the only new one b receives.
    let last = send(
        &ex,
        "a",
        "b",
        "after the refusals",
        body.to_str().context("path")?,
    )
    .await?;
    let inbox = eventually("the last document at b", DEADLINE, || async {
        let inbox = ex.cli_json("b", &["inbox", "--json"]).await?;
        let n = inbox.as_array().map_or(0, Vec::len);
        Ok((n >= 2).then_some(inbox))
    })
    .await?;
    let ids: Vec<&str> = inbox
        .as_array()
        .context("inbox")?
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{inbox}");
    assert!(
        ids.contains(&baseline.as_str()) && ids.contains(&last.as_str()),
        "{inbox}"
    );
    Ok(())
}

async fn send(ex: &TestExchange, from: &str, to: &str, title: &str, file: &str) -> Result<String> {
    let out = ex
        .cli_ok(
            from,
            &["send", "--to", to, "--title", title, "--file", file],
        )
        .await?;
    Ok(out.lines().last().context("no id")?.trim().to_owned())
}

/// Handshakes the hub refuses: no certificate, another CA, an expired or not yet valid one, a
/// document-signing certificate used for TLS, a genuine certificate offered over TLS 1.2 only,
/// and bytes that are not TLS at all. The hub keeps serving, and nothing changes.
async fn handshake_refusals(ex: &TestExchange, baseline: &str) -> Result<()> {
    let before = snapshot(ex, baseline).await?;
    let ca_pem = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;
    let ca = Ca::load(&ex.layout_dir().join("ca"))?;
    let a = Principal::Dept("a".parse()?);
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let expired = ca.issue_tls(
        &a,
        &[],
        &[],
        Validity {
            not_before: now - 10 * day,
            not_after: now - day,
        },
    )?;
    let early = ca.issue_tls(
        &a,
        &[],
        &[],
        Validity {
            not_before: now + day,
            not_after: now + 10 * day,
        },
    )?;
    let other = Ca::generate("Another CA", Validity::days_from_now(1))?;
    let stranger = other.issue_tls(&a, &[], &[], Validity::days_from_now(1))?;
    let signing = ca.issue_signing(&a, Validity::days_from_now(1))?;
    let cases = [
        ("no client certificate", None, "CertificateRequired"),
        ("another CA", Some(&stranger), "UnknownCA"),
        ("expired", Some(&expired), "CertificateExpired"),
        // TLS has one alert for both; the hub's log tells them apart (checked below).
        ("not yet valid", Some(&early), "CertificateExpired"),
        (
            "a document-signing certificate",
            Some(&signing),
            "UnsupportedCertificate",
        ),
    ];
    for (what, id, alert) in cases {
        let client = id.map(|i| (i.cert_pem.as_bytes(), i.key_pem.as_bytes()));
        let verdict = tls_probe(ex.hub_addr(), &ca_pem, client).await?;
        let err = verdict.err().with_context(|| format!("{what}: accepted"))?;
        assert!(err.contains(alert), "{what}: {err}");
    }
    // A's genuine certificate, but a client that offers only TLS 1.2: the hub speaks TLS 1.3
    // alone, and must not fall back to an older protocol for anyone.
    let a_dir = ex.layout_dir().join("a");
    let (a_cert, a_key) = (
        std::fs::read(a_dir.join("tls.pem"))?,
        std::fs::read(a_dir.join("tls.key"))?,
    );
    let verdict = tls_probe_versions(
        ex.hub_addr(),
        &ca_pem,
        Some((&a_cert, &a_key)),
        &[&rustls::version::TLS12],
    )
    .await?;
    let err = verdict.err().context("TLS 1.2 only: accepted")?;
    assert!(err.contains("ProtocolVersion"), "TLS 1.2 only: {err}");
    // The same certificate over TLS 1.3 is accepted: the refusal above is about the protocol.
    tls_probe(ex.hub_addr(), &ca_pem, Some((&a_cert, &a_key)))
        .await?
        .map_err(anyhow::Error::msg)
        .context("a's certificate over TLS 1.3")?;
    let log = ex.log("hub");
    for reason in [
        "certificate expired",
        "certificate not valid yet",
        "UnknownIssuer",
    ] {
        assert!(
            log.contains(reason),
            "the hub logs why it refused: {reason}"
        );
    }
    let mut raw = tokio::net::TcpStream::connect(ex.hub_addr()).await?;
    let mut junk = vec![0u8; 4096];
    fastrand::fill(&mut junk);
    raw.write_all(&junk).await?;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), raw.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the hub must close a connection that does not speak TLS"
    );
    let mut a = ex.hub_client_as("a").await?;
    a.list_departments(pb::ListDepartmentsRequest {}).await?;
    assert_eq!(
        snapshot(ex, baseline).await?,
        before,
        "a refused handshake changed a store"
    );
    Ok(())
}

/// d's TLS certificate is revoked while its node is connected: without a restart, the hub cuts
/// d's connection, refuses every new handshake with that certificate, and d's documents stay in
/// its outbox; everyone else is unaffected.
async fn revoked_while_connected(ex: &TestExchange, baseline: &str) -> Result<()> {
    let before = snapshot(ex, baseline).await?;
    let d_cert = ex.layout_dir().join("d/tls.pem");
    let ca_dir = ex.layout_dir().join("ca");
    ex.revoke_connected_dept("d").await?;
    let ca_pem = std::fs::read(ca_dir.join("ca.pem"))?;
    let d_key = std::fs::read(ex.layout_dir().join("d/tls.key"))?;
    let verdict = tls_probe(
        ex.hub_addr(),
        &ca_pem,
        Some((&std::fs::read(&d_cert)?, &d_key)),
    )
    .await?;
    let err = verdict
        .err()
        .context("a revoked certificate was accepted")?;
    assert!(err.contains("CertificateRevoked"), "{err}");
    // The audit log records the revocation taking effect, and whose connection it cut.
    let (ok, out, err) = ex
        .hub_cli(&["audit", "list", "--event", "certificate-revoked", "--json"])
        .await?;
    assert!(ok, "{err}");
    assert!(
        out.contains("department d"),
        "the revocation is audited: {out}"
    );

    // d keeps working locally, but nothing it sends gets through: the hub refuses d's handshake
    // again and again while d retries, and the document stays queued.
    let before_send = refused_handshakes_of(ex, "department d").await?;
    let file = random_file(ex.root(), "from-d.txt", 100, 4)?;
    let id = send(
        ex,
        "d",
        "b",
        "from a revoked department",
        file.to_str().context("path")?,
    )
    .await?;
    eventually("three more of d's attempts refused", DEADLINE, || async {
        let n = refused_handshakes_of(ex, "department d").await?;
        Ok((n >= before_send + 3).then_some(()))
    })
    .await?;
    let s = ex.cli_json("d", &["status", &id, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "queued", "{s}");
    assert_eq!(
        snapshot(ex, baseline).await?,
        before,
        "a revoked department changed a store"
    );
    Ok(())
}

/// How many TLS handshakes presenting `who`'s certificate the hub has refused (its audit log).
async fn refused_handshakes_of(ex: &TestExchange, who: &str) -> Result<usize> {
    let (ok, out, err) = ex
        .hub_cli(&["audit", "list", "--event", "handshake-refused", "--json"])
        .await?;
    anyhow::ensure!(ok, "audit list: {err}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(entries.iter().filter(|e| e["dept"] == who).count())
}

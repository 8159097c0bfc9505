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
    signing::Digest,
};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, Draft, TestExchange, eventually,
    forge::{self, Hub},
    random_file, tls_probe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// One refused call: what is sent, and the refusal it must get.
#[derive(Debug, Clone, Copy)]
enum Case {
    SenderIsAnotherDepartment,
    ForgedSignature,
    NoSignature,
    ContentNotMatchingItsDigest,
    StreamBeyondItsDeclaredSize,
    UnknownRecipient,
    OversizeDocument,
    OversizeBlob,
    TooManyRecipients,
    OverLongTitle,
    RoutingPolicyViolation,
    IdleStream,
    ClumsySystemOverLongTitle,
}

const CASES: &[(Case, Code, &str)] = &[
    (
        Case::SenderIsAnotherDepartment,
        Code::PermissionDenied,
        "header.sender is c, but the caller is a",
    ),
    (
        Case::ForgedSignature,
        Code::PermissionDenied,
        "signature does not match the signed bytes",
    ),
    (
        Case::NoSignature,
        Code::InvalidArgument,
        "signature: missing",
    ),
    (
        Case::ContentNotMatchingItsDigest,
        Code::InvalidArgument,
        "content does not match its digest",
    ),
    (
        Case::StreamBeyondItsDeclaredSize,
        Code::InvalidArgument,
        "more than the declared 10 bytes",
    ),
    (
        Case::UnknownRecipient,
        Code::InvalidArgument,
        "metadata.to_depts: unknown department(s) nowhere",
    ),
    (
        Case::OversizeDocument,
        Code::InvalidArgument,
        "header.parts: 536870913 bytes in all, the hub's limit is 536870912",
    ),
    (
        Case::OversizeBlob,
        Code::InvalidArgument,
        "size: 536870913 bytes, the hub's limit is 536870912",
    ),
    (
        Case::TooManyRecipients,
        Code::InvalidArgument,
        "metadata.to_depts: 5001 recipients, at most 5000 allowed",
    ),
    (
        Case::OverLongTitle,
        Code::InvalidArgument,
        "metadata.title: 501 characters, at most 500 allowed",
    ),
    (
        Case::RoutingPolicyViolation,
        Code::PermissionDenied,
        "does not allow c to send to b",
    ),
    (
        Case::IdleStream,
        Code::DeadlineExceeded,
        "idle for 2 s ([limits] idle_stream_secs)",
    ),
    (
        Case::ClumsySystemOverLongTitle,
        Code::InvalidArgument,
        "metadata.title: 501 characters, at most 500 allowed",
    ),
];

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

/// Sends `case` and returns the refusal.
async fn run(ex: &TestExchange, case: Case, uploaded: &pb::Part) -> Result<tonic::Status> {
    let mut a: Hub = ex.hub_client_as("a").await?;
    let a_key = forge::signing_key(ex, "a")?;
    let doc = |to: &[&str], title: &str| forge::header("a", to, title, vec![uploaded.clone()]);
    let refused = match case {
        Case::SenderIsAnotherDepartment => {
            let c_key = forge::signing_key(ex, "c")?;
            let h = forge::header("c", &["b"], "claims to be from c", vec![uploaded.clone()]);
            forge::submit(&mut a, forge::sign(&h, &c_key)).await.err()
        }
        Case::ForgedSignature => {
            let mut signed = forge::sign(&doc(&["b"], "tampered"), &a_key);
            if let Some(sig) = signed.signature.as_mut() {
                sig.value[0] ^= 1;
            }
            forge::submit(&mut a, signed).await.err()
        }
        Case::NoSignature => {
            let mut signed = forge::sign(&doc(&["b"], "unsigned"), &a_key);
            signed.signature = None;
            forge::submit(&mut a, signed).await.err()
        }
        Case::ContentNotMatchingItsDigest => {
            let claimed = Digest::of(b"what the manifest promises");
            forge::put_blob(
                &mut a,
                claimed,
                26,
                vec![b"something else, 26 bytes!!".to_vec()],
            )
            .await
            .err()
        }
        Case::StreamBeyondItsDeclaredSize => {
            let data = vec![7u8; 20];
            forge::put_blob(&mut a, Digest::of(&data), 10, vec![data])
                .await
                .err()
        }
        Case::UnknownRecipient => forge::submit(
            &mut a,
            forge::sign(&doc(&["b", "nowhere"], "to no one"), &a_key),
        )
        .await
        .err(),
        Case::OversizeDocument => {
            let mut big = uploaded.clone();
            big.size = 512 * 1024 * 1024 + 1;
            let h = forge::header("a", &["b"], "too big", vec![big]);
            forge::submit(&mut a, forge::sign(&h, &a_key)).await.err()
        }
        Case::OversizeBlob => {
            let size = 512 * 1024 * 1024 + 1;
            forge::put_blob(&mut a, Digest::of(b"x"), size, vec![b"x".to_vec()])
                .await
                .err()
        }
        Case::TooManyRecipients => {
            let names: Vec<String> = (0..5001).map(|i| format!("dept-{i}")).collect();
            let to: Vec<&str> = names.iter().map(String::as_str).collect();
            forge::submit(&mut a, forge::sign(&doc(&to, "to everyone"), &a_key))
                .await
                .err()
        }
        Case::OverLongTitle => {
            let title = "题".repeat(501);
            forge::submit(&mut a, forge::sign(&doc(&["b"], &title), &a_key))
                .await
                .err()
        }
        Case::RoutingPolicyViolation => {
            let mut c = ex.hub_client_as("c").await?;
            let h = forge::header("c", &["b"], "c may only write to a", vec![uploaded.clone()]);
            forge::submit(&mut c, forge::sign(&h, &forge::signing_key(ex, "c")?))
                .await
                .err()
        }
        Case::IdleStream => {
            // Half a blob, then silence with the stream left open.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let data = vec![1u8; 64];
            tx.send(pb::BlobChunk {
                sha256: Digest::of(&data).0.to_vec(),
                size: 64,
                offset: 0,
                data: data[..32].to_vec(),
            })
            .await?;
            let call = a.put_blob(tokio_stream::wrappers::ReceiverStream::new(rx));
            let answer = tokio::time::timeout(Duration::from_secs(20), call).await?;
            drop(tx);
            answer.err()
        }
        Case::ClumsySystemOverLongTitle => {
            let mut api = ex.node_api("a").await?;
            let draft = Draft {
                to: vec!["b".into()],
                title: "长".repeat(501),
                urgency: pb::Urgency::Normal,
                parts: vec![("body.txt".into(), b"hello".to_vec())],
                key: String::new(),
            };
            exchange_tests::submit(&mut api, &draft).await.err()
        }
    };
    refused.with_context(|| format!("{case:?} was accepted"))
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
        .filter_map(|e| e["doc_id"].as_str())
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
/// document-signing certificate used for TLS, and bytes that are not TLS at all. The hub keeps
/// serving, and nothing changes.
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
    let (ok, _, err) = ex
        .certs(&[
            "revoke",
            "--ca-dir",
            ca_dir.to_str().context("path")?,
            "--cert",
            d_cert.to_str().context("path")?,
            "--reason",
            "key-compromise",
        ])
        .await?;
    assert!(ok, "exchange-certs revoke: {err}");
    assert!(err.contains("revoked: department d"), "{err}");
    eventually("the hub to cut d", DEADLINE, || async {
        Ok(ex
            .log("hub")
            .contains("connection cut: its certificate was revoked")
            .then_some(()))
    })
    .await?;
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

    // d keeps working locally, but nothing it sends gets through.
    let file = random_file(ex.root(), "from-d.txt", 100, 4)?;
    let id = send(
        ex,
        "d",
        "b",
        "from a revoked department",
        file.to_str().context("path")?,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // several of d's retries
    let s = ex.cli_json("d", &["status", &id, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "queued", "{s}");
    assert_eq!(
        snapshot(ex, baseline).await?,
        before,
        "a revoked department changed a store"
    );
    Ok(())
}

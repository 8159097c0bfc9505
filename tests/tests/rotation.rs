//! Certificate rotation: a department gets new certificates and keys (`exchange-certs issue-dept`
//! again into its directory), its old TLS certificate is revoked, and its node restarts. Nothing
//! queued on either side is lost: documents in its outbox (signed with the old key, which stays
//! valid) go out over the new certificate, and deliveries the hub queued for it arrive.

use anyhow::{Context as _, Result};
use exchange_certs::{Ca, Validity};
use exchange_core::config::NodeConfig;
use exchange_tests::{DEADLINE, TestExchange, eventually, random_file, tls_probe};

async fn send(ex: &TestExchange, from: &str, to: &str, title: &str, file: &str) -> Result<String> {
    let out = ex
        .cli_ok(
            from,
            &["send", "--to", to, "--title", title, "--file", file],
        )
        .await?;
    Ok(out.lines().last().context("no id")?.trim().to_owned())
}

async fn delivered(ex: &TestExchange, sender: &str, id: &str) -> Result<()> {
    eventually(&format!("{id} delivered"), DEADLINE, || async {
        let s = ex.cli_json(sender, &["status", id, "--json"]).await?;
        Ok((s["recipients"][0]["state"] == "delivered").then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_rotated_department_certificate_loses_nothing_queued() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let file = random_file(ex.root(), "notice.txt", 2000, 7)?;
    let file = file.to_str().context("path")?.to_owned();

    // With the hub away, a and b each queue a document for the other.
    ex.kill_hub().await?;
    let from_a = send(&ex, "a", "b", "queued at a before rotation", &file).await?;
    let to_a = send(&ex, "b", "a", "queued for a during rotation", &file).await?;
    ex.stop_node("a").await?;

    // New keys and certificates for a, and its old TLS certificate revoked.
    let layout = ex.layout_dir();
    let (ca_dir, a_dir) = (layout.join("ca"), layout.join("a"));
    let old_cert = ex.root().join("a-old-tls.pem");
    let old_key = ex.root().join("a-old-tls.key");
    std::fs::copy(a_dir.join("tls.pem"), &old_cert)?;
    std::fs::copy(a_dir.join("tls.key"), &old_key)?;
    let path = |p: &std::path::Path| p.to_str().map(str::to_owned).context("path");
    let (ok, _, err) = ex
        .certs(&[
            "issue-dept",
            "--ca-dir",
            &path(&ca_dir)?,
            "--id",
            "a",
            "--out",
            &path(&a_dir)?,
        ])
        .await?;
    assert!(ok, "issue-dept: {err}");
    let (ok, _, err) = ex
        .certs(&[
            "revoke",
            "--ca-dir",
            &path(&ca_dir)?,
            "--cert",
            &path(&old_cert)?,
            "--reason",
            "superseded",
        ])
        .await?;
    assert!(ok, "revoke: {err}");

    // b's document waits at the hub for a; a comes back with its new identity.
    ex.start_hub().await?;
    eventually("b's document accepted", DEADLINE, || async {
        let s = ex.cli_json("b", &["status", &to_a, "--json"]).await?;
        Ok((s["recipients"][0]["state"] == "accepted").then_some(()))
    })
    .await?;
    ex.start_node("a").await?;
    delivered(&ex, "a", &from_a).await?;
    delivered(&ex, "b", &to_a).await?;
    let fresh = send(&ex, "a", "b", "signed with the new key", &file).await?;
    delivered(&ex, "a", &fresh).await?;

    // Each document is in its recipient's inbox exactly once.
    for (dept, want) in [
        ("a", vec![to_a.as_str()]),
        ("b", vec![from_a.as_str(), fresh.as_str()]),
    ] {
        let inbox = ex.cli_json(dept, &["inbox", "--json"]).await?;
        let mut ids: Vec<&str> = inbox
            .as_array()
            .context("inbox")?
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        ids.sort_unstable();
        let mut want = want;
        want.sort_unstable();
        assert_eq!(ids, want, "{dept}: {inbox}");
    }

    // The old certificate no longer opens a connection.
    let ca_pem = std::fs::read(ca_dir.join("ca.pem"))?;
    let verdict = tls_probe(
        ex.hub_addr(),
        &ca_pem,
        Some((&std::fs::read(&old_cert)?, &std::fs::read(&old_key)?)),
    )
    .await?;
    let refused = verdict
        .err()
        .context("the superseded certificate was accepted")?;
    assert!(refused.contains("CertificateRevoked"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_node_refuses_a_revoked_hub_certificate_without_a_restart() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    let file = random_file(ex.root(), "notice.txt", 500, 8)?;
    let file = file.to_str().context("path")?.to_owned();
    let before = send(&ex, "a", "b", "before the revocation", &file).await?;
    delivered(&ex, "a", &before).await?;

    // The hub's TLS certificate is revoked (say its key leaked); the nodes keep running.
    let layout = ex.layout_dir();
    let path = |p: std::path::PathBuf| p.to_str().map(str::to_owned).context("path");
    let (ok, _, err) = ex
        .certs(&[
            "revoke",
            "--ca-dir",
            &path(layout.join("ca"))?,
            "--cert",
            &path(layout.join("hub/tls.pem"))?,
            "--reason",
            "key-compromise",
        ])
        .await?;
    assert!(ok, "revoke: {err}");
    // A hub presenting that certificate (here the genuine one, restarted) is refused at the
    // nodes' next handshake: nothing more goes through.
    ex.kill_hub().await?;
    ex.start_hub().await?;
    let after = send(&ex, "a", "b", "after the revocation", &file).await?;
    ex.wait_logged("a", "invalid peer certificate: Revoked")
        .await?;
    let s = ex.cli_json("a", &["status", &after, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "queued", "{s}");
    assert!(
        ex.log("a").contains("revocation list reloaded"),
        "the node re-read its CRL without a restart"
    );
    Ok(())
}

/// A revocation is not lost when the hub cannot read its own key at that moment (a mode changed,
/// files mid-rotation): the new list is put in force at once for admission and for the
/// connections already open, and the TLS configuration is rebuilt once the key reads again.
#[tokio::test]
async fn a_revocation_takes_effect_while_the_hubs_key_cannot_be_read() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let ex = TestExchange::start(&["a", "b"]).await?;
    let key = ex.layout_dir().join("hub/tls.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    // b's connection is cut although the hub's TLS configuration cannot be rebuilt.
    ex.revoke_connected_dept("b").await?;
    ex.wait_logged("hub", "the TLS configuration could not be rebuilt")
        .await?;
    let again = async {
        let mut c = ex.hub_client_as("b").await?;
        c.list_departments(exchange_proto::v1::ListDepartmentsRequest {})
            .await?;
        anyhow::Ok(())
    }
    .await;
    assert!(again.is_err(), "the revoked b was served again");
    let mut a = ex.hub_client_as("a").await?;
    a.list_departments(exchange_proto::v1::ListDepartmentsRequest {})
        .await?;
    // The key readable again: the configuration is rebuilt with the new list, and the handshake
    // itself now refuses b's certificate.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let ca = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;
    let b_cert = std::fs::read(ex.layout_dir().join("b/tls.pem"))?;
    let b_key = std::fs::read(ex.layout_dir().join("b/tls.key"))?;
    eventually("the handshake to refuse b", DEADLINE, || async {
        let verdict = tls_probe(ex.hub_addr(), &ca, Some((&b_cert, &b_key))).await?;
        Ok(verdict
            .err()
            .filter(|e| e.contains("CertificateRevoked"))
            .map(|_| ()))
    })
    .await
}

/// An older list of the CA, validly signed, copied over the current one does not lift the
/// revocations made since: the hub keeps the newer list in force and says why.
#[tokio::test]
async fn an_older_revocation_list_copied_back_does_not_lift_a_revocation() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let crl = ex.layout_dir().join("ca/crl.pem");
    let older = std::fs::read(&crl)?;
    ex.revoke_connected_dept("b").await?;
    let staged = crl.with_extension("older");
    std::fs::write(&staged, &older)?;
    std::fs::rename(&staged, &crl)?;
    ex.wait_logged("hub", "it is older than the one in force")
        .await?;
    let ca = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;
    let b_cert = std::fs::read(ex.layout_dir().join("b/tls.pem"))?;
    let b_key = std::fs::read(ex.layout_dir().join("b/tls.key"))?;
    let verdict = tls_probe(ex.hub_addr(), &ca, Some((&b_cert, &b_key))).await?;
    let err = verdict
        .err()
        .context("b's revoked certificate was accepted again")?;
    assert!(err.contains("CertificateRevoked"), "{err}");
    Ok(())
}

/// Restarts a's node with `edit` applied to its config, sends a document, and checks that the
/// node does not take the genuine hub for its hub: it logs `why` at the handshake, never
/// connects, and the document stays queued in its outbox. With the config restored, the
/// document goes out.
async fn hub_refused_after(
    ex: &mut TestExchange,
    edit: impl FnOnce(&mut NodeConfig),
    why: &str,
) -> Result<()> {
    let original = std::fs::read(ex.node_config("a"))?;
    ex.stop_node("a").await?;
    ex.edit_node_config("a", edit)?;
    let logged = ex.log("a").len();
    ex.start_node_unchecked("a").await?;
    let file = random_file(ex.root(), "notice.txt", 500, 9)?;
    let file = file.to_str().context("path")?.to_owned();
    let id = send(ex, "a", "b", "to a hub it cannot trust", &file).await?;
    // Several attempts, all refused in the handshake: a never talked to the hub.
    eventually(&format!("a to log {why:?} thrice"), DEADLINE, || async {
        Ok((ex.log("a")[logged..].matches(why).count() >= 3).then_some(()))
    })
    .await?;
    let log = ex.log("a");
    assert!(!log[logged..].contains("connected to the hub"), "{log}");
    let s = ex.cli_json("a", &["status", &id, "--json"]).await?;
    assert_eq!(s["recipients"][0]["state"], "queued", "{s}");
    let outbox = ex.cli_json("a", &["outbox", "--json"]).await?;
    assert!(outbox.to_string().contains(&id), "{outbox}");

    // The same node with its config as it was: the document was only waiting.
    ex.stop_node("a").await?;
    std::fs::write(ex.node_config("a"), original)?;
    ex.start_node("a").await?;
    delivered(ex, "a", &id).await
}

#[tokio::test]
async fn a_node_refuses_a_hub_whose_certificate_does_not_carry_its_server_name() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    hub_refused_after(
        &mut ex,
        |c| c.hub.server_name = "hub.elsewhere.gov".into(),
        "invalid peer certificate: certificate not valid for name \"hub.elsewhere.gov\"",
    )
    .await
}

#[tokio::test]
async fn a_node_refuses_a_hub_certificate_not_from_the_ca_it_trusts() -> Result<()> {
    let mut ex = TestExchange::start(&["a", "b"]).await?;
    // a is told to trust another exchange's CA (and that CA's revocation list: the exchange
    // CA's would not load under it); the hub's certificate is from the exchange CA.
    let other = Ca::generate("Another Exchange CA", Validity::days_from_now(30))?;
    let (ca, crl) = (
        ex.root().join("other-ca.pem"),
        ex.root().join("other-crl.pem"),
    );
    std::fs::write(&ca, other.cert_pem())?;
    std::fs::write(&crl, other.issue_crl(&[], 1, 30)?)?;
    hub_refused_after(
        &mut ex,
        |c| {
            c.tls.ca = ca;
            c.tls.crl = Some(crl);
        },
        "invalid peer certificate: UnknownIssuer",
    )
    .await
}

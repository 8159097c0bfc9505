//! 国密 interop and refusals (issue 14), against the real hub of `demo-setup --profile shangmi`:
//!
//! - Tongsuo's own client, `tongsuo s_client -enable_ntls -ntls`, built from the very source the
//!   library uses by `scripts/build-tongsuo-cli.sh` (cached under the target dir), completes a
//!   TLCP handshake with a department's double certificates, in both suites; a client offering
//!   only international TLS 1.3 suites is refused at the handshake;
//! - a node of either profile reaching a hub of the other is refused, the hub's log and audit
//!   entry naming both profiles and the node's log naming its own and the likely cause;
//! - a TLCP client without its encryption certificate, a certificate of the international
//!   profile, and the encryption certificate used as the signing certificate: each refused
//!   clearly, audited at the hub, nothing stored.
//!
//! The CLI is built once (about 3.5 minutes on 2 cores) and then found in
//! `<target>/tongsuo-cli`. If it cannot be built these tests skip with a note, unless
//! `EXCHANGE_REQUIRE_TONGSUO_CLI=1` (CI), where they fail.
#![cfg(feature = "shangmi")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
};

use anyhow::{Context as _, Result, bail, ensure};
use exchange_core::{config::NodeConfig, crypto::Profile};
use exchange_tests::{DEADLINE, TestExchange, eventually, forge, tls_probe};
use serde_json::Value;
use tokio::process::Command;

/// Tongsuo's CLI, built by the repository's script into the target dir (once: the script is a
/// no-op when it is there, and serialises concurrent builds with a lock); `None` (skip) if it
/// cannot be built and `EXCHANGE_REQUIRE_TONGSUO_CLI` is not `1`.
fn tongsuo_cli() -> Option<PathBuf> {
    static CLI: OnceLock<Option<PathBuf>> = OnceLock::new();
    CLI.get_or_init(|| {
        // target/<profile>/deps/<test>-<hash>: the target dir is three levels up.
        let exe = std::env::current_exe().expect("current_exe");
        let target = exe
            .ancestors()
            .nth(3)
            .expect("the test executable lives under the target dir");
        let out = target.join("tongsuo-cli");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-tongsuo-cli.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(&out)
            .stdout(Stdio::null())
            .status();
        let cli = out.join("bin/tongsuo");
        match status {
            Ok(s) if s.success() && cli.is_file() => Some(cli),
            other => {
                let why = format!("{} failed: {other:?}", script.display());
                assert!(
                    std::env::var("EXCHANGE_REQUIRE_TONGSUO_CLI").as_deref() != Ok("1"),
                    "{why}, and EXCHANGE_REQUIRE_TONGSUO_CLI is set"
                );
                eprintln!("SKIPPED: {why} (set EXCHANGE_REQUIRE_TONGSUO_CLI=1 to fail instead)");
                None
            }
        }
    })
    .clone()
}

/// A department's TLS files, as its node.toml names them.
struct DeptFiles {
    ca: PathBuf,
    sign: PathBuf,
    sign_key: PathBuf,
    enc: PathBuf,
    enc_key: PathBuf,
}

fn dept_files(ex: &TestExchange, dept: &str) -> Result<DeptFiles> {
    let cfg: NodeConfig = exchange_core::config::load(ex.node_config(dept))?;
    Ok(DeptFiles {
        ca: cfg.tls.ca,
        sign: cfg.tls.cert,
        sign_key: cfg.tls.key,
        enc: cfg
            .tls
            .enc_cert
            .context("a shangmi node.toml names [tls] enc_cert")?,
        enc_key: cfg
            .tls
            .enc_key
            .context("a shangmi node.toml names [tls] enc_key")?,
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 test path")
}

/// Runs the CLI with `args` (standard input closed, so that `s_client` leaves once the
/// handshake is done); returns whether it succeeded and its output (stdout, then stderr).
async fn run_cli(cli: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(cli)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("tongsuo {args:?} did not end"))??;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// `tongsuo s_client -enable_ntls -ntls` to the hub with `cipher` and the client pairs `args`
/// (`-sign_cert`, `-enc_cert`, ...), verifying the hub against the exchange CA and its name.
async fn tlcp_client(
    cli: &Path,
    hub: SocketAddr,
    ca: &Path,
    cipher: &str,
    pairs: &[&str],
) -> Result<(bool, String)> {
    let connect = hub.to_string();
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-enable_ntls",
        "-ntls",
        "-cipher",
        cipher,
        "-CAfile",
        s(ca),
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
    ];
    args.extend_from_slice(pairs);
    run_cli(cli, &args).await
}

/// The department's own double certificate, as `s_client` takes it.
fn double(f: &DeptFiles) -> [&str; 8] {
    [
        "-sign_cert",
        s(&f.sign),
        "-sign_key",
        s(&f.sign_key),
        "-enc_cert",
        s(&f.enc),
        "-enc_key",
        s(&f.enc_key),
    ]
}

/// Stops the hub and reads its whole audit log from the store (a shangmi hub's `[admin]`
/// identity is not used: the hub is stopped, and the command opens the store itself).
async fn audit_after_stop(ex: &mut TestExchange) -> Result<Vec<Value>> {
    ensure!(
        ex.stop_hub().await? == Some(0),
        "the hub did not stop cleanly"
    );
    ex.edit_hub_config(|c| c.admin = None)?;
    let (ok, out, err) = ex.hub_cli(&["audit", "list", "--json"]).await?;
    ensure!(ok, "audit list: {err}");
    Ok(serde_json::from_str::<Value>(&out)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The refused handshakes in `audit`.
fn refusals(audit: &[Value]) -> Vec<&Value> {
    audit
        .iter()
        .filter(|e| e["kind"] == "HANDSHAKE_REFUSED")
        .collect()
}

/// Nothing but the hub's own life and refused handshakes is in `audit`, and no content was
/// stored: whatever was refused left no trace beyond the refusal.
fn nothing_stored(ex: &TestExchange, audit: &[Value]) {
    let allowed = ["HUB_STARTED", "HUB_STOPPED", "HANDSHAKE_REFUSED"];
    for e in audit.iter().filter(|e| e["type"] == "entry") {
        let kind = e["kind"].as_str().unwrap_or_default();
        assert!(allowed.contains(&kind), "unexpected audit entry {e:#}");
    }
    assert!(
        forge::hub_blobs(&ex.hub_data_dir()).is_empty(),
        "the hub stored content"
    );
}

/// Waits until the log of `who` (hub or a department) contains `text`.
async fn wait_log(ex: &TestExchange, who: &str, text: &str) -> Result<String> {
    eventually(&format!("{who}'s log to say {text:?}"), DEADLINE, || {
        let log = ex.log(who);
        async move { Ok(log.contains(text).then_some(log)) }
    })
    .await
}

#[tokio::test]
async fn tongsuo_s_client_completes_tlcp_with_the_hub_in_both_suites() -> Result<()> {
    let Some(cli) = tongsuo_cli() else {
        return Ok(());
    };
    let mut ex = TestExchange::setup_with_profile(&["a"], Profile::Shangmi)?;
    ex.start_hub().await?;
    let a = dept_files(&ex, "a")?;
    for cipher in ["ECDHE-SM2-SM4-GCM-SM3", "ECC-SM2-SM4-GCM-SM3"] {
        let (ok, out) = tlcp_client(&cli, ex.hub_addr(), &a.ca, cipher, &double(&a)).await?;
        assert!(ok, "{cipher}: {out}");
        assert!(out.contains("Protocol  : NTLSv1.1"), "{cipher}: {out}");
        assert!(out.contains(&format!("Cipher    : {cipher}")), "{out}");
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{cipher}: {out}"
        );
    }
    let audit = audit_after_stop(&mut ex).await?;
    assert!(refusals(&audit).is_empty(), "{audit:#?}");
    nothing_stored(&ex, &audit);
    Ok(())
}

#[tokio::test]
async fn a_client_offering_only_international_tls13_suites_is_refused_at_the_handshake()
-> Result<()> {
    let Some(cli) = tongsuo_cli() else {
        return Ok(());
    };
    let mut ex = TestExchange::setup_with_profile(&["a"], Profile::Shangmi)?;
    ex.start_hub().await?;
    let ca_pem = std::fs::read(ex.layout_dir().join("ca/ca.pem"))?;
    // rustls with ring: TLS 1.3, the international suites only.
    let verdict = tls_probe(ex.hub_addr(), &ca_pem, None).await?;
    assert!(verdict.is_err(), "a TLS 1.3 client got in");
    // Tongsuo's own client, TLS 1.3 with the international suites.
    let connect = ex.hub_addr().to_string();
    let (_, out) = run_cli(
        &cli,
        &[
            "s_client",
            "-connect",
            &connect,
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
        ],
    )
    .await?;
    assert!(out.contains("Cipher is (NONE)"), "no session: {out}");
    assert!(!out.contains("Server certificate"), "{out}");
    let named = "a client of the international profile (TLS 1.3 without SM suites) reached this \
                 shangmi server (TLCP)";
    wait_log(&ex, "hub", named).await?;
    let audit = audit_after_stop(&mut ex).await?;
    let refused = refusals(&audit);
    assert_eq!(refused.len(), 2, "{audit:#?}");
    for r in refused {
        assert!(
            r["detail"].as_str().is_some_and(|d| d.contains(named)),
            "{r:#}"
        );
    }
    nothing_stored(&ex, &audit);
    Ok(())
}

#[tokio::test]
async fn nodes_of_the_other_profile_are_refused_and_both_sides_say_why() -> Result<()> {
    let mut sm = TestExchange::setup_with_profile(&["a"], Profile::Shangmi)?;
    let mut intl = TestExchange::setup_with_profile(&["a"], Profile::International)?;
    sm.start_hub().await?;
    intl.start_hub().await?;
    // Each exchange's node a dials the other exchange's hub.
    let (sm_hub, intl_hub) = (sm.hub_addr(), intl.hub_addr());
    sm.edit_node_config("a", |c| c.hub.addr = Some(intl_hub))?;
    intl.edit_node_config("a", |c| c.hub.addr = Some(sm_hub))?;
    sm.start_node_unchecked("a").await?;
    intl.start_node_unchecked("a").await?;

    let at_sm_hub = "a client of the international profile (TLS 1.3 without SM suites) reached \
                     this shangmi server (TLCP)";
    let at_intl_hub =
        "a client of the shangmi profile (TLCP) reached this international server (TLS 1.3";
    wait_log(&sm, "hub", at_sm_hub).await?;
    wait_log(&intl, "hub", at_intl_hub).await?;
    wait_log(
        &intl,
        "a",
        "this node is of the international profile (TLS 1.3); the hub refused the handshake: \
         is it a shangmi hub?",
    )
    .await?;
    wait_log(
        &sm,
        "a",
        "this node is of the shangmi profile (TLCP); the hub refused the handshake: is it an \
         international hub",
    )
    .await?;

    sm.stop_node("a").await?;
    intl.stop_node("a").await?;
    for (ex, named) in [(&mut sm, at_sm_hub), (&mut intl, at_intl_hub)] {
        let audit = audit_after_stop(ex).await?;
        let refused = refusals(&audit);
        assert!(!refused.is_empty(), "{audit:#?}");
        for r in refused {
            assert!(
                r["detail"].as_str().is_some_and(|d| d.contains(named)),
                "{r:#}"
            );
        }
        nothing_stored(ex, &audit);
    }
    Ok(())
}

/// Runs `s_client` over TLCP with `pairs`, expects the hub to refuse it, and returns the
/// hub's audit entries of refused handshakes (after stopping it, checking nothing was stored).
async fn refused_tlcp_client(
    ex: &mut TestExchange,
    cli: &Path,
    cipher: &str,
    pairs: &[&str],
) -> Result<Vec<Value>> {
    let ca = ex.layout_dir().join("ca/ca.pem");
    let (_, out) = tlcp_client(cli, ex.hub_addr(), &ca, cipher, pairs).await?;
    // The client may finish its side before the hub judges it: what counts is the hub's verdict.
    eventually("the refusal in the hub's log", DEADLINE, || {
        let log = ex.log("hub");
        async move { Ok(log.contains("TLS handshake refused").then_some(())) }
    })
    .await
    .with_context(|| format!("s_client said: {out}"))?;
    let audit = audit_after_stop(ex).await?;
    nothing_stored(ex, &audit);
    let refused: Vec<Value> = refusals(&audit).into_iter().cloned().collect();
    if refused.is_empty() {
        bail!("no refusal audited: {audit:#?}");
    }
    Ok(refused)
}

#[tokio::test]
async fn a_tlcp_client_without_its_encryption_certificate_is_refused_and_audited() -> Result<()> {
    let Some(cli) = tongsuo_cli() else {
        return Ok(());
    };
    for cipher in ["ECDHE-SM2-SM4-GCM-SM3", "ECC-SM2-SM4-GCM-SM3"] {
        let mut ex = TestExchange::setup_with_profile(&["a"], Profile::Shangmi)?;
        ex.start_hub().await?;
        let a = dept_files(&ex, "a")?;
        let sign_only = ["-sign_cert", s(&a.sign), "-sign_key", s(&a.sign_key)];
        let refused = refused_tlcp_client(&mut ex, &cli, cipher, &sign_only).await?;
        assert_eq!(refused.len(), 1, "{cipher}: {refused:#?}");
        let detail = refused[0]["detail"].as_str().unwrap_or_default();
        assert!(
            [
                "no certificates returned",
                "peer did not return a certificate"
            ]
            .iter()
            .any(|t| detail.contains(t)),
            "{cipher}: {detail}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_certificate_of_the_wrong_usage_is_refused_and_audited() -> Result<()> {
    let Some(cli) = tongsuo_cli() else {
        return Ok(());
    };
    let mut ex = TestExchange::setup_with_profile(&["a"], Profile::Shangmi)?;
    ex.start_hub().await?;
    let a = dept_files(&ex, "a")?;
    // Tongsuo's client will not even present the encryption certificate as its signing one (nor
    // the reverse): it checks the key usage when loading them.
    let swapped = [
        "-sign_cert",
        s(&a.enc),
        "-sign_key",
        s(&a.enc_key),
        "-enc_cert",
        s(&a.sign),
        "-enc_key",
        s(&a.sign_key),
    ];
    let (_, out) = tlcp_client(
        &cli,
        ex.hub_addr(),
        &a.ca,
        "ECDHE-SM2-SM4-GCM-SM3",
        &swapped,
    )
    .await?;
    assert!(out.contains("error setting sign certificate"), "{out}");
    // The document-signing certificate (digitalSignature + nonRepudiation, extended key usage
    // documentSigning only) as the TLS signing certificate: the hub refuses its purpose.
    let cfg: NodeConfig = exchange_core::config::load(ex.node_config("a"))?;
    let doc_signing = [
        "-sign_cert",
        s(&cfg.signing.cert),
        "-sign_key",
        s(&cfg.signing.key),
        "-enc_cert",
        s(&a.enc),
        "-enc_key",
        s(&a.enc_key),
    ];
    let refused = refused_tlcp_client(&mut ex, &cli, "ECDHE-SM2-SM4-GCM-SM3", &doc_signing).await?;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["dept"], "department a", "{refused:#?}");
    let detail = refused[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("certificate verify failed")
            && detail.contains("(unsupported certificate purpose)"),
        "{detail}"
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_of_the_international_profile_is_refused_and_audited() -> Result<()> {
    let Some(cli) = tongsuo_cli() else {
        return Ok(());
    };
    let mut ex = TestExchange::setup_with_profile(&["a"], Profile::Shangmi)?;
    ex.start_hub().await?;
    let a = dept_files(&ex, "a")?;
    // A P-256 signing certificate for department a, with every other field right, issued by
    // the exchange's own SM2 CA (with the Tongsuo CLI: our tools issue SM2 keys only).
    let dir = ex.root().join("p256");
    std::fs::create_dir_all(&dir)?;
    let (key, csr, cert, ext) = (
        dir.join("tls.key"),
        dir.join("tls.csr"),
        dir.join("tls.pem"),
        dir.join("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "[req]\ndistinguished_name = dn\n[dn]\n[v3]\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = clientAuth\nsubjectAltName = URI:urn:exchange:dept:a\n",
    )?;
    let ca_key = ex.layout_dir().join("ca/ca.key");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            s(&key),
        ],
        vec![
            "req",
            "-new",
            "-config",
            s(&ext),
            "-key",
            s(&key),
            "-subj",
            "/CN=a",
            "-out",
            s(&csr),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&a.ca),
            "-CAkey",
            s(&ca_key),
            "-days",
            "1",
            "-extfile",
            s(&ext),
            "-extensions",
            "v3",
            "-out",
            s(&cert),
        ],
    ] {
        let (ok, out) = run_cli(&cli, &args).await?;
        ensure!(ok, "tongsuo {args:?}: {out}");
    }
    let (ok, out) = run_cli(&cli, &["verify", "-CAfile", s(&a.ca), s(&cert)]).await?;
    ensure!(ok, "the P-256 certificate chains to the SM2 CA: {out}");

    // A shangmi node configured with it does not start: the profile check names both.
    ex.edit_node_config("a", |c| {
        c.tls.cert = cert.clone();
        c.tls.key = key.clone();
    })?;
    let (ok, _, err) = ex.cli("a", &["check-config"]).await?;
    assert!(!ok);
    assert!(
        err.contains(
            "is an international (ECDSA P-256) certificate but [crypto] profile is shangmi"
        ),
        "{err}"
    );
    // Tongsuo's TLCP client will not present it.
    let pairs = [
        "-sign_cert",
        s(&cert),
        "-sign_key",
        s(&key),
        "-enc_cert",
        s(&a.enc),
        "-enc_key",
        s(&a.enc_key),
    ];
    let (_, out) = tlcp_client(&cli, ex.hub_addr(), &a.ca, "ECDHE-SM2-SM4-GCM-SM3", &pairs).await?;
    assert!(out.contains("wrong certificate type"), "{out}");
    // The client that can present it, TLS 1.3 (rustls with ring), is refused at the hello.
    let ca_pem = std::fs::read(&a.ca)?;
    let (cert_pem, key_pem) = (std::fs::read(&cert)?, std::fs::read(&key)?);
    let verdict = tls_probe(ex.hub_addr(), &ca_pem, Some((&cert_pem, &key_pem))).await?;
    assert!(verdict.is_err(), "a P-256 client certificate got in");
    let audit = audit_after_stop(&mut ex).await?;
    nothing_stored(&ex, &audit);
    let refused = refusals(&audit);
    assert_eq!(refused.len(), 1, "{audit:#?}");
    let detail = refused[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(
            "a client of the international profile (TLS 1.3 without SM suites) reached this \
             shangmi server (TLCP)"
        ),
        "{detail}"
    );
    Ok(())
}

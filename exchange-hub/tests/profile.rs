//! `[crypto] profile` against the certificates, with the real `exchange-hub` binary:
//! `check-config` refuses a mismatch naming the file, the key and both profiles; a build
//! without the `shangmi` feature refuses the profile by name; a shangmi config whose
//! certificates match passes `check-config` and `serve` listens over TLCP (docs/shangmi.md).

use std::{
    fs,
    path::Path,
    process::{Command, Output},
};

use anyhow::{Context, Result};
use exchange_certs::{Ca, Validity, issue_into_dir};
use exchange_core::identity::Principal;

const HUB_TOML: &str = r#"
[crypto]
profile = "PROFILE"

[hub]
listen = "127.0.0.1:0"
data_dir = "data"

[tls]
ca = "ca.pem"
cert = "tls.pem"
key = "tls.key"
ENC
[signing]
cert = "signing.pem"
key = "signing.key"

[[departments]]
id = "a"
name = "a"
"#;

fn hub(config: &Path, cmd: &str) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_exchange-hub"))
        .arg("--config")
        .arg(config)
        .arg(cmd)
        .output()
        .context("running exchange-hub")
}

/// An international hub identity (P-256 TLS, Ed25519 signing) in `dir`.
fn international(dir: &Path) -> Result<()> {
    let ca = Ca::generate("Test CA", Validity::days_from_now(30))?;
    fs::write(dir.join("ca.pem"), ca.cert_pem())?;
    issue_into_dir(
        &ca,
        &Principal::Hub,
        &[],
        &[],
        Validity::days_from_now(30),
        dir,
    )
}

fn write_config(dir: &Path, profile: &str, enc: bool) -> Result<std::path::PathBuf> {
    let enc = if enc {
        "enc_cert = \"tls-enc.pem\"\nenc_key = \"tls-enc.key\"\n"
    } else {
        ""
    };
    let path = dir.join("hub.toml");
    fs::write(
        &path,
        HUB_TOML.replace("PROFILE", profile).replace("ENC\n", enc),
    )?;
    Ok(path)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_international_config_checks_and_a_shangmi_one_over_its_certificates_does_not() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    international(tmp.path())?;
    let config = write_config(tmp.path(), "international", false)?;
    let out = hub(&config, "check-config")?;
    assert!(out.status.success(), "{}", stderr(&out));

    let config = write_config(tmp.path(), "shangmi", false)?;
    let out = hub(&config, "check-config")?;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    if cfg!(feature = "shangmi") {
        let want = format!(
            "tls.ca {} is an international (ECDSA P-256) certificate but [crypto] profile is \
             shangmi",
            tmp.path().join("ca.pem").display()
        );
        assert!(err.contains(&want), "{err}");
    } else {
        assert!(
            err.contains(
                "this exchange-hub was built without 国密 support: rebuild with \
                 `cargo build --release --features shangmi`"
            ),
            "{err}"
        );
        // `serve` runs the same check before it binds anything.
        let out = hub(&config, "serve")?;
        assert_eq!(out.status.code(), Some(64));
        assert!(stderr(&out).contains("built without 国密 support"));
    }
    Ok(())
}

#[cfg(feature = "shangmi")]
mod shangmi {
    use std::os::unix::fs::PermissionsExt;

    use exchange_core::crypto::sm::{
        Sm2PrivateKey,
        cert::{self, CertUsage, ExtendedUsage, LeafExtensions, LeafRequest},
    };

    use super::*;

    fn write_pair(dir: &Path, name: &str, cert_der: &[u8], key: &Sm2PrivateKey) -> Result<()> {
        fs::write(dir.join(format!("{name}.pem")), cert::to_pem(cert_der)?)?;
        let key_path = dir.join(format!("{name}.key"));
        fs::write(&key_path, key.to_pkcs8_pem()?)?;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    /// A shangmi hub identity in `dir`, shaped like `exchange-certs issue-hub` under an SM2 CA
    /// (that tool's shangmi code is behind its own feature, which this crate's tests do not
    /// get).
    fn shangmi(dir: &Path) -> Result<()> {
        let ca_key = Sm2PrivateKey::generate()?;
        let ca = cert::self_signed_ca(&ca_key, "SM2 CA", 30)?;
        fs::write(dir.join("ca.pem"), cert::to_pem(&ca)?)?;
        for (name, usage, eku) in [
            ("tls", CertUsage::Signing, ExtendedUsage::ServerAuth),
            ("tls-enc", CertUsage::Encryption, ExtendedUsage::ServerAuth),
            (
                "signing",
                CertUsage::DocumentSigning,
                ExtendedUsage::DocumentSigning,
            ),
        ] {
            let key = Sm2PrivateKey::generate()?;
            let req = LeafRequest {
                common_name: "hub",
                usage,
                dns_names: &["localhost"],
                days: 30,
            };
            let ext = LeafExtensions {
                uris: &["urn:exchange:hub"],
                extended: &[eku],
                ..Default::default()
            };
            let der = cert::issue_with(&ca, &ca_key, &key.public_key()?, &req, &ext)?;
            write_pair(dir, name, &der, &key)?;
        }
        Ok(())
    }

    #[test]
    fn a_matching_shangmi_config_checks_and_serves() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        shangmi(tmp.path())?;
        let config = write_config(tmp.path(), "shangmi", true)?;
        let out = hub(&config, "check-config")?;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8(out.stdout)?, "config ok\n");

        // `serve` binds and announces its address (the TLCP acceptor is built before that).
        let mut child = Command::new(env!("CARGO_BIN_EXE_exchange-hub"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let addr = tmp.path().join("data/hub.addr");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !addr.exists() && std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                let out = child.wait_with_output()?;
                anyhow::bail!("exchange-hub serve exited with {status}: {}", stderr(&out));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.kill()?;
        let out = child.wait_with_output()?;
        assert!(addr.exists(), "the hub never listened: {}", stderr(&out));

        // An international protocol under shangmi is refused by its key.
        let path = tmp.path().join("hub.toml");
        let text = fs::read_to_string(&path)?;
        fs::write(
            &path,
            text.replace(
                "enc_key = \"tls-enc.key\"\n",
                "enc_key = \"tls-enc.key\"\nprotocol = \"tls13\"\n",
            ),
        )?;
        let err = stderr(&hub(&path, "check-config")?);
        assert!(
            err.contains("tls.protocol: \"tls13\" is not a protocol of the shangmi profile"),
            "{err}"
        );

        // Without the encryption pair, TLCP cannot work: named by its config key.
        let config = write_config(tmp.path(), "shangmi", false)?;
        let err = stderr(&hub(&config, "check-config")?);
        assert!(
            err.contains("[tls] enc_cert is required when [crypto] profile is shangmi"),
            "{err}"
        );
        // The whole identity under international: the CA is named first.
        let config = write_config(tmp.path(), "international", false)?;
        let err = stderr(&hub(&config, "check-config")?);
        assert!(
            err.contains("is a shangmi (SM2) certificate but [crypto] profile is international"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_swapped_international_certificate_is_refused_by_name() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        shangmi(tmp.path())?;
        let other = tempfile::tempdir()?;
        international(other.path())?;
        fs::copy(other.path().join("tls.pem"), tmp.path().join("tls.pem"))?;
        let config = write_config(tmp.path(), "shangmi", true)?;
        let out = hub(&config, "check-config")?;
        assert_eq!(out.status.code(), Some(64));
        let want = format!(
            "tls.cert {} is an international (ECDSA P-256) certificate but [crypto] profile is \
             shangmi",
            tmp.path().join("tls.pem").display()
        );
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
        Ok(())
    }
}

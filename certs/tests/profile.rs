//! `--profile` in every build: the international default states itself in the configs and
//! otherwise writes what it always wrote; a build without the `shangmi` feature refuses
//! `--profile shangmi` before touching the disk.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};

fn certs(args: &[&str], dir: &Path) -> Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_exchange-certs"))
        .args(args)
        .arg(dir)
        .output()
        .context("running exchange-certs")
}

#[test]
fn international_demo_states_its_profile_and_has_no_encryption_pair() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("demo");
    let out = certs(&["demo-setup", "--departments", "a", "--dir"], &dir)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for config in ["hub/hub.toml", "a/node.toml"] {
        let text = fs::read_to_string(dir.join(config))?;
        assert!(
            text.contains("\n[crypto]\nprofile = \"international\"\n\n"),
            "{text}"
        );
        assert!(
            !text.contains("enc_cert") && !text.contains("enc_key"),
            "{text}"
        );
        assert!(text.contains("crl = \"../ca/crl.pem\""), "{text}");
    }
    for d in ["hub", "a", "admin"] {
        assert!(!dir.join(d).join("tls-enc.pem").exists());
    }
    Ok(())
}

#[test]
fn profile_flag_lists_both_profiles_in_help_and_refuses_others() -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_exchange-certs");
    for cmd in ["init-ca", "demo-setup"] {
        let help = Command::new(bin).args([cmd, "--help"]).output()?;
        let help = String::from_utf8(help.stdout)?;
        assert!(help.contains("--profile"), "{help}");
        assert!(
            help.contains("international") && help.contains("shangmi"),
            "{help}"
        );
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("ca");
    let out = certs(&["init-ca", "--profile", "gm", "--dir"], &dir)?;
    assert_eq!(out.status.code(), Some(64));
    assert!(!dir.exists());
    Ok(())
}

#[cfg(not(feature = "shangmi"))]
#[test]
fn a_build_without_shangmi_refuses_the_profile_and_writes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("out");
    for args in [
        &["init-ca", "--profile", "shangmi", "--dir"][..],
        &[
            "demo-setup",
            "--profile",
            "shangmi",
            "--departments",
            "a,b,c",
            "--dir",
        ][..],
    ] {
        let out = certs(args, &dir)?;
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8(out.stderr)?;
        assert!(
            err.contains(
                "this exchange-certs was built without 国密 support: rebuild with \
                 `cargo build --release --features shangmi`"
            ),
            "{err}"
        );
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
    Ok(())
}

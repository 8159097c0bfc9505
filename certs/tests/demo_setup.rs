//! `demo_setup` and the `exchange-certs` binary, end to end on a temporary directory.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use anyhow::{Context, Result, ensure};
use exchange_certs::{DeptSpec, demo_setup};
use exchange_core::config::{HubConfig, NodeConfig, load};

fn specs(list: &[&str]) -> Result<Vec<DeptSpec>> {
    Ok(list.iter().map(|s| s.parse()).collect::<Result<_, _>>()?)
}

fn assert_private(path: &Path) -> Result<()> {
    let mode = fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .permissions()
        .mode();
    ensure!(
        mode & 0o777 == 0o600,
        "{} has mode {:o}",
        path.display(),
        mode & 0o777
    );
    Ok(())
}

#[test]
fn demo_setup_writes_configs_that_load_and_point_at_real_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("demo");
    let layout = demo_setup(&dir, &specs(&["fin=市财政局", "edu"])?, None, false)?;

    assert!(layout.ca_cert.is_file());
    assert_private(&dir.join("ca/ca.key"))?;
    assert!(dir.join("README.txt").is_file());
    let readme = fs::read_to_string(dir.join("README.txt"))?;
    assert!(readme.contains("exchange-hub serve --config"), "{readme}");
    assert!(readme.contains("exchange-node serve --config"), "{readme}");

    let hub: HubConfig = load(&layout.hub_config)?;
    assert_eq!(hub.hub.listen, layout.hub_addr);
    assert_eq!(hub.hub.data_dir, dir.join("hub/data"));
    for file in [
        &hub.tls.ca,
        &hub.tls.cert,
        &hub.tls.key,
        &hub.signing.cert,
        &hub.signing.key,
    ] {
        assert!(file.is_file(), "{}", file.display());
    }
    assert_private(&hub.tls.key)?;
    assert_private(&hub.signing.key)?;
    let dirs: Vec<_> = hub
        .departments
        .iter()
        .map(|d| (d.id.as_str(), d.name.as_str()))
        .collect();
    assert_eq!(dirs, [("fin", "市财政局"), ("edu", "edu")]);

    assert_eq!(layout.nodes.len(), 2);
    let mut ports = vec![layout.hub_addr.port()];
    for (id, path) in &layout.nodes {
        assert_eq!(path, &dir.join(id.as_str()).join("node.toml"));
        let node: NodeConfig = load(path)?;
        assert_eq!(&node.node.id, id);
        assert_eq!(node.hub.addr, Some(layout.hub_addr));
        assert_eq!(node.hub.server_name, "localhost");
        assert!(node.api.listen.ip().is_loopback());
        ports.push(node.api.listen.port());
        let files = [
            &node.tls.ca,
            &node.tls.cert,
            &node.tls.key,
            &node.signing.cert,
        ];
        for file in files.into_iter().chain([&node.signing.key]) {
            assert!(file.is_file(), "{}", file.display());
        }
        assert_private(&node.tls.key)?;
        assert_private(&node.signing.key)?;
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "free ports are distinct");
    assert!(!ports.contains(&0));

    let again = demo_setup(&dir, &specs(&["fin"])?, None, false);
    assert!(format!("{:#}", again.err().context("second run succeeded")?).contains("not empty"));
    demo_setup(&dir, &specs(&["fin"])?, None, true)?;
    Ok(())
}

#[test]
fn base_port_numbers_hub_then_departments_in_order() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let layout = demo_setup(tmp.path(), &specs(&["a", "b", "c"])?, Some(41000), false)?;
    assert_eq!(layout.hub_addr.to_string(), "127.0.0.1:41000");
    let hub: HubConfig = load(&layout.hub_config)?;
    assert_eq!(hub.hub.listen.port(), 41000);
    for (i, (_, path)) in layout.nodes.iter().enumerate() {
        let node: NodeConfig = load(path)?;
        assert_eq!(usize::from(node.api.listen.port()), 41001 + i);
        assert_eq!(node.hub.addr.map(|a| a.port()), Some(41000));
    }
    let text = fs::read_to_string(&layout.hub_config)?;
    assert!(
        text.starts_with('#'),
        "hub.toml starts with a comment header"
    );
    assert!(
        text.contains("\"../ca/ca.pem\""),
        "paths stay relative: {text}"
    );
    Ok(())
}

#[test]
fn binary_prints_config_paths_and_exits_64_on_bad_flags() -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_exchange-certs");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("demo");
    let out = Command::new(bin)
        .args(["demo-setup", "--departments", "a,b", "--dir"])
        .arg(&dir)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = ["hub/hub.toml", "a/node.toml", "b/node.toml"].map(|p| dir.join(p));
    assert_eq!(
        lines,
        expected
            .iter()
            .map(|p| p.to_str().unwrap_or("?"))
            .collect::<Vec<_>>()
    );

    let bad = Command::new(bin)
        .args(["issue-dept", "--id", "a"])
        .output()?;
    assert_eq!(bad.status.code(), Some(64));
    let again = Command::new(bin)
        .args(["demo-setup", "--departments", "a", "--dir"])
        .arg(&dir)
        .output()?;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).starts_with("error: "));
    Ok(())
}

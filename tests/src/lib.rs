//! Test harness: a real exchange — the `exchange-hub` and `exchange-node` binaries as child
//! processes, certificates made at test time with `exchange-certs`' library, real mutual TLS and
//! real redb stores — in a temporary directory, on ports the kernel picks.
//!
//! On a test failure the harness prints the tail of every process's log;
//! `EXCHANGE_KEEP_TEST_DIR=1` keeps the directory for a look afterwards.

pub mod chaos;
pub mod cli;
pub mod federation;
pub mod forge;
pub mod hubs;
pub mod ops;
pub mod postgres;
pub mod rogue_hub;
pub mod scenario;

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use exchange_core::{
    config::{HubConfig, NodeConfig, read_addr_file},
    crypto::Profile,
};
use exchange_proto::v1 as pb;
use tokio::process::{Child, Command};

/// How long a test waits for something that should happen "soon" before failing.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The path of a workspace binary, built once per test process with `$CARGO build --bins`.
pub fn bin(name: &str) -> PathBuf {
    build_bins();
    // The test executable is target/<profile>/deps/<name>-<hash>; the binaries are one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join(name)
}

/// Builds every binary of the workspace for this test profile, once per test process. Every
/// test that runs the daemons must build them this one way (the whole workspace, the same
/// environment): a build that selects other packages unifies features differently and
/// replaces the binaries under the feet of tests running in parallel.
pub fn build_bins() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--bins", "--workspace"]);
        if cfg!(feature = "shangmi") {
            // The same features as `.ci/run`'s shangmi build, or this build would replace the
            // 国密 binaries with international-only ones.
            cmd.args([
                "--features",
                "exchange-hub/shangmi,exchange-node/shangmi,exchange-certs/shangmi",
            ]);
        }
        // The test runner's per-package variables would make this build's fingerprints differ
        // from the one that built the tests, and cargo would rebuild the whole tree each run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || key == "LD_LIBRARY_PATH"
            {
                cmd.env_remove(&*key);
            }
        }
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build --bins");
        assert!(status.success(), "cargo build --bins failed");
    });
}

/// Polls `f` until it returns `Ok(Some(t))`, or fails after `deadline` with the last error.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("never ready");
    let mut pause = Duration::from_millis(20);
    loop {
        match f().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A running exchange: one hub and a node per department.
pub struct TestExchange {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    /// Where the PKI and configs were laid out (`ca/`, `hub/`, one directory per department).
    layout: PathBuf,
    hub: Option<Child>,
    hub_config: PathBuf,
    hub_addr: Option<SocketAddr>,
    nodes: BTreeMap<String, Child>,
    node_configs: BTreeMap<String, PathBuf>,
    profile: Profile,
    /// More hubs on the first one's database ([`hubs`]).
    other_hubs: BTreeMap<String, hubs::OtherHub>,
}

impl TestExchange {
    /// Lays out an exchange for `depts` (PKI made now), starts the hub and every node, and waits
    /// until each node is connected to the hub.
    pub async fn start(depts: &[&str]) -> Result<Self> {
        Self::start_with_profile(depts, Profile::International).await
    }

    /// [`Self::start`] with a CA and configs of `profile` (`demo-setup --profile`).
    pub async fn start_with_profile(depts: &[&str], profile: Profile) -> Result<Self> {
        let mut ex = Self::setup_with_profile(depts, profile)?;
        ex.start_hub().await?;
        for d in depts {
            ex.start_node(d).await?;
        }
        Ok(ex)
    }

    /// Lays out the exchange without starting anything.
    pub fn setup(depts: &[&str]) -> Result<Self> {
        Self::setup_with_profile(depts, Profile::International)
    }

    /// [`Self::setup`] with a CA and configs of `profile`.
    pub fn setup_with_profile(depts: &[&str], profile: Profile) -> Result<Self> {
        exchange_core::tls::install_ring_provider();
        let dir = tempfile::Builder::new()
            .prefix("exchange-test-")
            .tempdir()?;
        let root = dir.path().to_owned();
        let specs = depts
            .iter()
            .map(|d| d.parse())
            .collect::<Result<Vec<exchange_certs::DeptSpec>, _>>()?;
        let layout = exchange_certs::demo_setup_with_profile(
            &root.join("ex"),
            &specs,
            None,
            false,
            profile,
        )?;
        std::fs::create_dir_all(root.join("logs"))?;
        // Ports come from the kernel (port 0) when the daemons bind, never picked in advance.
        edit_toml::<HubConfig>(&layout.hub_config, |c| {
            c.hub.listen = "127.0.0.1:0".parse().expect("addr")
        })?;
        let node_configs = layout
            .nodes
            .iter()
            .map(|(id, p)| (id.to_string(), p.clone()))
            .collect();
        Ok(TestExchange {
            dir: Some(dir),
            layout: root.join("ex"),
            root,
            hub: None,
            hub_config: layout.hub_config,
            hub_addr: None,
            nodes: BTreeMap::new(),
            node_configs,
            profile,
            other_hubs: BTreeMap::new(),
        })
    }

    /// The exchange's crypto profile (its CA's).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The test's temporary directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the generated PKI and configs (`ca/`, `hub/`, one per department).
    pub fn layout_dir(&self) -> PathBuf {
        self.layout.clone()
    }

    /// A department's node.toml.
    pub fn node_config(&self, dept: &str) -> &Path {
        &self.node_configs[dept]
    }

    /// The hub's address (once started).
    pub fn hub_addr(&self) -> SocketAddr {
        self.hub_addr.expect("hub started")
    }

    fn spawn(&self, name: &str, bin_name: &str, config: &Path) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("logs").join(format!("{name}.log")))?;
        let child = Command::new(bin(bin_name))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin_name}"))?;
        Ok(child)
    }

    /// Starts the hub and waits until it listens. After the first start the hub keeps its port,
    /// so that nodes find it again after a restart.
    pub async fn start_hub(&mut self) -> Result<()> {
        let data = self.hub_config.parent().expect("hub dir").join("data");
        let _ = std::fs::remove_file(data.join("hub.addr"));
        self.hub = Some(self.spawn("hub", "exchange-hub", &self.hub_config.clone())?);
        let addr = eventually("the hub to listen", DEADLINE, || {
            let r = read_addr_file(&data, "hub.addr").ok();
            async move { Ok(r) }
        })
        .await?;
        if self.hub_addr.is_none() {
            self.hub_addr = Some(addr);
            edit_toml::<HubConfig>(&self.hub_config, |c| c.hub.listen = addr)?;
            for cfg in self.node_configs.values() {
                edit_toml::<NodeConfig>(cfg, |c| {
                    c.hub.addr = Some(addr);
                    c.api.listen = "127.0.0.1:0".parse().expect("addr");
                })?;
            }
        }
        Ok(())
    }

    /// Kills the hub with SIGKILL (no chance to flush or say goodbye) and waits for it to die.
    pub async fn kill_hub(&mut self) -> Result<()> {
        if let Some(mut c) = self.hub.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Starts a department's node and waits until it has reached the hub.
    pub async fn start_node(&mut self, dept: &str) -> Result<()> {
        let data = self.spawn_node(dept)?;
        eventually(&format!("node {dept} to reach the hub"), DEADLINE, || {
            let data = data.clone();
            async move {
                let Ok(addr) = read_addr_file(&data, "api.addr") else {
                    return Ok(None);
                };
                let mut client =
                    pb::node_client::NodeClient::connect(format!("http://{addr}")).await?;
                Ok(client
                    .list_departments(pb::ListDepartmentsRequest {})
                    .await
                    .ok()
                    .map(|_| ()))
            }
        })
        .await
    }

    /// Starts a department's node and waits only until its API is bound (for configs whose API
    /// the harness cannot reach in plaintext).
    pub async fn start_node_unchecked(&mut self, dept: &str) -> Result<()> {
        let data = self.spawn_node(dept)?;
        eventually(&format!("node {dept} to bind its API"), DEADLINE, || {
            let r = read_addr_file(&data, "api.addr").ok().map(|_| ());
            async move { Ok(r) }
        })
        .await
    }

    /// Spawns a department's node (after removing a stale `api.addr`); returns its data dir.
    fn spawn_node(&mut self, dept: &str) -> Result<PathBuf> {
        let cfg = self
            .node_configs
            .get(dept)
            .with_context(|| format!("no department {dept}"))?
            .clone();
        let data = self.node_data_dir(dept);
        let _ = std::fs::remove_file(data.join("api.addr"));
        let child = self.spawn(dept, "exchange-node", &cfg)?;
        self.nodes.insert(dept.to_owned(), child);
        Ok(data)
    }

    /// Kills a node with SIGKILL.
    pub async fn kill_node(&mut self, dept: &str) -> Result<()> {
        if let Some(mut c) = self.nodes.remove(dept) {
            c.kill().await?;
        }
        Ok(())
    }

    /// Sends SIGTERM to the hub and waits (up to [`DEADLINE`]) for it to exit; returns its exit
    /// code.
    pub async fn stop_hub(&mut self) -> Result<Option<i32>> {
        let child = self.hub.take().context("the hub is not running")?;
        terminate(child).await
    }

    /// Sends SIGTERM to a node and waits for it to exit; returns its exit code.
    pub async fn stop_node(&mut self, dept: &str) -> Result<Option<i32>> {
        let child = self
            .nodes
            .remove(dept)
            .with_context(|| format!("node {dept} is not running"))?;
        terminate(child).await
    }

    /// The data directory of a department's node.
    pub fn node_data_dir(&self, dept: &str) -> PathBuf {
        exchange_core::config::load::<NodeConfig>(self.node_config(dept))
            .expect("node config")
            .node
            .data_dir
    }

    /// The hub's data directory.
    pub fn hub_data_dir(&self) -> PathBuf {
        self.hub_config.parent().expect("hub dir").join("data")
    }

    /// What opens the hub's sealed records (its data keys, through the KEK in its config), for
    /// tests that read the stopped hub's store directly.
    pub fn hub_sealer(&self) -> Result<exchange_core::store::sealing::Sealer> {
        let cfg: HubConfig = exchange_core::config::load(&self.hub_config)?;
        let keys = exchange_core::store::sealing::data_keys(
            &cfg.hub.data_dir,
            cfg.crypto.profile,
            cfg.encryption.as_ref(),
        )?;
        Ok(exchange_core::store::sealing::Sealer::new(keys))
    }

    /// Changes the (stopped) hub's config, e.g. its limits or expiry.
    pub fn edit_hub_config(&mut self, f: impl FnOnce(&mut HubConfig)) -> Result<()> {
        edit_toml::<HubConfig>(&self.hub_config, f)
    }

    /// Runs `exchange-certs <args>`; returns (success, stdout, stderr).
    pub async fn certs(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = Command::new(bin("exchange-certs"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await?;
        Ok((
            out.status.success(),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    }

    /// `exchange-certs revoke` of `who`'s TLS certificate (`who` is a directory of the layout:
    /// `hub`, a department) with `reason`, under the exchange's CA: a CRL of the CA's profile
    /// (SM2 under shangmi) where the daemons watch it. Fails unless it succeeds; returns what it
    /// printed on stderr.
    pub async fn revoke_tls(&self, who: &str, reason: &str) -> Result<String> {
        let cert = self.layout_dir().join(who).join("tls.pem");
        let ca_dir = self.layout_dir().join("ca");
        let (ok, _, err) = self
            .certs(&[
                "revoke",
                "--ca-dir",
                ca_dir.to_str().context("utf-8 path")?,
                "--cert",
                cert.to_str().context("utf-8 path")?,
                "--reason",
                reason,
            ])
            .await?;
        anyhow::ensure!(ok, "exchange-certs revoke {}: {err}", cert.display());
        Ok(err)
    }

    /// Revokes department `dept`'s TLS certificate ([`Self::revoke_tls`], key compromise) while
    /// its node is connected, and waits until the hub, re-reading its CRL without a restart,
    /// has cut the connection.
    pub async fn revoke_connected_dept(&self, dept: &str) -> Result<()> {
        let err = self.revoke_tls(dept, "key-compromise").await?;
        anyhow::ensure!(
            err.contains(&format!("revoked: department {dept}")),
            "revoke names the department: {err}"
        );
        self.wait_logged("hub", "connection cut: its certificate was revoked")
            .await
    }

    /// Waits until a daemon's log ([`Self::log`]) contains `text`.
    pub async fn wait_logged(&self, name: &str, text: &str) -> Result<()> {
        eventually(&format!("{name} to log {text:?}"), DEADLINE, || async {
            Ok(self.log(name).contains(text).then_some(()))
        })
        .await
    }

    /// `exchange-certs verify <bundle> --ca <the exchange CA>`, which must succeed and report
    /// the header digest of the exchange's profile (`sm3` under shangmi); returns the report.
    pub async fn verify_bundle(&self, bundle: &Path) -> Result<String> {
        let ca = self.layout_dir().join("ca/ca.pem");
        let (ok, report, err) = self
            .certs(&[
                "verify",
                bundle.to_str().context("utf-8 path")?,
                "--ca",
                ca.to_str().context("utf-8 path")?,
            ])
            .await?;
        anyhow::ensure!(ok, "{} does not verify: {err}", bundle.display());
        let digest = self.profile.digest().name();
        anyhow::ensure!(
            report
                .lines()
                .any(|l| l.starts_with("header") && l.contains(digest)),
            "the header digest is {digest}: {report}"
        );
        Ok(report)
    }

    /// What a daemon (`hub`, or a department's node) has logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Changes a (stopped) node's config, e.g. its data directory or limits.
    pub fn edit_node_config(&mut self, dept: &str, f: impl FnOnce(&mut NodeConfig)) -> Result<()> {
        let cfg = self
            .node_configs
            .get(dept)
            .with_context(|| format!("no department {dept}"))?
            .clone();
        edit_toml::<NodeConfig>(&cfg, f)
    }

    /// A client of a department node's local API (reads the address it bound).
    pub async fn node_api(
        &self,
        dept: &str,
    ) -> Result<pb::node_client::NodeClient<tonic::transport::Channel>> {
        let cfg: NodeConfig = exchange_core::config::load(self.node_config(dept))?;
        let addr = read_addr_file(&cfg.node.data_dir, "api.addr")?;
        let client = pb::node_client::NodeClient::connect(format!("http://{addr}")).await?;
        Ok(client
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20))
    }

    /// The pid of a running node, for signals a test sends itself.
    pub fn node_pid(&self, dept: &str) -> Option<u32> {
        self.nodes.get(dept).and_then(Child::id)
    }

    /// The pid of the running hub.
    pub fn hub_pid(&self) -> Option<u32> {
        self.hub.as_ref().and_then(Child::id)
    }

    /// Runs `exchange-node --config <dept's node.toml> <args>`; returns (success, stdout, stderr).
    pub async fn cli(&self, dept: &str, args: &[&str]) -> Result<(bool, String, String)> {
        let out = Command::new(bin("exchange-node"))
            .arg("--config")
            .arg(self.node_config(dept))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await?;
        Ok((
            out.status.success(),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    }

    /// Runs `exchange-hub --config <hub.toml> <args>`; returns (success, stdout, stderr).
    pub async fn hub_cli(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = Command::new(bin("exchange-hub"))
            .arg("--config")
            .arg(&self.hub_config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await?;
        Ok((
            out.status.success(),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    }

    /// Runs `exchange-hub <args>` for a question the administrator asks the hub (`audit …`,
    /// `backup`): through the running hub where [`admin_reaches_hub`] says its client can, else
    /// on the stopped hub's store (the hub is stopped first if it runs, and stays stopped).
    pub async fn hub_admin_cli(&mut self, args: &[&str]) -> Result<(bool, String, String)> {
        if !admin_reaches_hub(self.profile) && self.hub.is_some() {
            self.stop_hub().await?;
        }
        self.hub_cli(args).await
    }

    /// Like [`cli`](Self::cli), but fails unless the command succeeds; returns stdout.
    pub async fn cli_ok(&self, dept: &str, args: &[&str]) -> Result<String> {
        let (ok, out, err) = self.cli(dept, args).await?;
        if !ok {
            bail!("exchange-node {args:?} at {dept} failed:\n{err}");
        }
        Ok(out)
    }

    /// `--json` output of a CLI command, parsed.
    pub async fn cli_json(&self, dept: &str, args: &[&str]) -> Result<serde_json::Value> {
        let out = self.cli_ok(dept, args).await?;
        serde_json::from_str(&out).with_context(|| format!("parsing JSON of {args:?}: {out}"))
    }

    /// A gRPC client of the hub presenting `dept`'s TLS certificate, as that department's node
    /// would: for tests that speak the hub protocol directly.
    pub async fn hub_client_as(
        &self,
        dept: &str,
    ) -> Result<pb::hub_client::HubClient<tonic::transport::Channel>> {
        Ok(pb::hub_client::HubClient::new(
            self.hub_channel_as(dept).await?,
        ))
    }

    /// A channel to the hub over the exchange's channel (TLS 1.3, or TLCP under shangmi),
    /// presenting `dept`'s node certificate(s) as its node does: the handshake has completed,
    /// or the error says why the hub refused it.
    pub async fn hub_channel_as(&self, dept: &str) -> Result<tonic::transport::Channel> {
        let cfg: NodeConfig = exchange_core::config::load(self.node_config(dept))?;
        let endpoint = exchange_core::tls::hub_endpoint(
            self.hub_addr(),
            &cfg.tls,
            cfg.crypto.profile,
            &cfg.hub.server_name,
        )?;
        Ok(endpoint.connect().await?)
    }

    fn dump_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("logs")) else {
            return;
        };
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!(
                "----- {} (last {} lines) -----",
                e.path().display(),
                tail.len()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if std::env::var_os("EXCHANGE_KEEP_TEST_DIR").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("keeping test directory {}", dir.keep().display());
        }
    }
}

/// Whether `exchange-hub audit …`/`backup` reach a running hub of `profile` through its
/// `Admin` service: under both profiles, since the administrator's client speaks the hub's
/// channel (TLCP or RFC 8998 under shangmi, with `[admin] enc_cert`/`enc_key`; docs/shangmi.md).
pub fn admin_reaches_hub(_profile: Profile) -> bool {
    true
}

/// Sends `signal` (e.g. "TERM", "STOP", "CONT") to `pid`.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

async fn terminate(mut child: Child) -> Result<Option<i32>> {
    let pid = child.id().context("process already reaped")?;
    signal(pid, "TERM")?;
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .context("no exit within the deadline after SIGTERM")??;
    Ok(status.code())
}

/// Rewrites a config file in place through its typed form, keeping paths relative.
fn edit_toml<T: serde::de::DeserializeOwned + serde::Serialize>(
    path: &Path,
    f: impl FnOnce(&mut T),
) -> Result<()> {
    let mut cfg: T = toml::from_str(&std::fs::read_to_string(path)?)?;
    f(&mut cfg);
    std::fs::write(path, toml::to_string_pretty(&cfg)?)?;
    Ok(())
}

/// Writes a file of `len` pseudo-random bytes (seeded) and returns its path.
pub fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> Result<PathBuf> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    let path = dir.join(name);
    std::fs::write(&path, &data)?;
    Ok(path)
}

/// The SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(exchange_core::signing::Digest::of(&data).to_hex())
}

/// Opens a raw TLS connection to `addr` trusting `ca_pem`, presenting `client` (cert PEM, key
/// PEM) if given, and reports how the server answered: `Ok(())` if it accepted the session, or
/// the error (e.g. the TLS alert it sent) if it refused it.
pub async fn tls_probe(
    addr: SocketAddr,
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<std::result::Result<(), String>> {
    tls_probe_versions(addr, ca_pem, client, rustls::DEFAULT_VERSIONS).await
}

/// [`tls_probe`] offering only the protocol `versions` given (e.g. `&[&rustls::version::TLS12]`),
/// for the refusal of a client that cannot speak TLS 1.3.
pub async fn tls_probe_versions(
    addr: SocketAddr,
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<std::result::Result<(), String>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    exchange_core::tls::install_ring_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(certs, PrivateKeyDer::from_pem_slice(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = match connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
    {
        Ok(t) => t,
        Err(e) => return Ok(Err(e.to_string())),
    };
    // TLS 1.3: the server judges the client certificate after the client's handshake is done,
    // so its verdict arrives on the first read. An HTTP/2 preface makes a healthy server answer.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await? {
        Ok(n) if n > 0 => Ok(Ok(())),
        Ok(_) => Ok(Err("connection closed".to_owned())),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// A document for [`submit`]: recipients, title, urgency and content parts (name, bytes).
#[derive(Debug, Clone)]
pub struct Draft {
    /// 主送.
    pub to: Vec<String>,
    /// 标题.
    pub title: String,
    /// 紧急程度.
    pub urgency: pb::Urgency,
    /// Content parts: the first is the body.
    pub parts: Vec<(String, Vec<u8>)>,
    /// Idempotency key (empty: none).
    pub key: String,
}

/// Submits `draft` through a node's local API, in 256 KiB chunks; returns the document id.
pub async fn submit(
    client: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
    draft: &Draft,
) -> std::result::Result<String, tonic::Status> {
    let metadata = pb::DocumentMetadata {
        title: draft.title.clone(),
        to_depts: draft.to.clone(),
        urgency: draft.urgency.into(),
        doc_type: pb::DocumentType::Notice.into(),
        ..Default::default()
    };
    let parts = draft
        .parts
        .iter()
        .enumerate()
        .map(|(i, (name, data))| pb::PartSpec {
            role: if i == 0 {
                pb::PartRole::Body
            } else {
                pb::PartRole::Attachment
            }
            .into(),
            name: name.clone(),
            media_type: "application/octet-stream".into(),
            size: data.len() as u64,
        })
        .collect();
    use pb::submit_document_request::Msg;
    let mut msgs = vec![pb::SubmitDocumentRequest {
        msg: Some(Msg::Draft(pb::DocumentDraft {
            idempotency_key: draft.key.clone(),
            metadata: Some(metadata),
            parts,
        })),
    }];
    for (i, (_, data)) in draft.parts.iter().enumerate() {
        for chunk in data.chunks(256 * 1024) {
            let part = u32::try_from(i).unwrap_or(u32::MAX);
            msgs.push(pb::SubmitDocumentRequest {
                msg: Some(Msg::Chunk(pb::PartChunk {
                    part,
                    data: chunk.to_vec(),
                })),
            });
        }
    }
    let resp = client.submit(tokio_stream::iter(msgs)).await?;
    Ok(resp.into_inner().doc_id)
}

/// Every part of a received document, fetched through the node's API: (name, bytes).
pub async fn fetch_content(
    client: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
    id: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut stream = client
        .fetch_document(pb::FetchDocumentRequest {
            doc_id: id.to_owned(),
            with_content: true,
        })
        .await?
        .into_inner();
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(msg) = stream.message().await? {
        match msg.msg {
            Some(pb::fetch_document_response::Msg::Document(d)) => {
                let header = d.header.context("no header")?;
                parts = header
                    .parts
                    .into_iter()
                    .map(|p| (p.name, Vec::new()))
                    .collect();
            }
            Some(pb::fetch_document_response::Msg::Chunk(c)) => {
                let part = parts
                    .get_mut(c.part as usize)
                    .context("chunk for an unknown part")?;
                part.1.extend_from_slice(&c.data);
            }
            None => bail!("empty message"),
        }
    }
    Ok(parts)
}

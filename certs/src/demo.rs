//! `demo-setup`: a complete exchange on one machine, for trying it out and for tests.
//!
//! One directory holds a fresh CA, the hub and one node per department, each with its
//! certificates, keys and a config file whose paths are relative to the file itself, so the
//! directory can be moved as a whole. Everything listens on loopback only.
//!
//! [`build_exchange`] lays out one such exchange; `demo-federation` ([`crate::federation`])
//! calls it once per linked exchange, with the links its hub.toml gets.
//!
//! The demo's crypto profile is its CA's ([`crate::Authority`]); every config states it in
//! `[crypto] profile`, and under `shangmi` names TLCP's encryption pair in `[tls] enc_cert` and
//! `enc_key`. Both profiles write the CA's (empty) revocation list, an SM2 CRL under shangmi.

use std::{
    collections::BTreeSet,
    fmt, fs,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context, Result, bail, ensure};
use exchange_core::{
    atrest::{Kek, KekSource},
    config::{
        AdminClient, ApiSection, AuditSection, CryptoSection, DEFAULT_MAX_DOCUMENT_BYTES,
        DirectoryEntry, EncryptionSection, ForeignExchange, HubConfig, HubLink, HubSection,
        NodeConfig, NodeSection, PeerEntry, SigningPaths, TlsPaths,
    },
    crypto::Profile,
    identity::Principal,
    ids::{DeptId, ExchangeName, IdError},
};
use serde::Serialize;

use crate::{
    Authority, Validity,
    files::{
        CA_CERT_FILE, CA_KEY_FILE, PUBLIC_MODE, SIGNING_CERT_FILE, SIGNING_KEY_FILE, TLS_CERT_FILE,
        TLS_ENC_CERT_FILE, TLS_ENC_KEY_FILE, TLS_KEY_FILE, replace_file,
    },
};

/// Lifetime of the demo CA: ten years.
const CA_DAYS: i64 = 3650;
/// Lifetime of the hub's and nodes' certificates: one year.
const LEAF_DAYS: i64 = 365;
/// The key-encryption key of a demo store, beside its config.
const KEK_FILE: &str = "kek.key";
/// The name nodes (and peer hubs) verify in the hub's certificate: its DNS SAN `localhost`.
pub(crate) const HUB_SERVER_NAME: &str = "localhost";
/// Directory names that a department id must not take.
const RESERVED_DIRS: [&str; 3] = ["ca", "hub", "admin"];

/// A department of the demo: `id` or `id=显示名` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeptSpec {
    /// The department's id (its directory name and certificate identity).
    pub id: DeptId,
    /// Display name in the hub's directory; the id when none is given.
    pub name: String,
}

/// Why a `--departments` entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeptSpecError {
    /// The part before `=` is not a valid department id.
    Id(IdError),
    /// `id=` with nothing after the `=`.
    EmptyName(String),
}

impl fmt::Display for DeptSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeptSpecError::Id(e) => e.fmt(f),
            DeptSpecError::EmptyName(id) => write!(f, "empty display name for department {id}"),
        }
    }
}

impl std::error::Error for DeptSpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeptSpecError::Id(e) => Some(e),
            DeptSpecError::EmptyName(_) => None,
        }
    }
}

impl FromStr for DeptSpec {
    type Err = DeptSpecError;

    fn from_str(s: &str) -> Result<Self, DeptSpecError> {
        let (id, name) = match s.split_once('=') {
            Some((id, name)) => (id.trim(), Some(name.trim())),
            None => (s.trim(), None),
        };
        let id: DeptId = id.parse().map_err(DeptSpecError::Id)?;
        let name = match name {
            Some("") => return Err(DeptSpecError::EmptyName(id.to_string())),
            Some(name) => name.to_owned(),
            None => id.to_string(),
        };
        Ok(DeptSpec { id, name })
    }
}

/// Where `demo_setup` put things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoLayout {
    /// The demo directory, absolute.
    pub dir: PathBuf,
    /// The CA certificate (`DIR/ca/ca.pem`).
    pub ca_cert: PathBuf,
    /// The hub's config (`DIR/hub/hub.toml`).
    pub hub_config: PathBuf,
    /// The address the hub will listen on.
    pub hub_addr: SocketAddr,
    /// Each department's id and node config (`DIR/<id>/node.toml`), in the order given.
    pub nodes: Vec<(DeptId, PathBuf)>,
}

/// The key-encryption key of the store in `dir` (`dir/kek.key`, mode 0600): made now, or kept
/// when an earlier demo made it (`--force`), so that the data directory it encrypted still
/// opens. A demo keeps it beside the config for convenience; docs/security.md says where a real
/// one belongs.
fn ensure_kek(dir: &Path) -> Result<EncryptionSection> {
    let path = dir.join(KEK_FILE);
    if path.exists() {
        Kek::load(&KekSource::File(path.clone()))
            .with_context(|| format!("keeping the existing {}", path.display()))?;
    } else {
        Kek::generate(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(EncryptionSection {
        kek: Some(KEK_FILE.into()),
        kek_credential: None,
    })
}

/// Creates a demo exchange in `dir`: a new CA, the hub and one node per department.
///
/// Refuses a non-empty `dir` unless `force`, which overwrites the files it writes (including
/// the CA key) but deletes nothing else. With `base_port` P the hub listens on P and the i-th
/// department's API on P+1+i; without, free loopback ports are chosen.
pub fn demo_setup(
    dir: &Path,
    depts: &[DeptSpec],
    base_port: Option<u16>,
    force: bool,
) -> Result<DemoLayout> {
    demo_setup_with_profile(dir, depts, base_port, force, Profile::International)
}

/// [`demo_setup`] with a CA of `profile`. A profile this build lacks is refused before
/// anything is written.
pub fn demo_setup_with_profile(
    dir: &Path,
    depts: &[DeptSpec],
    base_port: Option<u16>,
    force: bool,
    profile: Profile,
) -> Result<DemoLayout> {
    crate::ensure_built(profile)?;
    check_departments(depts)?;
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    prepare_dir(&dir, force)?;
    let ports = match base_port {
        Some(base) => consecutive_ports(base, depts.len() + 1)?,
        None => free_ports(depts.len() + 1)?,
    };
    build_exchange(&ExchangePlan {
        dir,
        depts,
        ports: &ports,
        force,
        profile,
        ca_name: "Exchange Demo CA",
        links: HubLinks::default(),
        command: "demo-setup",
    })
}

/// `[hub] exchange`, `[hub] peer_listen`, `[[peers]]` and `[[exchanges]]` of a demo hub: all
/// empty for a standalone exchange (`demo-setup`), filled in by `demo-federation`.
#[derive(Debug, Default)]
pub(crate) struct HubLinks {
    /// The exchange's name: `[hub] exchange`, and the URI SAN of its CA.
    pub(crate) exchange: Option<ExchangeName>,
    /// Where peer hubs connect.
    pub(crate) peer_listen: Option<SocketAddr>,
    /// The linked exchanges' hubs.
    pub(crate) peers: Vec<PeerEntry>,
    /// Exchanges further away whose CAs the hub needs.
    pub(crate) exchanges: Vec<ForeignExchange>,
}

/// One exchange of a demo, as [`build_exchange`] lays it out.
#[derive(Debug)]
pub(crate) struct ExchangePlan<'a> {
    /// The exchange's directory, absolute; created, and accepted by [`prepare_dir`] already.
    pub(crate) dir: PathBuf,
    /// Its departments, checked by [`check_departments`] already.
    pub(crate) depts: &'a [DeptSpec],
    /// The hub's port, then one API port per department.
    pub(crate) ports: &'a [u16],
    /// Replace an earlier demo's CA (its key and revocation list) in `dir`.
    pub(crate) force: bool,
    /// The CA's profile.
    pub(crate) profile: Profile,
    /// The CA certificate's common name.
    pub(crate) ca_name: &'a str,
    /// Links to other exchanges, written into hub.toml as they are (paths relative to it).
    pub(crate) links: HubLinks,
    /// The `exchange-certs` subcommand named in the files' headers.
    pub(crate) command: &'a str,
}

/// Lays out one exchange in `plan.dir`: a new CA (naming `plan.links.exchange`, if any), the
/// hub, an administrator, one node per department, and a README.txt.
pub(crate) fn build_exchange(plan: &ExchangePlan<'_>) -> Result<DemoLayout> {
    let ExchangePlan {
        dir,
        depts,
        ports,
        force,
        profile,
        ca_name,
        links,
        command,
    } = plan;
    let (profile, force, dir) = (*profile, *force, dir.clone());
    ensure!(
        ports.len() == depts.len() + 1,
        "BUG: {} ports for a hub and {} departments",
        ports.len(),
        depts.len()
    );
    let hub_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));

    let ca_dir = dir.join("ca");
    if force {
        remove_if_present(&ca_dir.join(CA_KEY_FILE))?;
        remove_if_present(&ca_dir.join(crate::revoke::REVOKED_FILE))?;
    }
    let ca = Authority::generate(
        profile,
        ca_name,
        links.exchange.as_ref(),
        Validity::days_from_now(CA_DAYS),
    )?;
    ca.write(&ca_dir)?;
    // An empty revocation list, which the hub and nodes watch: `exchange-certs revoke` updates
    // it in place, and the running daemons pick that up (an SM2 CRL under shangmi).
    crate::revoke::write_current_crl(&ca_dir, None)?;
    let leaf = Validity::days_from_now(LEAF_DAYS);
    let crypto = CryptoSection { profile };

    let hub_dir = dir.join("hub");
    if links.peers.is_empty() {
        ca.issue_into_dir(&Principal::Hub, &[], &[], leaf, &hub_dir)?;
    } else {
        // It dials its peers' hubs too, which check clientAuth.
        ca.issue_linked_hub_into(&[], &[], leaf, &hub_dir)?;
    }
    let hub_kek = ensure_kek(&hub_dir)?;
    let hub = HubConfig {
        crypto,
        hub: HubSection {
            listen: hub_addr,
            data_dir: "data".into(),
            allow_classified: false,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            expire_undelivered_after_secs: 0,
            expire_at_reply_deadline: true,
            lease_secs: HubSection::DEFAULT_LEASE_SECS,
            exchange: links.exchange.clone(),
            peer_listen: links.peer_listen,
        },
        tls: tls_paths(profile),
        signing: signing_paths(),
        departments: depts
            .iter()
            .map(|d| DirectoryEntry {
                id: d.id.clone(),
                name: d.name.clone(),
                level: None,
                parent: None,
            })
            .collect(),
        audit: AuditSection::default(),
        admin: Some(admin_paths(profile)),
        limits: Default::default(),
        routing: Default::default(),
        metrics: None,
        log: Default::default(),
        groups: Vec::new(),
        reminders: Default::default(),
        calendar: Default::default(),
        encryption: Some(hub_kek),
        store: Default::default(),
        peer_limits: Default::default(),
        peers: links.peers.clone(),
        exchanges: links.exchanges.clone(),
    };
    hub.check_links()
        .with_context(|| format!("BUG: the links of {}'s hub", dir.display()))?;
    // An administrator for the audit commands (`exchange-hub --config hub.toml audit ...`).
    let admin_dir = dir.join("admin");
    std::fs::create_dir_all(&admin_dir)
        .with_context(|| format!("creating {}", admin_dir.display()))?;
    ca.issue_tls_into(
        &Principal::Admin("admin".into()),
        &[],
        &[],
        leaf,
        &admin_dir,
    )?;
    let hub_config = hub_dir.join("hub.toml");
    write_toml(&hub_config, "Hub", command, &hub)?;

    let mut nodes = Vec::with_capacity(depts.len());
    for (dept, port) in depts.iter().zip(&ports[1..]) {
        let node_dir = dir.join(dept.id.as_str());
        ca.issue_into_dir(&Principal::Dept(dept.id.clone()), &[], &[], leaf, &node_dir)?;
        let kek = ensure_kek(&node_dir)?;
        let node = NodeConfig {
            crypto,
            node: NodeSection {
                id: dept.id.clone(),
                data_dir: "data".into(),
                max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            },
            api: ApiSection {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
                tls: None,
            },
            hub: HubLink {
                addr: Some(hub_addr),
                addresses: Vec::new(),
                server_name: HUB_SERVER_NAME.to_owned(),
                max_in_flight: exchange_core::config::DEFAULT_MAX_IN_FLIGHT,
            },
            tls: tls_paths(profile),
            signing: signing_paths(),
            metrics: None,
            log: Default::default(),
            reminders: Default::default(),
            calendar: Default::default(),
            encryption: Some(kek),
        };
        let node_config = node_dir.join("node.toml");
        write_toml(
            &node_config,
            &format!("Node of department {}", dept.id),
            command,
            &node,
        )?;
        nodes.push((dept.id.clone(), node_config));
    }

    let layout = DemoLayout {
        ca_cert: ca_dir.join(CA_CERT_FILE),
        hub_config,
        hub_addr,
        nodes,
        dir,
    };
    let readme = readme(&layout, profile, command);
    replace_file(
        &layout.dir.join("README.txt"),
        readme.as_bytes(),
        PUBLIC_MODE,
    )?;
    Ok(layout)
}

/// At least one department, no duplicates, none named like the CA's or hub's directory.
pub(crate) fn check_departments(depts: &[DeptSpec]) -> Result<()> {
    ensure!(!depts.is_empty(), "a demo needs at least one department");
    let mut seen = BTreeSet::new();
    for d in depts {
        ensure!(seen.insert(&d.id), "department {} is listed twice", d.id);
        ensure!(
            !RESERVED_DIRS.contains(&d.id.as_str()),
            "department id {} is reserved for the demo's {}/ directory",
            d.id,
            d.id
        );
    }
    Ok(())
}

/// Creates `dir`, or accepts it if it is empty (or `force`).
pub(crate) fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        ensure!(dir.is_dir(), "{} is not a directory", dir.display());
        let mut entries =
            fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() && !force {
            bail!(
                "{} is not empty (use --force to overwrite the demo in it)",
                dir.display()
            );
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `n` ports from `base` on.
pub(crate) fn consecutive_ports(base: u16, n: usize) -> Result<Vec<u16>> {
    ensure!(base != 0, "base port must not be 0");
    (0..n)
        .map(|i| {
            let port = u16::try_from(i).ok().and_then(|i| base.checked_add(i));
            port.with_context(|| format!("{n} ports from {base} on go past 65535"))
        })
        .collect()
}

/// `n` distinct free loopback ports. All listeners stay bound until every port is chosen, so
/// the kernel cannot hand out the same port twice; they are released on return.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding 127.0.0.1:0 to find a free port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("reading a bound port")?.port()))
        .collect()
}

/// The hub's and every node's TLS files, relative to their config file: under shangmi with
/// TLCP's encryption pair; the CA's revocation list under both profiles.
fn tls_paths(profile: Profile) -> TlsPaths {
    let shangmi = profile == Profile::Shangmi;
    TlsPaths {
        ca: Path::new("..").join("ca").join(CA_CERT_FILE),
        cert: TLS_CERT_FILE.into(),
        key: TLS_KEY_FILE.into(),
        enc_cert: shangmi.then(|| TLS_ENC_CERT_FILE.into()),
        enc_key: shangmi.then(|| TLS_ENC_KEY_FILE.into()),
        crl: Some(Path::new("..").join("ca").join(crate::revoke::CRL_FILE)),
        protocol: None,
    }
}

/// `[admin]` of the hub: the administrator's identity in `../admin`, with TLCP's encryption
/// pair under shangmi (as `[tls]`).
fn admin_paths(profile: Profile) -> AdminClient {
    let admin = Path::new("..").join("admin");
    let shangmi = profile == Profile::Shangmi;
    AdminClient {
        cert: admin.join(TLS_CERT_FILE),
        key: admin.join(TLS_KEY_FILE),
        enc_cert: shangmi.then(|| admin.join(TLS_ENC_CERT_FILE)),
        enc_key: shangmi.then(|| admin.join(TLS_ENC_KEY_FILE)),
    }
}

fn signing_paths() -> SigningPaths {
    SigningPaths {
        cert: SIGNING_CERT_FILE.into(),
        key: SIGNING_KEY_FILE.into(),
    }
}

fn write_toml(path: &Path, what: &str, command: &str, value: &impl Serialize) -> Result<()> {
    let body =
        toml::to_string_pretty(value).with_context(|| format!("encoding {}", path.display()))?;
    let text = format!(
        "# {what} of the demo exchange, written by `exchange-certs {command}`.\n\
         # Relative paths are resolved against the directory of this file.\n\n{body}"
    );
    replace_file(path, text.as_bytes(), PUBLIC_MODE)
}

fn readme(layout: &DemoLayout, profile: Profile, command: &str) -> String {
    let mut text = format!(
        "Demo document exchange, written by `exchange-certs {command}`.\n\n\
         ca/     the exchange CA (ca.key signs every certificate here; keep it private)\n\
         hub/    the hub: hub.toml, TLS and document-signing certificates and keys\n\
         <dept>/ one node per department: node.toml, certificates and keys\n\n\
         Start the hub (listens on {}):\n    exchange-hub serve --config {}\n\n\
         Then start each department's node, one terminal each:\n",
        layout.hub_addr,
        layout.hub_config.display()
    );
    for (id, config) in &layout.nodes {
        text.push_str(&format!(
            "    exchange-node serve --config {}    # {id}\n",
            config.display()
        ));
    }
    text.push_str("\nEach daemon keeps its data in a data/ directory next to its config file.\n");
    if profile == Profile::Shangmi {
        text.push_str(
            "\nThis demo uses the shangmi (国密) profile: every certificate is SM2, signed \
             SM2-with-SM3,\nand each TLS identity has TLCP's encryption pair (tls-enc.pem, \
             tls-enc.key) beside tls.pem.\nThe daemons serve it over TLCP when built with \
             `--features shangmi`: see docs/shangmi.md.\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dept_specs_parse_with_and_without_names() -> Result<()> {
        let plain: DeptSpec = "finance".parse()?;
        assert_eq!(
            (plain.id.as_str(), plain.name.as_str()),
            ("finance", "finance")
        );
        let named: DeptSpec = "finance=市财政局".parse()?;
        assert_eq!(
            (named.id.as_str(), named.name.as_str()),
            ("finance", "市财政局")
        );
        assert!(matches!(
            "Bad=x".parse::<DeptSpec>(),
            Err(DeptSpecError::Id(_))
        ));
        assert!(matches!(
            "a=".parse::<DeptSpec>(),
            Err(DeptSpecError::EmptyName(_))
        ));
        Ok(())
    }

    #[test]
    fn reserved_and_duplicate_departments_are_refused() -> Result<()> {
        let spec = |s: &str| s.parse::<DeptSpec>();
        assert!(check_departments(&[spec("hub")?]).is_err());
        assert!(check_departments(&[spec("a")?, spec("a=A")?]).is_err());
        assert!(check_departments(&[]).is_err());
        assert!(consecutive_ports(65535, 2).is_err());
        assert_eq!(consecutive_ports(65534, 2)?, [65534, 65535]);
        Ok(())
    }
}

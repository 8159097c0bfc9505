//! `demo-federation`: several linked demo exchanges on one machine (issue 18,
//! docs/federation.md), e.g. a province, a city and a county.
//!
//! Each exchange is a complete `demo-setup` layout in its own directory, with its own CA (which
//! names the exchange in its URI SAN), hub and nodes. The exchanges form a chain in the order
//! given: each hub's `[[peers]]` are the exchange before it (its parent, routing `"*"`) and the
//! one after it (its child, routing every exchange further down), with the peer's CA pinned in
//! `hub/peers/<name>-ca.pem`; every other exchange is listed in `[[exchanges]]` with its CA, so
//! each hub can check every exchange's signatures.

use std::{
    collections::BTreeSet,
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context, Result, ensure};
use exchange_core::{
    config::{ForeignExchange, HubConfig, PeerEntry, Route},
    crypto::Profile,
    ids::{ExchangeName, IdError},
};

use crate::{
    DemoLayout, DeptSpec, DeptSpecError, UsageError,
    demo::{
        ExchangePlan, HUB_SERVER_NAME, HubLinks, build_exchange, check_departments,
        consecutive_ports, free_ports, prepare_dir,
    },
    files::{PUBLIC_MODE, replace_file},
};

/// The directory, beside hub.toml, holding the other exchanges' CA certificates.
const PEERS_DIR: &str = "peers";

/// Help of `demo-federation --base-port`: the port scheme.
pub const PORT_SCHEME_HELP: &str = "First port of a consecutive range, allocated exchange by \
    exchange in the order of --exchanges: each exchange takes a block of 2 + (its number of \
    departments) ports, namely its hub's listen (nodes connect), its hub's peer_listen (peer \
    hubs connect), then one API port per department in the order given. E.g. with 7000 and \
    `province=office,health city=finance,education county=tax`: province 7000 (hub), 7001 \
    (peers), 7002 office, 7003 health; city 7004, 7005, 7006 finance, 7007 education; county \
    7008, 7009, 7010 tax. Default: free loopback ports chosen now";

/// One exchange of the demo: `NAME=DEPT[,DEPT...]` on the command line, each department `id`
/// or `id=显示名`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// The exchange's name (its directory and `[hub] exchange`).
    pub name: ExchangeName,
    /// Its departments, in the order given.
    pub departments: Vec<DeptSpec>,
}

/// Why an `--exchanges` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeSpecError {
    /// No `=` between the exchange's name and its departments.
    MissingDepartments(String),
    /// The part before `=` is not a valid exchange name.
    Name(IdError),
    /// A department after `=` could not be read.
    Department(DeptSpecError),
}

impl fmt::Display for ExchangeSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeSpecError::MissingDepartments(s) => write!(
                f,
                "{s:?}: name the exchange's departments, as NAME=DEPT[,DEPT...]"
            ),
            ExchangeSpecError::Name(e) => e.fmt(f),
            ExchangeSpecError::Department(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ExchangeSpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExchangeSpecError::MissingDepartments(_) => None,
            ExchangeSpecError::Name(e) => Some(e),
            ExchangeSpecError::Department(e) => Some(e),
        }
    }
}

impl FromStr for ExchangeSpec {
    type Err = ExchangeSpecError;

    fn from_str(s: &str) -> Result<Self, ExchangeSpecError> {
        let (name, depts) = s
            .split_once('=')
            .ok_or_else(|| ExchangeSpecError::MissingDepartments(s.to_owned()))?;
        let name = name.trim().parse().map_err(ExchangeSpecError::Name)?;
        let departments = depts
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<DeptSpec>, _>>()
            .map_err(ExchangeSpecError::Department)?;
        if departments.is_empty() {
            return Err(ExchangeSpecError::MissingDepartments(s.to_owned()));
        }
        Ok(ExchangeSpec { name, departments })
    }
}

/// One exchange of a federation demo, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedExchange {
    /// Its name.
    pub name: ExchangeName,
    /// Where its hub listens for peer hubs (`[hub] peer_listen`).
    pub peer_listen: SocketAddr,
    /// Its demo layout, in `DIR/<name>`.
    pub layout: DemoLayout,
}

/// Where `demo_federation` put things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationLayout {
    /// The demo directory, absolute.
    pub dir: PathBuf,
    /// The exchanges, parent first, in the order given.
    pub exchanges: Vec<LinkedExchange>,
}

/// Creates linked demo exchanges in `dir`, one directory each, chained in the order of
/// `specs` (each the parent of the next).
///
/// Refuses a non-empty `dir` unless `force` (as [`crate::demo_setup`]); refuses the shangmi
/// profile, as linking is international-only for now. Ports as [`PORT_SCHEME_HELP`] says.
/// Every hub.toml written is loaded back and its links checked before this returns.
pub fn demo_federation(
    dir: &Path,
    specs: &[ExchangeSpec],
    base_port: Option<u16>,
    force: bool,
    profile: Profile,
) -> Result<FederationLayout> {
    if profile != Profile::International {
        return Err(UsageError(format!(
            "demo-federation: linked exchanges are international-only for now, not {profile}"
        ))
        .into());
    }
    check_exchanges(specs)?;
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    prepare_dir(&dir, force)?;
    let ports = federation_ports(specs, base_port)?;
    let local = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Block i: hub listen, peer_listen, then the departments' APIs.
    let peer_listen: Vec<SocketAddr> = ports.iter().map(|block| local(block[1])).collect();

    let mut exchanges = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let block = &ports[i];
        let hub_ports: Vec<u16> = std::iter::once(block[0])
            .chain(block[2..].iter().copied())
            .collect();
        let layout = build_exchange(&ExchangePlan {
            dir: dir.join(spec.name.as_str()),
            depts: &spec.departments,
            ports: &hub_ports,
            force,
            profile,
            ca_name: &format!("Exchange Demo CA ({})", spec.name),
            links: links(specs, i, &peer_listen),
            command: "demo-federation",
        })
        .with_context(|| format!("laying out exchange {}", spec.name))?;
        exchanges.push(LinkedExchange {
            name: spec.name.clone(),
            peer_listen: peer_listen[i],
            layout,
        });
    }
    // Every CA exists now: give each hub the others' certificates its hub.toml names.
    for here in &exchanges {
        let peers_dir = here.layout.hub_config.with_file_name(PEERS_DIR);
        std::fs::create_dir_all(&peers_dir)
            .with_context(|| format!("creating {}", peers_dir.display()))?;
        for there in exchanges.iter().filter(|e| e.name != here.name) {
            let pem = std::fs::read(&there.layout.ca_cert)
                .with_context(|| format!("reading {}", there.layout.ca_cert.display()))?;
            replace_file(
                &peers_dir.join(peer_ca_file(&there.name)),
                &pem,
                PUBLIC_MODE,
            )?;
        }
    }
    let layout = FederationLayout { dir, exchanges };
    for e in &layout.exchanges {
        check_hub_config(&e.layout.hub_config)?;
    }
    replace_file(
        &layout.dir.join("README.txt"),
        readme(&layout).as_bytes(),
        PUBLIC_MODE,
    )?;
    Ok(layout)
}

/// At least two exchanges, distinct names, each with valid departments.
fn check_exchanges(specs: &[ExchangeSpec]) -> Result<()> {
    ensure!(
        specs.len() >= 2,
        "a federation demo needs at least two exchanges (--exchanges NAME=DEPT[,DEPT...] ...)"
    );
    let mut seen = BTreeSet::new();
    for spec in specs {
        ensure!(
            seen.insert(&spec.name),
            "exchange {} is listed twice",
            spec.name
        );
        check_departments(&spec.departments).with_context(|| format!("exchange {}", spec.name))?;
    }
    Ok(())
}

/// Each exchange's block of ports: hub listen, peer_listen, one per department.
fn federation_ports(specs: &[ExchangeSpec], base: Option<u16>) -> Result<Vec<Vec<u16>>> {
    let total = specs.iter().map(|s| 2 + s.departments.len()).sum();
    let mut all = match base {
        Some(base) => consecutive_ports(base, total)?,
        None => free_ports(total)?,
    }
    .into_iter();
    Ok(specs
        .iter()
        .map(|s| all.by_ref().take(2 + s.departments.len()).collect())
        .collect())
}

/// `peers/<name>-ca.pem`'s file name.
fn peer_ca_file(name: &ExchangeName) -> String {
    format!("{name}-ca.pem")
}

/// `peers/<name>-ca.pem`, relative to hub.toml.
fn peer_ca_path(name: &ExchangeName) -> PathBuf {
    Path::new(PEERS_DIR).join(peer_ca_file(name))
}

/// The links of exchange `i` in the chain `specs`: its parent (`i - 1`, routing `"*"`), its
/// child (`i + 1`, routing every exchange after the child), and every other exchange in
/// `[[exchanges]]`.
fn links(specs: &[ExchangeSpec], i: usize, peer_listen: &[SocketAddr]) -> HubLinks {
    let peer = |j: usize, routes: Vec<Route>| PeerEntry {
        name: specs[j].name.clone(),
        address: peer_listen[j],
        server_name: HUB_SERVER_NAME.to_owned(),
        ca: peer_ca_path(&specs[j].name),
        routes,
        // The demo's exchanges share one disk: each hub watches its peers' own CRL files, so
        // that `exchange-certs revoke` at a peer's CA cuts that peer's hub here too. A real
        // deployment copies each peer's published CRL to a local file instead.
        crl: Some(
            [
                "..",
                "..",
                specs[j].name.as_str(),
                "ca",
                crate::revoke::CRL_FILE,
            ]
            .iter()
            .collect(),
        ),
    };
    let parent = i.checked_sub(1).map(|p| peer(p, vec![Route::Any]));
    let child = (i + 1 < specs.len()).then(|| {
        let below = specs[i + 2..]
            .iter()
            .map(|s| Route::Exchange(s.name.clone()))
            .collect();
        peer(i + 1, below)
    });
    let peers: Vec<PeerEntry> = parent.into_iter().chain(child).collect();
    let exchanges = specs
        .iter()
        .enumerate()
        .filter(|(j, s)| *j != i && !peers.iter().any(|p| p.name == s.name))
        .map(|(_, s)| ForeignExchange {
            name: s.name.clone(),
            ca: peer_ca_path(&s.name),
        })
        .collect();
    HubLinks {
        exchange: Some(specs[i].name.clone()),
        peer_listen: Some(peer_listen[i]),
        peers,
        exchanges,
    }
}

/// Loads a written hub.toml as the hub would and checks its links, and that each pinned CA
/// exists and names the exchange it is pinned for.
fn check_hub_config(path: &Path) -> Result<()> {
    let hub: HubConfig = exchange_core::config::load(path)?;
    hub.check_links()
        .with_context(|| format!("checking the links in {}", path.display()))?;
    let pinned = hub
        .peers
        .iter()
        .map(|p| (&p.name, &p.ca))
        .chain(hub.exchanges.iter().map(|e| (&e.name, &e.ca)));
    for (name, ca) in pinned {
        let der = exchange_core::tls::read_pem_file(ca, "CERTIFICATE")
            .with_context(|| format!("reading {}", ca.display()))?;
        ensure!(
            exchange_core::identity::exchange_of_ca(&der).as_ref() == Some(name),
            "BUG: {} does not name exchange {name}",
            ca.display()
        );
    }
    Ok(())
}

fn readme(layout: &FederationLayout) -> String {
    let mut text = String::from(
        "Linked demo exchanges, written by `exchange-certs demo-federation`.\n\n\
         Each exchange is a complete demo (see its own README.txt) with its own CA, which names\n\
         the exchange (URI SAN urn:exchange:name:<exchange>), hub and department nodes:\n\n",
    );
    let width = layout
        .exchanges
        .iter()
        .map(|e| e.name.as_str().len() + 1)
        .max()
        .unwrap_or(0);
    for e in &layout.exchanges {
        let depts: Vec<&str> = e.layout.nodes.iter().map(|(id, _)| id.as_str()).collect();
        text.push_str(&format!(
            "  {:width$}  hub for nodes on {}, for peer hubs on {}; departments: {}\n",
            format!("{}/", e.name),
            e.layout.hub_addr,
            e.peer_listen,
            depts.join(", ")
        ));
    }
    text.push_str(
        "\nThe exchanges form a chain, each the parent of the next. In each hub.toml, [[peers]]\n\
         names the parent (routes = [\"*\"]: everything not below) and the child (routes = the\n\
         exchanges below the child), each with the peer's CA pinned in hub/peers/<name>-ca.pem;\n\
         [[exchanges]] lists every other exchange with its CA, so that each hub can check\n\
         every exchange's signatures:\n\n",
    );
    for pair in layout.exchanges.windows(2) {
        text.push_str(&format!(
            "  {} (parent) <-> {} (child)\n",
            pair[0].name, pair[1].name
        ));
    }
    text.push_str("\nStart every hub:\n");
    for e in &layout.exchanges {
        text.push_str(&format!(
            "    exchange-hub --config {} serve\n",
            e.layout.hub_config.display()
        ));
    }
    text.push_str("\nThen every node, one terminal each:\n");
    for e in &layout.exchanges {
        for (_, config) in &e.layout.nodes {
            text.push_str(&format!(
                "    exchange-node --config {} serve\n",
                config.display()
            ));
        }
    }
    if let (Some(first), Some(last)) = (layout.exchanges.first(), layout.exchanges.last())
        && let (Some((to, _)), Some((_, from))) =
            (first.layout.nodes.first(), last.layout.nodes.first())
    {
        text.push_str(&format!(
            "\nAddress a department of another exchange as DEPT@EXCHANGE, e.g.\n    \
             exchange-node --config {} send --to {to}@{} --title 测试 --file README.txt\n",
            from.display(),
            first.name
        ));
    }
    text.push_str("\nscripts/demo-federation.sh runs such a demo end to end.\n");
    text
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use exchange_core::{config::NodeConfig, identity::exchange_of_ca, tls::read_pem_file};

    use super::*;

    fn specs(args: &[&str]) -> Result<Vec<ExchangeSpec>> {
        Ok(args
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, ExchangeSpecError>>()?)
    }

    fn names(xs: impl IntoIterator<Item = impl fmt::Display>) -> Vec<String> {
        xs.into_iter().map(|x| x.to_string()).collect()
    }

    /// Every `*.key` under `dir`, recursively.
    fn keys_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                keys_under(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "key") {
                out.push(path);
            }
        }
        Ok(())
    }

    #[test]
    fn exchange_specs_parse_names_and_departments() -> Result<()> {
        let spec: ExchangeSpec = "city=finance=市财政局,education".parse()?;
        assert_eq!(spec.name.as_str(), "city");
        assert_eq!(
            spec.departments
                .iter()
                .map(|d| (d.id.as_str(), d.name.as_str()))
                .collect::<Vec<_>>(),
            [("finance", "市财政局"), ("education", "education")]
        );
        assert!(matches!(
            "city".parse::<ExchangeSpec>(),
            Err(ExchangeSpecError::MissingDepartments(_))
        ));
        assert!(matches!(
            "city=".parse::<ExchangeSpec>(),
            Err(ExchangeSpecError::MissingDepartments(_))
        ));
        assert!(matches!(
            "City=tax".parse::<ExchangeSpec>(),
            Err(ExchangeSpecError::Name(_))
        ));
        assert!(matches!(
            "city=Tax".parse::<ExchangeSpec>(),
            Err(ExchangeSpecError::Department(_))
        ));
        Ok(())
    }

    #[test]
    fn bad_exchange_lists_are_refused_before_anything_is_written() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("demo");
        let refused = |s: &[ExchangeSpec], profile| {
            demo_federation(&out, s, Some(7000), false, profile)
                .err()
                .map(|e| format!("{e:#}"))
        };
        let one = specs(&["province=office"])?;
        let m = refused(&one, Profile::International).context("one exchange accepted")?;
        assert!(m.contains("at least two exchanges"), "{m}");
        let twice = specs(&["city=a", "city=b"])?;
        let m = refused(&twice, Profile::International).context("a duplicate accepted")?;
        assert!(m.contains("listed twice"), "{m}");
        let reserved = specs(&["city=a", "county=hub"])?;
        let m = refused(&reserved, Profile::International).context("dept hub accepted")?;
        assert!(m.contains("reserved"), "{m}");
        let fine = specs(&["city=a", "county=b"])?;
        let m = refused(&fine, Profile::Shangmi).context("shangmi accepted")?;
        assert!(m.contains("international-only"), "{m}");
        assert!(!out.exists(), "something was written");
        Ok(())
    }

    #[test]
    fn ports_come_in_one_block_per_exchange() -> Result<()> {
        let s = specs(&["province=office,health", "city=finance", "county=tax"])?;
        assert_eq!(
            federation_ports(&s, Some(7000))?,
            [
                vec![7000, 7001, 7002, 7003],
                vec![7004, 7005, 7006],
                vec![7007, 7008, 7009]
            ]
        );
        assert!(federation_ports(&s, Some(65530)).is_err());
        let free = federation_ports(&s, None)?;
        let distinct: BTreeSet<u16> = free.iter().flatten().copied().collect();
        assert_eq!(distinct.len(), 10);
        Ok(())
    }

    #[test]
    fn three_exchanges_are_linked_in_a_chain() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("fed");
        let s = specs(&[
            "province=office,health",
            "city=finance,education",
            "county=tax",
        ])?;
        let layout = demo_federation(&root, &s, Some(47000), false, Profile::International)?;
        assert_eq!(
            names(layout.exchanges.iter().map(|e| &e.name)),
            ["province", "city", "county"]
        );

        let hub = |name: &str| -> Result<HubConfig> {
            Ok(exchange_core::config::load(
                &root.join(name).join("hub").join("hub.toml"),
            )?)
        };
        let (province, city, county) = (hub("province")?, hub("city")?, hub("county")?);
        for (name, h) in [
            ("province", &province),
            ("city", &city),
            ("county", &county),
        ] {
            h.check_links()?;
            assert_eq!(h.hub.exchange.as_ref().map(|e| e.as_str()), Some(name));
            // The hub's own CA names its exchange.
            assert_eq!(
                exchange_of_ca(&read_pem_file(&h.tls.ca, "CERTIFICATE")?).map(|e| e.to_string()),
                Some(name.to_owned())
            );
            // Each pinned CA is that exchange's own, copied.
            for (peer, ca) in h
                .peers
                .iter()
                .map(|p| (&p.name, &p.ca))
                .chain(h.exchanges.iter().map(|e| (&e.name, &e.ca)))
            {
                assert_eq!(
                    ca,
                    &root
                        .join(name)
                        .join("hub/peers")
                        .join(format!("{peer}-ca.pem"))
                );
                assert_eq!(
                    std::fs::read(ca)?,
                    std::fs::read(root.join(peer.as_str()).join("ca/ca.pem"))?
                );
            }
            for p in &h.peers {
                assert_eq!(p.server_name, "localhost");
            }
            // The hub dials its peers with its TLS certificate: clientAuth beside serverAuth.
            let der = read_pem_file(&h.tls.cert, "CERTIFICATE")?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
            let eku = cert.extended_key_usage()?.context("no EKU")?.value;
            assert!(eku.server_auth && eku.client_auth, "{name}: {eku:?}");
        }
        // Ports: block i = hub listen, peer_listen, departments.
        let addr = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(
            [province.hub.listen, city.hub.listen, county.hub.listen],
            [addr(47000), addr(47004), addr(47008)]
        );
        assert_eq!(
            [
                province.hub.peer_listen,
                city.hub.peer_listen,
                county.hub.peer_listen
            ],
            [Some(addr(47001)), Some(addr(47005)), Some(addr(47009))]
        );
        let tax: NodeConfig = exchange_core::config::load(&root.join("county/tax/node.toml"))?;
        assert_eq!(
            (tax.api.listen, tax.hub.addr),
            (addr(47010), Some(addr(47008)))
        );
        let health: NodeConfig =
            exchange_core::config::load(&root.join("province/health/node.toml"))?;
        assert_eq!(health.api.listen, addr(47003));

        // The chain: province -> city -> county.
        let summary = |h: &HubConfig| {
            h.peers
                .iter()
                .map(|p| (p.name.to_string(), p.address.port(), names(&p.routes)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(&province),
            [("city".to_owned(), 47005, names(["county"]))]
        );
        assert_eq!(
            summary(&city),
            [
                ("province".to_owned(), 47001, names(["*"])),
                ("county".to_owned(), 47009, Vec::new()),
            ]
        );
        assert_eq!(summary(&county), [("city".to_owned(), 47005, names(["*"]))]);
        assert_eq!(
            names(province.exchanges.iter().map(|e| &e.name)),
            ["county"]
        );
        assert!(city.exchanges.is_empty());
        assert_eq!(
            names(county.exchanges.iter().map(|e| &e.name)),
            ["province"]
        );

        // Private keys stay private.
        let mut keys = Vec::new();
        keys_under(&root, &mut keys)?;
        // Per exchange: the CA's, the hub's TLS, signing and kek, the admin's TLS; per node its
        // TLS, signing and kek.
        assert_eq!(keys.len(), (1 + 3 + 1) * 3 + 3 * 5, "{keys:?}");
        for key in &keys {
            let mode = std::fs::metadata(key)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }

        let readme = std::fs::read_to_string(root.join("README.txt"))?;
        for needle in [
            "province (parent) <-> city (child)",
            "city (parent) <-> county (child)",
            "127.0.0.1:47005",
            "--to office@province",
        ] {
            assert!(readme.contains(needle), "{needle} in {readme}");
        }

        // A second run needs --force, and then replaces every CA.
        let err = demo_federation(&root, &s, Some(47000), false, Profile::International);
        assert!(format!("{:#}", err.err().context("rewrote without --force")?).contains("--force"));
        let before = std::fs::read(root.join("city/ca/ca.pem"))?;
        demo_federation(&root, &s, Some(47000), true, Profile::International)?;
        assert_ne!(std::fs::read(root.join("city/ca/ca.pem"))?, before);
        assert_eq!(
            std::fs::read(root.join("city/ca/ca.pem"))?,
            std::fs::read(root.join("province/hub/peers/city-ca.pem"))?
        );
        Ok(())
    }
}

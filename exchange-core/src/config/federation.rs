//! Links to other exchanges (issue 18, docs/federation.md): `[hub] exchange` names this
//! exchange, `[hub] peer_listen` is where linked hubs connect, `[[peers]]` are the linked
//! exchanges' hubs and `[[exchanges]]` the CAs of exchanges further away whose signatures this hub
//! must check.
//!
//! ```toml
//! [hub]
//! exchange = "city"
//! peer_listen = "0.0.0.0:7444"
//!
//! [[peers]]
//! name = "province"                    # the peer exchange's name
//! address = "10.1.0.5:7444"             # its hub's peer_listen
//! server_name = "hub.province.gov"     # the name in that hub's certificate
//! ca = "peers/province-ca.pem"         # pinned: the peer exchange's CA, trusted for this link only
//! routes = ["*"]                       # exchanges reached through this peer: "*" = all others
//!
//! [[exchanges]]
//! name = "county-b"
//! ca = "peers/county-b-ca.pem"
//! ```
//!
//! The types live here, with the consistency checks, so that a bad link stops the hub at load
//! time with a message naming the key; the hub and `exchange-certs demo-federation` share them.

use std::{collections::BTreeSet, fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::ids::ExchangeName;

/// One `routes` entry of a peer: which exchanges are reached through it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Route {
    /// `"*"`: every exchange no other peer names (at most one peer has it, typically the
    /// parent).
    Any,
    /// One exchange by name.
    Exchange(ExchangeName),
}

impl FromStr for Route {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Route::Any);
        }
        s.parse().map(Route::Exchange).map_err(|_| {
            format!(
                "route {s:?}: use an exchange name (lowercase letters, digits, '-', '_') or \"*\""
            )
        })
    }
}

impl TryFrom<String> for Route {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Route> for String {
    fn from(r: Route) -> String {
        r.to_string()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Any => f.write_str("*"),
            Route::Exchange(e) => e.fmt(f),
        }
    }
}

/// `[[peers]]`: a linked exchange's hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// The peer exchange's name (its `[hub] exchange`).
    pub name: ExchangeName,
    /// Where its hub listens for peers (its `[hub] peer_listen`), `IP:PORT`.
    pub address: SocketAddr,
    /// The name its hub's certificate carries.
    pub server_name: String,
    /// The peer exchange's CA certificate (PEM), pinned: trusted only for this link and for
    /// signatures of that exchange's departments and hub, never for our own nodes.
    pub ca: PathBuf,
    /// The exchanges reached through this peer, besides the peer itself: names, or `"*"` for
    /// every exchange no other peer names. Empty: only the peer's own departments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// A revocation list of the peer's CA (PEM or DER), re-read when the file changes: a peer
    /// hub whose certificate it lists is refused, at the handshake and at every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

/// `[[exchanges]]`: an exchange further away (reached through a peer), whose CA this hub needs
/// to check its departments' signatures. Nothing connects to or from it directly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForeignExchange {
    /// The exchange's name.
    pub name: ExchangeName,
    /// Its CA certificate (PEM).
    pub ca: PathBuf,
}

/// The consistency of the links, without reading any file: `exchange` is set when there are
/// peers, names are unique and not our own, `peer_listen` is set when there are peers, routes
/// name no exchange twice and `"*"` is on at most one peer.
pub fn check_links(
    exchange: Option<&ExchangeName>,
    peer_listen: bool,
    peers: &[PeerEntry],
    exchanges: &[ForeignExchange],
) -> Result<(), ConfigError> {
    let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
    if peers.is_empty() && exchanges.is_empty() {
        return Ok(());
    }
    let Some(ours) = exchange else {
        return Err(invalid(
            "hub.exchange",
            "[[peers]] and [[exchanges]] need this exchange's own name: set [hub] exchange = \"NAME\""
                .into(),
        ));
    };
    if !peers.is_empty() && !peer_listen {
        return Err(invalid(
            "hub.peer_listen",
            "[[peers]] need an address where the peer hubs connect: set [hub] peer_listen = \"HOST:PORT\""
                .into(),
        ));
    }
    let mut names = BTreeSet::new();
    for (key, name) in peers
        .iter()
        .map(|p| ("peers.name", &p.name))
        .chain(exchanges.iter().map(|e| ("exchanges.name", &e.name)))
    {
        if name == ours {
            return Err(invalid(
                key,
                format!("{name} is this exchange's own name ([hub] exchange)"),
            ));
        }
        if !names.insert(name) {
            return Err(invalid(
                key,
                format!(
                    "exchange {name} is configured twice (once per [[peers]] or [[exchanges]])"
                ),
            ));
        }
    }
    let mut routed = BTreeSet::new();
    let mut any = None;
    for p in peers {
        if p.server_name.trim().is_empty() {
            return Err(invalid(
                "peers.server_name",
                format!(
                    "peer {}: set server_name to the name in its hub's certificate",
                    p.name
                ),
            ));
        }
        for r in &p.routes {
            match r {
                Route::Any => {
                    if let Some(other) = any.replace(&p.name)
                        && other != &p.name
                    {
                        return Err(invalid(
                            "peers.routes",
                            format!(
                                "\"*\" is routed through both {other} and {}: only one peer (the parent) reaches everything else",
                                p.name
                            ),
                        ));
                    }
                }
                Route::Exchange(e) if e == ours => {
                    return Err(invalid(
                        "peers.routes",
                        format!("peer {}: routes names this exchange ({e})", p.name),
                    ));
                }
                Route::Exchange(e) => {
                    if peers.iter().any(|q| &q.name == e && q.name != p.name) {
                        return Err(invalid(
                            "peers.routes",
                            format!("peer {}: {e} is itself a peer, reached directly", p.name),
                        ));
                    }
                    if !routed.insert(e) {
                        return Err(invalid(
                            "peers.routes",
                            format!("exchange {e} is routed through two peers"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, routes: &[&str]) -> PeerEntry {
        PeerEntry {
            name: name.parse().unwrap(),
            address: "127.0.0.1:1".parse().unwrap(),
            server_name: "hub".into(),
            ca: "ca.pem".into(),
            routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
            crl: None,
        }
    }

    fn message(r: Result<(), ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn links_are_checked_for_consistency() {
        let city: ExchangeName = "city".parse().unwrap();
        let ok = [peer("province", &["*"]), peer("county", &["township"])];
        check_links(Some(&city), true, &ok, &[]).unwrap();
        check_links(None, false, &[], &[]).unwrap();

        let m = message(check_links(None, true, &ok, &[]));
        assert!(m.contains("[hub] exchange"), "{m}");
        let m = message(check_links(Some(&city), false, &ok, &[]));
        assert!(m.contains("peer_listen"), "{m}");
        let m = message(check_links(Some(&city), true, &[peer("city", &[])], &[]));
        assert!(m.contains("own name"), "{m}");
        let twice = [peer("province", &[]), peer("province", &[])];
        let m = message(check_links(Some(&city), true, &twice, &[]));
        assert!(m.contains("configured twice"), "{m}");
        let two_parents = [peer("province", &["*"]), peer("county", &["*"])];
        let m = message(check_links(Some(&city), true, &two_parents, &[]));
        assert!(m.contains("only one peer"), "{m}");
        let via_two = [peer("province", &["x"]), peer("county", &["x"])];
        let m = message(check_links(Some(&city), true, &via_two, &[]));
        assert!(m.contains("routed through two peers"), "{m}");
        let to_us = [peer("province", &["city"])];
        let m = message(check_links(Some(&city), true, &to_us, &[]));
        assert!(m.contains("names this exchange"), "{m}");
        let foreign = [ForeignExchange {
            name: "province".parse().unwrap(),
            ca: "p.pem".into(),
        }];
        let m = message(check_links(Some(&city), true, &ok, &foreign));
        assert!(m.contains("configured twice"), "{m}");
        assert!("Bad".parse::<Route>().unwrap_err().contains("\"*\""));
    }
}

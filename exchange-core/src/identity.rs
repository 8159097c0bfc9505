//! Who a certificate speaks for.
//!
//! Every certificate the exchange CA issues names its holder in a URI subject-alternative name,
//! so that a role can never be mistaken for another (a department called `hub` is still a
//! department). This module is the only place that writes or reads those URIs.

use std::fmt;

use crate::ids::{DeptId, ExchangeName};

/// URI prefix naming a department: `urn:exchange:dept:<id>`.
pub const DEPT_URI_PREFIX: &str = "urn:exchange:dept:";
/// URI naming the hub.
pub const HUB_URI: &str = "urn:exchange:hub";
/// URI prefix naming an administrator: `urn:exchange:admin:<name>`.
pub const ADMIN_URI_PREFIX: &str = "urn:exchange:admin:";

/// URI prefix naming, in a CA certificate, the exchange the CA speaks for:
/// `urn:exchange:name:<exchange>` (docs/federation.md). An offline verifier given several CAs
/// learns from it which exchange's principals each may vouch for.
pub const EXCHANGE_URI_PREFIX: &str = "urn:exchange:name:";

/// The URI SAN a CA certificate of exchange `name` carries.
pub fn exchange_uri(name: &ExchangeName) -> String {
    format!("{EXCHANGE_URI_PREFIX}{name}")
}

/// The exchange a CA certificate (DER) names in its URI SANs; `None` when it names none (a CA
/// made before exchanges had names) or more than one, or does not parse.
pub fn exchange_of_ca(der: &[u8]) -> Option<ExchangeName> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => u
            .strip_prefix(EXCHANGE_URI_PREFIX)
            .and_then(|name| name.parse().ok()),
        _ => None,
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// RFC 9336 id-kp-documentSigning (1.3.6.1.5.5.7.3.36), as arcs: document-signing certificates
/// carry this extended key usage and nothing else, so a TLS key can never sign a document.
pub const DOCUMENT_SIGNING_EKU_ARCS: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 36];
/// The same OID in DER value encoding, as webpki wants it.
pub const DOCUMENT_SIGNING_EKU_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];

/// The holder of a certificate issued by the exchange CA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A department node.
    Dept(DeptId),
    /// The central hub.
    Hub,
    /// An administrator (audit and operations tools).
    Admin(String),
}

impl Principal {
    /// The URI SAN that names this principal in its certificates.
    pub fn uri(&self) -> String {
        match self {
            Principal::Dept(d) => format!("{DEPT_URI_PREFIX}{d}"),
            Principal::Hub => HUB_URI.to_owned(),
            Principal::Admin(n) => format!("{ADMIN_URI_PREFIX}{n}"),
        }
    }

    /// Parses a URI SAN; `None` for URIs that do not name an exchange principal.
    pub fn from_uri(uri: &str) -> Option<Self> {
        if uri == HUB_URI {
            return Some(Principal::Hub);
        }
        if let Some(id) = uri.strip_prefix(DEPT_URI_PREFIX) {
            return id.parse().ok().map(Principal::Dept);
        }
        let name = uri.strip_prefix(ADMIN_URI_PREFIX)?;
        (!name.is_empty()).then(|| Principal::Admin(name.to_owned()))
    }

    /// Reads the principal from a DER certificate's URI SANs (exactly one must name a principal).
    pub fn from_cert_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut found = san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Principal::from_uri(u),
            _ => None,
        });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Dept(d) => write!(f, "department {d}"),
            Principal::Hub => f.write_str("hub"),
            Principal::Admin(n) => write!(f, "administrator {n}"),
        }
    }
}

/// A principal as a document's statements name it: of the document's own exchange (the
/// sender's; `exchange` is `None`), or of a linked exchange (docs/federation.md). Which CA
/// vouches for a signer decides its exchange, never a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Qualified {
    /// The exchange whose CA issued the certificate; `None` for the document's own exchange.
    pub exchange: Option<ExchangeName>,
    /// Who, within that exchange.
    pub principal: Principal,
}

impl Qualified {
    /// A principal of the document's own exchange.
    pub fn local(principal: Principal) -> Self {
        Qualified {
            exchange: None,
            principal,
        }
    }
}

impl fmt::Display for Qualified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.exchange {
            None => self.principal.fmt(f),
            Some(e) => write!(f, "{} of exchange {e}", self.principal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_roles_stay_apart() {
        let d = Principal::Dept("finance".parse().unwrap());
        assert_eq!(Principal::from_uri(&d.uri()), Some(d));
        assert_eq!(Principal::from_uri(HUB_URI), Some(Principal::Hub));
        assert_eq!(Principal::from_uri("urn:exchange:dept:"), None);
        assert_eq!(Principal::from_uri("urn:exchange:dept:Bad Id"), None);
        assert_eq!(Principal::from_uri("https://example"), None);
    }
}

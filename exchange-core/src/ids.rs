//! Identifiers: departments and documents. Newtypes, so that a department id can never be passed
//! where a document id is meant, and both are validated once, when they enter the system.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Longest department id accepted.
pub const MAX_DEPT_ID_LEN: usize = 64;

/// A department's id in the exchange directory, e.g. `finance` or `county-3`.
///
/// Lowercase ASCII letters, digits, `-` and `_`, 1 to 64 characters, starting with a letter or
/// digit: safe in file names, URIs and certificate names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeptId(String);

/// Most characters of a refused id an error quotes: an id is at most 64, and a request may
/// carry megabytes where one belongs, which must not be copied into every status and log line.
const QUOTED_CHARS: usize = 80;

/// `s` as an error quotes it: whole if short, else its first [`QUOTED_CHARS`] characters and its
/// length.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTED_CHARS) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &s[..end], s.len()),
    }
}

/// Why a string is not a valid id (long input quoted only in part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not a department id.
    #[error("invalid department id {0:?}: use 1-64 lowercase letters, digits, '-' or '_'")]
    Dept(String),
    /// Not an exchange name.
    #[error("invalid exchange name {0:?}: use 1-64 lowercase letters, digits, '-' or '_'")]
    Exchange(String),
    /// Not a department address (`dept` or `dept@exchange`).
    #[error(
        "invalid address {0:?}: expected a department id such as finance, or finance@city for a \
         department of another exchange"
    )]
    Address(String),
    /// Not a document id.
    #[error(
        "invalid document id {0:?}: expected a UUID such as 0192f0c1-7a4e-7cc1-9d36-1b2f1e0c5a77"
    )]
    Document(String),
}

impl DeptId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The one spelling rule of department ids and exchange names.
fn valid_name(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    !s.is_empty()
        && s.len() <= MAX_DEPT_ID_LEN
        && s.chars().all(ok_char)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

impl FromStr for DeptId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if valid_name(s) {
            Ok(DeptId(s.to_owned()))
        } else {
            Err(IdError::Dept(quoted(s)))
        }
    }
}

impl TryFrom<String> for DeptId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<DeptId> for String {
    fn from(d: DeptId) -> String {
        d.0
    }
}

impl fmt::Display for DeptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of one exchange among linked exchanges (issue 18), e.g. `fujian`, `sanming`: the
/// same spelling rules as a department id. Each exchange names itself once (`[hub] exchange`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExchangeName(String);

impl ExchangeName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ExchangeName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if valid_name(s) {
            Ok(ExchangeName(s.to_owned()))
        } else {
            Err(IdError::Exchange(quoted(s)))
        }
    }
}

impl TryFrom<String> for ExchangeName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<ExchangeName> for String {
    fn from(e: ExchangeName) -> String {
        e.0
    }
}

impl fmt::Display for ExchangeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A department as a sender names it: `finance` (of the sender's own exchange) or
/// `finance@city` (of the linked exchange `city`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    /// The department.
    pub dept: DeptId,
    /// Its exchange; `None` for the exchange of whoever reads the address.
    pub exchange: Option<ExchangeName>,
}

impl Address {
    /// A department of the reader's own exchange.
    pub fn local(dept: DeptId) -> Self {
        Address {
            dept,
            exchange: None,
        }
    }

    /// The department if the address is in `here` (bare, or naming `here` itself).
    pub fn local_to(&self, here: Option<&ExchangeName>) -> Option<&DeptId> {
        match &self.exchange {
            None => Some(&self.dept),
            Some(e) if Some(e) == here => Some(&self.dept),
            Some(_) => None,
        }
    }
}

impl FromStr for Address {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::Address(quoted(s));
        match s.split_once('@') {
            None => Ok(Address::local(s.parse().map_err(|_| bad())?)),
            Some((dept, exchange)) => Ok(Address {
                dept: dept.parse().map_err(|_| bad())?,
                exchange: Some(exchange.parse().map_err(|_| bad())?),
            }),
        }
    }
}

impl TryFrom<String> for Address {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.exchange {
            None => self.dept.fmt(f),
            Some(e) => write!(f, "{}@{e}", self.dept),
        }
    }
}

/// A document's id (公文标识): a UUIDv7 assigned by the sending node, so ids sort by creation time
/// and are unique without coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId(uuid::Uuid);

impl DocumentId {
    /// A fresh id for a new document.
    pub fn new() -> Self {
        DocumentId(uuid::Uuid::now_v7())
    }
}

impl Default for DocumentId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for DocumentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Only the hyphenated form, so that one document has exactly one spelling.
        match uuid::Uuid::try_parse(s) {
            Ok(u) if s.len() == 36 && u.hyphenated().to_string() == s => Ok(DocumentId(u)),
            _ => Err(IdError::Document(quoted(s))),
        }
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dept_ids_are_validated() {
        assert!("finance".parse::<DeptId>().is_ok());
        assert!("county-12_b".parse::<DeptId>().is_ok());
        for bad in ["", "Finance", "-x", "a b", "财政", &"x".repeat(65)] {
            assert!(bad.parse::<DeptId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_long_refused_id_is_quoted_only_in_part() {
        let huge = "\u{1b}x".repeat(4 * 1024 * 1024);
        let msg = huge.parse::<DocumentId>().unwrap_err().to_string();
        assert!(msg.len() < 800, "{} bytes", msg.len());
        assert!(msg.contains("… (8388608 bytes)"), "{msg}");
        let short = "Finance".parse::<DeptId>().unwrap_err().to_string();
        assert!(
            short.starts_with("invalid department id \"Finance\":"),
            "{short}"
        );
    }

    #[test]
    fn addresses_name_a_department_here_or_in_a_linked_exchange() {
        let here: ExchangeName = "city".parse().unwrap();
        let local: Address = "finance".parse().unwrap();
        assert_eq!(local.exchange, None);
        assert_eq!(local.to_string(), "finance");
        let remote: Address = "office@province".parse().unwrap();
        assert_eq!(remote.dept.as_str(), "office");
        assert_eq!(remote.to_string(), "office@province");
        assert_eq!(remote.local_to(Some(&here)), None);
        assert_eq!(
            local.local_to(Some(&here)).map(DeptId::as_str),
            Some("finance")
        );
        let ours: Address = "tax@city".parse().unwrap();
        assert_eq!(ours.local_to(Some(&here)).map(DeptId::as_str), Some("tax"));
        for bad in [
            "",
            "@city",
            "office@",
            "a@b@c",
            "Office@city",
            "office@Province",
        ] {
            let err = bad.parse::<Address>().unwrap_err();
            assert!(err.to_string().contains("finance@city"), "{bad:?}: {err}");
        }
        assert!("Sanming".parse::<ExchangeName>().is_err());
    }

    #[test]
    fn document_ids_have_one_spelling() {
        let id = DocumentId::new();
        assert_eq!(id.to_string().parse::<DocumentId>(), Ok(id));
        assert!(id.to_string().to_uppercase().parse::<DocumentId>().is_err());
        assert!("not-a-uuid".parse::<DocumentId>().is_err());
    }
}

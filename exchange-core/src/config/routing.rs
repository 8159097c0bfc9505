//! `[routing]` in `hub.toml`: which department may send to which. The hub applies it at
//! `Submit` (see `exchange-hub/src/policy.rs`); the types live here so that a bad pattern stops
//! the hub at load time with a message naming the key.
//!
//! ```toml
//! [routing]
//! default = "allow"                 # for senders no rule names: "allow" (default) or "deny"
//!
//! [[routing.rules]]
//! from = "dongcheng-county"         # a department id, a prefix ending in '*', or "*"
//! to = ["city-office", "dongcheng-*"]
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::DeptId;

/// What applies to a sender that no rule names.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoutingDefault {
    /// It may send to any department in the directory.
    #[default]
    Allow,
    /// It may send to no one.
    Deny,
}

/// `[routing]`: rules restrict the senders they name; everyone else gets `default`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// For senders that no rule's `from` matches.
    #[serde(default)]
    pub default: RoutingDefault,
    /// A sender matched by one or more rules may send only to the recipients those rules' `to`
    /// lists match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RoutingRule>,
}

impl RoutingSection {
    /// True when the section restricts nothing (absent, or only `default = "allow"`).
    pub fn is_unrestricted(&self) -> bool {
        self.rules.is_empty() && self.default == RoutingDefault::Allow
    }
}

/// `[[routing.rules]]`: `from` may send to `to`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// The senders this rule is about.
    pub from: DeptPattern,
    /// The recipients they may address.
    pub to: Vec<DeptPattern>,
}

/// A department id (`finance`), a prefix ending in `*` (`county-*`), or `*` (any department).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeptPattern {
    /// The id, or the prefix before the `*`.
    text: String,
    /// Whether `text` is a prefix.
    prefix: bool,
}

impl DeptPattern {
    /// Whether `dept` is one of the departments this pattern names.
    pub fn matches(&self, dept: &DeptId) -> bool {
        if self.prefix {
            dept.as_str().starts_with(&self.text)
        } else {
            dept.as_str() == self.text
        }
    }
}

impl TryFrom<String> for DeptPattern {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.strip_suffix('*') {
            Some(prefix) => {
                let ok = prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
                if !ok {
                    return Err(format!(
                        "{s:?}: a pattern is a department id, a prefix of one followed by '*', or \"*\""
                    ));
                }
                Ok(DeptPattern {
                    text: prefix.to_owned(),
                    prefix: true,
                })
            }
            None => {
                let id: DeptId = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
                Ok(DeptPattern {
                    text: id.to_string(),
                    prefix: false,
                })
            }
        }
    }
}

impl From<DeptPattern> for String {
    fn from(p: DeptPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for DeptPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let d = |s: &str| s.parse::<DeptId>().unwrap();
        let p = |s: &str| DeptPattern::try_from(s.to_owned());
        assert!(p("county-*").unwrap().matches(&d("county-east")));
        assert!(!p("county-*").unwrap().matches(&d("city")));
        assert!(p("*").unwrap().matches(&d("city")));
        assert!(p("city").unwrap().matches(&d("city")));
        assert!(!p("city").unwrap().matches(&d("city-2")));
        for bad in ["Co*", "a*b*", "a b", "", "*x"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let section: RoutingSection =
            toml::from_str("default = \"deny\"\n[[rules]]\nfrom = \"a\"\nto = [\"b*\"]\n").unwrap();
        assert_eq!(section.default, RoutingDefault::Deny);
        assert_eq!(section.rules[0].to[0].to_string(), "b*");
        let err = toml::from_str::<RoutingSection>("[[rules]]\nfrom = \"A\"\nto = []\n");
        assert!(err.unwrap_err().to_string().contains("from"));
    }
}

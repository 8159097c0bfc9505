//! `[encryption]` in `hub.toml` and `node.toml`: where the key-encryption key (KEK) of the data
//! directory comes from. With it, document records, inline content and blob files are sealed
//! before they reach the disk (`crate::atrest`, docs/security.md); without it they are stored
//! in clear, and a data directory that already has a key ring refuses to open.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::atrest::KekSource;

/// `[encryption]`: exactly one of `kek` and `kek_credential`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// A file holding the KEK (64 hex characters, mode 0600: a file that group or others can
    /// read is refused). Keep it outside the data directory, and out of its backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek: Option<PathBuf>,
    /// The name of a systemd credential holding the KEK (`LoadCredentialEncrypted=NAME:...` in
    /// the unit; read from `$CREDENTIALS_DIRECTORY/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_credential: Option<String>,
}

impl EncryptionSection {
    /// Where the KEK comes from; an error naming the keys unless exactly one is set.
    pub fn source(&self) -> Result<KekSource, ConfigError> {
        match (&self.kek, &self.kek_credential) {
            (Some(path), None) => Ok(KekSource::File(path.clone())),
            (None, Some(name)) => Ok(KekSource::Credential(name.clone())),
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                key: "encryption.kek",
                message: "set either encryption.kek (a file) or encryption.kek_credential (a \
                          systemd credential), not both"
                    .to_owned(),
            }),
            (None, None) => Err(ConfigError::Invalid {
                key: "encryption.kek",
                message: "[encryption] needs encryption.kek (a file) or \
                          encryption.kek_credential (a systemd credential)"
                    .to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_source_is_named() {
        let file = EncryptionSection {
            kek: Some("kek.key".into()),
            kek_credential: None,
        };
        assert_eq!(file.source().ok(), Some(KekSource::File("kek.key".into())));
        let both = EncryptionSection {
            kek_credential: Some("exchange-kek".into()),
            ..file
        };
        assert!(both.source().unwrap_err().to_string().contains("not both"));
        let none = EncryptionSection {
            kek: None,
            kek_credential: None,
        };
        assert!(
            none.source()
                .unwrap_err()
                .to_string()
                .contains("encryption.kek")
        );
    }
}

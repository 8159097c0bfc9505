//! The files a config names, checked before anything else reads them, so that an error names
//! the key that points at the file (`tls.key: ...`) as well as the file: an operator then knows
//! which line of the config to look at, not only which file on disk.

use std::{os::unix::fs::PermissionsExt, path::Path};

use super::{ConfigError, HubConfig, NodeConfig, SigningPaths, TlsPaths};

/// What a file is, for the checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Public (certificate, CA, revocation list): it must be readable.
    Public,
    /// A private key: readable, and no permission bits for group or others.
    Secret,
}

fn check(key: &'static str, path: &Path, kind: Kind) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { key, message };
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(invalid(format!("{} is not a file", path.display())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if kind == Kind::Secret && mode & 0o077 != 0 {
        return Err(invalid(format!(
            "private key {} is readable by group or others (mode {mode:03o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// The TLS files of a section; `keys` are its config keys (ca, cert, key, crl).
fn tls(paths: &TlsPaths, keys: [&'static str; 4]) -> Result<(), ConfigError> {
    check(keys[0], &paths.ca, Kind::Public)?;
    check(keys[1], &paths.cert, Kind::Public)?;
    check(keys[2], &paths.key, Kind::Secret)?;
    if let Some(crl) = &paths.crl {
        check(keys[3], crl, Kind::Public)?;
    }
    Ok(())
}

fn signing(paths: &SigningPaths) -> Result<(), ConfigError> {
    check("signing.cert", &paths.cert, Kind::Public)?;
    check("signing.key", &paths.key, Kind::Secret)
}

const TLS_KEYS: [&str; 4] = ["tls.ca", "tls.cert", "tls.key", "tls.crl"];

impl HubConfig {
    /// Checks that every file the daemon reads can be read by this user and that its private
    /// keys are private. `[admin]` is not checked: only the administrator's commands read it.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        tls(&self.tls, TLS_KEYS)?;
        signing(&self.signing)
    }
}

impl NodeConfig {
    /// Checks that every file the daemon reads can be read by this user and that its private
    /// keys are private.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        tls(&self.tls, TLS_KEYS)?;
        signing(&self.signing)?;
        if let Some(api) = &self.api.tls {
            let keys = ["api.tls.ca", "api.tls.cert", "api.tls.key", "api.tls.crl"];
            tls(api, keys)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_readable_or_missing_key_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tls.key");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = check("tls.key", &key, Kind::Secret)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tls.key: "), "{err}");
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check("tls.key", &key, Kind::Secret).unwrap();
        let err = check("signing.key", &dir.path().join("nope"), Kind::Secret)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("signing.key: cannot read "), "{err}");
    }
}

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

/// The TLS files of a section; `keys` are its config keys (ca, cert, key, crl, enc_cert,
/// enc_key). Whether the profile needs the encryption pair is `crypto::check_profile`'s business;
/// here a configured one is checked like the signing pair.
fn tls(paths: &TlsPaths, keys: [&'static str; 6]) -> Result<(), ConfigError> {
    check(keys[0], &paths.ca, Kind::Public)?;
    check(keys[1], &paths.cert, Kind::Public)?;
    check(keys[2], &paths.key, Kind::Secret)?;
    if let Some(crl) = &paths.crl {
        check(keys[3], crl, Kind::Public)?;
    }
    if let Some(enc_cert) = &paths.enc_cert {
        check(keys[4], enc_cert, Kind::Public)?;
    }
    if let Some(enc_key) = &paths.enc_key {
        check(keys[5], enc_key, Kind::Secret)?;
    }
    Ok(())
}

fn signing(paths: &SigningPaths) -> Result<(), ConfigError> {
    check("signing.cert", &paths.cert, Kind::Public)?;
    check("signing.key", &paths.key, Kind::Secret)
}

const TLS_KEYS: [&str; 6] = [
    "tls.ca",
    "tls.cert",
    "tls.key",
    "tls.crl",
    "tls.enc_cert",
    "tls.enc_key",
];

impl HubConfig {
    /// Checks that every file the daemon reads can be read by this user and that its private
    /// keys are private. `[admin]` is not checked: only the administrator's commands read it.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        tls(&self.tls, TLS_KEYS)?;
        signing(&self.signing)?;
        if let Some(password) = &self.store.password_file {
            check("store.password_file", password, Kind::Secret)?;
        }
        if let Some(ca) = &self.store.ca_file {
            check("store.ca_file", ca, Kind::Public)?;
        }
        for p in &self.peers {
            check("peers.ca", &p.ca, Kind::Public)?;
            if let Some(crl) = &p.crl {
                check("peers.crl", crl, Kind::Public)?;
            }
        }
        for e in &self.exchanges {
            check("exchanges.ca", &e.ca, Kind::Public)?;
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Checks that every file the daemon reads can be read by this user and that its private
    /// keys are private.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        tls(&self.tls, TLS_KEYS)?;
        signing(&self.signing)?;
        if let Some(api) = &self.api.tls {
            let keys = [
                "api.tls.ca",
                "api.tls.cert",
                "api.tls.key",
                "api.tls.crl",
                "api.tls.enc_cert",
                "api.tls.enc_key",
            ];
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

    #[test]
    fn the_tls_encryption_pair_is_checked_like_the_signing_pair() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "x").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let mut paths = TlsPaths {
            ca: file("ca.pem", 0o644),
            cert: file("tls.pem", 0o644),
            key: file("tls.key", 0o600),
            enc_cert: Some(file("tls-enc.pem", 0o644)),
            enc_key: Some(file("tls-enc.key", 0o644)),
            crl: None,
            protocol: None,
        };
        let err = tls(&paths, TLS_KEYS).unwrap_err().to_string();
        assert!(err.starts_with("tls.enc_key: private key "), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        paths.enc_key = Some(file("tls-enc.key", 0o600));
        tls(&paths, TLS_KEYS).unwrap();
        paths.enc_cert = Some(dir.path().join("missing.pem"));
        let err = tls(&paths, TLS_KEYS).unwrap_err().to_string();
        assert!(err.starts_with("tls.enc_cert: cannot read "), "{err}");
    }
}

//! Writing certificates and keys to disk.
//!
//! Private keys are created with mode 0600 from their first byte: a key is never readable by
//! others, not even between `create` and a later `chmod`. Every file is written to a temporary
//! name next to its target and renamed into place, so a crash leaves either the old file or the
//! new one, never half a key. Unix only, like the daemons that read these files.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use exchange_core::identity::Principal;

use crate::{Ca, Validity};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a principal's TLS certificate.
pub const TLS_CERT_FILE: &str = "tls.pem";
/// File name of a principal's TLS private key.
pub const TLS_KEY_FILE: &str = "tls.key";
/// File name of a principal's TLS encryption certificate: TLCP's second certificate, shangmi
/// profile only (key usage keyEncipherment and keyAgreement).
pub const TLS_ENC_CERT_FILE: &str = "tls-enc.pem";
/// File name of the private key of [`TLS_ENC_CERT_FILE`].
pub const TLS_ENC_KEY_FILE: &str = "tls-enc.key";
/// File name of a principal's document-signing certificate.
pub const SIGNING_CERT_FILE: &str = "signing.pem";
/// File name of a principal's document-signing private key.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Mode of certificates and configs: anyone may read them.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of private keys: the owner only.
pub(crate) const PRIVATE_MODE: u32 = 0o600;

/// Issues `who` a TLS and a document-signing identity and writes them into `out` (created if
/// missing) as `tls.pem`, `tls.key`, `signing.pem`, `signing.key`, replacing earlier ones.
///
/// `dns_names` and `ips` only matter for the hub (see [`Ca::issue_tls`]).
pub fn issue_into_dir(
    ca: &Ca,
    who: &Principal,
    dns_names: &[String],
    ips: &[IpAddr],
    validity: Validity,
    out: &Path,
) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tls = ca.issue_tls(who, dns_names, ips, validity)?;
    tls.write(&out.join(TLS_CERT_FILE), &out.join(TLS_KEY_FILE))?;
    let signing = ca.issue_signing(who, validity)?;
    signing.write(&out.join(SIGNING_CERT_FILE), &out.join(SIGNING_KEY_FILE))
}

/// Writes a CA into `dir` (created if missing): `ca.pem` (0644) and `ca.key` (0600). Refuses to
/// overwrite an existing `ca.key`: losing a CA key orphans every certificate it issued.
pub(crate) fn write_ca(dir: &Path, key_pem: &[u8], cert_pem: &str) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    create_file(&dir.join(CA_KEY_FILE), key_pem, PRIVATE_MODE)?;
    replace_file(&dir.join(CA_CERT_FILE), cert_pem.as_bytes(), PUBLIC_MODE)
}

/// Writes `contents` to `path` with `mode`, atomically replacing any existing file.
pub(crate) fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_path(path)?;
    let written = write_new(&tmp, contents, mode).and_then(|()| {
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if written.is_err() {
        // Best effort: the error that matters is the one returned below.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Writes `contents` to a new file at `path` with `mode`; fails if `path` already exists.
pub(crate) fn create_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        bail!("refusing to overwrite existing {}", path.display());
    }
    let tmp = temp_path(path)?;
    write_new(&tmp, contents, mode)?;
    // A hard link fails if the target exists, so a file that appeared since the check above is
    // not clobbered either; the temporary name is then removed.
    let linked = fs::hard_link(&tmp, path)
        .with_context(|| format!("refusing to overwrite existing {}", path.display()));
    let _ = fs::remove_file(&tmp);
    linked
}

/// Creates `path` (which must not exist) with `mode` and writes and syncs `contents`.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// A temporary name in the same directory as `path`, so that a rename stays on one filesystem.
fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp{}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn private_files_are_0600_and_create_refuses_to_clobber() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("x.key");
        create_file(&key, b"one", PRIVATE_MODE)?;
        assert_eq!(fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
        assert!(create_file(&key, b"two", PRIVATE_MODE).is_err());
        assert_eq!(fs::read(&key)?, b"one");

        // Replacing a file that had looser permissions leaves a 0600 file, not the old mode.
        let loose = dir.path().join("loose.key");
        replace_file(&loose, b"old", PUBLIC_MODE)?;
        replace_file(&loose, b"new", PRIVATE_MODE)?;
        assert_eq!(fs::metadata(&loose)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&loose)?, b"new");
        assert_eq!(
            fs::read_dir(dir.path())?.count(),
            2,
            "no temporary files left behind"
        );
        Ok(())
    }
}

//! Installing a small file atomically: the whole new content or the whole old one survives a
//! crash at any point, never a mix. The content goes to a temporary file in the same directory
//! (mode 0600), is fsynced, then takes the final name (rename, or a hard link when an existing
//! file must win), and the directory is fsynced so that the new name itself is durable.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::keys::try_random;

/// What to do when the final name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Install {
    /// Replace it (rotation: the new ring supersedes the old).
    Replace,
    /// Keep it and report [`Installed::Existing`] (creation racing another creator: two rings
    /// would mean two data keys, and the data sealed under the loser's lost for good).
    KeepExisting,
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Installed {
    /// The new content is in place and durable.
    New,
    /// [`Install::KeepExisting`] found a file already there; nothing was changed.
    Existing,
}

/// Writes `bytes` to `path` atomically, as the module describes.
pub(super) fn write(path: &Path, bytes: &[u8], install: Install) -> io::Result<Installed> {
    let tmp = temp_name(path)?;
    let result = write_temp(&tmp, bytes).and_then(|()| match install {
        Install::Replace => std::fs::rename(&tmp, path).map(|()| Installed::New),
        // link(2) fails rather than replace: an atomic "create if absent" for a whole file.
        Install::KeepExisting => match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Installed::New),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Installed::Existing),
            Err(e) => Err(e),
        },
    });
    // After a rename the temporary name is gone already; after a link or a failure it is not.
    if result.is_err() || install == Install::KeepExisting {
        let _ = std::fs::remove_file(&tmp);
    }
    match result? {
        Installed::New => sync_parent(path).map(|()| Installed::New),
        Installed::Existing => Ok(Installed::Existing),
    }
}

/// Fsyncs the directory holding `path`, so that a name created or renamed there is durable.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn write_temp(tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `.<name>.tmp-<random>` next to `path`: same directory (so the rename is atomic), hidden, and
/// unique, so that two writers never share a temporary file.
fn temp_name(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let suffix: [u8; 8] = try_random().map_err(|_| io::Error::other("the random source failed"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", hex::encode(suffix)));
    Ok(path.with_file_name(tmp))
}

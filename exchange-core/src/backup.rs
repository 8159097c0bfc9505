//! Online backup of a daemon's data directory: a consistent copy taken while it serves.
//!
//! redb locks its file, so the running daemon makes the copy itself (the hub through its `Admin`
//! service, the node through its local API). The copy is:
//!
//! 1. **the database**, copied table by table inside **one read transaction**: every table sees
//!    the same snapshot, so the copy holds exactly the commits that preceded it — every
//!    acknowledged document, queue item and audit entry, and nothing half-written. Writers go
//!    on meanwhile (redb's MVCC, PostgreSQL's snapshot). Each store module lists its tables
//!    ([`kv::Table`]); on redb a table found in the file that no module listed fails the backup
//!    rather than being silently left out. The copy is always a redb store of the same kind and
//!    schema, whichever backend it was taken from.
//! 2. **the content blobs**, `blobs/sha256/*` and (encrypted at rest) `blobs/sealed/*`, as
//!    stored (see [`crate::blob`]), listed *after* the snapshot: a blob is installed
//!    (fsynced, renamed) before any commit that refers to it, and blobs are never deleted, so
//!    every blob the snapshot needs is there. They are hard-linked when the backup is on the
//!    same file system (they never change once installed), copied otherwise. A hub on
//!    PostgreSQL keeps its blobs in the database ([`crate::blob::database`]): they are written
//!    out as blob files of the same layout (encrypted ones as they are stored, never
//!    decrypted), read after the snapshot for the same reason, so the backup restores into a
//!    hub that keeps files (a redb hub). Its key ring, kept in the database too, becomes the
//!    copy's `keyring.json`.
//!
//! The result is a data directory: restoring is stopping the daemon, replacing its data
//! directory with the backup, and starting it (`docs/operations.md`).

use std::{
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use redb::Database;

use crate::store::{
    Store, StoreError,
    kv::{self, ReadTables, WriteTables},
};

mod report;

pub use report::describe;

/// A backup could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The destination is not usable (relative, not empty, not a directory).
    #[error("backup destination {path}: {reason}")]
    Destination {
        /// The directory asked for.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the store or writing the copy failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The database holds a table no store module declared, so the copy would be incomplete.
    #[error("table {0:?} is in the store but not known to the backup; nothing was written")]
    UnknownTable(String),
    /// A content blob in the database could not be read or written out.
    #[error("{0}")]
    Blob(#[from] crate::blob::BlobError),
    /// A file could not be written or linked.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The backup directory.
    pub dir: PathBuf,
    /// Each table copied, with its number of rows.
    pub tables: Vec<(String, u64)>,
    /// Content blobs in the backup.
    pub blobs: u64,
    /// Their total size.
    pub blob_bytes: u64,
    /// How many of them were copied rather than hard-linked (another file system).
    pub copied: u64,
    /// When the snapshot was taken (Unix ms).
    pub at_ms: i64,
}

/// Where a backup finds the content blobs and the key ring.
#[derive(Debug, Clone, Copy)]
pub enum BlobSource<'a> {
    /// Blob files under this directory (`<data dir>/blobs`), the key ring beside it.
    Files(&'a Path),
    /// The store's database (a hub on PostgreSQL), which holds the key ring too.
    Database,
}

/// Copies `store` (its `tables`, in one snapshot) to `<out>/<db_name>` and the complete blobs
/// under `blobs` to `<out>/blobs/` (`sha256/` and `sealed/`). `out` must be absolute and absent or empty; it is
/// created with mode 0700 (the copy holds every document). Runs on the blocking pool.
pub async fn backup(
    store: &Store,
    db_name: &'static str,
    tables: Vec<kv::Table>,
    blobs: &Path,
    out: &Path,
) -> Result<Summary, BackupError> {
    backup_from(store, db_name, tables, BlobSource::Files(blobs), out).await
}

/// [`backup`] with the blobs and the key ring taken from `source`: files, or the database.
pub async fn backup_from(
    store: &Store,
    db_name: &'static str,
    tables: Vec<kv::Table>,
    source: BlobSource<'_>,
    out: &Path,
) -> Result<Summary, BackupError> {
    prepare(out)?;
    match source {
        BlobSource::Files(blobs) => copy_keyring(blobs, out)?,
        BlobSource::Database => write_keyring(store, out).await?,
    }
    let at_ms = crate::time::now_ms();
    let db_path = out.join(db_name);
    let partial = out.join(format!("{db_name}.partial"));
    let target = partial.clone();
    let stamps = store.stamps();
    let copied = store
        .read(move |txn| copy_tables(txn, &tables, &target, &stamps))
        .await
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
    std::fs::rename(&partial, &db_path).map_err(io_err("renaming", &partial))?;
    let (count, bytes, copies) = match source {
        BlobSource::Files(blobs) => link_all(blobs, out).await?,
        BlobSource::Database => {
            let (to, keys) = (out.join("blobs"), store.sealer().keys().cloned());
            for sub in crate::blob::COMPLETE_DIRS {
                let dir = to.join(sub);
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(io_err("creating", &dir))?;
            }
            let (n, b) = store
                .read(move |txn| crate::blob::database::export(txn, keys.as_ref(), &to))
                .await?;
            for sub in crate::blob::COMPLETE_DIRS {
                sync_dir(&out.join("blobs").join(sub))?;
            }
            sync_dir(&out.join("blobs"))?;
            (n, b, n)
        }
    };
    sync_dir(out)?;
    Ok(Summary {
        dir: out.to_owned(),
        tables: copied,
        blobs: count,
        blob_bytes: bytes,
        copied: copies,
        at_ms,
    })
}

/// Hard-links (or copies) the complete blob files under `blobs` into `<out>/blobs`.
async fn link_all(blobs: &Path, out: &Path) -> Result<(u64, u64, u64), BackupError> {
    let (blobs_from, blobs_to) = (blobs.to_owned(), out.join("blobs"));
    tokio::task::spawn_blocking(move || {
        // Plaintext (`sha256/`) and encrypted (`sealed/`) blobs alike, as they are: a backup
        // of an encrypted store holds its content encrypted.
        let mut total = (0, 0, 0);
        for sub in crate::blob::COMPLETE_DIRS {
            let (n, b, c) = link_blobs(&blobs_from.join(sub), &blobs_to.join(sub))?;
            total = (total.0 + n, total.1 + b, total.2 + c);
        }
        Ok::<_, BackupError>(total)
    })
    .await
    .map_err(|e| BackupError::Io {
        what: "copying blobs",
        path: blobs.to_owned(),
        source: io::Error::other(e.to_string()),
    })?
}

/// The key ring a store keeps in its database (a hub on PostgreSQL) becomes the copy's
/// `keyring.json` (mode 0600), so that the copy restores like any data directory.
async fn write_keyring(store: &Store, out: &Path) -> Result<(), BackupError> {
    let store = store.clone();
    let ring = tokio::task::spawn_blocking(move || store.database_keyring())
        .await
        .map_err(|_| StoreError::Closed)??;
    let Some(ring) = ring else {
        return Ok(());
    };
    let to = out.join(crate::atrest::Keyring::FILE_NAME);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&to)
        .map_err(io_err("creating", &to))?;
    f.write_all(&ring)
        .and_then(|()| f.sync_all())
        .map_err(io_err("writing", &to))
}

/// The key ring of an encrypted data directory (beside `blobs`) goes with the backup: without
/// it nothing in the backup opens, and it holds only data keys wrapped under the KEK, which a
/// backup never contains. Copied first: it changes only at a KEK rotation (atomically).
fn copy_keyring(blobs: &Path, out: &Path) -> Result<(), BackupError> {
    let Some(data) = blobs.parent() else {
        return Ok(());
    };
    let ring = data.join(crate::atrest::Keyring::FILE_NAME);
    if !ring.exists() {
        return Ok(());
    }
    let to = out.join(crate::atrest::Keyring::FILE_NAME);
    std::fs::copy(&ring, &to).map_err(io_err("copying", &ring))?;
    std::fs::File::open(&to)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", &to))?;
    Ok(())
}

/// Creates `out` (mode 0700), or accepts it if it is an empty directory.
fn prepare(out: &Path) -> Result<(), BackupError> {
    let refuse = |reason: &str| BackupError::Destination {
        path: out.to_owned(),
        reason: reason.to_owned(),
    };
    if !out.is_absolute() {
        return Err(refuse("must be an absolute path"));
    }
    match std::fs::read_dir(out) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(refuse("is not empty; give a new directory")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .map_err(io_err("creating", out)),
        Err(e) => Err(refuse(&e.to_string())),
    }
}

/// Copies every table into a fresh redb store at `path`, stamped with `stamps`, in one write
/// transaction; on redb checks first that `tables` covers every table in the snapshot.
fn copy_tables(
    src: &dyn ReadTables,
    tables: &[kv::Table],
    path: &Path,
    stamps: &crate::store::Stamps,
) -> Result<Vec<(String, u64)>, BackupError> {
    if let Some(present) = src.stored_tables()? {
        let known: Vec<String> = tables.iter().map(|t| kv::redb::redb_name(*t)).collect();
        for t in present {
            if t != redb::TableHandle::name(&crate::store::META) && !known.contains(&t) {
                return Err(BackupError::UnknownTable(t));
            }
        }
    }
    let db = Database::create(path).map_err(StoreError::from)?;
    let dst = db.begin_write().map_err(StoreError::from)?;
    stamps.write(&dst)?;
    let mut counts = Vec::with_capacity(tables.len());
    for t in tables {
        let rows = kv::for_each(src, *t, 1024, &mut |(k, v)| dst.put(*t, &k, &v))?;
        counts.push((t.name().to_owned(), rows));
    }
    dst.commit().map_err(StoreError::from)?; // Durability::Immediate: fsynced
    drop(db);
    Ok(counts)
}

/// Hard-links (or, across file systems, copies and fsyncs) every file of `from` into `to`;
/// returns (files, bytes, copied).
fn link_blobs(from: &Path, to: &Path) -> Result<(u64, u64, u64), BackupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .map_err(io_err("creating", to))?;
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0, 0)),
        Err(e) => return Err(io_err("listing", from)(e)),
    };
    let (mut files, mut bytes, mut copied) = (0, 0, 0);
    for entry in entries {
        let entry = entry.map_err(io_err("listing", from))?;
        let meta = entry.metadata().map_err(io_err("reading", &entry.path()))?;
        if !meta.is_file() {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io_err("copying", &src))?;
            std::fs::File::open(&dst)
                .and_then(|f| f.sync_all())
                .map_err(io_err("syncing", &dst))?;
            copied += 1;
        }
        files += 1;
        bytes += meta.len();
    }
    sync_dir(to)?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok((files, bytes, copied))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{kv::Table, queue::DurableQueue};

    const A: Table = Table::new("a");
    const B: DurableQueue = DurableQueue::new("b");
    const TABLES: &[Table] = &[A, B.table(), crate::store::kv::COUNTERS];

    async fn filled() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), "test", 1).unwrap();
        store
            .write(|txn| -> Result<(), StoreError> {
                txn.put(A, b"x", &7u64.to_be_bytes())?;
                B.push(txn, "d", 1, b"item")?;
                Ok(())
            })
            .await
            .unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("ab"), b"content").unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn the_copy_holds_every_table_and_blob_and_opens_as_a_store() {
        let (dir, store) = filled().await;
        let out = dir.path().join("backup/one");
        let s = backup(
            &store,
            "s.redb",
            TABLES.to_vec(),
            &dir.path().join("blobs"),
            &out,
        )
        .await
        .unwrap();
        assert_eq!((s.blobs, s.blob_bytes), (1, 7));
        assert!(s.tables.contains(&("a".to_owned(), 1)), "{s:?}");
        let copy = Store::open(&out.join("s.redb"), "test", 1).unwrap();
        let (a, b) = copy
            .read(|txn| -> Result<_, StoreError> {
                let a = txn.get(A, b"x")?;
                let b = B.len(txn, "d")?;
                Ok((a, b))
            })
            .await
            .unwrap();
        assert_eq!((a, b), (Some(7u64.to_be_bytes().to_vec()), 1));
        assert_eq!(
            std::fs::read(out.join("blobs/sha256/ab")).unwrap(),
            b"content"
        );
    }

    #[tokio::test]
    async fn encrypted_blobs_go_with_the_backup_as_stored() {
        let (dir, store) = filled().await;
        let sealed = dir.path().join("blobs/sealed");
        std::fs::create_dir_all(&sealed).unwrap();
        std::fs::write(sealed.join("cd"), b"\xF7EXB...").unwrap();
        let out = dir.path().join("backup/two");
        let blobs = dir.path().join("blobs");
        let s = backup(&store, "s.redb", TABLES.to_vec(), &blobs, &out)
            .await
            .unwrap();
        assert_eq!(s.blobs, 2, "{s:?}");
        assert_eq!(
            std::fs::read(out.join("blobs/sealed/cd")).unwrap(),
            b"\xF7EXB..."
        );
    }

    #[tokio::test]
    async fn an_unlisted_table_or_a_used_directory_is_refused() {
        let (dir, store) = filled().await;
        let out = dir.path().join("b1");
        let blobs = dir.path().join("blobs");
        let err = backup(&store, "s.redb", vec![A], &blobs, &out)
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::UnknownTable(_)), "{err}");
        let used = dir.path().join("blobs");
        let err = backup(&store, "s.redb", TABLES.to_vec(), &blobs, &used)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let err = backup(&store, "s.redb", TABLES.to_vec(), &blobs, Path::new("rel"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }
}

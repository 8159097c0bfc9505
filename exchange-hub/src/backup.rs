//! Online backup of the hub (`Admin.Backup`, `exchange-hub backup --out DIR`): every table of
//! `hub.redb` (or of the hub's PostgreSQL database, copied into a `hub.redb`) in one snapshot,
//! and the content blobs (written out as files from the database on PostgreSQL). See
//! `exchange_core::backup` for why the copy is consistent while the hub serves.

use std::path::Path;

use exchange_core::{
    backup::{self, BackupError, BlobSource, Summary},
    store::{Store, kv},
};

/// Every table of the hub store: the counters, the document tables and queue (`store`), the
/// audit log (`audit`); the backup stamps `meta` itself. A table missing here fails every
/// backup of a redb store (see `exchange_core::backup`), and is not created by `migrate` on
/// PostgreSQL.
pub(crate) fn tables() -> Vec<kv::Table> {
    let mut all = vec![kv::COUNTERS];
    all.extend_from_slice(crate::store::TABLES);
    all.extend_from_slice(crate::audit::TABLES);
    all
}

/// Copies the hub's `store` and the blobs under `data_dir` into `out`.
pub(crate) async fn take(
    store: &Store,
    data_dir: &Path,
    out: &Path,
) -> Result<Summary, BackupError> {
    // A hub on PostgreSQL keeps its blobs (and key ring) in the database: written out as files.
    let blobs = data_dir.join("blobs");
    let source = if store.is_database() {
        BlobSource::Database
    } else {
        BlobSource::Files(&blobs)
    };
    let summary = backup::backup_from(store, "hub.redb", tables(), source, out).await?;
    let rows: u64 = summary.tables.iter().map(|(_, n)| n).sum();
    tracing::info!(
        dir = %out.display(),
        rows,
        blobs = summary.blobs,
        linked = summary.blobs - summary.copied,
        "backup written"
    );
    Ok(summary)
}

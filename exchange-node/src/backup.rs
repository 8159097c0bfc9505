//! Online backup of the node (the API's `Backup`, `exchange-node backup --out DIR`): every table
//! of `node.redb` in one snapshot, and the content blobs. See `exchange_core::backup` for why
//! the copy is consistent while the node serves.

use std::path::Path;

use exchange_core::{
    backup::{self, BackupError, Summary},
    store::{Store, kv},
};

/// Every table of the node store: the counters and the tables of `store`; the backup stamps
/// `meta` itself. A table missing here fails every backup (see `exchange_core::backup`).
pub(crate) fn tables() -> Vec<kv::Table> {
    let mut all = vec![kv::COUNTERS];
    all.extend_from_slice(crate::store::TABLES);
    all
}

/// Copies the node's `store` and the blobs under `data_dir` into `out`.
pub(crate) async fn take(
    store: &Store,
    data_dir: &Path,
    out: &Path,
) -> Result<Summary, BackupError> {
    let summary =
        backup::backup(store, "node.redb", tables(), &data_dir.join("blobs"), out).await?;
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

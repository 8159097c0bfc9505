//! Upgrading a redb store file from one schema version to the next, in one write transaction:
//! a crash or a full disk half-way leaves the old version whole (redb commits atomically).
//!
//! Schema 1 kept typed redb tables; schema 2 keeps [`kv`](super::kv) tables (`kv_<name>`,
//! byte keys and values), which PostgreSQL holds the same way. [`move_table`] copies one typed
//! table into its kv table and deletes it; [`move_counters`] moves the counters out of `meta`.

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{
    META, StoreError,
    kv::{COUNTERS, Key, Table, WriteTables},
};

/// What [`upgrade`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// The file already had the target version (or is new): nothing was written.
    Current,
    /// The file was upgraded from this version.
    From(u64),
}

/// Upgrades the `kind` store at `path` from schema `from` to `to` with `steps`, if it has
/// `from`; does nothing if it has `to` or does not exist; refuses anything else.
pub fn upgrade(
    path: &Path,
    kind: &'static str,
    from: u64,
    to: u64,
    steps: impl FnOnce(&WriteTransaction) -> Result<(), StoreError>,
) -> Result<Upgrade, StoreError> {
    if !path.exists() {
        return Ok(Upgrade::Current);
    }
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    let found = {
        let meta = txn.open_table(META)?;
        let kind_ok = meta
            .get(format!("kind:{kind}").as_str())?
            .is_some_and(|v| v.value() == 1);
        let schema = meta.get("schema")?.map(|v| v.value());
        match (kind_ok, schema) {
            (true, Some(v)) => v,
            (false, None) if meta.len()? == 0 => return Ok(Upgrade::Current), // new, empty
            _ => {
                return Err(StoreError::Foreign {
                    path: path.to_owned(),
                    expected: kind,
                    version: to,
                    found: "a store of another kind".to_owned(),
                });
            }
        }
    };
    if found == to {
        return Ok(Upgrade::Current);
    }
    if found != from {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            expected: kind,
            version: to,
            found: format!("schema version {found}, which this build cannot upgrade"),
        });
    }
    steps(&txn)?;
    txn.open_table(META)?.insert("schema", to)?;
    txn.commit()?;
    tracing::info!(path = %path.display(), from, to, "store schema upgraded");
    Ok(Upgrade::From(from))
}

/// Copies every row of the typed table `from` into the kv table `to`, converted by `convert`
/// (key, value → kv key, kv value), then deletes `from`; returns how many rows moved.
pub fn move_table<K, V>(
    txn: &WriteTransaction,
    from: TableDefinition<'_, K, V>,
    to: Table,
    convert: impl Fn(K::SelfType<'_>, V::SelfType<'_>) -> Result<(Vec<u8>, Vec<u8>), StoreError>,
) -> Result<u64, StoreError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let mut moved = 0;
    {
        let table = match txn.open_table(from) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for row in table.iter()? {
            let (k, v) = row?;
            let (key, value) = convert(k.value(), v.value())?;
            txn.put(to, &key, &value)?;
            moved += 1;
        }
    }
    txn.delete_table(from)?;
    Ok(moved)
}

/// Moves the counters `names` from `meta` into [`COUNTERS`].
pub fn move_counters(txn: &WriteTransaction, names: &[&str]) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    for name in names {
        if let Some(v) = meta.remove(*name)? {
            let value = v.value();
            drop(v);
            txn.put(
                COUNTERS,
                &Key::new().str(name).finish(),
                &value.to_be_bytes(),
            )?;
        }
    }
    Ok(())
}

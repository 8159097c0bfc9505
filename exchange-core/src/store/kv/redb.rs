//! The embedded backend: a [`Table`] is the redb table `kv_<name>` of `&[u8] → &[u8]` (the same
//! name as in PostgreSQL, and apart from the typed tables of schema 1 stores, which a migration
//! copies), read and written through redb's own transactions (the store's group-committing writer
//! commits them).

use std::{cell::RefCell, collections::HashMap, ops::Bound};

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{Entry, KeyRange, Order, ReadTables, Table, WriteTables};
use crate::store::StoreError;

type Def<'n> = TableDefinition<'n, &'static [u8], &'static [u8]>;

/// A table open in a write transaction.
type Open<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// The name of the redb table behind `table`.
pub fn redb_name(table: Table) -> String {
    format!("kv_{}", table.name())
}

fn collect<'a, I>(iter: I, limit: usize) -> Result<Vec<Entry>, StoreError>
where
    I: Iterator<
        Item = Result<
            (
                redb::AccessGuard<'a, &'static [u8]>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
{
    iter.take(limit)
        .map(|r| {
            let (k, v) = r?;
            Ok((k.value().to_vec(), v.value().to_vec()))
        })
        .collect()
}

fn scan_table<T>(
    t: &T,
    range: &KeyRange,
    order: Order,
    limit: usize,
) -> Result<Vec<Entry>, StoreError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if limit == 0 || empty(range) {
        return Ok(Vec::new());
    }
    let iter = t.range::<&[u8]>(range.as_refs())?;
    match order {
        Order::Ascending => collect(iter, limit),
        Order::Descending => collect(iter.rev(), limit),
    }
}

/// redb panics on a range whose start is above its end; such a range holds nothing.
fn empty(range: &KeyRange) -> bool {
    let (start, end) = range.as_refs();
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

impl ReadTables for ReadTransaction {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.open_table(Def::new(&redb_name(table))) {
            Ok(t) => Ok(t.get(key)?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn scan(
        &self,
        table: Table,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        match self.open_table(Def::new(&redb_name(table))) {
            Ok(t) => scan_table(&t, range, order, limit),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn len(&self, table: Table) -> Result<u64, StoreError> {
        match self.open_table(Def::new(&redb_name(table))) {
            Ok(t) => Ok(t.len()?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn stored_tables(&self) -> Result<Option<Vec<String>>, StoreError> {
        use redb::{MultimapTableHandle, TableHandle};
        let mut names: Vec<String> = self.list_tables()?.map(|t| t.name().to_owned()).collect();
        names.extend(self.list_multimap_tables()?.map(|t| t.name().to_owned()));
        Ok(Some(names))
    }
}

impl ReadTables for WriteTransaction {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.open_table(Def::new(&redb_name(table)))?;
        let value = t.get(key)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    fn scan(
        &self,
        table: Table,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        scan_table(
            &self.open_table(Def::new(&redb_name(table)))?,
            range,
            order,
            limit,
        )
    }

    fn len(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self.open_table(Def::new(&redb_name(table)))?.len()?)
    }
}

impl WriteTables for WriteTransaction {
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.open_table(Def::new(&redb_name(table)))?
            .insert(key, value)?;
        Ok(())
    }

    fn delete(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.open_table(Def::new(&redb_name(table)))?.remove(key)?;
        Ok(())
    }
}

/// A write transaction whose tables stay open until it is committed, for the store's writer: a
/// batch of jobs touches the same dozen tables hundreds of times, and opening a redb table looks
/// it up in the table tree and closing it writes its root back. Everything else that writes
/// (migrations, a backup's copy) uses the transaction itself, where it may also open tables of
/// its own (redb refuses a table opened twice).
pub struct OpenTables<'t> {
    txn: &'t WriteTransaction,
    open: RefCell<HashMap<Table, Open<'t>>>,
}

impl<'t> OpenTables<'t> {
    /// The tables of `txn`, each opened on first use.
    pub fn new(txn: &'t WriteTransaction) -> Self {
        OpenTables {
            txn,
            open: RefCell::new(HashMap::new()),
        }
    }

    /// Runs `f` on `table`, opened if it is not yet.
    fn with<R>(
        &self,
        table: Table,
        f: impl FnOnce(&mut Open<'t>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut open = self.open.borrow_mut();
        let t = match open.entry(table) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.txn.open_table(Def::new(&redb_name(table)))?)
            }
        };
        f(t)
    }
}

impl ReadTables for OpenTables<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(table, |t| Ok(t.get(key)?.map(|v| v.value().to_vec())))
    }

    fn scan(
        &self,
        table: Table,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.with(table, |t| scan_table(&*t, range, order, limit))
    }

    fn len(&self, table: Table) -> Result<u64, StoreError> {
        self.with(table, |t| Ok(t.len()?))
    }
}

impl WriteTables for OpenTables<'_> {
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.with(table, |t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn delete(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.with(table, |t| {
            t.remove(key)?;
            Ok(())
        })
    }
}

//! A durable priority queue in a table: items wait per destination, most urgent first, then in
//! arrival order, until the destination acknowledges them.
//!
//! Key: [`Key`] of `(destination, priority, seq)`; a smaller priority goes first; `seq` is a
//! store-wide counter, so equal priorities keep their order.

use std::collections::HashSet;

use super::{
    StoreError,
    kv::{self, Key, KeyRange, KeyReader, ReadTables, Table, WriteTables, next_counter},
};

/// Where an item sits in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// 0 = very urgent, 1 = urgent, 2 = normal.
    pub priority: u8,
    /// Arrival order.
    pub seq: u64,
}

/// A queue stored in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableQueue {
    table: Table,
}

/// Items are read this many at a time when a scan has no limit of its own.
const PAGE: usize = 1024;

/// The stored key of item `k` of `dest`'s queue (also what a migration writes).
pub fn key(dest: &str, k: QueueKey) -> Vec<u8> {
    Key::new().str(dest).u8(k.priority).u64(k.seq).finish()
}

fn parse(raw: &[u8]) -> Result<(String, QueueKey), StoreError> {
    let mut r = KeyReader::new(raw);
    let dest = r.str()?;
    let (priority, seq) = (r.u8()?, r.u64()?);
    r.end()?;
    Ok((dest, QueueKey { priority, seq }))
}

fn of_dest(dest: &str) -> KeyRange {
    KeyRange::prefix(Key::new().str(dest))
}

impl DurableQueue {
    /// The queue stored in table `name` (see [`Table::new`] for what a name may hold).
    pub const fn new(name: &'static str) -> Self {
        DurableQueue {
            table: Table::new(name),
        }
    }

    /// The table that holds the queue, for a backup.
    pub const fn table(&self) -> Table {
        self.table
    }

    /// Appends `item` for `dest` at `priority`, inside `txn`.
    pub fn push(
        &self,
        txn: &dyn WriteTables,
        dest: &str,
        priority: u8,
        item: &[u8],
    ) -> Result<QueueKey, StoreError> {
        let seq = next_counter(txn, "queue_seq")?;
        let k = QueueKey { priority, seq };
        txn.put(self.table, &key(dest, k), item)?;
        Ok(k)
    }

    /// Removes the item at `key`, if it is there. Nothing is read first: on PostgreSQL a read
    /// is a round trip inside the writer's transaction, and removing an item twice is harmless.
    pub fn remove(&self, txn: &dyn WriteTables, dest: &str, k: QueueKey) -> Result<(), StoreError> {
        txn.delete(self.table, &key(dest, k))
    }

    /// The first `limit` items for `dest`, most urgent first, skipping any in `skip` (items
    /// being sent, or set aside). The skipped ones are usually at the head of the queue, so the
    /// first read asks for `limit` plus that many: one read, not one per skipped item (on
    /// PostgreSQL each read is a round trip).
    pub fn peek(
        &self,
        txn: &dyn ReadTables,
        dest: &str,
        limit: usize,
        skip: &HashSet<QueueKey>,
    ) -> Result<Vec<(QueueKey, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        kv::visit(
            txn,
            self.table,
            of_dest(dest),
            limit.saturating_add(skip.len()).min(PAGE),
            &mut |(raw, item)| {
                let (_, k) = parse(&raw)?;
                if !skip.contains(&k) {
                    out.push((k, item));
                }
                Ok(out.len() < limit)
            },
        )?;
        Ok(out)
    }

    /// Every item of every destination, in key order: (destination, key, item).
    pub fn all(
        &self,
        txn: &dyn ReadTables,
    ) -> Result<Vec<(String, QueueKey, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        kv::for_each(txn, self.table, PAGE, &mut |(raw, item)| {
            let (dest, k) = parse(&raw)?;
            out.push((dest, k, item));
            Ok(())
        })?;
        Ok(out)
    }

    /// How many items wait for `dest`.
    pub fn len(&self, txn: &dyn ReadTables, dest: &str) -> Result<usize, StoreError> {
        Ok(self.peek(txn, dest, usize::MAX, &HashSet::new())?.len())
    }

    /// The depth of every (destination, priority) that has items, with its oldest item, for
    /// the metrics endpoint.
    pub fn depths(&self, txn: &dyn ReadTables) -> Result<Vec<QueueDepth>, StoreError> {
        let mut out: Vec<QueueDepth> = Vec::new();
        kv::for_each(txn, self.table, PAGE, &mut |(raw, item)| {
            let (dest, k) = parse(&raw)?;
            match out.last_mut() {
                Some(d) if d.dest == dest && d.priority == k.priority => d.len += 1,
                _ => out.push(QueueDepth {
                    dest,
                    priority: k.priority,
                    len: 1,
                    oldest: item,
                }),
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// How many items wait for one destination at one priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// The destination.
    pub dest: String,
    /// The priority (0 = very urgent).
    pub priority: u8,
    /// How many items.
    pub len: u64,
    /// The first (oldest) item, to tell its age.
    pub oldest: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const Q: DurableQueue = DurableQueue::new("q");

    #[tokio::test]
    async fn most_urgent_first_then_fifo_and_durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, "test", 1).unwrap();
            store
                .write(|txn| -> Result<(), StoreError> {
                    Q.push(txn, "b", 2, b"normal-1")?;
                    Q.push(txn, "b", 2, b"normal-2")?;
                    Q.push(txn, "b", 0, b"very-urgent")?;
                    Q.push(txn, "c", 0, b"other-dest")?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        let store = Store::open(&path, "test", 1).unwrap();
        let items = store
            .read(|txn| Q.peek(txn, "b", 10, &HashSet::new()))
            .await
            .unwrap();
        let bodies: Vec<_> = items.iter().map(|(_, v)| v.as_slice()).collect();
        assert_eq!(bodies, [&b"very-urgent"[..], b"normal-1", b"normal-2"]);
        let first = items[0].0;
        store
            .write(move |txn| Q.remove(txn, "b", first))
            .await
            .unwrap();
        assert_eq!(store.read(|txn| Q.len(txn, "b")).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_store_of_another_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::open(&path, "hub", 1).unwrap());
        let err = Store::open(&path, "node", 1).unwrap_err().to_string();
        assert!(err.contains("not a node store"), "{err}");
        let err = Store::open(&path, "hub", 2).unwrap_err().to_string();
        assert!(err.contains("schema version 1"), "{err}");
    }
}

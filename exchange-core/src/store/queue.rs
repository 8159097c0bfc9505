//! A durable priority queue inside a redb table: items wait per destination, most urgent first,
//! then in arrival order, until the destination acknowledges them.
//!
//! Key: `(destination, priority, seq)`; a smaller priority goes first; `seq` is a store-wide
//! counter, so equal priorities keep their order.

use redb::{ReadTransaction, TableDefinition, WriteTransaction};

use super::{StoreError, next_counter};

/// Where an item sits in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// 0 = very urgent, 1 = urgent, 2 = normal.
    pub priority: u8,
    /// Arrival order.
    pub seq: u64,
}

/// A queue stored in one redb table.
#[derive(Clone, Copy)]
pub struct DurableQueue {
    table: TableDefinition<'static, (&'static str, u8, u64), &'static [u8]>,
}

impl std::fmt::Debug for DurableQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DurableQueue")
            .field(&self.table.to_string())
            .finish()
    }
}

/// A queue is one table: a backup copies it like any other.
impl crate::backup::BackupTable for DurableQueue {
    fn table_name(&self) -> String {
        self.table.table_name()
    }
    fn copy(&self, src: &ReadTransaction, dst: &WriteTransaction) -> Result<u64, StoreError> {
        self.table.copy(src, dst)
    }
    fn rows(&self, src: &ReadTransaction) -> Result<u64, StoreError> {
        self.table.rows(src)
    }
}

impl DurableQueue {
    /// The queue stored in table `name`.
    pub const fn new(name: &'static str) -> Self {
        DurableQueue {
            table: TableDefinition::new(name),
        }
    }

    /// Appends `item` for `dest` at `priority`, inside `txn`.
    pub fn push(
        &self,
        txn: &WriteTransaction,
        dest: &str,
        priority: u8,
        item: &[u8],
    ) -> Result<QueueKey, StoreError> {
        let seq = next_counter(txn, "queue_seq")?;
        txn.open_table(self.table)?
            .insert((dest, priority, seq), item)?;
        Ok(QueueKey { priority, seq })
    }

    /// Removes the item at `key`; returns whether it was there.
    pub fn remove(
        &self,
        txn: &WriteTransaction,
        dest: &str,
        key: QueueKey,
    ) -> Result<bool, StoreError> {
        Ok(txn
            .open_table(self.table)?
            .remove((dest, key.priority, key.seq))?
            .is_some())
    }

    /// The first `limit` items for `dest`, most urgent first, skipping any in `skip`.
    pub fn peek(
        &self,
        txn: &ReadTransaction,
        dest: &str,
        limit: usize,
        skip: &dyn Fn(QueueKey) -> bool,
    ) -> Result<Vec<(QueueKey, Vec<u8>)>, StoreError> {
        let table = match txn.open_table(self.table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.range((dest, 0u8, 0u64)..=(dest, u8::MAX, u64::MAX))? {
            let (k, v) = entry?;
            let (_, priority, seq) = k.value();
            let key = QueueKey { priority, seq };
            if skip(key) {
                continue;
            }
            out.push((key, v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every item of every destination, in key order: (destination, key, item).
    pub fn all(
        &self,
        txn: &ReadTransaction,
    ) -> Result<Vec<(String, QueueKey, Vec<u8>)>, StoreError> {
        let table = match txn.open_table(self.table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in redb::ReadableTable::iter(&table)? {
            let (k, v) = entry?;
            let (dest, priority, seq) = k.value();
            out.push((
                dest.to_owned(),
                QueueKey { priority, seq },
                v.value().to_vec(),
            ));
        }
        Ok(out)
    }

    /// How many items wait for `dest`.
    pub fn len(&self, txn: &ReadTransaction, dest: &str) -> Result<usize, StoreError> {
        Ok(self.peek(txn, dest, usize::MAX, &|_| false)?.len())
    }

    /// The depth of every (destination, priority) that has items, with its oldest item, for
    /// the metrics endpoint. Reads keys only, but for one value per group.
    pub fn depths(&self, txn: &ReadTransaction) -> Result<Vec<QueueDepth>, StoreError> {
        let table = match txn.open_table(self.table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<QueueDepth> = Vec::new();
        for entry in redb::ReadableTable::iter(&table)? {
            let (k, v) = entry?;
            let (dest, priority, _) = k.value();
            match out.last_mut() {
                Some(d) if d.dest == dest && d.priority == priority => d.len += 1,
                _ => out.push(QueueDepth {
                    dest: dest.to_owned(),
                    priority,
                    len: 1,
                    oldest: v.value().to_vec(),
                }),
            }
        }
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
            .read(|txn| Q.peek(txn, "b", 10, &|_| false))
            .await
            .unwrap();
        let bodies: Vec<_> = items.iter().map(|(_, v)| v.as_slice()).collect();
        assert_eq!(bodies, [&b"very-urgent"[..], b"normal-1", b"normal-2"]);
        let first = items[0].0;
        assert!(
            store
                .write(move |txn| Q.remove(txn, "b", first))
                .await
                .unwrap()
        );
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

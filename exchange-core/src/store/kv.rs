//! Ordered key-value tables inside a transaction: all that the stores need of a database, so
//! that one implementation of the hub's store runs on either backend (issue 17):
//!
//! - **redb** (embedded, the default): [`ReadTables`] and [`WriteTables`] are implemented for
//!   redb's own transactions ([`redb`](self::redb)); a table is a redb table of byte keys and
//!   byte values. The store's writer goes through [`redb::OpenTables`],
//!   which keeps each table open for the rest of the transaction.
//! - **PostgreSQL** (feature `postgres`, [`postgres`](self::postgres)): a table is a SQL table
//!   `kv_<name> (k bytea PRIMARY KEY, v bytea NOT NULL)`; a transaction keeps its writes in
//!   memory (reads see them) and sends them at commit as one statement per table, so a batch of
//!   documents costs a few round trips, not one per row.
//!
//! Keys are compared as bytes, in both backends (redb's `&[u8]` order and PostgreSQL's `bytea`
//! order are both `memcmp`, shorter first on a tie). [`Key`] encodes tuples so that this byte
//! order is the tuple's order: a queue keyed by (destination, priority, sequence) scans in
//! priority order within one destination on either backend.

pub mod redb;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(test)]
mod tests;

use std::ops::Bound;

use super::StoreError;

/// One table of byte keys and byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Table(&'static str);

impl Table {
    /// The table `name`: lower-case ASCII letters, digits and `_`, starting with a letter, at
    /// most 48 bytes (it becomes part of an SQL identifier). Checked at compile time when used
    /// in a `const`.
    pub const fn new(name: &'static str) -> Self {
        let b = name.as_bytes();
        assert!(!b.is_empty() && b.len() <= 48, "table name: 1 to 48 bytes");
        assert!(b[0].is_ascii_lowercase(), "table name: starts with a-z");
        let mut i = 0;
        while i < b.len() {
            assert!(
                b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'_',
                "table name: a-z, 0-9 and _ only"
            );
            i += 1;
        }
        Table(name)
    }

    /// The table's name.
    pub const fn name(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Which way a scan goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first.
    Ascending,
    /// Largest key first.
    Descending,
}

/// The keys a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<u8>>,
    /// Upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix` (a [`Key`] of the leading tuple fields).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let prefix = prefix.into();
        let end = successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        KeyRange {
            start: Bound::Included(prefix),
            end,
        }
    }

    /// Keys from `start` (included) to `end` (excluded).
    pub fn between(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    fn as_refs(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_ref(&self.start), as_ref(&self.end))
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key that starts with `prefix`; `None` when there is
/// none (the prefix is empty or all `0xFF`).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Reading inside a transaction (a snapshot: what was committed when it began, plus, in a write
/// transaction, its own writes).
pub trait ReadTables {
    /// The value at `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries in `range`, in `order`.
    fn scan(
        &self,
        table: Table,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// How many entries `table` holds: exact on redb (kept in its metadata); on PostgreSQL the
    /// planner's estimate (`pg_class.reltuples`, refreshed by autovacuum and `ANALYZE`), since
    /// an exact count reads the whole table. For metrics and reports, never for decisions.
    fn len(&self, table: Table) -> Result<u64, StoreError>;

    /// The names of every table the database holds, as the backend names them (redb: `meta`
    /// and `kv_<name>`), where the backend can list them; a backup checks that it knows each.
    fn stored_tables(&self) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }
}

/// Calls `f` on each entry of `table` in `range`, in key order, read `page` entries at a time,
/// while it returns true.
pub fn visit(
    txn: &dyn ReadTables,
    table: Table,
    mut range: KeyRange,
    page: usize,
    f: &mut dyn FnMut(Entry) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let page = page.max(1);
    loop {
        let entries = txn.scan(table, &range, Order::Ascending, page)?;
        let Some((last, _)) = entries.last() else {
            return Ok(());
        };
        range.start = Bound::Excluded(last.clone());
        let full = entries.len() == page;
        for e in entries {
            if !f(e)? {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// Every entry of `table`, in key order, read `page` entries at a time (a backup, a migration);
/// returns how many.
pub fn for_each(
    txn: &dyn ReadTables,
    table: Table,
    page: usize,
    f: &mut dyn FnMut(Entry) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut count = 0;
    visit(txn, table, KeyRange::all(), page, &mut |e| {
        f(e)?;
        count += 1;
        Ok(true)
    })?;
    Ok(count)
}

/// Why a transaction cannot go on, kept by the transaction itself: after a failed statement a
/// PostgreSQL transaction refuses everything else, so the writer must not blame the jobs that
/// run after the one that met the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed.
    pub message: String,
    /// Whether running the whole transaction again may succeed (a collision).
    pub retry: bool,
    /// Whether the disk is full.
    pub disk_full: bool,
}

impl Failure {
    /// The failure `e` stands for.
    pub fn of(e: &StoreError) -> Self {
        Failure {
            message: e.to_string(),
            retry: e.is_retryable(),
            disk_full: e.is_disk_full(),
        }
    }

    /// The error to give each job of the transaction.
    pub fn error(&self) -> StoreError {
        if self.retry {
            StoreError::Database {
                message: self.message.clone(),
                retry: true,
                disk_full: self.disk_full,
            }
        } else {
            StoreError::Commit {
                message: self.message.clone(),
                disk_full: self.disk_full,
            }
        }
    }
}

/// Writing inside a transaction; nothing is visible to others, nor durable, before the
/// transaction commits.
pub trait WriteTables: ReadTables {
    /// Why the transaction cannot go on, if a statement in it failed in a way that ends it.
    fn failure(&self) -> Option<Failure> {
        None
    }

    /// Sets `key` to `value`, replacing any value it had.
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` (nothing if it is absent).
    fn delete(&self, table: Table, key: &[u8]) -> Result<(), StoreError>;
}

/// The table of counters ([`next_counter`]).
pub const COUNTERS: Table = Table::new("counters");

/// Increments the counter `name` and returns its new value (the first is 1).
pub fn next_counter(txn: &dyn WriteTables, name: &str) -> Result<u64, StoreError> {
    let key = Key::new().str(name).finish();
    let current = match txn.get(COUNTERS, &key)? {
        None => 0,
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| StoreError::decode(format!("counter {name}"), "not 8 bytes"))?,
        ),
    };
    let next = current + 1;
    txn.put(COUNTERS, &key, &next.to_be_bytes())?;
    Ok(next)
}

/// Builds a key from tuple fields so that byte order is tuple order.
///
/// - a string (or byte string) is its bytes with each `00` written `00 FF`, then `00 00`: no
///   encoded string is a prefix of another, and a shorter string sorts before its extensions;
/// - integers are big-endian, fixed width (signed ones with the sign bit flipped).
///
/// A key made of the leading fields of another is its prefix, for [`KeyRange::prefix`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// An empty key.
    pub fn new() -> Self {
        Key(Vec::with_capacity(32))
    }

    /// Appends a string field.
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    /// Appends a byte-string field.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        for &byte in b {
            self.0.push(byte);
            if byte == 0 {
                self.0.push(0xFF);
            }
        }
        self.0.extend_from_slice(&[0, 0]);
        self
    }

    /// Appends a one-byte field.
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    /// Appends an eight-byte field.
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a signed eight-byte field (its sign bit flipped, so that negatives sort first).
    pub fn i64(self, v: i64) -> Self {
        self.u64(v.cast_unsigned() ^ (1 << 63))
    }

    /// The encoded key.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

impl From<Key> for Vec<u8> {
    fn from(k: Key) -> Self {
        k.0
    }
}

/// Reads the fields of a key made by [`Key`], in the order they were written.
#[derive(Debug)]
pub struct KeyReader<'a> {
    rest: &'a [u8],
    key: &'a [u8],
}

impl<'a> KeyReader<'a> {
    /// Starts reading `key`.
    pub fn new(key: &'a [u8]) -> Self {
        KeyReader { rest: key, key }
    }

    fn bad(&self, what: &str) -> StoreError {
        StoreError::decode(format!("key {}", hex::encode(self.key)), what)
    }

    /// The next field, a byte string.
    pub fn bytes(&mut self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match (self.rest.get(i), self.rest.get(i + 1)) {
                (Some(0), Some(0)) => {
                    self.rest = &self.rest[i + 2..];
                    return Ok(out);
                }
                (Some(0), Some(0xFF)) => {
                    out.push(0);
                    i += 2;
                }
                (Some(&b), _) if b != 0 => {
                    out.push(b);
                    i += 1;
                }
                _ => return Err(self.bad("unterminated or badly escaped string field")),
            }
        }
    }

    /// The next field, a string.
    pub fn str(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.bytes()?).map_err(|_| self.bad("string field is not UTF-8"))
    }

    /// The next field, one byte.
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        let (&v, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| self.bad("missing one-byte field"))?;
        self.rest = rest;
        Ok(v)
    }

    /// The next field, eight bytes.
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<8>()
            .ok_or_else(|| self.bad("missing eight-byte field"))?;
        self.rest = rest;
        Ok(u64::from_be_bytes(*head))
    }

    /// The next field, signed eight bytes.
    pub fn i64(&mut self) -> Result<i64, StoreError> {
        Ok((self.u64()? ^ (1 << 63)).cast_signed())
    }

    /// Checks that every field was read.
    pub fn end(self) -> Result<(), StoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes after the last field"))
        }
    }
}

//! The PostgreSQL backend: a [`Table`] is the SQL table `kv_<name> (k bytea PRIMARY KEY, v bytea
//! NOT NULL)`; the schema is versioned in `exchange_schema`.
//!
//! A transaction ([`PgTxn`]) runs at `SERIALIZABLE`: a hub never reads a state another hub is
//! changing under it, and when two collide PostgreSQL fails one of them with a serialization
//! failure, which [`StoreError::is_retryable`] names so the caller runs it again. Reads go to
//! the server (one round trip each, statements prepared once per connection); writes stay in the
//! transaction's memory, where its own reads see them, and go out at [`PgTxn::commit`] as one
//! `INSERT … SELECT unnest(…) ON CONFLICT` and one `DELETE … = ANY(…)` per table touched, then
//! `COMMIT`. A commit returns only when PostgreSQL reports it committed; with
//! `synchronous_commit` at `on` or stricter, that is after the WAL is flushed (and, with
//! synchronous standbys, replicated): docs/operations.md.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    ops::Bound,
};

use postgres::{Client, IsolationLevel, NoTls, Statement, Transaction, error::SqlState};

use super::{Entry, Failure, KeyRange, Order, ReadTables, Table, WriteTables};
use crate::store::StoreError;

mod channel;
mod tls;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let code = e.code();
        StoreError::Database {
            retry: code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                || code == Some(&SqlState::T_R_DEADLOCK_DETECTED),
            disk_full: code == Some(&SqlState::DISK_FULL),
            // The server's message and, for a server error, its detail; never the parameters.
            // Otherwise the cause too: "error connecting to server" alone does not say whether
            // the server was down or a standby (`target_session_attrs=read-write`).
            message: match (e.as_db_error(), std::error::Error::source(&e)) {
                (Some(db), _) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
                (None, Some(cause)) => format!("PostgreSQL: {e}: {cause}"),
                (None, None) => format!("PostgreSQL: {e}"),
            },
        }
    }
}

/// Runs `f`, which uses the (blocking) PostgreSQL client, where it may block: on this thread,
/// or on a thread of its own when this one runs async tasks (the client drives its own small
/// runtime, which cannot start inside another's).
pub fn blocking<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Where the database is: a parsed connection string (with the password, if any, from its own
/// file), TLS if `[store] ca_file` is set, and how messages name it (never with the password).
#[derive(Clone)]
pub struct PgTarget {
    config: postgres::Config,
    shown: String,
    /// TLS with the CA of `[store] ca_file` ([`tls`]); `None`: plaintext.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// Parses `url` (a `postgresql://` URL or libpq key=value words) for plaintext
    /// connections; `password`, if given, replaces any in the URL.
    pub fn new(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        Self::with_ca_file(url, password, None)
    }

    /// [`PgTarget::new`], and with `ca_file` (`[store] ca_file`: PEM CA certificates) every
    /// connection uses TLS and checks the server's certificate and host name, as libpq's
    /// `sslmode=verify-full` (which the URL may say; `verify-ca` is taken as the same). A URL
    /// asking for TLS without `ca_file` is refused.
    pub fn with_ca_file(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, StoreError> {
        let (url, asked_verify) = tls::normalize(url);
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Database {
            message: format!("[store] url is not a PostgreSQL connection string: {e}"),
            retry: false,
            disk_full: false,
        })?;
        if let Some(p) = password {
            config.password(p);
        }
        let tls = tls::connector(&mut config, ca_file, asked_verify)?;
        // A multi-host URL (`postgresql://u@db1:5432,db2:5432/exchange?target_session_attrs=
        // read-write`, docs/operations.md "High availability") names every server; a single
        // port applies to every host, as the client uses it.
        let ports = config.get_ports();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports
                    .get(i)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                match h {
                    postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                    postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
                }
            })
            .collect();
        let shown = format!(
            "postgresql://{}@{}/{}{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            config.get_dbname().unwrap_or(""),
            if tls.is_some() { " (TLS)" } else { "" }
        );
        Ok(PgTarget { config, shown, tls })
    }

    /// The database as messages name it: user, hosts and database, no password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens a connection.
    pub fn connect(&self) -> Result<PgConnection, StoreError> {
        let client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(NoTls)?,
        };
        Ok(PgConnection {
            client,
            statements: HashMap::new(),
        })
    }
}

/// A connection to the database, with the statements it has prepared.
pub struct PgConnection {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// `kv_<name>`: the SQL table of `table` (names are checked by [`Table::new`]).
fn sql_table(table: Table) -> String {
    format!("kv_{}", table.name())
}

impl PgConnection {
    /// Connects with a libpq-style URL or key=value string, e.g.
    /// `postgresql://exchange@127.0.0.1:5432/exchange`, in plaintext (TLS:
    /// [`PgTarget::with_ca_file`]).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        PgTarget::new(url, None)?.connect()
    }

    /// Creates the schema for a `kind` store of `version` with `tables` (each if missing), or
    /// checks that the database already holds that kind and version.
    pub fn migrate(
        &mut self,
        kind: &str,
        version: u64,
        tables: &[Table],
    ) -> Result<(), StoreError> {
        let version = i64::try_from(version)
            .map_err(|_| StoreError::decode("schema version", "above i64::MAX"))?;
        let mut txn = self.client.transaction()?;
        txn.batch_execute(
            "CREATE TABLE IF NOT EXISTS exchange_schema (\
               kind text PRIMARY KEY, version bigint NOT NULL)",
        )?;
        let found: Option<i64> = txn
            .query_opt(
                "SELECT version FROM exchange_schema WHERE kind = $1",
                &[&kind],
            )?
            .map(|row| row.get(0));
        // Tables this build has that the database lacks are created at the same version too
        // (a table added within a schema version is empty when it appears).
        for t in tables {
            txn.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (k bytea PRIMARY KEY, v bytea NOT NULL)",
                sql_table(*t)
            ))?;
        }
        match found {
            Some(v) if v == version => {}
            Some(v) if v > version => {
                return Err(StoreError::Database {
                    message: format!(
                        "the database holds a {kind} store of schema version {v}, newer than \
                         this build's {version}: run a newer exchange-hub"
                    ),
                    retry: false,
                    disk_full: false,
                });
            }
            _ => {
                txn.execute(
                    "INSERT INTO exchange_schema (kind, version) VALUES ($1, $2) \
                     ON CONFLICT (kind) DO UPDATE SET version = EXCLUDED.version",
                    &[&kind, &version],
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The schema version of the `kind` store in the database, if it has one.
    pub fn schema_version(&mut self, kind: &str) -> Result<Option<u64>, StoreError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('exchange_schema') IS NOT NULL", &[])?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let v: Option<i64> = self
            .client
            .query_opt(
                "SELECT version FROM exchange_schema WHERE kind = $1",
                &[&kind],
            )?
            .map(|row| row.get(0));
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    /// Begins a `SERIALIZABLE` transaction.
    pub fn begin(&mut self) -> Result<PgTxn<'_>, StoreError> {
        let txn = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()?;
        Ok(PgTxn {
            txn: RefCell::new(txn),
            statements: RefCell::new(&mut self.statements),
            writes: RefCell::new(BTreeMap::new()),
            reads: RefCell::new(HashMap::new()),
            failure: RefCell::new(None),
        })
    }

    /// Begins a read-only transaction on a snapshot.
    pub fn begin_read(&mut self) -> Result<PgTxn<'_>, StoreError> {
        let txn = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        Ok(PgTxn {
            txn: RefCell::new(txn),
            statements: RefCell::new(&mut self.statements),
            writes: RefCell::new(BTreeMap::new()),
            reads: RefCell::new(HashMap::new()),
            failure: RefCell::new(None),
        })
    }
}

/// A transaction's pending writes: per table, key → new value, or `None` for a deletion.
type Writes = BTreeMap<Table, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// What a transaction's single-key reads returned: (table, key) → the value, or `None`.
type Reads = HashMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// One transaction; dropped without [`PgTxn::commit`], it rolls back.
pub struct PgTxn<'c> {
    txn: RefCell<Transaction<'c>>,
    statements: RefCell<&'c mut HashMap<String, Statement>>,
    writes: RefCell<Writes>,
    /// What single-key reads returned: a key read again in the same transaction (the lease of a
    /// department for every acknowledgement of a group commit, say) costs no round trip. At
    /// `SERIALIZABLE` a second read would see the same row anyway.
    reads: RefCell<Reads>,
    /// The first failed statement: PostgreSQL refuses every later one in the transaction.
    failure: RefCell<Option<Failure>>,
}

impl std::fmt::Debug for PgTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTxn").finish_non_exhaustive()
    }
}

impl PgTxn<'_> {
    /// Passes `r` on, keeping the first failure of the transaction.
    fn note<T>(&self, r: Result<T, postgres::Error>) -> Result<T, StoreError> {
        r.map_err(|e| {
            let e = StoreError::from(e);
            self.failure
                .borrow_mut()
                .get_or_insert_with(|| Failure::of(&e));
            e
        })
    }

    /// The prepared statement for `sql`, prepared on first use.
    fn statement(&self, sql: String) -> Result<Statement, StoreError> {
        let mut cache = self.statements.borrow_mut();
        if let Some(s) = cache.get(&sql) {
            return Ok(s.clone());
        }
        let s = self.note(self.txn.borrow_mut().prepare(&sql))?;
        cache.insert(sql, s.clone());
        Ok(s)
    }

    /// Sends every pending write, then commits; returns once PostgreSQL has committed.
    pub fn commit(self) -> Result<(), StoreError> {
        // PostgreSQL answers COMMIT in a failed transaction with a rollback, not an error.
        if let Some(f) = self.failure.borrow().clone() {
            return Err(f.error());
        }
        let writes = self.writes.take();
        for (table, rows) in writes {
            let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
            for (k, v) in rows {
                match v {
                    Some(v) => {
                        keys.push(k);
                        values.push(v);
                    }
                    None => gone.push(k),
                }
            }
            let name = sql_table(table);
            if !keys.is_empty() {
                let s = self.statement(format!(
                    "INSERT INTO {name} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                ))?;
                self.note(self.txn.borrow_mut().execute(&s, &[&keys, &values]))?;
            }
            if !gone.is_empty() {
                let s = self.statement(format!("DELETE FROM {name} WHERE k = ANY($1::bytea[])"))?;
                self.note(self.txn.borrow_mut().execute(&s, &[&gone]))?;
            }
        }
        let txn = self.txn.into_inner();
        txn.commit().map_err(StoreError::from)?;
        Ok(())
    }

    fn query_range(
        &self,
        table: Table,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut sql = format!("SELECT k, v FROM {} WHERE true", sql_table(table));
        let mut params: Vec<&[u8]> = Vec::with_capacity(2);
        for (bound, strict, loose) in [(&range.start, ">", ">="), (&range.end, "<", "<=")] {
            let (op, key) = match bound {
                Bound::Included(k) => (loose, k),
                Bound::Excluded(k) => (strict, k),
                Bound::Unbounded => continue,
            };
            params.push(key.as_slice());
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        let dir = match order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        sql.push_str(&format!(" ORDER BY k {dir} LIMIT ${}", params.len() + 1));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let s = self.statement(sql)?;
        let mut args: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        args.push(&limit);
        let rows = self.note(self.txn.borrow_mut().query(&s, &args))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl ReadTables for PgTxn<'_> {
    fn len(&self, table: Table) -> Result<u64, StoreError> {
        let s = self.statement(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)"
                .to_owned(),
        )?;
        let row = self.note(self.txn.borrow_mut().query_opt(&s, &[&sql_table(table)]))?;
        Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(pending) = self.writes.borrow().get(&table).and_then(|t| t.get(key)) {
            return Ok(pending.clone());
        }
        if let Some(read) = self.reads.borrow().get(&(table, key.to_vec())) {
            return Ok(read.clone());
        }
        let s = self.statement(format!("SELECT v FROM {} WHERE k = $1", sql_table(table)))?;
        let row = self.note(self.txn.borrow_mut().query_opt(&s, &[&key]))?;
        let value: Option<Vec<u8>> = row.map(|r| r.get(0));
        self.reads
            .borrow_mut()
            .insert((table, key.to_vec()), value.clone());
        Ok(value)
    }

    fn scan(
        &self,
        table: Table,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let writes = self.writes.borrow();
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = writes
            .get(&table)
            .map(|t| t.iter().filter(|(k, _)| range.contains(k)).collect())
            .unwrap_or_default();
        // A pending deletion can hide one stored row: ask for that many more.
        let deleted = pending.iter().filter(|(_, v)| v.is_none()).count();
        let stored = self.query_range(table, range, order, limit.saturating_add(deleted))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(match order {
            Order::Ascending => merged.into_iter().take(limit).collect(),
            Order::Descending => merged.into_iter().rev().take(limit).collect(),
        })
    }
}

impl WriteTables for PgTxn<'_> {
    fn failure(&self) -> Option<Failure> {
        self.failure.borrow().clone()
    }

    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes
            .borrow_mut()
            .entry(table)
            .or_default()
            .insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.writes
            .borrow_mut()
            .entry(table)
            .or_default()
            .insert(key.to_vec(), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::PgTarget;

    #[test]
    fn a_multi_host_url_names_every_server_and_no_password() {
        let t = PgTarget::new(
            "postgresql://exchange:secret@db1:5433,db2:5434/exchange?target_session_attrs=read-write",
            None,
        )
        .expect("parses");
        assert_eq!(
            t.shown(),
            "postgresql://exchange@db1:5433,db2:5434/exchange"
        );
        assert_eq!(
            t.config.get_target_session_attrs(),
            postgres::config::TargetSessionAttrs::ReadWrite
        );
        // One port for every host, as the client uses it; none: 5432.
        let t =
            PgTarget::new("host=db1,db2 port=6000 user=exchange dbname=x", None).expect("parses");
        assert_eq!(t.shown(), "postgresql://exchange@db1:6000,db2:6000/x");
        let t = PgTarget::new("postgresql://exchange@db1,db2/x", Some("pw")).expect("parses");
        assert_eq!(t.shown(), "postgresql://exchange@db1:5432,db2:5432/x");
    }
}

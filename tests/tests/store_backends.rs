//! Both backends of the store's tables (issue 17) keep one contract: redb (embedded) and a real
//! PostgreSQL from Debian's binaries (skipped without them unless EXCHANGE_REQUIRE_POSTGRES=1).
//! The hub's store is written once against `exchange_core::store::kv`; what it relies on is here.

use exchange_core::store::{
    StoreError,
    kv::{
        Entry, Key, KeyRange, Order, ReadTables, Table, WriteTables, next_counter,
        postgres::PgConnection,
    },
};
use exchange_tests::postgres::Postgres;
use redb::ReadableDatabase;

type Res = Result<(), StoreError>;
type WriteFn<'a> = dyn FnMut(&mut dyn FnMut(&dyn WriteTables) -> Res) -> Res + 'a;
type ReadFn<'a> = dyn FnMut(&mut dyn FnMut(&dyn ReadTables) -> Res) -> Res + 'a;

#[test]
fn redb_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("kv.redb")).unwrap();
    contract(
        &mut |f| {
            let txn = db.begin_write()?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        },
        &mut |f| {
            let txn = db.begin_read()?;
            f(&txn)
        },
    )
    .unwrap();
}

#[test]
fn postgres_keeps_the_contract() {
    let Some(pg) = Postgres::for_test().unwrap() else {
        return;
    };
    let mut conn = PgConnection::connect(&pg.url()).unwrap();
    conn.migrate("contract", 1, &[T, exchange_core::store::kv::COUNTERS])
        .unwrap();
    let conn = std::cell::RefCell::new(conn);
    contract(
        &mut |f| {
            let mut c = conn.borrow_mut();
            let txn = c.begin()?;
            f(&txn)?;
            txn.commit()
        },
        &mut |f| {
            let mut c = conn.borrow_mut();
            let txn = c.begin_read()?;
            f(&txn)
        },
    )
    .unwrap();
}

#[test]
fn postgres_schema_is_versioned() {
    let Some(pg) = Postgres::for_test().unwrap() else {
        return;
    };
    let mut conn = PgConnection::connect(&pg.url()).unwrap();
    assert_eq!(conn.schema_version("hub").unwrap(), None);
    conn.migrate("hub", 2, &[T]).unwrap();
    assert_eq!(conn.schema_version("hub").unwrap(), Some(2));
    // Running it again changes nothing; an older build refuses the newer schema by name.
    conn.migrate("hub", 2, &[T]).unwrap();
    let err = conn.migrate("hub", 1, &[T]).unwrap_err();
    assert!(
        err.to_string()
            .contains("schema version 2, newer than this build's 1"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(conn.schema_version("hub").unwrap(), Some(2));
}

#[test]
fn postgres_names_a_collision_between_two_transactions_retryable() {
    let Some(pg) = Postgres::for_test().unwrap() else {
        return;
    };
    let mut a = PgConnection::connect(&pg.url()).unwrap();
    let mut b = PgConnection::connect(&pg.url()).unwrap();
    a.migrate("collide", 1, &[T]).unwrap();
    // Both read the same key, then both write it: under SERIALIZABLE one must fail, and say that
    // running it again may succeed.
    let ta = a.begin().unwrap();
    let tb = b.begin().unwrap();
    assert_eq!(ta.get(T, b"x").unwrap(), None);
    assert_eq!(tb.get(T, b"x").unwrap(), None);
    ta.put(T, b"x", b"a").unwrap();
    tb.put(T, b"x", b"b").unwrap();
    ta.commit().unwrap();
    let err = tb.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let r = a.begin_read().unwrap();
    assert_eq!(r.get(T, b"x").unwrap().as_deref(), Some(&b"a"[..]));
}

/// A table the contract writes.
const T: Table = Table::new("contract");

fn k(i: u64) -> Vec<u8> {
    Key::new().str("q").u64(i).finish()
}

/// What every backend must do, given a way to run a write transaction to its commit (rolled back
/// when its closure fails) and a read transaction; panics with what failed.
fn contract(write: &mut WriteFn<'_>, read: &mut ReadFn<'_>) -> Res {
    // An empty table reads as empty, in both kinds of transaction.
    read(&mut |r| {
        assert_eq!(r.get(T, &k(1))?, None);
        assert!(
            r.scan(T, &KeyRange::all(), Order::Ascending, 10)?
                .is_empty()
        );
        Ok(())
    })?;
    // Writes are visible to the transaction's own reads, merged in order.
    write(&mut |w| {
        for i in [5, 1, 3, 9, 7] {
            w.put(T, &k(i), format!("v{i}").as_bytes())?;
        }
        w.delete(T, &k(9))?;
        assert_eq!(w.get(T, &k(9))?, None);
        assert_eq!(w.get(T, &k(3))?.as_deref(), Some(&b"v3"[..]));
        let keys: Vec<_> = w
            .scan(T, &KeyRange::all(), Order::Ascending, 10)?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, vec![k(1), k(3), k(5), k(7)]);
        Ok(())
    })?;
    // Committed: ranges, order, limits, bounds.
    read(&mut |r| {
        let vals = |e: Vec<Entry>| -> Vec<Vec<u8>> { e.into_iter().map(|(_, v)| v).collect() };
        assert_eq!(
            vals(r.scan(T, &KeyRange::all(), Order::Descending, 2)?),
            vec![b"v7".to_vec(), b"v5".to_vec()]
        );
        assert_eq!(
            vals(r.scan(T, &KeyRange::between(k(3), k(7)), Order::Ascending, 10)?),
            vec![b"v3".to_vec(), b"v5".to_vec()]
        );
        let prefix = KeyRange::prefix(Key::new().str("q").finish());
        assert_eq!(r.scan(T, &prefix, Order::Ascending, 100)?.len(), 4);
        let other = KeyRange::prefix(Key::new().str("r").finish());
        assert!(r.scan(T, &other, Order::Ascending, 100)?.is_empty());
        assert!(
            r.scan(T, &KeyRange::between(k(7), k(3)), Order::Ascending, 9)?
                .is_empty()
        );
        assert!(r.scan(T, &KeyRange::all(), Order::Ascending, 0)?.is_empty());
        Ok(())
    })?;
    // Pending deletions and replacements inside a limited scan: the stored rows they hide
    // are made up from further on, and new keys take their place in order.
    write(&mut |w| {
        w.delete(T, &k(1))?;
        w.delete(T, &k(3))?;
        w.put(T, &k(4), b"v4")?;
        w.put(T, &k(5), b"v5'")?;
        let got = w.scan(T, &KeyRange::all(), Order::Ascending, 2)?;
        assert_eq!(got, vec![(k(4), b"v4".to_vec()), (k(5), b"v5'".to_vec())]);
        let got = w.scan(T, &KeyRange::all(), Order::Descending, 3)?;
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].0, k(4));
        Ok(())
    })?;
    // A transaction that fails commits nothing.
    let failed = write(&mut |w| {
        w.put(T, &k(100), b"never")?;
        w.delete(T, &k(4))?;
        Err(StoreError::Closed)
    });
    assert!(failed.is_err());
    read(&mut |r| {
        assert_eq!(r.get(T, &k(100))?, None);
        assert_eq!(r.get(T, &k(4))?.as_deref(), Some(&b"v4"[..]));
        Ok(())
    })?;
    // Counters count from one and keep counting across transactions.
    write(&mut |w| {
        assert_eq!(next_counter(w, "seq")?, 1);
        assert_eq!(next_counter(w, "seq")?, 2);
        Ok(())
    })?;
    write(&mut |w| {
        assert_eq!(next_counter(w, "seq")?, 3);
        assert_eq!(next_counter(w, "other")?, 1);
        Ok(())
    })?;
    // Values of any size and any byte, keys with zero bytes.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let zero_key = Key::new().bytes(&[0, 0, 0]).finish();
    write(&mut |w| {
        w.put(T, &zero_key, &big)?;
        w.put(T, &k(0), b"")?;
        Ok(())
    })?;
    read(&mut |r| {
        assert_eq!(r.get(T, &zero_key)?.as_deref(), Some(big.as_slice()));
        assert_eq!(r.get(T, &k(0))?.as_deref(), Some(&b""[..]));
        Ok(())
    })?;
    Ok(())
}

/// A PostgreSQL store holds at most `MAX_READERS` reader connections, however many reads run
/// at once: the others wait for a connection to be given back (so a hub under load cannot
/// take every one of the server's `max_connections`), and every read still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_share_a_bounded_set_of_connections() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let Some(pg) = Postgres::for_test().unwrap() else {
        return;
    };
    exchange_core::store::kv::postgres::blocking(|| {
        PgConnection::connect(&pg.url())
            .unwrap()
            .migrate("readers", 1, &[T])
            .unwrap();
    });
    let target = exchange_core::store::kv::postgres::PgTarget::new(&pg.url(), None).unwrap();
    let store = exchange_core::store::Store::open_postgres(&target, "readers", 1).unwrap();
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reads: Vec<_> = (0..3 * exchange_core::store::MAX_READERS)
        .map(|_| {
            let (store, now, most) = (store.clone(), Arc::clone(&now), Arc::clone(&most));
            tokio::spawn(async move {
                store
                    .read(move |txn| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        txn.get(T, b"k")?; // a statement on the connection
                        // Holding the snapshot a moment, so that the reads overlap.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, StoreError>(())
                    })
                    .await
            })
        })
        .collect();
    for r in reads {
        r.await.unwrap().unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (2..=exchange_core::store::MAX_READERS).contains(&most),
        "{most} reads held a connection at once"
    );
}

//! Which hub pushes to a department, when several hubs share one PostgreSQL database.
//!
//! Every hub accepts submissions and serves nodes, but a department's queue is pushed by one
//! hub at a time: the one holding its **push lease**, a row of `push_leases` (department →
//! [`st::PushLease`]: holder, fencing token, expiry). A node's `Subscribe` stream pushes only
//! once its hub holds the lease; a hub renews its leases every third of `[hub] lease_secs` and
//! gives a lease up when the node's stream ends, so that another hub waiting for it takes it at
//! once. When a hub dies, its leases run out and another hub takes them over within
//! `lease_secs` (plus the difference between the hubs' clocks).
//!
//! The lease alone cannot keep two hubs apart (a hub paused past its expiry does not know it
//! lost the lease), so every grant carries a **fencing token**, one more than the last one for
//! that department, never reused; every commit that takes an item off the department's queue
//! checks, in its own transaction, that the row still holds its token ([`Fence::check`]), and
//! fails with [`StepError::Fenced`] otherwise. Pushing an item twice on the wire is harmless
//! (the node keeps one copy of each document); committing its effect twice is what the token
//! prevents.
//!
//! With redb one hub owns the store, so leases are always granted and never written
//! ([`Leases::exclusive`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use exchange_core::{
    ids::DeptId,
    store::{
        Store, StoreError, decode, encode,
        kv::{ReadTables, Table, WriteTables},
    },
    time::now_ms,
};
use exchange_proto::store::v1 as st;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::StepError;

/// department → [`st::PushLease`].
pub(crate) const LEASES: Table = Table::new("push_leases");

/// What a commit taking an item off a department's queue must check first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence(Option<u64>);

impl Fence {
    /// No check: the hub owns its store (redb), or the step is not a push's (expiry: any hub
    /// may end a delivery that ran out of time; the delivery's state keeps that to once).
    pub(crate) const NONE: Fence = Fence(None);

    /// Fails with [`StepError::Fenced`] unless `dept`'s lease still holds this token.
    pub(crate) fn check(self, txn: &dyn ReadTables, dept: &DeptId) -> Result<(), StepError> {
        let Some(token) = self.0 else {
            return Ok(());
        };
        match read(txn, dept)? {
            Some(lease) if lease.token == token => Ok(()),
            held => Err(StepError::Fenced {
                dept: dept.clone(),
                holder: held.map(|l| l.holder).unwrap_or_default(),
            }),
        }
    }
}

fn read(txn: &dyn ReadTables, dept: &DeptId) -> Result<Option<st::PushLease>, StoreError> {
    txn.get(LEASES, dept.as_str().as_bytes())?
        .map(|v| decode(format!("push lease of {dept}"), &v))
        .transpose()
}

fn write(txn: &dyn WriteTables, dept: &DeptId, lease: &st::PushLease) -> Result<(), StoreError> {
    txn.put(LEASES, dept.as_str().as_bytes(), &encode(lease))
}

/// The answer to asking for a lease.
#[derive(Debug)]
enum Grant {
    /// Held, with this token.
    Held(u64),
    /// Another hub holds it until `until_ms` (its clock).
    Busy { holder: String, until_ms: i64 },
}

/// This hub's push leases.
#[derive(Debug)]
pub(crate) struct Leases {
    /// Several hubs share the store: leases are written and checked.
    shared: bool,
    /// This hub process, as lease rows and logs name it.
    holder: String,
    ttl: Duration,
    /// The leases held, with the stream each one is for (cancelled if the lease is lost).
    held: Mutex<HashMap<DeptId, (u64, CancellationToken)>>,
}

impl Leases {
    /// Leases of a hub that owns its store: always granted, never written.
    pub(crate) fn exclusive() -> Self {
        Leases {
            shared: false,
            holder: holder_name(),
            ttl: Duration::MAX,
            held: Mutex::default(),
        }
    }

    /// Leases of a hub sharing its database with others, lasting `ttl` unless renewed.
    pub(crate) fn shared(ttl: Duration) -> Self {
        Leases {
            shared: true,
            holder: holder_name(),
            ttl,
            held: Mutex::default(),
        }
    }

    /// [`Leases::shared`] under another name: two hubs in one test process.
    #[cfg(test)]
    fn shared_as(ttl: Duration, holder: &str) -> Self {
        Leases {
            holder: holder.to_owned(),
            ..Self::shared(ttl)
        }
    }

    /// Whether several hubs may share the store.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }

    /// This hub process as lease rows name it.
    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeptId, (u64, CancellationToken)>> {
        // Poisoned only if a holder panicked mid-insert of plain values: still consistent.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until this hub holds `dept`'s lease; `None` if `stop` fires first. `woken` is the
    /// department's wake-up, which a lease given up elsewhere also rings. While the lease is
    /// held, losing it (another hub took it over after this one failed to renew) cancels
    /// `stream`.
    pub(crate) async fn acquire(
        &self,
        store: &Store,
        dept: &DeptId,
        woken: &Notify,
        stream: &CancellationToken,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Fence>, StoreError> {
        if !self.shared {
            return Ok(Some(Fence::NONE));
        }
        tokio::pin!(stop);
        let mut said = false;
        loop {
            let grant = {
                let (dept, holder) = (dept.clone(), self.holder.clone());
                let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
                store
                    .write(move |txn| {
                        let now = now_ms();
                        let current = read(txn, &dept)?;
                        if let Some(l) = &current
                            && l.holder != holder
                            && l.expires_ms > now
                        {
                            return Ok::<_, StoreError>(Grant::Busy {
                                holder: l.holder.clone(),
                                until_ms: l.expires_ms,
                            });
                        }
                        let token = current.as_ref().map_or(1, |l| l.token + 1);
                        let lease = st::PushLease {
                            holder: holder.clone(),
                            token,
                            expires_ms: now.saturating_add(ttl),
                        };
                        write(txn, &dept, &lease)?;
                        Ok(Grant::Held(token))
                    })
                    .await?
            };
            let (holder, until_ms) = match grant {
                Grant::Held(token) => {
                    info!(%dept, token, "push lease taken");
                    self.lock().insert(dept.clone(), (token, stream.clone()));
                    return Ok(Some(Fence(Some(token))));
                }
                Grant::Busy { holder, until_ms } => (holder, until_ms),
            };
            if !said {
                info!(%dept, %holder, until_ms, "another hub pushes to this department; waiting for its lease");
                said = true;
            }
            // Asked again when the holder gives it up (its wake-up reaches this hub), when it
            // runs out, and every second meanwhile (a wake-up can be lost with a connection).
            let left = u64::try_from(until_ms.saturating_sub(now_ms())).unwrap_or(0);
            let wait = Duration::from_millis(left.clamp(50, 1000));
            tokio::select! {
                () = woken.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = &mut stop => return Ok(None),
            }
        }
    }

    /// Gives `dept`'s lease up (the node's stream ended), if it is still this fence's.
    pub(crate) async fn release(&self, store: &Store, dept: &DeptId, fence: Fence) {
        let Some(token) = fence.0 else { return };
        {
            let mut held = self.lock();
            if held.get(dept).is_some_and(|(t, _)| *t == token) {
                held.remove(dept);
            }
        }
        let dept2 = dept.clone();
        let released = store
            .write(move |txn| {
                match read(txn, &dept2)? {
                    Some(mut l) if l.token == token => {
                        l.expires_ms = 0;
                        write(txn, &dept2, &l)?;
                    }
                    _ => {}
                }
                Ok::<_, StoreError>(())
            })
            .await;
        match released {
            Ok(()) => info!(%dept, token, "push lease given up"),
            // It runs out by itself.
            Err(e) => warn!(%dept, error = %e, "could not give up the push lease"),
        }
    }

    /// Renews every lease held, in one transaction; a lease another hub took meanwhile (this
    /// hub could not renew it in time) cancels its stream.
    async fn renew(&self, store: &Store) -> Result<(), StoreError> {
        let held: Vec<(DeptId, u64)> = self
            .lock()
            .iter()
            .map(|(d, (t, _))| (d.clone(), *t))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let lost = store
            .write(move |txn| {
                let until = now_ms().saturating_add(ttl);
                let mut lost = Vec::new();
                for (dept, token) in &held {
                    match read(txn, dept)? {
                        Some(mut l) if l.token == *token => {
                            l.expires_ms = until;
                            write(txn, dept, &l)?;
                        }
                        other => lost.push((dept.clone(), *token, other.map(|l| l.holder))),
                    }
                }
                Ok::<_, StoreError>(lost)
            })
            .await?;
        let mut map = self.lock();
        for (dept, token, holder) in lost {
            warn!(%dept, token, holder = holder.unwrap_or_default(), "push lease lost to another hub; ending the stream");
            if let Some((t, stream)) = map.get(&dept)
                && *t == token
            {
                stream.cancel();
                map.remove(&dept);
            }
        }
        Ok(())
    }

    /// Renews the leases every third of their length until `stop`.
    pub(crate) async fn renew_loop(self: Arc<Self>, store: Store, stop: CancellationToken) {
        if !self.shared {
            return;
        }
        let every = self.ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = self.renew(&store).await {
                warn!(error = %e, "could not renew the push leases; retrying");
            }
        }
    }
}

/// This process: host, pid and start time, so that an operator reading a lease row or a log
/// knows which hub it is.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let since = exchange_core::time::format_ms(now_ms());
    format!("{host} pid {} since {since}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::store::{OUTBOUND, SCHEMA, Taken, ack};

    #[tokio::test]
    async fn a_lease_moves_when_it_runs_out_and_the_old_holder_is_fenced_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", SCHEMA).unwrap();
        let dept: DeptId = "b".parse().unwrap();
        let ttl = Duration::from_millis(400);
        let (a, b) = (
            Leases::shared_as(ttl, "hub-a"),
            Leases::shared_as(ttl, "hub-b"),
        );
        let (woken, never) = (Notify::new(), std::future::pending::<()>);
        let (stream_a, stream_b) = (CancellationToken::new(), CancellationToken::new());
        let fence_a = a
            .acquire(&store, &dept, &woken, &stream_a, never())
            .await
            .unwrap()
            .unwrap();
        for seq in 1..=2 {
            store
                .write(move |txn| OUTBOUND.push(txn, "b", 1, &[seq]))
                .await
                .unwrap();
        }
        let keys: Vec<_> = store
            .lookup(|txn| OUTBOUND.peek(txn, "b", 2, &std::collections::HashSet::new()))
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();

        // b waits while a's lease runs; a does not renew it (as if paused), so b gets it.
        let started = Instant::now();
        let fence_b = b
            .acquire(&store, &dept, &woken, &stream_b, never())
            .await
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() >= ttl / 2,
            "b waited for a's lease to run out"
        );
        assert_ne!(fence_a, fence_b);

        // a's commits are refused by the fence and change nothing; b's go through.
        let taken = |key, fence| Taken {
            dept: dept.clone(),
            key,
            fence,
        };
        let err = ack(&store, taken(keys[0], fence_a)).await.unwrap_err();
        assert!(
            matches!(&err, StepError::Fenced { holder, .. } if holder == "hub-b"),
            "{err}"
        );
        assert_eq!(store.lookup(|t| OUTBOUND.len(t, "b")).await.unwrap(), 2);
        ack(&store, taken(keys[0], fence_b)).await.unwrap();
        assert_eq!(store.lookup(|t| OUTBOUND.len(t, "b")).await.unwrap(), 1);

        // a learns it lost the lease when renewing: its stream is ended. Giving up a lease it
        // lost leaves b's alone.
        a.renew(&store).await.unwrap();
        assert!(stream_a.is_cancelled());
        a.release(&store, &dept, fence_a).await;
        ack(&store, taken(keys[1], fence_b)).await.unwrap();

        // b gives it up: a gets it at once, with a token never used before.
        b.release(&store, &dept, fence_b).await;
        let started = Instant::now();
        let again = a
            .acquire(&store, &dept, &woken, &CancellationToken::new(), never())
            .await
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() < ttl / 2,
            "a released lease is taken at once"
        );
        assert!(again != fence_a && again != fence_b);
    }

    #[tokio::test]
    async fn waiting_for_a_lease_ends_when_the_stream_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", SCHEMA).unwrap();
        let dept: DeptId = "b".parse().unwrap();
        let ttl = Duration::from_secs(60);
        let (a, b) = (
            Leases::shared_as(ttl, "hub-a"),
            Leases::shared_as(ttl, "hub-b"),
        );
        let woken = Notify::new();
        let token = CancellationToken::new();
        a.acquire(&store, &dept, &woken, &token, std::future::pending())
            .await
            .unwrap()
            .unwrap();
        let stop = tokio::time::sleep(Duration::from_millis(100));
        let got = b
            .acquire(&store, &dept, &woken, &token, stop)
            .await
            .unwrap();
        assert_eq!(got, None, "a's lease runs for a minute; b gave up waiting");
    }

    #[tokio::test]
    async fn a_hub_that_owns_its_store_writes_no_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb"), "hub", SCHEMA).unwrap();
        let dept: DeptId = "b".parse().unwrap();
        let fence = Leases::exclusive()
            .acquire(
                &store,
                &dept,
                &Notify::new(),
                &CancellationToken::new(),
                std::future::pending(),
            )
            .await
            .unwrap();
        assert_eq!(fence, Some(Fence::NONE));
        let rows = store.lookup(|t| t.get(LEASES, b"b")).await.unwrap();
        assert!(rows.is_none());
    }
}

//! What the two document records ([`SentRecord`](super::SentRecord) in `sent`,
//! [`InboxRecord`](super::InboxRecord) in `inbox`) share: reading one by document id, reading
//! them all, and changing one in a write transaction together with its [`Effects`]. Each record
//! converts itself from and to its stored message in its own module; [`Record`] names that
//! conversion and the table it is kept in.

use exchange_core::{
    ids::DocumentId,
    store::{
        Store, StoreError,
        kv::{Table, WriteTables},
        sealing::Sealer,
    },
};

use super::{Effects, all, get, put};

/// A typed record kept in a table keyed by document id.
pub(super) trait Record: Sized + Send + 'static {
    /// The stored protobuf message.
    type Stored: prost::Message + Default;
    /// The table the records are kept in.
    const TABLE: Table;

    /// The stored record at key `id`, typed; one that cannot be read is a
    /// `StoreError::Decode` naming it.
    fn from_stored(id: &str, m: Self::Stored) -> Result<Self, StoreError>;

    /// The record as it is stored.
    fn into_stored(self) -> Self::Stored;
}

/// The record of `id` in `txn`, if there is one.
pub(super) fn read<T: Record>(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    id: DocumentId,
) -> Result<Option<T>, StoreError> {
    let key = id.to_string();
    get(txn, sealer, T::TABLE, &key)?
        .map(|m| T::from_stored(&key, m))
        .transpose()
}

/// Stores `rec` as the record of `id` in `txn`.
pub(super) fn write<T: Record>(
    txn: &dyn WriteTables,
    sealer: &Sealer,
    id: DocumentId,
    rec: T,
) -> Result<(), StoreError> {
    put(txn, sealer, T::TABLE, &id.to_string(), &rec.into_stored())
}

/// The record of `id`, if there is one.
pub(super) async fn one<T: Record>(store: &Store, id: DocumentId) -> Result<Option<T>, StoreError> {
    let sealer = store.sealer().clone();
    store
        .lookup(move |txn| {
            let key = id.to_string();
            get(txn, &sealer, T::TABLE, &key)?
                .map(|m| T::from_stored(&key, m))
                .transpose()
        })
        .await
}

/// Every record, in id order (UUIDv7: oldest first).
pub(super) async fn every<T: Record>(store: &Store) -> Result<Vec<T>, StoreError> {
    let sealer = store.sealer().clone();
    store
        .read(move |txn| all(txn, &sealer, T::TABLE, "", T::from_stored))
        .await
}

/// Reads the record of `id`, lets `f` change it and list what goes with the change, and writes
/// both in one transaction; returns `f`'s result and the seq of the last event logged. `f` gets
/// `None` if there is no record of `id` (its effects still apply). If `f` fails, nothing is
/// written. `f` may run more than once (`Store::write`); the last run counts.
pub(super) async fn change<T, R, E, F>(
    store: &Store,
    id: DocumentId,
    f: F,
) -> Result<(R, Option<u64>), E>
where
    T: Record,
    F: Fn(Option<&mut T>, &mut Effects) -> Result<R, E> + Send + 'static,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let sealer = store.sealer().clone();
    store
        .write(move |txn| {
            let mut rec = read::<T>(txn, &sealer, id)?;
            let mut fx = Effects::default();
            let r = f(rec.as_mut(), &mut fx)?;
            if let Some(rec) = rec {
                write(txn, &sealer, id, rec)?;
            }
            Ok((r, fx.commit(txn)?))
        })
        .await
}

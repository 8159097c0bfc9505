//! The database backend on a redb [`Store`] (the same code as on PostgreSQL): chunked round
//! trips, resume from what is committed, no plaintext in the tables, and damage (an altered
//! chunk, swapped chunks, a chunk or record moved from another blob) refused by name.

use std::path::Path;

use tokio::io::AsyncReadExt;

use super::*;
use crate::{
    atrest::{DataKeys, Kek, Keyring},
    crypto::DigestAlgorithm,
    store::{kv::Order, sealing::Sealer},
};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-of-a-database-blob";
const CS: usize = DB_CHUNK_SIZE as usize;

fn keys(dir: &Path) -> DataKeys {
    let kek = Kek::generate(&dir.join("kek")).unwrap();
    Keyring::open_or_create(&dir.join("keyring.json"), &kek).unwrap()
}

/// A blob store in the rows of a redb store, sealed with `keys`.
fn db_store(dir: &Path, keys: Option<DataKeys>) -> (Store, BlobStore) {
    let store = Store::open(&dir.join("s.redb"), "test", 1)
        .unwrap()
        .with_sealer(Sealer::new(keys.clone()));
    let blobs = BlobStore {
        backend: super::super::Backend::Database(store.clone()),
        keys,
        digest: DigestAlgorithm::Sha256,
        active: Arc::default(),
    };
    (store, blobs)
}

/// `len` bytes that do not repeat with the chunk size, with the marker sprinkled in.
fn content(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    for at in (0..len.saturating_sub(MARKER.len())).step_by(50_000) {
        v[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    v
}

async fn put(blobs: &BlobStore, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let mut w = blobs.resume(d, data.len() as u64, 0).await.unwrap();
    for piece in data.chunks(CS / 3 + 7) {
        w.write(piece).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), (d, data.len() as u64));
    d
}

async fn read_from(blobs: &BlobStore, d: &Digest, offset: u64) -> io::Result<Vec<u8>> {
    let mut r = blobs.open_read(d, offset).await.map_err(io::Error::other)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

/// Every row of `table`.
async fn rows(store: &Store, table: Table) -> Vec<kv::Entry> {
    store
        .read(move |txn| txn.scan(table, &KeyRange::all(), Order::Ascending, usize::MAX))
        .await
        .unwrap()
}

async fn put_row(store: &Store, table: Table, key: Vec<u8>, value: Vec<u8>) {
    store
        .write(move |txn| txn.put(table, &key, &value))
        .await
        .unwrap();
}

/// Waits until no writer holds `d`'s slot (a dropped writer's last commit may still run).
async fn released(blobs: &BlobStore, d: &Digest) {
    for _ in 0..1000 {
        if !blobs.active.lock().unwrap().contains(d) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the writer slot of {d} was never released");
}

#[tokio::test]
async fn blobs_of_any_size_round_trip_through_the_database_sealed_and_in_clear() {
    for sealed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (store, blobs) = db_store(dir.path(), sealed.then(|| keys(dir.path())));
        for len in [0, 1, CS - 1, CS, 2 * CS + 1000] {
            let data = content(len);
            let d = put(&blobs, &data).await;
            assert_eq!(blobs.progress(&d).await, (len as u64, true), "len {len}");
            assert!(read_from(&blobs, &d, 0).await.unwrap() == data, "len {len}");
            let mid = len / 2 + 1;
            if mid <= len {
                let tail = read_from(&blobs, &d, mid as u64).await.unwrap();
                assert!(tail == data[mid..], "len {len} from {mid}");
            }
        }
        let chunks = rows(&store, BLOB_CHUNKS).await;
        let holds_marker = chunks
            .iter()
            .any(|(_, v)| v.windows(MARKER.len()).any(|w| w == MARKER));
        assert_eq!(
            holds_marker, !sealed,
            "plaintext in the rows exactly when there are no keys"
        );
    }
}

#[tokio::test]
async fn an_interrupted_transfer_resumes_from_what_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, blobs) = db_store(dir.path(), Some(keys(dir.path())));
    let data = content(3 * CS + 500);
    let d = Digest::of(&data);
    let size = data.len() as u64;
    let mut w = blobs.resume(d, size, 0).await.unwrap();
    w.write(&data[..2 * CS + 100]).await.unwrap();
    drop(w); // a cut connection: the commits in flight finish, the partial chunk is lost
    released(&blobs, &d).await;
    assert_eq!(blobs.progress(&d).await, (2 * CS as u64, false));
    assert!(!blobs.contains(&d).await);

    // Beyond what is held is refused; before it, the held bytes are re-read and re-hashed.
    assert!(matches!(
        blobs.resume(d, size, 2 * CS as u64 + 1).await,
        Err(BlobError::Protocol(_))
    ));
    let from = CS as u64 + 77;
    let mut w = blobs.resume(d, size, from).await.unwrap();
    assert_eq!(w.written(), from);
    w.write(&data[from as usize..]).await.unwrap();
    assert_eq!(w.finish().await.unwrap(), (d, size));
    assert!(read_from(&blobs, &d, 0).await.unwrap() == data);
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blobs) = db_store(dir.path(), Some(keys(dir.path())));
    let data = content(CS + 10);
    let d = Digest::of(b"something else");
    let mut w = blobs.resume(d, data.len() as u64, 0).await.unwrap();
    w.write(&data).await.unwrap();
    assert!(matches!(w.finish().await, Err(BlobError::Mismatch { .. })));
    assert_eq!(blobs.progress(&d).await, (0, false));
    assert!(rows(&store, BLOB_CHUNKS).await.is_empty());
    assert!(rows(&store, BLOBS).await.is_empty());
}

/// Reads `d` from the start and returns the error, which must be damage naming `d`.
async fn damage(blobs: &BlobStore, d: &Digest) -> String {
    let e = match blobs.open_read(d, 0).await {
        Err(e) => {
            assert!(e.is_damage(), "{e}");
            e.to_string()
        }
        Ok(mut r) => {
            let mut out = Vec::new();
            let e = r.read_to_end(&mut out).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            e.to_string()
        }
    };
    assert!(e.contains(&d.to_string()), "names the blob: {e}");
    e
}

#[tokio::test]
async fn altered_swapped_or_moved_rows_are_refused_naming_the_blob_and_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blobs) = db_store(dir.path(), Some(keys(dir.path())));
    let (a, b) = (content(3 * CS), content(2 * CS + 9));
    let (da, db) = (put(&blobs, &a).await, put(&blobs, &b[..]).await);
    let key_a = BlobKey::new(DigestAlgorithm::Sha256, da);
    let key_b = BlobKey::new(DigestAlgorithm::Sha256, db);
    let get = |k: Vec<u8>| {
        let store = store.clone();
        async move {
            store
                .read(move |txn| txn.get(BLOB_CHUNKS, &k))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (c0, c1) = (get(key_a.chunk(0)).await, get(key_a.chunk(1)).await);

    // One flipped byte in chunk 1.
    let mut bad = c1.clone();
    bad[100] ^= 1;
    put_row(&store, BLOB_CHUNKS, key_a.chunk(1), bad).await;
    let e = damage(&blobs, &da).await;
    assert!(e.contains("chunk 1 does not authenticate"), "{e}");

    // Chunks 0 and 1 swapped.
    put_row(&store, BLOB_CHUNKS, key_a.chunk(0), c1.clone()).await;
    put_row(&store, BLOB_CHUNKS, key_a.chunk(1), c0.clone()).await;
    let e = damage(&blobs, &da).await;
    assert!(e.contains("chunk 0 does not authenticate"), "{e}");

    // Another blob's chunk 0 in its place (another blob key).
    put_row(
        &store,
        BLOB_CHUNKS,
        key_a.chunk(0),
        get(key_b.chunk(0)).await,
    )
    .await;
    let e = damage(&blobs, &da).await;
    assert!(e.contains("chunk 0 does not authenticate"), "{e}");
    put_row(&store, BLOB_CHUNKS, key_a.chunk(0), c0).await;
    put_row(&store, BLOB_CHUNKS, key_a.chunk(1), c1).await;
    assert!(
        read_from(&blobs, &da, 0).await.unwrap() == a,
        "restored rows read again"
    );

    // A dropped last chunk: the blob is cut short.
    let last = key_a.chunk(3);
    let kept = get(last.clone()).await;
    let gone = last.clone();
    store
        .write(move |txn| txn.delete(BLOB_CHUNKS, &gone))
        .await
        .unwrap();
    let e = damage(&blobs, &da).await;
    assert!(e.contains("chunk 3"), "{e}");
    put_row(&store, BLOB_CHUNKS, last, kept).await;

    // b's record (header included) under a's digest: it does not open in that slot.
    let rec_b = store
        .read({
            let k = key_b.key.to_vec();
            move |txn| txn.get(BLOBS, &k)
        })
        .await
        .unwrap()
        .unwrap();
    put_row(&store, BLOBS, key_a.key.to_vec(), rec_b).await;
    let e = damage(&blobs, &da).await;
    assert!(e.contains("record does not open"), "{e}");
    assert_eq!(
        blobs.progress(&da).await,
        (0, false),
        "a record that does not open holds nothing"
    );
}

#[tokio::test]
async fn a_backup_export_is_the_file_format_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let (store, blobs) = db_store(dir.path(), Some(keys.clone()));
    let data = content(2 * CS + 4321);
    let d = put(&blobs, &data).await;
    // A partial is not exported.
    let partial = content(CS + 3);
    let mut w = blobs
        .resume(Digest::of(&partial[1..]), partial.len() as u64 - 1, 0)
        .await
        .unwrap();
    w.write(&partial[1..CS + 2]).await.unwrap();
    drop(w);
    released(&blobs, &Digest::of(&partial[1..])).await;

    let out = dir.path().join("backup/blobs");
    let k = keys.clone();
    let root = out.clone();
    let (files, _) = store
        .read(move |txn| export(txn, Some(&k), &root))
        .await
        .unwrap();
    assert_eq!(files, 1);
    let files_store = BlobStore::open(&out, Some(keys)).unwrap();
    assert_eq!(files_store.progress(&d).await, (data.len() as u64, true));
    assert!(read_from(&files_store, &d, 0).await.unwrap() == data);
    assert!(read_from(&files_store, &d, 5 + CS as u64).await.unwrap() == data[5 + CS..]);
}

/// The shangmi profile: blobs named and checked by SM3, sealed with SM4 (the suite of a key ring
/// made for the profile).
#[cfg(feature = "shangmi")]
#[tokio::test]
async fn an_sm3_blob_sealed_with_sm4_resumes_and_exports_under_its_sm3_name() {
    use crate::atrest::{KekSource, Suite};
    let dir = tempfile::tempdir().unwrap();
    Kek::generate(&dir.path().join("kek")).unwrap();
    let source = KekSource::File(dir.path().join("kek"));
    let kek = Kek::load_for(&source, Suite::for_profile(crate::crypto::Profile::Shangmi)).unwrap();
    let keys = Keyring::open_or_create(&dir.path().join("keyring.json"), &kek).unwrap();
    let (store, blobs) = db_store(dir.path(), Some(keys.clone()));
    let blobs = blobs.with_digest(DigestAlgorithm::Sm3);
    let data = content(2 * CS + 99);
    let d = Digest::with(DigestAlgorithm::Sm3, &data).unwrap();
    let size = data.len() as u64;
    let mut w = blobs.resume(d, size, 0).await.unwrap();
    w.write(&data[..CS + 5]).await.unwrap();
    drop(w);
    released(&blobs, &d).await;
    assert_eq!(blobs.progress(&d).await, (CS as u64, false));
    let mut w = blobs.resume(d, size, CS as u64).await.unwrap();
    w.write(&data[CS..]).await.unwrap();
    assert_eq!(w.finish().await.unwrap(), (d, size));
    assert!(read_from(&blobs, &d, 0).await.unwrap() == data);

    let out = dir.path().join("backup/blobs");
    let (k, root) = (keys.clone(), out.clone());
    store
        .read(move |txn| export(txn, Some(&k), &root))
        .await
        .unwrap();
    assert!(
        out.join("sealed")
            .join(format!("sm3-{}", d.to_hex()))
            .is_file()
    );
    let files = BlobStore::open(&out, Some(keys))
        .unwrap()
        .with_digest(DigestAlgorithm::Sm3);
    assert!(read_from(&files, &d, 0).await.unwrap() == data);
}

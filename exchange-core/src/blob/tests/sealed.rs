//! The store with data keys: blobs encrypted at rest, legacy plaintext still read.

use std::path::Path;

use tokio::io::AsyncReadExt;

use super::{super::*, released};
use crate::atrest::{BLOB_HEADER_LEN, DEFAULT_CHUNK_SIZE, Kek, Keyring};

const CS: usize = DEFAULT_CHUNK_SIZE as usize;
const STRIDE: usize = CS + 16;
const MARKER: &[u8] = b"PLAINTEXT-MARKER-of-a-secret-circular";

/// A store's data keys, as the daemons make them (KEK file + key ring), in `dir`.
fn keys(dir: &Path) -> DataKeys {
    let kek = Kek::generate(&dir.join("kek")).unwrap();
    Keyring::open_or_create(&dir.join("keyring.json"), &kek).unwrap()
}

/// A keyed store in a temp dir (the dir holds the key files beside `blobs/`).
fn sealed_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let store = BlobStore::open(&dir.path().join("blobs"), Some(keys)).unwrap();
    (dir, store)
}

/// `len` bytes that do not repeat with the chunk size, with the marker sprinkled in.
fn content(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    for at in (0..len.saturating_sub(MARKER.len())).step_by(50_000) {
        v[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    v
}

/// Receives `data` as a transfer of known digest, in uneven pieces.
async fn put(store: &BlobStore, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let mut w = store.resume(d, data.len() as u64, 0).await.unwrap();
    for piece in data.chunks(CHUNK_SIZE / 3 + 7) {
        w.write(piece).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), (d, data.len() as u64));
    d
}

async fn read_from(store: &BlobStore, d: &Digest, offset: u64) -> io::Result<Vec<u8>> {
    let mut r = store.open_read(d, offset).await.map_err(io::Error::other)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn blobs_of_any_size_round_trip_encrypted() {
    let (_dir, store) = sealed_store();
    for len in [0, 11, CS, 2 * CS, 3 * CS + 5, CHUNK_SIZE + 1000] {
        let data = content(len);
        let d = put(&store, &data).await;
        assert_eq!(store.progress(&d).await, (len as u64, true), "len {len}");
        assert!(store.contains(&d).await);
        assert!(store.complete_path(Format::Sealed, &d).exists());
        assert!(!store.complete_path(Format::Plain, &d).exists());
        let file_len = std::fs::metadata(store.complete_path(Format::Sealed, &d))
            .unwrap()
            .len() as usize;
        assert_eq!(file_len, BLOB_HEADER_LEN + len + (len / CS + 1) * 16);
        assert!(read_from(&store, &d, 0).await.unwrap() == data, "len {len}");
    }
    // Staged content too.
    let data = content(CS + 3);
    let mut w = store.stage().await.unwrap();
    w.write(&data).await.unwrap();
    let (d, _) = w.finish().await.unwrap();
    assert_eq!(d, Digest::of(&data));
    assert!(read_from(&store, &d, 0).await.unwrap() == data);
}

#[tokio::test]
async fn reads_start_at_any_offset() {
    let (_dir, store) = sealed_store();
    let data = content(3 * CS + 777);
    let d = put(&store, &data).await;
    for offset in [
        1,
        100,
        CS - 1,
        CS,
        CS + 1,
        2 * CS + 500,
        data.len() - 1,
        data.len(),
    ] {
        let got = read_from(&store, &d, offset as u64).await.unwrap();
        assert!(got == data[offset..], "offset {offset}");
    }
    assert!(matches!(
        store.open_read(&d, data.len() as u64 + 1).await,
        Err(BlobError::Protocol(_))
    ));
}

#[tokio::test]
async fn an_interrupted_encrypted_transfer_resumes_after_its_last_whole_chunk() {
    let (_dir, store) = sealed_store();
    let data = content(CHUNK_SIZE + 3 * CS + 123);
    let (d, size) = (Digest::of(&data), data.len() as u64);
    let mut w = store.resume(d, size, 0).await.unwrap();
    w.write(&data[..CHUNK_SIZE + 100]).await.unwrap();
    drop(w);
    released(&store, &d).await;
    // Four whole chunks are on disk; cut the file inside the third, as a crash would.
    let partial = store.partial_path(&d);
    let torn = (BLOB_HEADER_LEN + 2 * STRIDE + 1000) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_len(torn)
        .unwrap();
    assert_eq!(store.progress(&d).await, (2 * CS as u64, false));
    assert!(matches!(
        store.resume(d, size, 2 * CS as u64 + 1).await,
        Err(BlobError::Protocol(_))
    ));

    // Resumed inside a chunk that is held: its start is kept, re-sealed with what follows.
    let mid = CS as u64 + 4321;
    let mut w = store.resume(d, size, mid).await.unwrap();
    w.write(&data[mid as usize..mid as usize + 10])
        .await
        .unwrap();
    drop(w);
    released(&store, &d).await;
    assert_eq!(store.progress(&d).await, (CS as u64, false));

    let held = store.progress(&d).await.0;
    let mut w = store.resume(d, size, held).await.unwrap();
    assert_eq!(w.written(), held);
    for piece in data[held as usize..].chunks(10_000) {
        w.write(piece).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), (d, size));
    assert!(read_from(&store, &d, 0).await.unwrap() == data);
    assert!(!partial.exists());
}

#[tokio::test]
async fn a_damaged_partial_is_not_trusted() {
    let (_dir, store) = sealed_store();
    let data = content(CHUNK_SIZE + 10);
    let (d, size) = (Digest::of(&data), data.len() as u64);
    let mut w = store.resume(d, size, 0).await.unwrap();
    w.write(&data).await.unwrap();
    drop(w);
    released(&store, &d).await;
    assert_eq!(store.progress(&d).await, (CHUNK_SIZE as u64, false));
    let partial = store.partial_path(&d);
    flip(&partial, BLOB_HEADER_LEN + STRIDE + 7);
    // The chunk before the resume point still opens, so progress trusts it; resuming re-reads
    // every chunk, finds chunk 1, and discards the partial.
    let err = store.resume(d, size, CHUNK_SIZE as u64).await.unwrap_err();
    assert!(err.to_string().contains("chunk 1"), "{err}");
    assert_eq!(store.progress(&d).await, (0, false));
    // The transfer starts over, and completes.
    let mut w = store.resume(d, size, 0).await.unwrap();
    w.write(&data).await.unwrap();
    assert_eq!(w.finish().await.unwrap(), (d, size));
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_flipped_byte_fails_the_read_naming_the_blob_and_the_chunk() {
    let (_dir, store) = sealed_store();
    let data = content(3 * CS + 5);
    let d = put(&store, &data).await;
    let path = store.complete_path(Format::Sealed, &d);
    flip(&path, BLOB_HEADER_LEN + 2 * STRIDE + 10);
    let err = read_from(&store, &d, 0).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&d.to_hex()) && msg.contains("chunk 2"),
        "{msg}"
    );
    // Reading only what comes after the damage still works (chunks open on their own).
    let last = read_from(&store, &d, 3 * CS as u64).await.unwrap();
    assert!(last == data[3 * CS..]);

    flip(&path, BLOB_HEADER_LEN + 3);
    let err = store.open_read(&d, 0).await.unwrap_err();
    assert!(matches!(err, BlobError::Corrupt { digest, .. } if digest == d));
    let msg = err.to_string();
    assert!(
        msg.contains(&d.to_hex()) && msg.contains("chunk 0"),
        "{msg}"
    );
}

#[tokio::test]
async fn keys_decide_what_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    // Written in clear before encryption was turned on; a transfer was underway.
    let plain = BlobStore::open(&root, None).unwrap();
    let legacy = content(CS + 9);
    let old = put(&plain, &legacy).await;
    let half = content(CHUNK_SIZE + 1);
    let mut w = plain
        .resume(Digest::of(&half), half.len() as u64, 0)
        .await
        .unwrap();
    w.write(&half).await.unwrap();
    drop(w);
    released(&plain, &Digest::of(&half)).await;

    let sealed = BlobStore::open(&root, Some(keys(dir.path()))).unwrap();
    assert_eq!(sealed.progress(&old).await, (legacy.len() as u64, true));
    assert!(read_from(&sealed, &old, 5).await.unwrap() == legacy[5..]);
    assert_eq!(
        sealed.progress(&Digest::of(&half)).await,
        (0, false),
        "a plaintext partial is not continued in clear"
    );
    let secret = content(2 * CS);
    let new = put(&sealed, &secret).await;

    let keyless = BlobStore::open(&root, None).unwrap();
    assert!(keyless.contains(&new).await, "present, if unreadable");
    assert_eq!(keyless.progress(&new).await, (secret.len() as u64, true));
    let err = keyless.open_read(&new, 0).await.unwrap_err();
    assert!(matches!(err, BlobError::Encrypted(d) if d == new), "{err}");
    assert!(err.to_string().contains("encrypted"), "{err}");
    assert!(read_from(&keyless, &old, 0).await.unwrap() == legacy);

    // Another store's keys do not open it either, and say why.
    let other = tempfile::tempdir().unwrap();
    let foreign = BlobStore::open(&root, Some(keys(other.path()))).unwrap();
    assert!(!foreign.contains(&new).await);
    assert!(matches!(
        foreign.open_read(&new, 0).await,
        Err(BlobError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn no_file_holds_plaintext_written_through_a_keyed_store() {
    let (dir, store) = sealed_store();
    let data = content(3 * CHUNK_SIZE + 17);
    put(&store, &data).await;
    let mut w = store.stage().await.unwrap();
    w.write(&content(CS)).await.unwrap();
    w.finish().await.unwrap();
    // In progress: a partial and a staged file, each with a batch written behind.
    let d = Digest::of(&data[1..]);
    let mut partial = store.resume(d, data.len() as u64 - 1, 0).await.unwrap();
    let mut staged = store.stage().await.unwrap();
    for w in [&mut partial, &mut staged] {
        // The second full buffer waits for the first one's write.
        w.write(&data[1..2 * CHUNK_SIZE + 2]).await.unwrap();
        w.write(&data[..CHUNK_SIZE]).await.unwrap();
    }
    let all = files(&dir.path().join("blobs"));
    assert_eq!(all.len(), 4, "{all:?}");
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > BLOB_HEADER_LEN, "{}", path.display());
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{} holds plaintext",
            path.display()
        );
    }
    drop((partial, staged));
}

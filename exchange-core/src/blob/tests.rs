use super::*;

mod digests;
mod sealed;

/// Waits until no writer holds `d`'s slot (a dropped writer's last write may still be running).
async fn released(store: &BlobStore, d: &Digest) {
    for _ in 0..1000 {
        if !store.active.lock().unwrap().contains(d) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the writer slot of {d} was never released");
}

#[tokio::test]
async fn staged_content_is_addressed_by_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), None).unwrap();
    let mut w = store.stage().await.unwrap();
    w.write(b"hello ").await.unwrap();
    w.write(b"world").await.unwrap();
    let (d, size) = w.finish().await.unwrap();
    assert_eq!(d, Digest::of(b"hello world"));
    assert_eq!(size, 11);
    assert_eq!(store.progress(&d).await, (11, true));
}

#[tokio::test]
async fn an_interrupted_transfer_resumes_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), None).unwrap();
    let size = CHUNK_SIZE + 1000;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let d = Digest::of(&data);
    let mut w = store.resume(d, size as u64, 0).await.unwrap();
    // A full buffer is written behind; the last few bytes wait in memory.
    w.write(&data[..CHUNK_SIZE + 100]).await.unwrap();
    w.write(&data[CHUNK_SIZE + 100..CHUNK_SIZE + 600])
        .await
        .unwrap();
    drop(w);
    // The write still running keeps the blob's writer slot until it has ended.
    released(&store, &d).await;
    let held = (CHUNK_SIZE + 100) as u64;
    assert_eq!(store.progress(&d).await, (held, false));
    let mut w = store.resume(d, size as u64, held).await.unwrap();
    w.write(&data[CHUNK_SIZE + 100..]).await.unwrap();
    w.finish().await.unwrap();
    assert!(store.contains(&d).await);
    let stored = std::fs::read(store.complete_path(Format::Plain, &d)).unwrap();
    assert!(stored == data, "the resumed blob is byte-identical");
    assert!(matches!(
        store.resume(d, size as u64, size as u64 + 1).await,
        Err(BlobError::Protocol(_))
    ));

    let other = Digest::of(b"something else");
    let mut w = store.resume(other, 4, 0).await.unwrap();
    w.write(b"abcd").await.unwrap();
    assert!(matches!(w.finish().await, Err(BlobError::Mismatch { .. })));

    let d2 = Digest::of(b"xy");
    let first = store.resume(d2, 2, 0).await.unwrap();
    assert!(
        matches!(store.resume(d2, 2, 0).await, Err(BlobError::Busy(_))),
        "one writer per blob"
    );
    drop(first);
    assert!(
        store.resume(d2, 2, 0).await.is_ok(),
        "the slot is released with the writer"
    );
    assert!(!store.contains(&other).await);
}

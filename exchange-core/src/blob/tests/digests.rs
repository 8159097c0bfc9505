//! A store's digest algorithm: SHA-256 blobs keep today's names; a store of another algorithm
//! (SM3, the shangmi profile) hashes, checks and names every blob with it.

use super::{super::*, released};

#[tokio::test]
async fn a_sha256_store_names_blobs_as_it_always_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), None).unwrap();
    assert_eq!(store.digest_algorithm(), DigestAlgorithm::Sha256);
    let mut w = store.stage().await.unwrap();
    w.write(b"abc").await.unwrap();
    let (d, _) = w.finish().await.unwrap();
    assert!(dir.path().join("sha256").join(d.to_hex()).is_file());
}

#[cfg(not(feature = "shangmi"))]
#[tokio::test]
async fn an_sm3_store_without_the_feature_refuses_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), None)
        .unwrap()
        .with_digest(DigestAlgorithm::Sm3);
    let err = store.stage().await.unwrap_err();
    assert!(err.to_string().contains("no 国密 support"), "{err}");
    let d = Digest([7; 32]);
    let err = store.resume(d, 3, 0).await.unwrap_err();
    assert!(err.to_string().contains("no 国密 support"), "{err}");
    released(&store, &d).await;
}

#[cfg(feature = "shangmi")]
mod sm3 {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::atrest::{Kek, Keyring};

    fn sm3(b: &[u8]) -> Digest {
        Digest::with(DigestAlgorithm::Sm3, b).unwrap()
    }

    async fn read(store: &BlobStore, d: &Digest, offset: u64) -> Vec<u8> {
        let mut r = store.open_read(d, offset).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    /// Both kinds of store, plaintext and encrypted at rest, hashing with SM3.
    fn stores() -> Vec<(tempfile::TempDir, BlobStore)> {
        let plain = tempfile::tempdir().unwrap();
        let plain_store = BlobStore::open(plain.path(), None)
            .unwrap()
            .with_digest(DigestAlgorithm::Sm3);
        let sealed = tempfile::tempdir().unwrap();
        let kek = Kek::generate(&sealed.path().join("kek")).unwrap();
        let keys = Keyring::open_or_create(&sealed.path().join("keyring.json"), &kek).unwrap();
        let sealed_store = BlobStore::open(&sealed.path().join("blobs"), Some(keys))
            .unwrap()
            .with_digest(DigestAlgorithm::Sm3);
        vec![(plain, plain_store), (sealed, sealed_store)]
    }

    #[tokio::test]
    async fn staged_content_is_named_by_its_sm3_digest() {
        for (_dir, store) in stores() {
            let mut w = store.stage().await.unwrap();
            w.write(b"a").await.unwrap();
            w.write(b"bc").await.unwrap();
            let (d, size) = w.finish().await.unwrap();
            assert_eq!((d, size), (sm3(b"abc"), 3));
            assert_ne!(d, Digest::of(b"abc"));
            assert_eq!(store.progress(&d).await, (3, true));
            assert_eq!(read(&store, &d, 0).await, b"abc");
        }
        let (dir, store) = stores().swap_remove(0);
        let d = sm3(b"x");
        let mut w = store.stage().await.unwrap();
        w.write(b"x").await.unwrap();
        w.finish().await.unwrap();
        let named = dir
            .path()
            .join("sha256")
            .join(format!("sm3-{}", d.to_hex()));
        assert!(named.is_file(), "the file name says sm3");
        assert!(!dir.path().join("sha256").join(d.to_hex()).exists());
    }

    #[tokio::test]
    async fn a_transfer_is_checked_against_its_sm3_digest_and_resumes() {
        for (_dir, store) in stores() {
            let size = CHUNK_SIZE * 2 + 1000;
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let d = sm3(&data);
            // Interrupted after more than a chunk, then resumed: the held bytes are re-hashed
            // with SM3.
            let mut w = store.resume(d, size as u64, 0).await.unwrap();
            w.write(&data[..CHUNK_SIZE + 4096]).await.unwrap();
            drop(w);
            released(&store, &d).await;
            let (held, complete) = store.progress(&d).await;
            assert!(!complete);
            let mut w = store.resume(d, size as u64, held).await.unwrap();
            w.write(&data[held as usize..]).await.unwrap();
            assert_eq!(w.finish().await.unwrap(), (d, size as u64));
            assert_eq!(read(&store, &d, 0).await, data);

            // One flipped byte: refused, nothing installed.
            let d2 = sm3(&data[..1000]);
            let mut flipped = data[..1000].to_vec();
            flipped[517] ^= 1;
            let mut w = store.resume(d2, 1000, 0).await.unwrap();
            w.write(&flipped).await.unwrap();
            match w.finish().await {
                Err(BlobError::Mismatch {
                    expected, actual, ..
                }) => assert_eq!((expected, actual), (d2, sm3(&flipped))),
                other => panic!("expected a mismatch, got {other:?}"),
            }
            assert!(!store.contains(&d2).await);
            // The SHA-256 of the right bytes is not accepted as their name either.
            let wrong = Digest::of(&data[..1000]);
            let mut w = store.resume(wrong, 1000, 0).await.unwrap();
            w.write(&data[..1000]).await.unwrap();
            assert!(matches!(w.finish().await, Err(BlobError::Mismatch { .. })));
        }
    }
}

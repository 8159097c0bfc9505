use std::io::{Cursor, Read, Write};

use super::*;
use crate::atrest::{
    ChunkLayout,
    keys::{test_keys_for, test_suites},
};

/// Small chunks, so that a few bytes make many chunks.
const CS: u32 = 16;
const STRIDE: usize = CS as usize + 16;
const H: usize = BLOB_HEADER_LEN;

fn plain(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn encrypt(keys: &DataKeys, data: &[u8], piece: usize) -> Vec<u8> {
    let mut w = EncryptingWriter::with_chunk_size(keys, CS, Vec::new()).unwrap();
    for part in data.chunks(piece.max(1)) {
        w.write_all(part).unwrap();
    }
    assert_eq!(w.plaintext_len(), data.len() as u64);
    w.finish().unwrap()
}

fn decrypt(keys: &DataKeys, file: &[u8], offset: u64) -> io::Result<Vec<u8>> {
    let mut r = DecryptingReader::new(keys, Cursor::new(file), offset)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn read_error(keys: &DataKeys, file: &[u8]) -> String {
    decrypt(keys, file, 0).unwrap_err().to_string()
}

#[test]
fn round_trips_empty_one_byte_one_chunk_and_many_chunks() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let layout = ChunkLayout::new(CS);
        for len in [0, 1, 16, 32, 16 * 5 + 7] {
            let data = plain(len);
            for piece in [1, 3, 16, 1000] {
                let file = encrypt(&keys, &data, piece);
                assert_eq!(
                    file.len() as u64,
                    layout.sealed_len(len as u64),
                    "len {len}"
                );
                assert_eq!(decrypt(&keys, &file, 0).unwrap(), data, "len {len}");
                let r = DecryptingReader::new(&keys, Cursor::new(&file), 0).unwrap();
                assert_eq!(r.plaintext_len(), len as u64);
            }
        }
    }
}

#[test]
fn round_trips_with_the_default_chunk_size() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let data = plain(3 * DEFAULT_CHUNK_SIZE_USIZE + 123);
        let mut w = EncryptingWriter::new(&keys, Vec::new()).unwrap();
        w.write_all(&data).unwrap();
        let file = w.finish().unwrap();
        assert_eq!(decrypt(&keys, &file, 0).unwrap(), data);
    }
}
const DEFAULT_CHUNK_SIZE_USIZE: usize = crate::atrest::DEFAULT_CHUNK_SIZE as usize;

#[test]
fn the_file_never_contains_the_plaintext() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let marker = b"CONFIDENTIAL-MARKER-4242";
        let data = [plain(20), marker.to_vec(), plain(40)].concat();
        let file = encrypt(&keys, &data, 7);
        assert!(!file.windows(marker.len()).any(|w| w == marker));
    }
}

#[test]
fn a_reader_starts_at_any_offset_including_mid_chunk() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let data = plain(16 * 5 + 7);
        let file = encrypt(&keys, &data, 100);
        for offset in 0..=data.len() {
            let got = decrypt(&keys, &file, offset as u64).unwrap();
            assert_eq!(got, &data[offset..], "offset {offset}");
        }
        let err = DecryptingReader::new(&keys, Cursor::new(&file), data.len() as u64 + 1);
        assert!(matches!(err, Err(AtRestError::OffsetBeyondEnd { .. })));
    }
}

#[test]
fn a_reader_handles_a_full_last_chunk_from_the_pure_api() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let (header, sealer) = BlobSealer::with_chunk_size(&keys, CS).unwrap();
        let data = plain(32);
        let mut file = header.to_vec();
        file.extend(sealer.seal_chunk(0, false, &data[..16]).unwrap());
        file.extend(sealer.seal_chunk(1, true, &data[16..]).unwrap());
        for offset in [0, 5, 16, 31, 32] {
            assert_eq!(
                decrypt(&keys, &file, offset).unwrap(),
                &data[offset as usize..]
            );
        }
    }
}

#[test]
fn a_flipped_byte_in_a_chunk_names_the_chunk() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let mut file = encrypt(&keys, &plain(16 * 5 + 7), 100);
        file[H + 2 * STRIDE + 3] ^= 0x80;
        let err = decrypt(&keys, &file, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "chunk 2 does not authenticate");
        // A reader starting after the altered chunk does not see it; one starting in it does.
        assert!(decrypt(&keys, &file, 48).is_ok());
        assert!(decrypt(&keys, &file, 40).is_err());
    }
}

#[test]
fn a_flipped_byte_in_the_header_is_refused() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let file = encrypt(&keys, &plain(40), 100);
        for i in 0..H {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(
                DecryptingReader::new(&keys, Cursor::new(&bad), 0).is_err(),
                "byte {i}"
            );
        }
    }
}

#[test]
fn swapped_chunks_are_refused() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let file = encrypt(&keys, &plain(16 * 5 + 7), 100);
        let mut bad = file.clone();
        let (one, two) = (H + STRIDE, H + 2 * STRIDE);
        bad[one..two].copy_from_slice(&file[two..two + STRIDE]);
        bad[two..two + STRIDE].copy_from_slice(&file[one..two]);
        assert_eq!(read_error(&keys, &bad), "chunk 1 does not authenticate");
    }
}

#[test]
fn a_truncated_file_is_refused() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let file = encrypt(&keys, &plain(16 * 5 + 7), 100);
        // Cut at a chunk boundary: the new last chunk was sealed as not last.
        let at_boundary = &file[..H + 3 * STRIDE];
        assert_eq!(
            read_error(&keys, at_boundary),
            "chunk 2 does not authenticate"
        );
        // Cut inside the last chunk, inside a tag, and right after the header.
        assert_eq!(
            read_error(&keys, &file[..file.len() - 1]),
            "chunk 5 does not authenticate"
        );
        let in_tag = &file[..H + 5 * STRIDE + 10];
        assert!(read_error(&keys, in_tag).contains("chunk 5 is incomplete"));
        assert!(read_error(&keys, &file[..H]).contains("truncated"));
        assert!(read_error(&keys, &file[..H - 1]).contains("header"));
        // A writer that never finished leaves no last chunk: refused, not a shorter document.
        let mut w = EncryptingWriter::with_chunk_size(&keys, CS, Vec::new()).unwrap();
        w.write_all(&plain(40)).unwrap();
        let unfinished = std::mem::take(&mut w.inner);
        assert_eq!(
            read_error(&keys, &unfinished),
            "chunk 1 does not authenticate"
        );
    }
}

#[test]
fn an_appended_chunk_is_refused() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let file = encrypt(&keys, &plain(40), 100);
        let last = file[H + 2 * STRIDE..].to_vec();
        let appended = [file.clone(), last].concat();
        assert_eq!(
            read_error(&keys, &appended),
            "chunk 2 does not authenticate"
        );
        let garbage = [file.clone(), vec![0u8; 30]].concat();
        assert_eq!(read_error(&keys, &garbage), "chunk 2 does not authenticate");
        // Too few bytes for another chunk's tag: refused by the layout before any decryption.
        let short = [file, vec![0u8; 20]].concat();
        assert!(read_error(&keys, &short).contains("chunk 3 is incomplete"));
    }
}

#[test]
fn an_interrupted_write_resumes_after_the_last_complete_chunk() {
    for suite in test_suites() {
        let keys = test_keys_for(suite, 1);
        let data = plain(16 * 6 + 5);
        let mut w = EncryptingWriter::with_chunk_size(&keys, CS, Vec::new()).unwrap();
        w.write_all(&data[..16 * 3 + 9]).unwrap();
        let mut torn = std::mem::take(&mut w.inner);
        torn.extend_from_slice(&[0xAA; 7]); // part of a chunk that never completed
        let header = torn[..H].to_vec();
        let sealer = BlobSealer::resume(&keys, &header).unwrap();
        let at = sealer.layout().resume_point(torn.len() as u64).unwrap();
        assert_eq!((at.index, at.plaintext_offset), (3, 48));
        // Check the last complete chunk before trusting the resume point.
        let opener = BlobOpener::from_header(&keys, &header).unwrap();
        let prev = sealer.layout().chunk_file_offset(at.index - 1) as usize;
        opener
            .open_chunk(at.index - 1, false, &torn[prev..prev + STRIDE])
            .unwrap();
        torn.truncate(at.file_offset as usize);
        let mut w = EncryptingWriter::resume(sealer, at, torn);
        w.write_all(&data[at.plaintext_offset as usize..]).unwrap();
        let file = w.finish().unwrap();
        assert_eq!(decrypt(&keys, &file, 0).unwrap(), data);
    }
}

#[test]
fn another_stores_keys_do_not_read_the_blob() {
    for suite in test_suites() {
        let file = encrypt(&test_keys_for(suite, 1), &plain(40), 100);
        let err =
            DecryptingReader::new(&test_keys_for(suite, 2), Cursor::new(&file), 0).unwrap_err();
        assert!(matches!(err, AtRestError::BlobHeaderNotAuthentic), "{err}");
    }
}
